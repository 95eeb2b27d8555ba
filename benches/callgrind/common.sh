# Sourced by the scripts beside it: the load servers built with line
# tables, a work directory removed on exit, and a server started and
# stopped under callgrind.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
export CARGO_TARGET_DIR="$root/benches/load/target"
export CARGO_PROFILE_RELEASE_DEBUG=line-tables-only
for tool in valgrind "$@"; do
  command -v "$tool" >/dev/null || { echo "$tool is not installed" >&2; exit 1; }
done
for server in ours floor; do
  cargo build --release -q --manifest-path "$root/benches/load/servers/$server/Cargo.toml"
done
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# Starts load server `server` (floor, ours, hub: ours with the hub on, or
# hub10: with a set of ten) alone under callgrind with one tokio worker,
# its output in `dir`; sets `pid`, and `port` to the port it listens on.
start_server() {
  local server=$1 dir=$2 program=$1
  local flags=()
  case $server in
    hub) program=ours flags=(LOAD_HUB=1 LOAD_HUB_HISTORY=5000) ;;
    hub10) program=ours flags=(LOAD_HUB=1 LOAD_HUB_HISTORY=5000 LOAD_HUB_SET=10) ;;
  esac
  mkdir -p "$dir"
  mkfifo "$dir/stdin"
  env "${flags[@]}" TOKIO_WORKER_THREADS=1 \
    valgrind --tool=callgrind --callgrind-out-file="$dir/cg" \
    "$CARGO_TARGET_DIR/release/load-server-$program" <"$dir/stdin" >"$dir/port" 2>"$dir/valgrind.log" &
  pid=$!
  exec 9>"$dir/stdin" # the server exits when its stdin closes
  for _ in $(seq 1 600); do [ -s "$dir/port" ] && break; sleep 0.1; done
  port=$(head -1 "$dir/port")
}

# Stops the server `start_server` started and prints its instructions.
stop_server() {
  local dir=$1
  exec 9>&-
  wait "$pid" || true
  awk '/^summary:/ { print $2 }' "$dir/cg"
}
