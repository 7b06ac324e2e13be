package daemon_test

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/traefik-sd/traefik-sd/internal/coordinator"
	"github.com/traefik-sd/traefik-sd/internal/testbed"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// The tests here drive the sidecar with the coordinator's writes as the real
// coordinator makes them where they are awkward: a delete spread over up to
// six revisions, an inference circuit created with no routes, empty session
// ids for inference circuits, a null kernel_host in its API answer.

// appliedRevision waits until the sidecar has applied etcd revision rev.
func (e *env) appliedRevision(t *testing.T, rev int64) {
	t.Helper()
	testbed.Eventually(t, 10*time.Second, fmt.Sprintf("revision %d applied", rev), func() (bool, string) {
		v, err := strconv.ParseFloat(e.sidecarMetric(t, "traefik_sd_etcd_revision"), 64)
		return err == nil && int64(v) >= rev, fmt.Sprint(v)
	})
}

// handledAll waits until the sidecar has handled every etcd change made so
// far, publishing included: it rewrites a key with its own value (a new
// revision) and waits for that revision, which the sidecar applies only
// after everything before it.
func (e *env) handledAll(t *testing.T, ctx context.Context, authority string) {
	t.Helper()
	resp, err := e.client.Put(ctx, "traefik/worker_"+authority+"/http/middlewares/CORSHeaders/headers/accessControlAllowHeaders", "*")
	testbed.Must(t, err, "marker")
	e.appliedRevision(t, resp.Header.Revision)
}

// TestDeleteStepByStepLeavesNoGhostAndNoBrokenObject: the coordinator
// deletes a circuit with separate prefix deletes, router first. From the
// first revision on, the circuit's targets are gone and stay gone, and
// the leftovers of the later revisions (a service with no router, plugin
// middlewares with no router) are neither broken objects nor decode errors.
func TestDeleteStepByStepLeavesNoGhostAndNoBrokenObject(t *testing.T) {
	e := startEnv(t, "worker-del")
	ctx := testbed.Context(t, time.Minute)
	testbed.Must(t, e.coord.Put(ctx, interactive(), inference()), "create")
	both := strings.Join([]string{
		"10.0.1.10:9100 11111111-aaaa-4aaa-8aaa-000000000001 sess-i ",
		"10.0.1.21:8000 22222222-bbbb-4bbb-8bbb-000000000002 sess-1 route-1",
		"10.0.1.22:8000 22222222-bbbb-4bbb-8bbb-000000000002 sess-2 route-2",
	}, "\n")
	e.waitRoutes(t, "both circuits", both)
	errorsBefore := e.sidecarMetric(t, "traefik_sd_decode_errors_total")

	prefixes := e.coord.DeletePrefixes(inference().ID)
	if len(prefixes) != 6 || !strings.Contains(prefixes[0], "/routers/bai_router_") || !strings.Contains(prefixes[3], "/middlewares/appproxy/plugin/") {
		t.Fatalf("not the coordinator's delete order: %v", prefixes)
	}
	rest := "10.0.1.10:9100 11111111-aaaa-4aaa-8aaa-000000000001 sess-i "
	for i, p := range prefixes {
		resp, err := e.client.Delete(ctx, p, clientv3.WithPrefix())
		testbed.Must(t, err, "delete %s", p)
		e.appliedRevision(t, resp.Header.Revision)
		if i == 0 {
			e.waitRoutes(t, "the router's delete withdraws the circuit", rest)
		}
		if status, got := e.routesNow(); got != rest {
			t.Errorf("after deleting %s (step %d): %d\n%s\nwant:\n%s", p, i+1, status, got, rest)
		}
		if m := e.sidecarMetric(t, "traefik_sd_decode_broken_objects"); m != "0" {
			t.Errorf("after deleting %s: decode_broken_objects = %q", p, m)
		}
		if m := e.sidecarMetric(t, "traefik_sd_decode_errors_total"); m != errorsBefore {
			t.Errorf("after deleting %s: decode_errors_total %q, was %q", p, m, errorsBefore)
		}
	}
	// Nothing of the circuit is left for a later sweep to bring back.
	resp, err := e.client.Get(ctx, "traefik/worker_worker-del/", clientv3.WithPrefix(), clientv3.WithKeysOnly())
	testbed.Must(t, err, "listing")
	for _, kv := range resp.Kvs {
		if strings.Contains(string(kv.Key), inference().ID) {
			t.Errorf("key left after the delete: %s", kv.Key)
		}
	}
}

// TestCircuitWithoutRoutesIsNoFault: an inference circuit is created with
// no routes, so etcd holds its router and middlewares but no service keys at
// all. Nothing is published for it, nothing counts as broken, it is counted
// as not served for no_routes (not as a fault); its first routes publish it.
func TestCircuitWithoutRoutesIsNoFault(t *testing.T) {
	e := startEnv(t, "worker-nr")
	ctx := testbed.Context(t, time.Minute)
	bare := inference()
	bare.Routes = nil
	testbed.Must(t, e.coord.Put(ctx, interactive(), bare), "create")
	if keys := e.coord.Keys(bare); len(keys) == 0 {
		t.Fatal("no keys")
	} else {
		for k := range keys {
			if strings.Contains(k, "/services/") {
				t.Fatalf("a circuit with no routes has service key %s", k)
			}
		}
	}
	testbed.Eventually(t, 10*time.Second, "counted as not served, for no routes", func() (bool, string) {
		m := e.sidecarMetric(t, `traefik_sd_circuits_not_served{reason="no_routes"}`)
		return m == "1", m
	})
	e.waitRoutes(t, "only the interactive circuit", "10.0.1.10:9100 11111111-aaaa-4aaa-8aaa-000000000001 sess-i ")
	for _, series := range []string{"traefik_sd_decode_broken_objects", "traefik_sd_decode_errors_total",
		`traefik_sd_circuits_not_served{reason="disabled"}`, `traefik_sd_circuits_not_served{reason="not_loaded"}`} {
		if m := e.sidecarMetric(t, series); m != "0" {
			t.Errorf("%s = %q, want 0", series, m)
		}
	}

	// Its first routes (the route sync replaces the service; the
	// coordinator change rewrites traefik-sd's middleware with it).
	testbed.Must(t, e.coord.UpdateRoutes(ctx, inference()), "first routes")
	e.waitRoutes(t, "the inference routes, with their own session ids", strings.Join([]string{
		"10.0.1.10:9100 11111111-aaaa-4aaa-8aaa-000000000001 sess-i ",
		"10.0.1.21:8000 22222222-bbbb-4bbb-8bbb-000000000002 sess-1 route-1",
		"10.0.1.22:8000 22222222-bbbb-4bbb-8bbb-000000000002 sess-2 route-2",
	}, "\n"))
	testbed.Eventually(t, 5*time.Second, "no longer counted once its routes came", func() (bool, string) {
		m := e.sidecarMetric(t, `traefik_sd_circuits_not_served{reason="no_routes"}`)
		return m == "0", m
	})
}

// TestInferenceSessionIDsComeOnlyFromRoutes: an inference circuit's
// session_ids stay empty (in the Go middleware and the WASM circuit JSON),
// so with --routes.all and no coordinator API its routes have an empty
// session_id, never a guess; the coordinator's route_info names them, and a
// route it answers with a null kernel_host is skipped (counted, logged)
// while the others of the same answer still count.
func TestInferenceSessionIDsComeOnlyFromRoutes(t *testing.T) {
	api := &coordinator.API{Token: "api-secret", WorkerID: "5a2b3c4d-1111-4222-8333-444455556666"}
	api.Fail(true)
	e := startEnvWithCoordinator(t, "worker-ss", api)
	ctx := testbed.Context(t, time.Minute)
	inf := inference()
	// One route, as if the circuit had been created with it: a single
	// session must still not be taken from a list that is always empty.
	one := inf
	one.Routes = inf.Routes[:1]
	testbed.Must(t, e.coord.Put(ctx, one), "create")
	for k, v := range e.coord.Keys(one) {
		if strings.Contains(k, "sessionids") || (strings.HasSuffix(k, "/circuit") && !strings.Contains(v, `"session_ids":[]`)) {
			t.Fatalf("an inference circuit's session ids are not empty: %s = %s", k, v)
		}
	}
	e.waitRoutes(t, "no session id without the coordinator", "10.0.1.21:8000 22222222-bbbb-4bbb-8bbb-000000000002  ")

	testbed.Must(t, e.coord.UpdateRoutes(ctx, inf), "second route")
	nullHost := inf
	nullHost.Routes = []coordinator.Route{inf.Routes[0], inf.Routes[1]}
	nullHost.Routes[1].NullHost = true
	api.Set(nullHost)
	api.Fail(false)
	e.waitRoutes(t, "the route the coordinator names is labelled; the null host's is not", strings.Join([]string{
		"10.0.1.21:8000 22222222-bbbb-4bbb-8bbb-000000000002 sess-1 route-1",
		"10.0.1.22:8000 22222222-bbbb-4bbb-8bbb-000000000002  ",
	}, "\n"))
	if m := e.sidecarMetric(t, "traefik_sd_coordinator_routes_skipped"); m != "1" {
		t.Errorf("coordinator_routes_skipped = %q, want 1", m)
	}
	if m := e.sidecarMetric(t, `traefik_sd_coordinator_polls_total{result="ok"}`); m == "" || m == "0" {
		t.Errorf("the answer with a null kernel_host was not taken: polls ok = %q", m)
	}
}

// TestAHalfWrittenCircuitIsBrokenUntilTheRestArrives: one circuit's keys
// over two transactions (a writer other than the coordinator, or a
// coordinator batch cut by a crash): its router and its service, whose
// server could be published, come while the traefik-sd middleware the
// router names still lacks its circuitId. The middleware is a broken
// object, counted, and nothing of the circuit is published; once the rest
// arrives it is whole and published right.
func TestAHalfWrittenCircuitIsBrokenUntilTheRestArrives(t *testing.T) {
	e := startEnv(t, "worker-half")
	ctx := testbed.Context(t, time.Minute)
	c := interactive()
	all := e.coord.Keys(c)
	var firstOps, rest []clientv3.Op
	served := false
	for k, v := range all {
		if strings.Contains(k, "/bai_sd_") && strings.HasSuffix(k, "/circuitid") {
			rest = append(rest, clientv3.OpPut(k, v))
			continue
		}
		served = served || strings.HasSuffix(k, "/servers/0/url")
		firstOps = append(firstOps, clientv3.OpPut(k, v))
	}
	if !served || len(rest) != 1 {
		t.Fatalf("the first half must hold the service's server and the rest only the circuit id: %d keys left", len(rest))
	}
	_, err := e.client.Txn(ctx).Then(firstOps...).Commit()
	testbed.Must(t, err, "first half")
	e.handledAll(t, ctx, "worker-half")
	if m := e.sidecarMetric(t, "traefik_sd_decode_broken_objects"); m != "1" {
		t.Errorf("while half written: decode_broken_objects = %q, want 1 (the middleware without its circuit id)", m)
	}
	if status, got := e.routesNow(); got != "" {
		t.Errorf("published while half written: %d\n%s", status, got)
	}

	_, err = e.client.Txn(ctx).Then(rest...).Commit()
	testbed.Must(t, err, "the rest")
	e.waitRoutes(t, "the whole circuit published", "10.0.1.10:9100 11111111-aaaa-4aaa-8aaa-000000000001 sess-i ")
	if m := e.sidecarMetric(t, "traefik_sd_decode_broken_objects"); m != "0" {
		t.Errorf("once whole: decode_broken_objects = %q, want 0", m)
	}
}
