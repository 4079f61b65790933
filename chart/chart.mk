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
# e2e cluster). The namespaces keptn/keptn-jobs are rewritten to throw-away ones that are deleted
# afterwards, so an existing installation is not touched.
CHART_DRY_RUN_NS ?= jes-chart-dry-run
chart-dry-run: $(TOOLS)/helm
	@test -n "$$KUBECONFIG" || { echo "set KUBECONFIG"; exit 1; }
	@set -e; trap 'kubectl delete ns $(CHART_DRY_RUN_NS) $(CHART_DRY_RUN_NS)-jobs --wait=false >/dev/null 2>&1 || true' EXIT; \
	kubectl create ns $(CHART_DRY_RUN_NS) >/dev/null; kubectl create ns $(CHART_DRY_RUN_NS)-jobs >/dev/null; \
	for f in chart/testdata/*.yaml; do \
	  echo "== $$f"; \
	  sed -e 's/^\([[:space:]]*namespace:\) keptn$$/\1 $(CHART_DRY_RUN_NS)/' \
	      -e 's/^\([[:space:]]*namespace:\) keptn-jobs$$/\1 $(CHART_DRY_RUN_NS)-jobs/' $$f | \
	    kubectl apply --dry-run=server -f - ; \
	done

# Real install in a throw-away namespace (see chart/smoke.sh); JES_IMAGE from e2e/cluster.sh images.
chart-smoke: $(TOOLS)/helm
	chart/smoke.sh
