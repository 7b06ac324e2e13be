package targets_test

import (
	"fmt"
	"math/rand"
	"strings"
	"testing"

	"github.com/traefik-sd/traefik-sd/internal/coordinator"
	"github.com/traefik-sd/traefik-sd/sidecar/dynamic"
	"github.com/traefik-sd/traefik-sd/sidecar/publish"
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
	w := &coordinator.Writer{Authority: "worker-1"}
	store := dynamic.NewStore("traefik-sd")
	b := targets.NewBuilder(options())
	b.SetRenderer(publish.AppendJSON)
	present := map[string]map[string]bool{}
	down := downSet{}
	circuit := func(i int) coordinator.Circuit {
		c := coordinator.Circuit{ID: fmt.Sprintf("c%02d", i), App: "app", Mode: "inference", Hostname: "h", SD: rng.Intn(4) > 0, HealthCheckPath: "/health"}
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
			applyKeys(store, w, circuit(rng.Intn(30)), present)
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
		b.Update(store, down, nil, ch)
		got := string(b.AppendJSON(nil))
		want := string(publish.AppendJSON(nil, targets.Build(options(), store, down, nil)))
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
	b.SetRenderer(publish.AppendJSON)
	b.Update(store, nil, nil, targets.Changes{All: true})
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
	if string(b.AppendJSON(nil)) != string(publish.AppendJSON(nil, b.Targets())) {
		t.Error("the body does not match the kept targets")
	}

	opts = options()
	opts.MaxLabels = 7 // the route targets carry eight labels
	b = targets.NewBuilder(opts)
	b.SetRenderer(publish.AppendJSON)
	b.Update(store, nil, nil, targets.Changes{All: true})
	if len(b.Targets()) != 1 || b.Dropped()["labels"] != 20 {
		t.Errorf("with at most 7 labels: %d targets kept, dropped %v", len(b.Targets()), b.Dropped())
	}
}
