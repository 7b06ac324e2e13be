//go:build e2e

package e2e_test

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/traefik-sd/traefik-sd/e2e/stack"
	"github.com/traefik-sd/traefik-sd/internal/coordinator"
	"github.com/traefik-sd/traefik-sd/internal/testbed"
)

// TestPluginInstalledFromTheRegistry installs the plugin the way Traefik's
// users do: experimental.plugins with module, version and hash, and no
// local plugin. The real Traefik downloads the module zip (built as the Go
// module proxy builds it) from a loopback stand-in of its registry,
// checks its hash, unpacks it, loads it, and the sidecar publishes what the
// plugin reports.
func TestPluginInstalledFromTheRegistry(t *testing.T) {
	dir := t.TempDir()
	s := stack.Start(t, stack.Options{Dir: dir, ScrapeInterval: time.Second, Quiet: true, PluginFromRegistry: true})
	ctx := testbed.Context(t, 5*time.Minute)
	if n := s.Registry.Downloads(); n < 1 {
		t.Fatalf("Traefik started without downloading the plugin (%d downloads)", n)
	}
	if _, err := os.Stat(filepath.Join(dir, "traefik", "plugins-local")); !os.IsNotExist(err) {
		t.Fatalf("a local plugin directory exists: the test would not show the registry path (%v)", err)
	}
	archive := filepath.Join(dir, "traefik", "plugins-storage", "archives", filepath.FromSlash(stack.ModulePath), s.Registry.Version+".zip")
	if _, err := os.Stat(archive); err != nil {
		t.Errorf("Traefik did not keep the archive where it keeps downloaded plugins: %v", err)
	}

	jupyter := stack.StartContainer(t, "jupyter", "0b7c1c1e-2f0a-4d8e-9a41-6a1f3e5d7c90", "")
	c := coordinator.Circuit{ID: interactiveID, App: "jupyter", Mode: "interactive", Hostname: "jupyter.example",
		Routes: []coordinator.Route{jupyter.Route()}}
	testbed.Must(t, s.Coord.Put(ctx, c), "create")
	took, _ := waitConverged(t, ctx, s, "published through the plugin Traefik downloaded", routeLine(jupyter.HostPort, interactiveID, jupyter.Session, ""))
	t.Logf("zip %s (sha256 %s): installed by Traefik, circuit published %v after the write", s.Registry.Version, s.Registry.Hash, took)
	if m := s.SidecarMetric(ctx, "traefik_sd_plugin_middlewares"); m != "1" {
		t.Errorf("plugin_middlewares = %q, want 1", m)
	}
}
