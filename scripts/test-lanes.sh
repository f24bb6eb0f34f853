#!/usr/bin/env bash
# Run the unit tests and the molecule scenarios in lanes at once. A scenario spends part of its
# time waiting (for a server to boot, a health check, a load window); a deploy, a converge and
# the load are CPU work. On two cores, two lanes keep the cores about 83% busy. Three lanes
# of scenarios were once 6% faster (1263 s against 1339 s) but kept them 95% busy, and a crash
# test then once met a response cut mid-body. Measured again at 316161e, three lanes ('unit
# swarm' 'release' 'anyapp default') lost: each scenario took 1.5 to 2 times as long as beside
# one other lane (anyapp's tests 611 s against 361 s, swarm's converge 254 s against 129 s),
# and at 1140 s, when it was stopped, default (346 s alone) was still in the converge it began
# at 923 s, where two lanes had finished in 1288 s. Once more under Mitogen (ansible.cfg), which
# took a third of the controller's work away: three lanes ('unit swarm' 'release' 'anyapp
# default') took anyapp's tests 564 s against 323 s, swarm's idempotence 211 s against 36 s, and
# release was still in its tests at 1062 s, when it was stopped; two lanes had ended in
# 1155 s. make test keeps two. A third lane runs only the
# linters: it ends within a minute, while the other two provision their first servers, and
# no load test runs beside it. Each lane has its own server names and loopback ports, so
# lanes never touch each other's containers.
#
#   scripts/test-lanes.sh 'unit anyapp swarm' 'release default' 'lint'   (make test)
#
# A lane is a list of steps: `unit` (pytest), `lint` (the linters, make checks) or a molecule
# scenario's name. A lane stops at its first failing step; the others go on, so one run shows
# every failing lane. Each line of output is prefixed with its lane and the seconds since the
# run began; the end prints every step's result and duration.
set -uo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-$PWD/.venv/bin}
export PATH=$BIN:$PATH
results=$(mktemp -d)
start=$(date +%s)
trap 'rm -rf "$results"' EXIT

lane() {
  local name=$1 step start rc
  shift
  for step in "$@"; do
    start=$(date +%s)
    if [[ $step == unit ]]; then
      "$BIN/pytest" -q --durations=15 app/tests tests
    elif [[ $step == lint ]]; then
      make --no-print-directory checks BIN="$BIN"
    else
      molecule test -s "$step"
    fi
    rc=$?
    echo "$name $step rc=$rc $(($(date +%s) - start))s" >>"$results/steps"
    ((rc == 0)) || return "$rc"
  done
}

# Prefix each line with its lane and the seconds since the start of the run: where a step's
# time goes shows in the log itself.
stamp() {
  local line now
  while IFS= read -r line; do
    printf -v now '%(%s)T' -1
    printf '[%s %4d] %s\n' "$1" $((now - start)) "$line"
  done
}

run_lane() {
  local name=$1 steps=$2
  shift 2
  # shellcheck disable=SC2086  # a lane's steps are words
  (export "$@"; lane "$name" $steps) 2>&1 | stamp "$name"
  return "${PIPESTATUS[0]}"
}

# A run cut short (a crash, ^C) can leave a server holding a lane's port, which another lane's
# next scenario would then fail to publish: start with none of the lanes' servers.
stale=$(docker ps -aq --filter name='^webstack-molecule-(server|[b-z])$' \
  --filter name='^webstack-swarm(-[b-z])?-[0-9]+$')
[[ -z $stale ]] || docker rm -f $stale >/dev/null
# Lane a: the default names and ports (those of a plain `molecule test`). Lanes b, c, ...: their
# own server names and ports, 100 apart. WEBSTACK_LANE names the lane; it also keeps run_lane's
# `export "$@"` from being a bare `export`, which would print the environment instead.
names=(a b c d e f)
pids=()
(($# <= ${#names[@]})) || { echo "at most ${#names[@]} lanes" >&2; exit 2; }
for i in $(seq 0 $(($# - 1))); do
  name=${names[$i]}
  steps=${*:$((i + 1)):1}
  if ((i == 0)); then
    run_lane a "$steps" WEBSTACK_LANE=a &
  else
    run_lane "$name" "$steps" WEBSTACK_LANE="$name" \
      WEBSTACK_SERVER_NAME="webstack-molecule-$name" WEBSTACK_SWARM_NAME="webstack-swarm-$name" \
      WEBSTACK_HTTP_PORT=$((18080 + 100 * i)) WEBSTACK_HTTPS_PORT=$((18443 + 100 * i)) &
  fi
  pids+=($!)
done
rcs=()
failed=0
for i in "${!pids[@]}"; do
  wait "${pids[$i]}"
  rc=$?
  rcs+=("lane ${names[$i]} rc=$rc")
  ((rc == 0)) || failed=1
done

echo
echo "== steps (lane, step, exit code, seconds)"
cat "$results/steps"
echo "== all lanes: $(($(date +%s) - start))s; ${rcs[*]}"
((failed == 0))
