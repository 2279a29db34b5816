"""``POST /v1/files`` and ``GET /v1/files/{id}``: uploads for fine-tuning, checked as they arrive.

The sandbox keeps what it learned about a file (examples, tokens, the first
format problem; see :mod:`tara.sandbox.training_data`), never its content,
so a large upload costs no memory. Also here: the test-only fault switch
shared by every fine-tuning route (:class:`Faults`), set through
``POST /sandbox/fine_tuning/faults``.
"""

from __future__ import annotations

import functools
import hashlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import BodyPartReader, web

from tara.sandbox.errors import ApiError, bad_request, missing, unavailable
from tara.sandbox.state import STATE, object_body, refuse_unauthorized
from tara.sandbox.training_data import ChatFileChecker, FileCheck

PURPOSES = frozenset({"fine-tune", "assistants", "batch", "vision", "user_data", "evals"})
CHUNK = 1 << 16

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True, slots=True)
class StoredFile:
    """An uploaded file's OpenAI fields and what checking it found."""

    id: str
    filename: str
    bytes: int
    purpose: str
    created_at: int
    check: FileCheck

    def as_json(self) -> dict[str, Any]:
        """OpenAI's ``file`` object."""
        return {
            "id": self.id,
            "object": "file",
            "bytes": self.bytes,
            "created_at": self.created_at,
            "filename": self.filename,
            "purpose": self.purpose,
            "status": "processed",
            "status_details": None,
            "expires_at": None,
        }


@dataclass
class Faults:
    """Test-only: answer the next fine-tuning requests with 503.

    ``before`` requests fail without doing anything; ``after`` requests do
    their work and then fail, like a response lost on the way back.
    """

    before: int = 0
    after: int = 0
    injected: int = 0


@dataclass
class FileStore:
    """Uploaded files by id, and the fault switch."""

    files: dict[str, StoredFile] = field(default_factory=dict)
    faults: Faults = field(default_factory=Faults)
    counter: int = 0

    def new_id(self, prefix: str, seed: int) -> str:
        """A fresh id such as ``file-1a2b...``, reproducible under the sandbox's seed."""
        self.counter += 1
        digest = hashlib.sha256(orjson.dumps([seed, prefix, self.counter])).hexdigest()
        return f"{prefix}-{digest[:24]}"


FILES: web.AppKey[FileStore] = web.AppKey("tara_sandbox_files", FileStore)


def json_response(data: Any, status: int = 200) -> web.Response:
    """A JSON response."""
    return web.Response(body=orjson.dumps(data), status=status, content_type="application/json")


def guarded(handler: Handler) -> Handler:
    """Require the bearer key and apply injected faults around ``handler``."""

    @functools.wraps(handler)
    async def wrapper(request: web.Request) -> web.StreamResponse:
        refused = refuse_unauthorized(request)
        if refused is not None:
            return refused
        faults = request.app[FILES].faults
        if faults.before > 0:
            faults.before -= 1
            faults.injected += 1
            return unavailable().response()
        response = await handler(request)
        if faults.after > 0 and response.status < 400:
            faults.after -= 1
            faults.injected += 1
            return unavailable().response()
        return response

    return wrapper


async def _read_file(part: BodyPartReader) -> tuple[int, FileCheck]:
    checker = ChatFileChecker()
    size = 0
    while chunk := await part.read_chunk(CHUNK):
        size += len(chunk)
        checker.feed(chunk)
    return size, checker.finish()


@guarded
async def upload_file(request: web.Request) -> web.StreamResponse:
    """Store an uploaded file (multipart fields ``file`` and ``purpose``)."""
    if not request.content_type.startswith("multipart/"):
        return bad_request("Expected a multipart/form-data upload.").response()
    reader = await request.multipart()
    purpose: str | None = None
    upload: tuple[str, int, FileCheck] | None = None
    async for part in reader:
        if not isinstance(part, BodyPartReader):
            continue
        if part.name == "purpose":
            purpose = (await part.text()).strip()
        elif part.name == "file":
            size, check = await _read_file(part)
            upload = (part.filename or "upload.jsonl", size, check)
        else:
            await part.release()
    if upload is None:
        return missing("file").response()
    if purpose is None:
        return missing("purpose").response()
    if purpose not in PURPOSES:
        error: ApiError = bad_request(f"'{purpose}' is not a valid purpose.", param="purpose")
        return error.response()
    store = request.app[FILES]
    seed = request.app[STATE].seed
    name, size, check = upload
    stored = StoredFile(store.new_id("file", seed), name, size, purpose, int(time.time()), check)
    store.files[stored.id] = stored
    return json_response(stored.as_json())


@guarded
async def get_file(request: web.Request) -> web.StreamResponse:
    """One file's object, or 404."""
    file_id = request.match_info["file_id"]
    stored = request.app[FILES].files.get(file_id)
    if stored is None:
        error = ApiError(404, f"No such File object: {file_id}", param="id")
        return error.response()
    return json_response(stored.as_json())


async def set_faults(request: web.Request) -> web.Response:
    """``{"before": n, "after": n}``: fail the next n fine-tuning requests with 503."""
    expected = bad_request('Expected {"before": n, "after": n} with counts >= 0.')
    body = await object_body(request, expected)
    if isinstance(body, web.Response):
        return body
    if not all(
        isinstance(body.get(k, 0), int) and body.get(k, 0) >= 0 for k in ("before", "after")
    ):
        return expected.response()
    faults = request.app[FILES].faults
    faults.before = body.get("before", 0)
    faults.after = body.get("after", 0)
    return json_response({"before": faults.before, "after": faults.after})


async def show_faults(request: web.Request) -> web.Response:
    """Faults still pending and how many were injected."""
    refused = refuse_unauthorized(request)
    if refused is not None:
        return refused
    faults = request.app[FILES].faults
    return json_response(
        {"before": faults.before, "after": faults.after, "injected": faults.injected}
    )


def install(app: web.Application) -> None:
    """Add the file store and the file and fault routes to ``app``."""
    app[FILES] = FileStore()
    app.router.add_post("/v1/files", upload_file)
    app.router.add_get("/v1/files/{file_id}", get_file)
    app.router.add_post("/sandbox/fine_tuning/faults", set_faults)
    app.router.add_get("/sandbox/fine_tuning/faults", show_faults)
