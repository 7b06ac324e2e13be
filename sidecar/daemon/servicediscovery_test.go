package daemon_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/traefik-sd/traefik-sd/internal/testbed"
	"github.com/traefik-sd/traefik-sd/sidecar/config"
	"github.com/traefik-sd/traefik-sd/sidecar/servicediscovery"
	"github.com/traefik/paerser/types"
	clientv3 "go.etcd.io/etcd/client/v3"
)

var uuidPattern = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-5[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)

// managerView reads the store the way Backend.AI's Manager does: every leaf
// of every entry, each validated to its type (one bad entry fails it all),
// and renders GET /metrics/service_discovery from it.
func managerView(ctx context.Context, client *clientv3.Client, namespace string) ([]group, error) {
	prefix := servicediscovery.Prefix(namespace)
	resp, err := client.Get(ctx, prefix, clientv3.WithPrefix())
	if err != nil {
		return nil, err
	}
	entries := map[string]map[string]string{}
	for _, kv := range resp.Kvs {
		rel := strings.TrimPrefix(string(kv.Key), prefix)
		parts := strings.SplitN(rel, "/", 3)
		if len(parts) != 3 {
			return nil, fmt.Errorf("key %s is not <group>/<id>/<leaf>", kv.Key)
		}
		k := parts[0] + "/" + parts[1]
		if entries[k] == nil {
			entries[k] = map[string]string{}
		}
		entries[k][parts[2]] = string(kv.Value)
	}
	var out []group
	for k, leaves := range entries {
		groupName, id, _ := strings.Cut(k, "/")
		need := func(leaf string) (string, error) {
			v, ok := leaves[leaf]
			if !ok || v == "" {
				return "", fmt.Errorf("%s: %s missing", k, leaf)
			}
			return v, nil
		}
		for _, leaf := range []string{"id", "display_name", "service_group", "version", "endpoint/address", "endpoint/port", "endpoint/protocol", "endpoint/prometheus_address", "health_status/registration_time", "health_status/last_heartbeat"} {
			if _, err := need(leaf); err != nil {
				return nil, err
			}
		}
		if leaves["id"] != id || !uuidPattern.MatchString(id) {
			return nil, fmt.Errorf("%s: id %q is not this entry's UUID", k, leaves["id"])
		}
		if leaves["service_group"] != groupName {
			return nil, fmt.Errorf("%s: service_group %q", k, leaves["service_group"])
		}
		if p, err := strconv.Atoi(leaves["endpoint/port"]); err != nil || p < 1 || p > 65535 {
			return nil, fmt.Errorf("%s: endpoint.port %q is not a port", k, leaves["endpoint/port"])
		}
		if _, _, err := net.SplitHostPort(leaves["endpoint/prometheus_address"]); err != nil {
			return nil, fmt.Errorf("%s: endpoint.prometheus_address: %v", k, err)
		}
		for _, leaf := range []string{"health_status/registration_time", "health_status/last_heartbeat"} {
			if _, err := strconv.ParseFloat(leaves[leaf], 64); err != nil {
				return nil, fmt.Errorf("%s: %s is not a float", k, leaf)
			}
		}
		labels := map[string]string{}
		for leaf, v := range leaves {
			if name, ok := strings.CutPrefix(leaf, "labels/"); ok {
				labels[name] = v
			} else if !strings.Contains("id display_name service_group version endpoint/address endpoint/port endpoint/protocol endpoint/prometheus_address health_status/registration_time health_status/last_heartbeat", leaf) {
				return nil, fmt.Errorf("%s: unknown leaf %s", k, leaf)
			}
		}
		labels["service_id"], labels["service_group"] = id, groupName
		labels["display_name"], labels["version"] = leaves["display_name"], leaves["version"]
		out = append(out, group{Targets: []string{leaves["endpoint/prometheus_address"]}, Labels: labels})
	}
	return out, nil
}

// comparable strips what only one side has: the Manager's own labels.
func comparable(groups []group) string {
	var ls []string
	for _, g := range groups {
		if g.Labels["service_group"] != "appproxy-circuit-route" && g.Labels["service_group"] != "traefik" {
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

func TestServiceDiscoveryStoreMatchesTargets(t *testing.T) {
	e := startEnv(t, "worker-sd")
	ctx := testbed.Context(t, 2*time.Minute)
	cfg := config.Default()
	cfg.Address = "127.0.0.1:0"
	cfg.Etcd.Endpoints = []string{e.etcd.Endpoint}
	cfg.Worker.Authority, cfg.Worker.Node = "worker-sd", "node-b"
	cfg.Traefik.Target = "10.0.0.7:8080"
	cfg.BackendAI.Etcd.Endpoints = []string{e.etcd.Endpoint}
	cfg.BackendAI.Heartbeat = types.Duration(time.Second)
	base, stop := e.startBeside(t, cfg)

	testbed.Must(t, e.coord.Put(ctx, interactive(), inference()), "create")
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
	converged := func(what string, entries int) {
		testbed.Eventually(t, 20*time.Second, what, func() (bool, string) {
			view, err := managerView(ctx, e.client, "local")
			if err != nil {
				return false, err.Error()
			}
			want := sidecarSet()
			return comparable(view) == want && len(view) == entries, "store:\n" + comparable(view) + "\nsidecar:\n" + want
		})
	}
	// Three route targets and Traefik's own.
	converged("the Manager's view equals /v1/targets", 4)

	// The heartbeat moves, and stays well inside the Manager's 300 s sweep.
	first := heartbeats(ctx, t, e.client)
	time.Sleep(2500 * time.Millisecond)
	for id, hb := range heartbeats(ctx, t, e.client) {
		if hb <= first[id] {
			t.Errorf("entry %s: heartbeat did not move (%v then %v)", id, first[id], hb)
		}
	}

	testbed.Must(t, e.coord.Delete(ctx, inference().ID), "delete")
	converged("a deleted circuit's entries withdrawn", 2)

	// Stopping revokes the lease: the entries go at once.
	stop()
	view, err := managerView(ctx, e.client, "local")
	if err != nil || len(view) != 0 {
		t.Errorf("entries left after the sidecar stopped: %d (%v)", len(view), err)
	}
}

func heartbeats(ctx context.Context, t *testing.T, client *clientv3.Client) map[string]float64 {
	resp, err := client.Get(ctx, servicediscovery.Prefix("local"), clientv3.WithPrefix())
	testbed.Must(t, err, "get")
	out := map[string]float64{}
	for _, kv := range resp.Kvs {
		if strings.HasSuffix(string(kv.Key), "/health_status/last_heartbeat") {
			v, _ := strconv.ParseFloat(string(kv.Value), 64)
			out[string(kv.Key)] = v
		}
	}
	if len(out) == 0 {
		t.Fatal("no heartbeats in the store")
	}
	return out
}

// TestHANodesShareRouteEntries: several Traefik nodes share one authority.
// Each node's sidecar writes its own Traefik entry; route entries have the
// same id from every node, so the store holds each once.
func TestHANodesShareRouteEntries(t *testing.T) {
	e := startEnv(t, "worker-ha")
	ctx := testbed.Context(t, 2*time.Minute)
	stops := map[string]func(){}
	for i, node := range []string{"node-1", "node-2"} {
		cfg := config.Default()
		cfg.Address = "127.0.0.1:0"
		cfg.Etcd.Endpoints = []string{e.etcd.Endpoint}
		cfg.Worker.Authority, cfg.Worker.Node = "worker-ha", node
		cfg.Traefik.Target = fmt.Sprintf("10.0.0.%d:8080", i+1)
		cfg.BackendAI.Etcd.Endpoints = []string{e.etcd.Endpoint}
		cfg.BackendAI.Heartbeat = types.Duration(time.Second)
		_, stops[node] = e.startBeside(t, cfg)
	}
	testbed.Must(t, e.coord.Put(ctx, interactive(), inference()), "create")
	count := func() (routes, traefiks int, err error) {
		view, err := managerView(ctx, e.client, "local")
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
	// One node goes: its own entry with it; the shared ones it last wrote
	// come back with the other node's next heartbeat.
	stops["node-1"]()
	took := testbed.Eventually(t, 20*time.Second, "the other node carries the routes", func() (bool, string) {
		r, tr, err := count()
		return err == nil && r == 3 && tr == 1, fmt.Sprintf("%d routes, %d traefik, %v", r, tr, err)
	})
	t.Logf("after one HA node stopped, the store was whole again in %v (heartbeat 1s)", took)
}
