#!/usr/bin/env bash
# Fails, naming the port and who holds it, when a fixed loopback port a suite needs is
# taken (another server answering a health check there misleads the suite otherwise).
# Usage: tools/ports-free.sh <what needs them> <port>...
set -euo pipefail
what="$1"
shift
taken=0
for port in "$@"; do
	if ! python3 -c 'import socket,sys; s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(("127.0.0.1", int(sys.argv[1])))' "$port" 2>/dev/null; then
		holder="$(ss -Hltnp "sport = :$port" 2>/dev/null | sed -n 's/.*users:((\("[^"]*"\),pid=\([0-9]*\).*/\1 (pid \2)/p' | head -1)"
		echo "port $port is taken${holder:+ by $holder}, and $what cannot run without it: stop that process and run again" >&2
		taken=1
	fi
done
exit "$taken"
