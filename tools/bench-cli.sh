#!/bin/sh
# The `ambient` client's own cost, on a local-mode server with the mock model (release
# build): start-up and one REST call (`sessions list`), and `logs -f` on a finished session
# (attach, replay, decide it is over). Prints the median and the worst of N runs, and the
# client's peak RSS. Usage: tools/bench-cli.sh [runs]   (after `make build`)
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
runs=${1:-20}
bin=$root/target/release
dir=$(mktemp -d)
mock_port=3291
port=3290
"$bin/mock-anthropic" --addr 127.0.0.1:$mock_port > "$dir/mock.log" 2>&1 &
mock=$!
AMBIENT_ADDR=127.0.0.1:$port AMBIENT_DATA_DIR="$dir/data" AMBIENT_STOP_RUNNERS_ON_EXIT=true \
	AMBIENT_CLAUDE_BIN="$root/tools/claude-code/node_modules/.bin/claude" \
	ANTHROPIC_API_KEY=sk-bench ANTHROPIC_BASE_URL=http://127.0.0.1:$mock_port \
	"$bin/server" > "$dir/server.log" 2>&1 &
server=$!
trap 'kill $server $mock 2>/dev/null; wait $server $mock 2>/dev/null; rm -rf "$dir"' EXIT
for _ in $(seq 100); do curl -fsS http://127.0.0.1:$port/health > /dev/null 2>&1 && break; sleep 0.1; done
export AMBIENT_CONFIG="$dir/config.json" AMBIENT_URL=http://127.0.0.1:$port
AMBIENT_KEY=$(cat "$dir/data/install-secret")
export AMBIENT_KEY
name=$("$bin/ambient" sessions create "create hello.txt" -o json | sed 's/.*"name":"\([^"]*\)".*/\1/')
"$bin/ambient" logs -f "$name" > /dev/null
events=$("$bin/ambient" logs "$name" -o json | wc -l)
measure() {
	label=$1; shift
	: > "$dir/times"
	for _ in $(seq "$runs"); do
		start=$(date +%s%N)
		/usr/bin/time -f "%M" -o "$dir/rss" "$@" > /dev/null
		end=$(date +%s%N)
		echo "$(( (end - start) / 1000 )) $(cat "$dir/rss")" >> "$dir/times"
	done
	sort -n "$dir/times" | awk -v label="$label" -v n="$runs" '
		{ t[NR] = $1 / 1000; m = ($2 > m ? $2 : m) }
		END { printf "%-40s n=%d  median %.1f ms  max %.1f ms  peak RSS %.1f MiB\n", label, n, t[int((n + 1) / 2)], t[n], m / 1024 }'
}
measure "ambient sessions list" "$bin/ambient" sessions list
measure "ambient logs -f (finished, $events events)" "$bin/ambient" logs -f "$name"
measure "ambient export ($events events)" "$bin/ambient" export "$name"
