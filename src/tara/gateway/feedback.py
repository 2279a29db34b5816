"""``POST /v1/feedback``: a student's rating of an answer, joined to the request it rates.

The body is ``{"request_id", "rating": 1-5, "tags": [...], "relevance": 0..1,
"comment"}`` (the last three optional; unknown fields are ignored so older
gateways accept newer apps). :func:`parse_feedback` is the pure validation:
invalid JSON is a 400, a bad field a 422 whose message and ``param`` name the
field. The join itself is :meth:`~tara.telemetry.pipeline.Telemetry.submit_feedback`:
an unknown or expired request id is a 404, an unreachable shared index a 503
(the app may retry), success a 200 ``{"request_id", "rating", "replaced"}``.
The client key is checked by the gateway's auth, like every ``/v1/`` path.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

import orjson
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route

from tara.gateway.errors import SERVER_ERROR, GatewayError
from tara.telemetry.pipeline import FEEDBACK_TAGS, FeedbackAccepted, Telemetry

FEEDBACK_PATH = "/v1/feedback"
MAX_BODY_BYTES = 16 * 1024
"""Feedback is small; a larger body is refused before it is parsed."""
MAX_COMMENT_CHARS = 2000
MAX_REQUEST_ID_CHARS = 128
MAX_TAGS = 16

_JSON = "application/json"


@dataclass(frozen=True, slots=True)
class FeedbackRequest:
    """A validated feedback body."""

    request_id: str
    rating: int
    tags: tuple[str, ...] = ()
    relevance: float | None = None
    comment: str | None = None


def _invalid(param: str, message: str) -> GatewayError:
    return GatewayError(422, f"{param}: {message}", code="invalid_value", param=param)


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def parse_feedback(  # noqa: C901 - one flat check per field reads best
    raw: bytes, allowed_tags: Collection[str] = FEEDBACK_TAGS
) -> FeedbackRequest | GatewayError:
    """The validated body, or the error to answer with (400 bad JSON, 422 bad field)."""
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return GatewayError(400, "the body is not valid JSON", code="invalid_json")
    if not isinstance(body, dict):
        return GatewayError(400, "the body must be a JSON object", code="invalid_json")
    request_id = body.get("request_id")
    if not isinstance(request_id, str) or not request_id.strip():
        return _invalid("request_id", "required, a non-empty string (X-Tara-Request-Id)")
    if len(request_id) > MAX_REQUEST_ID_CHARS:
        return _invalid("request_id", f"longer than {MAX_REQUEST_ID_CHARS} characters")
    rating = body.get("rating")
    if type(rating) is not int or not 1 <= rating <= 5:  # bool is an int subclass: refuse it
        return _invalid("rating", "required, an integer from 1 to 5")
    tags = body.get("tags", [])
    if tags is None:
        tags = []
    if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
        return _invalid("tags", "must be a list of strings")
    if len(tags) > MAX_TAGS:
        return _invalid("tags", f"at most {MAX_TAGS} tags")
    unknown = sorted({t for t in tags if t not in allowed_tags})
    if unknown:
        known = ", ".join(allowed_tags)
        return _invalid("tags", f"unknown tag {unknown[0]!r}; known tags: {known}")
    relevance = body.get("relevance")
    if relevance is not None and (not _number(relevance) or not 0 <= relevance <= 1):
        return _invalid("relevance", "must be a number from 0 to 1")
    comment = body.get("comment")
    if comment is not None and not isinstance(comment, str):
        return _invalid("comment", "must be a string")
    if comment is not None and len(comment) > MAX_COMMENT_CHARS:
        return _invalid("comment", f"longer than {MAX_COMMENT_CHARS} characters")
    return FeedbackRequest(
        request_id=request_id,
        rating=rating,
        tags=tuple(dict.fromkeys(tags)),
        relevance=float(relevance) if relevance is not None else None,
        comment=comment or None,
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
