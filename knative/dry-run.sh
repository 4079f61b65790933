#!/usr/bin/env bash
# Server-side dry-run of the Knative manifests in this directory against the real Knative CRDs.
#
#   KUBECONFIG=/path/to/kubeconfig knative/dry-run.sh
#
# Installs (kubectl apply) the Serving and Eventing CRDs into the cluster KUBECONFIG points to,
# taking them from the knative.dev/serving and knative.dev/eventing Go modules. The modules are
# downloaded once into their own module cache under ${JES_CACHE:-$HOME/.cache/jes}/knative (the
# project's go.mod and module cache stay untouched; later runs need no network), and the CRDs
# are applied only when the installed ones are not marked with these versions. The manifests' namespace (keptn) is rewritten to a throw-away namespace that is
# created for the check and deleted afterwards, so nothing else in the cluster is touched; the
# CRDs stay installed (they are inert without the Knative controllers). Where only the CRDs are
# installed their schemas alone validate the objects; on the e2e cluster (cluster.sh knative)
# Eventing's admission webhooks check the Triggers and the SinkBinding too.
set -euo pipefail

: "${KUBECONFIG:?set KUBECONFIG to the cluster to validate against}"
SERVING_VERSION="${SERVING_VERSION:-v0.51.0}"
EVENTING_VERSION="${EVENTING_VERSION:-v0.50.0}"
NAMESPACE="${NAMESPACE:-jes-knative-dry-run}"
CACHE="${JES_CACHE:-$HOME/.cache/jes}/knative"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
export PATH="/usr/local/go/bin:$PATH"

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$CACHE"

# moddir MODULE@VERSION: prints the unpacked module directory (from the cache after the first run).
moddir() {
	(cd "$tmp" && GOMODCACHE="$CACHE/mod" GOFLAGS=-modcacherw GOWORK=off go mod download -json "$1") |
		sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p'
}

# The CRDs carry this annotation once applied, so an unchanged cluster is not re-applied.
marker="serving=$SERVING_VERSION,eventing=$EVENTING_VERSION"
have="$(kubectl get crd triggers.eventing.knative.dev -o jsonpath='{.metadata.annotations.jes\.keptn\.sh/knative-crds}' 2>/dev/null || true)"
if [[ "$have" == "$marker" ]]; then
	echo "dry-run: Knative CRDs ($marker) already installed"
else
	serving="$(moddir "knative.dev/serving@$SERVING_VERSION")"
	eventing="$(moddir "knative.dev/eventing@$EVENTING_VERSION")"
	[[ -d "$serving" && -d "$eventing" ]] || { echo "dry-run: could not download the Knative modules" >&2; exit 1; }

	# CRD files: serving keeps them in config/core/300-resources, eventing in config/core/resources.
	crds=()
	for f in "$serving"/config/core/300-resources/*.yaml "$eventing"/config/core/resources/*.yaml; do
		grep -q '^kind: CustomResourceDefinition' "$f" && crds+=("$f")
	done
	(( ${#crds[@]} > 0 )) || { echo "dry-run: no CRDs found in the Knative modules" >&2; exit 1; }
	echo "dry-run: installing ${#crds[@]} Knative CRD files (serving $SERVING_VERSION, eventing $EVENTING_VERSION)"
	for f in "${crds[@]}"; do
		kubectl apply --server-side --force-conflicts -f "$f" >/dev/null
	done
	for crd in services.serving.knative.dev triggers.eventing.knative.dev brokers.eventing.knative.dev sinkbindings.sources.knative.dev; do
		kubectl wait --for=condition=Established --timeout=60s "crd/$crd" >/dev/null
	done
	# Marked last: an interrupted install is redone next time.
	kubectl annotate --overwrite crd triggers.eventing.knative.dev "jes.keptn.sh/knative-crds=$marker" >/dev/null
fi

created=""
# A previous run's namespace may still be terminating; nothing can be created in it.
if [[ "$(kubectl get namespace "$NAMESPACE" -o jsonpath='{.status.phase}' 2>/dev/null || true)" == Terminating ]]; then
	kubectl wait --for=delete --timeout=60s "namespace/$NAMESPACE" >/dev/null
fi
if ! kubectl get namespace "$NAMESPACE" >/dev/null 2>&1; then
	kubectl create namespace "$NAMESPACE" >/dev/null
	created=1
fi
cleanup() {
	[[ -z "$created" ]] || kubectl delete namespace "$NAMESPACE" --wait=false >/dev/null 2>&1 || true
	rm -rf "$tmp"
}
trap cleanup EXIT

echo "dry-run: kubectl apply --dry-run=server -f $here (namespace keptn -> $NAMESPACE)"
for f in "$here"/*.yaml; do
	echo "---"
	sed "s/^\([[:space:]]*namespace:\) keptn\$/\1 $NAMESPACE/" "$f"
done >"$tmp/all.yaml"
kubectl apply --dry-run=server -f "$tmp/all.yaml"
