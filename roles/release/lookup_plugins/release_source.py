"""The release tag a service's source gives, and the size of its build context.

A lookup runs inside the controller's Ansible process: no module is started for it, where the
find module that did this before cost a module run (about half a second) per service and run.
"""

from __future__ import annotations

import hashlib
import os
import stat

from ansible.errors import AnsibleLookupError
from ansible.plugins.lookup import LookupBase

DOCUMENTATION = r"""
name: release_source
short_description: The release tag of a build context and its size
description:
  - Walks the source directory on the controller and returns a digest of what makes the
    release, and the bytes of the files the build context archive holds.
  - The digest covers each file's path relative to the source, whether it is executable, and
    its content (a symbolic link's target); a renamed file or a new executable bit gives a new
    tag, the same files the same tag, wherever the source lies.
  - Left out of the digest, at any depth under the source, are C(__pycache__),
    C(.pytest_cache) and C(tests) directories and C(.pyc) files; the archive leaves out only
    C(__pycache__), so only those count in its size.
options:
  _terms:
    description: The source directory, one.
    required: true
"""

RETURN = r"""
_raw:
  description: One dictionary.
  type: list
  elements: dict
  contains:
    version:
      description: The release tag, the digest's first 12 characters.
    digest:
      description: sha256 of the source's listing, hexadecimal.
    bytes:
      description: Total size of the regular files the build context archive holds.
"""

# Directories whose content never makes a release different, and files neither.
IGNORED_DIRS = frozenset({"__pycache__", ".pytest_cache", "tests"})
IGNORED_SUFFIXES = (".pyc",)
# What tar --exclude=__pycache__ (build.yml) leaves out of the archive: not even walked.
ARCHIVE_IGNORED_DIRS = frozenset({"__pycache__"})
CHUNK = 1 << 20
TAG_LENGTH = 12


def _file_digest(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def describe(source: str) -> dict[str, object]:
    """The digest and archive size of the directory source (see DOCUMENTATION)."""
    if not os.path.isdir(source):
        raise AnsibleLookupError(f"the source {source!r} is not a directory on the controller")
    lines: list[str] = []
    size = 0

    def fail(error: OSError) -> None:
        raise error

    try:
        for top, dirs, files in os.walk(source, onerror=fail):
            relative_top = os.path.relpath(top, source)
            parts = [] if relative_top == "." else relative_top.split(os.sep)
            in_digest = not IGNORED_DIRS.intersection(parts)
            # os.walk lists a symbolic link to a directory among dirs and does not follow it:
            # tar keeps it as a link, and so does the digest.
            links = [name for name in dirs if os.path.islink(os.path.join(top, name))]
            dirs[:] = sorted(
                name for name in dirs if name not in links and name not in ARCHIVE_IGNORED_DIRS
            )
            for name in sorted(files + links):
                path = os.path.join(top, name)
                relative = "/".join([*parts, name])
                info = os.lstat(path)
                if stat.S_ISREG(info.st_mode):
                    size += info.st_size
                if not in_digest or name.endswith(IGNORED_SUFFIXES):
                    continue
                if stat.S_ISLNK(info.st_mode):
                    lines.append(f"{relative}\0link\0{os.readlink(path)}")
                elif stat.S_ISREG(info.st_mode):
                    mode = "x" if info.st_mode & 0o111 else "-"
                    lines.append(f"{relative}\0{mode}\0{_file_digest(path)}")
    except OSError as error:
        raise AnsibleLookupError(
            f"cannot read the source {source!r}: {error.strerror}: {error.filename}"
        ) from None
    listing = "\n".join(sorted(lines)).encode("utf-8", "surrogateescape")
    digest = hashlib.sha256(listing).hexdigest()
    return {"version": digest[:TAG_LENGTH], "digest": digest, "bytes": size}


class LookupModule(LookupBase):
    def run(self, terms, variables=None, **kwargs):  # type: ignore[no-untyped-def]
        if len(terms) != 1 or not isinstance(terms[0], str) or not terms[0]:
            raise AnsibleLookupError("release_source takes one source directory")
        return [describe(terms[0])]
