"""Faults survived under load. Each test reports requests sent, failed and seconds to recover.

Zero failed requests, except while the whole server restarts (it cannot answer then): that
test measures how long the site is gone and that it comes back by itself.
"""

from __future__ import annotations

import subprocess
import time

from stackcheck import (
    NEW_TEXT,
    STACK,
    app_containers,
    assert_no_failed_request,
    changed_app,
    docker_inspect,
    fetch,
    finish,
    haproxy_servers,
    load,
    loadprobe,
    playbook,
    wait_for,
)


def report(fault: str, result: dict, recovered_seconds: float) -> None:
    print(
        f"fault: {fault}: {result['requests']} requests, {result['failed']} failed,"
        f" recovered in {recovered_seconds:.1f}s"
    )


def all_servers_up(host) -> bool:  # type: ignore[no-untyped-def]
    servers = haproxy_servers(host)
    return len(servers) == len(app_containers(host)) and all(s["status"] == "UP" for s in servers)


def test_a_crashed_app_replica_is_taken_out_and_comes_back(host, tmp_path) -> None:  # type: ignore[no-untyped-def]
    victim = app_containers(host)[0]
    with load(tmp_path) as result:
        time.sleep(3)
        # SIGKILL from the server, as a crash: the restart policy brings it back (docker kill
        # would count as a manual stop).
        host.check_output(f"kill -9 $(docker inspect -f '{{{{.State.Pid}}}}' {victim})")
        crashed = time.monotonic()
        time.sleep(2)
        wait_for(lambda: all_servers_up(host), timeout=90)
        recovered = time.monotonic() - crashed
        time.sleep(3)
    report("app replica crashed", result, recovered)
    assert_no_failed_request(result)
    assert docker_inspect(host, victim)["RestartCount"] >= 1


HAPROXY_CONFIG = "/opt/webstack/haproxy/conf/haproxy.cfg"


def test_a_haproxy_config_change_by_site_yml_reloads_seamlessly(host, tmp_path) -> None:  # type: ignore[no-untyped-def]
    assert "balance roundrobin" in host.file(HAPROXY_CONFIG).content_string
    with load(tmp_path) as result:
        started = time.monotonic()
        code, output = finish(playbook("site.yml", "-e", "haproxy_balance=leastconn"))
        applied = time.monotonic() - started
    report("HAProxy configuration changed", result, 0.0)
    assert code == 0, output[-4000:]
    assert "RUNNING HANDLER [haproxy : Signal haproxy to reload]" in output
    assert_no_failed_request(result)
    assert "balance leastconn" in host.file(HAPROXY_CONFIG).content_string
    assert all_servers_up(host)
    print(f"fault: site.yml applied the HAProxy change in {applied:.1f}s")


def test_an_nginx_config_change_reloads_gracefully(host, tmp_path) -> None:  # type: ignore[no-untyped-def]
    started_at = docker_inspect(host, f"{STACK}-nginx")["State"]["StartedAt"]
    with load(tmp_path) as result:
        code, output = finish(
            playbook(
                "site.yml",
                "-e",
                "haproxy_balance=leastconn",
                "-e",
                "nginx_client_max_body_size=20m",
            )
        )
    report("NGINX configuration changed", result, 0.0)
    assert code == 0, output[-4000:]
    assert "RUNNING HANDLER [nginx : Signal nginx to reload]" in output
    assert_no_failed_request(result)
    # Reloaded, not restarted.
    assert docker_inspect(host, f"{STACK}-nginx")["State"]["StartedAt"] == started_at


def test_a_redis_restart_degrades_the_counter_but_loses_nothing(host, tmp_path) -> None:  # type: ignore[no-untyped-def]
    with load(tmp_path) as result:
        time.sleep(3)
        host.check_output(f"docker restart {STACK}-redis")
        restarted = time.monotonic()
        wait_for(lambda: fetch("/counter").json()["visits"], timeout=60, interval=0.2)
        recovered = time.monotonic() - restarted
        time.sleep(3)
    report("Redis restarted", result, recovered)
    assert_no_failed_request(result)
    visits = [value for _, value, *_ in result["counter"] if value is not None]
    nulls = sum(1 for _, value, *_ in result["counter"] if value is None)
    print(f"fault: counter samples {len(visits)} with a value, {nulls} degraded")
    # Every increment acknowledged before the restart is still there after it.
    assert fetch("/counter").json()["visits"] > max(visits)


def test_a_server_restart_brings_back_the_latest_release_unattended(host, tmp_path) -> None:  # type: ignore[no-untyped-def]
    code, output = finish(
        playbook("deploy.yml", "-e", f"app_source={changed_app(tmp_path / 'changed')}")
    )
    assert code == 0, output[-4000:]
    assert fetch("/").text == NEW_TEXT + "\n"
    server = host.backend.get_hostname()
    with load(tmp_path) as result:
        time.sleep(3)
        restarted = time.monotonic()
        subprocess.run(["docker", "restart", "-t", "30", server], check=True, timeout=120)
        wait_for(lambda: fetch("/", timeout=3).text == NEW_TEXT + "\n", timeout=180)
        recovered = time.monotonic() - restarted
        back_at = time.time()
        time.sleep(3)
    report("whole server restarted", result, recovered)
    bad_seconds = sum(1 for _, _, failures in result["timeline"] if failures)
    print(f"fault: seconds with failed requests during the server restart: {bad_seconds}")
    # After it came back, every answer is the latest release's.
    assert loadprobe.texts_after(result, back_at - result["started_at"]) == {NEW_TEXT}
    wait_for(lambda: all_servers_up(host), timeout=60)
    running = {name.removeprefix(f"{STACK}-app-") for name in app_containers(host)}
    assert {server["svname"] for server in haproxy_servers(host)} == running
