"""The vLLM-with-LoRA example overlay: valid objects that fit the gateway and the LoRA backend.

``deploy/examples/vllm-lora`` is assembled the way kustomize would (the base's
objects, the overlay's, the replaced ConfigMap) and validated offline against
the Kubernetes schemas; then the pieces must agree: the gateway's upstream is
the vLLM Service, the stable model is what vLLM serves, vLLM can load adapters
at run time with a rank as large as the backend trains, and it sees the LoRA
work directory at the path the backend writes adapters to.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import kubernetes_validate
import pytest
import yaml
from deploy_contract import DEPLOY

from tara.settings import Settings, load_settings

OVERLAY = DEPLOY / "examples" / "vllm-lora"
KUSTOMIZATION: dict[str, Any] = yaml.safe_load((OVERLAY / "kustomization.yaml").read_text())

Object = dict[str, Any]


def _documents(path: Path) -> list[Object]:
    return [doc for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")) if doc]


def _resources(directory: Path) -> list[Object]:
    kustomization = yaml.safe_load((directory / "kustomization.yaml").read_text())
    out: list[Object] = []
    for name in kustomization["resources"]:
        path = (directory / name).resolve()
        out += _resources(path) if path.is_dir() else _documents(path)
    return out


def assemble() -> list[Object]:
    """Base and overlay objects, the overlay's ConfigMap replacing the base's."""
    objects = [o for o in _resources(OVERLAY) if o["kind"] != "ConfigMap"]
    [generator] = KUSTOMIZATION["configMapGenerator"]
    assert generator["behavior"] == "replace"
    data = {}
    for entry in generator["files"]:
        key, _, source = entry.partition("=")
        data[key] = (OVERLAY / source).read_text(encoding="utf-8")
    objects.append(
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": generator["name"]}}
        | {"data": data}
    )
    for obj in objects:
        if obj["kind"] not in ("Namespace",):
            obj["metadata"]["namespace"] = KUSTOMIZATION["namespace"]
    return objects


OBJECTS = assemble()


def find(kind: str, name: str) -> Object:
    [obj] = [o for o in OBJECTS if o["kind"] == kind and o["metadata"]["name"] == name]
    return obj


def settings() -> Settings:
    return load_settings(OVERLAY / "tara.toml")


def vllm() -> tuple[Object, Object]:
    """The vLLM pod spec and its container."""
    spec: Object = find("Deployment", "tara-vllm")["spec"]["template"]["spec"]
    [container] = spec["containers"]
    return spec, container


def _flag(args: list[str], name: str) -> str | None:
    for arg in args:
        if arg == name:
            return ""
        if arg.startswith(f"{name}="):
            return arg.split("=", 1)[1]
    return None


@pytest.mark.parametrize("version", ["1.28", "1.33"])
@pytest.mark.parametrize(
    "obj",
    [o for o in OBJECTS if o["kind"] != "ServiceMonitor"],
    ids=lambda o: f"{o['kind']}/{o['metadata']['name']}",
)
def test_object_validates(obj: Object, version: str) -> None:
    kubernetes_validate.validate(obj, version, strict=True)


def test_the_gateway_routes_to_vllm_serving_the_stable_model() -> None:
    config = settings()
    url = urlsplit(config.upstream.base_url)
    service = find("Service", "tara-vllm")
    [port] = service["spec"]["ports"]
    assert (url.hostname, url.port, url.path) == ("tara-vllm", port["port"], "/v1")
    pod = find("Deployment", "tara-vllm")["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod.items()
    _, container = vllm()
    [served] = [p["containerPort"] for p in container["ports"] if p["name"] == port["targetPort"]]
    assert _flag(container["args"], "--port") == str(served)
    served_name = _flag(container["args"], "--served-model-name")
    assert {t.stable_model for t in config.tracks.values()} == {served_name}


def test_vllm_loads_adapters_at_run_time_with_the_backends_rank() -> None:
    config = settings()
    _, container = vllm()
    args = container["args"]
    assert _flag(args, "--enable-lora") == ""
    assert int(_flag(args, "--max-lora-rank") or 0) >= config.finetune.lora.rank
    env = {e["name"]: e for e in container["env"]}
    assert env["VLLM_ALLOW_RUNTIME_LORA_UPDATING"]["value"] == "True"
    # The key the gateway and the backend send upstream is the one vLLM checks.
    assert env["VLLM_API_KEY"]["valueFrom"]["secretKeyRef"]["key"] == "upstream-api-key"
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "1"


def test_vllm_sees_the_base_model_and_adapters_where_the_backend_puts_them() -> None:
    config = settings()
    assert config.finetune.backend == "lora"
    assert config.finetune.lora.server_adapter_dir is None  # so the same path on both sides
    spec, container = vllm()
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    claims = {
        v["name"]: v["persistentVolumeClaim"]["claimName"]
        for v in spec["volumes"]
        if "persistentVolumeClaim" in v
    }
    adapters = config.finetune.lora.work_dir / "adapters"
    [lora_mount] = [Path(p) for p in mounts if Path(p) in adapters.parents]
    assert claims[mounts[str(lora_mount)]] == "tara-lora"
    base = Path(config.finetune.base_model)
    assert _flag(container["args"], "--model") == str(base)
    [model_mount] = [Path(p) for p in mounts if Path(p) in base.parents]
    assert claims[mounts[str(model_mount)]] == "tara-models"
    assert {"tara-models", "tara-lora"} <= {
        o["metadata"]["name"] for o in OBJECTS if o["kind"] == "PersistentVolumeClaim"
    }
