"""plugins/modules/webstack_files.py: a role's directories and small files in one call.

The module runs as Ansible runs it on a server: its file, its arguments as JSON, its JSON
answer, on a real filesystem (a temporary directory).
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

MODULE = Path(__file__).resolve().parents[2] / "plugins/modules/webstack_files.py"
OWNER = str(os.getuid())
GROUP = str(os.getgid())


def call(args: dict[str, Any], check_mode: bool = False) -> dict[str, Any]:
    payload = {"owner": OWNER, "group": GROUP, **args, "_ansible_check_mode": check_mode}
    result = subprocess.run(
        [sys.executable, str(MODULE), json.dumps({"ANSIBLE_MODULE_ARGS": payload})],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return json.loads(result.stdout)


def mode(path: Path) -> str:
    return oct(stat.S_IMODE(path.stat().st_mode))[2:].zfill(4)


def test_it_makes_directories_writes_files_and_then_changes_nothing(tmp_path: Path) -> None:
    conf = tmp_path / "conf"
    args = {
        "directories": [str(conf), {"path": str(tmp_path / "state"), "mode": "0700"}],
        "files": [
            {"path": str(conf / "app.conf"), "content": "a = 1\n"},
            {"path": str(conf / "run.sh"), "content": "#!/bin/sh\n", "mode": "0755"},
        ],
    }

    first = call(args)

    assert first["changed"] is True, first
    assert first["touched"] == [
        str(conf),
        str(tmp_path / "state"),
        str(conf / "app.conf"),
        str(conf / "run.sh"),
    ]
    assert (conf / "app.conf").read_text() == "a = 1\n"
    assert (mode(conf), mode(tmp_path / "state")) == ("0755", "0700")
    assert (mode(conf / "app.conf"), mode(conf / "run.sh")) == ("0644", "0755")
    again = call(args)
    assert again["changed"] is False and again["touched"] == [], again


def test_a_changed_content_or_mode_is_written_and_only_that_file_is_touched(
    tmp_path: Path,
) -> None:
    files = [
        {"path": str(tmp_path / "one"), "content": "one\n"},
        {"path": str(tmp_path / "two"), "content": "two\n"},
    ]
    call({"files": files})
    (tmp_path / "two").chmod(0o600)
    files[0]["content"] = "one, changed\n"

    result = call({"files": files})

    assert result["touched"] == [str(tmp_path / "one"), str(tmp_path / "two")]
    assert (tmp_path / "one").read_text() == "one, changed\n"
    assert mode(tmp_path / "two") == "0644"
    # The file was replaced whole: no temporary file is left beside it.
    assert sorted(path.name for path in tmp_path.iterdir()) == ["one", "two"]


def test_check_mode_reports_without_writing(tmp_path: Path) -> None:
    target = tmp_path / "new" / "file"

    result = call(
        {"directories": [str(tmp_path / "new")], "files": [{"path": str(target), "content": "x"}]},
        check_mode=True,
    )

    assert result["changed"] is True
    assert not (tmp_path / "new").exists()


def test_bad_input_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    relative = call({"files": [{"path": "relative/file", "content": "x"}]})
    no_content = call({"files": [{"path": str(tmp_path / "file")}]})
    missing_parent = call({"files": [{"path": str(tmp_path / "absent" / "file"), "content": "x"}]})
    not_a_directory = tmp_path / "plain"
    not_a_directory.write_text("")
    clash = call({"directories": [str(not_a_directory)]})

    assert relative["failed"] and "absolute path" in relative["msg"]
    assert no_content["failed"] and "content" in no_content["msg"]
    assert missing_parent["failed"] and "name it in directories" in missing_parent["msg"]
    assert clash["failed"] and "is not a directory" in clash["msg"]
    assert sorted(path.name for path in tmp_path.iterdir()) == ["plain"]


def test_a_validate_command_decides_whether_the_new_content_lands(tmp_path: Path) -> None:
    target = tmp_path / "app.conf"
    target.write_text("good = 1\n")
    # A checker as a configuration's own binary would be: reads the candidate, says why not.
    check = 'sh -c \'grep -q ^good "$1" || { echo "no good line in $1" >&2; exit 3; }\' sh %s'

    refused = call({"files": [{"path": str(target), "content": "bad = 2\n", "validate": check}]})
    kept = target.read_text()
    accepted = call({"files": [{"path": str(target), "content": "good = 2\n", "validate": check}]})
    never = "false %s"
    again = call({"files": [{"path": str(target), "content": "good = 2\n", "validate": never}]})

    assert refused["failed"] and refused["rc"] == 3, refused
    assert "refused by" in refused["msg"] and "no good line" in refused["stderr"], refused
    assert kept == "good = 1\n"
    assert accepted["changed"] is True and accepted["touched"] == [str(target)], accepted
    assert target.read_text() == "good = 2\n"
    # An unchanged content is not checked again (as ansible.builtin.template does).
    assert again["changed"] is False and not again.get("failed"), again
    # The refused candidate was removed: only the file itself is there.
    assert sorted(path.name for path in tmp_path.iterdir()) == ["app.conf"]


def test_a_validate_command_without_its_placeholder_is_refused_before_anything_is_written(
    tmp_path: Path,
) -> None:
    result = call(
        {
            "directories": [str(tmp_path / "conf")],
            "files": [{"path": str(tmp_path / "conf" / "a"), "content": "x", "validate": "true"}],
        }
    )

    assert result["failed"] and "must contain %s" in result["msg"], result
    assert list(tmp_path.iterdir()) == []
