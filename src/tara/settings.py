"""Typed settings for every part of Tara, from ``TARA_*`` variables and a config file.

Read once at the entry point (``tara.cli``) and passed down; no other module
reads the environment. Precedence, highest first: explicit keyword arguments,
environment variables (``TARA_UPSTREAM__BASE_URL`` for nested fields), the
config file (TOML or YAML), then the defaults below. Every field has a default
that works on a laptop with ``tara sandbox`` running.
"""

from __future__ import annotations

import logging
import tomllib
from pathlib import Path
from typing import Any, ClassVar, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    InitSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from tara.finetune.config import FinetuneSettings
from tara.retrain.config import RetrainSettings
from tara.rollout.config import RolloutSettings
from tara.telemetry.config import TelemetrySettings
from tara.telemetry.stats_config import TelemetryStatsSettings
from tara.triggers.config import TriggerSettings

log = logging.getLogger(__name__)

DEV_CLIENT_KEY = "sk-tara-dev"
DEV_ADMIN_KEY = "sk-tara-admin-dev"
DEV_STUDENT_HASH_KEY = "tara-dev-student-hash-key"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)


class ServerSettings(_Section):
    """Where the gateway listens and what it accepts."""

    host: str = "127.0.0.1"
    """Address the gateway listens on (``tara serve --host`` overrides it)."""
    port: int = Field(8080, ge=0, le=65535)
    """Port the gateway listens on (``tara serve --port`` overrides it)."""
    max_body_bytes: int = Field(2 * 1024 * 1024, gt=0)
    """Largest request body accepted; larger ones get 413 without being read."""
    shutdown_timeout: float = Field(10.0, ge=0)
    """Seconds to drain in-flight requests after SIGTERM before cancelling them."""
    gc_interval: float = Field(300.0, gt=0)
    """Most seconds between the gateway's collections of cyclic garbage; automatic
    collection is off, as its stalls were most of the gateway's tail (``tara.garbage``)."""
    gc_growth_limit: int = Field(250_000, gt=0)
    """Objects allocated since the last collection (and still alive) that trigger one sooner:
    the bound on cyclic garbage between collections."""
    disconnect_watch_after: float = Field(0.02, gt=0)
    """Seconds into a request before the gateway watches for the client leaving; an
    abandoned upstream call runs at most this much longer (a timer is cheaper than a task)."""


class AuthSettings(_Section):
    """Client and admin keys; compared in constant time."""

    enabled: bool = True
    """Require keys; turning it off logs a warning at start-up."""
    client_keys: list[SecretStr] = Field(default_factory=lambda: [SecretStr(DEV_CLIENT_KEY)])
    """Bearer keys the app may use on ``/v1/*`` (JSON list in the variable)."""
    admin_key: SecretStr = SecretStr(DEV_ADMIN_KEY)
    """Bearer key for ``/admin/*`` and the ``tara rollout`` CLI."""
    student_hash_key: SecretStr = SecretStr(DEV_STUDENT_HASH_KEY)
    """HMAC key for student ids: they are stored and sent upstream only as this hash."""


class UpstreamSettings(_Section):
    """The OpenAI-compatible server the gateway forwards to, and how hard it tries."""

    base_url: str = "http://127.0.0.1:8081/v1"
    """OpenAI-compatible base URL (``https://api.openai.com/v1`` in production)."""
    api_key: SecretStr = SecretStr("sk-sandbox")
    """Key sent upstream; never shown to clients, logs or metrics."""
    max_connections: int = Field(4096, gt=0)
    """Size of the one shared upstream connection pool: every open stream holds one, and a
    request that finds the pool full waits for a free connection (1,000 streams per core
    are a measured load, docs/benchmarks.md)."""
    connect_timeout: float = Field(3.0, gt=0)
    """Seconds to open an upstream connection."""
    first_byte_timeout: float = Field(60.0, gt=0)
    """Seconds until the upstream's response headers arrive."""
    idle_timeout: float = Field(30.0, gt=0)
    """Longest silence between two chunks of a streamed answer."""
    total_timeout: float = Field(300.0, gt=0)
    """Longest a whole upstream exchange may take."""
    retry_attempts: int = Field(3, ge=1)
    """Upstream attempts per variant (1 = no retries)."""
    retry_deadline: float = Field(15.0, gt=0)
    """Retries stop once this many seconds have passed since the first attempt."""
    retry_initial_backoff: float = Field(0.05, ge=0)
    """First backoff before a retry (jittered, doubling)."""
    retry_max_backoff: float = Field(2.0, ge=0)
    """Longest backoff between two attempts."""
    retry_after_cap: float = Field(5.0, ge=0)
    """Longest ``Retry-After`` of a 429 that is honoured."""
    fallback_to_stable: bool = True
    """A canary request that still fails after retries is answered by stable."""
    max_sse_event_bytes: int = Field(1024 * 1024, gt=0)
    """Largest unfinished SSE event the gateway holds to observe a stream (token counts,
    answer capture); past it the stream is relayed unobserved and the give-up counted in
    ``tara_telemetry_dropped_total{sink="stream_tap"}``."""

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            msg = "must start with http:// or https://"
            raise ValueError(msg)
        return value.rstrip("/")


class TrackSettings(_Section):
    """A track is what clients name in ``model``; it maps to a stable upstream model."""

    stable_model: str
    """Upstream model that serves the track when no canary applies."""
    description: str = ""
    """Shown nowhere but in the config; for humans."""


def _default_tracks() -> dict[str, TrackSettings]:
    return {"tara-tutor": TrackSettings(stable_model="tara-stable", description="Tara tutor")}


class Settings(BaseSettings):
    """All of Tara's settings. Sections are documented in the README."""

    model_config = SettingsConfigDict(
        env_prefix="TARA_",
        env_nested_delimiter="__",
        extra="forbid",
        frozen=True,
        use_attribute_docstrings=True,
    )
    config_file_data: ClassVar[dict[str, Any]] = {}
    """Settings read from the config file (:func:`load_settings` fills it in a subclass)."""

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    """Logging level of every ``tara`` command."""
    server: ServerSettings = ServerSettings()
    auth: AuthSettings = AuthSettings()
    upstream: UpstreamSettings = UpstreamSettings()
    tracks: dict[str, TrackSettings] = Field(default_factory=_default_tracks)
    """Tracks clients name in ``model``, each with its stable model (``[tracks.NAME]`` tables;
    JSON in the variable)."""
    state_backend: Literal["auto", "memory", "redis"] = "auto"
    """Where shared state lives: ``auto`` is Redis when ``redis_url`` is set, else memory."""
    redis_url: str | None = None
    """Redis for the routing table, window stats, feedback index and leader lease."""
    database_url: str | None = None
    """PostgreSQL URL of the interaction log; without it the log is a SQLite file."""
    redis_namespace: str = "tara"
    """Prefix of every Redis key, so deployments can share one Redis."""
    routing_refresh_seconds: float = Field(0.5, gt=0)
    """How often each gateway polls the routing table's version."""
    subjects: list[str] = Field(default_factory=lambda: ["math", "physics", "chemistry"])
    """Known subjects; others are labelled ``other`` in metrics."""
    languages: list[str] = Field(default_factory=lambda: ["hi", "ta", "en"])
    """Known languages; others are labelled ``other`` in metrics."""
    stats: TelemetryStatsSettings = TelemetryStatsSettings()
    telemetry: TelemetrySettings = TelemetrySettings()
    finetune: FinetuneSettings = FinetuneSettings()
    rollout: RolloutSettings = RolloutSettings()
    triggers: TriggerSettings = TriggerSettings()
    retrain: RetrainSettings = RetrainSettings()

    @property
    def use_redis(self) -> bool:
        """Whether shared state lives in Redis (else in process memory)."""
        if self.state_backend == "auto":
            return self.redis_url is not None
        return self.state_backend == "redis"

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Keyword arguments, then ``TARA_*`` variables, then the config file (if any)."""
        file = InitSettingsSource(settings_cls, cls.config_file_data)
        return (init_settings, env_settings, file)


class ConfigError(Exception):
    """A config file or variable is invalid; the message names the field."""


def read_config_file(path: Path) -> dict[str, Any]:
    """Parse a TOML or YAML config file into a dict."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        msg = f"cannot read config file {path}: {exc.strerror}"
        raise ConfigError(msg) from exc
    try:
        if path.suffix in (".yaml", ".yml"):
            data = yaml.safe_load(text) or {}
        else:
            data = tomllib.loads(text)
    except (tomllib.TOMLDecodeError, yaml.YAMLError) as exc:
        msg = f"config file {path} is not valid {path.suffix.lstrip('.') or 'TOML'}: {exc}"
        raise ConfigError(msg) from exc
    if not isinstance(data, dict):
        msg = f"config file {path} must hold a table of settings"
        raise ConfigError(msg)
    return data


def describe_invalid(exc: ValidationError, what: str, origin: str) -> str:
    """``invalid {what} ({origin}):`` and one line per offending field, dotted path first."""
    lines = [f"invalid {what} ({origin}):"]
    for err in exc.errors():
        field = ".".join(str(p) for p in err["loc"]) or "(root)"
        lines.append(f"  {field}: {err['msg']}")
    return "\n".join(lines)


def load_settings(config: Path | None = None, **overrides: Any) -> Settings:
    """Build settings from the environment, an optional config file and overrides.

    Raises :class:`ConfigError` with every offending field named.
    """
    data = read_config_file(config) if config is not None else {}

    class _WithFile(Settings):
        config_file_data: ClassVar[dict[str, Any]] = data

    origin = f"config file {config} and TARA_* variables" if config else "TARA_* variables"
    try:
        built = _WithFile(**overrides)
    except ValidationError as exc:
        raise ConfigError(describe_invalid(exc, "settings", origin)) from exc
    return Settings.model_validate(built.model_dump())


def warn_about_defaults(settings: Settings) -> list[str]:
    """Return start-up warnings for insecure choices (auth off, built-in dev keys)."""
    warnings: list[str] = []
    if not settings.auth.enabled:
        warnings.append("auth is OFF (auth.enabled=false): any client can call the gateway")
        return warnings
    if any(k.get_secret_value() == DEV_CLIENT_KEY for k in settings.auth.client_keys):
        warnings.append("using the built-in development client key; set TARA_AUTH__CLIENT_KEYS")
    if settings.auth.admin_key.get_secret_value() == DEV_ADMIN_KEY:
        warnings.append("using the built-in development admin key; set TARA_AUTH__ADMIN_KEY")
    if settings.auth.student_hash_key.get_secret_value() == DEV_STUDENT_HASH_KEY:
        warnings.append("using the built-in student-id hash key; set TARA_AUTH__STUDENT_HASH_KEY")
    return warnings
