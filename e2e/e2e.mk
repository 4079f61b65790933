# Real-cluster e2e (included by the Makefile). See e2e/cluster.sh for the cluster itself.
#   make e2e                 cluster up if needed → images → scenarios → summary → cluster down
#   make e2e E2E_KEEP=1      ... and leave the cluster running
#   make e2e E2E_RUN=Smoke   only scenarios matching the -run regexp
E2E_DIR ?= $(HOME)/.cache/jes-e2e
E2E_RUN ?= .
E2E_TIMEOUT ?= 30m
# Scenarios at once: each starts pods on the one 2-core node; at 16 pod starts took 60-80 s and
# scenarios with 40 s-2 min bounds timed out.
E2E_PARALLEL ?= 8
export JES_E2E_DIR := $(E2E_DIR)
E2E_SH := TOOLS=$(TOOLS) bash e2e/cluster.sh

.PHONY: e2e e2e-cluster e2e-cluster-down e2e-cluster-status e2e-cluster-purge e2e-images e2e-addons e2e-knative

e2e-cluster:
	@$(MAKE) --no-print-directory tools
	@$(E2E_SH) up

e2e-cluster-down:
	@$(E2E_SH) down

e2e-cluster-status:
	@$(E2E_SH) status

e2e-cluster-purge:
	@$(E2E_SH) purge

e2e-images:
	@$(MAKE) --no-print-directory tools
	@$(E2E_SH) images

# Cluster DNS (CoreDNS) and NetworkPolicy enforcement (kube-router): the suite needs them, the demo not.
e2e-addons:
	@$(E2E_SH) addons

# Knative Eventing (controller, webhook, in-memory channel, MT channel-based Broker) for
# knative_test.go's Broker/Trigger flow; built with ko once, then only pushed and checked.
e2e-knative:
	@$(E2E_SH) knative

e2e:
	@$(MAKE) --no-print-directory tools
	@$(E2E_SH) up
	@$(E2E_SH) addons
	@$(E2E_SH) knative
	@$(E2E_SH) images
	@rc=0; set -o pipefail; \
	go test -tags e2e -count=1 -v -parallel $(E2E_PARALLEL) -timeout $(E2E_TIMEOUT) -run '$(E2E_RUN)' ./e2e/... 2>&1 | tee $(E2E_DIR)/e2e-test.log || rc=$$?; \
	bash e2e/summary.sh $(E2E_DIR)/e2e-test.log; \
	if [ '$(E2E_RUN)' = . ]; then echo "== make bench's driver, smoke (a few events per row)"; \
	  mkdir -p $(E2E_DIR)/bench; go run ./e2e/bench -smoke -out $(E2E_DIR)/bench/smoke.md || rc=$$?; fi; \
	if [ "$(E2E_KEEP)" = 1 ]; then echo "cluster kept running (E2E_KEEP=1): make e2e-cluster-down"; else $(E2E_SH) down; fi; \
	exit $$rc
