"""Building the sandbox's aiohttp application.

aiohttp rather than an ASGI framework because the sandbox must misbehave at
the TCP level (reset, cut) through ``request.transport``, and must stay out
of the way when a gateway is benchmarked against it.
"""

from __future__ import annotations

from aiohttp import web

from tara.sandbox import chat, control, fine_tuning, lora
from tara.sandbox.config import SandboxConfig, default_config
from tara.sandbox.state import STATE, SandboxState

MAX_BODY_BYTES = 16 * 1024 * 1024


async def _release_hangs(app: web.Application) -> None:
    app[STATE].closing.set()


def build_sandbox_app(config: SandboxConfig | None = None, seed: int = 0) -> web.Application:
    """The sandbox app for ``config`` (default: the built-in models) and ``seed``.

    Run it with ``handler_cancellation=True`` (see :mod:`tara.sandbox.server`)
    so hanging requests end as soon as their client leaves.
    """
    app = web.Application(client_max_size=MAX_BODY_BYTES)
    config = config or default_config()
    app[STATE] = SandboxState.from_config(config, seed)
    app.on_shutdown.append(_release_hangs)
    router = app.router
    router.add_post("/v1/chat/completions", chat.chat_completions)
    router.add_get("/v1/models", control.list_models)
    router.add_get("/v1/models/{model}", control.get_model)
    router.add_get("/sandbox/models", control.show_behaviours)
    router.add_post("/sandbox/models/{name}", control.set_behaviour)
    router.add_delete("/sandbox/models/{name}", control.delete_model)
    router.add_get("/sandbox/stats", control.show_stats)
    router.add_post("/sandbox/reset", control.reset)
    fine_tuning.install(app, config.fine_tuning)
    lora.install(app, config.lora)
    # Last, so it only catches what nothing else matched (wrong path or method).
    router.add_route("*", "/{tail:.*}", control.unknown_route)
    return app
