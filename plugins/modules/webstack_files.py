#!/usr/bin/python
"""Directories and small files of a role, in one round trip (see DOCUMENTATION)."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: webstack_files
short_description: Make a role's directories and write its small files in one call
description:
  - What a loop of M(ansible.builtin.file) with C(state=directory) and a loop of
    M(ansible.builtin.template) or M(ansible.builtin.copy) do, in one round trip to the
    server. Through a connection where each module call costs a third of a second or more, a
    role's fourteen directories and files cost five seconds as loops and one call as this.
  - Directories are made first (with their parents), in the order given. A file is written
    only when its content differs, to a temporary file beside it that then replaces it (a
    reader sees the old file or the new one, never a part). Owner, group and mode are set on
    every directory and file when they differ.
  - A file may name a C(validate) command, as M(ansible.builtin.template) does; it runs on the
    new content (its C(%s) is the temporary file's path) before that replaces the file, and a
    content it refuses never lands. The module then fails with the command's output.
  - The contents are module arguments, shown at high verbosity; a task writing a secret sets
    C(no_log).
options:
  directories:
    description:
      - Directories to make, in order; each a path, or C(path) and its own C(mode).
    type: list
    elements: raw
    default: []
  files:
    description:
      - Files to write; each is C(path) and C(content), optionally its own C(mode) and a
        C(validate) command (it must contain C(%s)).
    type: list
    elements: dict
    default: []
  owner:
    description: Owner of every directory and file (a name or a uid).
    type: str
    default: root
  group:
    description: Group of every directory and file (a name or a gid).
    type: str
    default: root
  directory_mode:
    description: Mode of a directory that gives none of its own.
    type: str
    default: "0755"
  mode:
    description: Mode of a file that gives none of its own.
    type: str
    default: "0644"
"""

EXAMPLES = r"""
- name: Make NGINX's directories and stage its configuration
  webstack_files:
    directories: [/opt/webstack/nginx, /opt/webstack/nginx.next]
    files:
      - path: /opt/webstack/nginx.next/nginx.conf
        content: "{{ lookup('ansible.builtin.template', 'nginx.conf.j2') }}"
"""

RETURN = r"""
touched:
  description: The directories made and the files written or whose owner, group or mode changed.
  returned: always
  type: list
  elements: str
"""

import os  # noqa: E402
import shlex  # noqa: E402
import tempfile  # noqa: E402

from ansible.module_utils.basic import AnsibleModule  # noqa: E402


def _attributes(module: AnsibleModule, path: str, mode: str) -> dict:
    return {
        "path": path,
        "owner": module.params["owner"],
        "group": module.params["group"],
        "mode": mode,
        "attributes": None,
        "secontext": [None, None, None],
    }


def ensure_directory(module: AnsibleModule, path: str, mode: str) -> bool:
    made = False
    if not os.path.isdir(path):
        if os.path.lexists(path):
            module.fail_json(msg=f"{path} exists and is not a directory")
        made = True
        if not module.check_mode:
            os.makedirs(path, exist_ok=True)
    if module.check_mode and made:
        return True
    return module.set_fs_attributes_if_different(_attributes(module, path, mode), made)


def _validate(module: AnsibleModule, command: str, temporary: str, path: str) -> None:
    rc, out, err = module.run_command(command.replace("%s", shlex.quote(temporary)))
    if rc != 0:
        module.fail_json(
            msg=f"failed to validate the new content of {path}; it was refused by: {command}",
            rc=rc,
            stdout=out,
            stderr=err,
        )


def write_file(
    module: AnsibleModule, path: str, content: bytes, mode: str, validate: str | None = None
) -> bool:
    try:
        with open(path, "rb") as stream:
            same = stream.read() == content
    except FileNotFoundError:
        same = False
    except OSError as err:
        module.fail_json(msg=f"cannot read {path}: {err}")
    if not same:
        if module.check_mode:
            return True
        directory = os.path.dirname(path) or "."
        if not os.path.isdir(directory):
            module.fail_json(msg=f"{directory} does not exist: name it in directories")
        fd, temporary = tempfile.mkstemp(dir=directory, prefix=f".{os.path.basename(path)}.")
        try:
            with os.fdopen(fd, "wb") as stream:
                stream.write(content)
                stream.flush()
                os.fsync(stream.fileno())
            module.set_fs_attributes_if_different(_attributes(module, temporary, mode), False)
            if validate:
                _validate(module, validate, temporary, path)
            os.replace(temporary, path)
        except BaseException:
            if os.path.exists(temporary):
                os.unlink(temporary)
            raise
        return True
    return module.set_fs_attributes_if_different(_attributes(module, path, mode), False)


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "directories": {"type": "list", "elements": "raw", "default": []},
            "files": {"type": "list", "elements": "dict", "default": []},
            "owner": {"type": "str", "default": "root"},
            "group": {"type": "str", "default": "root"},
            "directory_mode": {"type": "str", "default": "0755"},
            "mode": {"type": "str", "default": "0644"},
        },
        supports_check_mode=True,
    )
    for item in module.params["files"]:
        validate = item.get("validate")
        if validate is not None and (not isinstance(validate, str) or "%s" not in validate):
            module.fail_json(
                msg=f"the validate command of {item.get('path')} must contain %s: {validate!r}"
            )
    touched = []
    for item in module.params["directories"]:
        path, mode = (
            (item.get("path"), item.get("mode")) if isinstance(item, dict) else (item, None)
        )
        if not isinstance(path, str) or not path.startswith("/"):
            module.fail_json(msg=f"a directory needs an absolute path: {item!r}")
        if ensure_directory(module, path, str(mode or module.params["directory_mode"])):
            touched.append(path)
    for item in module.params["files"]:
        path = item.get("path")
        content = item.get("content")
        if not isinstance(path, str) or not path.startswith("/") or not isinstance(content, str):
            module.fail_json(msg="each file needs an absolute path and a content (text)")
        mode = str(item.get("mode") or module.params["mode"])
        if write_file(module, path, content.encode(), mode, item.get("validate")):
            touched.append(path)
    module.exit_json(changed=bool(touched), touched=touched)


if __name__ == "__main__":
    main()
