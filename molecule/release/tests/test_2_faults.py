"""Faults survived under load. Each test reports requests sent, failed and seconds to recover.

Zero failed requests, except while the whole server restarts (it cannot answer then): that
test measures how long the site is gone and that it comes back by itself.

They run after test_1_releases.py, on the server it leaves (a release of the sample app
serving, its history and kept images): a provisioned server that has seen releases, as a
real one has when a fault comes.
"""

from __future__ import annotations

import subprocess
import time

from stackcheck import (
    NEW_TEXT,
    STACK,
    answers_cut_mid_body,
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
    # GETs only: a POST in flight on a process that crashes is lost whatever the proxies do
    # (it must not be replayed); HAProxy retries the idempotent requests elsewhere.
    with load(tmp_path, post_workers=0) as result:
        time.sleep(3)
        # SIGKILL from the server, as a crash: the restart policy brings it back (docker kill
        # would count as a manual stop). The container's first process is Docker's init
        # (replicas run with --init); it dies at once and takes the app down with it.
        killed_from = time.time()
        host.check_output(f"kill -9 $(docker inspect -f '{{{{.State.Pid}}}}' {victim})")
        killed_until = time.time()
        crashed = time.monotonic()
        time.sleep(2)
        wait_for(lambda: all_servers_up(host), timeout=90)
        recovered = time.monotonic() - crashed
        time.sleep(3)
    report("app replica crashed", result, recovered)
    # Answers the replica had begun when it died are cut (seen once in a clean-clone run: a
    # 200 and none of its 23 bytes): counted and shown, and only those may fail. At most
    # what the victim can serve at once (2 gunicorn workers of 4 threads).
    cut = answers_cut_mid_body(result, killed_from, killed_until)
    print(f"fault: app replica crashed: {len(cut)} answers cut mid-body by the crash: {cut}")
    assert len(cut) <= 8
    assert_no_failed_request(result, allowed=cut)
    assert docker_inspect(host, victim)["RestartCount"] >= 1


HAPROXY_CONFIG = "/opt/webstack/haproxy/conf/haproxy.cfg"
NGINX_CONFIG = "/opt/webstack/nginx/conf/nginx.conf"


def test_a_configuration_haproxy_or_nginx_refuses_never_lands(host) -> None:  # type: ignore[no-untyped-def]
    """Inputs that pass every preflight check but that HAProxy or NGINX itself refuses."""
    haproxy_before = host.file(HAPROXY_CONFIG).content_string
    nginx_before = host.file(NGINX_CONFIG).content_string
    code, output = finish(playbook("site.yml", "-e", '{"haproxy_balance": "hash nosuchfetch"}'))
    assert code != 0
    assert "failed to validate" in output and "nosuchfetch" in output, output[-3000:]
    assert host.file(HAPROXY_CONFIG).content_string == haproxy_before
    code, output = finish(playbook("site.yml", "-e", '{"nginx_client_max_body_size": "10 zz"}'))
    assert code != 0
    assert "NGINX refuses the new configuration" in output, output[-3000:]
    assert host.file(NGINX_CONFIG).content_string == nginx_before
    assert fetch("/").status == 200
    # A failed site.yml leaves the healer paused; the next test's site.yml starts it again.


def test_a_haproxy_and_nginx_config_change_by_site_yml_reloads_both(host, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """One site.yml run changes both configurations: HAProxy reloads (its workers hand over),
    NGINX reloads (not restarts), under load, without a failed request. One run for both
    saves a whole site.yml under load; each reload is still checked by its handler, its
    configuration and, for NGINX, its unchanged start time."""
    assert "balance roundrobin" in host.file(HAPROXY_CONFIG).content_string
    started_at = docker_inspect(host, f"{STACK}-nginx")["State"]["StartedAt"]
    with load(tmp_path) as result:
        started = time.monotonic()
        code, output = finish(
            playbook(
                "site.yml",
                "-e",
                "haproxy_balance=leastconn",
                "-e",
                "nginx_client_max_body_size=20m",
            )
        )
        applied = time.monotonic() - started
    report("HAProxy and NGINX configurations changed", result, 0.0)
    assert code == 0, output[-4000:]
    assert "RUNNING HANDLER [haproxy : Signal haproxy to reload]" in output
    assert "RUNNING HANDLER [nginx : Signal nginx to reload]" in output
    assert_no_failed_request(result)
    assert "balance leastconn" in host.file(HAPROXY_CONFIG).content_string
    assert "client_max_body_size 20m" in host.file(NGINX_CONFIG).content_string
    assert all_servers_up(host)
    # Reloaded, not restarted.
    assert docker_inspect(host, f"{STACK}-nginx")["State"]["StartedAt"] == started_at
    print(f"fault: site.yml applied both changes in {applied:.1f}s")


RELOADS_IN_A_ROW = 8


def test_reloads_in_a_row_lose_no_request_posts_included(host, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """HAProxy and NGINX reloaded in turns under a POST-heavy load, as their handlers do.

    NGINX reuses keep-alive connections to HAProxy for GET, HEAD and OPTIONS; each HAProxy
    reload closes the old process's idle ones, and NGINX retries a GET that met such a close.
    POSTs go on new connections and must never fail nor be replayed.
    """
    since = host.check_output("date +%s")
    with load(tmp_path, post_workers=3) as result:
        time.sleep(2)
        for _ in range(RELOADS_IN_A_ROW):
            host.check_output(f"docker exec {STACK}-haproxy sh -c 'kill -USR2 1'")
            time.sleep(1.5)
            host.check_output(
                f"docker exec {STACK}-nginx nginx -c /etc/nginx/webstack/nginx.conf -s reload"
            )
            time.sleep(1.5)
        time.sleep(3)
    report(f"{RELOADS_IN_A_ROW} HAProxy and {RELOADS_IN_A_ROW} NGINX reloads", result, 0.0)
    # GETs NGINX sent on a keep-alive connection HAProxy closed, and sent again on another.
    closed = host.check_output(
        f"docker logs --since {since} {STACK}-nginx 2>&1"
        " | grep -c 'upstream prematurely closed\\|reset by peer' || true"
    )
    print(
        f"fault: reloads: {result['by_kind']['post']['requests']} POSTs,"
        f" {result['retried_on_idle_close']} retried on idle close by the client,"
        f" {closed} requests NGINX sent again after HAProxy closed a kept connection"
    )
    assert_no_failed_request(result)
    assert result["by_kind"]["post"]["requests"] > 100
    assert all_servers_up(host)


def test_maintenance_mode_answers_its_page_and_switches_without_a_failed_request(  # type: ignore[no-untyped-def]
    host, tmp_path
) -> None:
    try:
        with load(tmp_path) as result:
            time.sleep(2)
            code, output = finish(playbook("maintenance.yml", "-e", "maintenance=on"))
            assert code == 0, output[-3000:]
            on_at = time.time()
            page = fetch("/")
            assert page.status == 503, page.status
            assert page.headers["Retry-After"] == "120"
            assert page.headers["X-Webstack-Maintenance"] == "on"
            assert "Down for maintenance" in page.text
            # Static files are still served, and nothing was restarted or reloaded.
            assert fetch("/static/style.css").status == 200
            # So is the ACME challenge path (a renewal may fall in a maintenance window).
            challenge = "/opt/webstack/nginx/acme-challenge/.well-known/acme-challenge/probe"
            host.check_output(f"mkdir -p $(dirname {challenge}) && echo token > {challenge}")
            assert fetch("/.well-known/acme-challenge/probe").text.strip() == "token"
            host.check_output(f"rm -f {challenge}")
            code, output = finish(playbook("status.yml"))
            assert code == 0, output[-3000:]
            assert "maintenance: on since " in " ".join(output.split())
            time.sleep(3)
            off_from = time.time()
            code, output = finish(playbook("maintenance.yml", "-e", "maintenance=off"))
            assert code == 0, output[-3000:]
            off_at = time.time()
            assert fetch("/").status == 200
            time.sleep(2)
    finally:
        # Never leave the site in maintenance for the tests after this one.
        host.check_output("rm -f /opt/webstack/nginx/conf/maintenance/on")
    print(
        f"fault: maintenance on and off: {result['requests']} requests, {result['failed']}"
        f" failed, {result['maintenance']} answered by the maintenance page"
    )
    assert_no_failed_request(result)
    assert result["maintenance"] > 0
    started = result["started_at"]
    first, last = result["maintenance_window"]
    assert on_at - started - 15 <= first and last <= off_at - started
    # Between the switches every app request got the maintenance page: no text of the app.
    window = (on_at - started, off_from - started)
    assert [item for item in result["texts"] if window[0] <= item[0] <= window[1]] == []


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


HEAL_BOUND_SECONDS = 60


def server_engine_answers(server: str) -> bool:
    """Whether the Docker engine inside the test server answers (asked from this machine)."""
    probe = subprocess.run(
        ["docker", "exec", server, "docker", "info", "--format", "{{.ServerVersion}}"],
        capture_output=True,
        timeout=20,
        check=False,
    )
    return probe.returncode == 0


def full_strength(host) -> bool:  # type: ignore[no-untyped-def]
    return len(app_containers(host)) == 2 and all_servers_up(host)


def heal_log(host) -> str:  # type: ignore[no-untyped-def]
    return host.check_output("journalctl -u webstack-heal.service --no-pager -o cat")


def test_a_replica_stopped_by_hand_is_brought_back_by_the_healer(host, tmp_path) -> None:  # type: ignore[no-untyped-def]
    victim = app_containers(host)[0]
    with load(tmp_path) as result:
        time.sleep(2)
        # Docker never restarts a container stopped by hand, whatever its restart policy.
        host.check_output(f"docker stop {victim}")
        stopped = time.monotonic()
        wait_for(lambda: victim in app_containers(host) and full_strength(host), timeout=120)
        healed = time.monotonic() - stopped
        time.sleep(2)
    report("app replica stopped by hand", result, healed)
    assert_no_failed_request(result)
    assert healed <= HEAL_BOUND_SECONDS
    assert f"started {victim}" in heal_log(host)


def test_with_no_replica_left_visitors_get_a_503_page_until_the_healer_is_back(host) -> None:  # type: ignore[no-untyped-def]
    replicas = app_containers(host)
    host.check_output("systemctl stop webstack-heal.timer")
    try:
        host.check_output(f"docker stop {' '.join(replicas)}")
        answer = wait_for(lambda: (page := fetch("/", timeout=5)).status == 503 and page)
        assert answer.headers["Retry-After"] == "5"
        assert "Back in a moment" in answer.text
    finally:
        host.check_output("systemctl start webstack-heal.timer")
    stopped = time.monotonic()
    wait_for(lambda: full_strength(host), timeout=120)
    print(
        f"fault: every replica stopped: back at full strength in {time.monotonic() - stopped:.1f}s"
    )
    assert fetch("/").status == 200


def test_a_restart_with_a_replica_gone_serves_at_once_and_heals(host, tmp_path) -> None:  # type: ignore[no-untyped-def]
    code, output = finish(
        playbook("deploy.yml", "-e", f"app_source={changed_app(tmp_path / 'changed')}")
    )
    assert code == 0, output[-4000:]
    assert fetch("/").text == NEW_TEXT + "\n"
    server = host.backend.get_hostname()
    victim = app_containers(host)[0]
    # The healer waits for the boot, so the replica is still gone when HAProxy starts.
    host.check_output("systemctl stop webstack-heal.timer")
    host.check_output(f"docker rm -f {victim}")
    with load(tmp_path) as result:
        time.sleep(3)
        restarted = time.monotonic()
        subprocess.run(["docker", "restart", "-t", "30", server], check=True, timeout=120)
        wait_for(lambda: server_engine_answers(server), timeout=120, interval=0.5)
        engine_up = time.monotonic()
        wait_for(lambda: fetch("/", timeout=3).text == NEW_TEXT + "\n", timeout=120, interval=0.2)
        serving = time.monotonic()
        back_at = time.time()
        wait_for(lambda: full_strength(host), timeout=120)
        strong = time.monotonic()
        time.sleep(3)
    report("whole server restarted with a replica gone", result, serving - restarted)
    print(
        f"fault: engine up {engine_up - restarted:.1f}s after the restart; serving"
        f" {serving - engine_up:.1f}s and full strength {strong - engine_up:.1f}s after that"
    )
    # After it came back, every answer is the latest release's, from one replica first.
    assert loadprobe.texts_after(result, back_at - result["started_at"]) == {NEW_TEXT}
    assert serving - engine_up <= 30
    assert strong - engine_up <= HEAL_BOUND_SECONDS
    running = {name.removeprefix(f"{STACK}-app-") for name in app_containers(host)}
    assert {server["svname"] for server in haproxy_servers(host)} == running
    assert f"recreated {victim}" in heal_log(host)
    # The healer recreates from the removed replica's own settings: Docker's init among them.
    recreated = host.check_output(f"docker inspect -f '{{{{.HostConfig.Init}}}}' {victim}")
    assert recreated == "true", recreated


def test_a_power_cut_brings_back_the_latest_release_and_keeps_acknowledged_writes(  # type: ignore[no-untyped-def]
    host, tmp_path
) -> None:
    server = host.backend.get_hostname()
    with load(tmp_path) as result:
        time.sleep(5)
        cut = time.time()
        # Every process of the server dies at once: nothing gets to shut down or flush.
        subprocess.run(["docker", "kill", "--signal", "KILL", server], check=True, timeout=60)
        restarted = time.monotonic()
        subprocess.run(["docker", "start", server], check=True, timeout=60)
        wait_for(lambda: server_engine_answers(server), timeout=120, interval=0.5)
        engine_up = time.monotonic()
        wait_for(lambda: fetch("/", timeout=3).text == NEW_TEXT + "\n", timeout=120, interval=0.2)
        serving = time.monotonic()
        wait_for(lambda: full_strength(host), timeout=120)
        strong = time.monotonic()
        after = fetch("/counter").json()["visits"]
        time.sleep(3)
    report("power cut (server SIGKILLed)", result, serving - restarted)
    print(
        f"fault: power cut: engine up {engine_up - restarted:.1f}s after the start; serving"
        f" {serving - engine_up:.1f}s and full strength {strong - engine_up:.1f}s after that"
    )
    assert serving - engine_up <= HEAL_BOUND_SECONDS
    assert strong - engine_up <= HEAL_BOUND_SECONDS
    cut_offset = cut - result["started_at"]
    # Increments acknowledged (answered) before the cut; redis_appendfsync everysec promises
    # those answered more than 2 seconds before it (README: "A power cut").
    acknowledged = [visits for _, visits, end in result["counter"] if visits and end < cut_offset]
    promised = [visits for _, visits, end in result["counter"] if visits and end < cut_offset - 2]
    assert promised, "no counter sample was answered before the cut"
    print(
        f"fault: counter: {len(acknowledged)} increments acknowledged before the cut, the"
        f" highest {max(acknowledged)}; {after} after it"
        f" ({'none' if after > max(acknowledged) else 'some'} lost)"
    )
    assert after > max(promised)
