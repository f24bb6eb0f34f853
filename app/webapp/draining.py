"""Leave the balancer before stopping: the container's first process, in front of gunicorn.

A replica stopped outside a deploy (`docker stop` by hand, a host shutting down) is still in
HAProxy's rotation until its health checks fail (fall x inter: about 3 s). gunicorn stops
accepting at once on SIGTERM, and a request already on its way, waiting in the kernel's accept
queue, is then reset: HAProxy retries a GET on another replica, but must never replay a POST,
so the visitor would get a 502. Hence, on SIGTERM:

1. the drain file is made: the health path answers 503, and HAProxy takes the replica out;
2. requests are served as usual until none but health checks came for QUIET_SECONDS (at most
   MAX_SECONDS);
3. gunicorn gets SIGTERM and finishes the requests it has (its graceful_timeout).

In a deploy, HAProxy has already drained and deleted the server before the stop, so step 2
ends after QUIET_SECONDS. Run as a script (no Flask import): python3 draining.py CMD ARGS...
The app marks each request (mark_request) and answers 503 on its health path while draining.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

# On the container's tmpfs (/tmp); the environment may move them, for tests.
DRAIN_FILE = Path(os.environ.get("APP_DRAIN_FILE", "/tmp/webstack-draining"))
ACTIVITY_FILE = Path(os.environ.get("APP_ACTIVITY_FILE", "/tmp/webstack-last-request"))
QUIET_SECONDS = float(os.environ.get("APP_DRAIN_QUIET_SECONDS", "1.5"))
# Well past fall x inter of HAProxy's checks; with gunicorn's graceful timeout (20 s) still
# under the container's stop timeout (30 s).
MAX_SECONDS = float(os.environ.get("APP_DRAIN_MAX_SECONDS", "8"))
POLL_SECONDS = 0.1


def draining() -> bool:
    return DRAIN_FILE.exists()


def mark_request() -> None:
    """Note that a request other than a health check arrived (its time is the file's mtime)."""
    try:
        os.utime(ACTIVITY_FILE)
    except FileNotFoundError:
        ACTIVITY_FILE.touch()


def last_request() -> float:
    try:
        return ACTIVITY_FILE.stat().st_mtime
    except FileNotFoundError:
        return 0.0


def wait_until_quiet(
    started: float,
    clock: Callable[[], float] = time.time,
    sleep: Callable[[float], None] = time.sleep,
) -> float:
    """Wait until no request came for QUIET_SECONDS since started (at most MAX_SECONDS)."""
    while True:
        now = clock()
        quiet_since = max(last_request(), started)
        if now - quiet_since >= QUIET_SECONDS or now - started >= MAX_SECONDS:
            return now - started
        sleep(POLL_SECONDS)


def main(argv: list[str]) -> int:
    if not argv:
        print("usage: draining.py COMMAND [ARGS...]", file=sys.stderr)
        return 2
    DRAIN_FILE.unlink(missing_ok=True)
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda _signum, _frame: stop.set())
    child = subprocess.Popen(argv)
    while child.poll() is None and not stop.wait(0.2):
        pass
    if child.poll() is None:
        DRAIN_FILE.touch()
        waited = wait_until_quiet(time.time())
        print(f"draining: out of the balancer after {waited:.1f}s; stopping", flush=True)
        child.send_signal(signal.SIGTERM)
    return child.wait()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
