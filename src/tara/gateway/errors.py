"""OpenAI-shaped errors: what a client sees when the gateway refuses or fails a request.

A :class:`GatewayError` is data (status, message, type, code, param) raised
at a boundary and turned into ``{"error": {...}}`` by :func:`send_error`.
Messages name the problem, never a secret or an upstream URL.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

import orjson
from starlette.types import Send

INVALID_REQUEST = "invalid_request_error"
UPSTREAM_ERROR = "upstream_error"
SERVER_ERROR = "server_error"


class GatewayError(Exception):
    """A request the gateway answers with an error status and an OpenAI error body."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = INVALID_REQUEST,
        code: str | None = None,
        param: str | None = None,
        headers: Sequence[tuple[bytes, bytes]] = (),
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.code = code
        self.param = param
        self.headers = tuple(headers)

    def body(self) -> bytes:
        """The JSON error body."""
        return error_body(self.message, self.type, self.code, self.param)


def error_body(message: str, type_: str, code: str | None, param: str | None = None) -> bytes:
    """``{"error": {"message", "type", "code", "param"}}`` as JSON bytes."""
    return orjson.dumps(
        {"error": {"message": message, "type": type_, "code": code, "param": param}}
    )


def bad_request(
    message: str, param: str | None = None, code: str = "invalid_request"
) -> GatewayError:
    """A 400 naming the field at fault."""
    return GatewayError(400, message, param=param, code=code)


async def send_error(
    send: Send, error: GatewayError, headers: Sequence[tuple[bytes, bytes]] = ()
) -> None:
    """Answer with ``error`` as a complete JSON response."""
    body = error.body()
    await send(
        {
            "type": "http.response.start",
            "status": error.status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *error.headers,
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body, "more_body": False})


E = TypeVar("E", bound=BaseException)


def settled(exc: E) -> E:
    """``exc``, kept as a value, without its traceback or the exceptions it came from.

    A caught exception's traceback holds the frames of every call it passed
    through, and their locals often hold the exception again (the frame that
    keeps it, the retry library's future): cycles that only the garbage
    collector frees, which servers run once in minutes (:mod:`tara.garbage`).
    An upstream failure left ~240 such objects a request; a failure that was
    logged and answered needs none of them.
    """
    pending: list[BaseException | None] = [exc]
    while pending:
        e = pending.pop()
        if e is not None:  # cleared as it is reached, so a cycle of causes ends here
            pending += (e.__cause__, e.__context__)
            e.__traceback__ = e.__cause__ = e.__context__ = None
    return exc
