#!/usr/bin/env bash
# Fuzzes the REST API from its own OpenAPI document (schemathesis): a release server on a
# loopback port with a fresh data directory, signed in with its install secret: no 5xx,
# every status and body as documented, no schema-valid request refused. Links in the
# document lead from created projects and sessions to what can be done with them.
# The generator's own health check that too many of its examples were filtered out (the
# workspace path's pattern) is not a finding about the API: suppressed.
# Every check but negative_data_rejection: serde reads a struct from an array of its fields
# (`"llmSettings": [null, null]` is taken as no settings), and limits counted in bytes are
# stated as lengths; the server is lenient there, never wrong.
# Usage: tools/fuzz-api.sh <schemathesis> [extra schemathesis options]
set -euo pipefail
st="$1"
shift
root="$(cd "$(dirname "$0")/.." && pwd)"
# A free port unless one is given; a given one must be free (another server answering
# the health check there would be fuzzed instead).
port="${AMBIENT_FUZZ_PORT:-$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}"
"$root/tools/ports-free.sh" "the API fuzzer" "$port"
dir="$(mktemp -d "${TMPDIR:-/tmp}/ambient-fuzz-XXXXXX")"
server_pid=""
cleanup() {
	if [ -n "$server_pid" ]; then
		kill "$server_pid" 2>/dev/null || true
		wait "$server_pid" 2>/dev/null || true
	fi
	rm -rf "$dir"
}
trap cleanup EXIT
# No local driver: sessions are records here (the API is what is fuzzed, not the agent).
# A workflow catalogue of one workflow, on this machine.
mkdir -p "$dir/catalogue/workflows/bugfix/.ambient"
echo '{"name": "Bug fix"}' > "$dir/catalogue/workflows/bugfix/.ambient/ambient.json"
git -C "$dir/catalogue" init --quiet --initial-branch=main
git -C "$dir/catalogue" add --all
git -C "$dir/catalogue" -c user.name=fuzz -c user.email=fuzz@example.com commit --quiet -m catalogue
AMBIENT_WORKFLOW_CATALOGUE="file://$dir/catalogue" \
AMBIENT_ADDR="127.0.0.1:$port" AMBIENT_DATA_DIR="$dir/data" AMBIENT_LOCAL_DRIVER=false \
	RUST_LOG=warn "$root/target/release/server" > "$dir/server.log" 2>&1 &
server_pid=$!
for _ in $(seq 1 100); do
	if ! kill -0 "$server_pid" 2>/dev/null; then
		echo "the server exited before it answered on 127.0.0.1:$port:" >&2
		tail -20 "$dir/server.log" >&2
		exit 1
	fi
	curl -fsS "http://127.0.0.1:$port/health" > /dev/null 2>&1 && break
	sleep 0.1
done
if [ ! -s "$dir/data/install-secret" ]; then
	echo "the server on 127.0.0.1:$port did not come up within 10 s:" >&2
	tail -20 "$dir/server.log" >&2
	exit 1
fi
key="$(cat "$dir/data/install-secret")"
cd "$dir"
status=0
"$st" run "http://127.0.0.1:$port/api/openapi.json" \
	--header "Authorization: Bearer $key" \
	--checks all \
	--exclude-checks negative_data_rejection \
	--generation-with-security-parameters false \
	--suppress-health-check=filter_too_much \
	--exclude-tag realtime \
	--max-examples "${AMBIENT_FUZZ_EXAMPLES:-50}" \
	--seed "${AMBIENT_FUZZ_SEED:-20261126}" \
	--no-color \
	"$@" || status=$?
if [ "$status" != 0 ]; then
	echo "--- server log ---"
	tail -50 "$dir/server.log"
fi
exit "$status"
