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
n=${N:-1000}
k=${K:-200}
read -r first second <<<"${SERVERS:-floor ours}"
source "$(dirname "$0")/common.sh"
cargo build --release -q --manifest-path "$here/client/Cargo.toml"

# Instructions of one run of `server` with `events` publishes; the hub's
# streams start with a position event.
instructions() {
  local server=$1 events=$2 dir="$work/$1.$2" first=0
  case $server in hub | hub10) first=1 ;; esac
  start_server "$server" "$dir"
  FANCLIENT_FIRST=$first timeout 600 "$CARGO_TARGET_DIR/release/fanclient" "$port" "$n" "$events" "$pid" 0 >/dev/null
  stop_server "$dir"
}

declare -A per
for server in "$first" "$second"; do
  idle=$(instructions "$server" 0)
  busy=$(instructions "$server" "$k")
  per[$server]=$(( (busy - idle) / (n * k) ))
  echo "$server: $(( busy - idle )) instructions for $n x $k deliveries: ${per[$server]} per delivery"
done
awk -v o="${per[$second]}" -v f="${per[$first]}" -v name="$second/$first" 'BEGIN { printf "%s: %.3f\n", name, o / f }'
