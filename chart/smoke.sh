#!/usr/bin/env bash
# Installs the chart into a throw-away namespace of the cluster in $KUBECONFIG, waits until the
# service pod is Ready under the chart's security settings (non-root, read-only root FS, all
# network policies on), checks the RBAC from inside the cluster, and uninstalls again.
#
#   KUBECONFIG=... JES_IMAGE=registry/repo@sha256:... chart/smoke.sh
#
# JES_IMAGE is the service image as `ko build` prints it (e2e/cluster.sh images writes it to
# e2e.env). Direct API mode is used because the distributor image is not available offline.
set -euo pipefail
: "${KUBECONFIG:?set KUBECONFIG}"
: "${JES_IMAGE:?set JES_IMAGE to repository@sha256:digest}"
[[ "$JES_IMAGE" == *@sha256:* ]] || { echo "smoke: JES_IMAGE must be repository@sha256:digest" >&2; exit 1; }
HELM="${HELM:-$HOME/.cache/jes/tools/bin/helm}"
NS="${NS:-jes-chart-smoke}"
REL=jes-smoke
chart="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

cleanup() {
	"$HELM" uninstall "$REL" -n "$NS" >/dev/null 2>&1 || true
	kubectl delete namespace "$NS" --wait=false >/dev/null 2>&1 || true
}
trap cleanup EXIT

dump() {
	kubectl -n "$NS" get pods -o wide || true
	kubectl -n "$NS" describe pods | tail -30 || true
	kubectl -n "$NS" logs deploy/"$REL"-job-executor-service --tail=50 || true
}

"$HELM" install "$REL" "$chart" -n "$NS" --create-namespace \
	--set image.repository="${JES_IMAGE%@*}" --set image.digest="${JES_IMAGE#*@}" \
	--set distributor.enabled=false \
	--set remoteControlPlane.api.hostname=keptn-api.invalid \
	--set networkPolicy.ingress.enabled=true \
	--set jobConfig.networkPolicy.enabled=true \
	--wait --timeout 120s || { dump; exit 1; }

sa="system:serviceaccount:$NS:$REL-job-executor-service"
fail=0
check() { # check yes|no VERB RESOURCE[/SUBRESOURCE] ("pods/log" alone would mean the pod named log)
	got="$(kubectl auth can-i "$2" "${3%%/*}" --subresource="$( [[ "$3" == */* ]] && echo "${3#*/}")" -n "$NS" --as "$sa" 2>/dev/null || true)"
	if [[ "$got" != "$1" ]]; then echo "smoke: can-i $2 $3 = $got, want $1" >&2; fail=1; fi
}
check yes create jobs.batch
check yes watch jobs.batch
check yes get pods/log
check yes list events
check yes create configmaps
check no get secrets
check no list secrets
check no create pods
got="$(kubectl auth can-i list jobs.batch -n default --as "$sa" 2>/dev/null || true)"
[[ "$got" == no ]] || { echo "smoke: service account reaches other namespaces" >&2; fail=1; }
got="$(kubectl auth can-i --list -n "$NS" --as "system:serviceaccount:$NS:default-job-account" 2>/dev/null | grep -cE '^(jobs|pods|configmaps|secrets)' || true)"
[[ "$got" == 0 ]] || { echo "smoke: job service account has permissions" >&2; fail=1; }

uid="$(kubectl -n "$NS" get pods -l app.kubernetes.io/instance="$REL" -o jsonpath='{.items[0].spec.securityContext.runAsUser}')"
[[ "$uid" == 65532 ]] || { echo "smoke: pod runs as uid $uid" >&2; fail=1; }
(( fail == 0 )) || { dump; exit 1; }
echo "smoke: chart installed, service Ready, RBAC as documented"
