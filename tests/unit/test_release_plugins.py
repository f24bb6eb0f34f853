"""The release role's controller plugins: the release tag of a source and its size
(lookup_plugins/release_source.py), and the build context put on the server for the build
command (action_plugins/release_build.py).

The tag decides whether a deploy builds and ships anything: two sources that differ must not
share a tag, and the same files must give the same tag wherever they lie. Before this lookup,
the tag left out every file whose absolute path held "/tests/": every service whose source lay
under a directory named tests got one and the same tag, and a changed one was never shipped.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
from ansible.errors import AnsibleLookupError

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "roles" / "release" / "lookup_plugins"))

import release_source  # noqa: E402

BIN = Path(sys.executable).parent


def make_source(base: Path) -> Path:
    source = base / "app"
    (source / "webapp").mkdir(parents=True)
    (source / "Dockerfile").write_text("FROM scratch\nCOPY . /app\n")
    (source / "webapp" / "main.py").write_text("print('hello')\n")
    (source / "static").mkdir()
    (source / "static" / "site.css").write_text("body { color: black }\n")
    return source


def tag(source: Path) -> str:
    return str(release_source.LookupModule().run([str(source)])[0]["version"])


def test_the_same_files_give_the_same_tag_wherever_they_lie(tmp_path: Path) -> None:
    # The second copy lies under directories named tests and __pycache__: only what is under
    # the source counts.
    first = make_source(tmp_path / "one")
    second = make_source(tmp_path / "tests" / "__pycache__")
    assert len(tag(first)) == 12
    assert tag(first) == tag(second)


@pytest.mark.parametrize(
    "change",
    [
        pytest.param(
            lambda s: (s / "webapp" / "main.py").write_text("print('bye')\n"), id="content"
        ),
        pytest.param(
            lambda s: (s / "static" / "site.css").rename(s / "static" / "other.css"), id="rename"
        ),
        pytest.param(lambda s: (s / "webapp" / "main.py").chmod(0o755), id="executable-bit"),
        pytest.param(lambda s: (s / "empty.txt").write_text(""), id="new-empty-file"),
        pytest.param(lambda s: (s / "link").symlink_to("webapp/main.py"), id="new-link"),
        pytest.param(lambda s: (s / "static" / "site.css").unlink(), id="removed-file"),
    ],
)
def test_any_change_to_the_release_gives_a_new_tag(tmp_path: Path, change) -> None:  # type: ignore[no-untyped-def]
    source = make_source(tmp_path)
    before = tag(source)
    change(source)
    assert tag(source) != before


def test_tests_and_caches_under_the_source_do_not_make_a_release(tmp_path: Path) -> None:
    source = make_source(tmp_path)
    before = tag(source)
    for directory in (
        "tests",
        "webapp/tests",
        "__pycache__",
        "webapp/__pycache__",
        ".pytest_cache",
    ):
        (source / directory).mkdir(parents=True, exist_ok=True)
        (source / directory / "thing.py").write_text("x = 1\n")
    (source / "webapp" / "main.pyc").write_bytes(b"\0")
    assert tag(source) == before


def test_the_size_is_that_of_the_files_the_archive_holds(tmp_path: Path) -> None:
    source = make_source(tmp_path)
    (source / "tests").mkdir()
    (source / "tests" / "test_app.py").write_text("x" * 1000)
    (source / "__pycache__").mkdir()
    (source / "__pycache__" / "big.pyc").write_bytes(b"\0" * 5000)
    (source / "link").symlink_to("webapp/main.py")
    regular = [path for path in source.rglob("*") if path.is_file() and not path.is_symlink()]
    expected = sum(path.stat().st_size for path in regular if "__pycache__" not in path.parts)
    result = release_source.LookupModule().run([str(source)])[0]
    assert result["bytes"] == expected
    assert result["bytes"] >= 1000


def test_a_source_that_is_no_directory_is_refused_by_name(tmp_path: Path) -> None:
    with pytest.raises(AnsibleLookupError, match="not a directory"):
        release_source.LookupModule().run([str(tmp_path / "missing")])
    with pytest.raises(AnsibleLookupError, match="one source directory"):
        release_source.LookupModule().run([])
    # Its one option: a misspelt or mistyped one is named, not ignored.
    source = make_source(tmp_path)
    for options in ({"digets": False}, {"digest": "no"}):
        with pytest.raises(AnsibleLookupError, match=r"one option, digest \(true or false\)"):
            release_source.LookupModule().run([str(source)], **options)


def test_a_file_that_cannot_be_read_is_named(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    # The tests run as root, who reads any file: the refusal of the open is played here.
    source = make_source(tmp_path)
    real_open = open

    def refusing_open(path, *args, **kwargs):  # type: ignore[no-untyped-def]
        if str(path).endswith("site.css"):
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr("builtins.open", refusing_open)
    with pytest.raises(AnsibleLookupError, match=r"Permission denied: .*static/site\.css"):
        tag(source)


def test_the_role_derives_the_tag_through_ansible(tmp_path: Path) -> None:
    """version.yml, as a play runs it: the role brings its lookup, and a version the service
    sets is its tag."""
    source = make_source(tmp_path / "tests")
    playbook = tmp_path / "tag.yml"
    show = "{{ __release_source.version }} {{ __release_source.bytes }}"
    playbook.write_text(
        f"""
- hosts: localhost
  gather_facts: false
  tasks:
    - ansible.builtin.include_role: {{name: release, tasks_from: version.yml}}
      vars:
        __release_svc: {{name: web, version: "", source: "{source}"}}
    - ansible.builtin.debug: {{msg: "derived {show}"}}
    - ansible.builtin.include_role: {{name: release, tasks_from: version.yml}}
      vars:
        __release_svc: {{name: web, version: v7, source: "{source}"}}
    - ansible.builtin.debug: {{msg: "given {show}"}}
"""
    )
    run = subprocess.run(
        [
            *(str(BIN / "ansible-playbook"), "-i", "localhost,", "-c", "local", str(playbook)),
            # As Ansible's implicit localhost: the controller's Python (interpreter discovery
            # may find a pyenv shim on PATH, which Mitogen's local connection cannot start).
            *("-e", f"ansible_python_interpreter={sys.executable}"),
        ],
        capture_output=True,
        text=True,
        env=dict(os.environ, ANSIBLE_ROLES_PATH=str(ROOT / "roles")),
        cwd=ROOT,
        timeout=120,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    size = release_source.describe(str(source))["bytes"]
    assert f"derived {tag(source)} {size}" in run.stdout, run.stdout[-3000:]
    assert f"given v7 {size}" in run.stdout, run.stdout[-3000:]


# roles/release/action_plugins/release_build.py: the build context, packed and put on the
# server, and the command that reads it.
sys.path.insert(0, str(ROOT / "roles" / "release" / "action_plugins"))

import release_build  # noqa: E402

ROLE_ACTIONS = ROOT / "roles" / "release" / "action_plugins"


def test_the_archive_holds_the_source_as_tar_keeps_it(tmp_path: Path) -> None:
    source = make_source(tmp_path)
    (source / "entrypoint.sh").write_text("#!/bin/sh\n")
    (source / "entrypoint.sh").chmod(0o755)
    (source / "link").symlink_to("webapp/main.py")
    (source / "webapp" / "__pycache__").mkdir()
    (source / "webapp" / "__pycache__" / "main.cpython-311.pyc").write_bytes(b"\0")
    (source / "tests").mkdir()
    (source / "tests" / "test_app.py").write_text("x = 1\n")
    archive = tmp_path / "context.tar.gz"
    size = release_build.pack(str(source), ["**/__pycache__"], str(archive))
    assert size == archive.stat().st_size
    with tarfile.open(archive) as tar:
        members = {member.name: member for member in tar.getmembers()}
    assert set(members) == {
        "Dockerfile",
        "entrypoint.sh",
        "link",
        "static",
        "static/site.css",
        "tests",
        "tests/test_app.py",
        "webapp",
        "webapp/main.py",
    }
    assert members["entrypoint.sh"].mode & 0o111
    assert members["link"].issym() and members["link"].linkname == "webapp/main.py"


def test_the_dockerignore_of_the_source_keeps_files_out_of_the_image_and_the_tag(
    tmp_path: Path,
) -> None:
    """docker build - reads no .dockerignore from the archive it is given (Docker 20.10 copied
    an ignored secret.txt into the image): the archive and the tag follow it instead."""
    source = make_source(tmp_path)
    before = tag(source)
    (source / ".dockerignore").write_text(
        "# secrets and the repository stay home\n.env\n.git\n**/*.log\nstatic/*\n!static/site.css\n"
    )
    (source / ".env").write_text("PASSWORD=x\n")
    (source / ".git").mkdir()
    (source / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    (source / "webapp" / "debug.log").write_text("x\n")
    (source / "static" / "draft.css").write_text("x\n")
    with_ignore = tag(source)
    # Only .dockerignore itself is new in the context: ignored files change nothing more.
    (source / ".git" / "HEAD").write_text("ref: refs/heads/other\n")
    (source / ".env").write_text("PASSWORD=y\n")
    assert tag(source) == with_ignore != before
    described = release_source.describe(str(source))
    archive = tmp_path / "context.tar.gz"
    release_build.pack(str(source), described["exclude"], str(archive))
    with tarfile.open(archive) as tar:
        names = set(tar.getnames())
    assert names == {
        ".dockerignore",
        "Dockerfile",
        "static",
        "static/site.css",
        "webapp",
        "webapp/main.py",
    }
    files = [source / name for name in names if (source / name).is_file()]
    assert described["bytes"] == sum(path.stat().st_size for path in files)
    # What build.yml reads for the build itself, without the files' content: the same.
    assert release_source.describe(str(source), digest=False) == {
        "bytes": described["bytes"],
        "exclude": described["exclude"],
    }


def run_build_play(tmp_path: Path, source: Path, argv: list[str]) -> subprocess.CompletedProcess:
    playbook = tmp_path / "build.yml"
    playbook.write_text(
        f"""
- hosts: localhost
  gather_facts: false
  tasks:
    - release_build:
        source: "{source}"
        exclude: ["static"]
        argv: {argv!r}
      register: built
      ignore_errors: true
    - ansible.builtin.debug:
        msg: "rc={{{{ built.rc }}}} failed={{{{ built.failed }}}} out={{{{ built.stdout_lines }}}}"
"""
    )
    return subprocess.run(
        [
            *(str(BIN / "ansible-playbook"), "-i", "localhost,", "-c", "local", str(playbook)),
            # As Ansible's implicit localhost: the controller's Python (interpreter discovery
            # may find a pyenv shim on PATH, which Mitogen's local connection cannot start).
            *("-e", f"ansible_python_interpreter={sys.executable}"),
        ],
        capture_output=True,
        text=True,
        # The role's plugin, as a play that uses the role finds it (deploy.yml's scenarios run it
        # through the role).
        env=dict(
            os.environ, ANSIBLE_ACTION_PLUGINS=str(ROOT / "roles" / "release" / "action_plugins")
        ),
        cwd=ROOT,
        timeout=120,
    )


def test_the_command_reads_the_archive_and_its_exit_code_decides(tmp_path: Path) -> None:
    source = make_source(tmp_path)
    run = run_build_play(tmp_path, source, ["sh", "-c", "tar -tzf - | sort | tr '\\n' ' '"])
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    listing = "Dockerfile webapp/ webapp/main.py "
    assert f"rc=0 failed=False out=['{listing}']" in run.stdout, run.stdout[-3000:]
    run = run_build_play(tmp_path, source, ["sh", "-c", "cat > /dev/null; echo broken; exit 3"])
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "rc=3 failed=True out=['broken']" in run.stdout, run.stdout[-3000:]


def test_the_engine_builds_the_image_without_the_ignored_files(tmp_path: Path, docker) -> None:  # type: ignore[no-untyped-def]
    """The archive, built by this machine's engine as build.yml builds it (docker build -)."""
    source = tmp_path / "app"
    source.mkdir()
    (source / "Dockerfile").write_text("FROM scratch\nCOPY . /x/\n")
    (source / ".dockerignore").write_text("secret.txt\n")
    (source / "secret.txt").write_text("secret\n")
    (source / "keep.txt").write_text("ok\n")
    archive = tmp_path / "context.tar.gz"
    release_build.pack(str(source), release_source.describe(str(source))["exclude"], str(archive))
    image = f"webstack-unit-ignore:{tmp_path.name.lower()}"
    with archive.open("rb") as context:
        built = subprocess.run(
            ["docker", "build", "--quiet", "--tag", image, "-"],
            stdin=context,
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert built.returncode == 0, built.stderr
    try:
        created = docker("create", image, "none")
        assert created.returncode == 0, created.stderr
        container = created.stdout.strip()
        exported = subprocess.run(
            ["docker", "export", container], capture_output=True, timeout=60, check=True
        )
        docker("rm", container)
        with tarfile.open(fileobj=io.BytesIO(exported.stdout)) as tar:
            files = {name for name in tar.getnames() if name.startswith("x/")}
        assert files == {"x/.dockerignore", "x/Dockerfile", "x/keep.txt"}
    finally:
        docker("image", "rm", image)
