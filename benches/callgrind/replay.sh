#!/usr/bin/env bash
# Instructions per replayed event of the hub (one topic) and of a set of
# ten topics (`hub10`), counted by callgrind: READERS clients (5 unless
# set) reconnect with the position id of a fresh subscription after 1,000
# events were published (`hub10`: 100 to each of its ten topics) and each
# reads all 1,000. Per event = (instructions of that run minus those of the
# same run with no reader) / (READERS x 1,000): publishing cancels.
#
# usage: benches/callgrind/replay.sh     needs: valgrind, curl; about 2 minutes.
readers=${READERS:-5}
source "$(dirname "$0")/common.sh" curl

# Instructions of one run: `kind` (hub or hub10) with `n` readers.
instructions() {
  local kind=$1 n=$2 dir="$work/$1.$2"
  start_server "$kind" "$dir"
  local base="http://127.0.0.1:$port"
  # The position id of a fresh subscription: every event comes after it.
  local id
  id=$(curl -s -N --max-time 5 "$base/sse/live" | grep -m1 '^id: ' | cut -c5- | tr -d '\r' || true)
  [ -n "$id" ] || { echo "no position event from $kind" >&2; exit 1; }
  local query="count=1000"
  [ "$kind" = hub10 ] && query="count=100&spread=1"
  curl -s -X POST "$base/publish?$query" >/dev/null
  local pids=()
  for r in $(seq 1 "$n"); do
    curl -s -N --max-time 60 -H "Last-Event-ID: $id" "$base/sse/live" >"$dir/r$r" &
    pids+=($!)
  done
  for r in $(seq 1 "$n"); do
    for _ in $(seq 1 600); do
      [ "$(grep -c '^data' "$dir/r$r")" -ge 1000 ] && break
      sleep 0.1
    done
    [ "$(grep -c '^data' "$dir/r$r")" -eq 1000 ] || { echo "reader $r of $kind got $(grep -c '^data' "$dir/r$r") events, not 1000" >&2; exit 1; }
  done
  [ ${#pids[@]} -eq 0 ] || kill "${pids[@]}" 2>/dev/null || true
  stop_server "$dir"
}

declare -A per
for kind in hub hub10; do
  quiet=$(instructions "$kind" 0)
  busy=$(instructions "$kind" "$readers")
  per[$kind]=$(( (busy - quiet) / (readers * 1000) ))
  echo "$kind: ${per[$kind]} instructions per replayed event"
done
awk -v s="${per[hub10]}" -v h="${per[hub]}" 'BEGIN { printf "hub10/hub: %.2f\n", s / h }'
