"""Sandbox config: built-in models, models files (TOML/YAML) and errors that name the field."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from tara.sandbox.config import (
    Errors,
    ModelBehaviour,
    config_from_dict,
    default_config,
    load_sandbox_config,
    zero_latency,
)
from tara.settings import ConfigError


def test_builtin_models_tell_the_rollout_story() -> None:
    models = default_config().models
    stable, good = models["tara-stable"], models["tara-candidate-good"]
    bad, slow, fast = (
        models["tara-candidate-bad"],
        models["tara-candidate-slow"],
        models["bench-fast"],
    )
    assert good.quality > stable.quality > bad.quality
    assert slow.quality == stable.quality
    assert slow.latency.ttft_median_ms == pytest.approx(2.5 * stable.latency.ttft_median_ms)
    assert slow.latency.token_delay_ms == pytest.approx(2.5 * stable.latency.token_delay_ms)
    assert bad.errors.rate == pytest.approx(0.2)
    assert stable.errors.rate == good.errors.rate == fast.errors.rate == 0
    assert fast.latency.ttft_median_ms == fast.latency.token_delay_ms == 0
    assert fast.max_sentences == 1
    assert default_config().api_keys == []


def test_zero_latency_keeps_everything_else() -> None:
    config = zero_latency(default_config())
    for name, model in config.models.items():
        assert model.latency.ttft_median_ms == model.latency.token_delay_ms == 0
        assert model.quality == default_config().models[name].quality
        assert model.errors == default_config().models[name].errors


def test_no_file_means_builtins() -> None:
    assert load_sandbox_config(None) == default_config()


def test_toml_file_merges_onto_builtins(tmp_path: Path) -> None:
    path = tmp_path / "models.toml"
    path.write_text(
        'api_keys = ["sk-a"]\n'
        "[models.tara-stable]\nquality = 0.6\n"
        "[models.tara-stable.latency]\nttft_median_ms = 20\n"
        "[models.tara-candidate-bad.errors]\nkinds = { hang = 1 }\n"
        '[models.my-model]\nlanguage = "ta"\n',
        encoding="utf-8",
    )
    config = load_sandbox_config(path)
    stable = config.models["tara-stable"]
    assert (stable.quality, stable.latency.ttft_median_ms) == (0.6, 20)
    assert (
        stable.latency.token_delay_ms
        == default_config().models["tara-stable"].latency.token_delay_ms
    )
    bad = config.models["tara-candidate-bad"]
    assert bad.errors.kinds == {"hang": 1}
    assert bad.errors.rate == pytest.approx(0.2)
    assert config.models["my-model"] == ModelBehaviour(language="ta")
    assert config.api_keys == ["sk-a"]
    assert "bench-fast" in config.models


def test_yaml_file_without_builtins(tmp_path: Path) -> None:
    path = tmp_path / "models.yaml"
    path.write_text(
        "builtin_models: false\nmodels:\n  only:\n    quality: 0.9\n    errors: {rate: 0.1}\n",
        encoding="utf-8",
    )
    config = load_sandbox_config(path)
    assert list(config.models) == ["only"]
    assert config.models["only"].errors.rate == pytest.approx(0.1)


def test_bad_field_names_its_path(tmp_path: Path) -> None:
    path = tmp_path / "models.toml"
    path.write_text(
        "[models.tara-stable.latency]\nttft_mediam_ms = 20\n[models.x]\nquality = 2\n",
        encoding="utf-8",
    )
    with pytest.raises(ConfigError) as info:
        load_sandbox_config(path)
    message = str(info.value)
    assert str(path) in message
    assert "models.tara-stable.latency.ttft_mediam_ms: Extra inputs are not permitted" in message
    assert "models.x.quality: Input should be less than or equal to 1" in message


@pytest.mark.parametrize(
    ("data", "needle"),
    [
        ({"builtin_models": "yes"}, "builtin_models: must be true or false"),
        ({"models": ["a"]}, "models: must be a table"),
        ({"models": {"a": 3}}, "models.a"),
        ({"models": {"a": {"min_sentences": 4, "max_sentences": 2}}}, "min_sentences"),
        ({"models": {"a": {"errors": {"rate": 0.5, "kinds": {}}}}}, "at least one error kind"),
        ({"models": {"a": {"errors": {"kinds": {"teapot": 1}}}}}, "models.a.errors.kinds.teapot"),
        ({"unknown": 1}, "unknown: Extra inputs"),
    ],
)
def test_invalid_configs(data: dict[str, object], needle: str) -> None:
    with pytest.raises(ConfigError, match="invalid sandbox models") as info:
        config_from_dict(data)
    assert needle in str(info.value)


def test_unreadable_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_sandbox_config(tmp_path / "missing.toml")


def test_negative_weights_are_refused() -> None:
    with pytest.raises(ValidationError, match="must not be negative"):
        Errors(kinds={"reset": -1})
