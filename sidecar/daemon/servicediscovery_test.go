package daemon_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/traefik-sd/traefik-sd/internal/coordinator"
	"github.com/traefik-sd/traefik-sd/internal/manager"
	"github.com/traefik-sd/traefik-sd/internal/testbed"
	"github.com/traefik-sd/traefik-sd/sidecar/config"
	"github.com/traefik-sd/traefik-sd/sidecar/servicediscovery"
	"github.com/traefik/paerser/types"
)

// sdStore is one of Backend.AI's ServiceDiscovery backends under test: how
// to point a sidecar at it and how the Manager reads it.
type sdStore struct {
	name      string
	configure func(*config.Configuration)
	read      manager.Reader
	redis     *testbed.Redis // nil for etcd
	rdb       *redis.Client
}

// sdStores are both backends: Backend.AI's etcd (the env's own etcd) and a
// fresh redis-server.
func sdStores(t *testing.T, e *env) []sdStore {
	r := testbed.StartRedis(t, t.TempDir())
	rdb := r.Client(t)
	return []sdStore{
		{name: "etcd", read: manager.EtcdReader(e.client, "local"), configure: func(cfg *config.Configuration) {
			cfg.BackendAI.Etcd.Endpoints = []string{e.etcd.Endpoint}
		}},
		{name: "redis", read: manager.RedisReader(rdb), redis: r, rdb: rdb, configure: func(cfg *config.Configuration) {
			cfg.BackendAI.Redis.Address = r.Address
		}},
	}
}

// comparable strips what only the Manager has (its own labels) and what
// only the sidecar publishes (the AppProxy processes, which register
// themselves), so that both answers compare as text.
func comparable(groups []group) string {
	var ls []string
	for _, g := range groups {
		if !servicediscovery.Groups[g.Labels["service_group"]] {
			continue
		}
		labels := map[string]string{}
		for k, v := range g.Labels {
			if k != "service_id" && k != "display_name" && k != "version" {
				labels[k] = v
			}
		}
		b, _ := json.Marshal(labels)
		ls = append(ls, g.Targets[0]+" "+string(b))
	}
	sort.Strings(ls)
	return strings.Join(ls, "\n")
}

// managerView is the Manager's answer from a store, as the sidecar's groups.
func managerView(ctx context.Context, read manager.Reader) ([]group, error) {
	services, err := read(ctx)
	if err != nil {
		return nil, err
	}
	var out []group
	for _, g := range manager.Render(services) {
		out = append(out, group{Targets: g.Targets, Labels: g.Labels})
	}
	return out, nil
}

// emptyOr reads a store that may hold nothing: the Manager's Redis reader
// fails on an empty store ("no service groups found"), as Backend.AI's does.
func emptyOr(ctx context.Context, s sdStore) ([]group, error) {
	view, err := managerView(ctx, s.read)
	if err != nil && strings.Contains(err.Error(), "no service groups") {
		return nil, nil
	}
	return view, err
}

// besideConfig is a sidecar for another Traefik node on the env's etcd,
// writing its ServiceDiscovery entries every second.
func besideConfig(e *env, authority, node string) *config.Configuration {
	cfg := config.Default()
	cfg.Address = "127.0.0.1:0"
	cfg.Etcd.Endpoints = []string{e.etcd.Endpoint}
	cfg.Worker.Authority, cfg.Worker.Node = authority, node
	cfg.Traefik.Target = "10.0.0.7:8080"
	cfg.BackendAI.Heartbeat = types.Duration(time.Second)
	return cfg
}

func withCustomPath() coordinator.Circuit {
	return coordinator.Circuit{
		ID: "33333333-cccc-4ccc-8ccc-000000000003", App: "vllm", Mode: "interactive", Hostname: "vllm.example",
		Routes:      []coordinator.Route{{SessionID: "sess-v", Host: "10.0.1.30", Port: 8000}},
		MetricsPath: "/custom/metrics",
	}
}

// TestServiceDiscoveryStoresMatchTargets reads each store as the Manager
// does (strict about every field and type) and compares its answer with
// /v1/targets, through create, heartbeat, delete and a clean stop.
func TestServiceDiscoveryStoresMatchTargets(t *testing.T) {
	e := startEnv(t, "worker-sd")
	ctx := testbed.Context(t, 3*time.Minute)
	testbed.Must(t, e.coord.Put(ctx, interactive(), inference(), withCustomPath()), "create")
	for _, s := range sdStores(t, e) {
		t.Run(s.name, func(t *testing.T) {
			cfg := besideConfig(e, "worker-sd", "node-b")
			s.configure(cfg)
			base, stop := e.startBeside(t, cfg)

			sidecarSet := func() string {
				resp, err := http.Get(base + "/v1/targets")
				if err != nil {
					return err.Error()
				}
				defer resp.Body.Close()
				var groups []group
				_ = json.NewDecoder(resp.Body).Decode(&groups)
				return comparable(groups)
			}
			converged := func(what string, entries int) []group {
				var view []group
				testbed.Eventually(t, 20*time.Second, what, func() (bool, string) {
					var err error
					if view, err = emptyOr(ctx, s); err != nil {
						return false, err.Error()
					}
					want := sidecarSet()
					return comparable(view) == want && len(view) == entries, "store:\n" + comparable(view) + "\nsidecar:\n" + want
				})
				return view
			}
			// Four route targets and this node's Traefik.
			view := converged("the Manager's view equals /v1/targets", 5)
			// Prometheus honours __metrics_path__ from HTTP SD; the store carries it.
			paths := 0
			for _, g := range view {
				if g.Labels["__metrics_path__"] == "/custom/metrics" && g.Labels["circuit_id"] == withCustomPath().ID {
					paths++
				}
			}
			if paths != 1 {
				t.Errorf("the custom metrics path is carried by %d entries, want 1", paths)
			}

			// The heartbeat moves, so the entries outlive neither the
			// Manager's 300 s sweep (etcd) nor their 180 s TTL (Redis).
			first := heartbeats(ctx, t, s)
			testbed.Eventually(t, 10*time.Second, "every heartbeat moves", func() (bool, string) {
				for id, hb := range heartbeats(ctx, t, s) {
					if hb <= first[id] {
						return false, fmt.Sprintf("entry %s: heartbeat still %v", id, hb)
					}
				}
				return true, ""
			})
			if s.rdb != nil {
				keys, err := s.rdb.Keys(ctx, "service_discovery.*").Result()
				testbed.Must(t, err, "keys")
				for _, k := range keys {
					if ttl := s.rdb.TTL(ctx, k).Val(); ttl <= 170*time.Second || ttl > servicediscovery.RedisTTL {
						t.Errorf("%s: TTL %v, want just under %v", k, ttl, servicediscovery.RedisTTL)
					}
				}
			}

			testbed.Must(t, e.coord.Delete(ctx, inference().ID), "delete")
			converged("a deleted circuit's entries withdrawn", 3)
			testbed.Must(t, e.coord.Put(ctx, inference()), "create again")
			converged("the circuit's entries back", 5)

			// A clean stop withdraws this sidecar's entries at once.
			stop()
			view, err := emptyOr(ctx, s)
			if err != nil || len(view) != 0 {
				t.Errorf("entries left after the sidecar stopped: %d (%v)", len(view), err)
			}
		})
	}
}

func heartbeats(ctx context.Context, t *testing.T, s sdStore) map[string]float64 {
	services, err := s.read(ctx)
	testbed.Must(t, err, "reading the %s store", s.name)
	out := map[string]float64{}
	for _, svc := range services {
		out[svc.ID] = svc.LastHeartbeat
	}
	if len(out) == 0 {
		t.Fatal("no heartbeats in the store")
	}
	return out
}

// TestHANodesShareRouteEntries: several Traefik nodes share one authority.
// Each node's sidecar writes its own Traefik entry; route entries have the
// same id from every node, so each store holds each once.
func TestHANodesShareRouteEntries(t *testing.T) {
	e := startEnv(t, "worker-ha")
	ctx := testbed.Context(t, 3*time.Minute)
	testbed.Must(t, e.coord.Put(ctx, interactive(), inference()), "create")
	for _, s := range sdStores(t, e) {
		t.Run(s.name, func(t *testing.T) {
			stops := map[string]func(){}
			for i, node := range []string{"node-1", "node-2"} {
				cfg := besideConfig(e, "worker-ha", node)
				cfg.Traefik.Target = fmt.Sprintf("10.0.0.%d:8080", i+1)
				s.configure(cfg)
				_, stops[node] = e.startBeside(t, cfg)
			}
			count := func() (routes, traefiks int, err error) {
				view, err := emptyOr(ctx, s)
				ids := map[string]bool{}
				for _, g := range view {
					if ids[g.Labels["service_id"]] {
						return 0, 0, fmt.Errorf("id %s twice", g.Labels["service_id"])
					}
					ids[g.Labels["service_id"]] = true
					switch g.Labels["service_group"] {
					case "appproxy-circuit-route":
						routes++
					case "traefik":
						traefiks++
					}
				}
				return routes, traefiks, err
			}
			testbed.Eventually(t, 20*time.Second, "three routes once, and one Traefik per node", func() (bool, string) {
				r, tr, err := count()
				return err == nil && r == 3 && tr == 2, fmt.Sprintf("%d routes, %d traefik, %v", r, tr, err)
			})
			// One node goes: its own entry with it; the shared ones it last
			// wrote come back with the other node's next heartbeat.
			stops["node-1"]()
			took := testbed.Eventually(t, 20*time.Second, "the other node carries the routes", func() (bool, string) {
				r, tr, err := count()
				return err == nil && r == 3 && tr == 1, fmt.Sprintf("%d routes, %d traefik, %v", r, tr, err)
			})
			t.Logf("%s: after one HA node stopped, the store was whole again in %v (heartbeat 1s)", s.name, took)
			stops["node-2"]()
		})
	}
}

// TestRedisStoreSweepsWhatAnEarlierRunLeft: Redis entries outlive a
// sidecar that died by up to their TTL. The next run removes, once, the
// ones that are its own (this worker's routes, this node's Traefik) and no
// longer published, and leaves every other writer's alone.
func TestRedisStoreSweepsWhatAnEarlierRunLeft(t *testing.T) {
	e := startEnv(t, "worker-sw")
	ctx := testbed.Context(t, 2*time.Minute)
	r := testbed.StartRedis(t, t.TempDir())
	rdb := r.Client(t)
	entry := func(group, name string, labels map[string]string) servicediscovery.Write {
		return servicediscovery.Write{Record: servicediscovery.Record{
			Entry: servicediscovery.Entry{ID: servicediscovery.UUIDv5(name), DisplayName: name, Group: group, Version: "traefik-sd",
				Endpoint: servicediscovery.Endpoint{Address: "10.9.9.9", Port: 9, Protocol: "http", PrometheusAddress: "10.9.9.9:9"},
				Labels:   labels},
			Health: servicediscovery.Health{RegistrationTime: 1, LastHeartbeat: 1},
		}}
	}
	left := map[string]servicediscovery.Write{
		"a route of ours, deleted while we were down": entry("appproxy-circuit-route", "old-route", map[string]string{"worker_authority": "worker-sw", "circuit_id": "gone"}),
		"our node's Traefik at an old address":        entry("traefik", "old-traefik", map[string]string{"worker_authority": "worker-sw", "worker_node": "node-b"}),
		"another worker's route":                      entry("appproxy-circuit-route", "other-worker", map[string]string{"worker_authority": "worker-other"}),
		"another HA node's Traefik":                   entry("traefik", "other-node", map[string]string{"worker_authority": "worker-sw", "worker_node": "node-z"}),
	}
	var writes []servicediscovery.Write
	for _, w := range left {
		writes = append(writes, w)
	}
	testbed.Must(t, (&servicediscovery.RedisStore{Client: rdb}).Put(ctx, writes), "leaving entries behind")
	testbed.Must(t, e.coord.Put(ctx, interactive()), "create")

	cfg := besideConfig(e, "worker-sw", "node-b")
	cfg.BackendAI.Redis.Address = r.Address
	e.startBeside(t, cfg)

	exists := func(w servicediscovery.Write) bool {
		return rdb.Exists(ctx, servicediscovery.RedisKey(w.Group, w.ID)).Val() == 1
	}
	testbed.Eventually(t, 20*time.Second, "our leftovers swept", func() (bool, string) {
		a, b := exists(left["a route of ours, deleted while we were down"]), exists(left["our node's Traefik at an old address"])
		return !a && !b, fmt.Sprintf("old route %v, old traefik %v", a, b)
	})
	for _, what := range []string{"another worker's route", "another HA node's Traefik"} {
		if !exists(left[what]) {
			t.Errorf("%s was swept", what)
		}
	}
	// What the sidecar publishes is there: one route and its Traefik.
	view, err := managerView(ctx, manager.RedisReader(rdb))
	testbed.Must(t, err, "the Manager's view")
	if len(view) != 4 {
		t.Errorf("%d entries, want 2 of ours and the 2 others'", len(view))
	}
}

// TestRedisRestartConverges: a Redis that restarts empty (a cache, nothing
// persisted) gets every entry back within a heartbeat; failed writes while
// it is down are counted and retried.
func TestRedisRestartConverges(t *testing.T) {
	e := startEnv(t, "worker-rr")
	ctx := testbed.Context(t, 2*time.Minute)
	r := testbed.StartRedis(t, t.TempDir())
	rdb := r.Client(t)
	testbed.Must(t, e.coord.Put(ctx, interactive(), inference()), "create")
	cfg := besideConfig(e, "worker-rr", "node-b")
	cfg.BackendAI.Redis.Address = r.Address
	base, _ := e.startBeside(t, cfg)
	count := func() int {
		view, err := managerView(ctx, manager.RedisReader(rdb))
		if err != nil {
			return -1
		}
		return len(view)
	}
	testbed.Eventually(t, 20*time.Second, "four entries", func() (bool, string) { return count() == 4, fmt.Sprint(count()) })

	r.Kill()
	errorsSeries := `traefik_sd_servicediscovery_write_errors_total{store="redis"}`
	testbed.Eventually(t, 20*time.Second, "a failed write counted", func() (bool, string) {
		v := testbed.Metric(ctx, base+"/metrics", errorsSeries)
		return v != "" && v != "0", v
	})
	r.Restart(t, false)
	took := testbed.Eventually(t, 20*time.Second, "every entry back in the empty Redis", func() (bool, string) {
		return count() == 4, fmt.Sprint(count())
	})
	t.Logf("entries back %v after Redis restarted empty (heartbeat 1s, retry 2s)", took)
}

// TestRedisStoreOverTLSWithAPassword: a Redis that serves TLS only, wants a
// client certificate and a password (read from a file, as a mounted
// secret); a wrong password is counted as failed writes, never a crash.
func TestRedisStoreOverTLSWithAPassword(t *testing.T) {
	e := startEnv(t, "worker-rt")
	ctx := testbed.Context(t, time.Minute)
	dir := t.TempDir()
	certs := testbed.GenerateCerts(t, dir)
	r := testbed.StartRedisTLS(t, dir, certs, "s3cret")
	testbed.Must(t, e.coord.Put(ctx, interactive()), "create")
	start := func(password string) string {
		pw := filepath.Join(t.TempDir(), "password")
		testbed.Must(t, os.WriteFile(pw, []byte(password+"\n"), 0o600), "password file")
		cfg := besideConfig(e, "worker-rt", "node-"+password)
		cfg.BackendAI.Redis = config.SDRedis{Address: r.Address, PasswordFile: pw,
			TLS: &config.TLS{CA: certs.CA, Cert: certs.ClientCert, Key: certs.ClientKey}}
		base, _ := e.startBeside(t, cfg)
		return base
	}
	start("s3cret")
	rdb := r.Client(t)
	testbed.Eventually(t, 20*time.Second, "the route and Traefik written over TLS", func() (bool, string) {
		view, err := managerView(ctx, manager.RedisReader(rdb))
		return err == nil && len(view) == 2, fmt.Sprint(len(view), err)
	})

	wrong := start("wrong")
	testbed.Eventually(t, 20*time.Second, "a wrong password counted as failed writes", func() (bool, string) {
		v := testbed.Metric(ctx, wrong+"/metrics", `traefik_sd_servicediscovery_write_errors_total{store="redis"}`)
		return v != "" && v != "0", v
	})
	if code, _ := get(t, http.DefaultClient, wrong+"/v1/targets", ""); code != http.StatusOK {
		t.Errorf("the sidecar with a wrong Redis password does not serve its targets: %d", code)
	}
}

// TestRedisStoreFollowsASentinelFailover: in HA deployments Backend.AI
// reaches the live Redis through Sentinel (redis.sentinel, service_name).
// Given the same, the sidecar writes to the master the Sentinel names; when
// the Sentinel fails over, every entry is on the new master, rewritten after
// the switch, within a heartbeat and a retry, and the Manager, reading
// through Sentinel, serves what /v1/targets does. The replica holds the old
// entries by replication, so only fresh heartbeats and a delete made after
// the switch tell a sidecar that followed from one that did not.
func TestRedisStoreFollowsASentinelFailover(t *testing.T) {
	e := startEnv(t, "worker-sn")
	ctx := testbed.Context(t, 2*time.Minute)
	s := testbed.StartSentinel(t, t.TempDir(), "bai-live")
	testbed.Must(t, e.coord.Put(ctx, interactive(), inference()), "create")
	cfg := besideConfig(e, "worker-sn", "node-b")
	cfg.BackendAI.Redis.Sentinel = []string{s.Address}
	cfg.BackendAI.Redis.ServiceName = s.MasterName
	base, _ := e.startBeside(t, cfg)

	viaSentinel := manager.RedisReader(s.Client(t))
	onOldMaster := manager.RedisReader(s.Master.Client(t))
	onNewMaster := manager.RedisReader(s.Replica.Client(t))
	testbed.Eventually(t, 20*time.Second, "the Manager's view through Sentinel equals /v1/targets", func() (bool, string) {
		return storeMatches(ctx, viaSentinel, base, 4, 0)
	})
	if ok, msg := storeMatches(ctx, onOldMaster, base, 4, 0); !ok {
		t.Fatalf("the entries are not on the master the Sentinel named: %s", msg)
	}

	testbed.Must(t, s.Failover(ctx), "SENTINEL FAILOVER %s", s.MasterName)
	testbed.Eventually(t, 15*time.Second, "the Sentinel names the old replica master", func() (bool, string) {
		addr, err := s.MasterAddr(ctx)
		return err == nil && addr == s.Replica.Address, fmt.Sprint(addr, err)
	})
	switched := float64(time.Now().UnixNano()) / 1e9
	// A change after the switch: the new master must lose these entries.
	testbed.Must(t, e.coord.Delete(ctx, inference().ID), "delete")
	took := testbed.Eventually(t, 15*time.Second, "every entry rewritten on the new master, the deleted ones gone", func() (bool, string) {
		if ok, msg := storeMatches(ctx, onNewMaster, base, 2, switched); !ok {
			return false, "the new master, read directly: " + msg
		}
		if ok, msg := storeMatches(ctx, viaSentinel, base, 2, switched); !ok {
			return false, "the Manager through Sentinel: " + msg
		}
		return true, ""
	})
	t.Logf("every entry on the new master %v after the Sentinel switched (heartbeat 1s, retry 2s)", took)
}

// storeMatches tells whether the Manager's answer from read equals
// /v1/targets at base, with entries entries, each last written at or after
// since (seconds since the epoch).
func storeMatches(ctx context.Context, read manager.Reader, base string, entries int, since float64) (bool, string) {
	services, err := read(ctx)
	if err != nil {
		return false, err.Error()
	}
	for _, svc := range services {
		if svc.LastHeartbeat < since {
			return false, fmt.Sprintf("entry %s last written at %.3f, before %.3f", svc.ID, svc.LastHeartbeat, since)
		}
	}
	var view []group
	for _, g := range manager.Render(services) {
		view = append(view, group{Targets: g.Targets, Labels: g.Labels})
	}
	resp, err := http.Get(base + "/v1/targets")
	if err != nil {
		return false, err.Error()
	}
	defer resp.Body.Close()
	var published []group
	if err := json.NewDecoder(resp.Body).Decode(&published); err != nil {
		return false, err.Error()
	}
	got, want := comparable(view), comparable(published)
	return got == want && len(view) == entries, fmt.Sprintf("%d entries, want %d; store:\n%s\nsidecar:\n%s", len(view), entries, got, want)
}
