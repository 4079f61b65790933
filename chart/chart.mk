# Chart targets, included by the top-level Makefile (which provides TOOLS and the helm rule).
.PHONY: chart-lint chart-test chart-golden-update chart-dry-run chart-smoke

chart-lint: $(TOOLS)/helm
	$(TOOLS)/helm lint --strict chart
	$(TOOLS)/helm template job-executor-service chart --namespace keptn >/dev/null

chart-test: $(TOOLS)/helm
	go test -race -count=1 ./chart/... ./knative/...

# Rewrite chart/testdata/*.yaml after an intended template change; review the diff before committing.
chart-golden-update: $(TOOLS)/helm
	go test -count=1 ./chart -run TestGolden -update

# Server-side validation of every golden rendering against the cluster in $KUBECONFIG (e.g. the
# e2e cluster). The namespaces of the golden files are rewritten to throw-away ones
# ($(CHART_DRY_RUN_NS)-<name>) that are deleted afterwards, so an existing installation is not touched.
CHART_DRY_RUN_NS ?= jes-chart-dry-run
CHART_GOLDEN_NS := keptn keptn-jobs team-a team-b
chart-dry-run: $(TOOLS)/helm
	@test -n "$$KUBECONFIG" || { echo "set KUBECONFIG"; exit 1; }
	@set -e; trap 'kubectl delete ns $(foreach n,$(CHART_GOLDEN_NS),$(CHART_DRY_RUN_NS)-$(n)) --wait=false >/dev/null 2>&1 || true' EXIT; \
	for n in $(CHART_GOLDEN_NS); do kubectl create ns $(CHART_DRY_RUN_NS)-$$n >/dev/null; done; \
	for f in chart/testdata/*.yaml; do \
	  echo "== $$f"; \
	  sed $(foreach n,$(CHART_GOLDEN_NS),-e 's/^\([[:space:]]*namespace:\) $(n)$$/\1 $(CHART_DRY_RUN_NS)-$(n)/') $$f | \
	    kubectl apply --dry-run=server -f - ; \
	done

# Real install in a throw-away namespace (see chart/smoke.sh); JES_IMAGE from e2e/cluster.sh images.
chart-smoke: $(TOOLS)/helm
	chart/smoke.sh
