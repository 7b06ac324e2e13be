package source_test

import (
	"os/exec"
	"strings"
	"testing"
)

const module = "github.com/traefik-sd/traefik-sd/"

func deps(t *testing.T, pkg string) []string {
	t.Helper()
	out, err := exec.Command("go", "list", "-deps", module+pkg).Output()
	if err != nil {
		t.Fatalf("go list -deps %s: %v", pkg, err)
	}
	return strings.Fields(string(out))
}

// TestTheEngineKnowsSourcesOnlyByTheirMessages: the engine links no source
// (nor etcd's client or gRPC), and this package nothing of the sidecar, so
// that a source and the engine change without each other.
func TestTheEngineKnowsSourcesOnlyByTheirMessages(t *testing.T) {
	sources := []string{"sidecar/watch", "sidecar/scrape", "sidecar/traefikapi", "sidecar/routeinfo", "sidecar/pluginsync",
		"sidecar/servicediscovery", "sidecar/server", "sidecar/daemon"}
	for _, d := range deps(t, "sidecar/engine") {
		for _, s := range sources {
			if d == module+s {
				t.Errorf("sidecar/engine links the source %s", s)
			}
		}
		if strings.Contains(d, "go.etcd.io/") || strings.Contains(d, "google.golang.org/grpc") {
			t.Errorf("sidecar/engine links %s", d)
		}
	}
	for _, d := range deps(t, "sidecar/source") {
		if strings.HasPrefix(d, module) && d != module+"sidecar/source" && d != module+"plugin" {
			t.Errorf("sidecar/source imports %s: only the plugin's wire types may come from this module", d)
		}
	}
}
