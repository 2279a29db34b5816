"""Counting refused requests (``tara_rejected_requests_total``) on every route.

A refusal is any 4xx answer: bad input, a missing key, an unknown route or
request id, a wrong method, a body too large. The ``route`` label comes from
:func:`route_label`, a fixed set, so no client can grow the metric by
inventing paths. The chat endpoint counts its own refusals (wrapping its
``send`` would cost every streamed chunk a call); :class:`CountRejections`
watches the response status of every other route.
"""

from __future__ import annotations

from collections.abc import Callable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

CHAT_PATH = "/v1/chat/completions"
_EXACT = {
    CHAT_PATH: "chat",
    "/v1/feedback": "feedback",
    "/v1/models": "models",
    "/healthz": "probes",
    "/readyz": "probes",
    "/metrics": "probes",
    "/openapi.json": "openapi",
    "/admin": "admin",
}

ROUTE_LABELS = ("chat", "feedback", "models", "admin", "probes", "openapi", "other")
"""Every value the ``route`` label can take."""


def route_label(path: str) -> str:
    """The metric label of a request path: one of :data:`ROUTE_LABELS`."""
    label = _EXACT.get(path)
    if label is not None:
        return label
    return "admin" if path.startswith("/admin/") else "other"


Reject = Callable[[int, str], None]
"""Hears each refusal's status and route label."""


class CountRejections:
    """ASGI middleware: reports every 4xx response of the wrapped app to ``on_reject``."""

    def __init__(self, app: ASGIApp, on_reject: Reject) -> None:
        self.app = app
        self.on_reject = on_reject

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass the request through, watching the status it is answered with."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]

        async def watched(message: Message) -> None:
            if message["type"] == "http.response.start" and 400 <= message["status"] < 500:
                self.on_reject(message["status"], route_label(path))
            await send(message)

        await self.app(scope, receive, watched)
