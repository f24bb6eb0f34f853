"""Releases under load: every request through NGINX is counted, none may fail.

The tests run in file order against one provisioned server: a deploy of a changed app, a
broken release that is refused, a release whose pages fail that the guard reverts (the one
test where requests fail: its 500s), a rollback, two deploys at once, and a stale lock.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
from stackcheck import (
    BIN,
    NEW_TEXT,
    OLD_TEXT,
    ROOT,
    app_containers,
    assert_no_failed_request,
    changed_app,
    fetch,
    finish,
    haproxy_servers,
    inventory,
    load,
    loadprobe,
    playbook,
)

HISTORY = "/opt/webstack/releases/history.jsonl"
# The summary's account of the release guard (roles/release/tasks/finish.yml).
GUARD_SUMMARY = re.compile(
    r"guard: (?P<requests>\d+) answers, (?P<errors>\d+) 5xx \((?P<percent>[\d.]+)%\) in "
    r"(?P<seconds>[\d.]+)s, (?P<verdict>passed|too few to judge)"
)
LOCK = "/opt/webstack/releases/deploy.lock"


def history(host) -> list[dict]:  # type: ignore[no-untyped-def]
    return [json.loads(line) for line in host.file(HISTORY).content_string.splitlines()]


def running_versions(host) -> set[str]:  # type: ignore[no-untyped-def]
    return {name.rsplit("-", 2)[-2] for name in app_containers(host)}


@pytest.fixture(scope="module")
def apps(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The changed app, a broken one whose server never starts, and one whose pages fail."""
    base = tmp_path_factory.mktemp("apps")
    changed = changed_app(base / "changed")
    broken = base / "broken"
    shutil.copytree(changed, broken)
    gunicorn = broken / "gunicorn.conf.py"
    # A release that cannot boot: its WSGI module does not exist.
    dockerfile = broken / "Dockerfile"
    dockerfile.write_text(dockerfile.read_text().replace("webapp.wsgi:app", "webapp.missing:app"))
    assert "webapp.missing:app" in dockerfile.read_text() and gunicorn.exists()
    # Healthy to HAProxy (its health path answers 200), but every page answers 500.
    failing = base / "failing"
    shutil.copytree(changed, failing)
    routes = failing / "webapp" / "routes.py"
    page = 'return _text(f"{GREETING}\\n", "no-cache")'
    assert page in routes.read_text()
    routes.write_text(
        routes.read_text().replace(page, 'return _text("broken page\\n", "no-store", status=500)')
    )
    return {"changed": changed, "broken": broken, "failing": failing}


def test_deploy_ships_the_changed_app_without_a_failed_request(host, apps, tmp_path) -> None:  # type: ignore[no-untyped-def]
    before = running_versions(host)
    with load(tmp_path) as result:
        # Watched longer than the scenario's guard: a good release passes it under load.
        code, output = finish(
            playbook(
                "deploy.yml",
                "-e",
                f"app_source={apps['changed']}",
                "-e",
                "release_guard_seconds=10",
            )
        )
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
    guard = GUARD_SUMMARY.search(output)
    assert guard, output[-4000:]
    print("guard of a good release:", guard.group(0))
    assert guard["verdict"] == "passed" and guard["errors"] == "0"
    assert int(guard["requests"]) >= 100 and float(guard["seconds"]) >= 10


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
    # The tail of the new container's log explains why. Once Docker has restarted the failing
    # container a few times, the tail may hold only gunicorn's own verdict on the boot.
    assert any(
        reason in output
        for reason in ("webapp.missing", "ModuleNotFoundError", "Worker failed to boot")
    ), output[-4000:]
    assert_no_failed_request(result)
    assert loadprobe.texts_after(result, 0) == {NEW_TEXT}
    assert running_versions(host) == serving
    assert history(host)[-1]["result"] == "refused"


def test_a_release_whose_pages_fail_is_reverted_by_the_guard(host, apps, tmp_path) -> None:  # type: ignore[no-untyped-def]
    serving = running_versions(host)
    with load(tmp_path) as result:
        started_at = time.time()
        code, output = finish(
            playbook(
                "deploy.yml",
                "-e",
                f"app_source={apps['failing']}",
                "-e",
                "release_guard_seconds=30",
            )
        )
        reverted_at = time.time()
    assert code != 0
    assert "was reverted by the release guard" in output, output[-4000:]
    assert "serves again" in output
    last = history(host)[-1]
    assert last["result"] == "reverted" and last["action"] == "deploy", last
    assert last["version"] not in serving
    assert "release_guard_max_error_ratio" in last["note"], last
    ratio = re.search(r"\(([\d.]+)%\)", last["note"])
    assert ratio and float(ratio[1]) > 5, last
    # The previous release serves again, alone, and only it answers once the play is over.
    assert running_versions(host) == serving
    assert len(app_containers(host)) == 2
    assert fetch("/").text == NEW_TEXT + "\n"
    assert loadprobe.texts_after(result, reverted_at - result["started_at"]) == {NEW_TEXT}
    # The failing release's 500s are the probe's failures here, and only here.
    statuses = sorted({str(failure.get("status")) for failure in result["failures"]})
    failing = [second for second, _requests, failed in result["timeline"] if failed]
    print(
        f"guard revert: {last['note']}; deploy and revert took {reverted_at - started_at:.1f}s;"
        f" the probe saw {result['failed']} failed requests (statuses {statuses}) in"
        f" {len(failing)} seconds, from second {min(failing, default=0)} to"
        f" {max(failing, default=0)} of {reverted_at - result['started_at']:.0f}"
    )
    assert result["failed"] > 0
    # status.yml shows the revert among the last releases, with the guard's figures.
    code, output = finish(playbook("status.yml"))
    assert code == 0, output[-3000:]
    shown = " ".join(output.split())
    assert f"deploy {last['version']}: reverted" in shown, shown[-3000:]
    assert "release guard:" in shown.split(f"deploy {last['version']}: reverted", 1)[1]


def test_rollback_returns_to_the_previous_release(host, tmp_path) -> None:  # type: ignore[no-untyped-def]
    with load(tmp_path) as result:
        code, output = finish(playbook("rollback.yml"))
        rolled_at = time.time()
    assert code == 0, output[-4000:]
    assert_no_failed_request(result)
    assert loadprobe.texts_after(result, rolled_at - result["started_at"]) == {OLD_TEXT}
    assert history(host)[-1]["action"] == "rollback"
    assert len(app_containers(host)) == 2
    # A rollback target is watched by the guard too.
    assert GUARD_SUMMARY.search(output), output[-4000:]


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


def test_a_deploy_without_room_to_build_is_refused_before_any_change(host, tmp_path) -> None:  # type: ignore[no-untyped-def]
    serving = running_versions(host)
    images = host.check_output("docker images -q webstack/app | sort")
    source = text_app(tmp_path / "app", "Hello beautiful world, with no room to build!")
    # More free space than any test disk has: the build is refused as on a full disk.
    code, output = finish(
        playbook("deploy.yml", "-e", f"app_source={source}", "-e", "app_build_min_free_mb=99999999")
    )
    assert code != 0
    assert "The disk is too full to build release" in output, output[-4000:]
    assert "99999999" in output and "nothing was changed" in output
    assert running_versions(host) == serving
    assert host.check_output("docker images -q webstack/app | sort") == images
    assert not host.file(LOCK).exists


def test_an_image_that_does_not_build_is_refused_with_its_output(host, tmp_path) -> None:  # type: ignore[no-untyped-def]
    serving = running_versions(host)
    source = text_app(tmp_path / "app", "Hello beautiful world, that never builds!")
    dockerfile = source / "Dockerfile"
    dockerfile.write_text(
        dockerfile.read_text().replace(
            "USER 10001", 'RUN echo "compiling the assets" && false\nUSER 10001', 1
        )
    )
    code, output = finish(playbook("deploy.yml", "-e", f"app_source={source}"))
    assert code != 0
    refusal = output.split("fatal:", 1)[-1]
    # The refusal names the release and ends with what the failing step printed.
    assert "failed; the end of its output" in refusal, output[-4000:]
    assert "compiling the assets" in refusal and "returned a non-zero code" in refusal
    assert running_versions(host) == serving
    assert fetch("/").text == NEW_TEXT + "\n"
    # Neither the context's archive nor the lock is left on the server.
    assert host.check_output("ls /opt/webstack | grep -c '^build-' || true").strip() == "0"
    assert not host.file(LOCK).exists


def test_site_yml_after_releases_changes_nothing(host) -> None:  # type: ignore[no-untyped-def]
    code, output = finish(playbook("site.yml"))
    assert code == 0, output[-4000:]
    recap = output.split("PLAY RECAP")[-1]
    assert "changed=0" in recap and "failed=0" in recap, recap
    assert fetch("/").text == NEW_TEXT + "\n"
    served = [item["version"] for item in history(host) if item["result"] == "success"]
    assert running_versions(host) == {served[-1]}


def deploy_cut_off(source: Path, at_task: str, timeout: float = 300) -> str:
    """Start deploy.yml and SIGKILL it, with every process it started, once at_task begins.

    As a laptop closed mid-deploy: nothing of the run gets to clean up.
    """
    env = {k: v for k, v in os.environ.items() if k != "ANSIBLE_CONFIG"}
    env.update(ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0", PYTHONUNBUFFERED="1")
    process = subprocess.Popen(
        [
            str(BIN / "ansible-playbook"),
            "-i",
            str(inventory()),
            "deploy.yml",
            "-e",
            f"app_source={source}",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    assert process.stdout is not None
    try:
        for line in process.stdout:
            seen.append(line)
            if f"TASK [release : {at_task}" in line:
                os.killpg(process.pid, signal.SIGKILL)
                break
            assert time.monotonic() < deadline, "the deploy never reached " + at_task
        else:
            pytest.fail(f"the deploy ended before {at_task!r}:\n" + "".join(seen[-60:]))
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
    return "".join(seen)


def text_app(base: Path, text: str) -> Path:
    """A copy of the sample app answering text: a release of its own."""
    source = changed_app(base)
    greeting = source / "webapp" / "greeting.py"
    greeting.write_text(greeting.read_text().replace(NEW_TEXT, text))
    return source


def cut_off_lock_owner(host, cut_output: str) -> dict:  # type: ignore[no-untyped-def]
    """The lock a cut-off deploy left behind, naming the run that is gone."""
    assert host.file(LOCK).exists, cut_output[-3000:]
    owner = json.loads(host.file(f"{LOCK}/owner.json").content_string)
    assert owner["controller"] and owner["process"] != "unknown", owner
    return owner


def test_deploys_cut_off_in_a_row_keep_serving_and_the_next_one_converges(  # type: ignore[no-untyped-def]
    host, tmp_path
) -> None:
    """Two deploys of two releases cut off one after the other, then a third that converges.

    Each cut is at a point where two releases serve side by side: the first after its new
    replica was added to HAProxy and is UP (the old one about to drain), the second, which
    meets what the first left, after an old replica was drained and left HAProxy (its container
    still runs). The last deploy finds three releases' containers and keeps only its own.
    """
    first = text_app(tmp_path / "first", "Hello beautiful world, cut off after the add!")
    text = "Hello beautiful world, cut off after the removal!"
    second = text_app(tmp_path / "second", text)
    with load(tmp_path) as result:
        first_owner = cut_off_lock_owner(host, deploy_cut_off(first, "Drain the old server"))
        # The next deploy finds the holder gone and clears the lock by itself; it is cut off too.
        cut_output = deploy_cut_off(second, "Stop and remove the old container")
        assert "Cleared the deploy lock" in cut_output, cut_output[-3000:]
        assert cut_off_lock_owner(host, cut_output)["process"] != first_owner["process"]
        code, output = finish(playbook("deploy.yml", "-e", f"app_source={second}"))
        converged_at = time.time()
    assert code == 0, output[-4000:]
    assert "Cleared the deploy lock" in output and "process is gone" in output, output[-4000:]
    assert_no_failed_request(result)
    assert loadprobe.texts_after(result, converged_at - result["started_at"]) == {text}
    records = history(host)
    target = records[-1]["version"]
    assert records[-1]["result"] == "success"
    # Both cut-off runs are recorded as interrupted, each cleared by the run after it.
    interrupted = [item for item in records if item["result"] == "interrupted"][-2:]
    assert len(interrupted) == 2 and interrupted[-1]["version"] == target, records[-4:]
    assert interrupted[0]["version"] != target, records[-4:]
    assert all("cleared" in item["note"] for item in interrupted), interrupted
    # Exactly the target's replicas remain, and HAProxy balances over exactly them.
    wanted = {f"{target}-1", f"{target}-2"}
    assert {name.removeprefix("webstack-app-") for name in app_containers(host)} == wanted
    servers = haproxy_servers(host)
    assert {server["svname"] for server in servers} == wanted, servers
    assert all(server["status"] == "UP" for server in servers), servers
    assert not host.file(LOCK).exists
