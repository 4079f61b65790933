#!/usr/bin/env bash
# make demo: one sample event in, real Jobs run on the local cluster, .started/.finished printed.
# Uses KUBECONFIG when given (and JOB_NAMESPACE, INIT_CONTAINER_IMAGE), else the e2e cluster.
set -euo pipefail
cd "$(dirname "$0")/.."
DIR=${JES_E2E_DIR:-$HOME/.cache/jes-e2e}
PORT=${DEMO_PORT:-18080}
NS=${JOB_NAMESPACE:-jes-demo}

if [ -z "${KUBECONFIG:-}" ]; then
  # The first run builds a lot; what needs the network runs while the CPU compiles: the demo's
  # tools and the service's modules while the Kubernetes modules download and compile, and the
  # service while the cluster starts.
  mkdir -p "$DIR"; bash e2e/cluster.sh deps
  make --no-print-directory demo-tools >"$DIR/demo-tools.log" 2>&1 & tools=$!
  bash e2e/cluster.sh go mod download >/dev/null 2>&1 & fetch=$!
  bash e2e/cluster.sh build
  wait "$tools" || { cat "$DIR/demo-tools.log"; exit 1; }
  wait "$fetch" || true # (a failed download is retried, and reported, by the build)
  echo "==> building the service while the cluster starts (first time 1-2.5 min)"
  bash e2e/cluster.sh go build -o bin/job-executor-service ./cmd/job-executor-service & build=$!
  bash e2e/cluster.sh up
  wait "$build"
  # shellcheck disable=SC1091
  set -a; . "$DIR/e2e.env"; set +a
  KUBECTL=$E2E_KUBECTL
  # The Jobs' init container is this service: its image is the binary just built (no ko, no
  # second compile; make e2e tests the image ko builds).
  INIT_CONTAINER_IMAGE=${INIT_CONTAINER_IMAGE:-$(bash e2e/cluster.sh demoimage bin/job-executor-service)}
else
  KUBECTL=${KUBECTL:-kubectl}
  : "${INIT_CONTAINER_IMAGE:?set INIT_CONTAINER_IMAGE to the image of this service when using your own cluster}"
  go build -o bin/job-executor-service ./cmd/job-executor-service
fi
export KUBECONFIG INIT_CONTAINER_IMAGE
"$KUBECTL" create namespace "$NS" --dry-run=client -o yaml | "$KUBECTL" apply -f - >/dev/null
# The demo event has a fixed id: start from a clean namespace so it runs again.
"$KUBECTL" -n "$NS" delete jobs,configmaps -l app.kubernetes.io/managed-by=job-executor-service --wait=true >/dev/null

log=$(mktemp)
JOB_CONFIG_DIR=$PWD/e2e/demo/config JOB_NAMESPACE=$NS RCV_PORT=$PORT \
  bin/job-executor-service >"$log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null || true; rm -f "$log"' EXIT
for _ in $(seq 1 100); do curl -sf "localhost:$PORT/healthz" >/dev/null && break; sleep 0.1; done

echo "==> POST e2e/demo/event.json (sh.keptn.event.test.triggered) to localhost:$PORT"
curl -sS -D - "localhost:$PORT/" -H 'Content-Type: application/cloudevents+json' -d @e2e/demo/event.json
echo; echo "==> waiting for .finished (Jobs run in namespace $NS)"
for _ in $(seq 1 240); do grep -q '"type":"sh.keptn.event.test.finished"' "$log" && break; sleep 0.5; done
echo "==> outgoing events"
grep '"msg":"outgoing event"' "$log" | jq -c '.event | {type, data}' 2>/dev/null || grep '"msg":"outgoing event"' "$log"
echo "==> Jobs"
"$KUBECTL" -n "$NS" get jobs -l app.kubernetes.io/managed-by=job-executor-service
grep -q '"type":"sh.keptn.event.test.finished".*"status":"succeeded"' "$log" || { echo "demo FAILED; service log:"; cat "$log"; exit 1; }
echo "demo OK. The cluster keeps running for another demo; stop it with: make e2e-cluster-down"
