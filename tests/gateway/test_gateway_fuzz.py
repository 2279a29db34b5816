"""schemathesis against a real ``tara serve`` in front of ``tara sandbox``, from ``/openapi.json``.

Both run as processes on loopback. schemathesis reads the gateway's own
OpenAPI document and sends valid and invalid requests to every operation
(a bounded number each): no answer may be a 5xx, every error body must be
OpenAI-shaped, every status and content type must be one the document lists.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tara.gateway.openapi import openapi_document
from tara.serving import free_port

pytestmark = pytest.mark.integration

# Hypothesis imports its random strategy lazily; imported deep inside schemathesis's
# nested strategies, CPython 3.11's compiler can fail there ("AST constructor recursion
# depth mismatch"). Building it once here imports it at a shallow stack.
st.randoms().validate()

CLIENT_KEY = "sk-fuzz-client"
ADMIN_KEY = "sk-fuzz-admin"
MODELS = """
[models.fuzz-fast]
min_sentences = 1
max_sentences = 1
latency = { ttft_median_ms = 0, ttft_sigma = 0, token_delay_ms = 0 }
"""


def _wait(url: str, proc: subprocess.Popen[bytes], headers: dict[str, str] | None = None) -> None:
    deadline = time.monotonic() + 60
    while True:
        assert proc.poll() is None, f"{proc.args} exited with {proc.returncode}"
        try:
            request = urllib.request.Request(url, headers=headers or {})
            with urllib.request.urlopen(request, timeout=2):
                return
        except OSError:
            assert time.monotonic() < deadline, f"{url} never answered"
            time.sleep(0.1)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@pytest.fixture(scope="module")
def gateway_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A ``tara serve`` process in front of a ``tara sandbox`` process."""
    tmp = tmp_path_factory.mktemp("fuzz")
    (tmp / "models.toml").write_text(MODELS)
    env = {k: v for k, v in os.environ.items() if not k.startswith("TARA_")}
    sb_port, gw_port = free_port(), free_port()
    sandbox_args = ["sandbox", "--port", str(sb_port), "--models", str(tmp / "models.toml")]
    sandbox = subprocess.Popen(
        [sys.executable, "-m", "tara", *sandbox_args], env=env, stdout=subprocess.DEVNULL
    )
    gateway_env = {
        **env,
        "TARA_UPSTREAM__BASE_URL": f"http://127.0.0.1:{sb_port}/v1",
        "TARA_TRACKS": json.dumps({"tara-tutor": {"stable_model": "fuzz-fast"}}),
        "TARA_AUTH__CLIENT_KEYS": json.dumps([CLIENT_KEY]),
        "TARA_AUTH__ADMIN_KEY": ADMIN_KEY,
        "TARA_TELEMETRY__SQLITE_PATH": str(tmp / "interactions.db"),
        "TARA_LOG_LEVEL": "WARNING",
    }
    gateway = subprocess.Popen(
        [sys.executable, "-m", "tara", "serve", "--port", str(gw_port)],
        env=gateway_env,
        stdout=subprocess.DEVNULL,
    )
    try:
        _wait(f"http://127.0.0.1:{sb_port}/v1/models", sandbox, {"Authorization": "Bearer x"})
        _wait(f"http://127.0.0.1:{gw_port}/readyz", gateway)
        yield f"http://127.0.0.1:{gw_port}"
    finally:
        _stop(gateway)
        _stop(sandbox)


def assert_openai_error(body: Any) -> None:
    assert isinstance(body, dict), body
    assert set(body) == {"error"}, body
    error = body["error"]
    assert isinstance(error["message"], str)
    assert error["message"]
    assert isinstance(error["type"], str)
    assert error["code"] is None or isinstance(error["code"], str)
    assert error.get("param") is None or isinstance(error["param"], str)


# Loaded from the code, not the server: schemathesis' lazy fixture loader does not work
# with pytest 9 (it reads a removed attribute). test_the_document_needs_a_key checks the
# server serves this very document.
schema = schemathesis.openapi.from_dict(openapi_document())


@schema.parametrize()
@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_5xx_and_every_error_is_openai_shaped(gateway_url: str, case: Any) -> None:
    key = ADMIN_KEY if case.path.startswith("/admin") else CLIENT_KEY
    response = case.call(
        base_url=gateway_url, headers={"Authorization": f"Bearer {key}"}, timeout=20
    )
    assert response.status_code < 500, (response.status_code, response.text)
    if response.status_code >= 400:
        assert_openai_error(json.loads(response.text))
    case.validate_response(
        response,
        checks=[status_code_conformance, content_type_conformance, response_schema_conformance],
    )


def test_the_document_needs_a_key(gateway_url: str) -> None:
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(f"{gateway_url}/openapi.json", timeout=5)
    assert refused.value.code == 401
    assert_openai_error(json.loads(refused.value.read()))
    for key in (CLIENT_KEY, ADMIN_KEY):
        request = urllib.request.Request(
            f"{gateway_url}/openapi.json", headers={"Authorization": f"Bearer {key}"}
        )
        with urllib.request.urlopen(request, timeout=5) as ok:
            document = json.loads(ok.read())
        assert document == openapi_document()
    assert {"/v1/chat/completions", "/v1/feedback", "/admin/rollouts"} <= set(document["paths"])
