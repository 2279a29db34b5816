"""Settings: precedence, config files, and errors that name the field."""

from __future__ import annotations

from pathlib import Path

import pytest

from tara.settings import ConfigError, load_settings, warn_about_defaults


def test_defaults_work_without_any_configuration(monkeypatch: pytest.MonkeyPatch) -> None:
    s = load_settings()
    assert s.server.port == 8080
    assert s.upstream.base_url == "http://127.0.0.1:8081/v1"
    assert s.tracks["tara-tutor"].stable_model == "tara-stable"
    assert not s.use_redis


def test_env_overrides_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = tmp_path / "tara.toml"
    cfg.write_text('[server]\nport = 9000\nhost = "0.0.0.0"\n[tracks.t1]\nstable_model = "m1"\n')
    monkeypatch.setenv("TARA_SERVER__PORT", "9100")
    s = load_settings(cfg)
    assert s.server.port == 9100
    assert s.server.host == "0.0.0.0"
    assert set(s.tracks) == {"t1"}


def test_yaml_config(tmp_path: Path) -> None:
    cfg = tmp_path / "tara.yaml"
    cfg.write_text("redis_url: redis://127.0.0.1:6379/0\nupstream:\n  retry_attempts: 5\n")
    s = load_settings(cfg)
    assert s.use_redis
    assert s.upstream.retry_attempts == 5


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ('[upstream]\nbase_url = "ftp://x"\n', "upstream.base_url"),
        ("[upstream]\nretry_attempts = 0\n", "upstream.retry_attempts"),
        ("[server]\nprot = 1\n", "server.prot"),
        ('[tracks.t]\ndescription = "no model"\n', "tracks.t.stable_model"),
    ],
)
def test_bad_config_names_the_field(tmp_path: Path, text: str, field: str) -> None:
    cfg = tmp_path / "tara.toml"
    cfg.write_text(text)
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        load_settings(cfg)


def test_unparseable_and_missing_files(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[server\n")
    with pytest.raises(ConfigError, match="not valid toml"):
        load_settings(bad)
    with pytest.raises(ConfigError, match="cannot read"):
        load_settings(tmp_path / "missing.toml")
    listy = tmp_path / "list.yaml"
    listy.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="table of settings"):
        load_settings(listy)


def test_warnings_for_dev_keys_and_auth_off() -> None:
    assert len(warn_about_defaults(load_settings())) == 3
    off = load_settings(auth={"enabled": False})
    assert "OFF" in warn_about_defaults(off)[0]
    custom = load_settings(
        auth={"client_keys": ["k1"], "admin_key": "a1", "student_hash_key": "h1"}
    )
    assert warn_about_defaults(custom) == []


def test_example_config_parses() -> None:
    example = Path(__file__).resolve().parents[1] / "deploy" / "examples" / "tara.toml"
    s = load_settings(example)
    assert "tara-tutor" in s.tracks
