package targets_test

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand"
	"runtime"
	"slices"
	"sort"
	"strings"
	"testing"
	"unsafe"

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

// TestIncrementalEqualsFullBuild, and again with every input of the
// builder's reader index hashing alike: a collision may only add routers
// to look at, never lose one that reads a change, and Readers still names
// exactly the routers that read an object.
func TestIncrementalEqualsFullBuild(t *testing.T) {
	for _, colliding := range []bool{false, true} {
		t.Run(fmt.Sprintf("colliding=%v", colliding), func(t *testing.T) { incrementalEqualsFullBuild(t, colliding) })
	}
}

func incrementalEqualsFullBuild(t *testing.T, colliding bool) {
	rng := rand.New(rand.NewSource(7))
	// Coordinators with the traefik-sd setting and without, a circuit at random from either.
	withSD := &coordinator.Writer{Authority: "worker-1", SD: &coordinator.TraefikSD{}}
	withoutSD := &coordinator.Writer{Authority: "worker-1"}
	store := dynamic.NewStore("traefik-sd")
	b := targets.NewBuilder(options())
	if colliding {
		targets.Colliding(b)
	}
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
		// Readers names the routers that read an object as a builder made
		// afresh from the same inputs does.
		fresh := targets.NewBuilder(options())
		fresh.Update(targets.Inputs{Store: store, Health: down}, targets.Changes{All: true})
		for _, id := range []dynamic.ObjectID{
			{Kind: dynamic.Services, Name: fmt.Sprintf("bai_service_c%02d", rng.Intn(30))},
			{Kind: dynamic.Middlewares, Name: fmt.Sprintf("bai_sd_c%02d", rng.Intn(30))},
		} {
			if got, want := b.Readers(id), fresh.Readers(id); !slices.Equal(got, want) {
				t.Fatalf("step %d: %v is read by %v, a fresh builder says %v", step, id, got, want)
			}
		}
	}
	// With every circuit gone, the index holds nothing.
	for i := 0; i < 30; i++ {
		deleteKeys(store, fmt.Sprintf("c%02d", i), present)
	}
	changed, _ := store.Commit()
	b.Update(targets.Inputs{Store: store, Health: down}, targets.Changes{Objects: changed})
	if n := targets.ReaderKeys(b); n != 0 {
		t.Errorf("with no circuit left the reader index holds %d keys", n)
	}
}

func TestLimitsLeaveOutDeterministicallyAndCount(t *testing.T) {
	store := circuitStore(t, 10) // two route targets per circuit
	opts := options()
	opts.MaxTargets = 7
	// The three routers kept end inside the second chunk of two.
	b := targets.Chunked(targets.NewBuilder(opts), 2)
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
			// Twenty circuits in chunks of three: a change writes one
			// chunk of several, and the frozen set must keep the others.
			b := targets.Chunked(targets.NewBuilder(options()), 3)
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

// Building routers side by side stores what building them one by one does:
// the same body, digest and counts, the same circuits not served and the
// same index of what each router read, through changes that rebuild one
// router, some, or all of them at once.
func TestParallelBuildIsTheSerialBuild(t *testing.T) {
	const circuits = 300
	rng := rand.New(rand.NewSource(5))
	w := &coordinator.Writer{Authority: "worker-1", SD: &coordinator.TraefikSD{}}
	plain := &coordinator.Writer{Authority: "worker-1"}
	// Its targets carry a label more (__metrics_path__).
	ownPath := &coordinator.Writer{Authority: "worker-1", SD: &coordinator.TraefikSD{MetricsPath: "/m"}}
	store := dynamic.NewStore("traefik-sd")
	view := &fakeTraefik{live: map[string]*plugin.Config{}, routers: map[string]targets.RouterState{}}
	down := downSet{}
	in := targets.Inputs{Store: store, Traefik: view, Health: down}
	opts := options()
	opts.MaxLabels = 11 // a route target's eleven: those with their own metrics path are left out
	serial := targets.BuildOn(targets.NewBuilder(opts), 1)
	parallel := targets.BuildOn(targets.NewBuilder(opts), 4)
	present := map[string]map[string]bool{}
	write := func(i int) {
		id := fmt.Sprintf("c%03d", i)
		c := coordinator.Circuit{ID: id, App: "app", Mode: "inference", Hostname: "h"}
		for r := 0; r < rng.Intn(4); r++ {
			c.Routes = append(c.Routes, coordinator.Route{RouteID: fmt.Sprintf("r%d", r), SessionID: fmt.Sprintf("s%d", r), Host: fmt.Sprintf("10.%d.%d.%d", i/200, i%200, r), Port: 8000})
		}
		cw := w
		switch rng.Intn(5) {
		case 0:
			cw = plain // no traefik-sd middleware: its router reads other inputs
		case 1:
			cw = ownPath
		}
		applyKeys(store, cw, c, present)
	}
	live := func(i int) string {
		id := fmt.Sprintf("c%03d", i)
		mw := "bai_sd_" + id + "@etcd"
		view.live[mw] = &plugin.Config{CircuitID: id, MetricsPath: "/metrics"}
		view.routers["bai_router_"+id+"@etcd"] = targets.RouterState{Served: rng.Intn(8) > 0, Error: "bad rule"}
		return mw
	}
	for i := 0; i < circuits; i++ {
		write(i)
	}
	ids := func() []dynamic.ObjectID {
		var out []dynamic.ObjectID
		for i := 0; i < circuits; i++ {
			id := fmt.Sprintf("c%03d", i)
			out = append(out,
				dynamic.ObjectID{Kind: dynamic.Middlewares, Name: "bai_sd_" + id},
				dynamic.ObjectID{Kind: dynamic.Services, Name: "bai_service_" + id},
				dynamic.ObjectID{Kind: dynamic.Middlewares, Name: "bai_appproxy_plugin_" + id})
		}
		return out
	}()
	for step := 0; step < 40; step++ {
		var ch targets.Changes
		switch op := rng.Intn(5); {
		case step == 0:
			ch.All = true // the first listing
		case op == 0:
			// The plugin's full set: every router's middleware goes live.
			for i := 0; i < circuits; i++ {
				ch.Live = append(ch.Live, live(i))
			}
		case op == 1:
			for n := rng.Intn(circuits); n > 0; n-- {
				write(rng.Intn(circuits))
			}
		case op == 2:
			for n := rng.Intn(40); n > 0; n-- {
				deleteKeys(store, fmt.Sprintf("c%03d", rng.Intn(circuits)), present)
			}
		case op == 3:
			for n := rng.Intn(circuits); n > 0; n-- {
				i := rng.Intn(circuits)
				svc := fmt.Sprintf("bai_service_c%03d@etcd", i)
				key := svc + fmt.Sprintf(" http://10.%d.%d.%d:8000/", i/200, i%200, rng.Intn(3))
				down[key] = !down[key]
				ch.Services = append(ch.Services, svc)
			}
		default:
			ch.All = true
		}
		changed, _ := store.Commit()
		ch.Objects = changed
		a, b := serial.Update(in, ch), parallel.Update(in, ch)
		if fmt.Sprint(a) != fmt.Sprint(b) {
			t.Fatalf("step %d: rebuilt %d routers one by one, %d side by side", step, len(a), len(b))
		}
		if s, p := string(serial.AppendJSON(nil)), string(parallel.AppendJSON(nil)); s != p {
			t.Fatalf("step %d: bodies differ:\n%s\n%s", step, s, p)
		}
		if serial.Digest() != parallel.Digest() {
			t.Fatalf("step %d: digests differ", step)
		}
		for _, f := range []func(*targets.Builder) string{
			func(b *targets.Builder) string { return fmt.Sprint(b.Groups()) },
			func(b *targets.Builder) string { return fmt.Sprint(b.Dropped()) },
			func(b *targets.Builder) string { return fmt.Sprint(b.NotServed()) },
		} {
			if s, p := f(serial), f(parallel); s != p {
				t.Fatalf("step %d: one by one %s, side by side %s", step, s, p)
			}
		}
		for _, id := range ids {
			if s, p := serial.Readers(id), parallel.Readers(id); fmt.Sprint(s) != fmt.Sprint(p) {
				t.Fatalf("step %d: %v is read by %v one by one, by %v side by side", step, id, s, p)
			}
		}
	}
	if len(serial.NotServed()) == 0 || serial.Dropped()["labels"] == 0 || serial.Groups()[targets.GroupRoute] == 0 {
		t.Fatalf("the walk ends with %d not served, %v dropped, %v: it does not exercise them", len(serial.NotServed()), serial.Dropped(), serial.Groups())
	}
}

// chunks records each write it is handed.
type chunks struct {
	got  [][]byte
	fail error // returned from the second write on
}

func (c *chunks) Write(p []byte) (int, error) {
	if c.fail != nil && len(c.got) > 0 {
		return 0, c.fail
	}
	c.got = append(c.got, append([]byte(nil), p...))
	return len(p), nil
}

// WriteJSON, which the publisher compresses from, writes the body AppendJSON
// appends, in pieces of tens of kilobytes rather than whole; a writer's
// error ends it.
func TestWriteJSONWritesTheBodyInPieces(t *testing.T) {
	w := &coordinator.Writer{Authority: "worker-1", SD: &coordinator.TraefikSD{}}
	store := dynamic.NewStore("traefik-sd")
	present := map[string]map[string]bool{}
	for i := 0; i < 400; i++ {
		applyKeys(store, w, coordinator.SampleInference(i), present)
	}
	changed, _ := store.Commit()
	b := targets.NewBuilder(options())
	b.Update(targets.Inputs{Store: store}, targets.Changes{Objects: changed})
	f := b.Freeze()
	whole := f.AppendJSON(nil)
	if len(whole) != f.Size() || len(whole) < 200<<10 {
		t.Fatalf("body of %d bytes, size %d: want one of a few hundred kilobytes", len(whole), f.Size())
	}
	var c chunks
	if err := f.WriteJSON(&c); err != nil {
		t.Fatal(err)
	}
	if got := bytes.Join(c.got, nil); !bytes.Equal(got, whole) {
		t.Fatalf("WriteJSON wrote %d bytes that differ from AppendJSON's %d", len(got), len(whole))
	}
	largest := 0
	for _, p := range c.got {
		largest = max(largest, len(p))
	}
	if len(c.got) < 4 || largest > 64<<10 {
		t.Fatalf("%d writes, the largest %d bytes: want pieces of tens of kilobytes", len(c.got), largest)
	}
	broken := &chunks{fail: errors.New("connection reset")}
	if err := f.WriteJSON(broken); err == nil || len(broken.got) != 1 {
		t.Fatalf("after a failed write: error %v, %d writes", err, len(broken.got))
	}
}

// TestAChangeAfterAFreezeCopiesAChunkNotTheList: one circuit's route
// changes among 10,000 after the set was frozen (as every change Prometheus
// saw was). The change copies the chunk of routers it writes, not the
// whole list: 10,000 slices of 24 bytes, at 100,000 circuits 2.4 MB a
// change, which made the collector run every few hundred changes.
func TestAChangeAfterAFreezeCopiesAChunkNotTheList(t *testing.T) {
	const circuits = 10000
	store := circuitStore(t, circuits)
	b := targets.NewBuilder(options())
	b.Update(targets.Inputs{Store: store}, targets.Changes{All: true})
	svc := dynamic.ObjectID{Kind: dynamic.Services, Name: "bai_service_00004242-0000-4000-8000-000000000000"}
	var before, after runtime.MemStats
	for i := 0; i < 3; i++ {
		b.Freeze()
		store.Services[svc.Name].LoadBalancer.Servers[0].URL = fmt.Sprintf("http://10.99.0.%d:8000/", i)
		runtime.ReadMemStats(&before)
		b.Update(targets.Inputs{Store: store}, targets.Changes{Objects: []dynamic.ObjectID{svc}})
		runtime.ReadMemStats(&after)
		list := circuits * int(unsafe.Sizeof([]int(nil)))
		if n := int(after.TotalAlloc - before.TotalAlloc); n >= list/2 {
			t.Fatalf("change %d allocated %d bytes; the list of %d routers alone is %d", i, n, circuits, list)
		}
	}
	if got := string(b.AppendJSON(nil)); !strings.Contains(got, `"10.99.0.2:8000"`) {
		t.Error("the last change is not in the body")
	}
}
