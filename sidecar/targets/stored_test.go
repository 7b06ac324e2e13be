package targets_test

import (
	"fmt"
	"reflect"
	"slices"
	"testing"

	"github.com/traefik-sd/traefik-sd/internal/coordinator"
	"github.com/traefik-sd/traefik-sd/sidecar/dynamic"
	"github.com/traefik-sd/traefik-sd/sidecar/targets"
)

// TestTargetsLabelledAlikeShareASchemaAndKeepTheirOwnValues: the builder
// keeps one schema (label names, and the values of labels such as the entry
// points) for all targets labelled alike, and each target its own values.
// Twelve circuits on three entry points share three schemas; with room for
// only one, or with every schema's hash colliding, the targets are the same,
// and the body too.
func TestTargetsLabelledAlikeShareASchemaAndKeepTheirOwnValues(t *testing.T) {
	const circuits = 12
	store := dynamic.NewStore("traefik-sd")
	w := &coordinator.Writer{Authority: "worker-1", SD: &coordinator.TraefikSD{}}
	present := map[string]map[string]bool{}
	for i := 0; i < circuits; i++ {
		c := coordinator.Circuit{ID: fmt.Sprintf("c%02d", i), App: "app", Mode: "inference", Hostname: fmt.Sprintf("h%d", i), HealthCheckPath: "/health",
			Routes: []coordinator.Route{{RouteID: fmt.Sprintf("r%d", i), SessionID: fmt.Sprintf("s%d", i), Host: fmt.Sprintf("10.0.0.%d", i), Port: 8000}}}
		applyKeys(store, w, c, present)
		store.Put(dynamic.ObjectID{Kind: dynamic.Routers, Name: "bai_router_" + c.ID}, "entrypoints/0", fmt.Sprintf("ep%d", i%3))
	}
	changed, _ := store.Commit()
	for _, tc := range []struct {
		limit     int
		colliding bool
	}{{}, {limit: 1}, {colliding: true}} {
		limit := tc.limit
		t.Run(fmt.Sprintf("limit=%d,colliding=%v", tc.limit, tc.colliding), func(t *testing.T) {
			b := targets.NewBuilder(options())
			if limit > 0 {
				targets.LimitSchemas(b, limit)
			}
			if tc.colliding {
				targets.CollidingSchemas(b)
			}
			b.Update(targets.Inputs{Store: store}, targets.Changes{Objects: changed})
			seen := 0
			for _, tg := range b.Targets() {
				if tg.Label("service_group") != targets.GroupRoute {
					continue
				}
				var i int
				if _, err := fmt.Sscanf(tg.Label("circuit_id"), "c%02d", &i); err != nil {
					t.Fatalf("target %s: circuit_id %q", tg.Address, tg.Label("circuit_id"))
				}
				seen++
				want := map[string]string{
					"traefik_router":                    fmt.Sprintf("bai_router_c%02d@etcd", i),
					"__meta_traefik_router_entrypoints": fmt.Sprintf(",ep%d,", i%3),
					"__meta_traefik_router_rule_hosts":  fmt.Sprintf(",h%d,", i),
					"worker_authority":                  "worker-1",
				}
				for name, v := range want {
					if got := tg.Label(name); got != v {
						t.Errorf("circuit %d: %s=%q, want %q", i, name, got, v)
					}
				}
				if tg.Address != fmt.Sprintf("10.0.0.%d:8000", i) {
					t.Errorf("circuit %d: address %s", i, tg.Address)
				}
			}
			if seen != circuits {
				t.Fatalf("%d route targets, want %d", seen, circuits)
			}
			// What is served is rendered from the stored form: it is the
			// JSON of the targets it gives back.
			if got, want := string(b.AppendJSON(nil)), string(targets.AppendJSON(nil, b.Targets())); got != want {
				t.Errorf("the body differs from its targets' JSON:\n%s\n%s", got, want)
			}
			wantSchemas := 3
			if limit > 0 {
				wantSchemas = limit
			}
			if got := targets.Schemas(b); got != wantSchemas {
				t.Errorf("%d schemas kept, want %d", got, wantSchemas)
			}
		})
	}
}

// TestEachAndAFrozenSetGiveTheTargetsWithoutHoldingThem: Each walks the
// set as Targets lists it, and a frozen set's Targets are the set when it
// was frozen, whatever changed since (a ServiceDiscovery writer makes the
// targets of the set it takes, later).
func TestEachAndAFrozenSetGiveTheTargetsWithoutHoldingThem(t *testing.T) {
	store := dynamic.NewStore("traefik-sd")
	w := &coordinator.Writer{Authority: "worker-1", SD: &coordinator.TraefikSD{}}
	present := map[string]map[string]bool{}
	put := func(i int, host string) {
		applyKeys(store, w, coordinator.Circuit{ID: fmt.Sprintf("c%02d", i), App: "app", Mode: "inference", Hostname: "h", HealthCheckPath: "/health",
			Routes: []coordinator.Route{{RouteID: "r", SessionID: "s", Host: host, Port: 8000}, {RouteID: "r2", SessionID: "s2", Host: host + "1", Port: 8000}}}, present)
	}
	for i := 0; i < 5; i++ {
		put(i, fmt.Sprintf("10.0.0.%d", i))
	}
	b := targets.NewBuilder(options())
	changed, _ := store.Commit()
	b.Update(targets.Inputs{Store: store}, targets.Changes{Objects: changed})

	want := b.Targets()
	if len(want) != 10+1 { // two a circuit, and Traefik's own
		t.Fatalf("%d targets, want 11: %+v", len(want), want)
	}
	var each []targets.Target
	b.Each(func(tg targets.Target) {
		each = append(each, targets.Target{Address: tg.Address, Labels: slices.Clone(tg.Labels)})
	})
	if !reflect.DeepEqual(each, want) {
		t.Errorf("Each gave\n%+v\nTargets gives\n%+v", each, want)
	}

	frozen := b.Freeze()
	put(0, "10.0.9.9")
	deleteKeys(store, "c01", present)
	changed, _ = store.Commit()
	b.Update(targets.Inputs{Store: store}, targets.Changes{Objects: changed})
	if got := frozen.Targets(); !reflect.DeepEqual(got, want) {
		t.Errorf("the frozen set changed with the builder:\n%+v\nwant\n%+v", got, want)
	}
	if got := string(targets.AppendJSON(nil, frozen.Targets())); got != string(frozen.AppendJSON(nil)) {
		t.Errorf("the frozen set's targets are not its body:\n%s\n%s", got, frozen.AppendJSON(nil))
	}
	if now := b.Targets(); reflect.DeepEqual(now, want) || len(now) != 8+1 {
		t.Errorf("after the change the builder has %d targets, want 9", len(now))
	}
}
