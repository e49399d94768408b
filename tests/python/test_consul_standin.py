"""Cross-check of the Consul stand-in against an independent client, py-consul (import name ``consul``).

Starts the ``watchdog-standins consul`` binary (``STANDINS_BIN``, default
``target/debug/watchdog-standins`` under the repo root) on port 0 and drives it
only through py-consul, plus the stand-in's ``/_standin/state`` to know when a
blocking query is really parked.
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

import consul
import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
STARTUP_TIMEOUT = 10.0
NODE_KEY = "oracle-watchdog/nodes/n1"


def standins_bin() -> Path:
    path = Path(os.environ.get("STANDINS_BIN", REPO_ROOT / "target" / "debug" / "watchdog-standins"))
    if not path.is_absolute():
        path = REPO_ROOT / path
    if not path.exists():
        pytest.fail(f"{path} not found: build it with `cargo build -p watchdog-standins` or set STANDINS_BIN")
    return path


class Standin:
    """A running ``watchdog-standins consul`` process."""

    def __init__(self, *extra: str) -> None:
        self.proc = subprocess.Popen(
            [str(standins_bin()), "consul", "--listen", "127.0.0.1:0", *extra],
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
        prefix = "consul listening on "
        if not first.startswith(prefix):
            self.stop()
            pytest.fail(f"unexpected first line {first!r}; stderr: {self.proc.stderr.read()}")
        self.addr = first[len(prefix) :].strip()
        host, port = self.addr.rsplit(":", 1)
        self.host, self.port = host, int(port)

    def client(self, **kwargs) -> consul.Consul:
        return consul.Consul(host=self.host, port=self.port, **kwargs)

    def state(self) -> dict:
        with urllib.request.urlopen(f"http://{self.addr}/_standin/state", timeout=10) as resp:
            return json.load(resp)

    def wait_parked(self, n: int = 1, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.state()["parked_queries"] >= n:
                return
            time.sleep(0.02)
        pytest.fail("blocking query never parked on the stand-in")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture(autouse=True)
def _no_consul_env(monkeypatch):
    # py-consul prefers these over its arguments; keep the host's settings out.
    for var in ("CONSUL_HTTP_ADDR", "CONSUL_HTTP_TOKEN", "CONSUL_HTTP_SSL"):
        monkeypatch.delenv(var, raising=False)


@pytest.fixture
def standin():
    s = Standin()
    yield s
    s.stop()


def test_leader(standin):
    assert standin.client().status.leader() == "127.0.0.1:8300"


def test_session_acquire_get_renew(standin):
    c = standin.client()
    sid = c.session.create(name="oracle-watchdog-n1", ttl=10, behavior="delete", lock_delay=0)
    _, info = c.session.info(sid)
    assert info["Behavior"] == "delete"
    assert info["TTL"] == "10s"
    assert info["LockDelay"] == 0

    assert c.kv.put(NODE_KEY, "alive", acquire=sid) is True
    index, entry = c.kv.get(NODE_KEY)
    assert entry["Session"] == sid
    assert entry["Value"] == b"alive"
    assert entry["LockIndex"] == 1
    assert int(index) == entry["ModifyIndex"]

    renewed = c.session.renew(sid)
    assert renewed["ID"] == sid

    other = c.session.create(lock_delay=0)
    assert c.kv.put(NODE_KEY, "mine", acquire=other) is False
    assert c.kv.get(NODE_KEY)[1]["Value"] == b"alive"


def test_default_lock_delay_blocks_reacquire(standin):
    c = standin.client()
    first = c.session.create(ttl=10)  # py-consul leaves LockDelay out: Consul's 15 s default
    assert c.kv.put(NODE_KEY, "a", acquire=first) is True
    assert c.session.destroy(first) is True
    _, entry = c.kv.get(NODE_KEY)
    assert "Session" not in entry  # release behaviour: key stays, unlocked
    second = c.session.create(ttl=10, lock_delay=0)
    assert c.kv.put(NODE_KEY, "b", acquire=second) is False


def test_renew_of_unknown_session_is_not_found(standin):
    with pytest.raises(consul.NotFound):
        standin.client().session.renew("00000000-0000-4000-8000-000000000000")


def test_blocking_get_returns_after_delete_from_another_thread(standin):
    c = standin.client()
    c.kv.put("oracle-watchdog/nodes/n1", "x")
    c.kv.put("oracle-watchdog/nodes/n2", "y")
    index, entries = c.kv.get("oracle-watchdog/nodes/", recurse=True)
    assert [e["Key"] for e in entries] == ["oracle-watchdog/nodes/n1", "oracle-watchdog/nodes/n2"]

    results: queue.Queue = queue.Queue()

    def blocking_get():
        try:
            results.put(standin.client().kv.get("oracle-watchdog/nodes/", recurse=True, index=index, wait="5m"))
        except Exception as exc:  # surfaced in the main thread
            results.put(exc)

    threading.Thread(target=blocking_get, daemon=True).start()
    standin.wait_parked()
    assert c.kv.delete("oracle-watchdog/nodes/n1") is True
    result = results.get(timeout=10)
    assert not isinstance(result, Exception), result
    new_index, entries = result
    assert int(new_index) > int(index)
    assert [e["Key"] for e in entries] == ["oracle-watchdog/nodes/n2"]


def test_destroy_removes_delete_behaviour_key(standin):
    c = standin.client()
    sid = c.session.create(ttl=30, behavior="delete", lock_delay=0)
    assert c.kv.put(NODE_KEY, "alive", acquire=sid) is True
    assert c.session.destroy(sid) is True
    _, entry = c.kv.get(NODE_KEY)
    assert entry is None
    _, sessions = c.session.list()
    assert sessions == []


def test_keys_with_separator(standin):
    c = standin.client()
    for key in ("a/1", "a/b/2", "a/b/3", "c"):
        c.kv.put(key, key)
    _, keys = c.kv.get("a/", keys=True, separator="/")
    assert keys == ["a/1", "a/b/"]


def test_token_required():
    s = Standin("--token", "s3cret")
    try:
        good = s.client(token="s3cret")
        assert good.kv.put("k", "v") is True
        assert good.kv.get("k")[1]["Value"] == b"v"
        with pytest.raises(consul.ACLPermissionDenied):
            s.client().kv.get("k")
        with pytest.raises(consul.ACLPermissionDenied):
            s.client(token="wrong").kv.put("k", "x")
        assert good.kv.get("k")[1]["Value"] == b"v"
    finally:
        s.stop()
