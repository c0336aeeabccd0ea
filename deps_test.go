package chatfleet_test

import (
	"os/exec"
	"strings"
	"testing"
)

// TestProductionBinariesDoNotLinkDevDependencies checks that no binary of the
// fleet or the control API links the embedded store (FerretDB, SQLite), the devstore
// package, the embedded NATS server (devnats, nats-server) or kin-openapi (which checks docs/openapi.yaml): those are for the
// local stack and tests only.
func TestProductionBinariesDoNotLinkDevDependencies(t *testing.T) {
	out, err := exec.Command("go", "list", "-f", `{{if eq .Name "main"}}{{.ImportPath}}{{end}}`, "./fleet/...", "./functions/...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	bins := strings.Fields(string(out))
	if len(bins) < 2 {
		t.Fatalf("found only %v; want at least chatserver and loadbalancer", bins)
	}
	for _, bin := range bins {
		deps, err := exec.Command("go", "list", "-deps", bin).Output()
		if err != nil {
			t.Fatalf("go list -deps %s: %v", bin, err)
		}
		for _, dep := range strings.Fields(string(deps)) {
			if strings.HasPrefix(dep, "github.com/FerretDB/") || strings.HasPrefix(dep, "modernc.org/sqlite") || dep == "github.com/chatfleet/chatfleet/devstore" ||
				dep == "github.com/chatfleet/chatfleet/devnats" || strings.HasPrefix(dep, "github.com/nats-io/nats-server") ||
				strings.HasPrefix(dep, "github.com/chatfleet/chatfleet/internal/testutil") || strings.HasPrefix(dep, "github.com/getkin/kin-openapi") {
				t.Errorf("%s links %s", bin, dep)
			}
		}
	}
}
