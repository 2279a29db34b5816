"""Parsing a chat-completions request once, and rewriting it for the upstream.

:func:`parse_chat_request` is pure: raw body bytes and ASGI headers in, a
:class:`ChatRequest` or a 400 :class:`GatewayError` out (it never raises
anything else, whatever the input). Context values are held to
:mod:`tara.gateway.limits` (length, character set, valid UTF-8) and the body
to its nesting limit, so whatever is routed can be stored and re-encoded.
:meth:`ChatRequest.upstream_body`
renders what the upstream gets: the concrete model, Tara's context keys taken
out of ``metadata``, the student id replaced by its hash, and usage requested
for streams.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import orjson

from tara.gateway import limits
from tara.gateway.errors import GatewayError, bad_request, settled
from tara.gateway.limits import TextLimit

CONTEXT_KEYS = ("subject", "language", "grade", "topic")
"""Tara's keys in body ``metadata``; removed before the body goes upstream."""

_H_USER = b"x-tara-user"
_H_SUBJECT = b"x-tara-subject"
_H_LANGUAGE = b"x-tara-language"
_H_GRADE = b"x-tara-grade"
_H_TOPIC = b"x-tara-topic"
_H_RETRY = b"x-tara-retry"
_CHECKED: dict[bytes, tuple[str, TextLimit]] = {
    _H_USER: ("X-Tara-User", limits.STUDENT_ID),
    _H_SUBJECT: ("X-Tara-Subject", limits.SUBJECT),
    _H_LANGUAGE: ("X-Tara-Language", limits.LANGUAGE),
    _H_GRADE: ("X-Tara-Grade", limits.GRADE),
    _H_TOPIC: ("X-Tara-Topic", limits.TOPIC),
}
"""Headers whose value is stored or keyed on: their canonical name and limit."""
_TARA_HEADERS = frozenset((*_CHECKED, _H_RETRY))
_TRUE = frozenset((b"1", b"true", b"yes"))
_BODY_LIMITS = {
    "subject": limits.SUBJECT,
    "language": limits.LANGUAGE,
    "grade": limits.GRADE,
    "topic": limits.TOPIC,
}


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


def _refuse(where: str, param: str, limit: TextLimit, problem: str) -> GatewayError:
    msg = f"{where} must be {limit.describe()}; {problem}"
    return bad_request(msg, param, code="invalid_value")


def _checked(value: str, param: str, limit: TextLimit) -> str | None:
    """``value`` stripped (``None`` if blank), or a 400 naming ``param`` and the limit."""
    value = value.strip()
    if not value:
        return None
    problem = limit.problem(value)
    if problem is not None:
        raise _refuse(param, param, limit, problem)
    return value


def tara_headers(headers: Iterable[tuple[bytes, bytes]]) -> dict[bytes, str]:
    """The non-empty ``X-Tara-*`` headers of a request (names lower-case, as ASGI gives them).

    Raises a 400 :class:`GatewayError` naming a header whose value breaks its
    limit; ``X-Tara-Retry`` is only compared, never kept, so it maps to ``"1"``
    when it says yes.
    """
    found: dict[bytes, str] = {}
    for name, value in headers:
        if name not in _TARA_HEADERS:
            continue
        value = value.strip()
        if not value:
            continue
        if name == _H_RETRY:
            if value.lower() in _TRUE:
                found[name] = "1"
            continue
        header, limit = _CHECKED[name]
        text = limit.accept(value)
        if text is None:
            raise _refuse(f"header {header}", header, limit, limit.why(value))
        found[name] = text
    return found


def _context(metadata: dict[str, Any], key: str) -> str | None:
    value = metadata.pop(key, None)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, str | int):
        msg = f"metadata.{key} must be a string"
        raise bad_request(msg, f"metadata.{key}")
    return _checked(str(value), f"metadata.{key}", _BODY_LIMITS[key])


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
    if limits.too_deep(raw, body):
        raise bad_request(limits.depth_message(), code="json_too_deep")
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
    student = found.get(_H_USER) or (_checked(user, "user", limits.STUDENT_ID) if user else None)
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
        user_retry=_H_RETRY in found,
    )


def parse_chat_request(
    raw: bytes, headers: Iterable[tuple[bytes, bytes]]
) -> ChatRequest | GatewayError:
    """Parse a request, or say (as a 400) exactly what is wrong with it."""
    try:
        return _parse(raw, headers)
    except GatewayError as exc:
        return settled(exc)
