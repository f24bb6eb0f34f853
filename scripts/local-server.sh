#!/usr/bin/env bash
# A local throwaway "server": a systemd container with the same settings as the molecule
# scenario, NGINX's ports published on 127.0.0.1 only. `up` creates it, `down` removes it
# with its Docker volume.
set -euo pipefail
NAME=${LOCAL_SERVER:-webstack-local}
IMAGE=webstack-server:bookworm
case "${1:-}" in
  up)
    if ! docker container inspect "$NAME" >/dev/null 2>&1; then
      docker run -d --name "$NAME" --hostname "$NAME" \
        --cap-add SYS_ADMIN --cap-add NET_ADMIN --cap-add SYS_PTRACE --cap-add SYS_MODULE \
        --cap-add MKNOD --cap-add NET_RAW --cap-add SYS_CHROOT --cap-add SETFCAP \
        --cap-add AUDIT_WRITE --cap-add IPC_LOCK \
        --security-opt seccomp=unconfined --security-opt apparmor=unconfined \
        --cgroupns=host -v /sys/fs/cgroup:/sys/fs/cgroup:rw \
        -v "$NAME-docker:/var/lib/docker" --tmpfs /run --tmpfs /run/lock \
        --stop-signal SIGRTMIN+3 \
        -p "127.0.0.1:${LOCAL_HTTP_PORT:-8080}:80" -p "127.0.0.1:${LOCAL_HTTPS_PORT:-8443}:443" \
        "$IMAGE" /lib/systemd/systemd >/dev/null
    fi
    docker start "$NAME" >/dev/null
    # systemd needs a few seconds before Ansible can use the server.
    for _ in $(seq 30); do
      state=$(docker exec "$NAME" systemctl is-system-running 2>/dev/null || true)
      [[ $state == running || $state == degraded ]] && exit 0
      sleep 1
    done
    echo "the server container did not finish booting" >&2; exit 1
    ;;
  down)
    docker rm -f "$NAME" >/dev/null 2>&1 || true
    docker volume rm "$NAME-docker" >/dev/null 2>&1 || true
    ;;
  *) echo "usage: $0 up|down" >&2; exit 2 ;;
esac
