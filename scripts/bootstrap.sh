#!/usr/bin/env bash
# Prepare this machine to run the stack and its tests, from nothing but Debian and PyPI:
# a Docker engine, a Python venv with Ansible and the test tools, the Debian base image
# (no registry is reachable, so it is made with debootstrap), the "server" image that
# stands in for a fresh Debian 12 server, and that server with Debian's Docker installed.
# Safe to run again: every step checks first. A server image is built again when its
# directory under images/ changed (the image carries the directory's digest as a label);
# REBUILD_SERVER=1 builds both again anyway (a newer Debian, say).
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$(pwd)
VENV=${VENV:-$ROOT/.venv}
CACHE=$ROOT/.cache
BASE_IMAGE=debian:bookworm-slim
BASE_ARCHIVE=$CACHE/images/debian-bookworm-slim.tar
SERVER_IMAGE=webstack-server:bookworm
DOCKER_SERVER_IMAGE=webstack-server:bookworm-docker

log() { printf '\n== %s\n' "$*"; }
as_root() { if [[ $(id -u) -eq 0 ]]; then "$@"; else sudo "$@"; fi; }

apt_packages=()
command -v dockerd >/dev/null || apt_packages+=(docker.io)
command -v debootstrap >/dev/null || apt_packages+=(debootstrap)
command -v socat >/dev/null || apt_packages+=(socat)
command -v curl >/dev/null || apt_packages+=(curl)
# The venv needs Python's venv and ensurepip modules, which Debian and Ubuntu package apart
# (python3-venv; a minimal image has no Python at all).
/usr/bin/python3 -c 'import ensurepip, venv' 2>/dev/null || apt_packages+=(python3-venv)
if ((${#apt_packages[@]})); then
  log "Installing ${apt_packages[*]}"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    "${apt_packages[@]}" >/dev/null
fi

if ! docker info >/dev/null 2>&1; then
  log "Starting the Docker engine"
  # No systemd here: start dockerd ourselves and wait until it answers.
  as_root bash -c 'setsid dockerd >/var/log/dockerd.log 2>&1 < /dev/null &'
  for _ in $(seq 60); do docker info >/dev/null 2>&1 && break; sleep 1; done
  docker info >/dev/null
fi

# Debian's own Python when it has the venv module (python3-venv): Ansible's controller, which
# does most of the work in a test run, took 10% less CPU for the same deploy here than with a
# Python built from source by pyenv without profile-guided optimisation (6.7-7.2 s against
# 7.4-8.0 s). PYTHON=... chooses another.
if [[ -z ${PYTHON:-} ]]; then
  PYTHON=python3
  if /usr/bin/python3 -c 'import ensurepip, sys, venv; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
    PYTHON=/usr/bin/python3
  fi
fi
# The venv is made again when the requirements or the Python behind it change.
# "compiled": venvs made before their modules were byte-compiled are made again.
venv_stamp=$(cat requirements.txt; "$PYTHON" -c 'import sys; print("# python", sys.executable, sys.version)'
  echo "# compiled")
if [[ ! -x $VENV/bin/ansible-playbook ]] || [[ $venv_stamp != "$(cat "$VENV/.requirements.txt" 2>/dev/null)" ]]; then
  log "Installing Python packages into $VENV"
  # --clear empties a venv made before (another Python's); any other directory is left as it is.
  venv_options=()
  [[ ! -e $VENV/pyvenv.cfg ]] || venv_options=(--clear)
  "$PYTHON" -m venv "${venv_options[@]}" "$VENV"
  # pip's own byte-compiling goes one file after another through every file, the ~15,000 of
  # the collections bundled with ansible included. Those are never read as bytecode: Ansible
  # loads collection code from source whatever is on disk. The rest is compiled below, on
  # both cores. Python would compile a module when a run first imports it, but not where
  # PYTHONDONTWRITEBYTECODE is set (as on the test machines here): then every
  # ansible-playbook compiled its ~350 imports again, 0.35 s of CPU a run, and each deploy
  # took 0.6 s more of the controller's CPU (9.9 s against 9.3 s).
  "$VENV/bin/pip" install -q --no-compile -r requirements.txt
  # A file that does not compile only costs speed: its module is compiled at each import.
  "$VENV/bin/python" -m compileall -q -j 0 -x '/ansible_collections/' "$VENV/lib" >/dev/null ||
    echo "Some modules in $VENV were not byte-compiled: runs compile them when they import them" >&2
  printf '%s\n' "$venv_stamp" >"$VENV/.requirements.txt"
fi
# Offline on purpose: the ansible package already bundles every collection we need.
"$VENV/bin/ansible-galaxy" collection install -r requirements.yml >/dev/null

if ! docker image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
  log "Making $BASE_IMAGE with debootstrap"
  rootfs=$(mktemp -d)
  as_root debootstrap --variant=minbase bookworm "$rootfs" http://deb.debian.org/debian >/dev/null
  as_root tar -C "$rootfs" -c . | docker import - "$BASE_IMAGE" >/dev/null
  as_root rm -rf "$rootfs"
  rm -f "$BASE_ARCHIVE"
fi
if [[ ! -s $BASE_ARCHIVE ]]; then
  mkdir -p "$(dirname "$BASE_ARCHIVE")"
  docker save -o "$BASE_ARCHIVE" "$BASE_IMAGE"
fi

# The digest of a build directory, and the one the image built from it carries.
context_digest() {
  (cd "$1" && find . -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum) \
    | sha256sum | cut -d' ' -f1
}
image_digest() {
  docker image inspect -f '{{index .Config.Labels "webstack.context"}}' "$1" 2>/dev/null || true
}

digest=$(context_digest images/server)
if [[ $(image_digest "$SERVER_IMAGE") != "$digest" || -n ${REBUILD_SERVER:-} ]]; then
  log "Building the server image $SERVER_IMAGE"
  docker build -q --label "webstack.context=$digest" -t "$SERVER_IMAGE" images/server >/dev/null
  docker image rm "$DOCKER_SERVER_IMAGE" >/dev/null 2>&1 || true
fi
digest=$(context_digest images/server-docker)
if [[ $(image_digest "$DOCKER_SERVER_IMAGE") != "$digest" ]]; then
  log "Building the server image with Docker installed, $DOCKER_SERVER_IMAGE"
  docker build -q --build-arg SERVER_IMAGE="$SERVER_IMAGE" --label "webstack.context=$digest" \
    -t "$DOCKER_SERVER_IMAGE" images/server-docker >/dev/null
fi
log "Ready"
