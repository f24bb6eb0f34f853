"""Bad input is refused before anything changes.

Each case runs the real site.yml against a host whose SSH port is closed: validation runs
without a connection, so a refusal shows up as a failed task with no change and no
connection attempt. The control case proves the host would be contacted next.

The cases of bad input share one run of site.yml: each is a host of its own with the bad
setting as a host variable (where an inventory sets it), beside a control host with none.
Ansible checks each host on its own, so each case fails alone, the control host goes on to
its connection, and one run of the playbook costs a fiftieth of fifty.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import NamedTuple

import pytest

ROOT = Path(__file__).resolve().parents[1]
PLAYBOOK_BIN = Path(sys.executable).parent / "ansible-playbook"
# Settings that turn ACME on, for the cases that need it on.
ACME = {"nginx_acme_domains": ["www.example.com"]}


def backend(name: str, route: str, **changes: object) -> dict[str, object]:
    """An item of haproxy_backends, with changes."""
    item = {"name": name, "port": 8000, "health_path": "/healthz", "route": route, "servers": []}
    return {**item, **changes}


def static(url: str, directory: str) -> dict[str, list[dict[str, str]]]:
    return {"nginx_static_locations": [{"url": url, "dir": directory}]}


# Port 1 on loopback: nothing listens, so any real connection fails at once.
CLOSED = {
    "ansible_host": "127.0.0.1",
    "ansible_port": 1,
    "ansible_ssh_common_args": "-o ConnectTimeout=3",
}


@pytest.fixture(scope="module")
def inventory(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("inventory") / "hosts.yml"
    path.write_text(json.dumps({"web": {"hosts": {"closed-server": CLOSED}}}))
    return path


def run_playbook(
    inventory: Path,
    extra_vars: dict[str, object],
    playbook: str = "site.yml",
    result_format: str = "yaml",
    strategy: str | None = None,
) -> subprocess.CompletedProcess[str]:
    env = dict(
        os.environ,
        ANSIBLE_FORCE_COLOR="0",
        ANSIBLE_NOCOLOR="1",
        ANSIBLE_CALLBACK_RESULT_FORMAT=result_format,
    )
    if strategy:
        env["ANSIBLE_STRATEGY"] = strategy
    return subprocess.run(
        [str(PLAYBOOK_BIN), "-i", str(inventory), playbook, "-e", json.dumps(extra_vars)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


def recap(output: str, host: str = "closed-server") -> dict[str, int]:
    match = re.search(rf"^{re.escape(host)}\s*:\s*(.*)", output.split("PLAY RECAP")[-1], re.M)
    assert match, output
    return {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", match.group(1))}


# Each case: the settings an inventory gives, and the name the refusal must show.
BAD_INPUT: list[tuple[dict[str, object], str]] = [
    ({"app_replicas": 0}, "app_replicas"),
    ({"app_replicas": "two"}, "app_replicas"),
    ({"haproxy_balance": "fastest"}, "haproxy_balance"),
    ({"haproxy_balance": "roundrobin; stats enable"}, "haproxy_balance"),
    ({"nginx_http_port": 70000}, "nginx_http_port"),
    ({"nginx_https_port": 0}, "nginx_https_port"),
    ({"app_port": 65536}, "app_port"),
    ({"haproxy_port": -1}, "haproxy_port"),
    ({"app_version": "bad/tag"}, "app_version"),
    ({"app_version": "-leading-dash"}, "app_version"),
    ({"redis_appendfsync": "sometimes"}, "redis_appendfsync"),
    ({"docker_install_from": "snap"}, "docker_install_from"),
    ({"webstack_name": "Has Spaces"}, "webstack_name"),
    ({"nginx_tls_certificate": "/nonexistent/cert.pem"}, "nginx_tls_certificate"),
    ({"docker_preload_images": ["/nonexistent/image.tar"]}, "docker_preload_images"),
    ({"firewall_allowed_tcp_ports": [22, 70000]}, "firewall_allowed_tcp_ports"),
    ({"nginx_rate_limit_per_second": -5}, "nginx_rate_limit_per_second"),
    ({"app_keep_releases": 0}, "app_keep_releases"),
    ({"healer_pause_max_minutes": 0}, "healer_pause_max_minutes"),
    ({"app_before_switch": {"run": "migrate"}}, "app_before_switch"),
    ({"nginx_upstream_keepalive_timeout": "90s"}, "nginx_upstream_keepalive_timeout"),
    ({"nginx_upstream_keepalive_timeout": "soon"}, "nginx_upstream_keepalive_timeout"),
    ({"app_before_switch": ["manage.py", 7]}, "app_before_switch"),
    ({"nginx_acme_domains": ["not a host"]}, "nginx_acme_domains"),
    ({"nginx_acme_domains": ["*.example.com"]}, "nginx_acme_domains"),
    ({"nginx_acme_domains": ["https://www.example.com"]}, "nginx_acme_domains"),
    ({"nginx_acme_domains": ["192.0.2.10"]}, "nginx_acme_domains"),
    ({"nginx_acme_domains": ["example"]}, "nginx_acme_domains"),
    ({**ACME, "nginx_acme_directory": "http://acme.example.com/dir"}, "nginx_acme_directory"),
    ({**ACME, "nginx_acme_directory": "acme.example.com"}, "nginx_acme_directory"),
    ({**ACME, "nginx_acme_renew_days": 0}, "nginx_acme_renew_days"),
    ({**ACME, "nginx_acme_email": "nobody"}, "nginx_acme_email"),
    ({"release_guard_max_error_ratio": 1.5}, "release_guard_max_error_ratio"),
    ({"release_guard_max_error_ratio": -0.01}, "release_guard_max_error_ratio"),
    ({"release_guard_max_error_ratio": "five percent"}, "release_guard_max_error_ratio"),
    ({"release_guard_seconds": -30}, "release_guard_seconds"),
    ({"release_guard_min_requests": -1}, "release_guard_min_requests"),
    ({"release_registry": "registry.example.com/team"}, "release_registry is for a swarm"),
    ({"haproxy_backends": [backend("a", "/api/"), backend("b", "/api/")]}, "haproxy_backends"),
    (
        {"haproxy_backends": [backend("a", "a.example.com"), backend("b", "A.example.com")]},
        "haproxy_backends",
    ),
    ({"haproxy_backends": [backend("a", "/api")]}, "haproxy_backends"),
    ({"haproxy_backends": [backend("a", "/"), backend("a", "/api/")]}, "haproxy_backends"),
    ({"haproxy_backends": [backend("webstack_no_route", "/api/")]}, "haproxy_backends"),
    ({"haproxy_backends": [backend("a b", "/")]}, "haproxy_backends"),
    ({"haproxy_backends": [backend("a", "/", port=70000)]}, "haproxy_backends"),
    ({"haproxy_backends": [backend("a", "/", health_path="healthz")]}, "haproxy_backends"),
    (
        {"haproxy_backends": [backend("a", "/", servers=[{"name": "x", "host": "y"}] * 2)]},
        "haproxy_backends",
    ),
    ({"haproxy_backends": [backend("a", "/", weight=3)]}, "haproxy_backends"),
    ({"haproxy_backends": [backend("a", "/", discover="tasks.a b")]}, "haproxy_backends"),
    (
        {"haproxy_backends": [backend("a", "/", discover="tasks.a", slots=0)]},
        "haproxy_backends",
    ),
    (static("/static", "/opt/webstack/static"), "nginx_static_locations"),
    (static("static/", "/opt/webstack/static"), "nginx_static_locations"),
    (static("/", "/opt/webstack/static"), "nginx_static_locations"),
    (static("/x/", "/etc"), "nginx_static_locations"),
    (static("/x/", "/opt/webstack/services/../../etc"), "nginx_static_locations"),
    (static("/x/", "/opt/webstack/static-other"), "nginx_static_locations"),
    ({"nginx_static_locations": [{"url": "/x/"}]}, "nginx_static_locations"),
]


SEVERAL_SERVICES = {
    "haproxy_backends": [
        backend("app", "/", servers=[{"name": "v1-1", "host": "webstack-app-v1-1"}]),
        backend("api", "/api/", port=9000, health_path="/ping"),
        backend("apiv2", "/api/v2/"),
        backend("admin", "admin.example.com"),
        backend("batch", ""),
    ],
    "nginx_static_locations": [
        {"url": "/static/", "dir": "/opt/webstack/static"},
        {"url": "/api/static/", "dir": "/opt/webstack/services/api/static/"},
    ],
}
GOOD_ACME = {
    **ACME,
    "nginx_acme_email": "ops@example.com",
    "nginx_acme_directory": "https://acme.test:14000/dir",
}


class Outcome(NamedTuple):
    counts: dict[str, int]
    # Every "fatal:" and "failed:" line of the host (the result format is JSON: one line each).
    failures: str


@pytest.fixture(scope="module")
def bad_input_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Outcome]:
    """One site.yml run: a host per case of BAD_INPUT, a control host, and the hosts of the
    tests below that check other settings by a run of site.yml."""
    hosts: dict[str, object] = {
        f"case-{index}": {**CLOSED, **settings} for index, (settings, _) in enumerate(BAD_INPUT)
    }
    base = tmp_path_factory.mktemp("bad-input")
    no_dockerfile = base / "no-dockerfile"
    no_dockerfile.mkdir()
    (no_dockerfile / "app.py").write_text("print('no Dockerfile here')\n")
    hosts.update(
        {
            "control": CLOSED,
            "several-services": {**CLOSED, **SEVERAL_SERVICES},
            "good-acme": {**CLOSED, **GOOD_ACME},
            "no-dockerfile": {**CLOSED, "app_source": str(no_dockerfile)},
            "missing-page": {**CLOSED, "nginx_maintenance_page": str(base / "missing.html")},
        }
    )
    path = base / "hosts.yml"
    path.write_text(json.dumps({"web": {"hosts": hosts}}))
    # Ansible's own strategy: the checks are the same under Mitogen's (ansible.cfg), which the
    # scenarios run, but over some 50 hosts it took 64 s here against 30 s.
    result = run_playbook(path, {}, result_format="json", strategy="linear")
    assert result.returncode != 0, result.stdout
    lines = result.stdout.splitlines()

    def failures(name: str) -> str:
        # "fatal: [case-3]: ..." or, for a check the controller runs, "[case-3 -> localhost]".
        mine = re.compile(rf"^(fatal|failed): \[{re.escape(name)}( -> [^]]+)?\]")
        return "\n".join(line for line in lines if mine.match(line))

    return {name: Outcome(recap(result.stdout, name), failures(name)) for name in hosts}


def test_valid_input_passes_validation_and_reaches_the_server(
    bad_input_run: dict[str, Outcome],
) -> None:
    counts, failures = bad_input_run["control"]
    assert counts["unreachable"] == 1 and counts["failed"] == 0, (counts, failures)


@pytest.mark.parametrize("host", ["several-services", "good-acme"])
def test_sound_settings_pass_validation(bad_input_run: dict[str, Outcome], host: str) -> None:
    counts, failures = bad_input_run[host]
    assert counts["unreachable"] == 1 and counts["failed"] == 0, (counts, failures)


def test_app_source_without_dockerfile_is_refused(bad_input_run: dict[str, Outcome]) -> None:
    counts, failures = bad_input_run["no-dockerfile"]
    assert counts["failed"] == 1 and counts["unreachable"] == 0, (counts, failures)
    assert "app_source" in failures and "Dockerfile" in failures, failures


def test_a_maintenance_page_that_does_not_exist_is_refused(
    bad_input_run: dict[str, Outcome],
) -> None:
    counts, failures = bad_input_run["missing-page"]
    assert counts["failed"] == 1 and counts["unreachable"] == 0, (counts, failures)
    assert "nginx_maintenance_page" in failures, failures


@pytest.mark.parametrize("case", range(len(BAD_INPUT)), ids=lambda case: BAD_INPUT[case][1])
def test_bad_input_is_refused_before_any_change(
    bad_input_run: dict[str, Outcome], case: int
) -> None:
    settings, named = BAD_INPUT[case]
    counts, failures = bad_input_run[f"case-{case}"]
    assert counts == {**counts, "failed": 1, "changed": 0, "unreachable": 0}, (settings, counts)
    assert named in failures, (settings, failures)


@pytest.mark.parametrize("playbook", ["deploy.yml", "rollback.yml"])
def test_a_guard_ratio_outside_0_to_1_is_refused_before_a_release(
    inventory: Path, playbook: str
) -> None:
    result = run_playbook(inventory, {"release_guard_max_error_ratio": 5}, playbook=playbook)
    assert result.returncode != 0
    counts = recap(result.stdout)
    assert counts == {**counts, "failed": 1, "changed": 0, "unreachable": 0}, result.stdout
    failure = result.stdout.split("fatal:", 1)[-1]
    assert "release_guard_max_error_ratio must be a share between 0 and 1" in failure


def test_deploy_to_a_server_never_provisioned_is_refused(tmp_path: Path) -> None:
    # This machine stands in for a fresh server: no release and no Runtime API socket under
    # tmp_path. The check only reads, so nothing here can change.
    inventory = tmp_path / "hosts.yml"
    inventory.write_text(
        "web:\n  hosts:\n    fresh-server:\n"
        "      ansible_connection: local\n      ansible_become: false\n"
        f"      ansible_python_interpreter: {sys.executable}\n"
        f"      webstack_base_dir: {tmp_path}/webstack\n"
    )
    result = run_playbook(inventory, {}, playbook="deploy.yml")
    assert result.returncode != 0
    counts = recap(result.stdout, host="fresh-server")
    assert counts["failed"] == 1 and counts["changed"] == 0, result.stdout
    assert "fresh-server was never provisioned" in result.stdout
    assert "run site.yml against it first" in result.stdout
    assert not (tmp_path / "webstack").exists()


@pytest.mark.parametrize("value", ["sideways", "", 2])
def test_a_maintenance_switch_other_than_on_or_off_is_refused(
    inventory: Path, value: object
) -> None:
    result = run_playbook(inventory, {"maintenance": value}, playbook="maintenance.yml")
    assert result.returncode != 0
    counts = recap(result.stdout)
    assert counts["failed"] == 1 and counts["unreachable"] == 0, result.stdout
    assert "maintenance must be on or off" in result.stdout.split("fatal:", 1)[-1]


@pytest.mark.parametrize(
    ("settings", "named"),
    [
        ({"webstack_name": "Has Spaces"}, "webstack_name"),
        ({"release_guard_seconds": -30}, "release_guard_seconds"),
    ],
)
def test_the_release_role_used_without_the_preflight_checks_its_inputs_itself(
    inventory: Path, tmp_path: Path, settings: dict[str, object], named: str
) -> None:
    # Our playbooks check every input in playbooks/preflight.yml, and the role then skips its
    # own checks (release_inputs_checked). A playbook of someone else's has no preflight.
    playbook = tmp_path / "own.yml"
    playbook.write_text(
        json.dumps(
            [
                {
                    "name": "Deploy with the release role alone",
                    "hosts": "web",
                    "gather_facts": False,
                    "roles": [{"role": "release", "release_action": "deploy"}],
                }
            ]
        )
    )
    result = run_playbook(inventory, settings, playbook=str(playbook))
    counts = recap(result.stdout)
    assert counts["failed"] == 1 and counts["unreachable"] == 0, result.stdout
    assert named in result.stdout.split("fatal:", 1)[-1], result.stdout
