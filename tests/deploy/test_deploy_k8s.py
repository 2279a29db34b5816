"""Kubernetes manifests: every object validates against the API schemas, and they fit together.

Objects are assembled the way kustomize would (resources plus the ConfigMap
generator) and validated offline with ``kubernetes-validate``'s bundled
schemas; the ServiceMonitor (a CRD) against a schema of the fields used here.
The kustomize transformations the base uses (labels, image tags, the
ConfigMap's hashed name) are applied here too, so every check runs without
``kubectl``; where it is installed, ``kubectl kustomize`` must build the same.
"""

from __future__ import annotations

import argparse
import hashlib
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml
from deploy_contract import DEPLOY
from pydantic import BaseModel

from tara.cli import build_parser
from tara.gateway.server import dev_keys_refusal
from tara.settings import Settings, load_settings

K8S = DEPLOY / "k8s"
KUSTOMIZATION: dict[str, Any] = yaml.safe_load((K8S / "kustomization.yaml").read_text())
SECRET_EXAMPLE: dict[str, Any] = yaml.safe_load((K8S / "secret.example.yaml").read_text())
KUBERNETES_VERSIONS = ["1.28", "1.33"]

Object = dict[str, Any]
DURATION = r"^(0|(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$"
SERVICE_MONITOR_SCHEMA = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "monitoring.coreos.com/v1"},
        "kind": {"const": "ServiceMonitor"},
        "metadata": {"type": "object", "required": ["name"]},
        "spec": {
            "type": "object",
            "required": ["selector", "endpoints"],
            "additionalProperties": False,
            "properties": {
                "jobLabel": {"type": "string"},
                "selector": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {
                        "matchLabels": {
                            "type": "object",
                            "additionalProperties": {"type": "string"},
                        }
                    },
                },
                "endpoints": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "required": ["port"],
                        "additionalProperties": False,
                        "properties": {
                            "port": {"type": "string"},
                            "path": {"type": "string", "pattern": "^/"},
                            "interval": {"type": "string", "pattern": DURATION},
                            "scrapeTimeout": {"type": "string", "pattern": DURATION},
                        },
                    },
                },
            },
        },
    },
}


def _documents(path: Path) -> list[Object]:
    return [doc for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")) if doc]


def assemble() -> list[Object]:
    """The base's objects as kustomize builds them, without name hashes or image tags."""
    objects = [doc for name in KUSTOMIZATION["resources"] for doc in _documents(K8S / name)]
    for generator in KUSTOMIZATION.get("configMapGenerator", []):
        data = {}
        for entry in generator["files"]:
            key, _, source = entry.partition("=")
            data[key] = (K8S / source).read_text(encoding="utf-8")
        objects.append(
            {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": generator["name"]}}
            | {"data": data}
        )
    for obj in objects:
        if obj["kind"] != "Namespace":
            obj["metadata"]["namespace"] = KUSTOMIZATION["namespace"]
    return objects


OBJECTS = assemble()


def find(kind: str, name: str, objects: list[Object] = OBJECTS) -> Object:
    """The one object of ``kind`` named ``name``."""
    [obj] = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    return obj


def _ids(obj: Object) -> str:
    return f"{obj['kind']}/{obj['metadata']['name']}"


def validate(obj: Object, version: str) -> None:
    """Validate ``obj`` strictly against Kubernetes ``version`` (or the CRD schema)."""
    if obj["kind"] == "ServiceMonitor":
        jsonschema.validate(obj, SERVICE_MONITOR_SCHEMA)
    else:
        kubernetes_validate.validate(obj, version, strict=True)


def pod_spec(name: str) -> Object:
    spec: Object = find("Deployment", name)["spec"]["template"]["spec"]
    return spec


def container(name: str) -> Object:
    [only] = pod_spec(name)["containers"]
    return only


def selects(selector: dict[str, str], deployment: str) -> bool:
    labels = find("Deployment", deployment)["spec"]["template"]["metadata"]["labels"]
    return selector.items() <= labels.items()


def tara_config() -> dict[str, Any]:
    import tomllib

    return tomllib.loads((K8S / "config/tara.toml").read_text(encoding="utf-8"))


def test_every_resource_exists_and_every_manifest_is_listed() -> None:
    listed = set(KUSTOMIZATION["resources"])
    assert all((K8S / name).is_file() for name in listed)
    manifests = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml", "secret.example.yaml"}
    assert manifests == listed


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("obj", OBJECTS, ids=_ids)
def test_object_validates(obj: Object, version: str) -> None:
    validate(obj, version)


def test_validation_rejects_a_misspelt_field() -> None:
    broken = yaml.safe_load(yaml.safe_dump(find("Deployment", "tara-gateway")))
    broken["spec"]["template"]["spec"]["containers"][0]["readinessprobe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        validate(broken, KUBERNETES_VERSIONS[0])
    monitor = yaml.safe_load(yaml.safe_dump(find("ServiceMonitor", "tara-gateway")))
    monitor["spec"]["endpoints"][0]["interval"] = "15 seconds"
    with pytest.raises(jsonschema.ValidationError):
        validate(monitor, KUBERNETES_VERSIONS[0])


def kustomized() -> list[Object]:
    """The base as kustomize builds it: labels, image tags, the ConfigMap's hashed name.

    Done here on the assembled objects (the three transformations this base
    uses), so the checks below run everywhere; where ``kubectl`` is installed,
    ``kubectl kustomize`` must build the very same objects.
    """
    objects = yaml.safe_load(yaml.safe_dump(OBJECTS))
    labels = {k: v for entry in KUSTOMIZATION.get("labels", []) for k, v in entry["pairs"].items()}
    tags = {image["name"]: image["newTag"] for image in KUSTOMIZATION.get("images", [])}
    renamed = {}
    for obj in objects:
        obj["metadata"]["labels"] = obj["metadata"].get("labels", {}) | labels
        if obj["kind"] == "ConfigMap":
            digest = hashlib.sha256(yaml.safe_dump(obj["data"]).encode()).hexdigest()[:10]
            renamed[obj["metadata"]["name"]] = obj["metadata"]["name"] = (
                f"{obj['metadata']['name']}-{digest}"
            )
    for obj in objects:
        if obj["kind"] == "Deployment":
            spec = obj["spec"]["template"]["spec"]
            for c in spec["containers"]:
                if c["image"] in tags:
                    c["image"] = f"{c['image']}:{tags[c['image']]}"
            for volume in spec.get("volumes", []):
                if "configMap" in volume:
                    name = volume["configMap"]["name"]
                    volume["configMap"]["name"] = renamed.get(name, name)
    return objects


def _without_hash(objects: list[Object]) -> list[Object]:
    """``objects`` sorted, with generated names' hash suffixes cut off (kustomize's own hash)."""
    text = re.sub(r"(tara-config)-[a-z0-9]{10}\b", r"\1-HASH", yaml.safe_dump(objects))
    return sorted(yaml.safe_load(text), key=_ids)


def test_kustomize_emulation_builds_what_kubectl_builds() -> None:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        # The prefix CI turns into a failure (tests/dependencies.py); locally the base is
        # still built and checked by the emulation in the next test.
        pytest.skip("missing dependency: kubectl, to check the kustomize emulation against")
    result = subprocess.run(
        [kubectl, "kustomize", str(K8S)], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    built = [doc for doc in yaml.safe_load_all(result.stdout) if doc]
    assert _without_hash(built) == _without_hash(kustomized())


def test_the_kustomized_base_is_valid_and_fits_together() -> None:
    built = kustomized()
    generated = {"ConfigMap"}
    assert {_ids(o) for o in built if o["kind"] not in generated} == {
        _ids(o) for o in OBJECTS if o["kind"] not in generated
    }
    for obj in built:
        validate(obj, KUBERNETES_VERSIONS[-1])
    [config] = [o for o in built if o["kind"] == "ConfigMap"]
    hashed = config["metadata"]["name"]
    assert hashed.startswith("tara-config-")
    for obj in built:
        if obj["kind"] == "Deployment":
            spec = obj["spec"]["template"]["spec"]
            assert spec["volumes"][0]["configMap"]["name"] == hashed
            assert spec["containers"][0]["image"] == "tara-gateway:0.1.0"
        if obj["kind"] != "Namespace":
            assert obj["metadata"]["namespace"] == "tara"
            assert obj["metadata"]["labels"]["app.kubernetes.io/part-of"] == "tara"


def test_gateway_runs_at_least_two_replicas_behind_probes() -> None:
    deployment = find("Deployment", "tara-gateway")
    assert deployment["spec"]["replicas"] >= 2
    gateway = container("tara-gateway")
    ports = {p["name"]: p["containerPort"] for p in gateway["ports"]}
    assert gateway["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert gateway["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert ports["http"] == tara_config()["server"]["port"]
    assert tara_config()["server"]["host"] == "0.0.0.0"


def test_gateway_drains_before_its_grace_period_ends() -> None:
    gateway = container("tara-gateway")
    command = gateway["lifecycle"]["preStop"]["exec"]["command"]
    assert command[0] == "sleep"
    drain = float(command[1]) + tara_config()["server"]["shutdown_timeout"]
    assert pod_spec("tara-gateway")["terminationGracePeriodSeconds"] > drain


@pytest.mark.parametrize("name", ["tara-gateway", "tara-controller"])
def test_pods_are_locked_down_and_sized(name: str) -> None:
    spec, main = pod_spec(name), container(name)
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["runAsUser"] != 0
    assert spec["automountServiceAccountToken"] is False
    assert main["securityContext"]["readOnlyRootFilesystem"] is True
    assert main["securityContext"]["allowPrivilegeEscalation"] is False
    assert {"cpu", "memory"} <= set(main["resources"]["requests"])
    assert "memory" in main["resources"]["limits"]
    mounts = {m["mountPath"] for m in main["volumeMounts"]}
    assert "/tmp" in mounts


def _parse(args: list[str]) -> argparse.Namespace:
    parser = build_parser()
    commands = next(a.choices for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    assert args[0] in commands, f"the container runs `tara {args[0]}`, which the CLI lacks"
    return parser.parse_args(args)


@pytest.mark.parametrize(
    ("name", "command"), [("tara-gateway", "serve"), ("tara-controller", "controller")]
)
def test_container_runs_a_tara_command_with_the_mounted_config(name: str, command: str) -> None:
    main = container(name)
    assert main["image"] == "tara-gateway"
    assert main["args"][0] == command
    args = _parse(main["args"])
    [mount] = [m for m in main["volumeMounts"] if m["name"] == "config"]
    assert args.config.parent == Path(mount["mountPath"])
    [volume] = [v for v in pod_spec(name)["volumes"] if v["name"] == "config"]
    config_map = find("ConfigMap", volume["configMap"]["name"])
    assert args.config.name in config_map["data"]


def test_controller_may_run_several_replicas_and_exposes_metrics() -> None:
    assert find("Deployment", "tara-controller")["spec"]["replicas"] >= 1
    ports = {p["name"] for p in container("tara-controller")["ports"]}
    assert "metrics" in ports


def test_controller_probes_ask_its_liveness_and_readiness_endpoints() -> None:
    # /healthz fails when the loop is hung or dead (a restart helps), /readyz when the
    # stores are unreachable (a restart does not): each probe asks its own question.
    controller = container("tara-controller")
    assert controller["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    assert controller["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}


def test_gateway_spools_to_a_volume_big_enough_for_the_spool() -> None:
    spool = Path(tara_config()["telemetry"]["spool_path"])
    gateway = container("tara-gateway")
    [mount] = [m for m in gateway["volumeMounts"] if spool.is_relative_to(m["mountPath"])]
    assert mount["mountPath"] != "/tmp"
    [volume] = [v for v in pod_spec("tara-gateway")["volumes"] if v["name"] == mount["name"]]
    limit = volume["emptyDir"]["sizeLimit"]
    assert limit.endswith("Mi")
    max_bytes = tara_config()["telemetry"].get("spool_max_bytes", 1 << 30)
    assert int(limit.removesuffix("Mi")) * (1 << 20) > max_bytes


@pytest.mark.parametrize("name", ["tara-gateway", "tara-controller"])
def test_service_selects_its_pods_and_named_ports(name: str) -> None:
    service = find("Service", name)
    assert selects(service["spec"]["selector"], name)
    ports = {p["name"] for p in container(name)["ports"]}
    assert {p["targetPort"] for p in service["spec"]["ports"]} <= ports


@pytest.mark.parametrize("name", ["tara-gateway", "tara-controller"])
def test_service_monitor_scrapes_the_service_as_the_job_the_rules_expect(name: str) -> None:
    monitor = find("ServiceMonitor", name)
    service = find("Service", name)
    assert (
        monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    )
    # Without jobLabel the operator names the job after the Service: the rules' job name.
    assert "jobLabel" not in monitor["spec"]
    ports = {p["name"] for p in service["spec"]["ports"]}
    assert {e["port"] for e in monitor["spec"]["endpoints"]} <= ports
    assert all(e["path"] == "/metrics" for e in monitor["spec"]["endpoints"])


def test_autoscaler_keeps_two_gateways_and_the_budget_lets_one_go() -> None:
    hpa = find("HorizontalPodAutoscaler", "tara-gateway")
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "tara-gateway",
    }
    assert 2 <= hpa["spec"]["minReplicas"] < hpa["spec"]["maxReplicas"]
    assert hpa["spec"]["metrics"][0]["resource"]["name"] == "cpu"
    pdb = find("PodDisruptionBudget", "tara-gateway")
    assert selects(pdb["spec"]["selector"]["matchLabels"], "tara-gateway")
    assert pdb["spec"]["minAvailable"] < hpa["spec"]["minReplicas"]


def _secret_refs() -> list[tuple[str, str, str]]:
    refs = []
    for name in ("tara-gateway", "tara-controller"):
        for env in container(name)["env"]:
            ref = env["valueFrom"]["secretKeyRef"]
            refs.append((env["name"], ref["name"], ref["key"]))
    return refs


def test_secrets_are_referenced_never_included() -> None:
    assert not [o for o in OBJECTS if o["kind"] == "Secret"]
    example = SECRET_EXAMPLE["stringData"]
    for _, secret, key in _secret_refs():
        assert secret == SECRET_EXAMPLE["metadata"]["name"]
        assert key in example
    assert all("CHANGE-ME" in value for value in example.values())


def _setting_exists(variable: str) -> bool:
    model: type[BaseModel] = Settings
    *sections, leaf = variable.removeprefix("TARA_").lower().split("__")
    for section in sections:
        field = model.model_fields.get(section)
        if field is None or not isinstance(field.annotation, type):
            return False
        if not issubclass(field.annotation, BaseModel):
            return False
        model = field.annotation
    return leaf in model.model_fields


def test_every_variable_names_a_setting() -> None:
    assert [var for var, _, _ in _secret_refs() if not _setting_exists(var)] == []
    assert not _setting_exists("TARA_AUTH__NO_SUCH_KEY")


def test_config_and_secret_example_load_as_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    example = SECRET_EXAMPLE["stringData"]
    for variable, _, key in _secret_refs():
        monkeypatch.setenv(variable, example[key])
    settings = load_settings(K8S / "config/tara.toml")
    assert settings.use_redis
    assert settings.redis_url == example["redis-url"]
    assert settings.database_url == example["database-url"]
    assert [k.get_secret_value() for k in settings.auth.client_keys] == ["CHANGE-ME-client-key"]
    assert settings.auth.admin_key.get_secret_value() == example["admin-key"]
    assert settings.upstream.api_key.get_secret_value() == example["upstream-api-key"]
    # Listening on 0.0.0.0 with Redis, tara serve starts only with keys of its own.
    assert dev_keys_refusal(settings, settings.server.host) is None
