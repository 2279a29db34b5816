"""``tara rollout``: steer rollouts through the gateway's admin API.

An HTTP client of ``/admin/rollouts`` (so every replica and the controller
see the same records), authenticated with ``auth.admin_key``. Output is a
rich table, or the API's JSON with ``--json``. Exit codes: 0 done, 1 refused
(the API answered 4xx; its message is printed), 2 the gateway could not be
reached or its state store is down (5xx).
"""

from __future__ import annotations

import argparse
import json
import sys
import urllib.parse
from collections.abc import Mapping, Sequence
from typing import Any

import httpx
from rich.console import Console
from rich.table import Table

from tara.settings import Settings

OK, REFUSED, UNREACHABLE = 0, 1, 2
TRANSITIONS = ("promote", "pause", "resume", "rollback", "abort")


class AdminApiError(Exception):
    """The call did not succeed; ``exit_code`` says how."""

    def __init__(self, exit_code: int, message: str) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def base_url(args: argparse.Namespace, settings: Settings) -> str:
    """``--url``, else the gateway's own listen address from the settings."""
    url: str | None = getattr(args, "url", None)
    if url:
        return url.rstrip("/")
    host = settings.server.host
    if host in ("0.0.0.0", "::"):  # noqa: S104 - a listen address, reached via loopback
        host = "127.0.0.1"
    return f"http://{host}:{settings.server.port}"


def call(
    url: str,
    admin_key: str,
    method: str,
    path: str,
    body: Mapping[str, Any] | None = None,
    timeout: float = 10.0,
) -> Any:
    """One admin API call; returns the decoded JSON or raises :class:`AdminApiError`."""
    headers = {"Authorization": f"Bearer {admin_key}"}
    try:
        response = httpx.request(method, url + path, json=body, headers=headers, timeout=timeout)
    except (httpx.HTTPError, ValueError) as exc:
        raise AdminApiError(UNREACHABLE, f"cannot reach the gateway at {url}: {exc}") from exc
    if response.is_error:
        message = _error_message(response.content) or response.reason_phrase
        code = REFUSED if response.status_code < 500 else UNREACHABLE
        raise AdminApiError(code, f"{response.status_code}: {message}")
    try:
        return response.json()
    except ValueError as exc:
        msg = f"the gateway at {url} answered {path} with something other than JSON"
        raise AdminApiError(UNREACHABLE, msg) from exc


def _error_message(raw: bytes) -> str | None:
    try:
        message = json.loads(raw)["error"]["message"]
    except (ValueError, KeyError, TypeError):
        return None
    return str(message)


def duration(seconds: float | None) -> str:
    """``2d 4h``, ``3h 5m``, ``4m 10s``, ``12s``; ``-`` for none."""
    if seconds is None:
        return "-"
    s = round(seconds)
    days, s = divmod(s, 86_400)
    hours, s = divmod(s, 3_600)
    minutes, s = divmod(s, 60)
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes}m"
    if minutes:
        return f"{minutes}m {s}s"
    return f"{s}s"


def _weight(r: Mapping[str, Any]) -> str:
    weight = f"{r['weight_percent']:g}%"
    nxt = r.get("next_weight_percent")
    return weight if nxt is None else f"{weight} → {nxt:g}%"


def rollouts_table(rollouts: Sequence[Mapping[str, Any]]) -> Table:
    """One row per rollout."""
    table = Table(title="Rollouts")
    for column in ("id", "track", "segment", "phase", "stage", "weight", "time left", "models"):
        table.add_column(column)
    for r in rollouts:
        table.add_row(
            r["id"],
            r["track"],
            r["segment"],
            r["phase"],
            f"{r['stage']}/{r['stages']}",
            _weight(r),
            duration(r["time_left_seconds"]),
            f"{r['candidate_model']} (stable {r['stable_model']})",
        )
    return table


def _number(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def live_table(live: Mapping[str, Any]) -> Table:
    """The analysis checks: outcome, the numbers compared and their confidence bounds."""
    analysis = live["analysis"]
    title = (
        f"Canary vs stable: {analysis['outcome']} "
        f"(fail at {live['fail_confidence']:.0%}, pass at {live['pass_confidence']:.0%})"
    )
    table = Table(title=title)
    for column in ("check", "outcome", "evidence"):
        table.add_column(column)
    for m in analysis["measurements"]:
        evidence = ", ".join(f"{k}={_number(v)}" for k, v in m["evidence"].items())
        table.add_row(m["check"], m["outcome"], evidence)
    comparison = live["comparison"]
    for key in ("rating_improvement", "p95_latency_improvement", "retry_rate_reduction"):
        table.add_row(key, "", _number(comparison.get(key)))
    return table


def show_rollout(console: Console, r: Mapping[str, Any]) -> None:
    """A rollout's status: where it is, the live comparison, its latest decisions."""
    console.print(rollouts_table([r]))
    live = r.get("live")
    if live is not None and "error" in live:
        console.print(f"live numbers: {live['error']}")
    elif live is not None:
        console.print(live_table(live))
    history = r.get("history") or []
    if history:
        table = Table(title="Decisions")
        for column in ("at", "decision", "actor", "reason"):
            table.add_column(column)
        for d in history[-10:]:
            table.add_row(f"{d['at']:.0f}", d["decision"], d["actor"], d["reason"])
        console.print(table)


def _request(args: argparse.Namespace) -> tuple[str, str, dict[str, Any] | None]:
    """Method, path and body of the API call for this command."""
    action = args.rollout_command
    if action == "status":
        if args.id:
            return "GET", f"/admin/rollouts/{urllib.parse.quote(args.id, safe='')}", None
        query = "?active=true" if args.active else ""
        return "GET", f"/admin/rollouts{query}", None
    if action == "start":
        body = {"track": args.track, "candidate": args.candidate}
        body.update({k: v for k in ("subject", "language") if (v := getattr(args, k))})
        return "POST", "/admin/rollouts", body
    rid = urllib.parse.quote(args.id, safe="")
    return "POST", f"/admin/rollouts/{rid}/{action}", {"reason": args.reason or None}


def _warn_without_leader(url: str, admin_key: str) -> None:
    """Say so when no controller leads on the gateway's shared state (it may start later).

    The gateway itself refuses a start that no controller could ever judge.
    """
    try:
        state = call(url, admin_key, "GET", "/admin/state")
    except AdminApiError as exc:
        if exc.exit_code == UNREACHABLE:
            raise
        return  # a gateway that does not report its state
    if state.get("shared") and state.get("controller", {}).get("leading") is False:
        namespace = state.get("namespace")
        print(
            f"warning: no controller leads on namespace {namespace!r} right now; the canary "
            "gets traffic, but nothing judges it until `tara controller` runs with the "
            "gateway's TARA_REDIS_URL and TARA_REDIS_NAMESPACE",
            file=sys.stderr,
        )


def rollout_command(args: argparse.Namespace, settings: Settings) -> int:
    """Entry point of ``tara rollout ...``."""
    console = Console()
    method, path, body = _request(args)
    url = base_url(args, settings)
    key = settings.auth.admin_key.get_secret_value()
    try:
        if args.rollout_command == "start":
            _warn_without_leader(url, key)
        result = call(url, key, method, path, body)
    except AdminApiError as exc:
        print(f"tara rollout {args.rollout_command}: {exc}", file=sys.stderr)
        return exc.exit_code
    if args.json:
        print(json.dumps(result, indent=2))
    elif isinstance(result, dict) and result.get("object") == "list":
        if result["data"]:
            console.print(rollouts_table(result["data"]))
        else:
            console.print("no rollouts")
    else:
        show_rollout(console, result)
    return OK
