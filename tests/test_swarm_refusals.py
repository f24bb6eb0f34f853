"""A swarm inventory that cannot make a sound swarm is refused before any server is contacted.

Each case runs the real site.yml against hosts whose SSH port is closed: validation runs
without a connection, so a refusal is a failed task, nothing changed and no host unreachable.
The control case proves the hosts would be contacted next.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from test_refusals import recap, run_playbook

CLOSED = {
    "ansible_host": "127.0.0.1",
    "ansible_port": 1,
    "ansible_ssh_common_args": "-o ConnectTimeout=3",
}


def swarm(
    managers: dict[str, list[str]], workers: dict[str, list[str]], web: tuple[str, ...] = ()
) -> dict[str, object]:
    """An inventory: each host with its swarm_node_roles, in the groups given."""

    def hosts(roles_of: dict[str, list[str]]) -> dict[str, object]:
        return {name: {**CLOSED, "swarm_node_roles": roles} for name, roles in roles_of.items()}

    groups: dict[str, object] = {
        "swarm_managers": {"hosts": hosts(managers)},
        "swarm_workers": {"hosts": hosts(workers)},
    }
    if web:
        groups["web"] = {"hosts": {name: CLOSED for name in web}}
    return {"all": {"children": groups}}


SOUND = swarm({"m1": ["edge", "data"]}, {"w1": ["app"], "w2": ["app"]})


def run(
    tmp_path: Path, layout: dict[str, object], extra_vars: dict[str, object] | None = None
) -> tuple[str, dict[str, dict[str, int]]]:
    path = tmp_path / "hosts.yml"
    path.write_text(yaml.safe_dump(layout))
    hosts = [
        name
        for group in layout["all"]["children"].values()  # type: ignore[index]
        for name in group["hosts"]
    ]
    result = run_playbook(path, extra_vars or {})
    assert result.returncode != 0, result.stdout
    return result.stdout, {name: recap(result.stdout, name) for name in set(hosts)}


def test_a_sound_swarm_passes_validation_and_reaches_its_servers(tmp_path: Path) -> None:
    output, counts = run(tmp_path, SOUND)
    for name, count in counts.items():
        assert count["unreachable"] == 1 and count["failed"] == 0, (name, output)


@pytest.mark.parametrize(
    ("layout", "says"),
    [
        (
            swarm({}, {"w1": ["edge", "data"], "w2": ["app"]}),
            ["group swarm_managers has no host", "w1, w2"],
        ),
        (
            swarm({"m1": ["edge", "data"], "m2": ["app"]}, {"w1": ["app"]}),
            ["swarm_managers has 2 hosts (m1, m2)", "odd number"],
        ),
        (
            swarm({"m1": ["edge"]}, {"w1": ["app"], "w2": ["app"]}),
            ["No host of swarm_managers or swarm_workers has data"],
        ),
        (
            swarm({"m1": ["edge", "data"]}, {"w1": ["app", "data"]}),
            ["Hosts m1, w1 all have data"],
        ),
        (
            swarm({"m1": ["app", "data"]}, {"w1": ["app"]}),
            ["has edge in swarm_node_roles"],
        ),
        (
            swarm({"m1": ["edge", "data"]}, {"w1": ["edge"]}),
            ["has app in swarm_node_roles"],
        ),
        (
            swarm({"m1": ["edge", "data"]}, {"m1": ["edge", "data"], "w1": ["app"]}),
            ["host m1 is in the groups swarm_managers and swarm_workers"],
        ),
        (
            swarm({"m1": ["edge", "data"]}, {"w1": ["app"]}, web=("w1",)),
            ["host w1 is in the groups", "web"],
        ),
        (swarm({"m1": ["edge", "data"]}, {"w1": ["app", "app"]}), ["w1 lists a role twice"]),
        (swarm({"m1": ["edge", "data"]}, {"w1": ["app", "db"]}), ["swarm_node_roles", "db"]),
    ],
    ids=[
        "no-manager",
        "even-managers",
        "no-data-node",
        "two-data-nodes",
        "no-edge-node",
        "no-app-node",
        "manager-and-worker",
        "web-and-swarm",
        "role-twice",
        "unknown-role",
    ],
)
def test_an_unsound_swarm_is_refused_before_any_server_is_contacted(
    tmp_path: Path, layout: dict[str, object], says: list[str]
) -> None:
    output, counts = run(tmp_path, layout)
    for name, count in counts.items():
        assert count["changed"] == 0 and count["unreachable"] == 0, (name, output)
    assert sum(count["failed"] for count in counts.values()) >= 1, output
    failure = output.split("fatal:", 1)[-1]
    for text in says:
        assert text in " ".join(failure.split()), output


def test_the_refusal_lists_every_problem_of_the_swarm_at_once(tmp_path: Path) -> None:
    output, _ = run(tmp_path, swarm({"m1": ["app"], "m2": ["app"]}, {}))
    failure = " ".join(output.split("fatal:", 1)[-1].split())
    for text in ("has 2 hosts", "has edge", "has data"):
        assert text in failure, output


def test_a_before_switch_step_is_refused_on_a_swarm(tmp_path: Path) -> None:
    output, counts = run(tmp_path, SOUND, {"app_before_switch": ["python3", "migrate.py"]})
    for name, count in counts.items():
        assert count["changed"] == 0 and count["unreachable"] == 0, (name, output)
    assert "before_switch is not supported on a swarm yet (services app)" in output


def test_a_sound_swarm_with_a_registry_passes_validation(tmp_path: Path) -> None:
    settings = {
        "release_registry": "registry.example.com:5000/team",
        "release_registry_username": "deployer",
        "release_registry_password": "secret",
    }
    output, counts = run(tmp_path, SOUND, settings)
    for name, count in counts.items():
        assert count["unreachable"] == 1 and count["failed"] == 0, (name, output)


@pytest.mark.parametrize(
    ("settings", "says"),
    [
        ({"release_registry": "https://registry.example.com"}, "must be host[:port][/path]"),
        ({"release_registry": "Registry.example.com"}, "must be host[:port][/path]"),
        ({"release_registry": "registry.example.com/team:v1"}, "must be host[:port][/path]"),
        ({"release_registry": "registry.example.com/"}, "must be host[:port][/path]"),
        (
            {"release_registry": "registry.example.com", "release_registry_username": "deployer"},
            "release_registry_username and release_registry_password go together",
        ),
        (
            {"release_registry_username": "deployer", "release_registry_password": "secret"},
            "release_registry_username is set but release_registry is empty",
        ),
    ],
    ids=["scheme", "uppercase", "tag", "trailing-slash", "no-password", "no-registry"],
)
def test_a_registry_setting_that_cannot_work_is_refused(
    tmp_path: Path, settings: dict[str, object], says: str
) -> None:
    output, counts = run(tmp_path, SOUND, settings)
    for name, count in counts.items():
        assert count["changed"] == 0 and count["unreachable"] == 0, (name, output)
    assert says in " ".join(output.split("fatal:", 1)[-1].split()), output
    assert "secret" not in output
