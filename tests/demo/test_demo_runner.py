"""The runner's pure parts: decision weights and the embedded settings."""

from __future__ import annotations

from pathlib import Path

import pytest

from tara.demo.runner import decision_weights, demo_settings, sandbox_config
from tara.demo.scenario import PACES
from tara.settings import Settings


@pytest.mark.parametrize(
    ("decisions", "weights"),
    [
        (["start", "rollback"], [0.1, 0.0]),
        (["start", "advance", "advance", "succeed"], [0.1, 0.25, 0.5, 1.0]),
        (["start", "pause", "resume", "advance"], [0.1, 0.1, 0.1, 0.25]),
        (["start", "advance", "advance", "promote"], [0.1, 0.25, 0.5, 1.0]),  # past the last
        (["start", "stalled", "abort"], [0.1, 0.1, 0.0]),
        ([], []),
    ],
)
def test_decision_weights(decisions: list[str], weights: list[float]) -> None:
    assert decision_weights(decisions, (0.1, 0.25, 0.5)) == weights


def test_demo_settings_embed_everything_and_keep_the_operators_keys(tmp_path: Path) -> None:
    base = Settings(
        redis_url="redis://127.0.0.1:6379/0",
        database_url="postgresql://x@127.0.0.1/db",
        auth={"client_keys": ["sk-mine"], "admin_key": "sk-admin-mine"},
    )
    cfg = demo_settings(base, "http://127.0.0.1:1234/v1", tmp_path, PACES["real"])
    assert not cfg.use_redis
    assert cfg.database_url is None
    assert cfg.telemetry.sqlite_path == tmp_path / "interactions.db"
    assert cfg.upstream.base_url == "http://127.0.0.1:1234/v1"
    assert [k.get_secret_value() for k in cfg.auth.client_keys] == ["sk-mine"]
    assert cfg.tracks["tara-tutor"].stable_model == "tara-stable"
    assert [s.percent for s in cfg.rollout.stages] == [10, 25, 50]
    assert cfg.stats.bucket_seconds == 1


def test_the_real_pace_uses_the_sandboxs_real_latencies_and_quick_a_fixed_one() -> None:
    real = sandbox_config(PACES["real"]).models["tara-stable"].latency
    quick = sandbox_config(PACES["quick"]).models["tara-stable"].latency
    assert real.ttft_median_ms == 150
    assert real.ttft_sigma > 0
    assert (quick.ttft_median_ms, quick.ttft_sigma, quick.token_delay_ms) == (10, 0, 0)
