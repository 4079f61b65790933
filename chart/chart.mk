# Chart targets, included by the top-level Makefile (which provides TOOLS and the helm rule).
.PHONY: chart-lint chart-test chart-golden-update

chart-lint: $(TOOLS)/helm
	$(TOOLS)/helm lint --strict chart
	$(TOOLS)/helm template job-executor-service chart --namespace keptn >/dev/null

chart-test: $(TOOLS)/helm
	go test -race -count=1 ./chart/... ./knative/...

# Rewrite chart/testdata/*.yaml after an intended template change; review the diff before committing.
chart-golden-update: $(TOOLS)/helm
	go test -count=1 ./chart -run TestGolden -update
