package dynamic_test

import (
	"errors"
	"fmt"
	"math"
	"reflect"
	"runtime"
	"runtime/metrics"
	"slices"
	"strings"
	"testing"

	"github.com/traefik-sd/traefik-sd/internal/coordinator"
	"github.com/traefik-sd/traefik-sd/sidecar/dynamic"
	"github.com/traefik-sd/traefik-sd/sidecar/kv"
)

// sampleKeys are the keys the coordinator writes for n inference circuits
// with the traefik-sd middleware, and n/4 TCP port-mode circuits, relative to
// the root key and sorted, as a listing holds them.
func sampleKeys(n int) listing {
	w := &coordinator.Writer{Authority: "worker-1", SD: &coordinator.TraefikSD{}}
	var l listing
	add := func(c coordinator.Circuit) {
		for k, v := range w.Keys(c) {
			l = append(l, [2]string{strings.TrimPrefix(k, w.RootKey()+"/"), v})
		}
	}
	for i := 0; i < n; i++ {
		add(coordinator.SampleInference(i))
		if i%4 == 0 {
			c := coordinator.SampleInference(1_000_000 + i)
			c.Protocol, c.FrontendMode, c.Port = coordinator.TCP, coordinator.PortMode, 10000+i
			c.Routes[0].Port, c.Routes[1].Port = 2200, 2201
			add(c)
		}
	}
	slices.SortFunc(l, func(a, b [2]string) int { return strings.Compare(a[0], b[0]) })
	return l
}

// twin applies the same writes to two stores, one committed serially and
// one in parallel, and requires the same result from both.
type twin struct {
	t                  *testing.T
	serial, concurrent *dynamic.Store
}

func (tw twin) put(key, value string) {
	id, sub, ok := dynamic.SplitKey(key)
	if !ok {
		tw.t.Fatalf("key %q not read", key)
	}
	tw.serial.Put(id, sub, value)
	tw.concurrent.Put(id, sub, value)
}

func (tw twin) delete(key string) {
	id, sub, _ := dynamic.SplitKey(key)
	tw.serial.Delete(id, sub)
	tw.concurrent.Delete(id, sub)
}

func (tw twin) reset(l listing) {
	tw.serial.Reset(l)
	tw.concurrent.Reset(l)
}

// commit commits both and compares; it returns the result for the round's
// own checks.
func (tw twin) commit(round string) (changed []dynamic.ObjectID, errs []error) {
	t := tw.t
	n := tw.concurrent.Dirty()
	if n < dynamic.ParallelMin {
		t.Fatalf("%s: %d objects changed, too few to decode in parallel", round, n)
	}
	wantChanged, wantErrs := tw.serial.CommitWith(1, 0)
	changed, errs = tw.concurrent.CommitWith(4, dynamic.ParallelMin)
	if !slices.Equal(changed, wantChanged) {
		t.Errorf("%s: changed %d objects, serially %d; first difference %v", round, len(changed), len(wantChanged), firstDiff(changed, wantChanged))
	}
	if got, want := messages(errs), messages(wantErrs); !slices.Equal(got, want) {
		t.Errorf("%s: errors\n%q\nserially\n%q", round, got, want)
	}
	a, b := tw.concurrent, tw.serial
	for _, m := range []struct {
		name string
		a, b any
	}{
		{"routers", a.Routers, b.Routers},
		{"services", a.Services, b.Services},
		{"middlewares", a.Middlewares, b.Middlewares},
		{"tcp routers", a.TCPRouters, b.TCPRouters},
		{"tcp services", a.TCPServices, b.TCPServices},
	} {
		if !reflect.DeepEqual(m.a, m.b) {
			t.Errorf("%s: %s differ from the serial decode", round, m.name)
		}
	}
	if got, want := errorsByID(a), errorsByID(b); !reflect.DeepEqual(got, want) {
		t.Errorf("%s: Errors %v, serially %v", round, got, want)
	}
	// Errors come in object order, as changed does, not in map order.
	ids := make([]dynamic.ObjectID, len(errs))
	for i, err := range errs {
		ids[i] = idOf(t, a, err)
	}
	if !slices.IsSortedFunc(ids, compareIDs) || !slices.IsSortedFunc(changed, compareIDs) {
		t.Errorf("%s: not in object order: errors of %v", round, ids)
	}
	t.Logf("%s: %d objects decoded, %d changed, %d errors", round, n, len(changed), len(errs))
	return changed, errs
}

func compareIDs(a, b dynamic.ObjectID) int {
	if c := strings.Compare(a.Kind.String(), b.Kind.String()); c != 0 {
		return c
	}
	return strings.Compare(a.Name, b.Name)
}

func firstDiff(a, b []dynamic.ObjectID) string {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return fmt.Sprintf("at %d: %v, serially %v", i, a[i], b[i])
		}
	}
	return "at the end"
}

func messages(errs []error) []string {
	out := make([]string, len(errs))
	for i, err := range errs {
		out[i] = err.Error()
	}
	return out
}

func errorsByID(s *dynamic.Store) map[dynamic.ObjectID]string {
	out := map[dynamic.ObjectID]string{}
	for id, err := range s.Errors {
		out[id] = err.Error()
	}
	return out
}

func idOf(t *testing.T, s *dynamic.Store, err error) dynamic.ObjectID {
	var kerr *kv.Error
	if !errors.As(err, &kerr) {
		t.Fatalf("error %v names no object", err)
	}
	for id, e := range s.Errors {
		if e == err {
			return id
		}
	}
	t.Fatalf("error %v is not in Errors", err)
	return dynamic.ObjectID{}
}

// TestParallelCommitDecodesAsSerial: across a first listing, edits, and a
// re-list, the parallel decode leaves the store exactly as the serial one
// does and returns the same changes and errors in the same order.
func TestParallelCommitDecodesAsSerial(t *testing.T) {
	tw := twin{t: t, serial: dynamic.NewStore("traefik-sd"), concurrent: dynamic.NewStore("traefik-sd")}
	const n = 200
	keys := sampleKeys(n)
	// Every kind, and decode errors of every kind among them.
	for _, p := range keys {
		tw.put(p[0], p[1])
	}
	id := func(i int) string { return fmt.Sprintf("%08d-0000-4000-8000-000000000000", i) }
	tcp := func(i int) string { return id(1_000_000 + i) }
	for i := 0; i < n; i += 10 {
		tw.put("http/services/bai_service_"+id(i)+"/loadBalancer/servers/0/url", "ftp://10.0.0.1/")
		tw.put("http/middlewares/bai_sd_"+id(i+1)+"/plugin/traefik-sd/metricsport", "not-a-port")
		tw.put("http/middlewares/bai_appproxy_plugin_"+id(i+2)+"/plugin/appproxy-traefik-plugin/circuit", "{")
		tw.put("http/routers/bai_router_"+id(i+3)+"/rule", "Host(`x`)\xff")
		tw.put("tcp/services/bai_service_"+tcp(i)+"/loadBalancer/servers/0/address", "10.0.0.1")
		tw.put("tcp/routers/bai_router_"+tcp(i+4)+"/entrypoints/0", "\xfe")
	}
	changed, errs := tw.commit("first listing")
	kinds := map[dynamic.Kind]bool{}
	for _, o := range changed {
		kinds[o.Kind] = true
	}
	if len(kinds) != 5 || len(errs) < 6*n/10 {
		t.Fatalf("first listing: kinds %v, %d errors", kinds, len(errs))
	}
	if m := tw.concurrent.Middlewares["bai_sd_"+id(5)]; m == nil || m.SD == nil || m.SD.CircuitID != id(5) {
		t.Fatalf("traefik-sd middleware: %+v", m)
	}

	// Edits: deleted objects, rewrites that decode the same, a broken
	// object mended and a sound one broken.
	rewrites := map[string]bool{}
	for i := 0; i < n; i++ {
		switch i % 5 {
		case 0:
			for _, p := range keys {
				if strings.Contains(p[0], "/bai_router_"+id(i)+"/") || strings.Contains(p[0], "/bai_service_"+tcp(i)+"/") {
					tw.delete(p[0])
				}
			}
		case 1, 2:
			key := "http/routers/bai_router_" + id(i) + "/service"
			rewrites["bai_router_"+id(i)] = true
			tw.delete(key)
			tw.put(key, "bai_service_"+id(i))
			key = "http/middlewares/bai_sd_" + id(i) + "/plugin/traefik-sd/workerauthority"
			rewrites["bai_sd_"+id(i)] = true
			tw.delete(key)
			tw.put(key, "worker-1")
		case 3:
			tw.put("http/routers/bai_router_"+id(i)+"/rule", "Host(`c.example`)")
			tw.put("http/services/bai_service_"+id(i)+"/loadBalancer/servers/0/url", "http://10.9.9.9:8000/")
		case 4:
			tw.put("http/middlewares/bai_sd_"+id(i)+"/plugin/traefik-sd/routes/0/url", "http://10.0.0.1:0/")
		}
	}
	changed, _ = tw.commit("edits")
	for _, o := range changed {
		if rewrites[o.Name] {
			t.Errorf("edits: %v changed by a rewrite of the same value", o)
		}
	}
	if _, ok := tw.concurrent.Routers["bai_router_"+id(0)]; ok {
		t.Error("edits: a deleted router is still there")
	}

	// A re-list without a fifth of the circuits, with a server of each
	// moved, and some of them out of range.
	gone := func(key string) bool {
		for i := 3; i < n; i += 5 {
			if strings.Contains(key, id(i)) {
				return true
			}
		}
		return false
	}
	var l listing
	for k, p := range keys {
		if gone(p[0]) {
			continue
		}
		if strings.HasSuffix(p[0], "/servers/1/url") {
			port := ":8001/"
			if k%7 == 0 {
				port = ":80000/"
			}
			p[1] = strings.Replace(p[1], ":8000/", port, 1)
		}
		l = append(l, p)
	}
	tw.reset(l)
	if _, errs := tw.commit("re-list"); len(errs) == 0 {
		t.Error("re-list: no errors")
	}
}

// TestSmallCommitStaysSerial: a commit below the threshold, as a watch
// event's, starts no goroutine; one at the threshold does, which is what
// the count could miss.
func TestSmallCommitStaysSerial(t *testing.T) {
	if runtime.GOMAXPROCS(0) < 2 {
		t.Skip("one P: every commit is serial")
	}
	started := func(objects int) uint64 {
		s := dynamic.NewStore("traefik-sd")
		for i := 0; i < objects; i++ {
			s.Put(dynamic.ObjectID{Kind: dynamic.Routers, Name: fmt.Sprintf("r%04d", i)}, "rule", "Host(`a.example`)")
		}
		runtime.GC() // the GC's own workers start with its first cycle
		sample := []metrics.Sample{{Name: "/sched/goroutines-created:goroutines"}}
		metrics.Read(sample)
		before := sample[0].Value.Uint64()
		s.Commit()
		metrics.Read(sample)
		return sample[0].Value.Uint64() - before
	}
	if n := started(dynamic.ParallelMin - 1); n != 0 {
		t.Errorf("a commit of %d objects started %d goroutines", dynamic.ParallelMin-1, n)
	}
	if n := started(dynamic.ParallelMin); n == 0 {
		t.Errorf("a commit of %d objects started no goroutine", dynamic.ParallelMin)
	}
}

// A listing's pages decode the objects they changed as they come, while
// the watcher reads the next page; the commit at the last page then ends
// exactly where a commit of the whole listing at once does, errors and
// their order included. A decoding made ahead is not used for an object
// written or deleted since.
func TestDecodingAheadCommitsAsTheWholeListing(t *testing.T) {
	all := sampleKeys(60)
	id := func(i int) string { return fmt.Sprintf("%08d-0000-4000-8000-000000000000", i) }
	for i := 0; i < 60; i += 10 {
		all = append(all,
			[2]string{"http/services/bai_service_" + id(i) + "/loadBalancer/servers/0/url", "ftp://10.0.0.1/"},
			[2]string{"http/middlewares/bai_sd_" + id(i+1) + "/plugin/traefik-sd/metricsport", "not-a-port"},
			[2]string{"http/routers/bai_router_" + id(i+3) + "/rule", "Host(`x`)\xff"})
	}
	slices.SortFunc(all, func(a, b [2]string) int { return strings.Compare(a[0], b[0]) })
	whole := func(l listing) (*dynamic.Store, []dynamic.ObjectID, []error) {
		s := dynamic.NewStore("traefik-sd")
		s.DecodeAheadFrom(math.MaxInt)
		s.Reset(l)
		changed, errs := s.CommitWith(1, math.MaxInt)
		return s, changed, errs
	}
	want, wantChanged, wantErrs := whole(all)
	for _, size := range []int{7, 50, 400} {
		got := dynamic.NewStore("traefik-sd")
		got.DecodeAheadFrom(5)
		paged(got, all, size)
		if got.Ahead() == 0 {
			t.Fatalf("pages of %d: nothing was decoded ahead", size)
		}
		changed, errs := got.Commit()
		if !reflect.DeepEqual(changed, wantChanged) || fmt.Sprint(errs) != fmt.Sprint(wantErrs) {
			t.Fatalf("pages of %d: changed %d objects with errors %v, the whole listing %d with %v", size, len(changed), errs, len(wantChanged), wantErrs)
		}
		sameStore(t, fmt.Sprintf("pages of %d, decoded ahead", size), got, want)
	}

	// A router written between two pages, after it was decoded ahead: the
	// first router of the listing's first half.
	half := len(all) / 2
	router := ""
	for _, kv := range all[:half] {
		if name, ok := strings.CutPrefix(kv[0], "http/routers/"); ok {
			router = name[:strings.IndexByte(name, '/')]
			break
		}
	}
	circuit := strings.TrimPrefix(router, "bai_router_")
	if router == "" || circuit == router {
		t.Fatalf("no circuit's router in the listing's first half: %q", router)
	}
	got := dynamic.NewStore("traefik-sd")
	got.DecodeAheadFrom(1)
	got.BeginReset()
	got.ResetPage(all[:half])
	if got.Ahead() == 0 {
		t.Fatal("first half: nothing decoded ahead")
	}
	got.Put(dynamic.ObjectID{Kind: dynamic.Routers, Name: router}, "rule", "Host(`changed.example`)")
	got.ResetPage(all[half:])
	got.EndReset()
	got.Commit()
	if r := got.Routers[router]; r == nil || r.Rule != "Host(`changed.example`)" {
		t.Fatalf("a router written after it was decoded ahead: %+v", r)
	}

	// A listing abandoned after its pages were decoded ahead, then one
	// without some of those objects: they are gone, not their decodings.
	var fewer listing
	for _, kv := range all {
		if !strings.Contains(kv[0], circuit) {
			fewer = append(fewer, kv)
		}
	}
	want, _, _ = whole(fewer)
	got = dynamic.NewStore("traefik-sd")
	got.DecodeAheadFrom(1)
	got.BeginReset()
	got.ResetPage(all[:half])
	paged(got, fewer, 50)
	got.Commit()
	if got.Routers[router] != nil {
		t.Fatalf("a router the last listing lacks is still there, decoded ahead in the abandoned one")
	}
	sameStore(t, "after an abandoned listing decoded ahead", got, want)
}
