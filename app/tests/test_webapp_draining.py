"""Leaving the balancer before stopping (webapp/draining.py)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from flask.testing import FlaskClient

from webapp import draining

SCRIPT = Path(draining.__file__)


def test_the_health_path_answers_503_while_draining(client: FlaskClient) -> None:
    assert client.get("/healthz").status_code == 200
    draining.DRAIN_FILE.touch()
    response = client.get("/healthz")
    assert response.status_code == 503
    assert response.headers["Cache-Control"] == "no-store"
    # Everything else is still served while HAProxy takes the replica out.
    assert client.get("/").status_code == 200


def test_requests_are_noted_but_health_checks_are_not(client: FlaskClient) -> None:
    client.get("/healthz")
    assert draining.last_request() == 0.0
    before = time.time()
    client.get("/")
    assert draining.last_request() >= before - 1


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_with_no_request_the_wait_ends_after_the_quiet_time() -> None:
    clock = Clock()
    waited = draining.wait_until_quiet(clock.now, clock=clock, sleep=clock.sleep)
    assert draining.QUIET_SECONDS <= waited < draining.QUIET_SECONDS + 0.2


def test_requests_keep_it_serving_until_the_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = Clock()
    monkeypatch.setattr(draining, "last_request", lambda: clock.now)  # a request every poll
    waited = draining.wait_until_quiet(clock.now, clock=clock, sleep=clock.sleep)
    assert draining.MAX_SECONDS <= waited < draining.MAX_SECONDS + 0.2


CHILD = """
import signal, sys, time, pathlib
out = pathlib.Path(sys.argv[1])
def stop(*_):
    drained = pathlib.Path(sys.argv[2]).exists()
    out.write_text("drain file before SIGTERM" if drained else "SIGTERM before the drain file")
    sys.exit(7)
signal.signal(signal.SIGTERM, stop)
out.write_text("started")
time.sleep(30)
"""


def test_sigterm_reaches_the_command_only_after_the_drain(tmp_path: Path) -> None:
    out, drain = tmp_path / "child.out", tmp_path / "drain"
    env = dict(
        os.environ,
        APP_DRAIN_FILE=str(drain),
        APP_ACTIVITY_FILE=str(tmp_path / "activity"),
        APP_DRAIN_QUIET_SECONDS="0.5",
        APP_DRAIN_MAX_SECONDS="3",
    )
    wrapper = subprocess.Popen(
        [sys.executable, str(SCRIPT), sys.executable, "-c", CHILD, str(out), str(drain)],
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 10
    while not (out.exists() and out.read_text() == "started"):
        assert time.monotonic() < deadline, "the command never started"
        time.sleep(0.05)
    sent = time.monotonic()
    wrapper.send_signal(signal.SIGTERM)
    stdout, _ = wrapper.communicate(timeout=10)
    assert wrapper.returncode == 7  # the command's own exit code
    assert out.read_text() == "drain file before SIGTERM"
    assert 0.5 <= time.monotonic() - sent < 3
    assert "out of the balancer" in stdout


def test_a_command_that_ends_by_itself_ends_the_wrapper(tmp_path: Path) -> None:
    env = dict(os.environ, APP_DRAIN_FILE=str(tmp_path / "drain"))
    result = subprocess.run(
        [sys.executable, str(SCRIPT), sys.executable, "-c", "raise SystemExit(3)"],
        env=env,
        timeout=10,
        check=False,
    )
    assert result.returncode == 3
    assert not (tmp_path / "drain").exists()
