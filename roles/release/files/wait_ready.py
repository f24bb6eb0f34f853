#!/usr/bin/env python3
"""Wait until an app replica is ready, or say why it never will.

    wait_ready.py CONTAINER URL TIMEOUT_SECONDS [--docker-health]
    wait_ready.py CONTAINER settle:SECONDS TIMEOUT_SECONDS


Run on the server (python3's standard library and the docker CLI). For an image without a
HEALTHCHECK the health path is the gate: ready at its first 200. With --docker-health (an
image with a HEALTHCHECK, which is respected) ready is Docker's verdict "healthy", and
"unhealthy" is final. One call for the whole wait, polling every quarter second (an Ansible
retry loop polls once a round trip), and it gives up at once when the container stops running
(a crash at start need not wait for the timeout). A worker (no HTTP, no HEALTHCHECK) is
ready once it has been running for the settle time without a restart. Exit 0 when ready,
1 otherwise, with the reason on stdout.
"""

from __future__ import annotations

import subprocess
import sys
import time
import urllib.error
import urllib.request

POLL_SECONDS = 0.25
STATE_EVERY_SECONDS = 1.0


def probe(url: str) -> str:
    """ "200", another status, or what went wrong."""
    try:
        with urllib.request.urlopen(url, timeout=2) as answer:
            return str(answer.status)
    except urllib.error.HTTPError as error:
        return str(error.code)
    except (OSError, ValueError) as error:
        return type(error).__name__


def inspect(name: str, template: str) -> str:
    """docker inspect's rendering of template for the container, or "gone"."""
    result = subprocess.run(
        ["docker", "inspect", "-f", template, name], capture_output=True, text=True, check=False
    )
    return result.stdout.strip() if result.returncode == 0 else "gone"


def container_state(name: str) -> str:
    return inspect(name, "{{.State.Status}} {{.State.ExitCode}}")


def docker_health(name: str) -> str:
    """ "<status> <exit code> <health>", or "gone"."""
    return inspect(
        name,
        "{{.State.Status}} {{.State.ExitCode}} {{if .State.Health}}{{.State.Health.Status}}{{end}}",
    )


def wait_healthy(name: str, timeout: float) -> int:
    started = time.monotonic()
    while True:
        elapsed = time.monotonic() - started
        state = docker_health(name)
        if state.endswith(" healthy") and state.startswith("running"):
            print(f"healthy after {elapsed:.1f}s")
            return 0
        if not state.startswith("running"):
            print(f"the container stopped ({state}) after {elapsed:.1f}s")
            return 1
        if state.endswith(" unhealthy"):
            print(f"Docker reports it unhealthy after {elapsed:.1f}s")
            return 1
        if elapsed >= timeout:
            print(f"not healthy within {timeout:g}s (state {state})")
            return 1
        time.sleep(POLL_SECONDS)


def wait_settled(name: str, settle: float, timeout: float) -> int:
    """A worker: running, and still the same run, settle seconds after it started."""
    started = time.monotonic()
    first = None
    while True:
        elapsed = time.monotonic() - started
        state = inspect(name, "{{.State.Status}} {{.State.ExitCode}} {{.State.StartedAt}}")
        if not state.startswith("running"):
            print(f"the container stopped ({state.rsplit(' ', 1)[0]}) after {elapsed:.1f}s")
            return 1
        first = first or state
        if state != first:
            print(f"the container restarted after {elapsed:.1f}s")
            return 1
        if elapsed >= settle:
            print(f"running for {elapsed:.1f}s")
            return 0
        if elapsed >= timeout:
            print(f"not settled within {timeout:g}s")
            return 1
        time.sleep(POLL_SECONDS)


def main(argv: list[str]) -> int:
    docker_mode = "--docker-health" in argv
    argv = [arg for arg in argv if arg != "--docker-health"]
    if len(argv) != 3:
        print("usage: wait_ready.py CONTAINER URL TIMEOUT_SECONDS [--docker-health]")
        return 2
    name, url, timeout = argv[0], argv[1], float(argv[2])
    if docker_mode:
        return wait_healthy(name, timeout)
    if url.startswith("settle:"):
        return wait_settled(name, float(url.split(":", 1)[1]), timeout)
    started = time.monotonic()
    checked_state = 0.0
    last = "nothing yet"
    while True:
        elapsed = time.monotonic() - started
        last = probe(url)
        if last == "200":
            print(f"ready after {elapsed:.1f}s")
            return 0
        if elapsed - checked_state >= STATE_EVERY_SECONDS:
            checked_state = elapsed
            state = container_state(name)
            if not state.startswith("running"):
                print(f"the container stopped ({state}) after {elapsed:.1f}s; last answer: {last}")
                return 1
        if elapsed >= timeout:
            print(f"no 200 within {timeout:g}s; last answer: {last}")
            return 1
        time.sleep(POLL_SECONDS)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
