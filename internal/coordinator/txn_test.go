package coordinator_test

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/traefik-sd/traefik-sd/internal/coordinator"
	"github.com/traefik-sd/traefik-sd/internal/testbed"
)

// These run against a real etcd started with its defaults, so with the
// 128 operations per transaction that Backend.AI's etcd keeps.

func startEtcd(t *testing.T) *clientv3.Client {
	t.Helper()
	etcd := testbed.StartEtcd(t, t.TempDir())
	client, err := clientv3.New(clientv3.Config{Endpoints: []string{etcd.Endpoint}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	testbed.Must(t, err, "etcd client")
	t.Cleanup(func() { client.Close() })
	return client
}

// inference is a model service's circuit as the coordinator writes it:
// routes behind one load balancer with a health check.
func inference(i, routes int) coordinator.Circuit {
	c := coordinator.Circuit{
		ID: fmt.Sprintf("%08d-1111-4222-8333-444455556666", i), App: "llama-chat", Mode: "inference",
		FrontendMode: coordinator.PortMode, Port: 10205 + i, Hostname: "proxy.example.com", HealthCheckPath: "/health",
	}
	for r := 0; r < routes; r++ {
		c.Routes = append(c.Routes, coordinator.Route{
			RouteID:   fmt.Sprintf("%08d-aaaa-4bbb-8ccc-%012d", i, r),
			SessionID: fmt.Sprintf("%08d-bbbb-4ccc-8ddd-%012d", i, r),
			Host:      fmt.Sprintf("10.0.%d.%d", i, r+1), Port: 8000,
		})
	}
	return c
}

func five(routes int) []coordinator.Circuit {
	var cs []coordinator.Circuit
	for i := 0; i < 5; i++ {
		cs = append(cs, inference(i, routes))
	}
	return cs
}

func revision(t *testing.T, ctx context.Context, client *clientv3.Client) int64 {
	t.Helper()
	resp, err := client.Get(ctx, "revision-probe")
	testbed.Must(t, err, "etcd revision")
	return resp.Header.Revision
}

// CeilingRoutes is Backend.AI's own ceiling, named in the README: five
// inference circuits with a health check and this many routes each are the
// most one start-up transaction of today's coordinator holds.
const CeilingRoutes = 10

// TestStartUpAtBackendAIsOwnCeiling: the coordinator writes five circuits
// per start-up transaction. At CeilingRoutes routes each, today's
// coordinator fits (one transaction); one route more and etcd refuses it,
// so the coordinator cannot start. With the traefik-sd setting on, the same
// five circuits are still written, each whole in one transaction.
func TestStartUpAtBackendAIsOwnCeiling(t *testing.T) {
	client := startEtcd(t)
	ctx := testbed.Context(t, time.Minute)

	// The limit is etcd's, and in force.
	var ops []clientv3.Op
	for i := 0; i <= coordinator.MaxTxnOps; i++ {
		ops = append(ops, clientv3.OpPut("limit/"+strconv.Itoa(i), "x"))
	}
	if _, err := client.Txn(ctx).Then(ops...).Commit(); !errors.Is(err, rpctypes.ErrTooManyOps) {
		t.Fatalf("a transaction of %d operations: %v, want etcd's refusal", len(ops), err)
	}

	today := &coordinator.Writer{Client: client, Namespace: "today", Authority: "worker-1"}
	before := revision(t, ctx, client)
	testbed.Must(t, today.Put(ctx, five(CeilingRoutes)...), "five circuits of %d routes, setting off", CeilingRoutes)
	if n := revision(t, ctx, client) - before; n != 1 {
		t.Errorf("today's coordinator wrote five circuits in %d transactions, want 1", n)
	}
	over := &coordinator.Writer{Client: client, Namespace: "over", Authority: "worker-1"}
	if err := over.Put(ctx, five(CeilingRoutes+1)...); !errors.Is(err, rpctypes.ErrTooManyOps) {
		t.Errorf("five circuits of %d routes, setting off: %v, want etcd's refusal (Backend.AI's ceiling moved?)", CeilingRoutes+1, err)
	}

	patched := &coordinator.Writer{Client: client, Namespace: "patched", Authority: "worker-1", SD: &coordinator.TraefikSD{}}
	circuits := five(CeilingRoutes)
	testbed.Must(t, patched.Put(ctx, circuits...), "five circuits of %d routes, setting on", CeilingRoutes)
	resp, err := client.Get(ctx, "patched/", clientv3.WithPrefix())
	testbed.Must(t, err, "read back")
	written := map[string]bool{}
	revisions := map[string]map[int64]bool{} // per circuit
	for _, kv := range resp.Kvs {
		written[string(kv.Key)] = true
		for _, c := range circuits {
			if strings.Contains(string(kv.Key), c.ID) {
				if revisions[c.ID] == nil {
					revisions[c.ID] = map[int64]bool{}
				}
				revisions[c.ID][kv.ModRevision] = true
			}
		}
	}
	for _, c := range circuits {
		for k := range patched.Keys(c) {
			if !written[k] {
				t.Errorf("setting on: %s not written", k)
			}
		}
		if !written["patched/worker_worker-1/http/middlewares/bai_sd_"+c.ID+"/plugin/traefik-sd/circuitid"] {
			t.Errorf("setting on: circuit %s has no traefik-sd middleware", c.ID)
		}
		if len(revisions[c.ID]) != 1 {
			t.Errorf("circuit %s written over %d revisions: a watcher saw it half written", c.ID, len(revisions[c.ID]))
		}
	}
}

// TestTheSettingTouchesNoTCPCircuit: Traefik's TCP middlewares have no
// plugin, and one plugin key under tcp/ makes its etcd provider refuse the
// worker's whole configuration. A TCP circuit's keys are the same with the
// setting on and off, and none is a middleware.
func TestTheSettingTouchesNoTCPCircuit(t *testing.T) {
	tcp := coordinator.Circuit{ID: "7c6b5a49-3827-4165-8f4e-3d2c1b0a9f8e", App: "ssh", Mode: "interactive",
		Protocol: coordinator.TCP, FrontendMode: coordinator.PortMode, Port: 10222,
		AllowedClientIPs: []string{"10.0.0.0/8"},
		Routes:           []coordinator.Route{{SessionID: "5a4b3c2d-1e0f-4a9b-8c7d-6e5f4a3b2c1d", Host: "10.0.2.7", Port: 22}}}
	off := (&coordinator.Writer{Authority: "worker-1"}).Keys(tcp)
	on := (&coordinator.Writer{Authority: "worker-1", SD: &coordinator.TraefikSD{SidecarURL: "http://127.0.0.1:9180", MetricsPort: 9100}}).Keys(tcp)
	if fmt.Sprint(off) != fmt.Sprint(on) {
		t.Errorf("a TCP circuit's keys differ with the setting:\noff %v\non  %v", off, on)
	}
	for k := range on {
		if !strings.HasPrefix(k, "traefik/worker_worker-1/tcp/") || strings.Contains(k, "/middlewares/") {
			t.Errorf("TCP circuit key %s", k)
		}
	}
	if len(on) != 4 { // rule, service, entry point and the one server's address
		t.Errorf("TCP circuit has %d keys: %v", len(on), on)
	}
}

// TestARouteUpdateRewritesNoMiddleware: the middleware carries identity
// only, so the coordinator's route update, which replaces services alone,
// leaves every middleware key as it was: Traefik rebuilds no plugin
// instance for a route change.
func TestARouteUpdateRewritesNoMiddleware(t *testing.T) {
	client := startEtcd(t)
	ctx := testbed.Context(t, time.Minute)
	w := &coordinator.Writer{Client: client, Authority: "worker-1", SD: &coordinator.TraefikSD{}}
	c := inference(1, 2)
	testbed.Must(t, w.Put(ctx, c), "create")
	modRevisions := func(prefix string) map[string]int64 {
		resp, err := client.Get(ctx, prefix, clientv3.WithPrefix())
		testbed.Must(t, err, "read")
		out := map[string]int64{}
		for _, kv := range resp.Kvs {
			out[string(kv.Key)] = kv.ModRevision
		}
		return out
	}
	middlewares := modRevisions("traefik/worker_worker-1/http/middlewares/")
	services := modRevisions("traefik/worker_worker-1/http/services/")

	c.Routes = append(c.Routes[1:], coordinator.Route{RouteID: "r-new", SessionID: "s-new", Host: "10.0.9.9", Port: 8000})
	testbed.Must(t, w.UpdateRoutes(ctx, c), "route update")
	if got := modRevisions("traefik/worker_worker-1/http/middlewares/"); fmt.Sprint(got) != fmt.Sprint(middlewares) {
		t.Errorf("a route update rewrote middleware keys:\nbefore %v\nafter  %v", middlewares, got)
	}
	after := modRevisions("traefik/worker_worker-1/http/services/")
	if fmt.Sprint(after) == fmt.Sprint(services) {
		t.Error("the route update changed no service key")
	}
	if _, ok := after["traefik/worker_worker-1/http/services/bai_service_"+c.ID+"/loadBalancer/servers/1/url"]; !ok {
		t.Errorf("the new route's server is missing: %v", after)
	}
}

// TestUnloadWithTheSettingOffChangesNothing: the patched unload also
// deletes bai_sd_<id> with the setting off (so turning it off leaves
// nothing behind). Deleting nothing moves no revision: etcd's history is
// the same as today's coordinator's, one revision per prefix that held keys.
func TestUnloadWithTheSettingOffChangesNothing(t *testing.T) {
	client := startEtcd(t)
	ctx := testbed.Context(t, time.Minute)
	w := &coordinator.Writer{Client: client, Authority: "worker-1"}
	c := inference(2, 2)
	testbed.Must(t, w.Put(ctx, c), "create")
	before := revision(t, ctx, client)
	testbed.Must(t, w.Delete(ctx, c.ID), "unload")
	// router, service, the two plugin middlewares (one prefix); no legacy
	// path, no allow-list, no traefik-sd middleware.
	if n := revision(t, ctx, client) - before; n != 3 {
		t.Errorf("the unload moved etcd by %d revisions, want 3", n)
	}
	if last := w.DeletePrefixes(c.ID); !strings.HasSuffix(last[len(last)-1], "/middlewares/bai_sd_"+c.ID) {
		t.Errorf("the unload's last prefix is %s", last[len(last)-1])
	}
	resp, err := client.Get(ctx, "traefik/", clientv3.WithPrefix(), clientv3.WithCountOnly())
	testbed.Must(t, err, "read")
	if resp.Count != 2 { // the shared CORSHeaders is never deleted
		t.Errorf("%d keys left after the unload, want CORSHeaders' 2", resp.Count)
	}
}

// TestReconcileRewritesServicesAndDropsOrphans: the leader's reconcile
// rewrites each live circuit's service and deletes a circuit that etcd holds
// and the coordinator does not, found through its bai_service_<uuid>; a
// circuit with no service keys is never found that way.
func TestReconcileRewritesServicesAndDropsOrphans(t *testing.T) {
	client := startEtcd(t)
	ctx := testbed.Context(t, time.Minute)
	w := &coordinator.Writer{Client: client, Authority: "worker-1", SD: &coordinator.TraefikSD{}}
	live, orphan, bare := inference(3, 1), inference(4, 1), inference(5, 0)
	testbed.Must(t, w.Put(ctx, live, orphan, bare), "create")
	// The coordinator lost the orphan and the bare circuit (a missed unload).
	other := &coordinator.Writer{Client: client, Authority: "worker-1", SD: &coordinator.TraefikSD{}}
	testbed.Must(t, other.Put(ctx, live), "the coordinator's own view")
	testbed.Must(t, other.Reconcile(ctx), "reconcile")
	resp, err := client.Get(ctx, "traefik/worker_worker-1/", clientv3.WithPrefix(), clientv3.WithKeysOnly())
	testbed.Must(t, err, "read")
	held := map[string]bool{}
	for _, kv := range resp.Kvs {
		for _, c := range []coordinator.Circuit{live, orphan, bare} {
			if strings.Contains(string(kv.Key), c.ID) {
				held[c.ID] = true
			}
		}
	}
	if !held[live.ID] || held[orphan.ID] || !held[bare.ID] {
		t.Errorf("after the reconcile etcd holds live %v, orphan %v, bare %v; want true, false, true", held[live.ID], held[orphan.ID], held[bare.ID])
	}
}
