#!/usr/bin/env bash
# Instructions per fan-out delivery of the load harness's `ours` (hyper and
# the whole SseLayer) and `floor` (bare hyper) servers, counted by callgrind:
# unlike CPU time on a shared machine, the counts repeat within 0.1 %.
#
# Each server runs alone under valgrind with one tokio worker; the client
# (client/) opens N /sse/live streams and publishes K single events in
# lockstep (the next once every stream has the last), so batching is the
# same in every run. Per delivery = (instructions of the K-event run minus
# those of a 0-event run) / (N x K): connection set-up and teardown cancel.
#
# usage: benches/callgrind/ratio.sh            (N=1000 K=200; N=... K=... to change)
#        SERVERS="hub hub10" benches/callgrind/ratio.sh   (the hub on one topic
#        against a set of ten, issue 25; any two of floor, ours, hub, hub10:
#        the ratio is the second's over the first's)
# needs: valgrind, and about 5 minutes.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
n=${N:-1000}
k=${K:-200}
export CARGO_TARGET_DIR="$root/benches/load/target"
export CARGO_PROFILE_RELEASE_DEBUG=line-tables-only
command -v valgrind >/dev/null || { echo "valgrind is not installed" >&2; exit 1; }
read -r first second <<<"${SERVERS:-floor ours}"
for server in ours floor; do
  cargo build --release -q --manifest-path "$root/benches/load/servers/$server/Cargo.toml"
done
cargo build --release -q --manifest-path "$here/client/Cargo.toml"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# Instructions of one run of `server` with `events` publishes.
instructions() {
  local server=$1 events=$2
  local out="$work/cg.$server.$events" port="$work/port" fifo="$work/stdin"
  rm -f "$port" "$fifo"
  mkfifo "$fifo"
  # hub and hub10 are the ours program with the hub on (one topic, or a
  # set of ten); their streams start with a position event.
  local program=$server hub= set= first=0
  case $server in
    hub) program=ours hub=1 first=1 ;;
    hub10) program=ours hub=1 set=10 first=1 ;;
  esac
  env ${hub:+LOAD_HUB=$hub} ${set:+LOAD_HUB_SET=$set} TOKIO_WORKER_THREADS=1 \
    valgrind --tool=callgrind --callgrind-out-file="$out" \
    "$CARGO_TARGET_DIR/release/load-server-$program" <"$fifo" >"$port" 2>"$work/valgrind.log" &
  local pid=$!
  exec 9>"$fifo" # the server exits when its stdin closes
  for _ in $(seq 1 600); do [ -s "$port" ] && break; sleep 0.1; done
  FANCLIENT_FIRST=$first timeout 600 "$CARGO_TARGET_DIR/release/fanclient" "$(head -1 "$port")" "$n" "$events" "$pid" 0 >/dev/null
  exec 9>&-
  wait "$pid" || true
  awk '/^summary:/ { print $2 }' "$out"
}

declare -A per
for server in "$first" "$second"; do
  idle=$(instructions "$server" 0)
  busy=$(instructions "$server" "$k")
  per[$server]=$(( (busy - idle) / (n * k) ))
  echo "$server: $(( busy - idle )) instructions for $n x $k deliveries: ${per[$server]} per delivery"
done
awk -v o="${per[$second]}" -v f="${per[$first]}" -v name="$second/$first" 'BEGIN { printf "%s: %.3f\n", name, o / f }'
