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

# community.docker's copy of the Docker SDK's .dockerignore matching, the one its docker_image
# module builds a context with (a private module of the collection the ansible package pins).
from ansible_collections.community.docker.plugins.module_utils._api.utils.build import (
    exclude_paths,
)

DOCUMENTATION = r"""
name: release_source
short_description: The release tag of a build context and its size
description:
  - Walks the source directory on the controller and returns a digest of what makes the
    release, the bytes of the files the build context archive holds, and the patterns that
    keep files out of that archive.
  - The build context is what Docker would send for the directory, by its rules for the
    source's C(.dockerignore), without C(__pycache__) directories.
  - The digest covers each file's path relative to the source, whether it is executable, and
    its content (a symbolic link's target); a renamed file or a new executable bit gives a new
    tag, the same files the same tag, wherever the source lies.
  - Left out of the digest, at any depth under the source, are C(.pytest_cache) and C(tests)
    directories and C(.pyc) files, though the build context holds them.
options:
  _terms:
    description: The source directory, one.
    required: true
  digest:
    description: False returns only bytes and exclude, without reading the files' content.
    type: bool
    default: true
"""

RETURN = r"""
_raw:
  description: One dictionary.
  type: list
  elements: dict
  contains:
    version:
      description: The release tag, the digest's first 12 characters (not with digest false).
    digest:
      description: sha256 of the source's listing, hexadecimal.
    bytes:
      description: Total size of the regular files the build context archive holds.
    exclude:
      description: The .dockerignore patterns and C(**/__pycache__), for release_build.
"""

# Directories whose content never makes a release different, and files neither (they are in
# the build context all the same).
IGNORED_DIRS = frozenset({".pytest_cache", "tests"})
IGNORED_SUFFIXES = (".pyc",)
# Never in the build context, at any depth, on top of the source's .dockerignore.
PYTHON_CACHES = "**/__pycache__"
CHUNK = 1 << 20
TAG_LENGTH = 12


def _file_digest(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def ignore_patterns(source: str) -> list[str]:
    """The patterns that keep files out of the build context: the source's .dockerignore, read
    as community.docker's docker_image reads it, and Python's caches (what tar
    --exclude=__pycache__ did before)."""
    try:
        with open(os.path.join(source, ".dockerignore"), encoding="utf-8") as handle:
            lines = [line.strip() for line in handle.read().splitlines()]
    except FileNotFoundError:
        lines = []
    return [line for line in lines if line and not line.startswith("#")] + [PYTHON_CACHES]


def context_paths(source: str, patterns: list[str]) -> list[str]:
    """The paths under source (relative, files and directories) that the build context holds,
    by Docker's own rules for .dockerignore (community.docker's copy of the Docker SDK's)."""
    return sorted(exclude_paths(os.path.abspath(source), list(patterns)))


def describe(source: str, digest: bool = True) -> dict[str, object]:
    """The digest and archive size of the directory source (see DOCUMENTATION)."""
    if not os.path.isdir(source):
        raise AnsibleLookupError(f"the source {source!r} is not a directory on the controller")
    try:
        patterns = ignore_patterns(source)
        lines: list[str] = []
        size = 0
        for relative in context_paths(source, patterns):
            path = os.path.join(source, relative)
            info = os.lstat(path)
            if stat.S_ISREG(info.st_mode):
                size += info.st_size
            if not digest:
                continue
            parts = relative.split("/")
            if IGNORED_DIRS.intersection(parts[:-1]) or relative.endswith(IGNORED_SUFFIXES):
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
    if not digest:
        return {"bytes": size, "exclude": patterns}
    listing = "\n".join(sorted(lines)).encode("utf-8", "surrogateescape")
    sha = hashlib.sha256(listing).hexdigest()
    return {"version": sha[:TAG_LENGTH], "digest": sha, "bytes": size, "exclude": patterns}


class LookupModule(LookupBase):
    def run(self, terms, variables=None, **kwargs):  # type: ignore[no-untyped-def]
        if len(terms) != 1 or not isinstance(terms[0], str) or not terms[0]:
            raise AnsibleLookupError("release_source takes one source directory")
        digest = kwargs.pop("digest", True)
        if kwargs or not isinstance(digest, bool):
            raise AnsibleLookupError("release_source takes one option, digest (true or false)")
        return [describe(terms[0], digest)]
