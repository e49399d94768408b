"""Cross-check of the Cloudflare stand-in against an independent client, the official ``cloudflare`` Python SDK.

Starts ``watchdog-standins cloudflare`` (``STANDINS_BIN``, default
``target/debug/watchdog-standins`` under the repo root) on port 0 and drives
it through the SDK with ``base_url`` pointed at it; faults are injected over
the stand-in's ``/_standin/faults``.
"""

from __future__ import annotations

import json
import os
import queue
import subprocess
import threading
import urllib.request
from pathlib import Path

import cloudflare
import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
STARTUP_TIMEOUT = 10.0
TOKEN = "py-sdk-token-31c9"
ZONE = "5f2e6b8d0c1a4e7f9b3d2a1c0e9f8d7c"
HOST = "home.example.com"


def standins_bin() -> Path:
    path = Path(os.environ.get("STANDINS_BIN", REPO_ROOT / "target" / "debug" / "watchdog-standins"))
    if not path.is_absolute():
        path = REPO_ROOT / path
    if not path.exists():
        pytest.fail(f"{path} not found: build it with `cargo build -p watchdog-standins` or set STANDINS_BIN")
    return path


@pytest.fixture
def standin():
    proc = subprocess.Popen(
        [
            str(standins_bin()),
            "cloudflare",
            "--listen",
            "127.0.0.1:0",
            "--token",
            TOKEN,
            "--zone",
            ZONE,
            "--record",
            f"{HOST}=198.51.100.1",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: lines.put(proc.stdout.readline()), daemon=True).start()
    try:
        first = lines.get(timeout=STARTUP_TIMEOUT)
    except queue.Empty:
        proc.kill()
        pytest.fail("stand-in printed nothing within the startup timeout")
    prefix = "cloudflare listening on "
    if not first.startswith(prefix):
        proc.kill()
        pytest.fail(f"unexpected first line {first!r}; stderr: {proc.stderr.read()}")
    addr = first[len(prefix) :].strip()
    yield addr
    proc.terminate()
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def client(addr: str, token: str = TOKEN) -> cloudflare.Cloudflare:
    return cloudflare.Cloudflare(api_token=token, base_url=f"http://{addr}/client/v4", max_retries=0)


def admin(addr: str, path: str, body: dict | None = None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(f"http://{addr}/_standin/{path}", data=data, method="POST" if data else "GET")
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.load(resp)


def test_list_get_edit_create(standin):
    cf = client(standin)
    records = list(cf.dns.records.list(zone_id=ZONE, type="A", name={"exact": HOST}))
    assert [(r.name, r.type, r.content) for r in records] == [(HOST, "A", "198.51.100.1")]
    rid = records[0].id
    assert cf.dns.records.get(rid, zone_id=ZONE).content == "198.51.100.1"

    edited = cf.dns.records.edit(rid, zone_id=ZONE, name=HOST, ttl=1, type="A", content="203.0.113.9")
    assert edited.content == "203.0.113.9"
    assert cf.dns.records.get(rid, zone_id=ZONE).content == "203.0.113.9"

    created = cf.dns.records.create(zone_id=ZONE, name="new.example.com", ttl=300, type="A", content="203.0.113.10")
    again = list(cf.dns.records.list(zone_id=ZONE, type="A", name={"exact": "new.example.com"}))
    assert [(r.id, r.content, r.ttl) for r in again] == [(created.id, "203.0.113.10", 300)]
    assert list(cf.dns.records.list(zone_id=ZONE, type="AAAA", name={"exact": HOST})) == []


def test_errors_map_to_the_sdk_exceptions(standin):
    with pytest.raises(cloudflare.AuthenticationError) as e:
        list(client(standin, "wrong").dns.records.list(zone_id=ZONE))
    assert e.value.status_code == 401

    cf = client(standin)
    with pytest.raises(cloudflare.PermissionDeniedError):
        list(cf.dns.records.list(zone_id="0" * 32))
    with pytest.raises(cloudflare.NotFoundError):
        cf.dns.records.get("f" * 32, zone_id=ZONE)

    admin(standin, "faults", {"fault": "429", "count": 1, "retry_after": 1})
    with pytest.raises(cloudflare.RateLimitError) as e:
        list(cf.dns.records.list(zone_id=ZONE))
    assert e.value.response.headers["retry-after"] == "1"

    admin(standin, "faults", {"fault": "status", "status": 503, "count": 1})
    with pytest.raises(cloudflare.InternalServerError):
        list(cf.dns.records.list(zone_id=ZONE))

    # The fault queue is drained: normal service again, and the requests
    # were recorded without the token.
    assert len(list(cf.dns.records.list(zone_id=ZONE))) == 1
    recorded = admin(standin, "requests")
    assert [r["authorized"] for r in recorded][:1] == [False]
    assert TOKEN not in json.dumps(recorded)
