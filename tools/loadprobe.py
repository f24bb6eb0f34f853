#!/usr/bin/env python3
"""Steady HTTP load for zero-downtime release tests.

Runs worker threads against the stack on this machine while a release is deployed and writes
what every request saw to a JSON file; the test decides from that file whether the release
dropped anything. Exit code 0 whatever the traffic saw, 2 for invalid arguments.

    python3 tools/loadprobe.py --url http://127.0.0.1:18080 --seconds 120 \\
        --max-requests 20000 --out result.json [--stop-file PATH] [--start-file PATH]

Worker kinds (every path below is under --prefix, empty by default: with --prefix /api a
keep-alive worker asks for /api/ and /api/counter, a slow one for /api/slow?seconds=N):
  keepalive  one persistent connection each, GET / (every --counter-every-th: GET /counter)
  fresh      a new connection per request (Connection: close), GET /
  slow       GET /slow?seconds=N back to back on a persistent connection, so a slow request
             is always in flight
  post       a new connection per request (Connection: close), POST /counter with a small
             JSON body; off unless --post-workers is given

Failed requests: a request counts as failed when it gets no complete 2xx answer: the
connection is refused, reset or closed, the answer is cut short, it is not 2xx, a /counter
answer is not JSON with an integer or null "visits", or it takes longer than --timeout.

Retry on idle close (RFC 9112, section 9.3.1): a server may close an idle keep-alive
connection at the very moment a request is sent on it. Like browsers and HTTP libraries, the
probe then sends that request once more, on a new connection, but only when all of these
hold: the method is GET or HEAD; the connection is reused (it already carried a complete
exchange); and the server closed or reset it before a single byte of an answer arrived. The
second attempt decides the outcome, and the request is recorded once, timed from its first
attempt. Such retries are counted in "retried_on_idle_close", in total and per kind; they are
not failures. A second failure, a failure on a new connection, a timeout, a failure after part
of an answer arrived, any non-2xx status and any POST are failures and are never retried.
A POST always goes out on a new connection, so it never meets a closing keep-alive connection.

Maintenance: a 503 that carries the header X-Webstack-Maintenance is the site's maintenance
page (maintenance.yml), an answer the operator chose: it is counted apart, in "maintenance"
(in total and per kind, with the offsets of the first and last in "maintenance_window"), and
is neither a failure nor a text of the app. Any other 503 is a failure.

Safety: only 127.0.0.1, [::1] and localhost are accepted as targets, and the run ends by
itself: workers start no request once --seconds have passed, none beyond --max-requests, or
once --stop-file exists, and a request in flight is cut after --timeout (counted from its first
attempt), so a run lasts at most --seconds + --timeout (plus a poll interval).
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import math
import os
import re
import select
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import urlsplit

KINDS = ("keepalive", "fresh", "slow", "post")
# Only these are sent again after an idle close (RFC 9110, section 9.2.2: idempotent methods).
RETRY_METHODS = frozenset({"GET", "HEAD"})
POST_PATH = "/counter"
# --prefix: where an app served under a path prefix (a route such as /api/) has its paths.
PREFIX_PATTERN = re.compile(r"(/[A-Za-z0-9._~-]+)*")
POST_BODY = b'{"source":"loadprobe"}'
# localhost is pinned to 127.0.0.1 instead of being resolved: /etc/hosts or a resolver
# could otherwise point it somewhere else, and the probe must never leave this machine.
LOOPBACK_HOSTS = {"127.0.0.1": "127.0.0.1", "::1": "::1", "localhost": "127.0.0.1"}
MAX_FAILURES_KEPT = 200
TEXT_LIMIT = 200
# How much of an error page a failure keeps.
ANSWER_LIMIT = 160
ERROR_LIMIT = 200
# Every request is kept in memory until the end, so the request bound is also a memory bound.
MAX_REQUESTS_LIMIT = 200_000
MAX_SECONDS_LIMIT = 3600.0
MAX_WORKERS = 256
POLL_INTERVAL = 0.02
USER_AGENT = "loadprobe"
REQUESTS_LOG_FIELDS = [
    "offset",
    "duration",
    "status",
    "kind",
    "path",
    "text",
    "version",
    "visits",
    "error",
    "retried",
    "maintenance",
]
# A 503 carrying this header is the site's maintenance page: an answer the operator chose,
# counted apart ("maintenance"), not a failure. Any other 503 is a failure.
MAINTENANCE_HEADER = "X-Webstack-Maintenance"


class ProbeConfigError(ValueError):
    """Invalid arguments; always raised before any traffic is sent."""


@dataclass(frozen=True)
class Target:
    connect_host: str
    port: int
    # None lets http.client derive the Host header from connect_host.
    host_header: str | None


@dataclass(frozen=True)
class Config:
    target: Target
    seconds: float
    max_requests: int
    workers: dict[str, int]
    slow_seconds: float
    counter_every: int
    timeout: float
    failure_pause: float
    pace: float
    # Put before every path: "" or "/api", never ending with a slash.
    prefix: str = ""

    @property
    def home(self) -> str:
        """The path whose answers are the app's texts."""
        return self.prefix + "/"

    @property
    def counter_path(self) -> str:
        return self.prefix + POST_PATH


class Record(NamedTuple):
    offset: float
    duration: float
    status: int | None
    path: str
    # The app's text for the home path; for an error status, the start of its page.
    text: str | None
    version: str | None
    visits: int | None
    error: str | None
    # Sent a second time, on a new connection, after an idle close of a reused connection.
    retried: bool
    # Answered by the maintenance page (503 with MAINTENANCE_HEADER).
    maintenance: bool = False


class _Attempt(NamedTuple):
    """One try at an exchange, on one connection."""

    status: int | None
    version: str | None
    body: bytes
    will_close: bool
    error: str | None
    # The connection was closed or reset before any byte of an answer arrived.
    unanswered: bool
    maintenance: bool = False


class _Connection(http.client.HTTPConnection):
    """An HTTPConnection that knows how many complete exchanges it has carried."""

    exchanges = 0
    # The socket of the last connect. http.client lets go of it before the body of a
    # Connection: close answer is read; the watchdog must still be able to cut that read.
    opened: socket.socket | None = None

    def connect(self) -> None:
        super().connect()
        self.opened = self.sock


def parse_target(url: str) -> Target:
    """Accept only plain-http URLs on a loopback host; raise ProbeConfigError otherwise."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise ProbeConfigError(f"invalid URL {url!r}: {exc}") from None
    if parts.scheme != "http":
        raise ProbeConfigError(f"only http:// URLs are supported, got {url!r}")
    host = parts.hostname or ""
    if host not in LOOPBACK_HOSTS:
        raise ProbeConfigError(
            f"refusing target host {host!r}: loadprobe only sends traffic to "
            "127.0.0.1, [::1] or localhost"
        )
    if parts.username is not None or parts.password is not None:
        raise ProbeConfigError(f"credentials in the URL are not supported: {url!r}")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ProbeConfigError(f"give the server root only (no path or query): {url!r}")
    if port == 0:
        raise ProbeConfigError(f"port 0 is not a valid target port: {url!r}")
    port = port or 80
    host_header = f"localhost:{port}" if host == "localhost" else None
    return Target(connect_host=LOOPBACK_HOSTS[host], port=port, host_header=host_header)


def parse_prefix(prefix: str) -> str:
    """Accept "" or a path prefix such as /api (no trailing slash, no query)."""
    if not isinstance(prefix, str) or not PREFIX_PATTERN.fullmatch(prefix) or "/." in prefix:
        raise ProbeConfigError(
            f"the prefix must be empty or a path such as /api (no trailing slash), got {prefix!r}"
        )
    return prefix


def _finite(name: str, value: float, low: float, high: float, *, low_open: bool) -> float:
    value = float(value)
    too_low = value <= low if low_open else value < low
    if not math.isfinite(value) or too_low or value > high:
        bracket = "(" if low_open else "["
        raise ProbeConfigError(f"{name} must be in {bracket}{low:g}, {high:g}], got {value!r}")
    return value


def _count(name: str, value: int, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ProbeConfigError(f"{name} must be an integer in [{low}, {high}], got {value!r}")
    return value


class _Shared:
    """State all workers touch: the request budget, the stop signal and start-up progress."""

    def __init__(self, max_requests: int, deadline: float, workers_total: int) -> None:
        self.lock = threading.Lock()
        self.remaining = max_requests
        self.deadline = deadline
        self.stop = threading.Event()
        self.stopped_by: str | None = None
        self.workers_total = workers_total
        self.flowing = 0
        self.all_flowing = threading.Event()
        # Interning: thousands of identical bodies then cost one string, not thousands.
        self.strings: dict[str, str] = {}

    def request_stop(self, reason: str) -> None:
        with self.lock:
            if self.stopped_by is None:
                self.stopped_by = reason
        self.stop.set()

    def may_start(self) -> bool:
        if self.stop.is_set():
            return False
        if time.monotonic() >= self.deadline:
            self.request_stop("seconds")
            return False
        with self.lock:
            if self.remaining <= 0:
                exhausted = True
            else:
                self.remaining -= 1
                exhausted = False
        if exhausted:
            self.request_stop("max-requests")
            return False
        return True

    def mark_flowing(self) -> None:
        with self.lock:
            self.flowing += 1
            if self.flowing == self.workers_total:
                self.all_flowing.set()

    def intern(self, value: str) -> str:
        return self.strings.setdefault(value, value)


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return (f"{type(exc).__name__}: {text}" if text else type(exc).__name__)[:ERROR_LIMIT]


def _peer_closed(sock: socket.socket) -> bool:
    """Whether an idle connection became readable, i.e. the server closed or reset it.

    An idle HTTP/1.1 connection has nothing to read; EOF, a reset or an unsolicited response
    (such as a 408) all mean it must not carry the next request. Checking before sending is
    what separates a proper server-side close from a request lost in flight.
    """
    poller = select.poll()
    poller.register(sock, select.POLLIN)
    return bool(poller.poll(0))


def _answer_begins(sock: socket.socket) -> bool:
    """Wait for the first byte of the answer, without consuming it; False if the server closed.

    Only this tells "closed before answering" (safe to send again) from "closed after part of
    the answer": http.client cannot, since a reset may come after bytes it has buffered.
    Raises like a read would: a timeout, or a reset before any byte arrived.
    """
    return bool(sock.recv(1, socket.MSG_PEEK))


def _parse_counter(body: bytes) -> tuple[int | None, str | None]:
    try:
        data = json.loads(body)
    except ValueError:
        return None, "invalid counter JSON"
    if isinstance(data, dict) and "visits" in data:
        visits = data["visits"]
        if visits is None or (isinstance(visits, int) and not isinstance(visits, bool)):
            return visits, None
    return None, "counter JSON without an integer or null 'visits'"


class _Worker:
    def __init__(self, kind: str, index: int, config: Config, shared: _Shared, t0: float) -> None:
        self.kind = kind
        self.index = index
        self.config = config
        self.shared = shared
        self.t0 = t0
        self.records: list[Record] = []
        self.reconnects = {"idle_close": 0, "connection_close": 0, "after_failure": 0}
        self.crash: str | None = None
        self.flowed = False
        # Guards the in-flight fields below, shared with the watchdog in the main thread.
        self.lock = threading.Lock()
        self.in_flight: _Connection | None = None
        self.in_flight_since = 0.0
        self.watchdog_fired = False
        self.abandoned = False
        self.thread = threading.Thread(target=self._main, name=f"{kind}-{index}", daemon=True)
        headers = {"User-Agent": USER_AGENT}
        if config.target.host_header is not None:
            headers["Host"] = config.target.host_header
        self.headers = headers

    def _main(self) -> None:
        try:
            config = self.config
            if self.kind == "fresh":
                self._run_fresh("GET", config.home, None, {})
            elif self.kind == "post":
                self._run_fresh(
                    "POST", config.counter_path, POST_BODY, {"Content-Type": "application/json"}
                )
            elif self.kind == "slow":
                path = f"{config.prefix}/slow?seconds={config.slow_seconds:g}"
                self._run_persistent(lambda _n: path)
            else:
                every = config.counter_every
                self._run_persistent(
                    lambda n: config.counter_path if every and n % every == 0 else config.home,
                )
        except Exception as exc:  # a bug must show up in the result, not kill a thread quietly
            self.crash = _describe(exc)
            self.shared.request_stop("worker-crash")

    def _connection(self) -> _Connection:
        # http.client rather than urllib: no proxy from the environment and no redirects,
        # so every request goes exactly to the checked loopback address.
        target = self.config.target
        return _Connection(target.connect_host, target.port, timeout=self.config.timeout)

    def _run_persistent(self, path_for: Callable[[int], str]) -> None:
        conn: _Connection | None = None
        sent = 0
        try:
            while self.shared.may_start():
                sent += 1
                path = path_for(sent)
                if conn is not None and (conn.sock is None or _peer_closed(conn.sock)):
                    conn.close()
                    conn = None
                    self.reconnects["idle_close"] += 1
                if conn is None:
                    conn = self._connection()
                # A retry replaces the connection: the exchange hands back the one it ended on.
                record, conn, reusable = self._exchange(conn, "GET", path, None, self.headers)
                if not reusable:
                    conn.close()
                    conn = None
                    reason = "after_failure" if record.error else "connection_close"
                    self.reconnects[reason] += 1
                self._pause(self.config.failure_pause if record.error else self.config.pace)
        finally:
            if conn is not None:
                conn.close()

    def _run_fresh(
        self, method: str, path: str, body: bytes | None, extra_headers: dict[str, str]
    ) -> None:
        headers = {**self.headers, **extra_headers, "Connection": "close"}
        while self.shared.may_start():
            conn = self._connection()
            try:
                # Never retried: a new connection has carried no exchange, so it is not reused.
                record, conn, _ = self._exchange(conn, method, path, body, headers)
            finally:
                conn.close()
            self._pause(self.config.failure_pause if record.error else self.config.pace)

    def _pause(self, seconds: float) -> None:
        # After a failure: without a pause a refused port burns the whole request budget in a
        # blink and the timeline no longer shows how long the outage lasted. After a success:
        # the pace leaves CPU to the deploy under test on a small machine.
        if seconds > 0:
            self.shared.stop.wait(seconds)

    def _attempt(
        self,
        conn: _Connection,
        method: str,
        path: str,
        body: bytes | None,
        headers: dict[str, str],
    ) -> _Attempt:
        status: int | None = None
        version: str | None = None
        payload = b""
        will_close = True
        answered = False
        try:
            conn.request(method, path, body=body, headers=headers)
            if conn.sock is not None:
                answered = _answer_begins(conn.sock)
            response = conn.getresponse()
            status = response.status
            version = response.getheader("X-App-Version")
            payload = response.read()
            will_close = bool(response.will_close)
            maintenance = status == 503 and response.getheader(MAINTENANCE_HEADER) is not None
        except (OSError, http.client.HTTPException) as exc:
            # RemoteDisconnected (EOF instead of a status line) is a ConnectionResetError too.
            # A timeout is neither: the server may be working on the request.
            unanswered = not answered and isinstance(exc, (ConnectionResetError, BrokenPipeError))
            return _Attempt(status, None, b"", True, _describe(exc), unanswered)
        return _Attempt(status, version, payload, will_close, None, False, maintenance)

    def _exchange(
        self,
        conn: _Connection,
        method: str,
        path: str,
        body: bytes | None,
        headers: dict[str, str],
    ) -> tuple[Record, _Connection, bool]:
        """One request, sent again once after an idle close; returns the connection it used."""
        started = time.monotonic()
        reused = conn.exchanges > 0 and conn.sock is not None
        with self.lock:
            self.in_flight = conn
            self.in_flight_since = started
            self.watchdog_fired = False
        retried = False
        try:
            attempt = self._attempt(conn, method, path, body, headers)
            if attempt.unanswered and reused and method in RETRY_METHODS:
                fresh = self._connection()
                with self.lock:
                    # Closed under the lock: the watchdog may be cutting this very socket.
                    conn.close()
                    # A close made by the watchdog is a timeout, not an idle close. The retry
                    # stays under the watchdog, timed from the first attempt.
                    if not self.watchdog_fired:
                        self.in_flight = fresh
                        conn, retried = fresh, True
                if retried:
                    attempt = self._attempt(conn, method, path, body, headers)
        finally:
            with self.lock:
                self.in_flight = None
                fired = self.watchdog_fired
        duration = time.monotonic() - started
        status, error = attempt.status, attempt.error
        version = attempt.version
        if error is not None and fired:
            error = f"timeout: no complete response within {self.config.timeout:g}s"
        text: str | None = None
        visits: int | None = None
        maintenance = error is None and attempt.maintenance
        if maintenance:
            pass
        elif error is None and not 200 <= (status or 0) < 300:
            error = f"HTTP {status}"
            # The start of the error page names the hop that answered (NGINX's says "nginx").
            text = " ".join(attempt.body.decode("utf-8", "replace").split())[:ANSWER_LIMIT]
        elif error is None and path == self.config.home:
            text = self.shared.intern(attempt.body.decode("utf-8", "replace").strip()[:TEXT_LIMIT])
        elif error is None and path == self.config.counter_path:
            visits, error = _parse_counter(attempt.body)
        if path != self.config.home or error is not None or maintenance:
            version = None
        elif version is not None:
            version = self.shared.intern(version[:TEXT_LIMIT])
        record = Record(
            started - self.t0,
            duration,
            status,
            path,
            text,
            version,
            visits,
            error,
            retried,
            maintenance,
        )
        with self.lock:
            if not self.abandoned:
                self.records.append(record)
        if error is None:
            conn.exchanges += 1
            if not self.flowed:
                self.flowed = True
                self.shared.mark_flowing()
        # A failed exchange may leave unread bytes or a half-dead socket behind: start clean.
        return record, conn, error is None and not attempt.will_close

    def watchdog(self, now: float) -> None:
        """Cut a request that has run past --timeout in total.

        The socket timeout only bounds each single read, so a server trickling bytes could
        otherwise hold a request, and with it the whole run, for ever.
        """
        with self.lock:
            conn = self.in_flight
            if conn is None or self.watchdog_fired:
                return
            if now - self.in_flight_since < self.config.timeout:
                return
            # Under the lock, so the socket cannot be closed and replaced in between. While a
            # (retry's) connection is still being opened there is no socket to cut yet: try
            # again at the next poll rather than giving up on this request.
            sock = conn.opened
            if sock is None:
                return
            self.watchdog_fired = True
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def abandon(self) -> None:
        with self.lock:
            self.abandoned = True


def _create_marker(path: Path, content: str) -> None:
    # Written aside and renamed, so whoever waits for the file never reads it half-written.
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(content)
    os.replace(tmp, path)


def run(
    url: str,
    *,
    seconds: float,
    max_requests: int,
    keepalive_workers: int = 4,
    fresh_workers: int = 2,
    slow_workers: int = 2,
    post_workers: int = 0,
    slow_seconds: float = 3.0,
    counter_every: int = 20,
    timeout: float = 30.0,
    stop_file: str | os.PathLike[str] | None = None,
    start_file: str | os.PathLike[str] | None = None,
    log_requests: bool = False,
    failure_pause: float = 0.05,
    pace: float = 0.0,
    prefix: str = "",
) -> dict[str, Any]:
    """Run the load and return the result document (see the module docstring)."""
    config = Config(
        target=parse_target(url),
        seconds=_finite("seconds", seconds, 0.0, MAX_SECONDS_LIMIT, low_open=True),
        max_requests=_count("max_requests", max_requests, 1, MAX_REQUESTS_LIMIT),
        workers={
            "keepalive": _count("keepalive_workers", keepalive_workers, 0, MAX_WORKERS),
            "fresh": _count("fresh_workers", fresh_workers, 0, MAX_WORKERS),
            "slow": _count("slow_workers", slow_workers, 0, MAX_WORKERS),
            "post": _count("post_workers", post_workers, 0, MAX_WORKERS),
        },
        slow_seconds=_finite("slow_seconds", slow_seconds, 0.0, 3600.0, low_open=False),
        counter_every=_count("counter_every", counter_every, 0, 1_000_000),
        timeout=_finite("timeout", timeout, 0.0, 3600.0, low_open=True),
        failure_pause=_finite("failure_pause", failure_pause, 0.0, 10.0, low_open=False),
        pace=_finite("pace", pace, 0.0, 10.0, low_open=False),
        prefix=parse_prefix(prefix),
    )
    workers_total = sum(config.workers.values())
    if not 1 <= workers_total <= MAX_WORKERS:
        raise ProbeConfigError(f"need between 1 and {MAX_WORKERS} workers, got {workers_total}")
    stop_path = Path(stop_file) if stop_file is not None else None
    start_path = Path(start_file) if start_file is not None else None
    # A leftover file from an earlier run would end this one at once, or tell the test that
    # load is flowing before it is: refuse instead of guessing.
    for option, marker in (("stop file", stop_path), ("start file", start_path)):
        if marker is not None and marker.exists():
            raise ProbeConfigError(f"{option} {marker} already exists; remove it first")
    if start_path is not None and not start_path.parent.is_dir():
        raise ProbeConfigError(f"directory of the start file does not exist: {start_path}")

    started_at = time.time()
    t0 = time.monotonic()
    shared = _Shared(config.max_requests, t0 + config.seconds, workers_total)
    workers = [
        _Worker(kind, index, config, shared, t0)
        for kind in KINDS
        for index in range(config.workers[kind])
    ]
    for worker in workers:
        worker.thread.start()

    start_file_created_at: float | None = None
    # The watchdog ends every request by deadline + timeout; the margin covers polling only.
    hard_deadline = t0 + config.seconds + config.timeout + 2.0
    abandoned = 0
    while True:
        try:
            alive = [worker for worker in workers if worker.thread.is_alive()]
            now = time.monotonic()
            if (
                start_path is not None
                and start_file_created_at is None
                and shared.all_flowing.is_set()
            ):
                start_file_created_at = now - t0
                _create_marker(start_path, f"{start_file_created_at:.3f}\n")
            if not alive:
                break
            if now >= shared.deadline:
                shared.request_stop("seconds")
            if stop_path is not None and not shared.stop.is_set() and stop_path.exists():
                shared.request_stop("stop-file")
            for worker in alive:
                worker.watchdog(now)
            if now >= hard_deadline:
                for worker in alive:
                    worker.abandon()
                abandoned = len(alive)
                break
            time.sleep(POLL_INTERVAL)
        except KeyboardInterrupt:
            if shared.stopped_by == "interrupted":
                raise
            # The first Ctrl-C lets requests in flight finish, so the result still covers
            # everything that was sent; a second one gives up on them.
            shared.request_stop("interrupted")
    duration = time.monotonic() - t0
    return _build_result(
        url=url,
        config=config,
        workers=workers,
        started_at=started_at,
        duration=duration,
        stopped_by=shared.stopped_by or "finished",
        start_file_created_at=start_file_created_at,
        abandoned=abandoned,
        log_requests=log_requests,
    )


def _r(value: float) -> float:
    return round(value, 4)


def _build_result(
    *,
    url: str,
    config: Config,
    workers: list[_Worker],
    started_at: float,
    duration: float,
    stopped_by: str,
    start_file_created_at: float | None,
    abandoned: int,
    log_requests: bool,
) -> dict[str, Any]:
    by_kind = {
        kind: {"requests": 0, "failed": 0, "retried_on_idle_close": 0, "maintenance": 0}
        for kind in KINDS
    }
    failures: list[tuple[float, dict[str, Any]]] = []
    texts: list[list[Any]] = []
    counter: list[list[Any]] = []
    latencies: list[float] = []
    buckets: dict[int, list[int]] = {}
    log: list[list[Any]] = []
    maintenance_spans: list[float] = []
    reconnects = {"idle_close": 0, "connection_close": 0, "after_failure": 0}

    for worker in workers:
        with worker.lock:
            records = list(worker.records)
        for reason, count in worker.reconnects.items():
            reconnects[reason] += count
        stats = by_kind[worker.kind]
        stats["requests"] += len(records)
        # Keep the first and the last request of every run of identical (text, version) per
        # worker: then "which texts did requests after T see" stays exact (the run holding a
        # request after T ends after T) while the list stays as short as the changes.
        run_first: Record | None = None
        run_last: Record | None = None
        for record in records:
            bucket = buckets.setdefault(int(record.offset), [0, 0])
            bucket[0] += 1
            if worker.kind != "slow" and not record.maintenance:
                latencies.append(record.duration * 1000.0)
            if record.retried:
                stats["retried_on_idle_close"] += 1
            if record.maintenance:
                stats["maintenance"] += 1
                maintenance_spans.append(record.offset)
                # Ends the run of texts: a text answered after it, inside the maintenance
                # window, then shows with its own offset.
                if run_last is not None and run_last is not run_first:
                    texts.append([run_last.offset, run_last.text, run_last.version])
                run_first = run_last = None
            elif record.error is not None:
                stats["failed"] += 1
                bucket[1] += 1
                failures.append(
                    (
                        record.offset,
                        {
                            "offset": _r(record.offset),
                            "duration": _r(record.duration),
                            "kind": worker.kind,
                            "path": record.path,
                            "status": record.status,
                            "error": record.error,
                            "retried": record.retried,
                            # The start of an error status's page, else None.
                            "answer": record.text,
                        },
                    )
                )
            elif record.path == config.home:
                if run_first is None or (record.text, record.version) != (
                    run_first.text,
                    run_first.version,
                ):
                    if run_last is not None and run_last is not run_first:
                        texts.append([run_last.offset, run_last.text, run_last.version])
                    texts.append([record.offset, record.text, record.version])
                    run_first = record
                run_last = record
            elif record.path == config.counter_path:
                counter.append(
                    [_r(record.offset), record.visits, _r(record.offset + record.duration)]
                )
            if log_requests:
                log.append(
                    [
                        _r(record.offset),
                        _r(record.duration),
                        record.status,
                        worker.kind,
                        record.path,
                        record.text,
                        record.version,
                        record.visits,
                        record.error,
                        record.retried,
                        record.maintenance,
                    ]
                )
        if run_last is not None and run_last is not run_first:
            texts.append([run_last.offset, run_last.text, run_last.version])

    failures.sort(key=lambda item: item[0])
    texts.sort(key=lambda item: item[0])
    for item in texts:
        item[0] = _r(item[0])
    counter.sort(key=lambda item: item[0])
    log.sort(key=lambda item: item[0])
    total = sum(stats["requests"] for stats in by_kind.values())
    failed = sum(stats["failed"] for stats in by_kind.values())
    retried = sum(stats["retried_on_idle_close"] for stats in by_kind.values())
    maintenance = sum(stats["maintenance"] for stats in by_kind.values())
    last_second = max(buckets) if buckets else -1
    latency: dict[str, float | None] = {"p50": None, "p99": None, "max": None}
    if latencies:
        latency = {
            "p50": round(percentile(latencies, 50), 3),
            "p99": round(percentile(latencies, 99), 3),
            "max": round(max(latencies), 3),
        }
    result: dict[str, Any] = {
        "url": url,
        "started_at": started_at,
        "duration_seconds": _r(duration),
        "stopped_by": stopped_by,
        "requests": total,
        "failed": failed,
        "retried_on_idle_close": retried,
        "maintenance": maintenance,
        # Offsets of the first and the last request the maintenance page answered.
        "maintenance_window": (
            [_r(min(maintenance_spans)), _r(max(maintenance_spans))] if maintenance_spans else None
        ),
        "failures": [item for _, item in failures[:MAX_FAILURES_KEPT]],
        "failures_truncated": failed > MAX_FAILURES_KEPT,
        "by_kind": by_kind,
        "texts": texts,
        "counter": counter,
        "latency": latency,
        "timeline": [[second, *buckets.get(second, [0, 0])] for second in range(last_second + 1)],
        "reconnects": reconnects,
        "start_file_created_at": (
            None if start_file_created_at is None else _r(start_file_created_at)
        ),
        "config": {
            "seconds": config.seconds,
            "max_requests": config.max_requests,
            "workers": config.workers,
            "slow_seconds": config.slow_seconds,
            "counter_every": config.counter_every,
            "timeout": config.timeout,
            "prefix": config.prefix,
        },
        "worker_errors": [
            f"{worker.kind}-{worker.index}: {worker.crash}" for worker in workers if worker.crash
        ],
        "workers_abandoned": abandoned,
    }
    if log_requests:
        result["requests_log_fields"] = REQUESTS_LOG_FIELDS
        result["requests_log"] = log
    return result


# ---- analysis helpers for tests -------------------------------------------------------------


def percentile(values: Iterable[float], p: float) -> float:
    """Nearest-rank percentile: a value that was actually observed, never an interpolation."""
    ordered = sorted(values)
    if not ordered:
        raise ValueError("percentile of no values")
    if not 0 <= p <= 100:
        raise ValueError(f"percentile must be in [0, 100], got {p!r}")
    rank = max(1, math.ceil(p * len(ordered) / 100))
    return ordered[rank - 1]


def texts_after(result: dict[str, Any], offset: float) -> set[str]:
    """Texts of GET <prefix>/ answered to requests started at or after offset (in seconds)."""
    return {item[1] for item in result["texts"] if item[0] >= offset}


def versions_after(result: dict[str, Any], offset: float) -> set[str | None]:
    """X-App-Version values (None: header missing) seen by GET / started at or after offset."""
    return {item[2] for item in result["texts"] if item[0] >= offset}


def counter_monotonic(
    result: dict[str, Any], *, since: float | None = None, strict: bool = False
) -> bool:
    """Whether the visit counter never went backwards, ignoring degraded (null) samples.

    Concurrent requests may be counted in any order, so only a sample that finished before
    another one started must be below it (or equal, unless strict).
    """
    samples: list[tuple[float, float, int]] = []
    for item in result["counter"]:
        start, visits = float(item[0]), item[1]
        end = float(item[2]) if len(item) > 2 else start
        if visits is None or (since is not None and start < since):
            continue
        samples.append((start, end, int(visits)))
    by_end = sorted(samples, key=lambda sample: sample[1])
    done = 0
    highest: int | None = None
    for start, _end, visits in sorted(samples):
        while done < len(by_end) and by_end[done][1] < start:
            finished = by_end[done][2]
            highest = finished if highest is None else max(highest, finished)
            done += 1
        if highest is not None and (visits < highest or (strict and visits == highest)):
            return False
    return True


@dataclass(frozen=True)
class Analysis:
    texts: frozenset[str]
    versions: frozenset[str | None]
    # Taken from the kept failures; exact unless result["failures_truncated"].
    failures: tuple[dict[str, Any], ...]
    counter_monotonic: bool


def analyse(result: dict[str, Any], *, since: float | None = None) -> Analysis:
    """What requests started at or after since (default: all) saw."""
    offset = 0.0 if since is None else since
    return Analysis(
        texts=frozenset(texts_after(result, offset)),
        versions=frozenset(versions_after(result, offset)),
        failures=tuple(item for item in result["failures"] if item["offset"] >= offset),
        counter_monotonic=counter_monotonic(result, since=since),
    )


def summary(result: dict[str, Any]) -> str:
    latency = result["latency"]

    def ms(value: float | None) -> str:
        return "-" if value is None else f"{value:.1f} ms"

    distinct = sorted({item[1] for item in result["texts"]})
    line = (
        f"loadprobe: {result['requests']} requests, {result['failed']} failed, "
        f"{result['retried_on_idle_close']} retried on idle close, "
        f"{result['maintenance']} answered by the maintenance page, "
        f"{result['duration_seconds']:.1f} s, stopped by {result['stopped_by']}, "
        f"p50 {ms(latency['p50'])}, p99 {ms(latency['p99'])}, max {ms(latency['max'])}, "
        f"texts {json.dumps(distinct)}, "
        f"counter {'monotonic' if counter_monotonic(result) else 'NOT monotonic'} "
        f"({len(result['counter'])} samples)"
    )
    if result["worker_errors"]:
        line += f", worker errors: {len(result['worker_errors'])}"
    return line


# ---- command line ---------------------------------------------------------------------------


def _float_arg(*, allow_zero: bool) -> Callable[[str], float]:
    """An argparse type: a finite float, positive or (allow_zero) not negative."""

    def parse(raw: str) -> float:
        try:
            value = float(raw)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {raw!r}") from None
        if not math.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
            kind = "must not be negative" if allow_zero else "must be a positive number"
            raise argparse.ArgumentTypeError(f"{kind}, got {raw!r}")
        return value

    return parse


_positive_float = _float_arg(allow_zero=False)
_non_negative_float = _float_arg(allow_zero=True)


def _non_negative_int(raw: str) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {raw!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must not be negative, got {raw!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="loadprobe",
        description="Steady HTTP load against a loopback server for zero-downtime tests.",
    )
    parser.add_argument("--url", required=True, help="http://127.0.0.1:PORT, [::1] or localhost")
    parser.add_argument("--seconds", type=_positive_float, required=True, help="maximum run time")
    parser.add_argument(
        "--max-requests", type=_non_negative_int, required=True, help="maximum request count"
    )
    parser.add_argument("--keepalive-workers", type=_non_negative_int, default=4)
    parser.add_argument("--fresh-workers", type=_non_negative_int, default=2)
    parser.add_argument("--slow-workers", type=_non_negative_int, default=2)
    parser.add_argument(
        "--post-workers",
        type=_non_negative_int,
        default=0,
        help=f"workers sending POST {POST_PATH}, each on a new connection",
    )
    parser.add_argument(
        "--slow-seconds", type=_non_negative_float, default=3.0, help="N in GET /slow?seconds=N"
    )
    parser.add_argument(
        "--counter-every",
        type=_non_negative_int,
        default=20,
        help="every Nth keep-alive request is GET /counter (0: never)",
    )
    parser.add_argument(
        "--timeout", type=_positive_float, default=30.0, help="per request, in seconds"
    )
    parser.add_argument(
        "--failure-pause",
        type=_non_negative_float,
        default=0.05,
        help="seconds a worker waits after a failed request",
    )
    parser.add_argument(
        "--pace",
        type=_non_negative_float,
        default=0.0,
        help="seconds a worker waits after a successful request (0: as fast as it can)",
    )
    parser.add_argument(
        "--prefix",
        default="",
        help="path prefix of every request, such as /api for an app routed at /api/ (default none)",
    )
    parser.add_argument("--out", help="write the result JSON here")
    parser.add_argument("--stop-file", help="stop early once this file exists")
    parser.add_argument(
        "--start-file", help="create this file once every worker has had a successful request"
    )
    parser.add_argument("--log-requests", action="store_true", help="add every request to the JSON")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    out = Path(args.out) if args.out else None
    if out is not None and not out.parent.is_dir():
        parser.error(f"directory of --out does not exist: {out}")
    try:
        result = run(
            args.url,
            seconds=args.seconds,
            max_requests=args.max_requests,
            keepalive_workers=args.keepalive_workers,
            fresh_workers=args.fresh_workers,
            slow_workers=args.slow_workers,
            post_workers=args.post_workers,
            slow_seconds=args.slow_seconds,
            counter_every=args.counter_every,
            timeout=args.timeout,
            stop_file=args.stop_file,
            start_file=args.start_file,
            log_requests=args.log_requests,
            failure_pause=args.failure_pause,
            pace=args.pace,
            prefix=args.prefix,
        )
    except ProbeConfigError as exc:
        parser.error(str(exc))
    if out is not None:
        _create_marker(out, json.dumps(result, indent=1) + "\n")
    print(summary(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
