"""Parsing a chat-completions request once, and rewriting it for the upstream.

:func:`parse_chat_request` is pure: raw body bytes and ASGI headers in, a
:class:`ChatRequest` or a 400 :class:`GatewayError` out (it never raises
anything else, whatever the input). :meth:`ChatRequest.upstream_body`
renders what the upstream gets: the concrete model, Tara's context keys taken
out of ``metadata``, the student id replaced by its hash, and usage requested
for streams.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import orjson

from tara.gateway.errors import GatewayError, bad_request

CONTEXT_KEYS = ("subject", "language", "grade", "topic")
"""Tara's keys in body ``metadata``; removed before the body goes upstream."""

_H_USER = b"x-tara-user"
_H_SUBJECT = b"x-tara-subject"
_H_LANGUAGE = b"x-tara-language"
_H_GRADE = b"x-tara-grade"
_H_TOPIC = b"x-tara-topic"
_H_RETRY = b"x-tara-retry"
_TARA_HEADERS = frozenset((_H_USER, _H_SUBJECT, _H_LANGUAGE, _H_GRADE, _H_TOPIC, _H_RETRY))
_TRUE = frozenset(("1", "true", "yes"))


@dataclass(slots=True)
class ChatRequest:
    """One parsed request: the body to forward and what Tara needs to route and record it."""

    body: dict[str, Any]
    track: str
    messages: list[dict[str, Any]]
    student_id: str | None
    subject: str | None
    language: str | None
    grade: str | None
    topic: str | None
    """What the question is about, as the app names it (lower-cased); stored with the
    interaction for the trigger rules, never a routing key or a metric label."""
    stream: bool
    client_wants_usage: bool
    user_retry: bool

    def upstream_body(self, model: str, student_hash: str | None) -> bytes:
        """The JSON body for the upstream: the concrete ``model``, ``user`` as the student hash."""
        body = self.body
        body["model"] = model
        if "user" in body:
            if student_hash is None:
                del body["user"]
            else:
                body["user"] = student_hash
        if self.stream:
            options = body.get("stream_options")
            body["stream_options"] = (
                {**options, "include_usage": True}
                if isinstance(options, dict)
                else {"include_usage": True}
            )
        return orjson.dumps(body)


def _text(value: str) -> str | None:
    value = value.strip()
    return value or None


def _header_text(raw: bytes) -> str | None:
    # surrogateescape keeps any byte sequence distinct (and hashable the same everywhere).
    return _text(raw.decode("utf-8", "surrogateescape"))


def tara_headers(headers: Iterable[tuple[bytes, bytes]]) -> dict[bytes, str]:
    """The non-empty ``X-Tara-*`` headers of a request (names lower-case, as ASGI gives them)."""
    found: dict[bytes, str] = {}
    for name, value in headers:
        if name in _TARA_HEADERS:
            text = _header_text(value)
            if text is not None:
                found[name] = text
    return found


def _context(metadata: dict[str, Any], key: str) -> str | None:
    value = metadata.pop(key, None)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, str | int):
        msg = f"metadata.{key} must be a string"
        raise bad_request(msg, f"metadata.{key}")
    return _text(str(value))


def _check_messages(messages: Any) -> list[dict[str, Any]]:
    if not isinstance(messages, list) or not messages:
        raise bad_request("'messages' must be a non-empty array of message objects", "messages")
    for i, message in enumerate(messages):
        if not isinstance(message, dict):
            msg = f"messages[{i}] must be an object"
            raise bad_request(msg, f"messages[{i}]")
        if not isinstance(message.get("role"), str):
            msg = f"messages[{i}].role must be a string"
            raise bad_request(msg, f"messages[{i}].role")
    return messages


def _parse_body(raw: bytes) -> dict[str, Any]:
    if not raw:
        raise bad_request("request body is empty; expected a JSON object")
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        msg = f"request body is not valid JSON: {exc}"
        raise bad_request(msg, code="invalid_json") from None
    if not isinstance(body, dict):
        raise bad_request("request body must be a JSON object")
    return body


def _stream_flags(body: dict[str, Any]) -> tuple[bool, bool]:
    stream = body.get("stream")
    if stream is not None and not isinstance(stream, bool):
        raise bad_request("'stream' must be a boolean", "stream")
    options = body.get("stream_options")
    if options is not None and not isinstance(options, dict):
        raise bad_request("'stream_options' must be an object", "stream_options")
    wants_usage = isinstance(options, dict) and options.get("include_usage") is True
    return bool(stream), wants_usage


def _parse(raw: bytes, headers: Iterable[tuple[bytes, bytes]]) -> ChatRequest:
    body = _parse_body(raw)
    track = body.get("model")
    if not isinstance(track, str) or not track.strip():
        raise bad_request("'model' must name a track (a non-empty string)", "model")
    messages = _check_messages(body.get("messages"))
    stream, wants_usage = _stream_flags(body)
    user = body.get("user")
    if user is not None and not isinstance(user, str):
        raise bad_request("'user' must be a string", "user")
    metadata = body.get("metadata")
    subject = language = grade = topic = None
    if metadata is not None:
        if not isinstance(metadata, dict):
            raise bad_request("'metadata' must be an object", "metadata")
        subject, language, grade, topic = (_context(metadata, k) for k in CONTEXT_KEYS)
        if not metadata:
            del body["metadata"]
    found = tara_headers(headers)
    student = found.get(_H_USER) or (_text(user) if user else None)
    subject = found.get(_H_SUBJECT) or subject
    language = found.get(_H_LANGUAGE) or language
    topic = found.get(_H_TOPIC) or topic
    return ChatRequest(
        body=body,
        track=track,
        messages=messages,
        student_id=student,
        subject=subject.lower() if subject else None,
        language=language.lower() if language else None,
        grade=found.get(_H_GRADE) or grade,
        topic=topic.lower() if topic else None,
        stream=stream,
        client_wants_usage=wants_usage,
        user_retry=found.get(_H_RETRY, "").lower() in _TRUE,
    )


def parse_chat_request(
    raw: bytes, headers: Iterable[tuple[bytes, bytes]]
) -> ChatRequest | GatewayError:
    """Parse a request, or say (as a 400) exactly what is wrong with it."""
    try:
        return _parse(raw, headers)
    except GatewayError as exc:
        return exc
