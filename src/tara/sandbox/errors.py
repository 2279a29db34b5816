"""OpenAI-shaped error responses of the sandbox, real and injected.

Bodies are ``{"error": {"message", "type", "code", "param"}}`` with the
wording and codes OpenAI uses, so clients (the gateway, the ``openai`` SDK)
take the same paths they would against the real API.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web

INVALID_REQUEST = "invalid_request_error"


@dataclass(frozen=True, slots=True)
class ApiError:
    """An error answer: status, OpenAI error fields and extra headers."""

    status: int
    message: str
    type: str = INVALID_REQUEST
    code: str | None = None
    param: str | None = None
    headers: dict[str, str] = field(default_factory=dict)

    def response(self, extra_headers: dict[str, str] | None = None) -> web.Response:
        """The aiohttp response carrying this error."""
        body = orjson.dumps(
            {
                "error": {
                    "message": self.message,
                    "type": self.type,
                    "code": self.code,
                    "param": self.param,
                }
            }
        )
        headers = {**self.headers, **(extra_headers or {})}
        return web.Response(
            status=self.status, body=body, content_type="application/json", headers=headers
        )


def bad_request(message: str, param: str | None = None, code: str | None = None) -> ApiError:
    """A 400 naming the parameter at fault."""
    return ApiError(400, message, code=code, param=param)


def invalid_json() -> ApiError:
    """The body is not JSON (OpenAI's wording)."""
    return bad_request(
        "We could not parse the JSON body of your request. (HINT: This likely means you "
        "aren't using your HTTP library correctly. The OpenAI API expects a JSON payload, "
        "but what was sent was not valid JSON.)"
    )


def json_object(raw: bytes, not_object: ApiError) -> dict[str, Any] | ApiError:
    """The JSON object ``raw`` holds, :func:`invalid_json` if it does not parse, else
    ``not_object``."""
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return invalid_json()
    return body if isinstance(body, dict) else not_object


def missing(param: str) -> ApiError:
    """A required parameter is absent."""
    return bad_request(
        f"Missing required parameter: '{param}'.", param, code="missing_required_parameter"
    )


def model_not_found(model: str) -> ApiError:
    """404 for a model the sandbox does not serve."""
    return ApiError(
        404,
        f"The model '{model}' does not exist or you do not have access to it.",
        code="model_not_found",
    )


def unauthorized(message: str) -> ApiError:
    """401 for a missing or unknown bearer key."""
    return ApiError(401, message, code="invalid_api_key")


def not_found(path: str) -> ApiError:
    """404 for an unknown route."""
    return ApiError(404, f"Invalid URL (no route for {path}).", code="unknown_url")


def rate_limited(retry_after: int) -> ApiError:
    """An injected 429, with ``Retry-After`` in seconds."""
    return ApiError(
        429,
        "Rate limit reached for requests (sandbox). Please try again later.",
        type="requests",
        code="rate_limit_exceeded",
        headers={"Retry-After": str(retry_after)},
    )


def server_error() -> ApiError:
    """An injected 500."""
    return ApiError(
        500,
        "The server had an error while processing your request. Sorry about that! (sandbox)",
        type="server_error",
    )


def unavailable() -> ApiError:
    """An injected 503."""
    return ApiError(
        503,
        "The engine is currently overloaded, please try again later. (sandbox)",
        type="server_error",
        code="overloaded",
    )
