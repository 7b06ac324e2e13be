package engine

import (
	"encoding/json"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/traefik-sd/traefik-sd/internal/coordinator"
	"github.com/traefik-sd/traefik-sd/plugin"
	"github.com/traefik-sd/traefik-sd/sidecar/pluginsync"
	"github.com/traefik-sd/traefik-sd/sidecar/source"
	"github.com/traefik-sd/traefik-sd/sidecar/targets"
	"github.com/traefik-sd/traefik-sd/sidecar/watch"
)

// listedCircuit is an engine that listed one circuit written by the patched
// coordinator, with its traefik-sd middleware bai_sd_c1.
func listedCircuit(t *testing.T) (*Engine, time.Time) {
	t.Helper()
	at := time.Date(2026, 11, 30, 10, 0, 0, 0, time.UTC)
	e := New(Options{
		Targets:    targets.Options{WorkerAuthority: "worker-1", Provider: "etcd", RoutesAll: false},
		Etcd:       true,
		PluginName: "traefik-sd",
		StartGrace: time.Minute,
	}, at)
	w := &coordinator.Writer{Authority: "worker-1", UnchainAppProxyPlugins: true, SD: &coordinator.TraefikSD{}}
	keys := w.Keys(coordinator.Circuit{ID: "c1", App: "llama", Mode: "inference", Hostname: "c1.example",
		Routes: []coordinator.Route{{RouteID: "r1", SessionID: "s1", Host: "10.0.1.1", Port: 8000}}})
	names := make([]string, 0, len(keys))
	for k := range keys {
		names = append(names, k)
	}
	sort.Strings(names)
	b := watch.Batch{Snapshot: true, Received: at}
	for _, k := range names {
		b.Events = append(b.Events, watch.Event{Key: strings.TrimPrefix(k, "traefik/worker_worker-1/"), Value: keys[k]})
	}
	if res := e.Etcd([]source.EtcdBatch{b}); len(res.DecodeErrors) > 0 {
		t.Fatal(res.DecodeErrors)
	}
	if m := e.store.Middlewares["bai_sd_c1"]; m == nil || m.SD == nil {
		t.Fatalf("the store holds no traefik-sd middleware bai_sd_c1: %v", e.store.Middlewares)
	}
	return e, at
}

// push is what the daemon hands the engine for a full push of one
// middleware: its JSON decoded by pluginsync, as it comes from Traefik.
func push(t *testing.T, at time.Time, cfg plugin.Config) []pluginsync.Update {
	t.Helper()
	body, err := json.Marshal(plugin.Push{Node: "traefik-0", Boot: "b", Seq: 1, Full: true, ResyncSeconds: 300, HeartbeatSeconds: 2,
		Middlewares: []plugin.LiveMiddleware{{Name: "bai_sd_c1@etcd", Instances: 1, Since: at, Config: cfg}}})
	if err != nil {
		t.Fatal(err)
	}
	p, err := pluginsync.Decode(body)
	if err != nil {
		t.Fatal(err)
	}
	s := pluginsync.NewStore()
	if err := s.Apply(p, at); err != nil {
		t.Fatal(err)
	}
	return s.Drain()
}

// TestAPushedConfigurationEqualToEtcdsIsHeldOnce: the plugin pushes what
// Traefik decoded from the same keys the store decoded, so the live set
// holds the store's configuration rather than a second copy of every
// string (a fifth of a kilobyte a circuit at 100,000 circuits), and one that
// differs is held as pushed.
func TestAPushedConfigurationEqualToEtcdsIsHeldOnce(t *testing.T) {
	e, at := listedCircuit(t)
	stored := e.store.Middlewares["bai_sd_c1"].SD
	// Through JSON, the push's empty lists and labels arrive as nil where
	// the store holds them empty: the same configuration all the same.
	e.Pushes(push(t, at, *stored))
	if got := e.traefik.Live("bai_sd_c1@etcd"); got != stored {
		t.Fatalf("the live configuration is a copy (%+v), not the store's (%+v)", got, stored)
	}
	if n := e.Groups()[targets.GroupRoute]; n != 1 {
		t.Fatalf("published %d route targets, want 1", n)
	}

	other := *stored
	other.MetricsPath = "/other"
	e.Pushes(push(t, at.Add(time.Second), other))
	got := e.traefik.Live("bai_sd_c1@etcd")
	if got == stored || got == nil || got.MetricsPath != "/other" {
		t.Fatalf("a pushed configuration that differs from the store's is held as %+v, want its own with /other", got)
	}
	if stored.MetricsPath == "/other" {
		t.Fatal("the store's configuration was written to")
	}
}

// TestSameConfigSeesEveryField: sharing the store's configuration is right
// only if no field that differs goes unnoticed, in a field added later too.
func TestSameConfigSeesEveryField(t *testing.T) {
	base := plugin.Config{CircuitID: "c1", MetricsPath: "/metrics", SessionIDs: []string{}, Labels: map[string]string{}}
	if !sameConfig(base, plugin.Config{CircuitID: "c1", MetricsPath: "/metrics"}) {
		t.Fatal("empty lists and labels differ from absent ones")
	}
	typ := reflect.TypeOf(base)
	for i := 0; i < typ.NumField(); i++ {
		other := base
		f := reflect.ValueOf(&other).Elem().Field(i)
		switch f.Kind() {
		case reflect.String:
			f.SetString("x")
		case reflect.Int:
			f.SetInt(1)
		case reflect.Slice:
			f.Set(reflect.MakeSlice(f.Type(), 1, 1))
		case reflect.Map:
			m := reflect.MakeMap(f.Type())
			m.SetMapIndex(reflect.ValueOf("team"), reflect.ValueOf("a"))
			f.Set(m)
		default:
			t.Fatalf("field %s is a %s: teach this test to change it", typ.Field(i).Name, f.Kind())
		}
		if sameConfig(base, other) {
			t.Errorf("a different %s is taken as the same configuration", typ.Field(i).Name)
		}
	}
}
