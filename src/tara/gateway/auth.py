"""Bearer-key checks for clients (``/v1/*``) and admins (``/admin/*``).

Keys are compared in constant time against every configured key (no early
exit), so response timing reveals neither which key nearly matched nor how
many keys there are. :class:`KeyAuth` is a plain ASGI middleware; probes and
``/metrics`` stay open.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable, Iterable, Sequence

from pydantic import SecretStr
from starlette.types import ASGIApp, Receive, Scope, Send

from tara.gateway.errors import GatewayError, send_error

_BEARER = b"bearer "


class KeyChecker:
    """Holds a set of keys and says, in constant time, whether a token is one of them."""

    def __init__(self, keys: Iterable[SecretStr | str]) -> None:
        self._keys = tuple(
            (k.get_secret_value() if isinstance(k, SecretStr) else k).encode("utf-8") for k in keys
        )

    def check(self, token: bytes | None) -> bool:
        """Whether ``token`` equals one of the keys."""
        if token is None:
            return False
        ok = False
        for key in self._keys:
            # Non-short-circuit or: every key is compared whatever the outcome.
            ok |= hmac.compare_digest(key, token)
        return ok


def bearer_token(headers: Iterable[tuple[bytes, bytes]]) -> bytes | None:
    """The token of an ``Authorization: Bearer <token>`` header, if any."""
    for name, value in headers:
        if name == b"authorization":
            if value[:7].lower() == _BEARER:
                return value[7:].strip()
            return None
    return None


def check_admin(scope: Scope, admin: KeyChecker) -> GatewayError | None:
    """The error to answer an admin request with, or ``None`` when its key is the admin key.

    Admin routes call this (or sit behind :class:`KeyAuth`) before doing anything.
    """
    if admin.check(bearer_token(scope["headers"])):
        return None
    return unauthorized("admin key required")


def unauthorized(message: str = "invalid or missing API key") -> GatewayError:
    """A 401 with the header clients use to learn the scheme."""
    return GatewayError(
        401, message, code="invalid_api_key", headers=[(b"www-authenticate", b"Bearer")]
    )


class KeyAuth:
    """ASGI middleware: requests under each protected prefix need one of its keys.

    ``rules`` pairs a path prefix with the checker for it; the first matching
    prefix decides. Paths matching no rule pass through unchecked.
    ``on_reject`` hears the status of each refusal (for a metric).
    """

    def __init__(
        self,
        app: ASGIApp,
        rules: Sequence[tuple[str, KeyChecker]],
        on_reject: Callable[[int], None] | None = None,
    ) -> None:
        self.app = app
        self.rules = tuple(rules)
        self.on_reject = on_reject

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Check the key, then hand over to the wrapped app."""
        if scope["type"] == "http":
            path: str = scope["path"]
            for prefix, checker in self.rules:
                if path.startswith(prefix):
                    if not checker.check(bearer_token(scope["headers"])):
                        if self.on_reject is not None:
                            self.on_reject(401)
                        await send_error(send, unauthorized())
                        return
                    break
        await self.app(scope, receive, send)
