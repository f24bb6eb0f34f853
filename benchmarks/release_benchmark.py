#!/usr/bin/env python3
"""Releases under load, side by side: the naive in-place replacement versus deploy.yml.

Needs the local throwaway server (`make up`) and matplotlib in the venv:

    .venv/bin/pip install matplotlib
    .venv/bin/python benchmarks/release_benchmark.py

Both ways run in one go against http://127.0.0.1:$LOCAL_HTTP_PORT (default 8080), each under
the same load from tools/loadprobe.py, with steady state before and after the release:

  naive   what `docker-compose up -d` does with a changed image: every app container is
          stopped, removed and started again from the new image under the same name and
          settings, then HAProxy is reloaded (it resolves server names only at start).
  deploy  `ansible-playbook deploy.yml -e app_source=DIR`, the project's rolling release.

Between the two, site.yml puts the server back on its recorded release; at the end the repo's
own app/ is deployed again (not measured), so the server is left as `make up` left it.
Prints a table, writes docs/release-benchmark.json and docs/release-benchmark.png.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))
import loadprobe  # noqa: E402  (tools/ is not a package)

SERVER = "webstack-local"
HAPROXY = "webstack-haproxy"
APP_IMAGE = "webstack/app"
BACKEND = "app"
RELEASE_DIR = "/opt/webstack/releases"
ADMIN_SOCKET = "/opt/webstack/haproxy/run/admin.sock"
INVENTORY = "inventory/local/hosts.yml"
GREETING = "Hello beautiful world!"
DOCS = ROOT / "docs"

STEADY_SECONDS = 10.0
# Upper bounds only: the probe is stopped through its stop file 10 s after the release.
PROBE_MAX_SECONDS = 900.0
PROBE_MAX_REQUESTS = 200_000
KEEPALIVE_WORKERS, FRESH_WORKERS, SLOW_WORKERS = 3, 2, 2
SLOW_SECONDS = 2.0
# Each worker rests 20 ms after a success, so on a small machine the release under test
# (Ansible, docker build) still gets CPU.
PACE = 0.02
SUMMARY = re.compile(
    r"deploy (\S+) -> (\S+): done in ([\d.]+)s \(prepare ([\d.]+)s, "
    r"switch ([\d.]+)s, finish ([\d.]+)s\)"
)


# ---- commands -------------------------------------------------------------------------------


def run(argv: list[str], timeout: float = 600) -> str:
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return done.stdout


def docker(*args: str, timeout: float = 600) -> str:
    """docker inside the server: the stack runs on the server's own engine."""
    return run(["docker", "exec", SERVER, "docker", *args], timeout=timeout)


def ansible_playbook() -> str:
    # The ansible-playbook of the venv running this script, so `.venv/bin/python` is enough.
    beside = Path(sys.executable).parent / "ansible-playbook"
    return str(beside) if beside.exists() else "ansible-playbook"


def playbook(name: str, *extra: str, on_line: Callable[[str], None] | None = None) -> str:
    """Run a playbook, streaming its output so on_line sees each line when it is printed."""
    argv = [ansible_playbook(), "-i", INVENTORY, name, *extra]
    env = dict(os.environ, PYTHONUNBUFFERED="1", ANSIBLE_NOCOLOR="1")
    lines: list[str] = []
    with subprocess.Popen(
        argv, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    ) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            if on_line is not None:
                on_line(line)
    output = "".join(lines)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({proc.returncode}):\n{output[-3000:]}")
    return output


def current_release() -> str:
    return run(["docker", "exec", SERVER, "cat", f"{RELEASE_DIR}/current"]).strip()


def haproxy_servers() -> dict[str, str]:
    """Status of every server of the app backend, read from HAProxy's Runtime API."""
    script = (
        "import socket, sys; s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]);"
        " s.sendall(b'show stat\\n'); sys.stdout.write(s.makefile().read())"
    )
    raw = run(["docker", "exec", SERVER, "python3", "-c", script, ADMIN_SOCKET])
    rows = csv.DictReader(io.StringIO(raw.removeprefix("# ")))
    return {
        row["svname"]: row["status"]
        for row in rows
        if row["pxname"] == BACKEND and row["svname"] not in ("FRONTEND", "BACKEND")
    }


def wait_serving(version: str, timeout: float = 30) -> bool:
    """Whether HAProxy balances over version's replicas only, all UP, within timeout."""
    deadline = time.monotonic() + timeout
    while True:
        servers = haproxy_servers()
        if servers and all(
            name.startswith(f"{version}-") and status == "UP" for name, status in servers.items()
        ):
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(1)


# ---- app sources ----------------------------------------------------------------------------


def app_copy(parent: Path, name: str, greeting: str) -> Path:
    """A copy of app/ whose home page says greeting: a real change for each release."""
    target = parent / name
    shutil.copytree(
        ROOT / "app", target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc", ".pytest_*")
    )
    module = target / "webapp" / "greeting.py"
    source = module.read_text()
    if f'"{GREETING}"' not in source:
        raise RuntimeError(f"{module} no longer holds the literal {GREETING!r}")
    module.write_text(source.replace(f'"{GREETING}"', json.dumps(greeting)))
    return target


def source_tag(source: Path) -> str:
    """The release tag roles/release/tasks/version.yml derives from an app source."""
    skip = re.compile(r"(/__pycache__/|\.pyc$|/\.pytest_cache/|/tests/)")
    files = [
        path
        for path in (Path(d) / f for d, _, names in os.walk(source) for f in names)
        if path.is_file() and not skip.search(str(path))
    ]
    # Jinja's sort is case-insensitive; ansible's find checksums with SHA-1.
    files.sort(key=lambda path: str(path).lower())
    sums = " ".join(hashlib.sha1(path.read_bytes()).hexdigest() for path in files)
    return hashlib.sha256(sums.encode()).hexdigest()[:12]


# ---- the two ways ---------------------------------------------------------------------------


def build_in_server(source: Path, tag: str) -> None:
    """Build APP_IMAGE:tag on the server as the app role does, outside the timed part."""
    context = f"/tmp/release-benchmark-{tag}"
    run(["docker", "cp", f"{source}/.", f"{SERVER}:{context}"])
    try:
        docker(
            "build",
            "-q",
            "--build-arg",
            f"APP_VERSION={tag}",
            "--label",
            "webstack.stack=webstack",
            "--label",
            "webstack.service=app",
            "-t",
            f"{APP_IMAGE}:{tag}",
            context,
        )
    finally:
        run(["docker", "exec", SERVER, "rm", "-rf", context])


def run_args(info: dict[str, Any], image: str) -> list[str]:
    """`docker run` arguments that recreate the container described by docker inspect."""
    config, host = info["Config"], info["HostConfig"]
    args = ["-d", "--name", info["Name"].lstrip("/")]
    # Aliases are not copied: Docker adds the container name to its network by itself, the
    # other alias it lists is the old container's id.
    for network in info["NetworkSettings"]["Networks"]:
        args += ["--network", network]
    for variable in config["Env"] or []:
        args += ["--env", variable]
    for mount in info["Mounts"]:
        if mount["Type"] == "bind":
            mode = "" if mount["RW"] else ":ro"
            args += ["--volume", f"{mount['Source']}:{mount['Destination']}{mode}"]
    for key, value in (config["Labels"] or {}).items():
        args += ["--label", f"{key}={value}"]
    if host["RestartPolicy"]["Name"]:
        args += ["--restart", host["RestartPolicy"]["Name"]]
    if config.get("StopTimeout") is not None:
        args += ["--stop-timeout", str(config["StopTimeout"])]
    return [*args, image]


def naive_release(image: str, addresses: dict[str, list[str]]) -> dict[str, float]:
    """Replace every app container in place; addresses gets each one's [old, new] address."""
    names = sorted(
        docker(
            "ps", "-a", "--filter", "label=webstack.service=app", "--format", "{{.Names}}"
        ).split()
    )
    for name in names:
        info = json.loads(docker("inspect", name))[0]
        docker("stop", name)  # SIGTERM, gunicorn drains, within the container's stop timeout
        docker("rm", name)
        docker("run", *run_args(info, image))
        # Whether Docker hands the freed address to the new container decides whether the
        # HAProxy that has not reloaded yet can still reach the replica.
        new = json.loads(docker("inspect", name))[0]
        addresses[name] = [
            next(iter(item["NetworkSettings"]["Networks"].values()))["IPAddress"]
            for item in (info, new)
        ]
    # The new containers have new addresses; HAProxy only learns them by starting again.
    docker("kill", "-s", "USR2", HAPROXY)
    return {}


def deploy_release(source: Path) -> dict[str, float]:
    """deploy.yml, noting when its switch phase starts and ends (task banners, streamed)."""
    marks: dict[str, float] = {}

    def on_line(line: str) -> None:
        if line.startswith("TASK [") and "Note the end of the build" in line:
            marks["switch_start"] = time.time()
        elif line.startswith("TASK [") and "Note the end of the switch" in line:
            marks["switch_end"] = time.time()

    output = playbook("deploy.yml", "-e", f"app_source={source}", on_line=on_line)
    found = SUMMARY.search(" ".join(output.split()))  # the YAML callback may fold the line
    if found is None:
        raise RuntimeError(f"no summary line in deploy.yml's output:\n{output[-3000:]}")
    phases = ("total", "prepare", "switch", "finish")
    for key, value in zip(phases, found.groups()[2:], strict=True):
        marks[f"summary_{key}"] = float(value)
    return marks


def restore_after_naive() -> str:
    """Put the server back on its recorded release with containers deploy.yml expects."""
    # site.yml keeps the release in /opt/webstack/releases/current and re-creates the
    # containers webstack-app-<version>-<n> from that release's image (HAProxy servers
    # <version>-<n>, which is what deploy.yml starts from).
    playbook("site.yml")
    version = current_release()
    # site.yml re-created the replicas under the same names, at new addresses, and its
    # HAProxy configuration did not change, so nothing reloads HAProxy: do it here.
    if not wait_serving(version, timeout=10):
        print("site.yml left HAProxy on the old addresses; reloading HAProxy", flush=True)
        docker("kill", "-s", "USR2", HAPROXY)
    if not wait_serving(version, timeout=60):
        raise RuntimeError(f"HAProxy does not serve {version} after site.yml: {haproxy_servers()}")
    return version


# ---- measuring ------------------------------------------------------------------------------


def measure(url: str, release: Callable[[], dict[str, float]]) -> dict[str, Any]:
    """Steady load, release, steady load; the probe result with release marks in seconds."""
    box: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        start_file, stop_file = Path(tmp, "flowing"), Path(tmp, "stop")

        def probe() -> None:
            box["result"] = loadprobe.run(
                url,
                seconds=PROBE_MAX_SECONDS,
                max_requests=PROBE_MAX_REQUESTS,
                start_file=start_file,
                stop_file=stop_file,
                keepalive_workers=KEEPALIVE_WORKERS,
                fresh_workers=FRESH_WORKERS,
                slow_workers=SLOW_WORKERS,
                slow_seconds=SLOW_SECONDS,
                pace=PACE,
                log_requests=True,  # per-request latencies for the windows below
            )

        thread = threading.Thread(target=probe)
        thread.start()
        try:
            deadline = time.monotonic() + 60
            while not start_file.exists():
                if time.monotonic() > deadline or not thread.is_alive():
                    raise RuntimeError(f"the load never flowed on every worker against {url}")
                time.sleep(0.1)
            time.sleep(STEADY_SECONDS)
            start = time.time()
            marks = release()
            end = time.time()
            time.sleep(STEADY_SECONDS)
        finally:
            stop_file.touch()
            thread.join()
    result: dict[str, Any] = box["result"]
    t0 = result["started_at"]
    result["marks"] = {"start": start - t0, "end": end - t0} | {
        key: value - t0 if key.startswith("switch_") else value for key, value in marks.items()
    }
    return result


def latency(result: dict[str, Any], low: float, high: float) -> dict[str, float | None]:
    """p50/p99 in ms of successful non-slow requests started in [low, high)."""
    durations = [
        row[1] * 1000
        for row in result["requests_log"]
        if row[3] != "slow" and row[8] is None and low <= row[0] < high
    ]
    if not durations:
        return {"p50": None, "p99": None, "count": 0}
    return {
        "p50": round(loadprobe.percentile(durations, 50), 1),
        "p99": round(loadprobe.percentile(durations, 99), 1),
        "count": len(durations),
    }


def figures(way: str, greeting: str, result: dict[str, Any]) -> dict[str, Any]:
    marks = result["marks"]
    return {
        "way": way,
        "greeting": greeting,
        "requests": result["requests"],
        "failed": result["failed"],
        "seconds_with_errors": sum(1 for _, _, failed in result["timeline"] if failed),
        "release_seconds": round(marks["end"] - marks["start"], 1),
        "switch_seconds": marks.get("summary_switch"),
        "latency_before_ms": latency(result, marks["start"] - STEADY_SECONDS, marks["start"]),
        "latency_release_ms": latency(result, marks["start"], marks["end"]),
        "new_text_served_after": greeting in loadprobe.texts_after(result, marks["end"]),
        "marks": {key: round(value, 2) for key, value in marks.items()},
        "stopped_by": result["stopped_by"],
        "by_kind": result["by_kind"],
        "first_failures": result["failures"][:10],
        "timeline": result["timeline"],
    }


def table(rows: list[dict[str, Any]]) -> str:
    def ms(value: float | None) -> str:
        return "-" if value is None else f"{value:.1f}"

    head = (
        "way",
        "requests",
        "failed",
        "s w/ errors",
        "release s",
        "switch s",
        "p50 before",
        "p99 before",
        "p50 release",
        "p99 release",
    )
    body = [
        (
            row["way"],
            str(row["requests"]),
            str(row["failed"]),
            str(row["seconds_with_errors"]),
            f"{row['release_seconds']:.1f}",
            "-" if row["switch_seconds"] is None else f"{row['switch_seconds']:.1f}",
            ms(row["latency_before_ms"]["p50"]),
            ms(row["latency_before_ms"]["p99"]),
            ms(row["latency_release_ms"]["p50"]),
            ms(row["latency_release_ms"]["p99"]),
        )
        for row in rows
    ]
    widths = [max(len(line[i]) for line in (head, *body)) for i in range(len(head))]
    lines = [
        "  ".join(cell.rjust(width) for cell, width in zip(line, widths, strict=True))
        for line in (head, *body)
    ]
    return "\n".join([lines[0], "  ".join("-" * width for width in widths), *lines[1:]])


def plot(rows: list[dict[str, Any]], path: Path) -> None:
    import matplotlib  # lazily: only needed once the measurements are done

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(rows), 1, figsize=(11, 3.6 * len(rows)), squeeze=False)
    for ax, row in zip(axes[:, 0], rows, strict=True):
        seconds = [item[0] for item in row["timeline"]]
        requests = [item[1] for item in row["timeline"]]
        ax.plot(seconds, requests, color="tab:blue", label="requests/s")
        ax.bar(
            seconds,
            [item[2] for item in row["timeline"]],
            width=1.0,
            align="edge",
            color="tab:red",
            label="errors/s",
        )
        marks = row["marks"]
        ax.axvspan(marks["start"], marks["end"], color="tab:orange", alpha=0.15, label="release")
        if "switch_start" in marks and "switch_end" in marks:
            ax.axvspan(
                marks["switch_start"],
                marks["switch_end"],
                color="tab:green",
                alpha=0.25,
                label="switch phase",
            )
        for key in ("start", "end"):
            ax.axvline(marks[key], color="tab:orange", linestyle="--", linewidth=1)
        ax.set_title(
            f"{row['way']}: {row['failed']} failed of {row['requests']} requests, "
            f"release {row['release_seconds']:.1f} s"
        )
        ax.set_xlabel("seconds since the load started")
        ax.set_ylabel("requests per second")
        ax.set_ylim(bottom=0)
        ax.legend(loc="lower left", fontsize="small")
    fig.suptitle("Releases under load: in-place replacement vs deploy.yml")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ---- main -----------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument(
        "--port",
        type=int,
        default=int(os.environ.get("LOCAL_HTTP_PORT", "8080")),
        help="the local server's HTTP port on 127.0.0.1 (default: $LOCAL_HTTP_PORT or 8080)",
    )
    args = parser.parse_args()
    url = f"http://127.0.0.1:{args.port}"
    try:
        import matplotlib  # noqa: F401  (checked before minutes of measuring, used at the end)
    except ImportError:
        print(
            f"matplotlib is missing: {sys.executable} -m pip install matplotlib",
            file=sys.stderr,
        )
        return 2
    version = current_release()
    if not wait_serving(version, timeout=5):
        print(f"the local server does not serve {version}: run `make up` first", file=sys.stderr)
        return 2

    stamp = time.strftime("%H:%M:%S")
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="release-benchmark-") as tmp:
        naive_text = f"Hello from the in-place release of {stamp}!"
        naive_source = app_copy(Path(tmp), "naive", naive_text)
        naive_tag = source_tag(naive_source)
        print(f"naive: building {APP_IMAGE}:{naive_tag} on the server (not timed)", flush=True)
        began = time.monotonic()
        build_in_server(naive_source, naive_tag)
        naive_build = time.monotonic() - began
        print(f"naive: replacing the containers of {version} in place under load", flush=True)
        addresses: dict[str, list[str]] = {}
        result = measure(url, lambda: naive_release(f"{APP_IMAGE}:{naive_tag}", addresses))
        rows.append(
            figures("naive in place", naive_text, result)
            | {"build_seconds": naive_build, "addresses_old_new": addresses}
        )

        print("restoring the recorded release with site.yml (not timed)", flush=True)
        version = restore_after_naive()
        docker("rmi", f"{APP_IMAGE}:{naive_tag}")

        deploy_text = f"Hello from the deploy.yml release of {stamp}!"
        deploy_source = app_copy(Path(tmp), "deploy", deploy_text)
        print(f"deploy: deploy.yml {version} -> {source_tag(deploy_source)} under load", flush=True)
        result = measure(url, lambda: deploy_release(deploy_source))
        rows.append(figures("deploy.yml", deploy_text, result))

    print("putting the repo's app/ back with deploy.yml (not timed)", flush=True)
    playbook("deploy.yml")

    DOCS.mkdir(exist_ok=True)
    document = {
        "url": url,
        "probe": {
            "workers": {
                "keepalive": KEEPALIVE_WORKERS,
                "fresh": FRESH_WORKERS,
                "slow": SLOW_WORKERS,
            },
            "slow_seconds": SLOW_SECONDS,
            "pace": PACE,
            "steady_seconds": STEADY_SECONDS,
        },
        "note": "latency: successful non-slow requests, ms; release window = wall time of the "
        "release (deploy.yml: whole playbook with its build; naive: stop/rm/run + reload)",
        "ways": rows,
    }
    (DOCS / "release-benchmark.json").write_text(json.dumps(document, indent=1) + "\n")
    plot(rows, DOCS / "release-benchmark.png")

    print()
    print(table(rows))
    print()
    naive, deploy = rows
    marks = deploy["marks"]
    print(f"naive build before the timed part: {naive['build_seconds']:.1f} s")
    kept = all(old == new for old, new in naive["addresses_old_new"].values())
    print(f"naive: new containers got the old addresses: {kept} {naive['addresses_old_new']}")
    print(
        f"deploy.yml summary: done in {marks['summary_total']:.1f} s (prepare "
        f"{marks['summary_prepare']:.1f} s, switch {marks['summary_switch']:.1f} s, finish "
        f"{marks['summary_finish']:.1f} s); playbook wall time {deploy['release_seconds']:.1f} s"
    )
    for row in rows:
        served = row["new_text_served_after"]
        print(f"{row['way']}: new greeting served after the release: {served}")
    print(f"wrote {DOCS / 'release-benchmark.json'} and {DOCS / 'release-benchmark.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
