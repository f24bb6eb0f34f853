"""Helpers shared by the testinfra checks of every scenario (imported as stackcheck)."""

from __future__ import annotations

import json
import os
import shutil
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from email.message import Message
from pathlib import Path

import pytest

HTTP_PORT = int(os.environ.get("WEBSTACK_HTTP_PORT", "18080"))
HTTPS_PORT = int(os.environ.get("WEBSTACK_HTTPS_PORT", "18443"))
STACK = os.environ.get("WEBSTACK_NAME", "webstack")
RUNTIME_SOCKET = "/opt/webstack/haproxy/run/admin.sock"
# The name the default scenario gets a certificate for from its test ACME server.
ACME_DOMAIN = "www.webstack.test"


@dataclass
class Response:
    status: int
    headers: Message
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode()

    def json(self) -> object:
        return json.loads(self.body)


def fetch(
    path: str, *, https: bool = False, headers: dict[str, str] | None = None, timeout: float = 10
) -> Response:
    """GET through NGINX's port published on 127.0.0.1, as a visitor would."""
    scheme, port = ("https", HTTPS_PORT) if https else ("http", HTTP_PORT)
    request = urllib.request.Request(f"{scheme}://127.0.0.1:{port}{path}", headers=headers or {})
    context = None
    if https:
        context = ssl.create_default_context()
        # The certificate is self-signed for the test server.
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    try:
        with urllib.request.urlopen(request, timeout=timeout, context=context) as answer:
            return Response(answer.status, answer.headers, answer.read())
    except urllib.error.HTTPError as error:
        return Response(error.code, error.headers, error.read())


def wait_for(check, timeout: float = 60, interval: float = 1):  # type: ignore[no-untyped-def]
    """Call check until it returns something truthy; return that, or fail after timeout."""
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        try:
            last = check()
        except (OSError, ValueError) as error:
            last = error
        else:
            if last:
                return last
        time.sleep(interval)
    pytest.fail(f"gave up after {timeout}s; last result: {last!r}")


def tcp_connects(address: str, port: int, timeout: float = 2) -> bool:
    try:
        with socket.create_connection((address, port), timeout=timeout):
            return True
    except OSError:
        return False


def docker_inspect(host, name: str) -> dict:  # type: ignore[no-untyped-def]
    return json.loads(host.check_output(f"docker inspect {name}"))[0]


# The project's haproxy_runtime module, its reading of a backend run as a plain script on the
# server (its logic is the standard library's; only main() needs Ansible): one docker exec and
# one python3, where an Ansible module run costs about ten times the CPU. The tests poll it.
_READ_BACKEND = """
import json, sys, types
module = types.ModuleType("haproxy_runtime")
sys.modules[module.__name__] = module
exec(compile({source!r}, "haproxy_runtime.py", "exec"), module.__dict__)
views = module.read_backend(module.RuntimeClient({socket!r}), {backend!r})
print(json.dumps([view.as_dict() for view in views]))
"""


def haproxy_servers(host, backend: str = "app") -> list[dict[str, str]]:  # type: ignore[no-untyped-def]
    """Servers of a backend as HAProxy's Runtime API reports them (haproxy_runtime's stats)."""
    source = (ROOT / "plugins" / "modules" / "haproxy_runtime.py").read_text()
    program = _READ_BACKEND.format(source=source, socket=RUNTIME_SOCKET, backend=backend)
    answer = subprocess.run(
        ["docker", "exec", "-i", host.backend.get_hostname(), "python3", "-"],
        input=program,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert answer.returncode == 0, answer.stderr
    return json.loads(answer.stdout)


def app_containers(host, service: str = "app") -> list[str]:  # type: ignore[no-untyped-def]
    """Names of the running containers of a service (default: the one-service stack's app)."""
    out = host.check_output(
        f"docker ps --filter label=webstack.stack={STACK} --filter label=webstack.service={service}"
        " --format '{{.Names}}'"
    )
    return sorted(out.split())


OLD_TEXT = "Hello beautiful world!"
NEW_TEXT = "Hello beautiful changed world!"
ROOT = Path(__file__).resolve().parents[3]
BIN = Path(sys.executable).parent
sys.path.insert(0, str(ROOT / "tools"))
import loadprobe  # noqa: E402

# Bounds of every load run: it stops by itself even if a deploy hangs.
LOAD_SECONDS = 300
LOAD_MAX_REQUESTS = 60000


def inventory() -> Path:
    """The scenario's inventory directory (with its group_vars), set by molecule."""
    return Path(os.environ["MOLECULE_INVENTORY_FILE"]).parent


def playbook(name: str, *extra: str) -> subprocess.Popen[str]:
    """Start one of the project's playbooks against the scenario's server."""
    env = {k: v for k, v in os.environ.items() if k != "ANSIBLE_CONFIG"}
    env.update(ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0")
    return subprocess.Popen(
        [str(BIN / "ansible-playbook"), "-i", str(inventory()), name, *extra],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def finish(process: subprocess.Popen[str], timeout: float = 600) -> tuple[int, str]:
    output, _ = process.communicate(timeout=timeout)
    return process.returncode, output


@contextmanager
def load(
    tmp_path: Path,
    *,
    counter_every: int = 10,
    post_workers: int = 1,
    keepalive_workers: int = 3,
    fresh_workers: int = 2,
    slow_workers: int = 2,
    pace: float = 0.04,
    prefix: str = "",
) -> Iterator[dict]:
    """Run the load probe around the block; the yielded dict gets the result at exit.

    counter_every=0 and post_workers=0 suit an app without the sample's /counter. Fewer
    workers and a slower pace keep the load under a rate limit. prefix ("/api") loads a
    service routed under a path prefix ("/api/"); two loads at once need two tmp_paths.
    """
    out, start, stop = tmp_path / "load.json", tmp_path / "started", tmp_path / "stop"
    probe = subprocess.Popen(
        [
            str(BIN / "python3"),
            str(ROOT / "tools" / "loadprobe.py"),
            f"--url=http://127.0.0.1:{HTTP_PORT}",
            f"--seconds={LOAD_SECONDS}",
            f"--max-requests={LOAD_MAX_REQUESTS}",
            f"--keepalive-workers={keepalive_workers}",
            f"--fresh-workers={fresh_workers}",
            f"--slow-workers={slow_workers}",
            f"--post-workers={post_workers}",
            "--slow-seconds=3",
            f"--counter-every={counter_every}",
            # Paced so the deploy under test still gets CPU on a two-core machine, where two
            # lanes of scenarios run at once. Each fast worker then sends up to 25 requests a
            # second (about 140 a second in all on an idle machine): a request is in flight
            # every few milliseconds all through a switch. At 0.02 the load alone took 60% of a
            # core per lane (about 270 requests a second), and the lanes were CPU-bound.
            f"--pace={pace}",
            f"--prefix={prefix}",
            f"--out={out}",
            f"--start-file={start}",
            f"--stop-file={stop}",
        ]
    )
    holder: dict = {}
    try:
        deadline = time.monotonic() + 60
        while not start.exists():
            assert probe.poll() is None, "the load probe stopped before the load flowed"
            assert time.monotonic() < deadline, "the load never flowed"
            time.sleep(0.2)
        yield holder
    finally:
        # Two more seconds of load after the block (a few hundred requests, each of them to
        # answer as the block left the site), then the probe stops: it starts no request, and
        # lets the ones in flight finish (a slow one takes up to 3 s).
        time.sleep(2)
        stop.touch()
        probe.wait(timeout=LOAD_SECONDS + 60)
    holder.update(json.loads(out.read_text()))
    # The figures of every run show in the verifier's output (molecule passes -s).
    where = f" on {prefix}/" if prefix else ""
    print(
        f"load{where}: {holder['requests']} requests ({holder['by_kind']}),"
        f" {holder['failed']} failed,"
        f" {holder['retried_on_idle_close']} retried on idle close,"
        f" p50 {holder['latency']['p50']} ms, p99 {holder['latency']['p99']} ms"
    )


def offset_now(result: dict) -> float:
    return time.time() - result["started_at"]


def assert_no_failed_request(result: dict, allowed: list[dict] | None = None) -> None:
    """No request failed, except the given failures (answers_cut_mid_body's, for a crash)."""
    assert result["requests"] > 100, result["requests"]
    assert result["by_kind"]["slow"]["requests"] > 0
    if result["config"]["workers"]["post"]:
        assert result["by_kind"]["post"]["requests"] > 0
    others = [failure for failure in result["failures"] if failure not in (allowed or [])]
    assert not others, others[:20]
    # Every failure is in the list (it keeps the first ones only): none goes unseen.
    assert result["failed"] == len(result["failures"]), result["failed"]
    assert loadprobe.counter_monotonic(result)


def answers_cut_mid_body(result: dict, killed_from: float, killed_until: float) -> list[dict]:
    """GETs whose answer had begun (a 2xx status line reached the client) and was cut, and
    that were in flight while a replica was killed (epoch seconds, from before the kill
    command to after it). A process that dies halfway through writing an answer takes it
    with it: no proxy can send a request again once its answer has reached the client. Any
    other failure (no answer, a 5xx, a timeout) is not one of these."""
    start, end = killed_from - result["started_at"], killed_until - result["started_at"]
    return [
        failure
        for failure in result["failures"]
        if failure["kind"] != "post"
        and failure["error"]
        and 200 <= (failure["status"] or 0) < 300
        and failure["offset"] <= end
        and failure["offset"] + failure["duration"] >= start
    ]


def changed_app(destination: Path) -> Path:
    """A copy of the sample app that answers NEW_TEXT: a real new release."""
    shutil.copytree(
        ROOT / "app", destination, ignore=shutil.ignore_patterns("tests", "__pycache__")
    )
    greeting = destination / "webapp" / "greeting.py"
    greeting.write_text(greeting.read_text().replace(OLD_TEXT, NEW_TEXT))
    return destination
