#!/usr/bin/env python3
"""Throughput and added latency of each hop, side by side: app, HAProxy -> app, NGINX -> HAProxy.

Needs the local throwaway server (`make up`):

    .venv/bin/python benchmarks/throughput_benchmark.py

wrk (Debian's) runs in a throwaway container on the server's internal network, the network
NGINX, HAProxy and the app replicas share, so every byte stays on the server. It measures, in
one run, the same plain page (`/`, never cached) three ways:

  app      one app replica directly (its gunicorn port);
  haproxy  HAProxy's frontend, balancing over every replica;
  chain    NGINX's plain-HTTP port: NGINX -> HAProxy -> app, the way visitors come.

Each is measured twice: at full speed (closed loop, the same connections and duration), for
requests per second and the ratio to the app reached directly; and at a moderate fixed rate
(each connection rests between requests), for the latency each hop adds at p50 and p99. The
targets are measured in turns, round after round, so a busy neighbour on the machine weighs on
all three alike. Prints a table and writes docs/throughput-benchmark.json.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# BENCH_SERVER: another server than `make up`'s, such as the speed benchmark's (--keep).
SERVER = os.environ.get("BENCH_SERVER", "webstack-local")
NETWORK = "webstack_internal"
IMAGE = "webstack-bench/wrk:local"
# Built inside the server from the Debian base the stack's images use. pace.lua makes each
# connection rest PACE_MS between two requests (wrk's delay hook): a fixed moderate rate.
DOCKERFILE = """\
FROM debian:bookworm-slim
RUN apt-get update \\
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends wrk \\
    && rm -rf /var/lib/apt/lists/* \\
    && printf '%s\\n' 'local ms = tonumber(os.getenv("PACE_MS"))' \\
       'function delay()' '  return ms' 'end' > /pace.lua
USER 65534
"""
TARGETS = {
    "app": "one app replica directly",
    "haproxy": "HAProxy -> app (every replica)",
    "chain": "NGINX -> HAProxy -> app",
}
UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


@dataclass
class WrkResult:
    requests_per_second: float
    p50_ms: float
    p99_ms: float
    requests: int
    # Answers other than 2xx/3xx, plus connect, read, write errors and timeouts.
    errors: int


def parse_wrk(output: str) -> WrkResult:
    """The figures of `wrk --latency` output."""

    def latency(percent: str) -> float:
        found = re.search(rf"^\s+{percent}%\s+([\d.]+)(us|ms|s)\s*$", output, re.M)
        if not found:
            raise ValueError(f"no {percent}% latency in wrk's output:\n{output}")
        return float(found[1]) * UNITS[found[2]]

    rate = re.search(r"^Requests/sec:\s+([\d.]+)", output, re.M)
    total = re.search(r"^\s+(\d+) requests in ", output, re.M)
    if not rate or not total:
        raise ValueError(f"not wrk's output:\n{output}")
    socket_errors = re.search(r"Socket errors: (.*)$", output, re.M)
    errors = sum(int(n) for n in re.findall(r"\d+", socket_errors[1])) if socket_errors else 0
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    return WrkResult(
        requests_per_second=float(rate[1]),
        p50_ms=latency("50"),
        p99_ms=latency("99"),
        requests=int(total[1]),
        errors=errors + (int(non_2xx[1]) if non_2xx else 0),
    )


def server(*argv: str, timeout: float = 300, stdin: str | None = None) -> str:
    """A command inside the server container."""
    done = subprocess.run(
        ["docker", "exec", "-i", SERVER, *argv],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return done.stdout


def target_urls() -> dict[str, str]:
    """Each target's URL on the internal network, by container name."""
    replicas = server(
        "docker",
        "ps",
        "--filter",
        "label=webstack.service=app",
        "--format",
        "{{.Names}}",
    ).split()
    if not replicas:
        raise RuntimeError("no app replica runs on the server: `make up` first")
    return {
        "app": f"http://{sorted(replicas)[0]}:8000/",
        "haproxy": "http://haproxy:8080/",
        "chain": "http://webstack-nginx:8080/",
    }


def wrk(url: str, connections: int, seconds: int, pace_ms: int = 0) -> WrkResult:
    argv = ["docker", "run", "--rm", "--network", NETWORK, "--cpus", "1"]
    argv += ["-e", f"PACE_MS={pace_ms}", IMAGE, "wrk", "--latency", "-t", "2"]
    argv += ["-c", str(connections), "-d", f"{seconds}s", "--timeout", "5s"]
    if pace_ms:
        argv += ["-s", "/pace.lua"]
    return parse_wrk(server(*argv, url, timeout=seconds + 60))


def summary(runs: list[WrkResult]) -> dict[str, float]:
    """Mean rate over the rounds; median of each latency percentile."""
    return {
        "requests_per_second": statistics.mean(r.requests_per_second for r in runs),
        "p50_ms": statistics.median(r.p50_ms for r in runs),
        "p99_ms": statistics.median(r.p99_ms for r in runs),
        "errors": sum(r.errors for r in runs),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2, help="turns over the three targets")
    parser.add_argument("--seconds", type=int, default=10, help="per wrk run")
    parser.add_argument("--connections", type=int, default=16, help="at full speed")
    parser.add_argument("--paced-connections", type=int, default=4)
    parser.add_argument("--pace-ms", type=int, default=20, help="rest between two requests")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "throughput-benchmark.json")
    args = parser.parse_args()
    if not 1 <= args.rounds <= 5 or not 1 <= args.seconds <= 60:
        parser.error("at most 5 rounds of at most 60 seconds")

    server("docker", "build", "-q", "-t", IMAGE, "-", stdin=DOCKERFILE, timeout=600)
    urls = target_urls()
    for url in urls.values():  # warm-up: connections, caches, gunicorn threads
        wrk(url, args.connections, 2)
    full: dict[str, list[WrkResult]] = {name: [] for name in TARGETS}
    paced: dict[str, list[WrkResult]] = {name: [] for name in TARGETS}
    for round_number in range(1, args.rounds + 1):
        for name, url in urls.items():
            full[name].append(wrk(url, args.connections, args.seconds))
            paced[name].append(wrk(url, args.paced_connections, args.seconds, args.pace_ms))
            print(
                f"round {round_number} {name}: {full[name][-1].requests_per_second:.0f} req/s,"
                f" paced p50 {paced[name][-1].p50_ms:.2f} ms",
                file=sys.stderr,
            )

    results = {
        name: {"full": summary(full[name]), "paced": summary(paced[name])} for name in TARGETS
    }
    direct = results["app"]
    print(
        f"\n{args.connections} connections for {args.seconds}s per run, {args.rounds} rounds;"
        f" paced: {args.paced_connections} connections resting {args.pace_ms} ms between requests"
    )
    print(
        "| path | req/s | of direct | rounds req/s | p50 / p99 ms at full speed"
        " | paced p50 / p99 ms | added p50 / p99 ms | errors |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for name, label in TARGETS.items():
        mine, speed = results[name], results[name]["full"]
        ratio = speed["requests_per_second"] / direct["full"]["requests_per_second"]
        added = (
            mine["paced"]["p50_ms"] - direct["paced"]["p50_ms"],
            mine["paced"]["p99_ms"] - direct["paced"]["p99_ms"],
        )
        rounds = " / ".join(f"{r.requests_per_second:.0f}" for r in full[name])
        print(
            f"| {label} | {speed['requests_per_second']:.0f} | {ratio:.0%} | {rounds}"
            f" | {speed['p50_ms']:.2f} / {speed['p99_ms']:.2f}"
            f" | {mine['paced']['p50_ms']:.2f} / {mine['paced']['p99_ms']:.2f}"
            f" | {added[0]:+.2f} / {added[1]:+.2f}"
            f" | {speed['errors'] + mine['paced']['errors']:.0f} |"
        )
    chain = results["chain"]["full"]["requests_per_second"] / direct["full"]["requests_per_second"]
    print(f"\nchain throughput ratio (NGINX -> HAProxy -> app vs app directly): {chain:.0%}")
    args.out.write_text(
        json.dumps(
            {
                "settings": {k: v for k, v in vars(args).items() if k != "out"},
                "results": results,
                "runs": {n: [asdict(r) for r in full[n]] for n in TARGETS},
                "paced_runs": {n: [asdict(r) for r in paced[n]] for n in TARGETS},
                "chain_ratio": chain,
            },
            indent=2,
        )
        + "\n"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
