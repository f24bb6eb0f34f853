"""An app that looks nothing like the sample deploys and rolls back without a failed request.

tests/apps/plain has no static/ folder, no HEALTHCHECK, listens on 5000, is healthy on /up and
ends at once on SIGTERM: the release is gated on its health path, its requests are drained by
HAProxy before it is stopped, and nothing needs files it does not have.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

from stackcheck import (
    ROOT,
    app_containers,
    assert_no_failed_request,
    docker_inspect,
    fetch,
    finish,
    haproxy_servers,
    load,
    loadprobe,
    playbook,
)

FIRST = "Plain app, first release"
SECOND = "Plain app, second release"


def plain_app(destination: Path, text: str) -> Path:
    shutil.copytree(ROOT / "tests" / "apps" / "plain", destination)
    server = destination / "server.py"
    server.write_text(server.read_text().replace(FIRST, text))
    return destination


def history(host) -> list[dict]:  # type: ignore[no-untyped-def]
    content = host.file("/opt/webstack/releases/history.jsonl").content_string
    return [json.loads(line) for line in content.splitlines()]


def test_site_yml_serves_the_plain_app_with_its_own_port_and_health_path(host) -> None:  # type: ignore[no-untyped-def]
    assert fetch("/").text == FIRST + "\n"
    containers = app_containers(host)
    assert len(containers) == 2
    # The image has no HEALTHCHECK: the gate was the health path itself.
    assert docker_inspect(host, containers[0])["Config"].get("Healthcheck") is None
    servers = haproxy_servers(host)
    assert {server["status"] for server in servers} == {"UP"}
    assert {server["addr"].rsplit(":", 1)[1] for server in servers} == {"5000"}
    # No static files in the image, and none needed.
    assert host.run("ls -A /opt/webstack/static").stdout.strip() == ""


def plain_load(tmp_path: Path):  # type: ignore[no-untyped-def]
    # The plain app has no /counter: keep-alive, fresh and slow GETs only.
    return load(tmp_path, counter_every=0, post_workers=0)


def test_a_new_release_of_the_plain_app_ships_without_a_failed_request(host, tmp_path) -> None:  # type: ignore[no-untyped-def]
    source = plain_app(tmp_path / "plain", SECOND)
    with plain_load(tmp_path) as result:
        code, output = finish(playbook("deploy.yml", "-e", f"app_source={source}"))
        deployed_at = time.time()
    assert code == 0, output[-4000:]
    assert_no_failed_request(result)
    assert loadprobe.texts_after(result, deployed_at - result["started_at"]) == {SECOND}
    assert history(host)[-1]["result"] == "success"


def test_the_plain_app_rolls_back_without_a_failed_request(host, tmp_path) -> None:  # type: ignore[no-untyped-def]
    with plain_load(tmp_path) as result:
        code, output = finish(playbook("rollback.yml"))
        rolled_at = time.time()
    assert code == 0, output[-4000:]
    assert_no_failed_request(result)
    assert loadprobe.texts_after(result, rolled_at - result["started_at"]) == {FIRST}
    assert history(host)[-1]["action"] == "rollback"
    assert len(app_containers(host)) == 2


THIRD = "Plain app, third release"


def app_container_ids(host) -> set[str]:  # type: ignore[no-untyped-def]
    return set(host.check_output("docker ps -q --filter label=webstack.service=app").split())


def test_a_failing_before_switch_refuses_the_release_with_nothing_switched(host, tmp_path) -> None:  # type: ignore[no-untyped-def]
    before = app_container_ids(host)
    source = plain_app(tmp_path / "plain", THIRD)
    failing = ["python3", "-c", "import sys; print('migration 7 of 9 failed'); sys.exit(3)"]
    code, output = finish(
        playbook(
            "deploy.yml",
            "-e",
            json.dumps({"app_source": str(source), "app_before_switch": failing}),
        )
    )
    assert code != 0, output[-4000:]
    message = " ".join(output.split("fatal:", 1)[-1].split())
    assert "before_switch" in message and "(exit 3," in message, message[:3000]
    assert "migration 7 of 9 failed" in message and "nothing was switched" in message
    # No replica of the refused release ever ran: no empty "log" of one is shown.
    assert "No replica of" in message and "'s log:" not in message, message[:3000]
    assert app_container_ids(host) == before
    assert fetch("/").text == FIRST + "\n"
    assert history(host)[-1]["result"] == "refused"
    assert not host.run(
        "docker ps -aq --filter label=webstack.service=app-before-switch"
    ).stdout.strip()


def test_a_succeeding_before_switch_runs_exactly_once_then_the_release_ships(
    host, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    source = plain_app(tmp_path / "plain", THIRD)
    # It sees what a replica sees: the release's environment and the internal network.
    step = [
        "python3",
        "-c",
        "import os, socket; print('migrated to', os.environ['APP_VERSION'],"
        " 'redis at', socket.gethostbyname('redis'))",
    ]
    since = host.check_output("date +%s")
    with plain_load(tmp_path) as result:
        code, output = finish(
            playbook(
                "deploy.yml",
                "-e",
                json.dumps({"app_source": str(source), "app_before_switch": step}),
            )
        )
        deployed_at = time.time()
    assert code == 0, output[-4000:]
    assert_no_failed_request(result)
    assert loadprobe.texts_after(result, deployed_at - result["started_at"]) == {THIRD}
    summary = " ".join(output.split("Summarise the release", 2)[-1].split())
    assert "before_switch: exit 0 in" in summary and "migrated to" in summary, summary[:2000]
    assert "redis at 1" in summary, summary[:2000]
    until = host.check_output("date +%s")
    starts = host.check_output(
        f"docker events --since {since} --until {until} --filter event=start"
        " --filter label=webstack.service=app-before-switch --format '{{.ID}}'"
    ).split()
    assert len(starts) == 1, starts
    assert not host.run(
        "docker ps -aq --filter label=webstack.service=app-before-switch"
    ).stdout.strip()
