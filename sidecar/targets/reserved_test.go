package targets_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/traefik-sd/traefik-sd/internal/coordinator"
	"github.com/traefik-sd/traefik-sd/plugin"
	"github.com/traefik-sd/traefik-sd/sidecar/dynamic"
	"github.com/traefik-sd/traefik-sd/sidecar/targets"
)

// TestJobAndInstanceAreReserved: a label from etcd or from a push may not
// override job and instance (Prometheus's own: the scrape job and the
// target's address) nor a label traefik-sd writes. etcd's middleware is
// refused by validation; a configuration that reaches the builder without
// it (a push is validated the same way, by pluginsync.Decode) still cannot
// set them.
func TestJobAndInstanceAreReserved(t *testing.T) {
	spoof := map[string]string{"job": "spoofed", "instance": "169.254.169.254:80", "circuit_id": "other", "team": "ml"}

	t.Run("from etcd", func(t *testing.T) {
		for _, name := range []string{"job", "instance"} {
			store := dynamic.NewStore("traefik-sd")
			w := &coordinator.Writer{Authority: "worker-1", SD: &coordinator.TraefikSD{}}
			c := coordinator.Circuit{ID: "c1", App: "app", Mode: "inference", Hostname: "h",
				Labels: map[string]string{name: "spoofed"},
				Routes: []coordinator.Route{{RouteID: "r1", SessionID: "s1", Host: "10.0.1.21", Port: 8000}}}
			applyKeys(store, w, c, map[string]map[string]bool{})
			_, errs := store.Commit()
			if !strings.Contains(fmt.Sprint(errs), "labels."+name+": reserved") {
				t.Errorf("a %s label in etcd: decode errors %v, want one naming labels.%s", name, errs, name)
			}
			for _, tg := range targets.Build(options(), targets.Inputs{Store: store}) {
				if tg.Label(name) == "spoofed" {
					t.Errorf("target %s carries %s=spoofed from etcd", tg.Address, name)
				}
			}
		}
	})

	t.Run("from a configuration that skipped validation", func(t *testing.T) {
		view := &fakeTraefik{
			live: map[string]*plugin.Config{"bai_sd_c1@etcd": {CircuitID: "c1", MetricsPath: "/metrics",
				Routes: []plugin.Route{{URL: "http://10.0.1.21:8000/"}}, Labels: spoof}},
			routers: map[string]targets.RouterState{"bai_router_c1@etcd": {Served: true, Service: "bai_service_c1@etcd",
				Middlewares: []string{"bai_sd_c1@etcd"}}},
		}
		var route []targets.Target
		for _, tg := range targets.Build(options(), targets.Inputs{Traefik: view}) {
			if tg.Label("service_group") == targets.GroupRoute {
				route = append(route, tg)
			}
		}
		if len(route) != 1 {
			t.Fatalf("route targets %+v, want one", route)
		}
		tg := route[0]
		names := map[string]int{}
		for _, l := range tg.Labels {
			names[l.Name]++
		}
		if tg.Address != "10.0.1.21:8000" || names["job"] != 0 || names["instance"] != 0 ||
			names["circuit_id"] != 1 || tg.Label("circuit_id") != "c1" || tg.Label("team") != "ml" {
			t.Errorf("target %+v: want job and instance left to Prometheus, circuit_id c1 once, and team=ml", tg)
		}
	})
}
