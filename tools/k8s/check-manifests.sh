#!/usr/bin/env bash
# The manifests in deploy/, checked three ways (run by `make unit` on the test API server):
#   1. `kubectl kustomize` builds each overlay;
#   2. `kubernetes-validate --strict` (PyPI) accepts what each builds, the examples and the
#      optional admission policies (deploy/policies);
#   3. the CRDs are applied for real (a server that refuses them fails this), then every
#      overlay and example passes `kubectl apply --dry-run=server`. Kinds this API server
#      does not serve (OpenShift's Route) are left out of step 3 only.
# Usage: tools/k8s/check-manifests.sh <kubeconfig> <kubernetes-validate executable>
set -euo pipefail
kubeconfig="${1:?kubeconfig}"
validate="${2:?kubernetes-validate}"
cd "$(dirname "$0")/../.."
k=(kubectl --kubeconfig "$kubeconfig")
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
for overlay in dev openshift; do
	kubectl kustomize "deploy/overlays/$overlay" > "$out/$overlay.yaml"
	"$validate" --strict --quiet "$out/$overlay.yaml"
	echo "ok: overlay $overlay builds and validates"
done
"$validate" --strict --quiet deploy/examples/*.yaml
echo "ok: examples validate"
# The optional admission policies (Kubernetes 1.30+): schema only, as this 1.20 API server
# serves no ValidatingAdmissionPolicy (their CEL is not checked here).
kubectl kustomize deploy/policies > "$out/policies.yaml"
"$validate" --strict --quiet "$out/policies.yaml"
echo "ok: the admission policies build and validate"
"${k[@]}" apply --server-side --force-conflicts -k deploy/crds > /dev/null
"${k[@]}" wait --for=condition=Established --timeout=30s \
	crd/agenticsessions.vteam.ambient-code crd/projectsettings.vteam.ambient-code > /dev/null
echo "ok: the API server accepts the CRDs"
# A dry run cannot create the namespaces the other objects go in: make them for real.
for ns in ambient-code demo; do
	"${k[@]}" create namespace "$ns" --dry-run=client -o yaml | "${k[@]}" apply -f - > /dev/null
done
for overlay in dev openshift; do
	python3 - "$out/$overlay.yaml" > "$out/$overlay-served.yaml" <<'PY'
import sys
docs = open(sys.argv[1]).read().split("\n---\n")
print("\n---\n".join(d for d in docs if "\nkind: Route\n" not in "\n" + d + "\n"))
PY
	"${k[@]}" apply --dry-run=server -f "$out/$overlay-served.yaml" > /dev/null
	echo "ok: overlay $overlay passes a server-side dry run"
done
"${k[@]}" apply --dry-run=server -f deploy/examples/ > /dev/null
echo "ok: examples pass a server-side dry run"
