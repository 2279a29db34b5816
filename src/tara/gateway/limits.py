"""Input limits: how long, and made of which characters, each client-supplied value may be.

Every value a client sends that the gateway stores (interaction log, Redis) or
uses as a key (window stats, request index, retry detection, metric labels,
the student hash) is checked here before routing. A value past its limit is
refused with a 400 naming the field and the limit, never cleaned: a silently
cleaned subject would land in a segment nobody asked for and hide the app's
bug, and a refused request costs nothing to store. The values are listed in
``docs/reliability.md`` ("Input limits"); a test keeps the two in step.
"""

from __future__ import annotations

import re
from typing import Any

MAX_JSON_DEPTH = 64
"""Deepest nesting of arrays and objects in a JSON body (the body itself is level 1).

A chat request needs a handful of levels (tool schemas a few more); orjson
cannot encode past 254, so a deeper body would fail after it was routed."""

MAX_TAGS = 16
"""Most tags one rating may carry."""


class TextLimit:
    """The rule for one text value: 1 to ``max_chars`` characters from one set.

    ``allowed`` names the set in words (errors and docs quote it). With
    ``ascii_class`` (a regex character class) only those ASCII characters are
    allowed; without it any printable character is, and with ``line_breaks``
    tab, CR and LF too. Printable excludes every control and format
    character, NUL included, which PostgreSQL cannot store. :meth:`accept`
    is the cheap check of the request path; :meth:`problem` and :meth:`why`
    explain a refusal.
    """

    __slots__ = ("_bytes", "_text", "allowed", "ascii_class", "line_breaks", "max_chars")

    def __init__(
        self,
        max_chars: int,
        allowed: str,
        ascii_class: str | None = None,
        *,
        line_breaks: bool = False,
    ) -> None:
        self.max_chars = max_chars
        self.allowed = allowed
        self.ascii_class = ascii_class
        self.line_breaks = line_breaks
        self._text: re.Pattern[str] | None = None
        self._bytes: re.Pattern[bytes] | None = None
        if ascii_class is not None:
            pattern = f"[{ascii_class}]{{1,{max_chars}}}"
            self._text = re.compile(pattern)
            self._bytes = re.compile(pattern.encode("ascii"))

    def describe(self) -> str:
        """The rule in words: ``1 to 64 characters: ASCII letters, ...``."""
        return f"1 to {self.max_chars} characters: {self.allowed}"

    def json_schema(self) -> dict[str, Any]:
        """The rule as JSON Schema string keywords (for the OpenAPI document)."""
        schema: dict[str, Any] = {"minLength": 1, "maxLength": self.max_chars}
        if self.ascii_class is not None:
            schema["pattern"] = f"^[{self.ascii_class}]{{1,{self.max_chars}}}$"
        return schema

    def _fits(self, value: str) -> bool:
        if self._text is not None:
            return self._text.fullmatch(value) is not None
        if not value or len(value) > self.max_chars:
            return False
        if value.isprintable():
            return True
        return self.line_breaks and value.translate(_LINE_BREAKS).isprintable()

    def accept(self, raw: bytes) -> str | None:
        """The text of header bytes that keep the rule, else ``None`` (see :meth:`why`)."""
        if self._bytes is not None:
            # Letters and digits alone (almost every value) need no regex.
            if (raw.isalnum() and len(raw) <= self.max_chars) or self._bytes.fullmatch(raw):
                return raw.decode("ascii")
            return None
        if raw.isascii():
            text = raw.decode("ascii")
        else:
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError:
                return None
        return text if self._fits(text) else None

    def problem(self, value: str) -> str | None:
        """What is wrong with ``value``, or ``None`` when it is allowed."""
        if self._fits(value):
            return None
        if not value:
            return "it is empty"
        if len(value) > self.max_chars:
            return f"it is {len(value)} characters long"
        return "it holds a character outside that set"

    def why(self, raw: bytes) -> str:
        """What is wrong with header bytes that :meth:`accept` refused."""
        if len(raw) > self.max_chars * (1 if self._bytes is not None else 4):
            return f"it is {len(raw)} bytes long"  # too long however it is read
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            return "it is not valid UTF-8"
        return self.problem(text) or "it holds a character outside that set"


_LINE_BREAKS = str.maketrans("", "", "\t\r\n")

STUDENT_ID = TextLimit(128, "printable characters, any script (no control characters)")
"""``X-Tara-User`` / body ``user``: hashed before it is stored or sent on."""
SUBJECT = TextLimit(64, "ASCII letters, digits, space, '_', '.', '-'", r"A-Za-z0-9 _.\-")
"""``X-Tara-Subject`` / ``metadata.subject``: a segment key and a metric label."""
LANGUAGE = TextLimit(35, "ASCII letters, digits, '_', '-' (a BCP 47 tag)", r"A-Za-z0-9_\-")
"""``X-Tara-Language`` / ``metadata.language``: a segment key and a metric label."""
GRADE = TextLimit(32, "ASCII letters, digits, space, '_', '.', '-'", r"A-Za-z0-9 _.\-")
"""``X-Tara-Grade`` / ``metadata.grade``: stored with the interaction."""
TOPIC = TextLimit(64, "ASCII letters, digits, space, '_', '.', '-'", r"A-Za-z0-9 _.\-")
"""``X-Tara-Topic`` / ``metadata.topic``: stored with the interaction, counted by the triggers."""
REQUEST_ID = TextLimit(128, "ASCII letters, digits, '_', '.', ':', '-'", r"A-Za-z0-9_.:\-")
"""Feedback ``request_id``: a request-index key."""
COMMENT = TextLimit(
    2000, "printable characters, any script, tabs and line breaks", line_breaks=True
)
"""Feedback ``comment``: stored with the rating."""


def too_deep(raw: bytes, value: Any, limit: int = MAX_JSON_DEPTH) -> bool:
    """Whether JSON ``value`` (parsed from ``raw``) nests deeper than ``limit`` levels.

    Nesting cannot exceed the number of opening brackets, so a body with few
    of them (almost every chat request) is cleared by two byte counts in C;
    only the others are walked.
    """
    if not isinstance(value, dict | list) or raw.count(b"[") + raw.count(b"{") <= limit:
        return False
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, level = stack.pop()
        if level > limit:
            return True
        for child in node.values() if isinstance(node, dict) else node:
            if isinstance(child, dict | list):
                stack.append((child, level + 1))
    return False


def depth_message(limit: int = MAX_JSON_DEPTH) -> str:
    """The error message for a body past the nesting limit."""
    return f"the JSON body nests arrays and objects deeper than the limit of {limit} levels"
