package jobs

import (
	"errors"
	"os/exec"
	"slices"
	"strings"
	"testing"
)

// deniedDeps are packages whose presence in the builder's dependencies means it could have
// side effects: talk to the cluster (client-go), log (zap) or run programs (os/exec). A
// trailing "/" denies the package and everything below it.
//
// net/http is not denied although the builder makes no requests: it is imported by
// k8s.io/apimachinery (util/runtime, util/net, pulled in by meta/v1) and by config (the
// Keptn source), both of which the builder needs for its types.
var deniedDeps = []string{
	"k8s.io/client-go/",
	"go.uber.org/zap",
	"go.uber.org/zap/",
	"os/exec",
}

// TestPure keeps package jobs free of side effects: see the package comment.
func TestPure(t *testing.T) {
	// go test puts $GOROOT/bin first on PATH, so this is the go that runs the test.
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("the go command is needed to list the package's dependencies: %v", err)
	}
	out, err := exec.Command(goTool, "list", "-deps", "-f", "{{.ImportPath}}", ".").Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			t.Fatalf("go list -deps: %v\n%s", err, ee.Stderr)
		}
		t.Fatalf("go list -deps: %v", err)
	}
	deps := strings.Fields(string(out))
	if !slices.Contains(deps, "k8s.io/api/batch/v1") {
		t.Fatalf("go list -deps does not list k8s.io/api/batch/v1; got %d packages", len(deps))
	}
	for _, d := range deps {
		for _, bad := range deniedDeps {
			if d == bad || strings.HasSuffix(bad, "/") && strings.HasPrefix(d, bad) {
				t.Errorf("package jobs depends on %s (denied: %s); side effects belong in jobs/run or jobs/records", d, bad)
			}
		}
	}
}
