"""Loading trained adapters into a vLLM server: its runtime LoRA endpoints.

vLLM serves LoRA adapters when started with ``--enable-lora``; with
``VLLM_ALLOW_RUNTIME_LORA_UPDATING=True`` it also answers
``POST /v1/load_lora_adapter {"lora_name", "lora_path"}`` and
``POST /v1/unload_lora_adapter {"lora_name"}``. A loaded adapter is then a
model like any other: ``GET /v1/models`` lists it and chat completions
answer for its name. ``lora_path`` is read by the server, so it must be a
path on the server's file system. ``tara sandbox`` emulates both endpoints.

A load of a name that is already loaded is answered 400 by vLLM; that is
success here (a retried load, or a second ``status`` that raced the first).
"""

from __future__ import annotations

import aiohttp
import orjson

ALREADY_LOADED = "has already been loaded"
"""Part of vLLM's message when ``lora_name`` is taken."""


class AdapterServerError(Exception):
    """The server refused or could not be reached; ``transient`` if retrying may help."""

    def __init__(self, message: str, *, transient: bool, status: int | None = None) -> None:
        super().__init__(message)
        self.transient = transient
        self.status = status


def _message(status: int, body: str) -> str:
    try:
        data = orjson.loads(body)
        error = data.get("error") if isinstance(data, dict) else None
        text = error.get("message") if isinstance(error, dict) else data.get("message")
    except (orjson.JSONDecodeError, AttributeError):
        text = None
    return str(text or body.strip() or f"HTTP {status}")


async def _post(
    server_url: str, api_key: str | None, route: str, body: dict[str, str], seconds: float
) -> tuple[int, str]:
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    url = f"{server_url.rstrip('/')}/{route}"
    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=seconds)) as session,
            session.post(url, json=body, headers=headers) as response,
        ):
            return response.status, await response.text()
    except (aiohttp.ClientError, TimeoutError) as exc:
        msg = f"cannot reach {url}: {exc or type(exc).__name__}"
        raise AdapterServerError(msg, transient=True) from exc


def _refusal(what: str, status: int, text: str) -> AdapterServerError:
    hint = ""
    if status == 404 and not any(m in text for m in ("No adapter found", "cannot be found")):
        hint = (
            " (is the server vLLM started with --enable-lora and "
            "VLLM_ALLOW_RUNTIME_LORA_UPDATING=True?)"
        )
    transient = status in (408, 409, 429) or status >= 500
    return AdapterServerError(
        f"{what}: HTTP {status}: {text}{hint}", transient=transient, status=status
    )


async def load_adapter(
    server_url: str, api_key: str | None, name: str, path: str, seconds: float = 120.0
) -> bool:
    """Load the adapter at ``path`` (on the server) as model ``name``; False if it already was."""
    status, body = await _post(
        server_url, api_key, "load_lora_adapter", {"lora_name": name, "lora_path": path}, seconds
    )
    text = _message(status, body)
    if status == 200:
        return True
    if status == 400 and ALREADY_LOADED in text:
        return False
    raise _refusal(f"loading adapter {name!r} from {path}", status, text)


async def unload_adapter(
    server_url: str, api_key: str | None, name: str, seconds: float = 60.0
) -> bool:
    """Stop serving adapter ``name``; False if the server did not have it."""
    status, body = await _post(
        server_url, api_key, "unload_lora_adapter", {"lora_name": name}, seconds
    )
    text = _message(status, body)
    if status == 200:
        return True
    if status == 404 and "cannot be found" in text:
        return False
    raise _refusal(f"unloading adapter {name!r}", status, text)
