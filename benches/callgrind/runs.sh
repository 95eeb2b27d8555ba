#!/usr/bin/env bash
# Instructions per run token of the load harness's `ours` (the hub's runs
# behind the whole SseLayer) and `floor` (bare hyper, a channel per run)
# servers, counted by callgrind: RUNS runs (100 unless set) start at once,
# each streaming 100 tokens of 64 B at 100 a second to its POST, read to
# the end. Per token = (instructions of that run minus those of the same
# runs with one token each) / (RUNS x 100): starting, ending and the
# connections cancel.
#
# usage: benches/callgrind/runs.sh     needs: valgrind, curl; about 2 minutes.
runs=${RUNS:-100}
source "$(dirname "$0")/common.sh" curl

# Instructions of one run of `server` with `tokens` tokens per run.
instructions() {
  local server=$1 tokens=$2 dir="$work/$1.$2"
  start_server "$server" "$dir"
  local url="http://127.0.0.1:$port/runs?tokens=$tokens&rate=100&bytes=64"
  local pids=()
  for r in $(seq 1 "$runs"); do
    curl -s -N --max-time 120 -X POST "$url" >"$dir/r$r" &
    pids+=($!)
  done
  wait "${pids[@]}" || true
  for r in $(seq 1 "$runs"); do
    # Each token's data line, and the end event's.
    [ "$(grep -c '^data' "$dir/r$r")" -eq $((tokens + 1)) ] ||
      { echo "run $r on $server: $(grep -c '^data' "$dir/r$r") data lines, not $((tokens + 1))" >&2; exit 1; }
  done
  stop_server "$dir"
}

declare -A per
for server in floor ours; do
  short=$(instructions "$server" 1)
  long=$(instructions "$server" 101)
  per[$server]=$(( (long - short) / (runs * 100) ))
  echo "$server: ${per[$server]} instructions per token"
done
awk -v o="${per[ours]}" -v f="${per[floor]}" 'BEGIN { printf "ours/floor: %.3f\n", o / f }'
