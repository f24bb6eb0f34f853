#!/usr/bin/python
"""Wait until a replica is ready, or say why it never will (see DOCUMENTATION)."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: release_wait_ready
short_description: Wait until a new replica of a service is ready
description:
  - Runs on the server with python3's standard library and the docker CLI; one call for the
    whole wait, polling every quarter second (an Ansible retry loop polls once a round trip).
  - For an image without a HEALTHCHECK the health path is the gate, ready at its first 200
    (O(url)). With O(docker_health) (an image with a HEALTHCHECK, which is respected) ready
    is Docker's verdict C(healthy), and C(unhealthy) is final. Docker runs its first check one
    HEALTHCHECK interval after the start (30 s unless the image says otherwise); with
    O(health_test) the module also runs that same command in the container (C(docker exec),
    as the container's user) once a second, and its first success is the verdict Docker would
    give at its next check. So the gate does not wait for the image's interval, and the
    image can keep a calm interval for the rest of its life. A worker (no HTTP, no
    HEALTHCHECK) is ready once it has been running for O(settle_seconds) without a restart.
  - It gives up at once when the container stops running, so a crash at start need not wait
    for the timeout.
  - Never fails on a replica that is not ready; it returns RV(ready) and RV(detail), so that
    the caller words the refusal.
options:
  container:
    description: Name of the container.
    type: str
    required: true
  url:
    description: Health URL to GET (a web service without O(docker_health)).
    type: str
  settle_seconds:
    description: A worker is ready after running this long (when O(url) is not given).
    type: float
    default: 2
  docker_health:
    description: Take Docker's health verdict as the gate (the image has a HEALTHCHECK).
    type: bool
    default: false
  health_test:
    description:
      - The image's HEALTHCHECK command as C(docker inspect) shows it (C(Config.Healthcheck.Test)),
        such as C([CMD-SHELL, curl -f http://localhost/]) or C([CMD, /bin/check]).
      - Only with O(docker_health). Without it, only Docker's own checks count.
    type: list
    elements: str
  health_check_timeout:
    description: Seconds one run of O(health_test) may take (the HEALTHCHECK's own timeout).
    type: float
    default: 30
  timeout:
    description: Seconds to wait at most.
    type: float
    required: true
"""

EXAMPLES = r"""
- name: Wait until the new replica answers on its health path
  release_wait_ready:
    container: webstack-app-1a2b3c4d5e6f-1
    url: http://172.31.240.7:8000/healthz
    timeout: 90
  register: probe
"""

RETURN = r"""
ready:
  description: Whether the replica became ready in time.
  type: bool
  returned: always
detail:
  description: How long it took, or why it is not ready (the last answer or state seen).
  type: str
  returned: always
"""

import contextlib  # noqa: E402
import io  # noqa: E402
import subprocess  # noqa: E402
import time  # noqa: E402
import urllib.error  # noqa: E402
import urllib.request  # noqa: E402

POLL_SECONDS = 0.25
STATE_EVERY_SECONDS = 1.0
# How often the gate runs the image's HEALTHCHECK command itself while Docker has no verdict.
CHECK_EVERY_SECONDS = 1.0


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


def check_argv(name: str, test: list[str]) -> list[str] | None:
    """docker exec's argv for a HEALTHCHECK test, as Docker itself would run it; None if none."""
    if not test or test[0] not in ("CMD", "CMD-SHELL") or len(test) < 2:
        return None
    command = ["/bin/sh", "-c", test[1]] if test[0] == "CMD-SHELL" else test[1:]
    return ["docker", "exec", name, *command]


def check_passes(argv: list[str], timeout: float) -> bool:
    try:
        done = subprocess.run(argv, capture_output=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return False
    return done.returncode == 0


def wait_healthy(
    name: str, timeout: float, test: list[str] | None = None, check_timeout: float = 30
) -> int:
    argv = check_argv(name, test or [])
    started = time.monotonic()
    checked = -CHECK_EVERY_SECONDS
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
        if argv and elapsed - checked >= CHECK_EVERY_SECONDS:
            checked = elapsed
            if check_passes(argv, min(check_timeout, max(timeout - elapsed, 1))):
                elapsed = time.monotonic() - started
                print(f"healthy after {elapsed:.1f}s (its HEALTHCHECK command passed)")
                return 0
        if time.monotonic() - started >= timeout:
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


def wait_http(name: str, url: str, timeout: float) -> int:
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


def wait(params: dict) -> tuple[bool, str]:
    """Ready or not, and the line that says how long or why."""
    name, timeout = params["container"], float(params["timeout"])
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        if params.get("docker_health"):
            code = wait_healthy(
                name, timeout, params.get("health_test"), float(params["health_check_timeout"])
            )
        elif params.get("url"):
            code = wait_http(name, params["url"], timeout)
        else:
            code = wait_settled(name, float(params.get("settle_seconds", 2)), timeout)
    return code == 0, out.getvalue().strip()


def main() -> None:
    from ansible.module_utils.basic import AnsibleModule

    module = AnsibleModule(
        argument_spec={
            "container": {"type": "str", "required": True},
            "url": {"type": "str"},
            "settle_seconds": {"type": "float", "default": 2},
            "docker_health": {"type": "bool", "default": False},
            "health_test": {"type": "list", "elements": "str"},
            "health_check_timeout": {"type": "float", "default": 30},
            "timeout": {"type": "float", "required": True},
        },
        supports_check_mode=False,
    )
    ready, detail = wait(module.params)
    module.exit_json(changed=False, ready=ready, detail=detail)


if __name__ == "__main__":
    main()
