"""Every Redis key prefix the project uses, in one place (arq style), and how names read back.

All keys live below ``{namespace}:`` (setting ``redis_namespace``, default
``tara``) so that several deployments or test runs can share one Redis.
"""

ROUTING_TABLE = "routing:table"
ROUTING_VERSION = "routing:version"
"""Routing table JSON and its monotonically increasing version."""

WINDOWS = "win"
"""Window stats hashes: ``win:{track}:{segment}:{variant}:{bucket_start}``."""

INTERACTIONS = "ix"
"""Cross-replica interaction index for feedback joins: ``ix:{request_id}``."""

USER_RETRY = "uretry"
"""Recent questions per student for user-retry detection."""

ROLLOUTS = "rollouts"
"""Rollout records (JSON) keyed by rollout id."""

RUNS = "runs"
"""Fine-tuning runs of the loop (JSON) keyed by run id, and their revisions."""

TRIGGERS = "triggers"
"""The triggers' ledger: run start times per scope and the latest evaluation."""

LEADER = "leader"
"""The controller's leader lease and fencing token."""


def key(namespace: str, *parts: str) -> str:
    """Join a namespace and key parts with ``:``."""
    return ":".join((namespace, *parts))


def text(value: bytes | str) -> str:
    """A hash field or value as Redis returned it (bytes unless the client decodes) as text."""
    return value.decode() if isinstance(value, bytes) else value
