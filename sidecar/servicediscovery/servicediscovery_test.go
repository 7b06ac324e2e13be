package servicediscovery_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/traefik-sd/traefik-sd/internal/testbed"
	"github.com/traefik-sd/traefik-sd/sidecar/servicediscovery"
	"github.com/traefik-sd/traefik-sd/sidecar/targets"
)

// recordingStore remembers what it was asked to do.
type recordingStore struct {
	puts, deletes []string
	fail          error
	swept         [][3]string // group, id, worker_authority offered to stale
	staleSaid     []bool
	held          map[string]map[string]string // id -> labels, for Sweep
}

func (s *recordingStore) Name() string                                       { return "recording" }
func (s *recordingStore) Prepare(context.Context) (bool, error)              { return false, s.fail }
func (s *recordingStore) Withdraw(context.Context, []servicediscovery.Entry) {}
func (s *recordingStore) Put(_ context.Context, ws []servicediscovery.Write) error {
	if s.fail != nil {
		return s.fail
	}
	for _, w := range ws {
		s.puts = append(s.puts, w.Endpoint.PrometheusAddress)
	}
	return nil
}

func (s *recordingStore) Delete(_ context.Context, es []servicediscovery.Entry) error {
	for _, e := range es {
		s.deletes = append(s.deletes, e.Endpoint.PrometheusAddress)
	}
	return nil
}

func (s *recordingStore) Sweep(_ context.Context, _ []string, stale func(group, id string, labels map[string]string) bool) (int, error) {
	n := 0
	for id, labels := range s.held {
		said := stale(targets.GroupRoute, id, labels)
		s.staleSaid = append(s.staleSaid, said)
		if said {
			n++
		}
	}
	return n, nil
}

func route(addr, circuit string) targets.Target {
	return targets.Target{Address: addr, Labels: []targets.Label{
		{Name: "circuit_id", Value: circuit}, {Name: "service_group", Value: targets.GroupRoute}, {Name: "worker_authority", Value: "w1"}}}
}

func TestWriterWritesOnlyWhatChanged(t *testing.T) {
	store := &recordingStore{}
	w := &servicediscovery.Writer{Store: store, Version: "v", Authority: "w1", Node: "n1",
		Now: func() time.Time { return time.Unix(1_700_000_000, 0) }}
	ctx := context.Background()
	w.SetTargets([]targets.Target{route("10.0.0.1:80", "c1"), route("10.0.0.2:80", "c2"),
		{Address: "10.0.0.9:10200", Labels: []targets.Label{{Name: "service_group", Value: targets.GroupCoordinator}}}})
	if err := w.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(store.puts, " "); got != "10.0.0.1:80 10.0.0.2:80" && got != "10.0.0.2:80 10.0.0.1:80" {
		t.Fatalf("first sync wrote %q (the coordinator registers itself, so not it)", got)
	}
	store.puts = nil
	w.SetTargets([]targets.Target{route("10.0.0.1:80", "c1"), route("10.0.0.3:80", "c3")})
	if err := w.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if strings.Join(store.puts, " ") != "10.0.0.3:80" || strings.Join(store.deletes, " ") != "10.0.0.2:80" {
		t.Errorf("second sync: put %v, deleted %v; want only the new one put and the gone one deleted", store.puts, store.deletes)
	}
	// A failed write is retried whole next time.
	store.puts, store.fail = nil, errors.New("down")
	w.SetTargets([]targets.Target{route("10.0.0.1:80", "c1"), route("10.0.0.3:80", "c3"), route("10.0.0.4:80", "c4")})
	if err := w.Sync(ctx); err == nil || !strings.Contains(err.Error(), "recording store") {
		t.Fatalf("a failing store: %v", err)
	}
	store.fail = nil
	if err := w.Sync(ctx); err != nil || strings.Join(store.puts, " ") != "10.0.0.4:80" {
		t.Errorf("the retry: put %v, %v", store.puts, err)
	}
}

// TestSweepWaitsForAPublishedSet: until the first published set arrives,
// the writer wants nothing, and sweeping then would delete every entry of
// this worker: the sweep waits for a set, and runs once.
func TestSweepWaitsForAPublishedSet(t *testing.T) {
	store := &recordingStore{held: map[string]map[string]string{
		"old-id": {"worker_authority": "w1"},
		"theirs": {"worker_authority": "w2"},
	}}
	w := &servicediscovery.Writer{Store: store, Version: "v", Authority: "w1", Node: "n1"}
	ctx := context.Background()
	if err := w.Sync(ctx); err != nil || len(store.staleSaid) != 0 {
		t.Fatalf("swept before any set: %v %v", store.staleSaid, err)
	}
	w.SetTargets([]targets.Target{route("10.0.0.1:80", "c1")})
	if err := w.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	stale := 0
	for _, s := range store.staleSaid {
		if s {
			stale++
		}
	}
	if len(store.staleSaid) != 2 || stale != 1 {
		t.Errorf("asked about %d entries, %d stale; want 2 asked, only our old one stale", len(store.staleSaid), stale)
	}
	if err := w.Sync(ctx); err != nil || len(store.staleSaid) != 2 {
		t.Errorf("swept again: %d", len(store.staleSaid))
	}
}

// TestRedisFieldsAreBackendAIsJSON: one field per top-level attribute of
// ServiceMetadata, each JSON: the id a string, the port an integer, the
// times floats, labels an object of strings (__metrics_path__ included).
func TestRedisFieldsAreBackendAIsJSON(t *testing.T) {
	e, err := servicediscovery.EntryOf(targets.Target{Address: "10.0.1.30:8000", Labels: []targets.Label{
		{Name: "__metrics_path__", Value: "/custom/metrics"}, {Name: "circuit_id", Value: "c1"},
		{Name: "service_group", Value: targets.GroupRoute}}}, "traefik-sd")
	if err != nil {
		t.Fatal(err)
	}
	fields, err := servicediscovery.RedisFields(servicediscovery.Record{Entry: e,
		Health: servicediscovery.Health{RegistrationTime: 1764072000.25, LastHeartbeat: 1764072060.5}})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"id":            `"` + e.ID + `"`,
		"display_name":  `"circuit c1 10.0.1.30:8000"`,
		"service_group": `"appproxy-circuit-route"`,
		"version":       `"traefik-sd"`,
		"endpoint":      `{"address":"10.0.1.30","port":8000,"protocol":"http","prometheus_address":"10.0.1.30:8000"}`,
		"health_status": `{"registration_time":1764072000.25,"last_heartbeat":1764072060.5}`,
		"labels":        `{"__metrics_path__":"/custom/metrics","circuit_id":"c1"}`,
	}
	if len(fields) != len(want) {
		t.Errorf("%d fields, want %d: %v", len(fields), len(want), fields)
	}
	for k, v := range want {
		if fields[k] != v {
			t.Errorf("field %s = %s, want %s", k, fields[k], v)
		}
	}
	if got := servicediscovery.RedisKey(e.Group, e.ID); got != "service_discovery.appproxy-circuit-route."+e.ID {
		t.Errorf("key %s", got)
	}
}

// TestRedisStoreNoticesAnotherServer: a Redis that is another server than
// the last one (restarted here; a Sentinel failover in sidecar/daemon's
// TestRedisStoreFollowsASentinelFailover) makes the store fresh once, so
// that every entry is written again and the store swept again.
func TestRedisStoreNoticesAnotherServer(t *testing.T) {
	r := testbed.StartRedis(t, t.TempDir())
	store := &servicediscovery.RedisStore{Client: r.Client(t)}
	ctx := testbed.Context(t, time.Minute)
	for i, want := range []bool{false, false} {
		if fresh, err := store.Prepare(ctx); err != nil || fresh != want {
			t.Fatalf("prepare %d on the same server: fresh %v (%v), want %v", i, fresh, err, want)
		}
	}
	r.Restart(t, false)
	var fresh bool
	testbed.Eventually(t, 20*time.Second, "the restarted server answers", func() (bool, string) {
		var err error
		fresh, err = store.Prepare(ctx)
		return err == nil, fmt.Sprint(err)
	})
	if !fresh {
		t.Error("a restarted server is not fresh")
	}
	if fresh, err := store.Prepare(ctx); err != nil || fresh {
		t.Errorf("the next prepare: fresh %v (%v), want false", fresh, err)
	}
}
