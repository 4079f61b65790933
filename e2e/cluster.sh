#!/bin/bash
# e2e/cluster.sh - a real single-node Kubernetes cluster for the e2e tests (etcd, kube-apiserver,
# controller-manager, scheduler, kubelet, kube-proxy, containerd + runc, CNI bridge) built from the
# Go module proxy and Debian packages, plus a local image registry that containerd uses as the
# docker.io mirror. Adapted from /work/shared/reference/local-k8s-cluster.sh.
#
#   e2e/cluster.sh up       idempotent: deps → build → certs → configs → start → images → Ready;
#                           a half-dead cluster (killed run, stale pids/ports/mounts) is cleaned first
#   e2e/cluster.sh images   (re)push the test images and build+push the service image with ko
#   e2e/cluster.sh down     stop everything and remove host-level leftovers (bridge, iptables, mounts)
#   e2e/cluster.sh status   component states; exit 0 only when the cluster is healthy
#   e2e/cluster.sh purge    down + delete cluster state (keeps binaries and Go caches)
#   e2e/cluster.sh env      print the file the tests read ($DIR/e2e.env)
#   e2e/cluster.sh demoimage BINARY   (make demo) push the service image made from BINARY, print its ref
#   e2e/cluster.sh go ARGS  go in the repository with the cluster's caches and flags (make demo)
#   e2e/cluster.sh addons   (make e2e, not the demo) cluster DNS (CoreDNS, Service kube-dns at
#                           10.96.0.10) and NetworkPolicy enforcement (kube-router's firewall
#                           controller as a host process); built once, like the Kubernetes binaries
#   e2e/cluster.sh knative  (make e2e, not the demo) Knative Eventing: controller, webhook, in-memory
#                           channel, MT channel-based Broker, built with ko from knative.dev/eventing
#                           and applied from its config/; built once, then pushed again and checked
#
# Env: JES_E2E_DIR (default ~/.cache/jes-e2e): binaries in $DIR/bin, Go caches in $DIR/gomod, $DIR/gocache.
#
# Machine quirk: no CAP_SYS_RESOURCE, so any negative oom_score_adj is EACCES. Without containerd's
# `restrict_oom_score_adj = true` and kubelet's `oomScoreAdj: 0` no pod sandbox ever starts.
set -euo pipefail

# ---- pinned versions (the one place to change them) ----------------------------------------------
K8S_VERSION=v1.34.5          # k8s.io/kubernetes; staging modules pinned to v0.34.5
ETCD_VERSION=v3.6.8          # go.etcd.io/etcd/server/v3
PAUSE_IMAGE=registry.k8s.io/pause:3.10
REGISTRY_PORT=5001           # go-containerregistry cmd/registry (v0.22.1, installed by `make tools`)
APT_PACKAGES="containerd runc containernetworking-plugins iptables conntrack socat busybox-static jq openssl bc iproute2 file curl"
# addons (`cluster.sh addons`, run by `make e2e`; the demo needs neither)
COREDNS_VERSION=v1.15.0      # github.com/coredns/coredns (newest; 1.14.3+ has the 2026 CVE fixes)
DNS_IP=10.96.0.10            # kubelet clusterDNS and the kube-dns Service
# kube-router's network policy controller. The proxy serves cloudnativelabs/kube-router/v2 only at
# v2.1.0 (security flaws reported); k3s' maintained fork is served at v2.6.3-k3s1 but is not in
# the checksum database (its go.mod names the upstream path), so its hashes are pinned here.
KUBE_ROUTER_VERSION=v2.6.3-k3s1   # github.com/k3s-io/kube-router/v2, replacing cloudnativelabs/kube-router/v2
KUBE_ROUTER_SUM="h1:RZjUBIuitXCuYoCzm1aM6p5EgQFC5k3N72j4pBIc2j4="
KUBE_ROUTER_GOMOD_SUM="h1:RaxDc+SBKB33+fjao+LeDue4CaUajk02eCHXVK/V4YE="
ADDON_APT_PACKAGES="ipset"
# Knative Eventing (`cluster.sh knative`, run by make e2e): controller, webhook, in-memory channel and
# the multi-tenant channel-based Broker, built with ko from this module and applied from its own
# config/ (the version knative/dry-run.sh validates against; Go 1.25+, client-go v0.35).
KNATIVE_EVENTING_VERSION=v0.50.0  # knative.dev/eventing
KNATIVE_CMDS="controller webhook apiserver_receive_adapter auth_proxy in_memory/channel_controller in_memory/channel_dispatcher mtchannel_broker broker/filter broker/ingress"
# Keptn's own distributor (unmodified 1.4.5 source beside the repo, ../shared/keptn-distributor)
# and the NATS server it subscribes to in a Keptn cluster: `images` builds both (binaries cached
# by version / source hash) and pushes them as images for the distributor scenarios.
NATS_VERSION=v2.15.3         # github.com/nats-io/nats-server/v2 (newest on the proxy here)
# Beside the repository: ../shared/keptn-distributor, or beside the repository a clone was made from
# (a clean CI clone elsewhere on the machine whose origin is a local path).
distributorsrc() { local repo origin
  repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
  origin=$(git -C "$repo" config --get remote.origin.url 2>/dev/null || true)
  for d in "$repo/../shared/keptn-distributor" ${origin:+"$origin/../shared/keptn-distributor"}; do
    [ -f "$d/go.mod" ] && { (cd "$d" && pwd); return; }
  done
  echo "$repo/../shared/keptn-distributor"
}
DISTRIBUTOR_SRC=${DISTRIBUTOR_SRC:-$(distributorsrc)}
# ---------------------------------------------------------------------------------------------------

STAGING_VERSION=v0${K8S_VERSION#v1}
K=${JES_E2E_DIR:-$HOME/.cache/jes-e2e}
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TOOLS=${TOOLS:-$HOME/.cache/jes/tools/bin}
NODE=jes-e2e-node
B=$K/bin P=$K/pki R=$K/run LOG=$K/logs
REG=127.0.0.1:$REGISTRY_PORT
KUBECONFIG=$K/admin.kubeconfig
export KUBECONFIG
COMPONENTS="containerd etcd kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy"
K8S_BINS="kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy kubectl"
PORTS="2379 2380 2381 6443 10248 10249 10250 10256 10257 10259 20244 $REGISTRY_PORT"
ADDONS="kube-router"         # host processes of `addons`: stopped with the cluster, not needed for healthy

log() { printf '[cluster %s] %s\n' "$(date +%T)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }
ts() { date +%s.%N; }
dt() { printf '%.1fs' "$(echo "$(ts) - $1" | bc)"; }
kc() { "$B/kubectl" "$@"; }
ctr_() { ctr -a "$R/containerd.sock" -n k8s.io "$@"; }
nodeip() { ip -4 route get 1.1.1.1 2>/dev/null | sed -n 's/.* src \([0-9.]*\).*/\1/p' | grep . || hostname -I | awk '{print $1}'; }
goenv() {
  export PATH=/usr/local/go/bin:$PATH GOMODCACHE=$K/gomod GOCACHE=$K/gocache GOPATH=$K/gopath
  # No DWARF: nothing here is debugged, and the compiler does about 5% less work (kubectl cold,
  # 2 cores: 177 s against 187 s).
  export GOFLAGS="-buildvcs=false -trimpath -gcflags=all=-dwarf=false" CGO_ENABLED=0
}
alive() { [ -r "/proc/$1/stat" ] && ! awk '{exit ($3=="Z")?0:1}' "/proc/$1/stat"; }
pidof_() { [ -f "$R/$1.pid" ] && cat "$R/$1.pid"; }
# running: pid file names a live process that is really ours (after a reboot the PID may be reused).
running() { local p; p=$(pidof_ "$1") && alive "$p" && ours "$p"; }

# ---- deps -----------------------------------------------------------------------------------------
deps() {
  local missing=() p
  for p in $APT_PACKAGES ${1:-}; do dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing+=("$p"); done
  if [ ${#missing[@]} -gt 0 ]; then
    log "installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
  [ -x /usr/local/go/bin/go ] || command -v go >/dev/null || die "Go is needed (/usr/local/go/bin/go)"
}
needtools() { local p; for p in "$@"; do [ -x "$TOOLS/$p" ] || die "$TOOLS/$p missing: run 'make tools' first"; done; }

# ---- build ----------------------------------------------------------------------------------------
binversion() { # name -> version it reports ("" if missing/broken)
  [ -x "$B/$1" ] || return 0
  case $1 in
    etcd) "$B/etcd" --version 2>/dev/null | sed -n 's/^etcd Version: /v/p' ;;
    kubectl) "$B/kubectl" version --client 2>/dev/null | sed -n 's/^Client Version: //p' ;;
    *) "$B/$1" --version 2>/dev/null | awk '{print $2}' ;;
  esac
}
stamp() { echo "k8s=$K8S_VERSION etcd=$ETCD_VERSION"; }

build() {
  goenv; mkdir -p "$B" "$K/build" "$K/etcdbuild" "$LOG"
  if [ "$(cat "$B/VERSIONS" 2>/dev/null)" = "$(stamp)" ] && [ -z "${FORCE_BUILD:-}" ]; then
    local c ok=1; for c in $K8S_BINS etcd; do [ -x "$B/$c" ] || ok=0; done
    [ $ok = 1 ] && { log "build: binaries up to date ($(stamp))"; return; }
  fi
  local t0 t c todo=() etcdfetch=""
  t0=$(ts)
  if [ "$(binversion etcd)" != "$ETCD_VERSION" ]; then
    # etcd's modules download while Kubernetes compiles (network against CPU).
    printf 'module k8slab/etcdbuild\n\ngo 1.24.0\n\nrequire go.etcd.io/etcd/server/v3 %s\n' "$ETCD_VERSION" > "$K/etcdbuild/go.mod"
    printf 'package main\n\nimport (\n\t"os"\n\n\t"go.etcd.io/etcd/server/v3/etcdmain"\n)\n\nfunc main() { etcdmain.Main(os.Args) }\n' > "$K/etcdbuild/main.go"
    (cd "$K/etcdbuild" && go mod tidy) > "$LOG/etcd-tidy.log" 2>&1 & etcdfetch=$!
  fi
  for c in $K8S_BINS; do [ "$(binversion "$c")" = "$K8S_VERSION" ] || todo+=("$c"); done
  if [ ${#todo[@]} -gt 0 ]; then
    # Wrapper module: k8s.io/kubernetes replaces its staging repos with ./staging/..., which
    # module consumers ignore, so pin each of them to the published v0.X.Y.
    cd "$K/build"
    local kmod gomod tools
    kmod=$(cd "$K" && go mod download -json "k8s.io/kubernetes@$K8S_VERSION" | jq -r .GoMod)
    gomod=$({ printf 'module k8slab/build\n\ngo 1.24.0\n\ngodebug default=go1.24\n\nrequire k8s.io/kubernetes %s\n\nreplace (\n' "$K8S_VERSION"
      grep -E '=> \./staging/' "$kmod" | awk -v v="$STAGING_VERSION" '{print "\t"$1" => "$1" "v}'; echo ')'; })
    tools=$({ printf '//go:build tools\n\npackage build\n\nimport (\n'
      for c in $K8S_BINS; do printf '\t_ "k8s.io/kubernetes/cmd/%s"\n' "$c"; done; echo ')'; })
    # Keep the existing go.mod (with its resolved requires) unless the inputs changed.
    if [ "$(sed -n 's/^require k8s.io\/kubernetes //p' go.mod 2>/dev/null)" != "$K8S_VERSION" ] || [ "$(cat tools.go 2>/dev/null)" != "$tools" ]; then
      echo "$gomod" > go.mod; echo "$tools" > tools.go
      t=$(ts); log "build: resolving the Kubernetes modules (go mod tidy, log: $LOG/k8s-tidy.log)"
      go mod tidy 2> "$LOG/k8s-tidy.log" || { tail -n 30 "$LOG/k8s-tidy.log" >&2; die "go mod tidy of the Kubernetes build failed"; }
      log "build: go mod tidy $(dt "$t")"
    fi
    local ldf="-s -w -X k8s.io/component-base/version.gitVersion=$K8S_VERSION -X k8s.io/component-base/version.gitMajor=1"
    ldf+=" -X k8s.io/component-base/version.gitMinor=$(echo "$K8S_VERSION" | cut -d. -f2) -X k8s.io/component-base/version.gitTreeState=clean"
    # One `go build` for all of them: each shared package is compiled once and both cores stay
    # busy (one build per binary left them idle while each link ran).
    local pkgs=() total pid n
    for c in "${todo[@]}"; do pkgs+=("k8s.io/kubernetes/cmd/$c"); done
    total=$(go list -deps "${pkgs[@]}" | grep -c .)
    log "build: ${todo[*]}: compiling up to $total packages (first time 5-10 min on 2 idle cores; progress every 20 s)"
    t=$(ts)
    go build -v -ldflags "$ldf" -o "$B/" "${pkgs[@]}" 2> "$LOG/k8s-build.log" & pid=$!
    n=0
    while kill -0 "$pid" 2>/dev/null; do
      sleep 1; n=$((n + 1))
      if [ $((n % 20)) = 0 ]; then log "build: $(grep -c '^[a-z]' "$LOG/k8s-build.log" || true) of up to $total packages compiled, $(dt "$t")"; fi
    done
    wait "$pid" || { tail -n 30 "$LOG/k8s-build.log" >&2; die "go build of ${todo[*]} failed (full log: $LOG/k8s-build.log)"; }
    log "build: ${todo[*]} $(dt "$t")"
  fi
  if [ -n "$etcdfetch" ]; then
    t=$(ts)
    wait "$etcdfetch" || { cat "$LOG/etcd-tidy.log" >&2; die "go mod tidy of etcd $ETCD_VERSION failed"; }
    cd "$K/etcdbuild" && go build -ldflags '-s -w' -o "$B/etcd" .
    log "build: etcd $(dt "$t")"
  fi
  if [ ! -x "$B/pause" ]; then
    # The sandbox "pause" process in Go (static, no gcc): sleep forever, reap children, exit on TERM.
    mkdir -p "$K/pausebuild"; cd "$K/pausebuild"
    printf 'module pause\n\ngo 1.24.0\n' > go.mod
    cat > main.go <<'EOF'
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	c := make(chan os.Signal, 8)
	signal.Notify(c, syscall.SIGTERM, syscall.SIGINT, syscall.SIGCHLD)
	for s := range c {
		if s != syscall.SIGCHLD {
			os.Exit(0)
		}
		for {
			if pid, _ := syscall.Wait4(-1, nil, syscall.WNOHANG, nil); pid <= 0 {
				break
			}
		}
	}
}
EOF
    go build -ldflags '-s -w' -o "$B/pause" .
  fi
  stamp > "$B/VERSIONS"
  log "build: done $(dt "$t0")"
}

# ---- certs + configs ------------------------------------------------------------------------------
certs() {
  local nip; nip=$(nodeip)
  if [ -f "$P/apiserver.crt" ] && [ "$(cat "$P/nodeip" 2>/dev/null)" = "$nip" ] && [ -f "$K/kubelet.kubeconfig" ]; then return; fi
  log "certs: generating (node IP $nip)"
  mkdir -p "$P"; cd "$P"
  [ -f ca.key ] || { openssl genrsa -out ca.key 2048 2>/dev/null; openssl req -x509 -new -nodes -key ca.key -subj /CN=jes-e2e-ca -days 3650 -out ca.crt; }
  [ -f sa.key ] || { openssl genrsa -out sa.key 2048 2>/dev/null; openssl rsa -in sa.key -pubout -out sa.pub 2>/dev/null; }
  cert() { # name subject [subjectAltName]
    openssl genrsa -out "$1.key" 2048 2>/dev/null; openssl req -new -key "$1.key" -subj "$2" -out "$1.csr"
    { echo 'basicConstraints=CA:FALSE'; echo 'keyUsage=critical,digitalSignature,keyEncipherment'
      if [ -n "${3:-}" ]; then echo 'extendedKeyUsage=serverAuth,clientAuth'; echo "subjectAltName=$3"; else echo 'extendedKeyUsage=clientAuth'; fi; } > "$1.ext"
    openssl x509 -req -in "$1.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -days 3650 -extfile "$1.ext" -out "$1.crt" 2>/dev/null; rm -f "$1.csr" "$1.ext"; }
  cert apiserver /CN=kube-apiserver "DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local,DNS:localhost,IP:127.0.0.1,IP:10.96.0.1,IP:$nip"
  cert apiserver-kubelet-client "/O=system:masters/CN=kube-apiserver-kubelet-client"
  cert admin "/O=system:masters/CN=kubernetes-admin"
  cert controller-manager /CN=system:kube-controller-manager
  cert scheduler /CN=system:kube-scheduler
  cert kube-proxy /CN=system:kube-proxy
  cert kubelet "/O=system:nodes/CN=system:node:$NODE" "DNS:$NODE,DNS:localhost,IP:127.0.0.1,IP:$nip"
  local n f c
  for n in admin:kubernetes-admin controller-manager:system:kube-controller-manager scheduler:system:kube-scheduler \
           kube-proxy:system:kube-proxy "kubelet:system:node:$NODE"; do
    c=${n%%:*} f=$K/${n%%:*}.kubeconfig
    kc config --kubeconfig="$f" set-cluster jes-e2e --server=https://127.0.0.1:6443 --certificate-authority="$P/ca.crt" --embed-certs >/dev/null
    kc config --kubeconfig="$f" set-credentials "${n#*:}" --client-certificate="$P/$c.crt" --client-key="$P/$c.key" --embed-certs >/dev/null
    kc config --kubeconfig="$f" set-context default --cluster=jes-e2e --user="${n#*:}" >/dev/null
    kc config --kubeconfig="$f" use-context default >/dev/null
  done
  echo "$nip" > "$P/nodeip"
}

configs() {
  local nip; nip=$(nodeip)
  mkdir -p "$K/containerd" "$K/cni/net.d" "$K/cni/ipam"
  cat > "$K/containerd/config.toml" <<EOF
version = 2
root = "$K/containerd/root"
state = "$K/containerd/state"
[grpc]
  address = "$R/containerd.sock"
[ttrpc]
  address = "$R/containerd-ttrpc.sock"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$PAUSE_IMAGE"
  # no CAP_SYS_RESOURCE here: clamp oom_score_adj to containerd's own (0) instead of -998/-997
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        BinaryName = "/usr/bin/runc"
        Root = "$R/runc"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$K/cni/net.d"
  # docker.io pulls (image: alpine) go to the local registry; it speaks plain http.
  [plugins."io.containerd.grpc.v1.cri".registry]
    [plugins."io.containerd.grpc.v1.cri".registry.mirrors."docker.io"]
      endpoint = ["http://$REG"]
    [plugins."io.containerd.grpc.v1.cri".registry.mirrors."$REG"]
      endpoint = ["http://$REG"]
EOF
  cat > "$K/cni/net.d/10-jes-e2e.conflist" <<EOF
{"cniVersion": "0.4.0", "name": "jes-e2e", "plugins": [
  {"type": "bridge", "bridge": "cni0", "isGateway": true, "ipMasq": true, "hairpinMode": true,
   "ipam": {"type": "host-local", "dataDir": "$K/cni/ipam", "ranges": [[{"subnet": "10.244.0.0/24"}]], "routes": [{"dst": "0.0.0.0/0"}]}},
  {"type": "portmap", "capabilities": {"portMappings": true}},
  {"type": "loopback"}]}
EOF
  cat > "$K/kubelet-config.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: $nip
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
authentication: {anonymous: {enabled: false}, webhook: {enabled: true}, x509: {clientCAFile: $P/ca.crt}}
authorization: {mode: Webhook}
tlsCertFile: $P/kubelet.crt
tlsPrivateKeyFile: $P/kubelet.key
cgroupDriver: cgroupfs
failCgroupV1: false
failSwapOn: false
oomScoreAdj: 0             # no CAP_SYS_RESOURCE: kubelet cannot set its own -999
containerRuntimeEndpoint: unix://$R/containerd.sock
podLogsDir: $K/pod-logs
volumePluginDir: $K/kubelet-plugins
resolvConf: /etc/resolv.conf
clusterDomain: cluster.local
clusterDNS: [$DNS_IP]      # the kube-dns Service (CoreDNS) that cluster.sh addons runs
serializeImagePulls: false
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: {memory.available: 100Mi, nodefs.available: 1%, imagefs.available: 1%, nodefs.inodesFree: 1%}
syncFrequency: 10s
fileCheckFrequency: 10s
nodeStatusUpdateFrequency: 10s
EOF
}

# ---- process control ------------------------------------------------------------------------------
spawn() { local n=$1; shift
  if running "$n"; then return; fi
  # setsid: survive the caller (make, a test run) being interrupted. Descriptors above 2 are
  # closed first: a daemon must not keep what its caller holds open, such as the lock of
  # `flock /tmp/jes-e2e.lock make e2e` (held by the cluster until it stopped, otherwise).
  ( closefds; exec setsid nohup "$@" > "$LOG/$n.log" 2>&1 < /dev/null ) & echo $! > "$R/$n.pid"; }
closefds() { local f; for f in /proc/$BASHPID/fd/*; do f=${f##*/}; [ "$f" -gt 2 ] && eval "exec $f>&-"; done; return 0; }
waitfor() { local what=$1; shift
  for _ in $(seq 1 240); do "$@" >/dev/null 2>&1 && return 0; sleep 0.5; done
  log "$what NOT ready; last log lines:"; tail -n 15 "$LOG/$what.log" >&2 2>/dev/null || true; return 1; }

# ours PID: is this process part of this harness? Our binaries, or containerd/its shims naming
# our state dir. (Not just "mentions $K": a concurrent `go build` with GOMODCACHE=$K/gomod is not ours.)
ours() { local exe cmd
  exe=$(readlink "/proc/$1/exe" 2>/dev/null || true)
  cmd=$( { tr '\0' ' ' < "/proc/$1/cmdline"; } 2>/dev/null || true) # (it may have exited)
  case "$exe" in "$B"/*|"$TOOLS"/registry) return 0 ;; esac
  case "${exe##*/}:$cmd" in containerd*:*"$K/"*) return 0 ;; esac
  return 1; }
# port owners: PIDs listening on our fixed ports
portpids() { local p; for p in $PORTS; do ss -Hltnp "sport = :$p" 2>/dev/null | grep -o 'pid=[0-9]*' | cut -d= -f2; done | sort -u; }
# every leftover process of ours (incl. containerd shims of a killed run)
strays() { local p; for p in $(portpids) $(pgrep -f "$K/" 2>/dev/null || true); do
  [ "$p" != $$ ] && [ "$p" != "$BASHPID" ] && ours "$p" && echo "$p"; done | sort -u; }

healthy() {
  local n; for n in $COMPONENTS; do running "$n" || return 1; done
  kc get --raw /readyz >/dev/null 2>&1 &&
    [ "$(kc get node "$NODE" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null)" = True ]
}

start() {
  local t0 nip; t0=$(ts); nip=$(nodeip)
  mkdir -p "$R" "$LOG" "$K/etcd-data" "$K/kubelet" "$K/pod-logs" "$K/kubelet-plugins"
  spawn registry "$TOOLS/registry" -port "$REGISTRY_PORT"
  spawn containerd containerd --config "$K/containerd/config.toml"
  waitfor containerd ctr_ version
  ctr_ images ls -q | grep -qx "$PAUSE_IMAGE" || ctr_ images import "$K/images/pause.tar" >/dev/null
  spawn etcd "$B/etcd" --name default --data-dir "$K/etcd-data" \
    --listen-client-urls http://127.0.0.1:2379 --advertise-client-urls http://127.0.0.1:2379 \
    --listen-peer-urls http://127.0.0.1:2380 --initial-advertise-peer-urls http://127.0.0.1:2380 \
    --initial-cluster default=http://127.0.0.1:2380 --listen-metrics-urls http://127.0.0.1:2381
  waitfor etcd curl -sf http://127.0.0.1:2381/health
  # 0.0.0.0 so pods reach it through the kubernetes Service (10.96.0.1) via kube-proxy.
  spawn kube-apiserver "$B/kube-apiserver" --etcd-servers=http://127.0.0.1:2379 \
    --bind-address=0.0.0.0 --secure-port=6443 --advertise-address="$nip" \
    --service-cluster-ip-range=10.96.0.0/16 --allow-privileged=true \
    --client-ca-file="$P/ca.crt" --tls-cert-file="$P/apiserver.crt" --tls-private-key-file="$P/apiserver.key" \
    --kubelet-client-certificate="$P/apiserver-kubelet-client.crt" --kubelet-client-key="$P/apiserver-kubelet-client.key" \
    --kubelet-certificate-authority="$P/ca.crt" --kubelet-preferred-address-types=InternalIP \
    --service-account-issuer=https://kubernetes.default.svc.cluster.local \
    --service-account-key-file="$P/sa.pub" --service-account-signing-key-file="$P/sa.key" \
    --authorization-mode=Node,RBAC --enable-admission-plugins=NodeRestriction --profiling=false
  waitfor kube-apiserver kc get --raw /readyz
  rm -f "$R/controllers"; controllermanager '*'
  spawn kube-scheduler "$B/kube-scheduler" --kubeconfig="$K/scheduler.kubeconfig" \
    --authentication-kubeconfig="$K/scheduler.kubeconfig" --authorization-kubeconfig="$K/scheduler.kubeconfig" \
    --bind-address=127.0.0.1 --leader-elect=false --profiling=false
  spawn kubelet "$B/kubelet" --config="$K/kubelet-config.yaml" --kubeconfig="$K/kubelet.kubeconfig" \
    --root-dir="$K/kubelet" --hostname-override="$NODE" --node-ip="$nip"
  spawn kube-proxy "$B/kube-proxy" --kubeconfig="$K/kube-proxy.kubeconfig" --hostname-override="$NODE" \
    --cluster-cidr=10.244.0.0/16 --proxy-mode=iptables --conntrack-max-per-core=0 \
    --metrics-bind-address=127.0.0.1:10249 --healthz-bind-address=127.0.0.1:10256
  # A restarted cluster still has last run's Ready node in etcd: wait for a fresh heartbeat.
  local since; since=$(date -u +%s)
  waitfor kubelet freshready "$since"
  waitfor kube-controller-manager kc get serviceaccount default
  log "start: components up in $(dt "$t0")"
}

# controllermanager CONTROLLERS: start kube-controller-manager with --controllers=CONTROLLERS.
controllermanager() {
  spawn kube-controller-manager "$B/kube-controller-manager" --kubeconfig="$K/controller-manager.kubeconfig" \
    --authentication-kubeconfig="$K/controller-manager.kubeconfig" --authorization-kubeconfig="$K/controller-manager.kubeconfig" \
    --bind-address=127.0.0.1 --leader-elect=false --use-service-account-credentials=true \
    --service-account-private-key-file="$P/sa.key" --root-ca-file="$P/ca.crt" \
    --cluster-signing-cert-file="$P/ca.crt" --cluster-signing-key-file="$P/ca.key" --profiling=false \
    --controllers="$1"
}

# jobcontroller on|off: make bench's scale mode turns Kubernetes' Job controller off, so that
# Jobs make no pods and the harness completes them through the status subresource.
jobcontroller() {
  case "${1:-}" in
    on) want='*' ;;
    off) want='*,-job-controller' ;;
    *) die "usage: $0 jobcontroller on|off" ;;
  esac
  healthy || die "cluster not healthy: run $0 up first"
  [ "$(cat "$R/controllers" 2>/dev/null || echo '*')" = "$want" ] && return
  stopproc kube-controller-manager
  controllermanager "$want"
  echo "$want" > "$R/controllers"
  waitfor kube-controller-manager curl -sfk https://127.0.0.1:10257/healthz
  log "job controller $1"
}

freshready() { local hb
  hb=$(kc get node "$NODE" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status} {.status.conditions[?(@.type=="Ready")].lastHeartbeatTime}' 2>/dev/null) || return 1
  [ "${hb%% *}" = True ] && [ "$(date -u -d "${hb#* }" +%s)" -ge "$1" ]; }

stopproc() { local n=$1 p; p=$(pidof_ "$n") || return 0
  if alive "$p"; then kill "$p" 2>/dev/null || true
    for _ in $(seq 1 40); do alive "$p" || break; sleep 0.25; done
    if alive "$p"; then kill -9 "$p" 2>/dev/null || true; fi; log "stopped $n"; fi
  rm -f "$R/$n.pid"; }

# adopt: a killed run may have lost its pid files while its processes live on; take them back
# so they are stopped in order (containerd must stay to kill its sandboxes).
adopt() { local p n
  for p in $(strays); do
    n=$(basename "$(readlink "/proc/$p/exe" 2>/dev/null)")
    case " $COMPONENTS $ADDONS registry " in *" $n "*) running "$n" || { echo "$p" > "$R/$n.pid"; log "adopted leftover $n (pid $p)"; } ;; esac
  done; }

stop() {
  mkdir -p "$R"
  adopt
  if running kube-apiserver && kc get --raw /readyz >/dev/null 2>&1; then
    kc delete jobs,pods --all --all-namespaces --grace-period=1 --timeout=60s >/dev/null 2>&1 || true
  fi
  local n p c
  for n in $ADDONS kube-proxy kubelet kube-scheduler kube-controller-manager kube-apiserver etcd; do stopproc "$n"; done
  # containerd owns the sandboxes: kill their tasks through it (start it briefly if a killed run
  # left shims behind), then stop it.
  if ! running containerd && [ -n "$(pgrep -f "containerd-shim.*$R/" || true)" ] && [ -f "$K/containerd/config.toml" ]; then
    spawn containerd containerd --config "$K/containerd/config.toml"; waitfor containerd ctr_ version || true
  fi
  if running containerd; then
    for c in $(ctr_ tasks ls -q 2>/dev/null); do ctr_ tasks kill -s KILL "$c" 2>/dev/null || true; done; sleep 1
    for c in $(ctr_ tasks ls -q 2>/dev/null); do ctr_ tasks delete "$c" >/dev/null 2>&1 || true; done
    for c in $(ctr_ containers ls -q 2>/dev/null); do ctr_ containers delete "$c" >/dev/null 2>&1 || true; done
  fi
  stopproc containerd
  stopproc registry
  # Whatever is left from a killed run (our binaries, shims naming $K) goes by PID.
  for _ in 1 2; do
    for p in $(strays); do log "killing leftover pid $p: $(tr '\0' ' ' < "/proc/$p/cmdline" | cut -c1-100)"; kill -9 "$p" 2>/dev/null || true; done
    sleep 0.5
  done
  awk -v k="$K/" 'index($2,k)==1 {print $2}' /proc/mounts | sort -r | while read -r m; do umount "$m" 2>/dev/null || umount -l "$m" || true; done
}

# Host-level leftovers that kubelet/containerd/CNI/kube-proxy create outside $K.
hostclean() {
  find /var/log/containers -maxdepth 1 -lname "$K/*" -delete 2>/dev/null || true
  rm -f /var/lib/kubelet/device-plugins/kubelet.sock
  rm -rf /var/lib/cni/results
  local ns t d
  for ns in /var/run/netns/cni-*; do [ -e "$ns" ] && { umount "$ns" 2>/dev/null || true; rm -f "$ns"; }; done
  ip link del cni0 2>/dev/null || true
  for t in nat filter mangle; do
    iptables-save -t "$t" | grep -vE '(^:(CNI|KUBE)-|-j (CNI|KUBE)-|-A (CNI|KUBE)-|--comment "KUBE-ROUTER )' | iptables-restore -T "$t" 2>/dev/null || true
  done
  # kube-router's ipsets (its chains went with the KUBE- ones above)
  if command -v ipset >/dev/null; then
    for t in $(ipset list -n 2>/dev/null | grep -E '^(KUBE-|kube-router)' || true); do ipset destroy "$t" 2>/dev/null || true; done
  fi
  for d in /sys/fs/cgroup/*/kubepods; do [ -d "$d" ] && { find "$d" -depth -type d -exec rmdir {} + 2>/dev/null || true; }; done
  return 0
}

down() { stop; hostclean; rm -f "$K/e2e.env"; log "down"; }

purge() {
  down
  rm -rf "$K/etcd-data" "$K/containerd" "$K/kubelet" "$K/pod-logs" "$K/kubelet-plugins" "$K/cni" "$K/pki" \
         "$K/images" "$K/run" "$K/logs" "$K"/*.kubeconfig "$K/kubelet-config.yaml"
  log "purged cluster state (kept $B and Go caches)"
}

# ---- images ---------------------------------------------------------------------------------------
# docker-archive with one layer, for `ctr images import` (the sandbox image must exist before any pull).
mkarchive() { # rootfs ref out.tar config-json
  local w diff csum; w=$(mktemp -d "$K/images/tmp.XXXX")
  tar --numeric-owner --owner=0 --group=0 --sort=name --mtime=@0 -C "$1" -cf "$w/layer.tar" .
  diff=$(sha256sum "$w/layer.tar" | cut -d' ' -f1)
  jq -n --arg d "sha256:$diff" --argjson c "$4" '{architecture:"amd64",os:"linux",created:"1970-01-01T00:00:00Z",
     config:({Env:["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]} + $c), rootfs:{type:"layers",diff_ids:[$d]}}' > "$w/config.json"
  csum=$(sha256sum "$w/config.json" | cut -d' ' -f1); mv "$w/config.json" "$w/$csum.json"
  jq -n --arg c "$csum.json" --arg r "$2" '[{Config:$c,RepoTags:[$r],Layers:["layer.tar"]}]' > "$w/manifest.json"
  tar -C "$w" -cf "$3" manifest.json "$csum.json" layer.tar; rm -rf "$w"
}

rootfs() { # once: pause archive + busybox layer tarball
  mkdir -p "$K/images"; cd "$K/images"
  if [ ! -f pause.tar ]; then
    rm -rf pause-root; mkdir -p pause-root; cp "$B/pause" pause-root/pause
    mkarchive pause-root "$PAUSE_IMAGE" pause.tar '{"Entrypoint":["/pause"]}'
  fi
  if [ ! -f busybox-layer.tar ] || [ /bin/busybox -nt busybox-layer.tar ]; then
    local a
    rm -rf busybox-root; mkdir -p busybox-root/{bin,tmp,etc,root,home,proc,sys,dev,var,run}
    cp /bin/busybox busybox-root/bin/busybox
    for a in $(/bin/busybox --list); do [ "$a" = busybox ] || ln -sf busybox "busybox-root/bin/$a"; done
    printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/home:/bin/false\n' > busybox-root/etc/passwd
    printf 'root:x:0:\nnogroup:x:65534:\n' > busybox-root/etc/group; chmod 1777 busybox-root/tmp
    tar --numeric-owner --owner=0 --group=0 --sort=name --mtime=@0 -C busybox-root -cf busybox-layer.tar .
  fi
}

setenv() { # key value: update $K/e2e.env
  touch "$K/e2e.env"; sed -i "/^$1=/d" "$K/e2e.env"; echo "$1=$2" >> "$K/e2e.env"; }

# The registry is in-memory: push the test images after every registry start.
testimages() {
  local t0 cr="$TOOLS/crane" tag; t0=$(ts)
  # (called in || lists, where set -e is off: check every step)
  "$cr" append --insecure -f "$K/images/busybox-layer.tar" -t "$REG/library/busybox:base" >>"$LOG/crane.log" 2>&1 || die "crane append failed (see $LOG/crane.log)"
  "$cr" mutate --insecure "$REG/library/busybox:base" --set-platform linux/amd64 --cmd sh \
    -e PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin -t "$REG/library/busybox:1.35" >>"$LOG/crane.log" 2>&1 || die "crane mutate failed (see $LOG/crane.log)"
  for tag in library/busybox:latest library/alpine:latest library/alpine:3.19; do
    "$cr" copy --insecure "$REG/library/busybox:1.35" "$REG/$tag" >>"$LOG/crane.log" 2>&1 || die "crane copy $tag failed (see $LOG/crane.log)"
  done
  log "images: test images pushed in $(dt "$t0") (busybox:1.35/latest, alpine:latest/3.19 from busybox-static)"
}

serviceimage() {
  local t0 ref; t0=$(ts)
  needtools ko
  ref=$(cd "$REPO" && PATH=/usr/local/go/bin:$PATH KO_DOCKER_REPO="$REG/job-executor-service" \
    KO_DEFAULTBASEIMAGE="$REG/library/busybox:1.35" "$TOOLS/ko" build --insecure-registry --bare --sbom=none \
    --platform=linux/amd64 ./cmd/job-executor-service 2>"$LOG/ko.log") || { tail -20 "$LOG/ko.log" >&2; die "ko build failed"; }
  setenv JES_IMAGE "$ref"
  log "images: service image $ref in $(dt "$t0")"
}

# The demo's service image, without ko: the binary the demo has just built, on the busybox base and
# at the path, entrypoint and env ko gives it (serviceimage), so the demo needs neither ko nor a
# second compile of the service. Prints the reference.
demoimage() { # binary
  local bin=$1 ref w cr="$TOOLS/crane"
  needtools crane
  ref="$REG/job-executor-service:demo-$(sha256sum "$bin" | cut -c1-16)"
  if ! "$cr" digest --insecure "$ref" >/dev/null 2>&1; then
    mkdir -p "$K/images" "$LOG"; w=$(mktemp -d "$K/images/demo.XXXX")
    mkdir -p "$w/root/ko-app" "$w/root/var/run/ko"; cp "$bin" "$w/root/ko-app/job-executor-service"
    tar --numeric-owner --owner=0 --group=0 --sort=name --mtime=@0 -C "$w/root" -cf "$w/layer.tar" .
    "$cr" append --insecure -b "$REG/library/busybox:1.35" -f "$w/layer.tar" -t "$ref-layer" >>"$LOG/crane.log" 2>&1 || die "crane append failed (see $LOG/crane.log)"
    "$cr" mutate --insecure "$ref-layer" --entrypoint /ko-app/job-executor-service -e KO_DATA_PATH=/var/run/ko \
      -e PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:/ko-app -t "$ref" >>"$LOG/crane.log" 2>&1 || die "crane mutate failed (see $LOG/crane.log)"
    rm -rf "$w"
  fi
  echo "$ref"
}

# go with the cluster's module and build caches and flags, in the repository: the demo's build of
# the service reuses the standard library that the Kubernetes build compiled.
gocmd() { goenv; cd "$REPO"; go "$@"; }

images() {
  needtools registry crane ko
  mkdir -p "$R" "$LOG"
  running registry || { spawn registry "$TOOLS/registry" -port "$REGISTRY_PORT"; }
  waitfor registry curl -sf "http://$REG/v2/"
  rootfs
  "$TOOLS/crane" digest --insecure "$REG/library/alpine:3.19" >/dev/null 2>&1 || testimages
  serviceimage
  keptnimages
}

# ---- Keptn's distributor and NATS (the chart's default mode, for real) ----------------------------
distributorhash() { # content hash of the distributor source: the cache key of its binary
  (cd "$DISTRIBUTOR_SRC" && find . -type f ! -name '*_test.go' -print0 | LC_ALL=C sort -z | xargs -0 sha256sum | sha256sum | cut -c1-16)
}

buildkeptn() {
  goenv; mkdir -p "$B" "$LOG"
  local t
  if [ "$("$B/nats-server" --version 2>/dev/null)" != "nats-server: $NATS_VERSION" ]; then
    t=$(ts); log "images: building nats-server $NATS_VERSION"
    ( cd "$K" && GOBIN="$B" go install -ldflags '-s -w' "github.com/nats-io/nats-server/v2@$NATS_VERSION" ) \
      || die "go install nats-server $NATS_VERSION failed"
    log "images: nats-server $(dt "$t")"
  fi
  [ -f "$DISTRIBUTOR_SRC/go.mod" ] || die "Keptn distributor source not found at $DISTRIBUTOR_SRC (set DISTRIBUTOR_SRC)"
  local h; h=$(distributorhash)
  if [ "$(cat "$B/distributor.src" 2>/dev/null)" != "$h" ] || [ ! -x "$B/distributor" ]; then
    # Built where it lies, without touching it (-mod=readonly: its go.sum is complete).
    t=$(ts); log "images: building Keptn's distributor from $DISTRIBUTOR_SRC ($h)"
    ( cd "$DISTRIBUTOR_SRC" && go build -mod=readonly -ldflags '-s -w' -o "$B/distributor" ./cmd ) \
      || die "go build of the distributor failed"
    echo "$h" > "$B/distributor.src"
    log "images: distributor $(dt "$t")"
  fi
}

binimage() { # binary ref: push a one-binary image (no shell, no libc) unless the registry has it
  local bin=$1 ref=$2 w cr="$TOOLS/crane"
  "$cr" digest --insecure "$ref" >/dev/null 2>&1 && return 0
  w=$(mktemp -d "$K/images/bin.XXXX"); mkdir -p "$w/root/tmp"; chmod 1777 "$w/root/tmp"
  cp "$B/$bin" "$w/root/$bin"
  tar --numeric-owner --owner=0 --group=0 --sort=name --mtime=@0 -C "$w/root" -cf "$w/layer.tar" .
  "$cr" append --insecure -f "$w/layer.tar" -t "$ref-layer" >>"$LOG/crane.log" 2>&1 || die "crane append $bin failed (see $LOG/crane.log)"
  "$cr" mutate --insecure "$ref-layer" --set-platform linux/amd64 --entrypoint "/$bin" -t "$ref" >>"$LOG/crane.log" 2>&1 || die "crane mutate $bin failed (see $LOG/crane.log)"
  rm -rf "$w"
}

keptnimages() {
  local t0; t0=$(ts)
  ( buildkeptn )
  mkdir -p "$K/images"
  binimage nats-server "$REG/nats:$NATS_VERSION"
  binimage distributor "$REG/keptn/distributor:1.4.5-$(cat "$B/distributor.src")"
  setenv E2E_NATS_IMAGE "$REG/nats:$NATS_VERSION"
  setenv E2E_DISTRIBUTOR_IMAGE "$REG/keptn/distributor:1.4.5-$(cat "$B/distributor.src")"
  log "images: NATS $NATS_VERSION and Keptn's distributor 1.4.5 in $(dt "$t0")"
}

writeenv() {
  setenv KUBECONFIG "$KUBECONFIG"
  setenv E2E_KUBECTL "$B/kubectl"
  setenv E2E_REGISTRY "$REG"
  setenv E2E_NODE "$NODE"
}

# ---- addons: cluster DNS + NetworkPolicy enforcement (make e2e; the demo needs neither) ----------
buildaddons() {
  goenv; mkdir -p "$B" "$LOG"
  local t
  if [ "$("$B/coredns" -version 2>/dev/null | head -n 1)" != "CoreDNS-${COREDNS_VERSION#v}" ]; then
    # Only the plugins the Corefile below uses: a third of the full build.
    mkdir -p "$K/corednsbuild"; cd "$K/corednsbuild"
    printf 'module k8slab/corednsbuild\n\ngo 1.26.0\n\nrequire github.com/coredns/coredns %s\n' "$COREDNS_VERSION" > go.mod
    { printf 'package main\n\nimport (\n\t"github.com/coredns/coredns/coremain"\n\n'
      for p in cache errors health kubernetes loadbalance log ready reload; do printf '\t_ "github.com/coredns/coredns/plugin/%s"\n' "$p"; done
      printf ')\n\nfunc main() { coremain.Run() }\n'; } > main.go
    t=$(ts); log "addons: building coredns $COREDNS_VERSION (a few minutes the first time)"
    go mod tidy; go build -ldflags '-s -w' -o "$B/coredns" .
    log "addons: coredns $(dt "$t")"
  fi
  if [ "$(cat "$B/kube-router.version" 2>/dev/null)" != "$KUBE_ROUTER_VERSION" ] || [ ! -x "$B/kube-router" ]; then
    mkdir -p "$K/kuberouterbuild"; cd "$K/kuberouterbuild"
    printf 'module k8slab/kuberouterbuild\n\ngo 1.24.0\n\nrequire github.com/cloudnativelabs/kube-router/v2 v2.6.3\n\nreplace github.com/cloudnativelabs/kube-router/v2 => github.com/k3s-io/kube-router/v2 %s\n' "$KUBE_ROUTER_VERSION" > go.mod
    printf '//go:build tools\n\npackage build\n\nimport _ "github.com/cloudnativelabs/kube-router/v2/cmd/kube-router"\n' > tools.go
    # The fork's own hashes (pinned above; not in the checksum database), then its go.sum for
    # its dependencies (those are checked against the checksum database as usual).
    local d
    printf 'github.com/k3s-io/kube-router/v2 %s %s\ngithub.com/k3s-io/kube-router/v2 %s/go.mod %s\n' \
      "$KUBE_ROUTER_VERSION" "$KUBE_ROUTER_SUM" "$KUBE_ROUTER_VERSION" "$KUBE_ROUTER_GOMOD_SUM" > go.sum
    # (go mod download, not go list -m: that names the directory only once something else has
    # downloaded it, so on an empty module cache it printed nothing.)
    d=$(GONOSUMDB=github.com/k3s-io/kube-router go mod download -json "github.com/k3s-io/kube-router/v2@$KUBE_ROUTER_VERSION" | jq -r '.Dir // empty')
    [ -n "$d" ] && [ -f "$d/go.sum" ] || die "kube-router $KUBE_ROUTER_VERSION source not found"
    cat "$d/go.sum" >> go.sum
    t=$(ts); log "addons: building kube-router $KUBE_ROUTER_VERSION (3-9 min the first time)"
    GONOSUMDB=github.com/k3s-io/kube-router go build -mod=mod -o "$B/kube-router" \
      -ldflags "-s -w -X github.com/cloudnativelabs/kube-router/v2/pkg/version.Version=$KUBE_ROUTER_VERSION" \
      github.com/cloudnativelabs/kube-router/v2/cmd/kube-router
    echo "$KUBE_ROUTER_VERSION" > "$B/kube-router.version"
    log "addons: kube-router $(dt "$t")"
  fi
}

corednsimage() { # push the CoreDNS image unless the (in-memory) registry has it
  local ref="$REG/coredns:$COREDNS_VERSION" w cr="$TOOLS/crane"
  "$cr" digest --insecure "$ref" >/dev/null 2>&1 && return 0
  w=$(mktemp -d "$K/images/coredns.XXXX"); mkdir -p "$w/root/etc"
  cp "$B/coredns" "$w/root/coredns"
  printf 'root:x:0:0:root:/:/coredns\n' > "$w/root/etc/passwd"
  tar --numeric-owner --owner=0 --group=0 --sort=name --mtime=@0 -C "$w/root" -cf "$w/layer.tar" .
  "$cr" append --insecure -f "$w/layer.tar" -t "$ref-layer" >>"$LOG/crane.log" 2>&1 || die "crane append coredns failed (see $LOG/crane.log)"
  "$cr" mutate --insecure "$ref-layer" --set-platform linux/amd64 --entrypoint /coredns -t "$ref" >>"$LOG/crane.log" 2>&1 || die "crane mutate coredns failed (see $LOG/crane.log)"
  rm -rf "$w"
}

clusterdns() {
  # kubelet points pods at $DNS_IP (configs writes it); a cluster started before that restarts kubelet.
  if ! grep -q "^clusterDNS: \[$DNS_IP\]" "$K/kubelet-config.yaml"; then
    log "addons: kubelet clusterDNS → $DNS_IP: restarting kubelet"
    local nip since; nip=$(nodeip)
    configs; stopproc kubelet; since=$(date -u +%s)
    spawn kubelet "$B/kubelet" --config="$K/kubelet-config.yaml" --kubeconfig="$K/kubelet.kubeconfig" \
      --root-dir="$K/kubelet" --hostname-override="$NODE" --node-ip="$nip"
    waitfor kubelet freshready "$since"
  fi
  corednsimage
  kc apply -f - >/dev/null <<EOF
apiVersion: v1
kind: ServiceAccount
metadata: {name: coredns, namespace: kube-system}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: "system:coredns"}
rules:
  - {apiGroups: [""], resources: [endpoints, services, pods, namespaces], verbs: [list, watch]}
  - {apiGroups: [discovery.k8s.io], resources: [endpointslices], verbs: [list, watch]}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: "system:coredns"}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: "system:coredns"}
subjects: [{kind: ServiceAccount, name: coredns, namespace: kube-system}]
---
apiVersion: v1
kind: ConfigMap
metadata: {name: coredns, namespace: kube-system}
data:
  # Cluster names only: there is no upstream resolver to forward to here.
  Corefile: |
    .:53 {
        errors
        health {
            lameduck 5s
        }
        ready
        kubernetes cluster.local in-addr.arpa ip6.arpa {
            pods insecure
            fallthrough in-addr.arpa ip6.arpa
            ttl 30
        }
        cache 30
        loadbalance
        reload
    }
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: coredns, namespace: kube-system, labels: {k8s-app: kube-dns}}
spec:
  replicas: 1
  selector: {matchLabels: {k8s-app: kube-dns}}
  template:
    metadata: {labels: {k8s-app: kube-dns}}
    spec:
      serviceAccountName: coredns
      dnsPolicy: Default
      containers:
        - name: coredns
          image: $REG/coredns:$COREDNS_VERSION
          imagePullPolicy: IfNotPresent
          args: ["-conf", "/etc/coredns/Corefile"]
          ports:
            - {name: dns, containerPort: 53, protocol: UDP}
            - {name: dns-tcp, containerPort: 53, protocol: TCP}
          readinessProbe: {httpGet: {path: /ready, port: 8181}, periodSeconds: 2}
          livenessProbe: {httpGet: {path: /health, port: 8080}, periodSeconds: 10}
          resources: {requests: {cpu: 50m, memory: 40Mi}, limits: {memory: 170Mi}}
          securityContext:
            allowPrivilegeEscalation: false
            readOnlyRootFilesystem: true
            capabilities: {add: [NET_BIND_SERVICE], drop: [ALL]}
          volumeMounts: [{name: config, mountPath: /etc/coredns, readOnly: true}]
      volumes: [{name: config, configMap: {name: coredns}}]
---
apiVersion: v1
kind: Service
metadata: {name: kube-dns, namespace: kube-system, labels: {k8s-app: kube-dns}}
spec:
  clusterIP: $DNS_IP
  selector: {k8s-app: kube-dns}
  ports:
    - {name: dns, port: 53, protocol: UDP}
    - {name: dns-tcp, port: 53, protocol: TCP}
EOF
  kc -n kube-system rollout status deployment/coredns --timeout=180s >/dev/null || die "CoreDNS not ready (kubectl -n kube-system describe pods -l k8s-app=kube-dns)"
  setenv E2E_CLUSTER_DNS "$DNS_IP"
}

netpol() {
  # kube-router's firewall controller as a host process, with its own identity and RBAC.
  if [ ! -f "$K/kube-router.kubeconfig" ]; then
    ( cd "$P"
      openssl genrsa -out kube-router.key 2048 2>/dev/null
      openssl req -new -key kube-router.key -subj /CN=system:kube-router -out kube-router.csr
      printf 'basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=clientAuth\n' > kube-router.ext
      openssl x509 -req -in kube-router.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 3650 -extfile kube-router.ext -out kube-router.crt 2>/dev/null
      rm -f kube-router.csr kube-router.ext )
    local f=$K/kube-router.kubeconfig
    kc config --kubeconfig="$f" set-cluster jes-e2e --server=https://127.0.0.1:6443 --certificate-authority="$P/ca.crt" --embed-certs >/dev/null
    kc config --kubeconfig="$f" set-credentials system:kube-router --client-certificate="$P/kube-router.crt" --client-key="$P/kube-router.key" --embed-certs >/dev/null
    kc config --kubeconfig="$f" set-context default --cluster=jes-e2e --user=system:kube-router >/dev/null
    kc config --kubeconfig="$f" use-context default >/dev/null
  fi
  kc apply -f - >/dev/null <<EOF
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: "system:kube-router"}
rules:
  - {apiGroups: [""], resources: [namespaces, pods, services, nodes, endpoints], verbs: [get, list, watch]}
  - {apiGroups: [networking.k8s.io], resources: [networkpolicies], verbs: [get, list, watch]}
  - {apiGroups: [discovery.k8s.io], resources: [endpointslices], verbs: [get, list, watch]}
  - {apiGroups: [""], resources: [events], verbs: [create, patch]}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: "system:kube-router"}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: "system:kube-router"}
subjects: [{apiGroup: rbac.authorization.k8s.io, kind: User, name: "system:kube-router"}]
EOF
  spawn kube-router "$B/kube-router" --kubeconfig="$K/kube-router.kubeconfig" --hostname-override="$NODE" \
    --run-firewall=true --run-router=false --run-service-proxy=false \
    --service-cluster-ip-range=10.96.0.0/16 --health-port=20244 --metrics-port=0
  waitfor kube-router curl -sf http://127.0.0.1:20244/healthz
  # Enforcing only once its chains hang off FORWARD.
  waitfor kube-router sh -c 'iptables -S FORWARD | grep -q KUBE-ROUTER-FORWARD'
  setenv E2E_NETPOL kube-router
}

addons() {
  local t0; t0=$(ts)
  healthy || die "addons: the cluster is not up (run: $0 up)"
  deps "$ADDON_APT_PACKAGES"
  ( buildaddons )
  mkdir -p "$K/images"
  clusterdns
  netpol
  log "addons: CoreDNS ($DNS_IP) and kube-router network policies ready in $(dt "$t0")"
}

# ---- Knative Eventing (make e2e; the demo does not need it) -------------------------------------
# config/ of knative.dev/eventing minus what the Broker/Trigger flow does not use: the PingSource
# adapter, JobSink, RequestReply and the HPAs/PDB (no metrics server here).
# In this order: core holds the namespace (core/100-namespace.yaml sorts first) and the CRDs.
knativeconfig() { # module dir -> one config file per line
  local d
  for d in core channels/in-memory-channel brokers/mt-channel-broker; do
    find "$1/config/$d" -name '*.yaml' | sort
  done | grep -vE '/deployments/(job-sink|pingsource-mt-adapter|request-reply|webhook-hpa|hpa)\.yaml$'
}

# knativeimages: resolve the ko:// references of those manifests into $KN/eventing.yaml, building
# the images once; later runs push the saved images (OCI layouts) to the in-memory registry again.
knativeimages() {
  goenv; needtools ko crane; local KN=$K/knative t moddir files f ref name stamp
  mkdir -p "$KN/build" "$KN/images" "$LOG"
  stamp="eventing=$KNATIVE_EVENTING_VERSION cmds=$KNATIVE_CMDS"
  if [ "$(cat "$KN/stamp" 2>/dev/null)" = "$stamp" ] && [ -s "$KN/eventing.yaml" ]; then
    for ref in $(grep -oE "$REG/knative/[a-z0-9_-]+@sha256:[0-9a-f]{64}" "$KN/eventing.yaml" | sort -u); do
      "$TOOLS/crane" digest --insecure "$ref" >/dev/null 2>&1 && continue
      name=${ref#"$REG/knative/"}; name=${name%@*}
      "$TOOLS/crane" push --insecure "$KN/images/$name" "$REG/knative/$name" >>"$LOG/crane.log" 2>&1 || die "crane push $name failed (see $LOG/crane.log)"
      [ "$("$TOOLS/crane" digest --insecure "$REG/knative/$name")" = "${ref#*@}" ] || die "knative: pushed $name has another digest than $ref"
    done
    return
  fi
  cd "$KN/build"
  printf 'module k8slab/knativebuild\n\ngo 1.26.0\n\nrequire knative.dev/eventing %s\n' "$KNATIVE_EVENTING_VERSION" > go.mod
  { printf '//go:build tools\n\npackage build\n\nimport (\n'
    for c in $KNATIVE_CMDS; do printf '\t_ "knative.dev/eventing/cmd/%s"\n' "$c"; done; echo ')'; } > tools.go
  t=$(ts); go mod tidy
  moddir=$(go list -m -f '{{.Dir}}' knative.dev/eventing)
  files=(); while read -r f; do files+=(-f "$f"); done < <(knativeconfig "$moddir")
  # Knative's own base is distroless :nonroot: its Deployments set runAsNonRoot without a
  # runAsUser, so the image must name a non-root user. busybox-static as uid 65532 instead.
  "$TOOLS/crane" mutate --insecure "$REG/library/busybox:1.35" --user 65532 -t "$REG/knative/base:nonroot" >>"$LOG/crane.log" 2>&1 || die "crane mutate knative base failed (see $LOG/crane.log)"
  log "knative: building ${KNATIVE_CMDS// /, } with ko (first time about 4 min on 2 idle cores)"
  # -j 1: one go build at a time (each compiles on both cores). Two at once compile the packages
  # they share twice: from an empty build cache -j 1 took 196 s, -j 2 265 s (2 cores, 2026-12-03).
  KO_DOCKER_REPO="$REG/knative" KO_DEFAULTBASEIMAGE="$REG/knative/base:nonroot" \
    "$TOOLS/ko" resolve --insecure-registry --base-import-paths --sbom=none --platform=linux/amd64 -j 1 \
    "${files[@]}" > "$KN/eventing.yaml.new" 2>"$LOG/knative-ko.log" || { tail -20 "$LOG/knative-ko.log" >&2; die "ko resolve of knative.dev/eventing failed"; }
  grep -q 'ko://' "$KN/eventing.yaml.new" && die "knative: unresolved ko:// references left"
  rm -rf "$KN/images"; mkdir -p "$KN/images"
  for ref in $(grep -oE "$REG/knative/[a-z0-9_-]+@sha256:[0-9a-f]{64}" "$KN/eventing.yaml.new" | sort -u); do
    name=${ref#"$REG/knative/"}; name=${name%@*}
    "$TOOLS/crane" pull --insecure --format=oci "$ref" "$KN/images/$name" >>"$LOG/crane.log" 2>&1 || die "crane pull $ref failed (see $LOG/crane.log)"
  done
  mv "$KN/eventing.yaml.new" "$KN/eventing.yaml"; echo "$stamp" > "$KN/stamp"
  log "knative: images built in $(dt "$t")"
}

knative() {
  local t0 sum have; t0=$(ts)
  healthy || die "knative: the cluster is not up (run: $0 up)"
  "$TOOLS/crane" digest --insecure "$REG/library/busybox:1.35" >/dev/null 2>&1 || testimages
  ( knativeimages )
  # The images of IntegrationSources and EventTransforms, which the controller's env names: the
  # release adds them to config/core from third_party (hack/release.sh); nothing here pulls them.
  local integrations=$K/gomod/knative.dev/eventing@$KNATIVE_EVENTING_VERSION/third_party/eventing-integrations-latest
  sum=$(cat "$K/knative/eventing.yaml" "$integrations"/*.yaml | sha256sum | cut -c1-16)
  have=$(kc get namespace knative-eventing -o jsonpath='{.metadata.annotations.jes\.keptn\.sh/eventing}' 2>/dev/null || true)
  if [ "$have" != "$sum" ]; then
    # Server-side: knative/dry-run.sh applies the same CRDs that way.
    kc apply --server-side --force-conflicts -f "$K/knative/eventing.yaml" -f "$integrations" >"$LOG/knative-apply.log" 2>&1 || { tail -20 "$LOG/knative-apply.log" >&2; die "knative: apply failed"; }
    kc wait --for=condition=Established --timeout=60s crd/brokers.eventing.knative.dev crd/triggers.eventing.knative.dev >/dev/null
  fi
  # Upstream's default SinkBinding mode, set explicitly: a cluster that once ran another mode keeps it
  # otherwise (apply runs only when the manifests changed).
  kc -n knative-eventing set env deployment/eventing-webhook SINK_BINDING_SELECTION_MODE=exclusion >/dev/null
  kc -n knative-eventing wait deployment --all --for=condition=Available --timeout=300s >/dev/null ||
    die "knative: not ready (kubectl -n knative-eventing get pods; logs in $LOG)"
  # Marked once ready: an interrupted install is applied again next time.
  kc annotate --overwrite namespace knative-eventing "jes.keptn.sh/eventing=$sum" >/dev/null
  setenv E2E_KNATIVE_EVENTING "$KNATIVE_EVENTING_VERSION"
  log "knative: Eventing $KNATIVE_EVENTING_VERSION (in-memory channel, MT channel-based Broker) ready in $(dt "$t0")"
}

# ---- top level ------------------------------------------------------------------------------------
up() {
  local t0; t0=$(ts)
  needtools registry crane
  mkdir -p "$K" "$R" "$LOG"
  if healthy; then
    log "up: cluster already healthy"
  else
    deps
    build
    local half=0 n
    for n in $COMPONENTS registry; do running "$n" && half=1; done
    [ -n "$(strays)" ] && half=1
    [ -e /sys/class/net/cni0 ] && half=1
    if [ $half = 1 ]; then log "up: half-dead cluster found: cleaning it first"; stop; hostclean; fi
    # Ports held by something that is not ours cannot be fixed here.
    local p; for p in $(portpids); do
      die "port in use by a process that is not this harness's (pid $p: $(tr '\0' ' ' < "/proc/$p/cmdline" | cut -c1-80))"; done
    certs; configs; rootfs; start
  fi
  running registry || spawn registry "$TOOLS/registry" -port "$REGISTRY_PORT"
  waitfor registry curl -sf "http://$REG/v2/"
  "$TOOLS/crane" digest --insecure "$REG/library/alpine:3.19" >/dev/null 2>&1 || testimages
  # The registry forgets on restart: bring back a service image the env file still names.
  local img; img=$(sed -n 's/^JES_IMAGE=//p' "$K/e2e.env" 2>/dev/null || true)
  if [ -n "$img" ] && ! "$TOOLS/crane" digest --insecure "$img" >/dev/null 2>&1; then
    ( serviceimage ) || log "warning: service image not rebuilt; run: make e2e-images"
  fi
  writeenv
  log "up: cluster ready in $(dt "$t0"); export KUBECONFIG=$KUBECONFIG"
}

status() {
  local n rc=0
  for n in $COMPONENTS registry; do
    if running "$n"; then printf '%-24s running pid %s\n' "$n" "$(pidof_ "$n")"; else printf '%-24s down\n' "$n"; rc=1; fi
  done
  if healthy && curl -sf "http://$REG/v2/" >/dev/null; then echo "cluster: healthy (KUBECONFIG=$KUBECONFIG)"; kc get nodes -o wide 2>/dev/null || true
  else echo "cluster: NOT healthy"; rc=1; fi
  return $rc
}

env_() { cat "$K/e2e.env"; }

case "${1:-}" in
  up|down|status|purge|images|build|deps|addons|buildaddons|knative|buildkeptn) "$1" ;;
  jobcontroller) jobcontroller "${2:-}" ;;
  demoimage) demoimage "${2:?usage: $0 demoimage BINARY}" ;;
  go) shift; gocmd "$@" ;;
  env) env_ ;;
  *) echo "usage: $0 up|down|status|purge|images|env|build|deps|addons|buildaddons|knative|buildkeptn|jobcontroller on|off|demoimage BINARY|go ARGS..." >&2; exit 2 ;;
esac
