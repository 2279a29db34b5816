"""Reading a request body from ASGI ``receive`` without ever holding more than a limit."""

from __future__ import annotations

from starlette.types import Receive, Scope

from tara.gateway.errors import GatewayError


class ClientGoneError(Exception):
    """The client disconnected before sending its whole body."""


def too_large(limit: int) -> GatewayError:
    """The 413 for a body over ``limit`` bytes."""
    return GatewayError(
        413, f"request body exceeds the limit of {limit} bytes", code="request_too_large"
    )


def declared_length(scope: Scope) -> int | None:
    """The Content-Length header as an int, if present and well formed."""
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


async def read_body(scope: Scope, receive: Receive, limit: int) -> bytes:
    """The whole request body; raises a 413 :class:`GatewayError` past ``limit`` bytes.

    A declared Content-Length over the limit is refused before reading
    anything; a body that grows past the limit while streaming in is refused
    as soon as it does.
    """
    length = declared_length(scope)
    if length is not None and length > limit:
        raise too_large(limit)
    message = await receive()
    if message["type"] == "http.disconnect":
        raise ClientGoneError
    body: bytes = message.get("body", b"")
    if not message.get("more_body", False):
        # The common case: one message holds the whole body, no copy needed.
        if len(body) > limit:
            raise too_large(limit)
        return body
    parts = [body]
    size = len(body)
    while True:
        if size > limit:
            raise too_large(limit)
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGoneError
        chunk: bytes = message.get("body", b"")
        parts.append(chunk)
        size += len(chunk)
        if not message.get("more_body", False):
            break
    if size > limit:
        raise too_large(limit)
    return b"".join(parts)
