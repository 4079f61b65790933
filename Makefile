# job-executor-service — see README.md. Tools and the e2e cluster are cached outside the repo.
SHELL := /bin/bash
export PATH := /usr/local/go/bin:$(PATH)
CACHE ?= $(HOME)/.cache/jes
TOOLS := $(CACHE)/tools/bin
export PATH := $(TOOLS):$(PATH)

HELM_VERSION ?= v3.19.0
KO_VERSION ?= v0.19.1
GGCR_VERSION ?= v0.22.1

.PHONY: all build test race lint vet fmt run demo demo-tools bench bench-smoke fuzz tools check schema
all: build

build:
	CGO_ENABLED=0 go build -trimpath -o bin/job-executor-service ./cmd/job-executor-service

# Run the service locally: needs a kubeconfig and JOB_CONFIG_DIR or KEPTN_API_ENDPOINT (see README).
run:
	go run ./cmd/job-executor-service

tools: $(TOOLS)/helm $(TOOLS)/ko $(TOOLS)/crane $(TOOLS)/registry
$(TOOLS)/helm:
	GOBIN=$(TOOLS) go install helm.sh/helm/v3/cmd/helm@$(HELM_VERSION)
$(TOOLS)/ko:
	GOBIN=$(TOOLS) go install github.com/google/ko@$(KO_VERSION)
$(TOOLS)/crane:
	GOBIN=$(TOOLS) go install github.com/google/go-containerregistry/cmd/crane@$(GGCR_VERSION)
$(TOOLS)/registry:
	GOBIN=$(TOOLS) go install github.com/google/go-containerregistry/cmd/registry@$(GGCR_VERSION)

# Regenerate config/job-config.schema.json from the job config types (a test fails when it is stale).
schema:
	go generate ./config

fmt:
	gofmt -w $$(git ls-files '*.go')

# chart/monitoring is a module of its own (Prometheus's parser stays out of go.mod).
MONITORING_MOD := chart/monitoring

vet:
	go vet ./...
	cd $(MONITORING_MOD) && go vet ./...

lint: vet
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	@go mod tidy -diff >/dev/null || { echo "go.mod/go.sum not tidy (run go mod tidy)"; exit 1; }
	@cd $(MONITORING_MOD) && go mod tidy -diff >/dev/null || { echo "$(MONITORING_MOD)/go.mod not tidy (cd $(MONITORING_MOD) && go mod tidy)"; exit 1; }

# Unit, golden, handler and in-process flow tests, with the race detector.
test: lint $(TOOLS)/helm
	go test -race -count=1 ./...
	cd $(MONITORING_MOD) && go test -count=1 ./...

# BENCHMARKS.md: the pure paths' go benchmarks, then the service against the e2e cluster's
# API server with same-run baselines (e2e/bench; ~5 min). bench-smoke: a few events per row.
bench: tools
	@$(E2E_SH) up
	@$(E2E_SH) images
	@mkdir -p $(E2E_DIR)/bench
	go test -run '^$$' -bench . -benchmem ./... | grep -E '^(Benchmark|ok|pkg:)' > $(E2E_DIR)/bench/go-bench.txt
	go run ./e2e/bench -out BENCHMARKS.md -go-bench $(E2E_DIR)/bench/go-bench.txt

bench-smoke:
	go run ./e2e/bench -smoke -out $(E2E_DIR)/bench/smoke.md

# Every fuzz target for FUZZTIME each (locally: make fuzz FUZZTIME=5m). A duration can end in a
# spurious "context deadline exceeded" with no failing input (Go's fuzz coordinator races its own
# deadline on a busy machine, go.dev/issue/75804, fixed in Go 1.27), so `check` gives each target
# a number of executions instead (FUZZTIME=20000x): no deadline, nothing to race.
# FUZZMINIMIZETIME bounds the shrinking of each new interesting input (Go's default: 60 s each).
# `check` keeps it to a number of runs: FuzzFinished's 17 kB log seed made every new input take the
# full 60 s: 6909 of its 20000 executions in 7 min.
FUZZTIME ?= 30s
FUZZMINIMIZETIME ?= 60s
fuzz:
	@set -e; for pkg in $$(go list ./...); do \
	  for f in $$(go test -list '^Fuzz' $$pkg | grep '^Fuzz' || true); do \
	    echo "fuzz $$pkg $$f ($(FUZZTIME))"; \
	    go test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) -fuzzminimizetime $(FUZZMINIMIZETIME) $$pkg >/tmp/jes-fuzz.log 2>&1 || { cat /tmp/jes-fuzz.log; exit 1; }; \
	    grep -E 'execs' /tmp/jes-fuzz.log | tail -1; \
	  done; \
	done

# The README's demo: real cluster, one sample event, .started/.finished printed. Only the tools
# it uses (demo-tools: no helm, no ko; no cluster addons), installed by demo.sh while the cluster builds.
demo:
	TOOLS=$(TOOLS) bash e2e/demo.sh
demo-tools: $(TOOLS)/crane $(TOOLS)/registry

# The README's test command: fast tests, bounded fuzzing, then the real-cluster suite.
check: test
	$(MAKE) fuzz FUZZTIME=20000x FUZZMINIMIZETIME=100x
	$(MAKE) e2e

-include e2e/e2e.mk
-include chart/chart.mk
