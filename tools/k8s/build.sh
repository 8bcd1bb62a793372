#!/usr/bin/env bash
# Builds kube-apiserver and kube-controller-manager v1.20.2 for the Kubernetes tests from
# Debian bookworm's `kubernetes` source package (all Go dependencies vendored), once, into
# the directory given (a cache outside the clone). Nothing is downloaded but Debian packages.
# See ../shared/reference/k8s-testenv.md for why this version and the reflect2 fix.
# Usage: tools/k8s/build.sh <output dir>
set -euo pipefail
out="${1:?usage: build.sh <output dir>}"
sudo=""
[ "$(id -u)" = 0 ] || sudo=sudo
# What the tests run beside the built servers: etcd and kubectl, from Debian.
run_need=()
command -v etcd > /dev/null || run_need+=(etcd-server)
command -v kubectl > /dev/null || run_need+=(kubernetes-client)
command -v openssl > /dev/null || run_need+=(openssl)
if [ ${#run_need[@]} -gt 0 ]; then
	echo "==> installing ${run_need[*]}"
	for i in 1 2 3; do
		DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y --no-install-recommends "${run_need[@]}" && break
		$sudo apt-get update -q || true
	done
fi
if [ -x "$out/kube-apiserver" ] && [ -x "$out/kube-controller-manager" ]; then
	exit 0
fi
need=()
for p in golang-go rsync jq etcd-server openssl golang-github-modern-go-reflect2-dev; do
	dpkg -s "$p" > /dev/null 2>&1 || need+=("$p")
done
if [ ${#need[@]} -gt 0 ]; then
	echo "==> installing ${need[*]}"
	for i in 1 2 3; do
		DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y --no-install-recommends "${need[@]}" && break
		$sudo apt-get update -q || true
	done
fi
work="$(mktemp -d "${TMPDIR:-/tmp}/k8s-build-XXXXXX")"
trap 'rm -rf "$work"' EXIT
# A private apt configuration with source lists, so the system's sources stay untouched.
mkdir -p "$work/apt/lists/partial" "$work/apt/archives/partial" "$work/src"
cat > "$work/apt/sources.list" <<LIST
deb-src http://deb.debian.org/debian bookworm main
deb-src http://deb.debian.org/debian-security bookworm-security main
LIST
apt_opts=(-o "Dir::Etc::SourceList=$work/apt/sources.list" -o "Dir::Etc::SourceParts=/dev/null"
	-o "Dir::State::Lists=$work/apt/lists" -o "Dir::Cache::Archives=$work/apt/archives"
	-o "APT::Sandbox::User=root")
echo "==> fetching Debian's kubernetes source package"
apt-get "${apt_opts[@]}" update -q
(cd "$work/src" && apt-get "${apt_opts[@]}" source --download-only kubernetes)
orig="$(ls "$work"/src/kubernetes_*.orig.tar.* | head -1)"
mkdir -p "$work/tree"
tar -xf "$orig" -C "$work/tree" --strip-components=1
cd "$work/tree"
# The vendored reflect2 1.0.1 crashes the apiserver on Go 1.19 ("fatal error: fault"); 1.0.2
# from Debian's package does not.
r2=vendor/github.com/modern-go/reflect2
rm -f "$r2"/*.go "$r2"/*.s
cp /usr/share/gocode/src/github.com/modern-go/reflect2/*.go "$r2"/
cp /usr/share/gocode/src/github.com/modern-go/reflect2/*.s "$r2"/ 2> /dev/null || true
rm -f "$r2"/*_test.go
# Kubernetes 1.20 builds in GOPATH mode.
mkdir -p .go/src/k8s.io
ln -s "$work/tree" .go/src/k8s.io/kubernetes
echo "==> building kube-apiserver and kube-controller-manager (about 6.5 min on 2 cores)"
cd .go/src/k8s.io/kubernetes
GOPATH="$work/tree/.go" CGO_ENABLED=0 GOPROXY=off GOFLAGS= GOCACHE="$work/gocache" \
	make WHAT="cmd/kube-apiserver cmd/kube-controller-manager"
mkdir -p "$out"
for b in kube-apiserver kube-controller-manager; do
	cp "_output/bin/$b" "$out/$b.partial"
	mv "$out/$b.partial" "$out/$b"
done
echo "==> $out: $(ls "$out")"
