"""The gateway's own OpenAPI document, served at ``GET /openapi.json``.

It describes what the gateway accepts, not OpenAI's whole API: the chat
route's fields that Tara reads (the rest pass through untouched), the
``X-Tara-*`` headers with their limits from :mod:`tara.gateway.limits`, the
feedback body (:class:`~tara.gateway.feedback.FeedbackBody` itself), the
admin rollout routes, the models list and the probes, every error in
OpenAI's shape. Fuzzers (schemathesis in the test suite) and client
generators read it. It is behind the client key (the admin key works too):
anyone who may call the API may read its description, the open internet
may not. The document is built once, at import.
"""

from __future__ import annotations

from typing import Any

import orjson
from pydantic import BaseModel, ConfigDict, Field
from pydantic.json_schema import models_json_schema
from starlette.requests import Request
from starlette.responses import Response

from tara.gateway import limits
from tara.gateway.feedback import FeedbackBody
from tara.gateway.limits import TextLimit
from tara.gateway.rejections import CHAT_PATH

OPENAPI_PATH = "/openapi.json"

_REF = "#/components/schemas/{model}"


def _context(limit: TextLimit, description: str) -> Any:
    return Field(None, description=description, json_schema_extra=limit.json_schema())


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow", use_attribute_docstrings=True)


class ChatMessage(_Open):
    """One message; fields besides ``role`` go to the upstream as they are."""

    role: str
    """``system``, ``user``, ``assistant``, ``tool`` ..."""


class StreamOptions(_Open):
    """OpenAI's stream options; the gateway always asks the upstream for usage."""

    include_usage: bool | None = None
    """Whether the client wants the usage chunk at the end of the stream."""


class TaraContext(_Open):
    """Body ``metadata``: Tara's keys are taken out before forwarding, the rest passes."""

    subject: str | None = _context(limits.SUBJECT, "Subject (X-Tara-Subject wins).")
    language: str | None = _context(limits.LANGUAGE, "A BCP 47 tag (X-Tara-Language wins).")
    grade: str | None = _context(limits.GRADE, "The student's grade (X-Tara-Grade wins).")


class ChatRequestBody(_Open):
    """What the gateway reads of a chat-completions request; other fields pass through."""

    model: str = Field(min_length=1, examples=["tara-tutor"])
    """A track (see ``GET /v1/models``), not a concrete model."""
    messages: list[ChatMessage] = Field(min_length=1)
    """The conversation, at least one message."""
    stream: bool | None = None
    """Stream the answer as server-sent events."""
    stream_options: StreamOptions | None = None
    user: str | None = Field(None, json_schema_extra=limits.STUDENT_ID.json_schema())
    """The student id (``X-Tara-User`` wins); replaced by its hash before forwarding."""
    metadata: TaraContext | None = None


class RolloutStart(BaseModel):
    """``POST /admin/rollouts``."""

    model_config = ConfigDict(use_attribute_docstrings=True)

    track: str = Field(min_length=1)
    """The track to roll the candidate out on."""
    candidate: str = Field(min_length=1)
    """The upstream model to try as the canary."""
    subject: str | None = None
    """Limit the rollout to one subject."""
    language: str | None = None
    """Limit the rollout to one language."""
    actor: str | None = None
    """Who starts it (for the history)."""


class RolloutAction(BaseModel):
    """``POST /admin/rollouts/{rollout_id}/{action}``."""

    model_config = ConfigDict(use_attribute_docstrings=True)

    reason: str | None = None
    """Why (kept with the decision)."""
    actor: str | None = None
    """Who acts (for the history)."""


_ERROR = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["message", "type", "code"],
            "properties": {
                "message": {"type": "string", "minLength": 1},
                "type": {"type": "string"},
                "code": {"type": ["string", "null"]},
                "param": {"type": ["string", "null"]},
            },
        }
    },
}
_OBJECT = {"type": "object"}
_WHY = {
    400: "Invalid JSON, or a value past its limit (the message names it)",
    401: "Missing or wrong key",
    404: "Unknown track, request id, rollout or route",
    405: "Wrong method",
    409: "A transition the rollout cannot make, or an overlapping rollout",
    413: "Body too large",
    422: "A field is missing, of the wrong type or out of range",
    503: "A store is unreachable; retry later",
}


def _responses(ok: int, ok_body: dict[str, Any], *errors: int) -> dict[str, Any]:
    out: dict[str, Any] = {str(ok): {"description": "OK", "content": ok_body}}
    for status in errors:
        content = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
        out[str(status)] = {"description": _WHY[status], "content": content}
    return out


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


def _body(schema: str, *, required: bool = True) -> dict[str, Any]:
    return {"required": required, "content": _json({"$ref": f"#/components/schemas/{schema}"})}


def _header(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"name": name, "in": "header", "schema": schema, "description": description}


_CHAT_HEADERS = [
    *(
        _header(name, {"type": "string", **limit.json_schema()}, limit.describe())
        for name, limit in (
            ("X-Tara-User", limits.STUDENT_ID),
            ("X-Tara-Subject", limits.SUBJECT),
            ("X-Tara-Language", limits.LANGUAGE),
            ("X-Tara-Grade", limits.GRADE),
        )
    ),
    _header(
        "X-Tara-Retry",
        {"type": "string", "enum": ["1", "0", "true", "false", "yes", "no"]},
        "1, true or yes marks a regenerate tap (a user retry).",
    ),
]


def _paths() -> dict[str, Any]:
    client: list[dict[str, list[str]]] = [{"client": []}]
    admin: list[dict[str, list[str]]] = [{"admin": []}]
    rollout_id = {
        "name": "rollout_id",
        "in": "path",
        "required": True,
        "schema": {"type": "string"},
    }
    action = {
        "name": "action",
        "in": "path",
        "required": True,
        "schema": {"type": "string", "enum": ["promote", "pause", "resume", "rollback", "abort"]},
    }
    completion = {
        "application/json": {"schema": _OBJECT},
        "text/event-stream": {"schema": {"type": "string"}},
    }
    return {
        CHAT_PATH: {
            "post": {
                "summary": "OpenAI chat completions through a track (streamed or not)",
                "security": client,
                "parameters": _CHAT_HEADERS,
                "requestBody": _body("ChatRequestBody"),
                # 502-504 only when the upstream fails after retries and fallback.
                "responses": _responses(200, completion, 400, 401, 404, 413),
            }
        },
        "/v1/feedback": {
            "post": {
                "summary": "A student's rating of an answer",
                "security": client,
                "requestBody": _body("FeedbackBody"),
                "responses": _responses(200, _json(_OBJECT), 400, 401, 404, 413, 422, 503),
            }
        },
        "/v1/models": {
            "get": {
                "summary": "The tracks",
                "security": client,
                "responses": _responses(200, _json(_OBJECT), 401),
            }
        },
        "/admin/rollouts": {
            "get": {
                "summary": "Every rollout",
                "security": admin,
                "parameters": [
                    {"name": "track", "in": "query", "schema": {"type": "string"}},
                    {"name": "active", "in": "query", "schema": {"type": "string"}},
                ],
                "responses": _responses(200, _json(_OBJECT), 401, 503),
            },
            "post": {
                "summary": "Start a rollout",
                "security": admin,
                "requestBody": _body("RolloutStart"),
                "responses": _responses(201, _json(_OBJECT), 400, 401, 409, 413, 422, 503),
            },
        },
        "/admin/rollouts/{rollout_id}": {
            "get": {
                "summary": "One rollout, with live numbers",
                "security": admin,
                "parameters": [rollout_id],
                "responses": _responses(200, _json(_OBJECT), 401, 404, 503),
            }
        },
        "/admin/rollouts/{rollout_id}/{action}": {
            "post": {
                "summary": "Promote, pause, resume, roll back or abort a rollout",
                "security": admin,
                "parameters": [rollout_id, action],
                "requestBody": _body("RolloutAction", required=False),
                "responses": _responses(200, _json(_OBJECT), 400, 401, 404, 409, 413, 422, 503),
            }
        },
        "/healthz": {"get": {"summary": "Liveness", "responses": _responses(200, _json(_OBJECT))}},
        "/readyz": {
            "get": {
                "summary": "Readiness",
                "responses": {
                    **_responses(200, _json(_OBJECT)),
                    "503": {"description": "Starting or stopping", "content": _json(_OBJECT)},
                },
            }
        },
        "/metrics": {
            "get": {
                "summary": "Prometheus exposition",
                "responses": {"200": {"description": "OK", "content": {"text/plain": {}}}},
            }
        },
    }


def openapi_document() -> dict[str, Any]:
    """The OpenAPI 3.1 document of the gateway's routes."""
    models: list[tuple[type[BaseModel], Any]] = [
        (ChatRequestBody, "validation"),
        (FeedbackBody, "validation"),
        (RolloutStart, "validation"),
        (RolloutAction, "validation"),
    ]
    _, defs = models_json_schema(models, ref_template=_REF)
    schemas = {**defs.get("$defs", {}), "Error": _ERROR}
    bearer = {"type": "http", "scheme": "bearer"}
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Tara gateway",
            "version": "1",
            "description": "An OpenAI-compatible gateway with canary rollouts. Errors are "
            'OpenAI-shaped: {"error": {"message", "type", "code", "param"}}.',
        },
        "paths": _paths(),
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "client": {**bearer, "description": "a client key (auth.client_keys)"},
                "admin": {**bearer, "description": "the admin key (auth.admin_key)"},
            },
        },
    }


_BODY = orjson.dumps(openapi_document())


async def openapi_endpoint(_request: Request) -> Response:
    """``GET /openapi.json``."""
    return Response(_BODY, media_type="application/json")
