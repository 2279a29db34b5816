"""``POST /v1/feedback``: a student's rating of an answer, joined to the request it rates.

The body is ``{"request_id", "rating": 1-5, "tags": [...], "relevance": 0..1,
"comment"}`` (the last three optional; unknown fields are ignored so older
gateways accept newer apps). :class:`FeedbackBody` is its pydantic model and
:func:`parse_feedback` the pure validation: invalid JSON (or JSON nested past
:data:`~tara.gateway.limits.MAX_JSON_DEPTH`) is a 400, a bad field a 422 whose
message starts with the field and says its rule, ``param`` naming it. The join
itself is :meth:`~tara.telemetry.pipeline.Telemetry.submit_feedback`: an
unknown or expired request id is a 404, an unreachable shared index a 503
(the app may retry), success a 200 ``{"request_id", "rating", "replaced"}``.
The client key is checked by the gateway's auth, like every ``/v1/`` path.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic_core import PydanticCustomError
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route

from tara.gateway import limits
from tara.gateway.errors import SERVER_ERROR, GatewayError
from tara.gateway.limits import TextLimit
from tara.telemetry.pipeline import FEEDBACK_TAGS, FeedbackAccepted, Telemetry

FEEDBACK_PATH = "/v1/feedback"
MAX_BODY_BYTES = 16 * 1024
"""Feedback is small; a larger body is refused before it is parsed."""
MAX_COMMENT_CHARS = limits.COMMENT.max_chars
MAX_REQUEST_ID_CHARS = limits.REQUEST_ID.max_chars
MAX_TAGS = limits.MAX_TAGS

_JSON = "application/json"


def _text(value: str, limit: TextLimit) -> str:
    problem = limit.problem(value)
    if problem is not None:
        raise PydanticCustomError("invalid_value", f"must be {limit.describe()}; {problem}")
    return value


class FeedbackBody(BaseModel):
    """The feedback request body (strict: ``true``, ``4.0`` and ``"4"`` are not ratings)."""

    model_config = ConfigDict(
        strict=True, extra="ignore", frozen=True, use_attribute_docstrings=True
    )

    request_id: str = Field(json_schema_extra=limits.REQUEST_ID.json_schema())
    """The X-Tara-Request-Id of the answer rated."""
    rating: int = Field(ge=1, le=5)
    """An integer from 1 to 5."""
    tags: list[Annotated[str, Field(json_schema_extra={"enum": list(FEEDBACK_TAGS)})]] | None = (
        Field(None, max_length=MAX_TAGS)
    )
    """At most 16 known tags (duplicates collapse)."""
    relevance: float | None = Field(None, ge=0, le=1)
    """A number from 0 to 1."""
    comment: str | None = Field(None, json_schema_extra=limits.COMMENT.json_schema())
    """Free text, stored with the rating when capture is ``full``."""

    @field_validator("request_id")
    @classmethod
    def _request_id(cls, value: str) -> str:
        return _text(value, limits.REQUEST_ID)

    @field_validator("comment")
    @classmethod
    def _comment(cls, value: str | None) -> str | None:
        return _text(value, limits.COMMENT) if value else None

    @field_validator("tags")
    @classmethod
    def _known_tags(cls, tags: list[str] | None) -> list[str] | None:
        unknown = sorted({t for t in tags or () if t not in FEEDBACK_TAGS})
        if unknown:
            known = ", ".join(FEEDBACK_TAGS)
            msg = f"unknown tag {unknown[0]!r}; known tags: {known}"
            raise PydanticCustomError("unknown_tag", msg)
        return tags


@dataclass(frozen=True, slots=True)
class FeedbackRequest:
    """A validated feedback body."""

    request_id: str
    rating: int
    tags: tuple[str, ...] = ()
    relevance: float | None = None
    comment: str | None = None


def _refusal(exc: ValidationError) -> GatewayError:
    """The 422 (400 for a body that is not an object) for the first problem pydantic found."""
    error = exc.errors(include_url=False)[0]
    if not error["loc"]:
        return GatewayError(400, "the body must be a JSON object", code="invalid_json")
    field = str(error["loc"][0])
    described = FeedbackBody.model_fields[field].description or ""
    rule = described[:1].lower() + described[1:].rstrip(".")
    if error["type"] == "missing":
        message = f"{field}: required; it must be {rule}"
    elif error["type"] in ("invalid_value", "unknown_tag"):
        message = f"{field}: {error['msg']}"
    else:
        message = f"{field}: {error['msg'][0].lower()}{error['msg'][1:]}; it must be {rule}"
    return GatewayError(422, message, code="invalid_value", param=field)


def parse_feedback(raw: bytes) -> FeedbackRequest | GatewayError:
    """The validated body, or the error to answer with (400 bad JSON, 422 bad field)."""
    try:
        data: Any = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return GatewayError(400, "the body is not valid JSON", code="invalid_json")
    if limits.too_deep(raw, data):
        return GatewayError(400, limits.depth_message(), code="json_too_deep")
    try:
        body = FeedbackBody.model_validate(data)
    except ValidationError as exc:
        return _refusal(exc)
    return FeedbackRequest(
        request_id=body.request_id,
        rating=body.rating,
        tags=tuple(dict.fromkeys(body.tags or ())),
        relevance=body.relevance,
        comment=body.comment,
    )


def _error(error: GatewayError) -> Response:
    return Response(error.body(), status_code=error.status, media_type=_JSON)


async def _read_bounded(request: Request) -> bytes | GatewayError:
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        return GatewayError(413, f"feedback over {MAX_BODY_BYTES} bytes", code="too_large")
    parts: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            return GatewayError(413, f"feedback over {MAX_BODY_BYTES} bytes", code="too_large")
        parts.append(chunk)
    return b"".join(parts)


def feedback_route(telemetry: Telemetry) -> Route:
    """The ``POST /v1/feedback`` route backed by ``telemetry``.

    (The gateway counts its refusals in ``tara_rejected_requests_total``, like
    every route's.)
    """

    async def endpoint(request: Request) -> Response:
        result = await _handle(request, telemetry)
        if isinstance(result, GatewayError):
            return _error(result)
        return result

    return Route(FEEDBACK_PATH, endpoint, methods=["POST"])


async def _handle(request: Request, telemetry: Telemetry) -> Response | GatewayError:
    try:
        raw = await _read_bounded(request)
    except ClientDisconnect:
        return GatewayError(400, "the client went away", code="client_closed")
    if isinstance(raw, GatewayError):
        return raw
    parsed = parse_feedback(raw)
    if isinstance(parsed, GatewayError):
        return parsed
    outcome = await telemetry.submit_feedback(
        parsed.request_id, parsed.rating, parsed.tags, parsed.relevance, parsed.comment
    )
    if outcome == "unknown":
        message = f"no answer with request id {parsed.request_id!r} (unknown or expired)"
        return GatewayError(404, message, code="request_not_found", param="request_id")
    if outcome == "unavailable":
        message = "feedback cannot be stored right now; retry later"
        return GatewayError(503, message, type=SERVER_ERROR, code="store_unavailable")
    assert isinstance(outcome, FeedbackAccepted)
    body = {"request_id": parsed.request_id, "rating": parsed.rating, "replaced": outcome.replaced}
    return Response(orjson.dumps(body), media_type=_JSON)
