package targets_test

import (
	"flag"
	"os"
	"strings"
	"testing"

	"github.com/traefik-sd/traefik-sd/internal/fixture"
	"github.com/traefik-sd/traefik-sd/sidecar/source"
	"github.com/traefik-sd/traefik-sd/sidecar/targets"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/targets")

const rootKey = "traefik/worker_worker-1"

func options() targets.Options {
	return targets.Options{
		WorkerAuthority: "worker-1", WorkerNode: "node-a", Provider: "etcd",
		TraefikTarget: "127.0.0.1:8080", TraefikMetricsPath: "/metrics", TraefikScheme: "http",
	}
}

type downSet map[string]bool

func (d downSet) Down(service, url string) bool { return d[service+" "+url] }

func TestBuildFromBackendAIFixtures(t *testing.T) {
	testCases := []struct {
		desc      string
		fixtures  []string
		routesAll bool
		down      downSet
		golden    string
		wantErrs  int
	}{
		{desc: "interactive circuit", fixtures: []string{"etcd/interactive.kv"}, golden: "interactive.json"},
		{desc: "inference circuit with two routes and a health check", fixtures: []string{"etcd/inference-two-routes.kv"}, golden: "inference-two-routes.json"},
		{
			desc: "inference circuit with one server down", fixtures: []string{"etcd/inference-two-routes.kv"}, golden: "inference-one-down.json",
			down: downSet{"bai_service_9f0c7f0e-8a1b-4c3d-8e5f-3f0f2a9e6c8e@etcd http://10.0.1.22:8000/": true},
		},
		{desc: "TCP circuit publishes nothing", fixtures: []string{"etcd/tcp.kv"}, golden: "traefik-only.json"},
		// Traefik has no TCP plugin middleware: --routes.all publishes them.
		{desc: "TCP circuit with routes.all", fixtures: []string{"etcd/tcp.kv"}, routesAll: true, golden: "tcp-routes-all.json"},
		{desc: "weighted service", fixtures: []string{"etcd/weighted.kv"}, golden: "weighted.json"},
		{desc: "keys in mixed case", fixtures: []string{"etcd/mixed-case.kv"}, golden: "mixed-case.json"},
		{desc: "malformed objects are skipped alone", fixtures: []string{"etcd/malformed.kv"}, golden: "malformed.json", wantErrs: 5},
		{
			desc: "routes.all publishes circuits without the middleware", routesAll: true, golden: "routes-all.json",
			fixtures: []string{"etcd/inference-two-routes.kv", "etcd/interactive.kv"},
		},
	}
	for _, test := range testCases {
		t.Run(test.desc, func(t *testing.T) {
			store, errs := fixture.Store(t, rootKey, "traefik-sd", test.fixtures...)
			if len(errs) != test.wantErrs {
				t.Errorf("decode errors: got %d, want %d: %v", len(errs), test.wantErrs, errs)
			}
			opts := options()
			opts.RoutesAll = test.routesAll
			if test.routesAll {
				// Without the middleware: drop it from every router.
				for _, r := range store.Routers {
					var kept []string
					for _, m := range r.Middlewares {
						if !strings.HasPrefix(m, "bai_sd_") {
							kept = append(kept, m)
						}
					}
					r.Middlewares = kept
				}
			}
			var health targets.Health
			if test.down != nil {
				health = test.down
			}
			got := targets.AppendJSON(nil, targets.Build(opts, targets.Inputs{Store: store, Health: health}))
			path := fixture.Path("targets/" + test.golden)
			if *update {
				if err := os.WriteFile(path, append(got, '\n'), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run with -update to create it)", err)
			}
			if string(got)+"\n" != string(want) {
				t.Errorf("targets differ from %s:\ngot:  %s\nwant: %s", path, got, want)
			}
		})
	}
}

func TestBuildIsDeterministic(t *testing.T) {
	store, _ := fixture.Store(t, rootKey, "traefik-sd", "etcd/interactive.kv", "etcd/inference-two-routes.kv", "etcd/weighted.kv")
	first := targets.AppendJSON(nil, targets.Build(options(), targets.Inputs{Store: store}))
	for i := 0; i < 20; i++ {
		again := targets.AppendJSON(nil, targets.Build(options(), targets.Inputs{Store: store}))
		if string(again) != string(first) {
			t.Fatalf("build %d differs:\n%s\n%s", i, first, again)
		}
	}
}

func TestServiceCycleIsBounded(t *testing.T) {
	store, _ := fixture.Store(t, rootKey, "traefik-sd", "etcd/weighted.kv")
	// stable -> the circuit's own service: a cycle Traefik would refuse.
	store.Services["stable"].LoadBalancer = nil
	store.Services["stable"].Weighted = store.Services["bai_service_aaaa0000-bbbb-4ccc-8ddd-eeeeffff0000"].Weighted
	ts := targets.Build(options(), targets.Inputs{Store: store})
	routes := 0
	for _, tg := range ts {
		if tg.Label("service_group") == targets.GroupRoute {
			routes++
		}
	}
	if routes != 1 { // only canary's server remains
		t.Errorf("got %d route targets through a cycle, want 1", routes)
	}
}

func TestRuleHostsAreTheHostMatchersArguments(t *testing.T) {
	for rule, want := range map[string]string{
		"Host(`a.example`)": "a.example",
		"Host(`a.example`) || Host(`b.example`, `a.example`)":              "a.example b.example",
		"Host(\"q.example\") && PathPrefix(`/x`)":                          "q.example",
		"HostRegexp(`^.+\\.example$`) || HostSNI(`*`)":                     "",
		"XHost(`no.example`) && Host(`yes.example`)":                       "yes.example",
		"(Host(`jupyter-6a1f.example.proxy.backend.ai`)) && Method(`GET`)": "jupyter-6a1f.example.proxy.backend.ai",
		"Host(`unclosed.example`":                                          "",
		"":                                                                 "",
	} {
		if got := strings.Join(targets.RuleHosts(rule), " "); got != want {
			t.Errorf("%s: got %q, want %q", rule, got, want)
		}
	}
}

// TestACoordinatorAnswerTouchesOnlyItsCircuits: the coordinator's answer
// names what changed by circuit, and only those circuits' routers are
// rebuilt; a full rebuild per answer stalled every change behind it.
func TestACoordinatorAnswerTouchesOnlyItsCircuits(t *testing.T) {
	store, errs := fixture.Store(t, rootKey, "traefik-sd", "etcd/inference-two-routes.kv", "etcd/interactive.kv")
	if len(errs) != 0 {
		t.Fatal(errs)
	}
	const interactive = "6a1f3e5d-0b7c-4d8e-9a41-1c1e2f0a7c90"
	old := source.NewRouteTable()
	old.Add(interactive, "10.0.1.10:8080", source.RouteIDs{RouteID: "r1", SessionID: "s1"})
	b := targets.NewBuilder(options())
	b.Update(targets.Inputs{Store: store, Routes: old}, targets.Changes{All: true})
	cur := source.NewRouteTable()
	cur.Add(interactive, "10.0.1.10:8080", source.RouteIDs{RouteID: "r1-new", SessionID: "s1"})
	changed := cur.ChangedCircuits(old)
	if len(changed) != 1 || changed[0] != interactive {
		t.Fatalf("changed circuits: %v", changed)
	}
	touched := b.Update(targets.Inputs{Store: store, Routes: cur}, targets.Changes{Circuits: changed})
	if len(touched) != 1 || touched[0] != "bai_router_"+interactive+"@etcd" {
		t.Fatalf("rebuilt %v, want only the interactive circuit's router", touched)
	}
	found := false
	for _, tg := range b.Targets() {
		if tg.Address == "10.0.1.10:9100" {
			found = tg.Label("route_id") == "r1-new"
		}
	}
	if !found {
		t.Fatal("the changed circuit's target does not carry its new route id")
	}
}
