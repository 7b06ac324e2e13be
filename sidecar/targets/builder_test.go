package targets_test

import (
	"fmt"
	"math/rand"
	"sort"
	"strings"
	"testing"

	"github.com/traefik-sd/traefik-sd/internal/coordinator"
	"github.com/traefik-sd/traefik-sd/plugin"
	"github.com/traefik-sd/traefik-sd/sidecar/dynamic"
	"github.com/traefik-sd/traefik-sd/sidecar/targets"
)

// applyKeys writes a circuit's keys into the store, removing the keys of its
// subtrees that are not written again, as the coordinator's transaction does.
func applyKeys(s *dynamic.Store, w *coordinator.Writer, c coordinator.Circuit, present map[string]map[string]bool) {
	next := map[string]bool{}
	for k, v := range w.Keys(c) {
		rel := strings.TrimPrefix(k, rootKey+"/")
		if id, sub, ok := dynamic.SplitKey(rel); ok {
			s.Put(id, sub, v)
			next[rel] = true
		}
	}
	for rel := range present[c.ID] {
		if !next[rel] {
			id, sub, _ := dynamic.SplitKey(rel)
			s.Delete(id, sub)
		}
	}
	present[c.ID] = next
}

func deleteKeys(s *dynamic.Store, id string, present map[string]map[string]bool) {
	for rel := range present[id] {
		oid, sub, _ := dynamic.SplitKey(rel)
		s.Delete(oid, sub)
	}
	delete(present, id)
}

func TestIncrementalEqualsFullBuild(t *testing.T) {
	rng := rand.New(rand.NewSource(7))
	// Coordinators with the traefik-sd setting and without, a circuit at random from either.
	withSD := &coordinator.Writer{Authority: "worker-1", SD: &coordinator.TraefikSD{}}
	withoutSD := &coordinator.Writer{Authority: "worker-1"}
	store := dynamic.NewStore("traefik-sd")
	b := targets.NewBuilder(options())
	present := map[string]map[string]bool{}
	down := downSet{}
	var w *coordinator.Writer
	circuit := func(i int) coordinator.Circuit {
		w = withoutSD
		if rng.Intn(4) > 0 {
			w = withSD
		}
		c := coordinator.Circuit{ID: fmt.Sprintf("c%02d", i), App: "app", Mode: "inference", Hostname: "h", HealthCheckPath: "/health"}
		for r := 0; r < rng.Intn(4); r++ {
			c.Routes = append(c.Routes, coordinator.Route{RouteID: fmt.Sprintf("r%d", rng.Intn(6)), SessionID: fmt.Sprintf("s%d", r), Host: fmt.Sprintf("10.0.%d.%d", i, rng.Intn(4)), Port: 8000 + rng.Intn(2)})
		}
		return c
	}
	var lastDigest [32]byte
	lastBody := ""
	for step := 0; step < 600; step++ {
		var ch targets.Changes
		switch op := rng.Intn(10); {
		case op < 6:
			c := circuit(rng.Intn(30))
			applyKeys(store, w, c, present)
		case op < 8:
			deleteKeys(store, fmt.Sprintf("c%02d", rng.Intn(30)), present)
		default:
			i := rng.Intn(30)
			key := fmt.Sprintf("bai_service_c%02d@etcd http://10.0.%d.%d:%d/", i, i, rng.Intn(4), 8000+rng.Intn(2))
			down[key] = !down[key]
			ch.Services = []string{fmt.Sprintf("bai_service_c%02d@etcd", i)}
		}
		changed, _ := store.Commit()
		ch.Objects = changed
		b.Update(targets.Inputs{Store: store, Health: down}, ch)
		got := string(b.AppendJSON(nil))
		want := string(targets.AppendJSON(nil, targets.Build(options(), targets.Inputs{Store: store, Health: down})))
		if got != want {
			t.Fatalf("step %d: incremental differs from a full build:\n%s\n%s", step, got, want)
		}
		// The digest moves exactly when the body does.
		digest := b.Digest()
		if (digest != lastDigest) != (got != lastBody) {
			t.Fatalf("step %d: digest changed %v, body changed %v", step, digest != lastDigest, got != lastBody)
		}
		lastDigest, lastBody = digest, got
	}
}

func TestLimitsLeaveOutDeterministicallyAndCount(t *testing.T) {
	store := circuitStore(t, 10) // two route targets per circuit
	opts := options()
	opts.MaxTargets = 7
	b := targets.NewBuilder(opts)
	b.Update(targets.Inputs{Store: store}, targets.Changes{All: true})
	routes := 0
	for _, tg := range b.Targets() {
		if tg.Label("service_group") == targets.GroupRoute {
			routes++
		}
	}
	// Whole routers only, in name order: three fit (6 targets), the rest wait.
	if routes != 6 || b.Dropped()["targets"] != 14 {
		t.Errorf("published %d route targets, dropped %v", routes, b.Dropped())
	}
	if string(b.AppendJSON(nil)) != string(targets.AppendJSON(nil, b.Targets())) {
		t.Error("the body does not match the kept targets")
	}

	opts = options()
	opts.MaxLabels = 5 // the route targets carry six labels
	b = targets.NewBuilder(opts)
	b.Update(targets.Inputs{Store: store}, targets.Changes{All: true})
	if len(b.Targets()) != 1 || b.Dropped()["labels"] != 20 {
		t.Errorf("with at most 5 labels: %d targets kept, dropped %v", len(b.Targets()), b.Dropped())
	}
}

// fakeTraefik is Traefik's view as the engine would hold it.
type fakeTraefik struct {
	live    map[string]*plugin.Config
	routers map[string]targets.RouterState
}

func (f *fakeTraefik) Live(m string) *plugin.Config { return f.live[m] }
func (f *fakeTraefik) Router(n string) (targets.RouterState, bool) {
	r, ok := f.routers[n]
	return r, ok
}

func (f *fakeTraefik) Routers() []string {
	var out []string
	for n := range f.routers {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// Whatever order etcd, the plugin and Traefik's API change in, rebuilding
// only what a change touches gives the full build's body, in both modes.
func TestIncrementalEqualsFullBuildUnderTraefiksView(t *testing.T) {
	for _, withEtcd := range []bool{true, false} {
		t.Run(fmt.Sprintf("etcd=%v", withEtcd), func(t *testing.T) {
			rng := rand.New(rand.NewSource(11))
			w := &coordinator.Writer{Authority: "worker-1", SD: &coordinator.TraefikSD{}}
			store := dynamic.NewStore("traefik-sd")
			view := &fakeTraefik{live: map[string]*plugin.Config{}, routers: map[string]targets.RouterState{}}
			in := targets.Inputs{Traefik: view}
			if withEtcd {
				in.Store = store
			}
			b := targets.NewBuilder(options())
			present := map[string]map[string]bool{}
			published := 0
			held, heldBody := b.Freeze(), string(b.AppendJSON(nil))
			for step := 0; step < 800; step++ {
				i := rng.Intn(20)
				id := fmt.Sprintf("c%02d", i)
				mw, rt := "bai_sd_"+id+"@etcd", "bai_router_"+id+"@etcd"
				var ch targets.Changes
				switch op := rng.Intn(6); op {
				case 0, 1:
					c := coordinator.Circuit{ID: id, App: "app", Mode: "inference", Hostname: "h"}
					for r := 0; r < 1+rng.Intn(3); r++ {
						c.Routes = append(c.Routes, coordinator.Route{RouteID: fmt.Sprintf("r%d", r), SessionID: fmt.Sprintf("s%d", r), Host: fmt.Sprintf("10.0.%d.%d", i, r), Port: 8000})
					}
					applyKeys(store, w, c, present)
				case 2:
					deleteKeys(store, id, present)
				case 3:
					if view.live[mw] != nil && rng.Intn(2) == 0 {
						delete(view.live, mw)
					} else {
						cfg := &plugin.Config{CircuitID: id, MetricsPath: "/metrics"}
						for r := 0; r < 1+rng.Intn(3); r++ {
							cfg.Routes = append(cfg.Routes, plugin.Route{URL: fmt.Sprintf("http://10.0.%d.%d:8000/", i, r), SessionID: fmt.Sprintf("s%d", r)})
						}
						view.live[mw] = cfg
					}
					ch.Live = []string{mw}
				default:
					switch rng.Intn(3) {
					case 0:
						delete(view.routers, rt)
					case 1:
						view.routers[rt] = targets.RouterState{Served: false, Error: "bad rule", Service: "bai_service_" + id + "@etcd", Middlewares: []string{mw}}
					default:
						view.routers[rt] = targets.RouterState{Served: true, Service: "bai_service_" + id + "@etcd", Middlewares: []string{"CORSHeaders@etcd", mw}}
					}
					ch.Routers = []string{rt}
				}
				changed, _ := store.Commit()
				ch.Objects = changed
				b.Update(in, ch)
				// A set frozen before this change must still render the
				// body it had then: the publisher renders late.
				if then := string(held.AppendJSON(nil)); then != heldBody {
					t.Fatalf("step %d: the last step's frozen set changed under it:\n%s\n%s", step, then, heldBody)
				}
				got := string(b.AppendJSON(nil))
				want := string(targets.AppendJSON(nil, targets.Build(options(), in)))
				if got != want {
					t.Fatalf("step %d: incremental differs from a full build:\n%s\n%s", step, got, want)
				}
				// The digest and counts kept as routers change must be a
				// fresh build's: they decide whether a body is published.
				fresh := targets.NewBuilder(options())
				fresh.Update(in, targets.Changes{All: true})
				if b.Digest() != fresh.Digest() || fmt.Sprint(b.Groups()) != fmt.Sprint(fresh.Groups()) {
					t.Fatalf("step %d: kept digest or groups %v differ from a fresh build's %v", step, b.Groups(), fresh.Groups())
				}
				held, heldBody = b.Freeze(), got
				if held.Size() != len(got) {
					t.Fatalf("step %d: frozen size %d, body %d bytes", step, held.Size(), len(got))
				}
				if strings.Contains(got, targets.GroupRoute) {
					published++
				}
			}
			if published < 100 {
				t.Fatalf("only %d of 800 steps published a route target: the walk does not exercise the gate", published)
			}
		})
	}
}
