"""vLLM's runtime LoRA endpoints, emulated: load and unload adapters while serving.

So that the open-weight path (train an adapter, load it into the server,
evaluate it, route a canary to it) runs offline. As in vLLM:

* ``POST /v1/load_lora_adapter {"lora_name", "lora_path"}`` answers 200 with
  a plain-text ``Success: ...``; the adapter is then a model: listed in
  ``GET /v1/models`` with its ``root`` (the path) and ``parent`` (the base
  model its ``adapter_config.json`` names), and answering chat completions.
  400 when a field is missing or the name is already loaded (unless
  ``load_inplace``), 404 when the path holds no adapter.
* ``POST /v1/unload_lora_adapter {"lora_name"}``: 200, or 404 for a name
  that is not loaded.

The path is read on the sandbox's own file system, as vLLM reads its own.
A loaded adapter behaves like ``lora.template_model`` with
``lora.quality_gain`` more quality. With ``lora.enabled = false`` the routes
do not exist (404), like a vLLM without ``VLLM_ALLOW_RUNTIME_LORA_UPDATING``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
from aiohttp import web

from tara.sandbox.config import LoraAdaptersConfig, ModelBehaviour
from tara.sandbox.errors import ApiError
from tara.sandbox.state import STATE, object_body

ADAPTERS: web.AppKey[LoraAdaptersConfig] = web.AppKey("tara_sandbox_lora", LoraAdaptersConfig)


def _bad(message: str) -> web.Response:
    return ApiError(400, message, type="BadRequestError").response()


_NOT_OBJECT = ApiError(400, "The body must be a JSON object.", type="BadRequestError")


def _not_found(message: str) -> web.Response:
    return ApiError(404, message, type="NotFoundError").response()


def read_adapter_config(path: Path) -> dict[str, Any] | None:
    """The adapter's ``adapter_config.json`` if ``path`` holds a readable LoRA adapter."""
    try:
        config = orjson.loads((path / "adapter_config.json").read_bytes())
    except (OSError, orjson.JSONDecodeError):
        return None
    if not isinstance(config, dict) or config.get("peft_type") != "LORA":
        return None
    return config


async def load_lora_adapter(request: web.Request) -> web.Response:
    """Serve the adapter at ``lora_path`` as model ``lora_name``."""
    body = await object_body(request, _NOT_OBJECT)
    if isinstance(body, web.Response):
        return body
    name, path = body.get("lora_name"), body.get("lora_path")
    if not isinstance(name, str) or not name or not isinstance(path, str) or not path:
        return _bad("Both 'lora_name' and 'lora_path' must be provided.")
    registry = request.app[STATE].registry
    entry = registry.entry(name)
    if entry is not None and entry.root is None:
        return _bad(f"The model '{name}' is served and is not a LoRA adapter.")
    if entry is not None and body.get("load_inplace") is not True:
        return _bad(
            f"The lora adapter '{name}' has already been loaded. If you want to load the "
            "adapter in place, set 'load_inplace' to True."
        )
    adapter = read_adapter_config(Path(path))
    if adapter is None:
        return _not_found(f"Loading lora {name} failed: No adapter found for {path}")
    config = request.app[ADAPTERS]
    template = registry.get(config.template_model) or ModelBehaviour()
    quality = round(min(1.0, template.quality + config.quality_gain), 4)
    parent = adapter.get("base_model_name_or_path")
    registry.register(
        name,
        template.model_copy(update={"quality": quality}),
        root=path,
        parent=parent if isinstance(parent, str) else config.template_model,
    )
    return web.Response(text=f"Success: LoRA adapter '{name}' added successfully.")


async def unload_lora_adapter(request: web.Request) -> web.Response:
    """Stop serving adapter ``lora_name``."""
    body = await object_body(request, _NOT_OBJECT)
    if isinstance(body, web.Response):
        return body
    name = body.get("lora_name")
    if not isinstance(name, str) or not name:
        return _bad("'lora_name' needs to be provided to unload a LoRA adapter.")
    registry = request.app[STATE].registry
    entry = registry.entry(name)
    if entry is None or entry.root is None:
        return _not_found(f"The lora adapter '{name}' cannot be found.")
    registry.remove(name)
    return web.Response(text=f"Success: LoRA adapter '{name}' removed successfully.")


def install(app: web.Application, config: LoraAdaptersConfig) -> None:
    """Add the adapter routes to ``app`` when ``config.enabled``."""
    app[ADAPTERS] = config
    if config.enabled:
        app.router.add_post("/v1/load_lora_adapter", load_lora_adapter)
        app.router.add_post("/v1/unload_lora_adapter", unload_lora_adapter)
