"""Cross-check of the OCI stand-in against the official ``oci`` Python SDK.

Starts ``watchdog-standins oci`` (``STANDINS_BIN``, default
``target/debug/watchdog-standins`` under the repo root) on port 0 and points
the SDK's ``ComputeClient`` at it with ``service_endpoint``. The stand-in
verifies every signature, so these tests prove it accepts requests signed by
the real SDK (every key format) and refuses a request signed with the wrong key.
"""

from __future__ import annotations

import json
import os
import queue
import subprocess
import threading
import time
import urllib.request
from pathlib import Path

import oci
import pytest
from cryptography.hazmat.primitives import serialization

REPO_ROOT = Path(__file__).resolve().parents[2]
FIXTURES = REPO_ROOT / "tests" / "fixtures" / "oci"
KEYS = FIXTURES / "keys"
STARTUP_TIMEOUT = 10.0
TENANCY = "ocid1.tenancy.oc1..aaaaaaaastandintenancy"
USER = "ocid1.user.oc1..aaaaaaaastandinuser"
RUNNING = "ocid1.instance.oc1.iad.anuwcljtstandinrunning"
STOPPED = "ocid1.instance.oc1.iad.anuwcljtstandinstopped"


def standins_bin() -> Path:
    path = Path(os.environ.get("STANDINS_BIN", REPO_ROOT / "target" / "debug" / "watchdog-standins"))
    if not path.is_absolute():
        path = REPO_ROOT / path
    if not path.exists():
        pytest.fail(f"{path} not found: build it with `cargo build -p watchdog-standins` or set STANDINS_BIN")
    return path


def fixture_keys() -> dict:
    doc = json.loads((FIXTURES / "signatures.json").read_text())
    return {k["name"]: k for k in doc["keys"]}


def key_id(fingerprint: str) -> str:
    return f"{TENANCY}/{USER}/{fingerprint}"


class Standin:
    """A running ``watchdog-standins oci`` process."""

    def __init__(self, *extra: str) -> None:
        self.proc = subprocess.Popen(
            [str(standins_bin()), "oci", "--listen", "127.0.0.1:0", "--transition-ms", "50", *extra],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=lambda: lines.put(self.proc.stdout.readline()), daemon=True).start()
        try:
            first = lines.get(timeout=STARTUP_TIMEOUT)
        except queue.Empty:
            self.stop()
            pytest.fail("stand-in printed nothing within the startup timeout")
        prefix = "oci listening on "
        if not first.startswith(prefix):
            self.stop()
            pytest.fail(f"unexpected first line {first!r}; stderr: {self.proc.stderr.read()}")
        self.addr = first[len(prefix):].strip()
        self.url = f"http://{self.addr}"

    def admin(self, method: str, path: str, body: dict | None = None):
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(f"{self.url}/_standin/{path}", data=data, method=method)
        with urllib.request.urlopen(req, timeout=10) as resp:
            return json.load(resp)

    def register(self, key_file: Path, pass_phrase: str | None, fingerprint: str) -> None:
        private = serialization.load_pem_private_key(
            key_file.read_bytes().strip().split(b"OCI_API_KEY")[0],
            pass_phrase.encode() if pass_phrase else None,
        )
        pem = private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        self.admin("POST", "keys", {"key_id": key_id(fingerprint), "pem": pem.decode()})

    def requests(self) -> list:
        return self.admin("GET", "requests")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture
def standin():
    keys = fixture_keys()
    s = Standin(
        "--instance", f"{RUNNING}=RUNNING",
        "--instance", f"{STOPPED}=STOPPED",
        # The CLI path: a public key file for the PKCS#8 fixture key.
        "--key", f"{key_id(keys['pkcs8']['fingerprint'])}={KEYS / 'public.pem'}",
    )
    yield s
    s.stop()


def compute_client(standin: Standin, key: dict, key_file: str | None = None, fingerprint: str | None = None):
    config = {
        "user": USER,
        "tenancy": TENANCY,
        "fingerprint": fingerprint or key["fingerprint"],
        "key_file": str(KEYS / (key_file or key["file"])),
        "region": "us-ashburn-1",
    }
    if key["pass_phrase"]:
        config["pass_phrase"] = key["pass_phrase"]
    oci.config.validate_config(config)
    return oci.core.ComputeClient(
        config, service_endpoint=standin.url, retry_strategy=oci.retry.NoneRetryStrategy()
    )


def wait_for(client, instance_id: str, state: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if client.get_instance(instance_id).data.lifecycle_state == state:
            return
        time.sleep(0.02)
    pytest.fail(f"{instance_id} never reached {state}")


def test_sdk_get_instance(standin):
    client = compute_client(standin, fixture_keys()["pkcs8"])
    resp = client.get_instance(RUNNING)
    assert resp.status == 200
    assert resp.data.id == RUNNING
    assert resp.data.lifecycle_state == "RUNNING"
    assert resp.headers.get("opc-request-id")
    assert all(r["signature_ok"] for r in standin.requests())


@pytest.mark.parametrize("name", ["pkcs8", "pkcs1", "pkcs8_encrypted", "console_oci_api_key", "pkcs1_crlf"])
def test_sdk_stop_and_start_with_every_key_format(standin, name):
    key = fixture_keys()[name]
    if name != "pkcs8":
        standin.register(KEYS / key["file"], key["pass_phrase"], key["fingerprint"])
    client = compute_client(standin, key)

    stopped = client.instance_action(RUNNING, "STOP", opc_retry_token=f"{name}-stop")
    assert stopped.data.lifecycle_state == "STOPPING"
    wait_for(client, RUNNING, "STOPPED")
    started = client.instance_action(RUNNING, "START", opc_retry_token=f"{name}-start")
    assert started.data.lifecycle_state == "STARTING"
    wait_for(client, RUNNING, "RUNNING")

    recorded = standin.requests()
    posts = [r for r in recorded if r["method"] == "POST"]
    assert [(r["action"], r["retry_token"]) for r in posts] == [("STOP", f"{name}-stop"), ("START", f"{name}-start")]
    assert all(r["signature_ok"] and r["key_id"] == key_id(key["fingerprint"]) for r in recorded), recorded


def test_sdk_wrong_state_is_409(standin):
    client = compute_client(standin, fixture_keys()["pkcs8"])
    with pytest.raises(oci.exceptions.ServiceError) as err:
        client.instance_action(STOPPED, "STOP")
    assert err.value.status == 409
    assert err.value.code == "IncorrectState"


def test_sdk_unknown_instance_is_404(standin):
    client = compute_client(standin, fixture_keys()["pkcs8"])
    with pytest.raises(oci.exceptions.ServiceError) as err:
        client.get_instance("ocid1.instance.oc1.iad.nosuchinstance")
    assert err.value.status == 404
    assert err.value.code == "NotAuthorizedOrNotFound"


def test_sdk_request_signed_with_the_wrong_key_is_401(standin):
    keys = fixture_keys()
    # Claims to be the registered PKCS#8 key but signs with the PKCS#1 one.
    client = compute_client(standin, keys["pkcs1"], fingerprint=keys["pkcs8"]["fingerprint"])
    with pytest.raises(oci.exceptions.ServiceError) as err:
        client.instance_action(RUNNING, "STOP")
    assert err.value.status == 401
    assert err.value.code == "NotAuthenticated"
    assert err.value.message == "signature does not verify"
    assert standin.admin("GET", "instances")[RUNNING] == "RUNNING"
    assert [r["signature_ok"] for r in standin.requests()] == [False]
