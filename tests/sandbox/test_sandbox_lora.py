"""The sandbox's emulation of vLLM's runtime LoRA endpoints, driven by Tara's own client.

``tara.finetune.lora_serving`` is what the training process calls on a real
vLLM; here it meets ``tara sandbox`` on a loopback port: a loaded adapter is
listed and answers chat completions, the errors come with vLLM's statuses
and messages, and a sandbox without the feature answers 404 with a hint.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import orjson
import pytest

from tara.finetune.lora_serving import AdapterServerError, load_adapter, unload_adapter
from tara.sandbox.config import LoraAdaptersConfig, default_config, zero_latency
from tara.sandbox.server import running_sandbox
from tara.serving import free_port

KEY = "sk-test"


def _adapter(path: Path, base: str = "/models/tiny", peft_type: str = "LORA") -> Path:
    path.mkdir(parents=True)
    config = {"peft_type": peft_type, "base_model_name_or_path": base, "r": 8}
    (path / "adapter_config.json").write_bytes(orjson.dumps(config))
    return path


async def _models(base_url: str) -> dict[str, dict[str, object]]:
    async with httpx.AsyncClient(headers={"Authorization": f"Bearer {KEY}"}) as http:
        data = (await http.get(f"{base_url}/models")).json()["data"]
    return {m["id"]: m for m in data}


async def test_a_loaded_adapter_is_listed_and_answers_until_unloaded(tmp_path: Path) -> None:
    adapter = _adapter(tmp_path / "ft-a")
    async with running_sandbox() as base_url:
        assert await load_adapter(base_url, KEY, "ft:tiny:tara:1", str(adapter)) is True
        # Loading the same name again (a retry) is not an error for Tara.
        assert await load_adapter(base_url, KEY, "ft:tiny:tara:1", str(adapter)) is False
        listed = await _models(base_url)
        entry = listed["ft:tiny:tara:1"]
        assert (entry["root"], entry["parent"]) == (str(adapter), "/models/tiny")
        assert entry["quality"] == pytest.approx(float(listed["tara-stable"]["quality"]) + 0.1)
        assert "root" not in listed["tara-stable"]
        async with httpx.AsyncClient(headers={"Authorization": f"Bearer {KEY}"}) as http:
            body = {"model": "ft:tiny:tara:1", "messages": [{"role": "user", "content": "2+2?"}]}
            answer = await http.post(f"{base_url}/chat/completions", json=body)
            assert answer.status_code == 200, answer.text
            assert answer.json()["model"] == "ft:tiny:tara:1"
        assert await unload_adapter(base_url, KEY, "ft:tiny:tara:1") is True
        assert await unload_adapter(base_url, KEY, "ft:tiny:tara:1") is False
        assert "ft:tiny:tara:1" not in await _models(base_url)


async def test_refusals_carry_vllms_statuses(tmp_path: Path) -> None:
    not_lora = _adapter(tmp_path / "prefix", peft_type="PREFIX_TUNING")
    async with running_sandbox() as base_url:
        with pytest.raises(AdapterServerError, match="No adapter found") as missing:
            await load_adapter(base_url, KEY, "ft:x", str(tmp_path / "nowhere"))
        assert (missing.value.status, missing.value.transient) == (404, False)
        with pytest.raises(AdapterServerError, match="No adapter found"):
            await load_adapter(base_url, KEY, "ft:x", str(not_lora))
        with pytest.raises(AdapterServerError, match="is not a LoRA adapter") as builtin:
            await load_adapter(base_url, KEY, "tara-stable", str(_adapter(tmp_path / "ok")))
        assert builtin.value.status == 400
        with pytest.raises(AdapterServerError, match="HTTP 401"):
            await load_adapter(base_url, None, "ft:x", str(tmp_path / "ok"))
        with pytest.raises(AdapterServerError, match="must be provided"):
            await load_adapter(base_url, KEY, "", str(tmp_path / "ok"))
        with pytest.raises(AdapterServerError, match="needs to be provided"):
            await unload_adapter(base_url, KEY, "")
        assert await unload_adapter(base_url, KEY, "tara-stable") is False  # not an adapter
        async with httpx.AsyncClient(headers={"Authorization": f"Bearer {KEY}"}) as http:
            bad = await http.post(f"{base_url}/load_lora_adapter", content=b"{not json")
            assert bad.status_code == 400
            assert set(bad.json()["error"]) == {"message", "type", "code", "param"}
            listed = await http.post(f"{base_url}/load_lora_adapter", json=["a"])
            assert listed.status_code == 400


async def test_without_runtime_lora_updating_the_routes_are_404_with_a_hint(
    tmp_path: Path,
) -> None:
    config = zero_latency(default_config()).model_copy(
        update={"lora": LoraAdaptersConfig(enabled=False)}
    )
    async with running_sandbox(config) as base_url:
        with pytest.raises(AdapterServerError, match="VLLM_ALLOW_RUNTIME_LORA_UPDATING") as off:
            await load_adapter(base_url, KEY, "ft:x", str(_adapter(tmp_path / "a")))
        assert (off.value.status, off.value.transient) == (404, False)


async def test_an_unreachable_server_is_transient() -> None:
    url = f"http://127.0.0.1:{free_port('127.0.0.1')}/v1"
    with pytest.raises(AdapterServerError, match="cannot reach") as down:
        await load_adapter(url, KEY, "ft:x", "/tmp/x", seconds=5)
    assert down.value.transient
