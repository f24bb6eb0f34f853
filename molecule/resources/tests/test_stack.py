"""What a user of site.yml gets: the stack serving through NGINX, every piece checked."""

from __future__ import annotations

import http.client
import ipaddress
import json
import subprocess
import time
from pathlib import Path

import pytest
from stackcheck import (
    ACME_DOMAIN,
    HTTP_PORT,
    STACK,
    app_containers,
    docker_inspect,
    fetch,
    finish,
    haproxy_servers,
    inventory,
    playbook,
    tcp_connects,
    wait_for,
)


@pytest.fixture(scope="module")
def server_address(host) -> str:  # type: ignore[no-untyped-def]
    """The test server's address on this machine's Docker bridge, asked of the outer engine.

    Never an address the server reports itself: those include its own bridges' gateways,
    which this machine would route elsewhere.
    """
    name = host.backend.get_hostname()
    address = subprocess.check_output(
        ["docker", "inspect", "-f", "{{.NetworkSettings.IPAddress}}", name], text=True
    ).strip()
    bridge = json.loads(subprocess.check_output(["docker", "network", "inspect", "bridge"]))
    subnet = ipaddress.ip_network(bridge[0]["IPAM"]["Config"][0]["Subnet"])
    assert ipaddress.ip_address(address) in subnet, (address, subnet)
    return address


APP_DIR = Path(__file__).resolve().parents[3] / "app"
SERVICES = ["nginx", "haproxy", "redis"]


def test_docker_engine_is_active_and_enabled(host) -> None:  # type: ignore[no-untyped-def]
    docker = host.service("docker")
    assert docker.is_running
    assert docker.is_enabled


def test_every_service_runs_in_its_own_container(host) -> None:  # type: ignore[no-untyped-def]
    for service in SERVICES:
        state = docker_inspect(host, f"{STACK}-{service}")["State"]
        assert state["Running"], service
    apps = app_containers(host)
    assert len(apps) == 2
    for name in apps:
        assert docker_inspect(host, name)["State"]["Health"]["Status"] == "healthy"


def test_site_answers_through_nginx_from_outside() -> None:
    answer = fetch("/")
    assert answer.status == 200
    assert answer.text == "Hello beautiful world!\n"
    assert answer.headers["X-App-Version"]
    # server_tokens off: no version in the Server header.
    assert answer.headers["Server"] == "nginx"
    for header in ("X-Content-Type-Options", "X-Frame-Options", "Referrer-Policy"):
        assert answer.headers[header], header


def test_other_pages_and_https() -> None:
    for path in ("/index", "/home"):
        assert fetch(path).text == "Hello beautiful world!\n"
    secure = fetch("/", https=True)
    assert secure.status == 200
    assert secure.text == "Hello beautiful world!\n"


def test_static_file_is_served_by_nginx_itself() -> None:
    answer = fetch("/static/style.css")
    assert answer.status == 200
    assert answer.body == (APP_DIR / "static" / "style.css").read_bytes()
    # The app never sees it: its responses carry X-App-Version, NGINX's static files do not.
    assert "X-App-Version" not in answer.headers
    assert "max-age" in answer.headers["Cache-Control"]


def test_responses_are_gzipped() -> None:
    answer = fetch("/static/style.css", headers={"Accept-Encoding": "gzip"})
    assert answer.headers["Content-Encoding"] == "gzip"


def test_cacheable_responses_come_from_the_proxy_cache() -> None:
    fetch("/about")
    again = fetch("/about")
    assert again.status == 200
    assert again.headers["X-Cache-Status"] == "HIT"
    assert fetch("/").headers["X-Cache-Status"] != "HIT"


def test_haproxy_reports_every_replica_up_through_the_runtime_api(host) -> None:  # type: ignore[no-untyped-def]
    servers = haproxy_servers(host)
    assert len(servers) == len(app_containers(host)) == 2
    assert {server["status"] for server in servers} == {"UP"}


def test_runtime_api_socket_is_for_haproxy_and_root_only(host) -> None:  # type: ignore[no-untyped-def]
    socket_file = host.file("/opt/webstack/haproxy/run/admin.sock")
    assert socket_file.is_socket
    assert socket_file.mode == 0o660
    assert socket_file.uid == 10003
    runtime_dir = host.file("/opt/webstack/haproxy/run")
    assert runtime_dir.mode == 0o750 and runtime_dir.uid == 10003


@pytest.mark.parametrize("service", ["nginx", "haproxy", "redis", "app"])
def test_containers_are_confined(host, service) -> None:  # type: ignore[no-untyped-def]
    names = app_containers(host) if service == "app" else [f"{STACK}-{service}"]
    for name in names:
        config = docker_inspect(host, name)
        host_config = config["HostConfig"]
        assert host_config["CapDrop"] == ["ALL"], name
        assert "no-new-privileges:true" in host_config["SecurityOpt"], name
        assert host_config["ReadonlyRootfs"] is True, name
        assert host_config["Memory"] > 0, name
        assert host_config["NanoCpus"] > 0, name
        assert host_config["RestartPolicy"]["Name"] == "unless-stopped", name
        assert not host_config["CapAdd"], name
        assert config["Config"]["User"].split(":")[0] not in ("", "0", "root"), name


def test_container_logs_are_rotated_and_the_engine_is_not_on_tcp(host, server_address) -> None:  # type: ignore[no-untyped-def]
    daemon = json.loads(host.file("/etc/docker/daemon.json").content_string)
    assert daemon["log-driver"] == "json-file"
    assert daemon["log-opts"]["max-size"] and daemon["log-opts"]["max-file"]
    assert "hosts" not in daemon
    for port in (2375, 2376):
        assert not tcp_connects(server_address, port), port


def test_only_nginx_publishes_ports(host) -> None:  # type: ignore[no-untyped-def]
    for name in ["haproxy", "redis"]:
        assert not docker_inspect(host, f"{STACK}-{name}")["HostConfig"]["PortBindings"], name
    for name in app_containers(host):
        assert not docker_inspect(host, name)["HostConfig"]["PortBindings"], name
    internal = docker_inspect(host, f"{STACK}_internal")
    assert internal["Internal"] is True


def test_redis_and_haproxy_are_not_reachable_from_outside(host, server_address) -> None:  # type: ignore[no-untyped-def]
    assert tcp_connects(server_address, 80)  # the check itself can connect
    for port in (6379, 8080, 8404):
        assert not tcp_connects(server_address, port), port
        assert host.run(f"timeout 2 bash -c 'echo > /dev/tcp/127.0.0.1/{port}'").rc != 0, port


def test_redis_requires_its_password(host) -> None:  # type: ignore[no-untyped-def]
    answer = host.run(f"docker exec {STACK}-redis redis-cli ping")
    assert "NOAUTH" in answer.stdout + answer.stderr


def test_counter_survives_a_redis_restart(host) -> None:  # type: ignore[no-untyped-def]
    before = wait_for(lambda: fetch("/counter").json()["visits"])
    host.check_output(f"docker restart {STACK}-redis")
    after = wait_for(lambda: fetch("/counter").json()["visits"])
    assert after > before


def test_no_hsts_for_a_self_signed_certificate() -> None:
    assert "Strict-Transport-Security" not in fetch("/", https=True).headers


def test_firewall_lets_in_only_ssh_and_the_web_ports(host, server_address) -> None:  # type: ignore[no-untyped-def]
    assert host.service("webstack-firewall").is_enabled
    rules = host.check_output("iptables -S WEBSTACK-INPUT").splitlines()
    assert [rule for rule in rules if "--dport" in rule] == [
        f"-A WEBSTACK-INPUT -p tcp -m tcp --dport {port} -j RETURN" for port in (22, 80, 443)
    ]
    assert rules[-1] == "-A WEBSTACK-INPUT -j DROP"
    # A listener on the host and a port Docker publishes answer inside the server, and
    # neither answers from outside: the firewall covers both paths.
    image = "webstack/app:" + host.file("/opt/webstack/releases/current").content_string.strip()
    host.check_output("setsid -f timeout 60 python3 -m http.server 9999 >/dev/null 2>&1")
    host.check_output(
        f"docker run -d --rm --name {STACK}-firewall-probe -p 9998:8000 --network {STACK}_edge"
        f" --entrypoint python3 {image} -m http.server 8000"
    )
    try:
        for port in (9999, 9998):
            wait_for(
                lambda port=port: (
                    host.run(f"timeout 2 bash -c 'echo > /dev/tcp/127.0.0.1/{port}'").rc == 0
                ),
                timeout=30,
            )
            assert not tcp_connects(server_address, port), port
        assert tcp_connects(server_address, 80)
    finally:
        host.run(f"docker rm -f {STACK}-firewall-probe")


def test_rate_limit_answers_429_beyond_the_burst() -> None:
    # The scenario sets nginx_rate_limit_per_second: 20 with a burst of 50. One keep-alive
    # connection sends 150 requests far faster than 20 a second.
    connection = http.client.HTTPConnection("127.0.0.1", HTTP_PORT, timeout=10)
    started = time.monotonic()
    statuses = []
    for _ in range(150):
        connection.request("GET", "/healthz")
        answer = connection.getresponse()
        answer.read()
        statuses.append(answer.status)
    elapsed = time.monotonic() - started
    connection.close()
    assert set(statuses) == {200, 429}, statuses
    # At most the burst (less what earlier checks used) and 20 a second pass; the rest are
    # refused at once.
    assert statuses[0] == 200 and statuses[-1] == 429, statuses
    assert statuses.count(200) <= 50 + 20 * elapsed + 2, (statuses.count(200), elapsed)
    # Let the bucket refill for whatever runs next.
    time.sleep(4)


def test_the_redis_password_is_in_no_container_environment(host) -> None:  # type: ignore[no-untyped-def]
    config = host.file("/opt/webstack/redis/redis.conf")
    assert config.mode == 0o400
    lines = config.content_string.splitlines()
    password = next(line.split()[1] for line in lines if line.startswith("requirepass"))
    assert len(password) >= 16
    for name in [f"{STACK}-{service}" for service in SERVICES] + app_containers(host):
        assert password not in json.dumps(docker_inspect(host, name)), name
    secret = host.file("/opt/webstack/secrets/app/redis_password")
    assert secret.mode == 0o400 and secret.uid == 10001


def test_the_server_was_provisioned_as_root_without_sudo(host) -> None:  # type: ignore[no-untyped-def]
    # A minimal server: root login, no sudo at all, and no become settings in the inventory.
    assert host.run("command -v sudo").rc != 0
    assert host.check_output("id -u") == "0"
    settings = "".join(path.read_text() for path in inventory().rglob("*") if path.is_file())
    assert "group_vars" in {path.name for path in inventory().iterdir()}
    assert "become" not in settings


def internal_get(host, address: str, port: int, path: str) -> str:  # type: ignore[no-untyped-def]
    """GET from the server itself, which reaches the internal network (nothing outside does)."""
    return host.check_output(
        "python3 -c 'import sys, urllib.request;"
        " print(urllib.request.urlopen(sys.argv[1], timeout=5).read().decode())'"
        f" http://{address}:{port}{path}"
    )


def test_metrics_are_on_the_internal_network_only(host, server_address) -> None:  # type: ignore[no-untyped-def]
    haproxy = docker_inspect(host, f"{STACK}-haproxy")["NetworkSettings"]["Networks"]
    haproxy_ip = haproxy[f"{STACK}_internal"]["IPAddress"]
    metrics = internal_get(host, haproxy_ip, 8405, "/metrics")
    assert "haproxy_server_status" in metrics and 'proxy="app"' in metrics
    nginx = docker_inspect(host, f"{STACK}-nginx")["NetworkSettings"]["Networks"]
    nginx_ip = nginx[f"{STACK}_internal"]["IPAddress"]
    assert "Active connections" in internal_get(host, nginx_ip, 8081, "/nginx_status")
    for port in (8405, 8081):
        assert not tcp_connects(server_address, port), port


def test_status_yml_shows_the_release_replicas_certificate_and_maintenance(host) -> None:  # type: ignore[no-untyped-def]
    code, output = finish(playbook("status.yml"))
    assert code == 0, output[-3000:]
    # The callback folds long lines of the message: compare with white space collapsed.
    shown = " ".join(output.split())
    current = host.file("/opt/webstack/releases/current").content_string.strip()
    assert f"app: serving {current} since " in shown
    for name in app_containers(host):
        replica = shown.split(f"replica {name}:", 1)[1].split(" replica ", 1)[0]
        replica = replica.split("last releases:", 1)[0]
        assert "container Up" in replica and "(healthy)" in replica, replica
        assert "HAProxy UP" in replica, replica
    assert f"provision {current}: success" in shown
    certificate = shown.split("certificate: ", 1)[1].split(" days left)", 1)[0]
    # The scenario gets its certificate from the test ACME server (test_acme.py).
    assert certificate.startswith(f"{ACME_DOMAIN} from Pebble"), certificate
    assert "maintenance: off" in shown
