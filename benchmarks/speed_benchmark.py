#!/usr/bin/env python3
"""How long the everyday commands take, each beside its target (issue "Fast and steady").

Makes its own throwaway server (a systemd container like `make up`'s, named webstack-bench,
ports 127.0.0.1:8180/8543), then times, through the docker connection the tests use:

  fresh     site.yml on the fresh server, until the site answers
  rerun     site.yml again (and its changed count, which must be 0)
  deploy    deploy.yml of a one-line change to the app (base layers cached)
  rollback  rollback.yml to the release before, whose image is kept
  redeploy  deploy.yml of the one-line change again (its image is kept too)

For each release it prints the phases from deploy.yml's summary (prepare, switch, finish)
and the switch per replica. Timing is wall time of ansible-playbook, start to end. The
release guard is off here (release_guard_seconds=0): its watch is a chosen wait, 30 s by
default, added to every release on top of these figures.

    .venv/bin/python benchmarks/speed_benchmark.py [--keep]

--keep leaves the server running (remove it with LOCAL_SERVER=webstack-bench
scripts/local-server.sh down). BENCH_SERVER, BENCH_HTTP_PORT and BENCH_HTTPS_PORT choose
another server name and ports, so that two checkouts (before and after a change) can run
side by side on the same machine, under the same conditions. Nothing here asserts: it
measures and prints.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
SERVER = os.environ.get("BENCH_SERVER", "webstack-bench")
HTTP_PORT = int(os.environ.get("BENCH_HTTP_PORT", "8180"))
HTTPS_PORT = int(os.environ.get("BENCH_HTTPS_PORT", "8543"))
REPLICAS = 2
GREETING = "Hello beautiful world!"
SUMMARY = re.compile(
    r"(deploy|rollback) (\S+) -> (\S+): done in ([\d.]+)s \(prepare ([\d.]+)s, "
    r"switch ([\d.]+)s, finish ([\d.]+)s\)"
)
RECAP = re.compile(rf"{SERVER}\s*:\s*ok=(\d+)\s+changed=(\d+)")
# Seconds, from the issue.
TARGETS = {"fresh": 100.0, "rerun": 20.0, "deploy": 30.0, "rollback": 20.0, "redeploy": 20.0}


def server(action: str) -> None:
    env = dict(
        os.environ,
        LOCAL_SERVER=SERVER,
        LOCAL_HTTP_PORT=str(HTTP_PORT),
        LOCAL_HTTPS_PORT=str(HTTPS_PORT),
    )
    subprocess.run([str(ROOT / "scripts" / "local-server.sh"), action], env=env, check=True)


def inventory(directory: Path) -> Path:
    path = directory / "hosts.yml"
    image = ROOT / ".cache" / "images" / "debian-bookworm-slim.tar"
    path.write_text(
        json.dumps(
            {
                "web": {
                    "hosts": {
                        SERVER: {
                            "ansible_connection": "docker",
                            "ansible_python_interpreter": "/usr/bin/python3",
                            "docker_preload_images": [str(image)],
                            "app_replicas": REPLICAS,
                            "release_guard_seconds": 0,
                        }
                    }
                }
            }
        )
    )
    return path


def playbook(hosts: Path, name: str, *extra: str) -> tuple[float, str]:
    env = dict(os.environ, ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0")
    started = time.monotonic()
    done = subprocess.run(
        [str(BIN / "ansible-playbook"), "-i", str(hosts), name, *extra],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=1200,
        check=False,
    )
    seconds = time.monotonic() - started
    if done.returncode != 0:
        raise RuntimeError(f"{name} {' '.join(extra)} failed:\n{done.stdout[-4000:]}")
    return seconds, done.stdout


def serving(timeout: float = 60) -> float:
    """Seconds until the site answers 200 through NGINX."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{HTTP_PORT}/", timeout=2) as answer:
                if answer.status == 200:
                    return time.monotonic() - started
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError("the site never answered")


def changed_app(directory: Path) -> Path:
    target = directory / "app"
    shutil.copytree(ROOT / "app", target, ignore=shutil.ignore_patterns("tests", "__pycache__"))
    greeting = target / "webapp" / "greeting.py"
    greeting.write_text(greeting.read_text().replace(GREETING, "Hello beautiful faster world!"))
    return target


def phases(output: str) -> str:
    found = SUMMARY.search(" ".join(output.split()))
    if not found:
        return "no summary"
    prepare, switch, finish = (float(found.group(i)) for i in (5, 6, 7))
    return (
        f"prepare {prepare:.1f} s, switch {switch:.1f} s ({switch / REPLICAS:.1f} s a replica),"
        f" finish {finish:.1f} s"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--keep", action="store_true", help="leave the server running")
    args = parser.parse_args()
    rows: list[tuple[str, float, str]] = []
    server("down")
    server("up")
    try:
        with tempfile.TemporaryDirectory() as scratch:
            hosts = inventory(Path(scratch))
            seconds, _ = playbook(hosts, "site.yml")
            rows.append(("fresh", seconds + serving(), "site.yml on a fresh server, to serving"))
            seconds, output = playbook(hosts, "site.yml")
            recap = RECAP.findall(output)
            changed = recap[-1][1] if recap else "?"
            rows.append(("rerun", seconds, f"site.yml again, changed={changed}"))
            app = changed_app(Path(scratch))
            seconds, output = playbook(hosts, "deploy.yml", "-e", f"app_source={app}")
            rows.append(("deploy", seconds, "one-line change: " + phases(output)))
            seconds, output = playbook(hosts, "rollback.yml")
            rows.append(("rollback", seconds, "kept image: " + phases(output)))
            seconds, output = playbook(hosts, "deploy.yml", "-e", f"app_source={app}")
            rows.append(("redeploy", seconds, "kept image: " + phases(output)))
    finally:
        if not args.keep:
            server("down")
    print(f"\n{'figure':<9} {'measured':>9} {'target':>7}  details")
    for name, seconds, details in rows:
        mark = "ok" if seconds <= TARGETS[name] else "over"
        print(f"{name:<9} {seconds:>7.1f} s {TARGETS[name]:>5.0f} s  {mark:<4} {details}")
    print(f"\n{os.cpu_count()} CPUs; load average {os.getloadavg()[0]:.1f} at the end")
    return 0


if __name__ == "__main__":
    sys.exit(main())
