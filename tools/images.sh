#!/usr/bin/env bash
# Builds the server, operator and runner images offline and smoke-tests each (make images):
#   1. base images made from Debian packages with mmdebstrap (no registry is reachable) and
#      imported with podman: localhost/ambient-base (CA certificates; the operator),
#      localhost/ambient-server-base (+ git: the workflow catalogue) and
#      localhost/ambient-runner-base (+ git, ssh client, Node.js);
#   2. the three images from deploy/images/Containerfile.* with `buildah bud --isolation
#      chroot`, from a context of the release binaries, the UI's assets and the pinned CLI;
#   3. each run once with podman (runc; crun refuses this VM's cgroups): the server answers
#      /health and has git, the operator prints its help, the runner image has claude and git.
set -euo pipefail
cd "$(dirname "$0")/.."
tag="${IMAGE_TAG:-latest}"
work="$(mktemp -d "${TMPDIR:-/tmp}/ambient-images-XXXXXX")"
trap 'rm -rf "$work"' EXIT
run=(podman run --rm --runtime runc --ulimit nofile=4096:4096 --ulimit nproc=4096:4096 --network host)

base() {
	local name="$1" packages="$2"
	if ! podman image exists "localhost/$name:bookworm"; then
		echo "==> $name from Debian bookworm (mmdebstrap)"
		mmdebstrap --quiet --variant=minbase --include="$packages" bookworm "$work/$name.tar" \
			http://deb.debian.org/debian
		podman import "$work/$name.tar" "localhost/$name:bookworm" > /dev/null
		rm -f "$work/$name.tar"
	fi
}
base ambient-base ca-certificates
# The server clones the workflow catalogue with git.
base ambient-server-base ca-certificates,git
base ambient-runner-base ca-certificates,git,openssh-client,nodejs

ctx="$work/context"
mkdir -p "$ctx"
cp target/release/server target/release/operator target/release/runner "$ctx/"
cp -r target/site "$ctx/site"
mkdir -p "$ctx/claude-code"
cp -r tools/claude-code/node_modules "$ctx/claude-code/node_modules"
for image in server operator runner; do
	echo "==> localhost/ambient-$image:$tag"
	buildah bud --quiet --isolation chroot -f "deploy/images/Containerfile.$image" \
		-t "localhost/ambient-$image:$tag" "$ctx" > /dev/null
done

echo "==> smoke tests"
port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
data="$work/data"
mkdir -p "$data"
chmod 777 "$data"
name="ambient-smoke-$$"
"${run[@]}" -d --name "$name" -v "$data:/data" -e AMBIENT_MODE=local \
	-e AMBIENT_ADDR="127.0.0.1:$port" "localhost/ambient-server:$tag" > /dev/null
ok=""
for _ in $(seq 1 100); do
	if curl -fsS "http://127.0.0.1:$port/health" > /dev/null 2>&1; then ok=1; break; fi
	sleep 0.1
done
podman rm -f "$name" > /dev/null 2>&1 || true
[ -n "$ok" ] || { echo "the server image did not answer /health"; exit 1; }
echo "ok: server answers /health"
"${run[@]}" --entrypoint git "localhost/ambient-server:$tag" --version > /dev/null
echo "ok: server image has git (the workflow catalogue)"
"${run[@]}" "localhost/ambient-operator:$tag" --help > /dev/null
echo "ok: operator runs"
"${run[@]}" --entrypoint git "localhost/ambient-runner:$tag" --version
"${run[@]}" --entrypoint /opt/claude-code/node_modules/.bin/claude "localhost/ambient-runner:$tag" --version
# Without a session's environment the runner refuses to start, saying why (exit 2).
out="$("${run[@]}" "localhost/ambient-runner:$tag" 2>&1 || true)"
grep -q "configuration error" <<< "$out" || { echo "the runner did not run: $out"; exit 1; }
echo "ok: runner image has git, claude and the runner"
