"""Pack a build context on the controller, put it on the server and run a build command on it.

One task where there were four (pack on the controller, copy, build, remove the archive on
the controller): the archive is made in this process (no module run on the controller), put
in the login's temporary directory on the server (the connection's own file transfer, no
module run either), and the command reads it on its standard input, with become, in the same
round trip that removes it. On an idle machine this took a deploy's build from about 3.9 s of
tasks to about 1.5 s.
"""

from __future__ import annotations

import os
import tempfile

from ansible.errors import AnsibleActionFail
from ansible.plugins.action import ActionBase

# community.docker's copy of the Docker SDK's build context packing (a private module of the
# collection the ansible package pins).
from ansible_collections.community.docker.plugins.module_utils._api.utils.build import tar

DOCUMENTATION = r"""
action: release_build
short_description: Run a command on the server with a controller directory as a tar.gz on its stdin
options:
  source:
    description: Directory on the controller, the build context.
    type: path
    required: true
  exclude:
    description:
      - Patterns of files and directories to leave out of the archive, with the syntax and
        meaning of .dockerignore (the release_source lookup's exclude).
      - A build from an archive on standard input does not read the context's .dockerignore
        itself, so it is applied here.
    type: list
    elements: str
    default: []
  argv:
    description: The command to run on the server, with become; its stdin is the archive.
    type: list
    elements: str
    required: true
"""

RETURN = r"""
rc: {description: "The command's exit code; any other than 0 fails the task.", type: int}
stdout: {description: The command's output., type: str}
stderr: {description: The command's error output., type: str}
context_bytes: {description: Size of the archive put on the server., type: int}
"""


def pack(source: str, exclude: list[str], archive: str) -> int:
    """Write the build context of source as a gzipped tar, by Docker's rules for the exclude
    patterns (.dockerignore's), as community.docker's docker_image packs a directory; return
    its size. Modes and symbolic links are kept."""
    with open(archive, "wb") as handle:
        tar(os.path.abspath(source), exclude=list(exclude), fileobj=handle, gzip=True)
    return os.path.getsize(archive)


class ActionModule(ActionBase):
    # The temporary directory is made below, once the arguments are checked (the base class
    # would make one before run() for an action that transfers files).
    TRANSFERS_FILES = False
    _VALID_ARGS = frozenset({"source", "exclude", "argv"})

    def run(self, tmp=None, task_vars=None):  # type: ignore[no-untyped-def]
        result = super().run(tmp, task_vars)
        source = self._task.args.get("source")
        argv = self._task.args.get("argv")
        exclude = self._task.args.get("exclude") or []
        if not isinstance(source, str) or not os.path.isdir(source):
            raise AnsibleActionFail(f"source must be a directory on the controller: {source!r}")
        if not isinstance(argv, list) or not argv or not all(isinstance(a, str) for a in argv):
            raise AnsibleActionFail("argv must be a non-empty list of strings")
        if not isinstance(exclude, list) or not all(isinstance(p, str) for p in exclude):
            raise AnsibleActionFail("exclude must be a list of .dockerignore patterns")
        if self._task.check_mode:
            result.update(skipped=True, msg="check mode: nothing built")
            return result

        handle, archive = tempfile.mkstemp(prefix="webstack-build-", suffix=".tar.gz")
        os.close(handle)
        try:
            try:
                size = pack(source, exclude, archive)
            except OSError as error:
                raise AnsibleActionFail(f"cannot pack the source {source!r}: {error}") from None
            remote_tmp = self._make_tmp_path()
            remote_archive = self._connection._shell.join_path(remote_tmp, "context.tar.gz")
            self._transfer_file(archive, remote_archive)
        finally:
            os.unlink(archive)

        shell = self._connection._shell
        command = " ".join(shell.quote(arg) for arg in argv)
        # The archive and its directory go whatever the outcome, in this same round trip.
        run = self._low_level_execute_command(
            f"{command} < {shell.quote(remote_archive)}; status=$?;"
            f" rm -rf {shell.quote(remote_tmp)}; exit $status",
            sudoable=True,
        )
        # The command removed the temporary directory: nothing for the action to clean up.
        self._connection._shell.tmpdir = None
        result.update(
            rc=run["rc"],
            stdout=run["stdout"],
            stderr=run["stderr"],
            stdout_lines=run["stdout_lines"],
            stderr_lines=run["stderr_lines"],
            context_bytes=size,
            changed=run["rc"] == 0,
        )
        if run["rc"] != 0:
            result.update(failed=True, msg=f"the command exited with {run['rc']}")
        return result
