"""haproxy.cfg for several services: one backend each, routed by host, path prefix or `/`.

Rendered by Ansible from the role's template, checked by the haproxy binary of the stack's
image (haproxy -c), and run: requests sent to it land in the backend their route names, as
HAProxy's own log says.
"""

from __future__ import annotations

import re
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from conftest import Render

Docker = Callable[..., subprocess.CompletedProcess[str]]


def backend(name: str, route: str | None, port: int, health: str, *hosts: str) -> dict:
    item: dict[str, object] = {
        "name": name,
        "port": port,
        "health_path": health,
        "servers": [{"name": f"v1-{n}", "host": host} for n, host in enumerate(hosts, 1)],
    }
    if route is not None:
        item["route"] = route
    return item


# The shorter prefix comes first, so only the template can put /api/v2/ before it.
SERVICES = [
    backend("app", "/", 8000, "/healthz", "webstack-app-v1-1", "webstack-app-v1-2"),
    backend("api", "/api/", 9000, "/ping", "webstack-api-v1-1"),
    backend("apiv2", "/api/v2/", 9001, "/v2/up"),
    backend("admin", "admin.example.com", 8001, "/alive", "webstack-admin-v1-1"),
    backend("batch", "", 8002, "/healthz", "webstack-batch-v1-1"),
]
NO_ROOT = [b for b in SERVICES if b["route"] != "/"]
# On a swarm's edge: the servers are the tasks Docker's DNS names.
SWARM = [
    {**backend("app", "/", 8000, "/healthz"), "discover": "tasks.webstack-app", "slots": 6},
    {**backend("api", "/api/", 7000, "/ping"), "discover": "tasks.webstack-api", "slots": 4},
]


def sections(config: str) -> dict[str, list[str]]:
    """Each section ("frontend http", "backend app", ...) with its lines, comments left out."""
    found: dict[str, list[str]] = {}
    current: list[str] = []
    for line in config.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if not line.startswith(" "):
            current = found.setdefault(line.strip(), [])
        else:
            current.append(line.strip())
    return found


def render_haproxy(render: Render, variables: dict[str, object]) -> Path:
    """haproxy.cfg and the 503 page it names, in a directory laid out as HAProxy reads it."""
    render("haproxy", "503.http.j2", dest="errors/503.http", newline_sequence="\r\n")
    return render("haproxy", "haproxy.cfg.j2", variables).parent


@pytest.fixture
def multi(render: Render) -> Path:
    return render_haproxy(render, {"haproxy_backends": SERVICES})


@pytest.fixture
def no_root(render: Render) -> Path:
    return render_haproxy(render, {"haproxy_backends": NO_ROOT})


@pytest.fixture
def swarm(render: Render) -> Path:
    return render_haproxy(render, {"haproxy_backends": SWARM})


def test_on_a_swarm_each_backend_follows_its_tasks_through_dockers_dns(swarm: Path) -> None:
    found = sections((swarm / "haproxy.cfg").read_text())
    assert "nameserver docker 127.0.0.11:53" in found["resolvers docker"]
    # A name gone from the answer takes its server out at once.
    assert "hold obsolete 0s" in found["resolvers docker"]
    templates = [line for line in found["backend app"] if line.startswith("server-template")]
    assert templates == [
        "server-template app- 6 tasks.webstack-app:8000 resolvers docker resolve-prefer ipv4"
        " init-addr none"
    ]
    assert not [line for line in found["backend app"] if line.startswith("server ")]
    # A slot's pooled connections to a task gone from it are never shared (with a POST).
    assert "http-reuse never" in found["backend app"]


def test_one_server_has_no_resolvers(multi: Path) -> None:
    assert "resolvers docker" not in sections((multi / "haproxy.cfg").read_text())
    # Servers leave through the Runtime API (drained, then deleted with their connections):
    # pooled connections are shared as by default.
    assert "http-reuse" not in (multi / "haproxy.cfg").read_text()


def test_frontend_tries_hosts_then_prefixes_longest_first_then_the_root(multi: Path) -> None:
    frontend = sections((multi / "haproxy.cfg").read_text())["frontend http"]
    assert [line for line in frontend if not line.startswith("bind")] == [
        "use_backend admin if { hdr(host),field(1,:) -i admin.example.com }",
        "use_backend apiv2 if { path_beg /api/v2/ }",
        "use_backend api if { path_beg /api/ }",
        "default_backend app",
    ]


def test_each_service_has_its_backend_with_its_health_path_and_servers(multi: Path) -> None:
    found = sections((multi / "haproxy.cfg").read_text())
    for service in SERVICES:
        lines = found[f"backend {service['name']}"]
        assert (
            f"http-check send meth GET uri {service['health_path']} ver HTTP/1.1 hdr Host localhost"
            in lines
        )
        assert [line for line in lines if line.startswith("server ")] == [
            f"server {s['name']} {s['host']}:{service['port']}" for s in service["servers"]
        ]
        assert lines[0] == "balance roundrobin"
        for expected in (
            "option httpchk",
            "http-check expect status 200",
            "retry-on conn-failure empty-response response-timeout",
            "http-request disable-l7-retry unless METH_GET || METH_HEAD || METH_OPTIONS",
            "default-server check inter 500ms fastinter 250ms rise 2 fall 3 weight 100"
            " init-addr libc,none",
        ):
            assert expected in lines, (service["name"], expected)
    # A route `/` exists: no 404 backend.
    assert "backend webstack_no_route" not in found


def test_without_a_root_route_what_matches_nothing_gets_a_404(no_root: Path) -> None:
    found = sections((no_root / "haproxy.cfg").read_text())
    assert found["frontend http"][-1] == "default_backend webstack_no_route"
    assert found["backend webstack_no_route"] == [
        "http-request return status 404 content-type text/plain"
        ' string "No service at this address\\n"'
    ]


def test_the_one_backend_settings_still_make_the_config_unchanged(render: Render) -> None:
    # No haproxy_backends and no release_backends: today's one backend, at route `/`.
    directory = render_haproxy(
        render,
        {
            "app_backend_servers": [{"name": "abc-1", "host": "webstack-app-abc-1"}],
            "app_port": 8123,
            "app_health_path": "/up",
        },
    )
    found = sections((directory / "haproxy.cfg").read_text())
    assert [line for line in found["frontend http"] if not line.startswith("bind")] == [
        "default_backend app"
    ]
    assert [name for name in found if name.startswith("backend")] == ["backend app"]
    assert "server abc-1 webstack-app-abc-1:8123" in found["backend app"]
    assert (
        "http-check send meth GET uri /up ver HTTP/1.1 hdr Host localhost" in found["backend app"]
    )


def test_release_backends_are_the_default(render: Render) -> None:
    directory = render_haproxy(render, {"release_backends": NO_ROOT})
    found = sections((directory / "haproxy.cfg").read_text())
    assert found["frontend http"][-1] == "default_backend webstack_no_route"
    assert "backend app" not in found


# Warnings haproxy -c gives for any configuration of the stack checked without its network:
# the metrics frontend logs nowhere, and the servers' containers do not exist here.
KNOWN_WARNING = re.compile(
    r"log format ignored for frontend 'metrics'|could not resolve address 'webstack-"
)


@pytest.mark.parametrize("case", ["multi", "no_root", "swarm"])
def test_haproxy_accepts_the_configuration(
    case: str, request: pytest.FixtureRequest, haproxy_image: str, docker: Docker
) -> None:
    directory: Path = request.getfixturevalue(case)
    result = docker(
        "run", "--rm", "--network", "none",
        "--volume", f"{directory}:/usr/local/etc/haproxy:ro",
        haproxy_image, "haproxy", "-c", "-f", "/usr/local/etc/haproxy/haproxy.cfg",
    )  # fmt: skip
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "Configuration file is valid" in output
    warnings = [line for line in output.splitlines() if "WARNING" in line or "ALERT" in line]
    assert [w for w in warnings if not KNOWN_WARNING.search(w)] == [], output


@pytest.fixture
def running(docker: Docker, haproxy_image: str) -> Iterator[Callable[[Path], str]]:
    """Starts HAProxy on a rendered directory, with no network; gives the container id."""
    started: list[str] = []

    def _start(directory: Path) -> str:
        result = docker(
            "run", "--detach", "--network", "none",
            "--volume", f"{directory}:/usr/local/etc/haproxy:ro", haproxy_image,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        started.append(result.stdout.strip())
        return started[-1]

    yield _start
    for container in started:
        docker("rm", "--force", container)


def ask(docker: Docker, container: str, path: str, host: str = "www.example.com") -> str:
    """One HTTP/1.0 request to HAProxy's frontend from inside its container (bash's /dev/tcp);
    the answer with its line ends as \\n."""
    script = (
        'exec 3<>/dev/tcp/127.0.0.1/8080 && printf "GET %s HTTP/1.0\\r\\nHost: %s\\r\\n\\r\\n"'
        ' "$1" "$2" >&3 && cat <&3'
    )
    deadline = time.monotonic() + 15
    while True:
        result = docker("exec", container, "bash", "-c", script, "ask", path, host)
        if result.returncode == 0 or time.monotonic() > deadline:
            assert result.returncode == 0, result.stderr
            return result.stdout
        time.sleep(0.2)


def backends_by_path(docker: Docker, container: str, count: int) -> dict[str, str]:
    """The backend HAProxy's log names for each request path (waits for count lines)."""
    line = re.compile(r'\] http (\S+)/\S+ .*"GET (\S+) HTTP/1\.0"')
    deadline = time.monotonic() + 10
    while True:
        logs = docker("logs", container)
        found = dict((m.group(2), m.group(1)) for m in line.finditer(logs.stdout + logs.stderr))
        if len(found) >= count or time.monotonic() > deadline:
            return found
        time.sleep(0.2)


def test_requests_reach_the_backend_of_their_route(
    multi: Path, running: Callable[[Path], str], docker: Docker
) -> None:
    container = running(multi)
    asked = {
        # The host route wins over a path prefix; its port and case do not matter.
        "/api/by-host": ("ADMIN.Example.com:8443", "admin"),
        "/api/v2/x": ("www.example.com", "apiv2"),
        "/api/v2": ("www.example.com", "api"),
        "/api/x": ("www.example.com", "api"),
        "/apix": ("www.example.com", "app"),
        "/": ("admin.example.org", "app"),
    }
    for path, (host, _) in asked.items():
        # No server of any backend exists here: HAProxy's own 503 page, from the backend.
        assert re.match(r"HTTP/1\.[01] 503 ", ask(docker, container, path, host))
    assert backends_by_path(docker, container, len(asked)) == {
        path: name for path, (_, name) in asked.items()
    }


def test_without_a_root_route_haproxy_answers_404_itself(
    no_root: Path, running: Callable[[Path], str], docker: Docker
) -> None:
    container = running(no_root)
    answer = ask(docker, container, "/elsewhere")
    assert re.match(r"HTTP/1\.[01] 404 ", answer), answer
    assert answer.endswith("\n\nNo service at this address\n")
    assert re.match(r"HTTP/1\.[01] 503 ", ask(docker, container, "/api/x"))
    assert backends_by_path(docker, container, 2) == {
        "/elsewhere": "webstack_no_route",
        "/api/x": "api",
    }
