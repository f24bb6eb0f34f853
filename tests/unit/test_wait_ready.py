"""roles/release/library/release_wait_ready.py: when a new replica counts as ready.

The module runs as Ansible runs it on a server (its file, its arguments as JSON, its JSON
answer). A real HTTP server on loopback answers the probe; the container's state comes from a
stand-in `docker` on PATH that prints what `docker inspect -f` would.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

MODULE = Path(__file__).resolve().parents[2] / "roles/release/library/release_wait_ready.py"


class Health(BaseHTTPRequestHandler):
    status = 200

    def do_GET(self) -> None:
        self.send_response(self.status if self.path == "/up" else 404)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def health_server() -> Iterator[ThreadingHTTPServer]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Health)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join()


def call(env: dict[str, str], args: dict[str, object]) -> tuple[int, str]:
    """0 and the detail when the module says ready, 1 and the detail when not."""
    result = subprocess.run(
        [sys.executable, str(MODULE), json.dumps({"ANSIBLE_MODULE_ARGS": args})],
        capture_output=True,
        text=True,
        env=env,
        timeout=30,
        check=False,
    )
    answer = json.loads(result.stdout)
    assert not answer.get("failed"), answer
    assert answer["changed"] is False
    return (0 if answer["ready"] else 1), answer["detail"]


def run(tmp_path: Path, url: str, state: str, timeout: str = "5") -> tuple[int, str, float]:
    docker = tmp_path / "docker"
    docker.write_text(f"#!/bin/sh\necho '{state}'\n")
    docker.chmod(0o755)
    env = dict(os.environ, PATH=f"{tmp_path}:{os.environ['PATH']}")
    started = time.monotonic()
    code, output = call(env, {"container": "app-1", "url": url, "timeout": timeout})
    return code, output, time.monotonic() - started


def test_ready_as_soon_as_the_health_path_answers_200(
    tmp_path: Path, health_server: ThreadingHTTPServer
) -> None:
    url = f"http://127.0.0.1:{health_server.server_address[1]}/up"
    code, output, _ = run(tmp_path, url, "running 0")
    assert code == 0 and output.startswith("ready after"), output


def test_another_status_is_not_ready_until_the_timeout(
    tmp_path: Path, health_server: ThreadingHTTPServer
) -> None:
    url = f"http://127.0.0.1:{health_server.server_address[1]}/nothing-here"
    code, output, elapsed = run(tmp_path, url, "running 0", timeout="1.5")
    assert code == 1 and "no 200 within 1.5s; last answer: 404" in output
    assert 1.5 <= elapsed < 10


def test_a_container_that_stopped_is_given_up_at_once(tmp_path: Path) -> None:
    # Nothing listens on port 9 of loopback (discard): the probe is refused.
    code, output, elapsed = run(tmp_path, "http://127.0.0.1:9/up", "exited 3", timeout="60")
    assert code == 1 and "the container stopped (exited 3)" in output, output
    assert elapsed < 10


def run_docker_health(
    tmp_path: Path, states: list[str], timeout: str = "5", target: str = "http://127.0.0.1:9/up"
) -> tuple[int, str]:
    """The stand-in docker answers each state in turn, then the last one again and again."""
    queue = tmp_path / "states"
    queue.write_text("\n".join(states) + "\n")
    docker = tmp_path / "docker"
    docker.write_text(
        "#!/bin/sh\n"
        f'head -n 1 "{queue}"\n'
        f'if [ "$(wc -l < "{queue}")" -gt 1 ]; then sed -i 1d "{queue}"; fi\n'
    )
    docker.chmod(0o755)
    env = dict(os.environ, PATH=f"{tmp_path}:{os.environ['PATH']}")
    args: dict[str, object] = {"container": "app-1", "timeout": timeout}
    if target.startswith("settle:"):
        args["settle_seconds"] = target.split(":", 1)[1]
    else:
        args.update(url=target, docker_health=True)
    return call(env, args)


def test_docker_health_mode_is_ready_when_docker_says_healthy(tmp_path: Path) -> None:
    code, output = run_docker_health(tmp_path, ["running 0 starting"] * 3 + ["running 0 healthy"])
    assert code == 0 and output.startswith("healthy after"), output


def test_docker_health_mode_takes_unhealthy_as_final(tmp_path: Path) -> None:
    code, output = run_docker_health(tmp_path, ["running 0 starting", "running 0 unhealthy"])
    assert code == 1 and "unhealthy" in output, output


def test_docker_health_mode_gives_up_on_a_stopped_container(tmp_path: Path) -> None:
    code, output = run_docker_health(tmp_path, ["running 0 starting", "exited 3 unhealthy"])
    assert code == 1 and "the container stopped (exited 3 unhealthy)" in output, output


def run_with_health_test(
    tmp_path: Path, test: list[str], exit_codes: list[int], timeout: str = "5"
) -> tuple[int, str, list[str]]:
    """Docker says "starting" throughout; `docker exec` (the gate's own run of the image's
    HEALTHCHECK command) exits with each code in turn, then the last one again. Returns the
    module's verdict, its detail and every docker exec command line."""
    codes, execs = tmp_path / "exec-codes", tmp_path / "execs"
    codes.write_text("\n".join(map(str, exit_codes)) + "\n")
    docker = tmp_path / "docker"
    docker.write_text(
        "#!/bin/sh\n"
        'if [ "$1" = exec ]; then\n'
        f'  echo "$*" >> "{execs}"\n'
        f'  code=$(head -n 1 "{codes}")\n'
        f'  if [ "$(wc -l < "{codes}")" -gt 1 ]; then sed -i 1d "{codes}"; fi\n'
        '  exit "$code"\n'
        "fi\n"
        "echo 'running 0 starting'\n"
    )
    docker.chmod(0o755)
    env = dict(os.environ, PATH=f"{tmp_path}:{os.environ['PATH']}")
    args = {"container": "app-1", "timeout": timeout, "docker_health": True, "health_test": test}
    code, detail = call(env, args)
    return code, detail, execs.read_text().splitlines() if execs.exists() else []


def test_the_image_s_healthcheck_command_passing_is_ready_before_docker_s_first_check(
    tmp_path: Path,
) -> None:
    code, output, execs = run_with_health_test(tmp_path, ["CMD-SHELL", "curl -f localhost"], [1, 0])
    assert code == 0 and "its HEALTHCHECK command passed" in output, output
    # Run as Docker runs a CMD-SHELL test, in the container; once a second, not in a tight loop.
    assert execs == ["exec app-1 /bin/sh -c curl -f localhost"] * 2, execs
    assert float(output.split()[2].rstrip("s")) >= 0.9, output


def test_a_cmd_healthcheck_runs_its_argv_as_is(tmp_path: Path) -> None:
    code, output, execs = run_with_health_test(tmp_path, ["CMD", "/bin/check", "--quick"], [0])
    assert code == 0, output
    assert execs == ["exec app-1 /bin/check --quick"], execs


def test_a_healthcheck_command_that_keeps_failing_is_not_ready(tmp_path: Path) -> None:
    code, output, execs = run_with_health_test(tmp_path, ["CMD-SHELL", "false"], [1], timeout="2")
    assert code == 1 and "not healthy within 2s (state running 0 starting)" in output, output
    assert 2 <= len(execs) <= 4, execs


def test_docker_health_mode_times_out(tmp_path: Path) -> None:
    code, output = run_docker_health(tmp_path, ["running 0 starting"], timeout="1")
    assert code == 1 and "not healthy within 1s (state running 0 starting)" in output, output


# A worker has no HTTP and no HEALTHCHECK: it is ready once it has kept running, in the same
# run (same start time), for the settle time.
START = "2026-11-27T10:00:00.000000000Z"


def test_a_worker_is_ready_once_it_kept_running_for_the_settle_time(tmp_path: Path) -> None:
    code, output = run_docker_health(tmp_path, [f"running 0 {START}"], target="settle:0.5")
    assert code == 0 and output.startswith("running for"), output


def test_a_worker_that_exits_is_not_ready(tmp_path: Path) -> None:
    states = [f"running 0 {START}", f"exited 1 {START}"]
    code, output = run_docker_health(tmp_path, states, target="settle:5")
    assert code == 1 and "the container stopped (exited 1)" in output, output


def test_a_worker_restarted_by_docker_is_not_ready(tmp_path: Path) -> None:
    states = [f"running 0 {START}", "running 0 2026-11-27T10:00:01.000000000Z"]
    code, output = run_docker_health(tmp_path, states, target="settle:5")
    assert code == 1 and "restarted" in output, output
