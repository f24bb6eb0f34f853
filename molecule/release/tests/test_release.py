"""Releases under load: every request through NGINX is counted, none may fail.

The tests run in file order against one provisioned server: a deploy of a changed app, a
broken release that is refused, a rollback, two deploys at once, and a stale lock.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest
from stackcheck import (
    NEW_TEXT,
    OLD_TEXT,
    app_containers,
    assert_no_failed_request,
    changed_app,
    fetch,
    finish,
    load,
    loadprobe,
    playbook,
)

HISTORY = "/opt/webstack/releases/history.jsonl"


def history(host) -> list[dict]:  # type: ignore[no-untyped-def]
    return [json.loads(line) for line in host.file(HISTORY).content_string.splitlines()]


def running_versions(host) -> set[str]:  # type: ignore[no-untyped-def]
    return {name.rsplit("-", 2)[-2] for name in app_containers(host)}


@pytest.fixture(scope="module")
def apps(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The changed app, and a broken one whose server never starts."""
    base = tmp_path_factory.mktemp("apps")
    changed = changed_app(base / "changed")
    broken = base / "broken"
    shutil.copytree(changed, broken)
    gunicorn = broken / "gunicorn.conf.py"
    # A release that cannot boot: its WSGI module does not exist.
    dockerfile = broken / "Dockerfile"
    dockerfile.write_text(dockerfile.read_text().replace("webapp.wsgi:app", "webapp.missing:app"))
    assert "webapp.missing:app" in dockerfile.read_text() and gunicorn.exists()
    return {"changed": changed, "broken": broken}


def test_deploy_ships_the_changed_app_without_a_failed_request(host, apps, tmp_path) -> None:  # type: ignore[no-untyped-def]
    before = running_versions(host)
    with load(tmp_path) as result:
        code, output = finish(playbook("deploy.yml", "-e", f"app_source={apps['changed']}"))
        deployed_at = time.time()
    assert code == 0, output[-4000:]
    assert_no_failed_request(result)
    after_offset = deployed_at - result["started_at"]
    assert loadprobe.texts_after(result, after_offset) == {NEW_TEXT}
    assert fetch("/").text == NEW_TEXT + "\n"
    after = running_versions(host)
    assert len(after) == 1 and after.isdisjoint(before)
    assert len(app_containers(host)) == 2
    last = history(host)[-1]
    assert last["action"] == "deploy" and last["result"] == "success"
    assert last["version"] in after
    assert f"-> {last['version']}: done in" in output


def test_a_broken_release_is_refused_and_the_old_one_keeps_serving(  # type: ignore[no-untyped-def]
    host, apps, tmp_path
) -> None:
    serving = running_versions(host)
    with load(tmp_path) as result:
        code, output = finish(
            playbook(
                "deploy.yml",
                "-e",
                f"app_source={apps['broken']}",
                "-e",
                "app_health_timeout_seconds=40",
            )
        )
    assert code != 0
    assert "was refused" in output and "keeps serving" in output
    # The tail of the new container's log explains why.
    assert "webapp.missing" in output or "ModuleNotFoundError" in output, output[-4000:]
    assert_no_failed_request(result)
    assert loadprobe.texts_after(result, 0) == {NEW_TEXT}
    assert running_versions(host) == serving
    assert history(host)[-1]["result"] == "refused"


def test_rollback_returns_to_the_previous_release(host, tmp_path) -> None:  # type: ignore[no-untyped-def]
    with load(tmp_path) as result:
        code, output = finish(playbook("rollback.yml"))
        rolled_at = time.time()
    assert code == 0, output[-4000:]
    assert_no_failed_request(result)
    assert loadprobe.texts_after(result, rolled_at - result["started_at"]) == {OLD_TEXT}
    assert history(host)[-1]["action"] == "rollback"
    assert len(app_containers(host)) == 2


def test_two_deploys_at_once_one_is_refused_by_the_lock(host, apps, tmp_path) -> None:  # type: ignore[no-untyped-def]
    with load(tmp_path) as result:
        first = playbook("deploy.yml", "-e", f"app_source={apps['changed']}")
        second = playbook("deploy.yml", "-e", f"app_source={apps['changed']}")
        outcomes = [finish(first), finish(second)]
    codes = sorted(code for code, _ in outcomes)
    assert codes[0] == 0 and codes[1] != 0, [output[-2000:] for _, output in outcomes]
    refused = next(output for code, output in outcomes if code != 0)
    assert "Another deploy holds the lock" in refused
    assert_no_failed_request(result)
    assert fetch("/").text == NEW_TEXT + "\n"
    assert not host.file("/opt/webstack/releases/deploy.lock").exists


def test_a_lock_left_by_a_crashed_run_names_its_holder_and_can_be_cleared(host, apps) -> None:  # type: ignore[no-untyped-def]
    lock = "/opt/webstack/releases/deploy.lock"
    owner = json.dumps({"user": "crashed-ci", "time": "2026-01-01T00:00:00Z", "action": "deploy"})
    host.check_output(f"mkdir {lock} && echo '{owner}' > {lock}/owner.json")
    code, output = finish(playbook("deploy.yml", "-e", f"app_source={apps['changed']}"))
    assert code != 0
    assert "crashed-ci" in output and "2026-01-01T00:00:00Z" in output
    assert "release_force_unlock=true" in output
    code, output = finish(
        playbook(
            "deploy.yml", "-e", f"app_source={apps['changed']}", "-e", "release_force_unlock=true"
        )
    )
    assert code == 0, output[-4000:]
    # The running release is already the target: nothing is rolled.
    assert "nothing to do" in output
    assert not host.file(lock).exists


def test_site_yml_after_releases_changes_nothing(host) -> None:  # type: ignore[no-untyped-def]
    code, output = finish(playbook("site.yml"))
    assert code == 0, output[-4000:]
    recap = output.split("PLAY RECAP")[-1]
    assert "changed=0" in recap and "failed=0" in recap, recap
    assert fetch("/").text == NEW_TEXT + "\n"
    assert running_versions(host) == {history(host)[-1]["version"]}
