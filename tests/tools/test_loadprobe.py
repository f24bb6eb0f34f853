"""tools/loadprobe.py against real HTTP servers on 127.0.0.1.

The threaded server answers /, /slow and GET and POST /counter like the sample app and can be
told to fail the next GET / or POST requests in a chosen way, so the probe's failure count can
be checked exactly. The scripted server below it is raw sockets: its Nth connection does what
the test says with each request (answer, close or reset without answering, hang, ...), which
is what the retry on idle close is tested against.
"""

from __future__ import annotations

import json
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
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
    # Faults for the next POST requests, one each: "503", "not-json" or "no-visits".
    post_faults: list[str] = field(default_factory=list)
    # (path, Content-Type, Connection, body) of every POST, and the connection count.
    posts: list[tuple[str, str | None, str | None, bytes]] = field(default_factory=list)
    connections: int = 0
    # Serve under this path prefix (as an app routed at /api/ does); anything else is a 404.
    prefix: str = ""
    lock: threading.Lock = field(default_factory=threading.Lock)

    def next_fault(self) -> str | None:
        with self.lock:
            return self.faults.pop(0) if self.faults else None

    def next_post_fault(self) -> str | None:
        with self.lock:
            return self.post_faults.pop(0) if self.post_faults else None

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

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A late answer to a client that gave up (the probe's timeout) is no server error.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


MAINTENANCE = {loadprobe.MAINTENANCE_HEADER: "on", "Retry-After": "120"}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out in two writes; Nagle plus delayed ACKs would add 40 ms each.
    disable_nagle_algorithm = True
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def handle(self) -> None:
        with self.server.behaviour.lock:
            self.server.behaviour.connections += 1
        super().handle()

    def _send(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def _path(self) -> str | None:
        """The path under the behaviour's prefix, None outside it."""
        prefix = self.server.behaviour.prefix
        path = urlsplit(self.path).path
        if not path.startswith(prefix + "/"):
            return None
        return path[len(prefix) :]

    def do_GET(self) -> None:
        behaviour = self.server.behaviour
        url = urlsplit(self.path)
        path = self._path()
        if path == "/":
            fault = behaviour.next_fault()
            if fault == "hangup":
                self.close_connection = True
            elif fault == "503" or behaviour.always_503:
                self._send(503, b"unavailable\n")
            elif fault == "maintenance":
                self._send(503, b"down for maintenance\n", MAINTENANCE)
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
        elif path == "/slow":
            seconds = float(parse_qs(url.query).get("seconds", ["1"])[0])
            time.sleep(min(seconds, 10.0))
            self._send(200, f"slept {seconds:g}".encode())
        elif path == "/counter":
            self._counter()
        else:
            self._send(404, b"not found\n")

    def _counter(self) -> None:
        visits = self.server.behaviour.count_visit()
        payload: dict[str, Any] = {"visits": visits}
        if visits is None:
            payload["error"] = "counter unavailable"
        self._send(200, json.dumps(payload).encode(), {"Content-Type": "application/json"})

    def do_POST(self) -> None:
        behaviour = self.server.behaviour
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        with behaviour.lock:
            behaviour.posts.append(
                (self.path, self.headers["Content-Type"], self.headers["Connection"], body)
            )
        if self._path() != "/counter":
            self._send(404, b"not found\n")
            return
        fault = behaviour.next_post_fault()
        if fault == "503":
            self._send(503, b"unavailable\n")
        elif fault == "maintenance":
            self._send(503, b"down for maintenance\n", MAINTENANCE)
        elif fault == "not-json":
            self._send(200, b"<html>counter</html>")
        elif fault == "no-visits":
            self._send(200, b'{"hits": 3}', {"Content-Type": "application/json"})
        else:
            self._counter()


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
    assert result["retried_on_idle_close"] == sum(
        stats["retried_on_idle_close"] for stats in by_kind.values()
    )
    assert set(by_kind) == set(loadprobe.KINDS)


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


@pytest.mark.parametrize("prefix", ["api", "/api/", "/api?x=1", "//api", "/a b", "/api/.."])
def test_refuses_bad_prefixes(prefix: str) -> None:
    with pytest.raises(loadprobe.ProbeConfigError, match="prefix"):
        loadprobe.run("http://127.0.0.1:9", seconds=1, max_requests=10, prefix=prefix)


# ---- runs against the test server -----------------------------------------------------------


def test_prefix_puts_every_request_under_it(server: Served) -> None:
    """An app routed at /api/ is probed at /api/, /api/slow and /api/counter, nowhere else."""
    server.behaviour.prefix = "/api"
    settings: dict[str, Any] = {
        "seconds": 10,
        "max_requests": 120,
        "keepalive_workers": 2,
        "fresh_workers": 1,
        "slow_workers": 1,
        "post_workers": 1,
        "slow_seconds": 0.05,
        "counter_every": 3,
        "timeout": 5,
    }
    result = loadprobe.run(server.url, prefix="/api", log_requests=True, **settings)
    assert_consistent(result)
    assert result["failed"] == 0, result["failures"][:5]
    assert all(result["by_kind"][kind]["requests"] > 0 for kind in loadprobe.KINDS)
    assert loadprobe.texts_after(result, 0) == {"v1"}
    assert result["counter"] and loadprobe.counter_monotonic(result)
    assert result["config"]["prefix"] == "/api"
    paths = {row[4].split("?")[0] for row in result["requests_log"]}
    assert paths == {"/api/", "/api/slow", "/api/counter"}
    assert {post[0] for post in server.behaviour.posts} == {"/api/counter"}
    # Without the prefix the same server answers 404 to everything: every request fails.
    unprefixed = loadprobe.run(server.url, **{**settings, "max_requests": 20})
    assert unprefixed["failed"] == unprefixed["requests"] == 20


def test_counts_injected_failures_exactly(server: Served) -> None:
    server.behaviour.faults = ["503"] * 5 + ["partial"] * 3 + ["hangup"] * 2
    result = loadprobe.run(
        server.url,
        seconds=10,
        max_requests=400,
        keepalive_workers=3,
        fresh_workers=2,
        slow_workers=1,
        post_workers=1,
        slow_seconds=0.05,
        counter_every=5,
        timeout=5,
        failure_pause=0,
    )
    assert_consistent(result)
    assert result["stopped_by"] == "max-requests"
    assert result["requests"] == 400
    # A hangup on a reused keep-alive connection looks exactly like an idle close: that GET
    # is sent once more instead of failing (and its retry may meet the next fault).
    retried = result["retried_on_idle_close"]
    assert retried == result["by_kind"]["keepalive"]["retried_on_idle_close"] <= 2
    assert result["failed"] + retried == 10
    errors = [failure["error"] for failure in result["failures"]]
    assert errors.count("HTTP 503") == 5
    assert sum(error.startswith("IncompleteRead") for error in errors) == 3
    assert sum(error.startswith("RemoteDisconnected") for error in errors) == 2 - retried
    assert all(failure["path"] == "/" for failure in result["failures"])
    assert result["by_kind"]["slow"]["failed"] == 0
    assert result["by_kind"]["post"]["failed"] == 0
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


def test_maintenance_answers_are_counted_apart_and_other_503s_fail(server: Served) -> None:
    server.behaviour.faults = ["maintenance"] * 4 + ["503"] * 2
    server.behaviour.post_faults = ["maintenance"] * 3
    result = loadprobe.run(
        server.url,
        seconds=10,
        max_requests=200,
        keepalive_workers=2,
        fresh_workers=1,
        slow_workers=0,
        post_workers=1,
        counter_every=0,
        timeout=5,
        failure_pause=0,
    )
    assert_consistent(result)
    assert result["maintenance"] == 7
    assert result["by_kind"]["post"]["maintenance"] == 3
    assert result["by_kind"]["post"]["failed"] == 0
    # A 503 without the maintenance header is a failure, as before.
    assert result["failed"] == 2
    assert {failure["error"] for failure in result["failures"]} == {"HTTP 503"}
    # A failure keeps the start of the error page, which names the hop that answered.
    assert {failure["answer"] for failure in result["failures"]} == {"unavailable"}
    # The maintenance page is no text of the app, and no counter sample.
    assert {item[1] for item in result["texts"]} == {"v1"}
    assert all(visits is not None for _, visits, _ in result["counter"])
    first, last = result["maintenance_window"]
    assert 0 <= first <= last <= result["duration_seconds"]
    assert "7 answered by the maintenance page" in loadprobe.summary(result)


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
            post_workers=1,
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


# ---- POST load ------------------------------------------------------------------------------


def test_post_workers_post_counter_on_new_connections(server: Served) -> None:
    result = loadprobe.run(
        server.url,
        seconds=10,
        max_requests=40,
        keepalive_workers=0,
        fresh_workers=0,
        slow_workers=0,
        post_workers=2,
        timeout=5,
    )
    assert_consistent(result)
    assert result["stopped_by"] == "max-requests"
    assert result["by_kind"]["post"] == {
        "requests": 40,
        "failed": 0,
        "retried_on_idle_close": 0,
        "maintenance": 0,
    }
    assert result["config"]["workers"]["post"] == 2
    # One connection per POST, each announcing its close, each with the same small JSON body.
    assert server.behaviour.connections == 40
    assert len(server.behaviour.posts) == 40
    for path, content_type, connection, body in server.behaviour.posts:
        assert (path, content_type, connection) == ("/counter", "application/json", "close")
        assert json.loads(body) == {"source": "loadprobe"}
    # Every answer is a counter sample, so counter_monotonic covers the POSTs.
    assert sorted(item[1] for item in result["counter"]) == list(range(1, 41))
    assert loadprobe.counter_monotonic(result, strict=True)
    assert result["texts"] == []


def test_post_answers_are_checked_like_get_counter(server: Served) -> None:
    server.behaviour.post_faults = ["503", "not-json", "no-visits"]
    server.behaviour.counter_degraded = True
    result = loadprobe.run(
        server.url,
        seconds=10,
        max_requests=5,
        keepalive_workers=0,
        fresh_workers=0,
        slow_workers=0,
        post_workers=1,
        timeout=5,
        failure_pause=0,
    )
    assert_consistent(result)
    assert result["by_kind"]["post"]["failed"] == 3
    assert [(f["kind"], f["path"], f["error"]) for f in result["failures"]] == [
        ("post", "/counter", "HTTP 503"),
        ("post", "/counter", "invalid counter JSON"),
        ("post", "/counter", "counter JSON without an integer or null 'visits'"),
    ]
    # A degraded counter (visits null) is an answer, not a failure.
    assert [item[1] for item in result["counter"]] == [None, None]


# ---- retry on idle close (RFC 9112, section 9.3.1) -----------------------------------------


@dataclass(frozen=True)
class Seen:
    connection: int
    method: str
    path: str
    headers: dict[str, str]


class ScriptedServer:
    """Raw HTTP/1.1 on 127.0.0.1; its Nth connection follows script[N], one step per request.

    Steps (a connection whose steps are used up, or that has none, answers "ok"):
      ok             answer 200 and keep the connection open
      ok-close       answer 200 (keep-alive, as far as the client can tell), then close at once
      close          read the request, close without a byte of an answer
      close-late     read the request, wait 0.2 s, close without a byte of an answer
      reset          read the request, reset the connection (RST) without a byte of an answer
      503, 408       answer that status (408 with Connection: close, then close)
      partial        answer 200 with a body cut short, then close
      partial-reset  send part of the header block, wait, then reset
      hang           read the request and never answer
      trickle        answer 200 with Connection: close, then the body one byte every 50 ms
    """

    def __init__(self, script: list[list[str]]) -> None:
        self.script = script
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.05)
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.lock = threading.Lock()
        self.seen: list[Seen] = []
        self.connections = 0
        self.visits = 0
        self.stopping = threading.Event()
        self.threads: list[threading.Thread] = []
        self.acceptor = threading.Thread(target=self._accept)
        self.acceptor.start()

    def close(self) -> None:
        self.stopping.set()
        self.acceptor.join()
        self.listener.close()
        for thread in self.threads:
            thread.join(timeout=5)

    def _accept(self) -> None:
        while not self.stopping.is_set():
            try:
                sock, _ = self.listener.accept()
            except TimeoutError:
                continue
            with self.lock:
                number = self.connections
                self.connections += 1
            steps = list(self.script[number]) if number < len(self.script) else []
            thread = threading.Thread(target=self._serve, args=(sock, number, steps))
            self.threads.append(thread)
            thread.start()

    def _serve(self, sock: socket.socket, number: int, steps: list[str]) -> None:
        sock.settimeout(None)
        reader = sock.makefile("rb")
        try:
            while not self.stopping.is_set():
                request = self._read(reader, number)
                if request is None:
                    return
                step = steps.pop(0) if steps else "ok"
                if step == "close-late":
                    self.stopping.wait(0.2)
                if step in ("close", "close-late"):
                    return
                if step == "reset":
                    _linger_zero(sock)
                    return
                if step == "hang":
                    self.stopping.wait()
                    return
                if step == "partial":
                    sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nHel")
                    return
                if step == "trickle":
                    sock.sendall(b"HTTP/1.1 200 OK\r\nConnection: close\r\n")
                    sock.sendall(b"Content-Length: 100\r\n\r\n")
                    while not self.stopping.wait(0.05):
                        sock.sendall(b"x")
                    return
                if step == "partial-reset":
                    sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Le")
                    self.stopping.wait(0.2)
                    _linger_zero(sock)
                    return
                sock.sendall(self._answer(step, request))
                if step in ("ok-close", "408"):
                    return
        except OSError:
            return
        finally:
            reader.close()
            sock.close()

    def _read(self, reader: Any, number: int) -> Seen | None:
        line = reader.readline()
        if not line:
            return None
        method, path, _ = line.decode("latin-1").split(" ", 2)
        headers: dict[str, str] = {}
        while (header := reader.readline()) not in (b"\r\n", b"\n", b""):
            name, _, value = header.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        reader.read(int(headers.get("content-length", "0")))
        seen = Seen(number, method, path, headers)
        with self.lock:
            self.seen.append(seen)
        return seen

    def _answer(self, step: str, request: Seen) -> bytes:
        status = {"503": "503 Service Unavailable", "408": "408 Request Timeout"}.get(step)
        extra = "Connection: close\r\n" if step == "408" else ""
        if status is not None:
            body = b"no\n"
        elif request.path == "/counter":
            with self.lock:
                self.visits += 1
                body = json.dumps({"visits": self.visits}).encode()
        else:
            body = b"v1\n"
        head = (
            f"HTTP/1.1 {status or '200 OK'}\r\nContent-Length: {len(body)}\r\n"
            f"X-App-Version: 1\r\n{extra}\r\n"
        )
        return head.encode() + body


def _linger_zero(sock: socket.socket) -> None:
    """Make the close that follows a reset (RST) instead of an orderly close (FIN)."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


@pytest.fixture
def scripted() -> Iterator[Callable[[list[list[str]]], ScriptedServer]]:
    servers: list[ScriptedServer] = []

    def start(script: list[list[str]]) -> ScriptedServer:
        servers.append(ScriptedServer(script))
        return servers[-1]

    yield start
    for started in servers:
        started.close()


def one_worker(url: str, kind: str, max_requests: int, **settings: Any) -> dict[str, Any]:
    """Run one worker of a kind for exactly max_requests requests; return the checked result."""
    options: dict[str, Any] = {f"{name}_workers": int(name == kind) for name in loadprobe.KINDS}
    options.update(counter_every=0, timeout=2, failure_pause=0, log_requests=True)
    options.update(settings)
    result = loadprobe.run(url, seconds=10, max_requests=max_requests, **options)
    assert_consistent(result)
    assert result["stopped_by"] == "max-requests"
    assert result["requests"] == max_requests
    return result


def retried_rows(result: dict[str, Any]) -> list[dict[str, Any]]:
    fields = result["requests_log_fields"]
    rows = [dict(zip(fields, row, strict=True)) for row in result["requests_log"]]
    return [row for row in rows if row["retried"]]


@pytest.mark.parametrize("step", ["close", "reset"])
def test_idle_close_of_a_reused_connection_is_retried_once(
    scripted: Callable[[list[list[str]]], ScriptedServer], step: str
) -> None:
    server = scripted([["ok", step]])
    result = one_worker(server.url, "keepalive", 3)
    assert result["failed"] == 0
    assert result["retried_on_idle_close"] == 1
    assert result["by_kind"]["keepalive"]["retried_on_idle_close"] == 1
    # Sent twice, the second time on a new connection, which then stays in use.
    assert [(seen.connection, seen.path) for seen in server.seen] == [
        (0, "/"),
        (0, "/"),
        (1, "/"),
        (1, "/"),
    ]
    assert result["reconnects"] == {"idle_close": 0, "connection_close": 0, "after_failure": 0}
    [row] = retried_rows(result)
    assert (row["status"], row["text"], row["error"]) == (200, "v1", None)
    assert "1 retried on idle close" in loadprobe.summary(result)


def test_retried_request_is_timed_from_its_first_attempt(
    scripted: Callable[[list[list[str]]], ScriptedServer],
) -> None:
    server = scripted([["ok", "close-late"]])
    result = one_worker(server.url, "keepalive", 2)
    assert result["failed"] == 0
    [row] = retried_rows(result)
    assert row["duration"] >= 0.2
    assert server.connections == 2


def test_close_racing_the_request_is_retried(
    scripted: Callable[[list[list[str]]], ScriptedServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    # The server closes the idle connection right after its answer. Normally the probe sees
    # that before sending; here the check is blinded, as when the close crosses the request
    # on the wire: the request then meets a closed connection (EOF, reset or broken pipe).
    server = scripted([["ok-close"]])
    monkeypatch.setattr(loadprobe, "_peer_closed", lambda sock: False)
    result = one_worker(server.url, "keepalive", 2, pace=0.1)
    assert result["failed"] == 0
    assert result["retried_on_idle_close"] == 1
    assert server.connections == 2


def test_idle_close_seen_before_sending_is_no_retry(
    scripted: Callable[[list[list[str]]], ScriptedServer],
) -> None:
    server = scripted([["ok-close"]])
    result = one_worker(server.url, "keepalive", 2, pace=0.1)
    assert result["failed"] == 0
    assert result["retried_on_idle_close"] == 0
    assert result["reconnects"]["idle_close"] == 1
    assert [seen.connection for seen in server.seen] == [0, 1]


@pytest.mark.parametrize("kind", ["keepalive", "fresh"])
@pytest.mark.parametrize("step", ["close", "reset"])
def test_close_on_a_new_connection_is_a_failure(
    scripted: Callable[[list[list[str]]], ScriptedServer], kind: str, step: str
) -> None:
    server = scripted([[step]])
    result = one_worker(server.url, kind, 2)
    assert result["failed"] == 1
    assert result["retried_on_idle_close"] == 0
    [failure] = result["failures"]
    assert failure["error"].startswith(("RemoteDisconnected", "ConnectionResetError"))
    assert failure["retried"] is False
    # The failed request was not sent again: the next connection carried the next request.
    assert [seen.connection for seen in server.seen] == [0, 1]


def test_failure_of_the_retry_is_a_failure(
    scripted: Callable[[list[list[str]]], ScriptedServer],
) -> None:
    server = scripted([["ok", "close"], ["close"]])
    result = one_worker(server.url, "keepalive", 2)
    assert result["failed"] == 1
    assert result["retried_on_idle_close"] == 1
    [failure] = result["failures"]
    assert failure["error"].startswith("RemoteDisconnected")
    assert failure["retried"] is True
    # Exactly one retry: the request went out twice, not three times.
    assert [seen.connection for seen in server.seen] == [0, 0, 1]


@pytest.mark.parametrize(("step", "error"), [("503", "HTTP 503"), ("408", "HTTP 408")])
def test_error_status_on_a_reused_connection_is_a_failure(
    scripted: Callable[[list[list[str]]], ScriptedServer], step: str, error: str
) -> None:
    server = scripted([["ok", step]])
    result = one_worker(server.url, "keepalive", 2)
    assert result["failed"] == 1
    assert result["retried_on_idle_close"] == 0
    assert [failure["error"] for failure in result["failures"]] == [error]
    assert server.connections == 1


@pytest.mark.parametrize(
    ("step", "error"), [("partial", "IncompleteRead"), ("partial-reset", "ConnectionResetError")]
)
def test_failure_after_part_of_the_answer_is_a_failure(
    scripted: Callable[[list[list[str]]], ScriptedServer], step: str, error: str
) -> None:
    server = scripted([["ok", step]])
    result = one_worker(server.url, "keepalive", 2)
    assert result["failed"] == 1
    assert result["retried_on_idle_close"] == 0
    [failure] = result["failures"]
    assert failure["error"].startswith(error)
    assert server.connections == 1


def test_socket_timeout_on_a_reused_connection_is_a_failure(
    scripted: Callable[[list[list[str]]], ScriptedServer],
) -> None:
    server = scripted([["ok", "hang"]])
    result = one_worker(server.url, "keepalive", 2, timeout=0.3)
    assert result["failed"] == 1
    assert result["retried_on_idle_close"] == 0
    [failure] = result["failures"]
    assert "timed out" in failure["error"] or "timeout" in failure["error"]
    assert server.connections == 1


def test_watchdog_timeout_on_a_reused_connection_is_a_failure(
    scripted: Callable[[list[list[str]]], ScriptedServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    # With a long socket timeout only the watchdog can end the silent request. It does so by
    # shutting the socket down, which http.client reports as a close without an answer on a
    # reused connection: exactly what an idle close looks like, and still no retry.
    def patient_connection(self: loadprobe._Worker) -> loadprobe._Connection:
        target = self.config.target
        return loadprobe._Connection(target.connect_host, target.port, timeout=10)

    monkeypatch.setattr(loadprobe._Worker, "_connection", patient_connection)
    server = scripted([["ok", "hang"]])
    result = one_worker(server.url, "keepalive", 2, timeout=0.3)
    assert result["failed"] == 1
    assert result["retried_on_idle_close"] == 0
    [failure] = result["failures"]
    assert failure["error"] == "timeout: no complete response within 0.3s"
    assert failure["duration"] < 0.3 + 0.2
    assert server.connections == 1


@pytest.mark.parametrize("kind", ["keepalive", "fresh", "post"])
def test_watchdog_cuts_a_trickling_answer_on_any_connection(
    scripted: Callable[[list[list[str]]], ScriptedServer], kind: str
) -> None:
    # http.client lets go of the socket of a Connection: close answer before reading its body;
    # the watchdog must still end that read, or a trickle would hold the run for ever.
    server = scripted([["trickle"]])
    result = one_worker(server.url, kind, 1, timeout=0.3)
    assert result["failed"] == 1
    [failure] = result["failures"]
    assert failure["error"] == "timeout: no complete response within 0.3s"
    assert failure["duration"] < 0.3 + 0.2
    assert result["retried_on_idle_close"] == 0


@pytest.mark.parametrize("step", ["close", "reset"])
def test_post_is_never_retried(
    scripted: Callable[[list[list[str]]], ScriptedServer], step: str
) -> None:
    server = scripted([["ok"], [step], ["ok"]])
    result = one_worker(server.url, "post", 3)
    assert result["failed"] == 1
    assert result["retried_on_idle_close"] == 0
    [failure] = result["failures"]
    assert (failure["kind"], failure["path"], failure["retried"]) == ("post", "/counter", False)
    # One POST per connection, each sent once, each announcing the close.
    assert [(seen.connection, seen.method) for seen in server.seen] == [
        (0, "POST"),
        (1, "POST"),
        (2, "POST"),
    ]
    assert {seen.headers["connection"] for seen in server.seen} == {"close"}
    assert [item[1] for item in result["counter"]] == [1, 2]


@pytest.mark.parametrize(("method", "retried"), [("GET", True), ("POST", False)])
def test_only_idempotent_requests_are_retried(
    scripted: Callable[[list[list[str]]], ScriptedServer], method: str, retried: bool
) -> None:
    # No worker sends a POST on a reused connection; this drives one worker by hand to show
    # that even then a POST is never sent twice, while a GET in its place would be.
    server = scripted([["ok", "close"]])
    config = loadprobe.Config(
        target=loadprobe.parse_target(server.url),
        seconds=10,
        max_requests=10,
        workers={kind: int(kind == "post") for kind in loadprobe.KINDS},
        slow_seconds=0,
        counter_every=0,
        timeout=2,
        failure_pause=0,
        pace=0,
    )
    t0 = time.monotonic()
    worker = loadprobe._Worker("post", 0, config, loadprobe._Shared(10, t0 + 10, 1), t0)
    body = loadprobe.POST_BODY if method == "POST" else None
    conn = worker._connection()
    try:
        first, conn, reusable = worker._exchange(conn, method, "/counter", body, worker.headers)
        assert (first.error, reusable) == (None, True)
        second, conn, _ = worker._exchange(conn, method, "/counter", body, worker.headers)
    finally:
        conn.close()
    assert second.retried is retried
    assert (second.error is None) is retried
    assert [(seen.connection, seen.method) for seen in server.seen] == [
        (0, method),
        (0, method),
        *([(1, method)] if retried else []),
    ]


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
            "--post-workers",
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
    assert completed.stdout.startswith("loadprobe: 200 requests, 0 failed, 0 retried on idle")
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
    assert not any(row["retried"] for row in rows)
    assert result["config"]["workers"]["post"] == 1


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
