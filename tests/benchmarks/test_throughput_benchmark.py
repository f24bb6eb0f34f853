"""The figures benchmarks/throughput_benchmark.py reads from wrk's output."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from throughput_benchmark import parse_wrk

WRK_OUTPUT = """\
Running 10s test @ http://haproxy:8080/
  2 threads and 16 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     8.12ms   10.31ms 180.05ms   94.12%
    Req/Sec     1.02k   150.22     1.31k    71.00%
  Latency Distribution
     50%  812.00us
     75%    9.01ms
     90%   14.20ms
     99%    1.20s
  20310 requests in 10.01s, 3.10MB read
  Socket errors: connect 0, read 2, write 0, timeout 1
  Non-2xx or 3xx responses: 4
Requests/sec:   2029.12
Transfer/sec:    317.22KB
"""


def test_reads_rate_percentiles_in_milliseconds_and_every_error() -> None:
    result = parse_wrk(WRK_OUTPUT)
    assert result.requests_per_second == 2029.12
    assert result.p50_ms == pytest.approx(0.812)
    assert result.p99_ms == 1200.0
    assert result.requests == 20310
    assert result.errors == 7


def test_a_clean_run_has_no_error() -> None:
    clean = WRK_OUTPUT.replace("  Socket errors: connect 0, read 2, write 0, timeout 1\n", "")
    assert parse_wrk(clean.replace("  Non-2xx or 3xx responses: 4\n", "")).errors == 0


def test_refuses_what_is_not_wrk_output() -> None:
    with pytest.raises(ValueError):
        parse_wrk("wrk: unknown option\n")
