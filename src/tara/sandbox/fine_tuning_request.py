"""Parsing ``POST /v1/fine_tuning/jobs`` bodies into a :class:`JobRequest` or an OpenAI error.

Both forms of hyperparameters are accepted: the legacy top-level
``hyperparameters`` and the newer ``method: {"type": "supervised",
"supervised": {"hyperparameters": ...}}``. Limits follow OpenAI's: a suffix
of at most 64 characters, at most 16 metadata pairs with keys up to 64 and
values up to 512 characters.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tara.sandbox.errors import ApiError, bad_request, invalid_json, json_object, missing

MAX_SUFFIX = 64
MAX_METADATA_PAIRS = 16
_HYPERPARAMETERS = ("n_epochs", "batch_size", "learning_rate_multiplier")


@dataclass(frozen=True, slots=True)
class JobRequest:
    """A valid job creation request (files not yet looked up)."""

    model: str
    training_file: str
    validation_file: str | None
    hyperparameters: dict[str, Any]
    suffix: str | None
    metadata: dict[str, str]
    seed: int | None


def _hyperparameters(body: dict[str, Any]) -> dict[str, Any] | ApiError:
    raw = body.get("hyperparameters")
    method = body.get("method")
    if method is not None:
        if not isinstance(method, dict) or method.get("type") != "supervised":
            msg = "The sandbox only fine-tunes with method type 'supervised'."
            return bad_request(msg, "method")
        supervised = method.get("supervised") or {}
        if not isinstance(supervised, dict):
            return bad_request("method.supervised must be an object.", "method.supervised")
        raw = supervised.get("hyperparameters", raw)
    raw = raw or {}
    if not isinstance(raw, dict):
        return bad_request("hyperparameters must be an object.", "hyperparameters")
    for key, value in raw.items():
        if key not in _HYPERPARAMETERS:
            return bad_request(f"Unknown hyperparameter '{key}'.", f"hyperparameters.{key}")
        if value == "auto":
            continue
        number_ok = isinstance(value, int | float) and not isinstance(value, bool) and value > 0
        if not number_ok or (key != "learning_rate_multiplier" and not isinstance(value, int)):
            msg = f"Invalid value for hyperparameters.{key}: {value!r}."
            return bad_request(msg, f"hyperparameters.{key}", code="invalid_value")
    return dict(raw)


def _metadata(value: Any) -> dict[str, str] | ApiError:
    if value is None:
        return {}
    if not isinstance(value, dict) or len(value) > MAX_METADATA_PAIRS:
        return bad_request(
            f"metadata must be an object of at most {MAX_METADATA_PAIRS} pairs.", "metadata"
        )
    for k, v in value.items():
        if not isinstance(v, str) or len(k) > 64 or len(v) > 512:
            msg = "metadata keys must be up to 64 characters and values strings up to 512."
            return bad_request(msg, "metadata")
    return dict(value)


def _optional_str(body: dict[str, Any], key: str) -> str | ApiError | None:
    value = body.get(key)
    if value is None or isinstance(value, str):
        return value
    return bad_request(f"'{key}' must be a string.", key)


def parse_job_request(raw: bytes) -> JobRequest | ApiError:
    """The request, or the 400 OpenAI would answer."""
    body = json_object(raw, invalid_json())
    if isinstance(body, ApiError):
        return body
    for key in ("model", "training_file"):
        if not isinstance(body.get(key), str) or not body[key]:
            return missing(key)
    validation_file = _optional_str(body, "validation_file")
    suffix = _optional_str(body, "suffix")
    if isinstance(validation_file, ApiError):
        return validation_file
    if isinstance(suffix, ApiError):
        return suffix
    if suffix is not None and (len(suffix) > MAX_SUFFIX or ":" in suffix):
        msg = f"suffix must be at most {MAX_SUFFIX} characters without ':'."
        return bad_request(msg, "suffix")
    hyperparameters = _hyperparameters(body)
    if isinstance(hyperparameters, ApiError):
        return hyperparameters
    metadata = _metadata(body.get("metadata"))
    if isinstance(metadata, ApiError):
        return metadata
    seed = body.get("seed")
    return JobRequest(
        model=body["model"],
        training_file=body["training_file"],
        validation_file=validation_file,
        hyperparameters=hyperparameters,
        suffix=suffix or None,
        metadata=metadata,
        seed=seed if isinstance(seed, int) else None,
    )
