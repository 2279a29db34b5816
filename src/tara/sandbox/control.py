"""The model list and the runtime control routes of the sandbox.

* ``GET /v1/models``, ``GET /v1/models/{model}``: OpenAI's list/model shape plus
  ``quality`` (0..1).
* ``GET /sandbox/models``: every model's full behaviour.
* ``POST /sandbox/models/{name}``: set a model's behaviour. The JSON body is
  merged onto the model's current behaviour (onto the defaults for a new
  model), so ``{"errors": {"rate": 0.5}}`` changes only the error rate.
* ``DELETE /sandbox/models/{name}``: stop serving a model.
* ``GET /sandbox/stats``: requests and outcomes (errors injected) per model.
* ``POST /sandbox/reset``: zero the stats and occurrence counts, so the next
  sequence of requests replays exactly as after start-up.

Every route needs the same bearer key as the chat route.
"""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web
from pydantic import ValidationError

from tara.sandbox.config import ModelBehaviour, describe, merge
from tara.sandbox.errors import ApiError, bad_request, model_not_found, not_found
from tara.sandbox.registry import Entry
from tara.sandbox.state import STATE, SandboxStats, object_body, refuse_unauthorized


def _json(data: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(data), status=status, content_type="application/json")


def model_entry(name: str, entry: Entry) -> dict[str, Any]:
    """One item of ``GET /v1/models`` (a LoRA adapter also names its ``root`` and ``parent``)."""
    item: dict[str, Any] = {
        "id": name,
        "object": "model",
        "created": entry.created,
        "owned_by": entry.behaviour.owned_by,
        "quality": entry.behaviour.quality,
    }
    if entry.root is not None:
        item["root"], item["parent"] = entry.root, entry.parent
    return item


async def list_models(request: web.Request) -> web.Response:
    """OpenAI's model list, with each model's quality."""
    refused = refuse_unauthorized(request)
    if refused is not None:
        return refused
    registry = request.app[STATE].registry
    return _json({"object": "list", "data": [model_entry(n, e) for n, e in registry]})


async def get_model(request: web.Request) -> web.Response:
    """One model, or 404 ``model_not_found``."""
    refused = refuse_unauthorized(request)
    if refused is not None:
        return refused
    name = request.match_info["model"]
    entry = request.app[STATE].registry.entry(name)
    if entry is None:
        return model_not_found(name).response()
    return _json(model_entry(name, entry))


async def show_behaviours(request: web.Request) -> web.Response:
    """Every model's full behaviour."""
    refused = refuse_unauthorized(request)
    if refused is not None:
        return refused
    registry = request.app[STATE].registry
    return _json({name: entry.behaviour.model_dump(mode="json") for name, entry in registry})


async def set_behaviour(request: web.Request) -> web.Response:
    """Merge the JSON body onto a model's behaviour and serve the result."""
    not_object = bad_request("The body must be a JSON object of behaviour fields.")
    update = await object_body(request, not_object)
    if isinstance(update, web.Response):
        return update
    registry = request.app[STATE].registry
    name = request.match_info["name"]
    current = registry.get(name) or ModelBehaviour()
    try:
        behaviour = ModelBehaviour.model_validate(merge(current.model_dump(), update))
    except ValidationError as exc:
        return bad_request(describe(exc, f"model {name}"), code="invalid_behaviour").response()
    registry.register(name, behaviour)
    return _json({"model": name, "behaviour": behaviour.model_dump(mode="json")})


async def delete_model(request: web.Request) -> web.Response:
    """Stop serving a model."""
    refused = refuse_unauthorized(request)
    if refused is not None:
        return refused
    name = request.match_info["name"]
    if not request.app[STATE].registry.remove(name):
        return model_not_found(name).response()
    return _json({"id": name, "object": "model", "deleted": True})


async def show_stats(request: web.Request) -> web.Response:
    """Requests, outcomes and tokens per model; refused requests by reason."""
    refused = refuse_unauthorized(request)
    if refused is not None:
        return refused
    return _json(request.app[STATE].stats.as_json())


async def reset(request: web.Request) -> web.Response:
    """Zero the stats and occurrence counts (models are kept)."""
    refused = refuse_unauthorized(request)
    if refused is not None:
        return refused
    state = request.app[STATE]
    state.stats = SandboxStats(active=state.stats.active)
    state.occurrences.clear()
    return _json({"reset": True})


async def unknown_route(request: web.Request) -> web.Response:
    """OpenAI's answer to a path or method it does not serve."""
    error: ApiError = not_found(f"{request.method} {request.path}")
    return error.response()
