"""tools/loadprobe.py against a real threaded HTTP server on 127.0.0.1.

The server answers /, /slow and /counter like the sample app and can be told to fail the
next GET / requests in a chosen way, so the probe's failure count can be checked exactly.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import loadprobe
import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "tools" / "loadprobe.py"


@dataclass
class Behaviour:
    """What the test server does; changed by the tests while the probe runs."""

    text: str = "v1"
    version: str = "1"
    visits: int = 0
    counter_degraded: bool = False
    always_503: bool = False
    # Faults for the next GET / requests, one each: "503", "partial" or "hangup".
    faults: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def next_fault(self) -> str | None:
        with self.lock:
            return self.faults.pop(0) if self.faults else None

    def switch(self, text: str, version: str) -> None:
        with self.lock:
            self.text, self.version = text, version

    def count_visit(self) -> int | None:
        with self.lock:
            if self.counter_degraded:
                return None
            self.visits += 1
            return self.visits


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    # The default backlog of 5 overflows when fresh workers connect in bursts; a dropped SYN
    # would show up as a one-second stall, not as the failures the tests count.
    request_queue_size = 128
    behaviour: Behaviour


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out in two writes; Nagle plus delayed ACKs would add 40 ms each.
    disable_nagle_algorithm = True
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _send(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        behaviour = self.server.behaviour
        url = urlsplit(self.path)
        if url.path == "/":
            fault = behaviour.next_fault()
            if fault == "hangup":
                self.close_connection = True
            elif fault == "503" or behaviour.always_503:
                self._send(503, b"unavailable\n")
            elif fault == "partial":
                self.send_response(200)
                self.send_header("Content-Length", "100")
                self.end_headers()
                self.wfile.write(b"Hello")
                self.wfile.flush()
                self.close_connection = True
            else:
                with behaviour.lock:
                    text, version = behaviour.text, behaviour.version
                self._send(200, f"{text}\n".encode(), {"X-App-Version": version})
        elif url.path == "/slow":
            seconds = float(parse_qs(url.query).get("seconds", ["1"])[0])
            time.sleep(min(seconds, 10.0))
            self._send(200, f"slept {seconds:g}".encode())
        elif url.path == "/counter":
            visits = behaviour.count_visit()
            payload: dict[str, Any] = {"visits": visits}
            if visits is None:
                payload["error"] = "counter unavailable"
            self._send(200, json.dumps(payload).encode(), {"Content-Type": "application/json"})
        else:
            self._send(404, b"not found\n")


@dataclass
class Served:
    url: str
    behaviour: Behaviour


@pytest.fixture
def server() -> Iterator[Served]:
    httpd = _Server(("127.0.0.1", 0), Handler)
    httpd.behaviour = Behaviour()
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield Served(f"http://127.0.0.1:{httpd.server_address[1]}", httpd.behaviour)
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()


def assert_consistent(result: dict[str, Any]) -> None:
    by_kind = result["by_kind"]
    assert result["requests"] == sum(stats["requests"] for stats in by_kind.values())
    assert result["failed"] == sum(stats["failed"] for stats in by_kind.values())
    assert result["requests"] == sum(row[1] for row in result["timeline"])
    assert result["failed"] == sum(row[2] for row in result["timeline"])
    assert [row[0] for row in result["timeline"]] == list(range(len(result["timeline"])))
    assert len(result["failures"]) == min(result["failed"], loadprobe.MAX_FAILURES_KEPT)
    assert result["worker_errors"] == []
    assert result["workers_abandoned"] == 0


# ---- refusals -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "http://10.1.2.3:18080",
        "http://example.com",
        "http://127.0.0.2:18080",
        "http://127.0.0.1.nip.io:18080",
        "http://0.0.0.0:18080",
        "http://[::ffff:127.0.0.1]:18080",
        "https://127.0.0.1:18443",
        "http://127.0.0.1:18080/some/path",
        "http://user:secret@127.0.0.1:18080",
        "127.0.0.1:18080",
    ],
)
def test_refuses_bad_targets_before_sending(url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_network(*args: object, **kwargs: object) -> None:
        raise AssertionError("loadprobe tried to connect")

    monkeypatch.setattr(socket, "create_connection", no_network)
    monkeypatch.setattr(socket.socket, "connect", no_network)
    with pytest.raises(loadprobe.ProbeConfigError):
        loadprobe.run(url, seconds=1, max_requests=10)


def test_accepts_loopback_targets() -> None:
    assert loadprobe.parse_target("http://127.0.0.1:18080") == loadprobe.Target(
        "127.0.0.1", 18080, None
    )
    assert loadprobe.parse_target("http://[::1]:18080/") == loadprobe.Target("::1", 18080, None)
    # localhost is never resolved: it goes to 127.0.0.1 and keeps its name in the Host header.
    assert loadprobe.parse_target("http://localhost") == loadprobe.Target(
        "127.0.0.1", 80, "localhost:80"
    )


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("seconds", 0),
        ("max_requests", 0),
        ("max_requests", loadprobe.MAX_REQUESTS_LIMIT + 1),
        ("keepalive_workers", -1),
        ("timeout", float("inf")),
    ],
)
def test_refuses_unbounded_settings(option: str, value: float) -> None:
    settings: dict[str, Any] = {"seconds": 1.0, "max_requests": 10, option: value}
    with pytest.raises(loadprobe.ProbeConfigError):
        loadprobe.run("http://127.0.0.1:9", **settings)


def test_refuses_leftover_stop_file(tmp_path: Path) -> None:
    stop = tmp_path / "stop"
    stop.touch()
    with pytest.raises(loadprobe.ProbeConfigError, match="already exists"):
        loadprobe.run("http://127.0.0.1:9", seconds=1, max_requests=10, stop_file=stop)


# ---- runs against the test server -----------------------------------------------------------


def test_counts_injected_failures_exactly(server: Served) -> None:
    server.behaviour.faults = ["503"] * 5 + ["partial"] * 3 + ["hangup"] * 2
    result = loadprobe.run(
        server.url,
        seconds=10,
        max_requests=400,
        keepalive_workers=3,
        fresh_workers=2,
        slow_workers=1,
        slow_seconds=0.05,
        counter_every=5,
        timeout=5,
        failure_pause=0,
    )
    assert_consistent(result)
    assert result["stopped_by"] == "max-requests"
    assert result["requests"] == 400
    assert result["failed"] == 10
    errors = [failure["error"] for failure in result["failures"]]
    assert errors.count("HTTP 503") == 5
    assert sum(error.startswith("IncompleteRead") for error in errors) == 3
    assert sum(error.startswith("RemoteDisconnected") for error in errors) == 2
    assert all(failure["path"] == "/" for failure in result["failures"])
    assert result["by_kind"]["slow"]["failed"] == 0
    assert all(result["by_kind"][kind]["requests"] > 0 for kind in loadprobe.KINDS)
    # Each failed keep-alive exchange forces a new connection; a healthy one never does.
    assert (
        result["reconnects"]["after_failure"]
        == result["by_kind"]["keepalive"]["failed"] + (result["by_kind"]["slow"]["failed"])
    )
    assert result["reconnects"]["idle_close"] == 0
    assert {item[1] for item in result["texts"]} == {"v1"}
    assert {item[2] for item in result["texts"]} == {"1"}
    assert result["counter"]
    assert loadprobe.counter_monotonic(result, strict=True)
    latency = result["latency"]
    assert 0 < latency["p50"] <= latency["p99"] <= latency["max"]


def test_texts_counter_start_and_stop_files(server: Served, tmp_path: Path) -> None:
    start, stop = tmp_path / "start", tmp_path / "stop"
    outcome: dict[str, Any] = {}

    def probe() -> None:
        outcome["result"] = loadprobe.run(
            server.url,
            seconds=15,
            max_requests=100_000,
            keepalive_workers=2,
            fresh_workers=1,
            slow_workers=1,
            slow_seconds=0.2,
            counter_every=3,
            timeout=5,
            start_file=start,
            stop_file=stop,
        )

    thread = threading.Thread(target=probe)
    thread.start()
    try:
        deadline = time.monotonic() + 5
        while not start.exists():
            assert time.monotonic() < deadline, "start file never appeared"
            time.sleep(0.01)
        time.sleep(0.3)
        server.behaviour.counter_degraded = True
        time.sleep(0.2)
        server.behaviour.counter_degraded = False
        switched_at = time.time()
        server.behaviour.switch("v2", "2")
        time.sleep(0.4)
    finally:
        stop.touch()
        thread.join(timeout=10)
    assert not thread.is_alive()
    result = outcome["result"]

    assert_consistent(result)
    assert result["stopped_by"] == "stop-file"
    assert result["failed"] == 0
    assert result["duration_seconds"] < 5
    assert result["start_file_created_at"] is not None
    assert float(start.read_text()) == pytest.approx(result["start_file_created_at"], abs=0.01)
    assert all(result["by_kind"][kind]["requests"] > 0 for kind in loadprobe.KINDS)

    switch = switched_at - result["started_at"]
    assert loadprobe.texts_after(result, 0) == {"v1", "v2"}
    # time.time() and the probe's monotonic clock may disagree by a hair; allow for it.
    assert loadprobe.texts_after(result, switch + 0.02) == {"v2"}
    assert loadprobe.versions_after(result, switch + 0.02) == {"2"}
    analysis = loadprobe.analyse(result, since=switch + 0.02)
    assert analysis.texts == {"v2"}
    assert analysis.failures == ()
    assert analysis.counter_monotonic
    # Compression keeps the first and last GET / of each run per worker, not every request.
    assert len(result["texts"]) <= 4 * 3

    visits = [item[1] for item in result["counter"]]
    assert None in visits
    assert any(isinstance(value, int) for value in visits)
    assert loadprobe.counter_monotonic(result, strict=True)


def test_seconds_bound_stops_the_run(server: Served) -> None:
    result = loadprobe.run(
        server.url,
        seconds=1.0,
        max_requests=loadprobe.MAX_REQUESTS_LIMIT,
        keepalive_workers=2,
        fresh_workers=1,
        slow_workers=1,
        slow_seconds=0.1,
        counter_every=10,
        timeout=5,
    )
    assert_consistent(result)
    assert result["stopped_by"] == "seconds"
    assert 1.0 <= result["duration_seconds"] < 1.6
    assert result["failed"] == 0
    assert all(row[0] <= 1 for row in result["timeline"])


def test_timeout_cuts_requests_and_counts_them(server: Served) -> None:
    result = loadprobe.run(
        server.url,
        seconds=0.8,
        max_requests=loadprobe.MAX_REQUESTS_LIMIT,
        keepalive_workers=1,
        fresh_workers=0,
        slow_workers=1,
        slow_seconds=5,
        timeout=0.3,
        failure_pause=0,
    )
    assert_consistent(result)
    assert result["stopped_by"] == "seconds"
    # The last slow request may start just before the deadline and still gets its timeout.
    assert result["duration_seconds"] < 0.8 + 0.3 + 0.3
    assert result["by_kind"]["keepalive"]["failed"] == 0
    slow = result["by_kind"]["slow"]
    assert slow["requests"] >= 2
    assert slow["failed"] == slow["requests"]
    for failure in result["failures"]:
        assert failure["kind"] == "slow"
        assert "timeout" in failure["error"] or "timed out" in failure["error"]
        assert failure["duration"] < 0.3 + 0.2
    # The latency summary leaves the slow requests out.
    assert result["latency"]["max"] < 300


def test_start_file_waits_for_success_from_every_worker(server: Served, tmp_path: Path) -> None:
    server.behaviour.always_503 = True
    start = tmp_path / "start"
    result = loadprobe.run(
        server.url,
        seconds=0.5,
        max_requests=1000,
        keepalive_workers=1,
        fresh_workers=1,
        slow_workers=1,
        slow_seconds=0.05,
        counter_every=0,
        start_file=start,
    )
    assert_consistent(result)
    # Only the slow worker succeeded; the others never did, so the load is not "flowing".
    assert result["by_kind"]["slow"]["failed"] == 0
    assert result["failed"] == result["requests"] - result["by_kind"]["slow"]["requests"] > 0
    assert not start.exists()
    assert result["start_file_created_at"] is None


def test_refused_port_counts_failures_without_spinning() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again below: nothing listens there
    result = loadprobe.run(
        f"http://127.0.0.1:{port}",
        seconds=0.5,
        max_requests=10_000,
        keepalive_workers=1,
        fresh_workers=1,
        slow_workers=0,
        failure_pause=0.05,
    )
    assert_consistent(result)
    assert result["failed"] == result["requests"]
    assert all(f["error"].startswith("ConnectionRefusedError") for f in result["failures"])
    # The pause after each failure keeps two workers near 2 * 0.5 / 0.05 requests.
    assert result["requests"] <= 30


# ---- command line ---------------------------------------------------------------------------


def test_cli_writes_result_and_summary(server: Served, tmp_path: Path) -> None:
    out, start = tmp_path / "result.json", tmp_path / "start"
    completed = subprocess.run(
        [
            sys.executable,
            str(SCRIPT),
            "--url",
            server.url,
            "--seconds",
            "10",
            "--max-requests",
            "200",
            "--keepalive-workers",
            "2",
            "--fresh-workers",
            "1",
            "--slow-workers",
            "1",
            "--slow-seconds",
            "0.05",
            "--counter-every",
            "10",
            "--out",
            str(out),
            "--start-file",
            str(start),
            "--log-requests",
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.startswith("loadprobe: 200 requests, 0 failed, ")
    assert completed.stdout.count("\n") == 1
    result = json.loads(out.read_text())
    assert_consistent(result)
    assert result["stopped_by"] == "max-requests"
    assert start.exists()
    log = result["requests_log"]
    assert len(log) == 200
    fields = result["requests_log_fields"]
    rows = [dict(zip(fields, row, strict=True)) for row in log]
    assert {row["kind"] for row in rows} == set(loadprobe.KINDS)
    assert {row["text"] for row in rows if row["path"] == "/"} == {"v1"}
    assert all(row["status"] == 200 and row["error"] is None for row in rows)


@pytest.mark.parametrize("url", ["http://10.1.2.3", "http://example.com:80"])
def test_cli_refuses_non_loopback(url: str, tmp_path: Path) -> None:
    out = tmp_path / "result.json"
    completed = subprocess.run(
        [
            sys.executable,
            str(SCRIPT),
            "--url",
            url,
            "--seconds",
            "5",
            "--max-requests",
            "5",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert completed.returncode == 2
    assert "refusing target host" in completed.stderr
    assert completed.stdout == ""
    assert not out.exists()


# ---- analysis helpers -----------------------------------------------------------------------


def test_percentile_is_nearest_rank() -> None:
    values = [float(n) for n in range(1, 101)]
    assert loadprobe.percentile(values, 50) == 50
    assert loadprobe.percentile(values, 99) == 99
    assert loadprobe.percentile(values, 100) == 100
    assert loadprobe.percentile(values, 0) == 1
    assert loadprobe.percentile([7.0], 99) == 7
    with pytest.raises(ValueError):
        loadprobe.percentile([], 50)


def test_counter_monotonic_ignores_overlap_and_nulls() -> None:
    def result(*samples: list[Any]) -> dict[str, Any]:
        return {"counter": list(samples)}

    assert loadprobe.counter_monotonic(result())
    assert loadprobe.counter_monotonic(result([0.0, 5, 0.1], [0.2, None, 0.3], [0.4, 6, 0.5]))
    assert not loadprobe.counter_monotonic(result([0.0, 5, 0.1], [0.2, 3, 0.3]))
    # Started together, counted in the other order: not a regression.
    assert loadprobe.counter_monotonic(result([0.0, 6, 0.5], [0.1, 5, 0.3]))
    assert loadprobe.counter_monotonic(result([0.0, 5, 0.1], [0.2, 5, 0.3]))
    assert not loadprobe.counter_monotonic(result([0.0, 5, 0.1], [0.2, 5, 0.3]), strict=True)
    # A regression before `since` does not count.
    decreasing = result([0.0, 9, 0.1], [0.2, 3, 0.3], [0.4, 4, 0.5])
    assert loadprobe.counter_monotonic(decreasing, since=0.15)


def test_texts_after_sees_the_end_of_each_run() -> None:
    result = {"texts": [[0.1, "old", "1"], [4.9, "old", "1"], [5.0, "new", "2"], [9.0, "new", "2"]]}
    # Requests between 3 and 4.9 saw "old": the run's last entry keeps that visible.
    assert loadprobe.texts_after(result, 3.0) == {"old", "new"}
    assert loadprobe.texts_after(result, 4.95) == {"new"}
    assert loadprobe.versions_after(result, 4.95) == {"2"}


def test_peer_closed_detects_an_idle_close() -> None:
    left, right = socket.socketpair()
    with left, right:
        assert not loadprobe._peer_closed(left)
        right.close()
        assert loadprobe._peer_closed(left)
