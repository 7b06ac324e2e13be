// Package coordinator plays Backend.AI's AppProxy coordinator in tests and
// the demo: it writes circuits into etcd exactly as BACKENDAI.md describes
// (names, key layout, case, one transaction per batch of five circuits on
// create, the services alone on a route change, and a delete as separate
// prefix deletes, each its own revision), plus the traefik-sd middleware
// that the coordinator is asked to add per circuit.
package coordinator

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"sort"
	"strconv"
	"strings"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// Route is one session container behind a circuit.
type Route struct {
	RouteID   string // empty for interactive circuits
	SessionID string
	Host      string
	Port      int
	// NullHost makes the coordinator's API answer kernel_host null for this
	// route, as it may; etcd still gets Host (Traefik's localhost fallback
	// is the coordinator's, not this stand-in's concern).
	NullHost bool
}

// URL is the server URL the coordinator writes for this route.
func (r Route) URL() string { return "http://" + r.Host + ":" + strconv.Itoa(r.Port) + "/" }

// Circuit is what the coordinator knows of one circuit.
type Circuit struct {
	ID       string
	App      string
	Mode     string // "interactive" or "inference"
	Hostname string // the Host() rule
	Routes   []Route
	// HealthCheckPath, when set, writes a health check (inference circuits).
	HealthCheckPath string
	HealthInterval  string
	// SD adds the traefik-sd middleware bai_sd_<id> to the router.
	SD          bool
	SidecarURL  string
	MetricsPort int
	MetricsPath string // the traefik-sd middleware's metricsPath, if not /metrics
	PluginName  string // traefik-sd's plugin key; default "traefik-sd"
	Labels      map[string]string
	// Rule replaces the Host() rule, and ExtraMiddlewares go into the
	// router's chain before traefik-sd's: the tests of routers Traefik
	// refuses use them.
	Rule             string
	ExtraMiddlewares []string
}

// Writer writes circuits of one worker.
type Writer struct {
	Client    *clientv3.Client
	Namespace string // default "traefik"
	Authority string
	// UnchainAppProxyPlugins keeps Backend.AI's own plugin middlewares out of
	// the router chain (their keys are still written). Traefik disables a
	// router whose plugin it does not have, and those plugins are not
	// available outside Backend.AI.
	UnchainAppProxyPlugins bool
}

func (w *Writer) prefix() string {
	ns := w.Namespace
	if ns == "" {
		ns = "traefik"
	}
	return ns + "/worker_" + w.Authority + "/http/"
}

// RouterPrefix and friends are the subtrees of one circuit.
func (w *Writer) routerPrefix(id string) string  { return w.prefix() + "routers/bai_router_" + id }
func (w *Writer) servicePrefix(id string) string { return w.prefix() + "services/bai_service_" + id }
func (w *Writer) pluginPrefix(id string) string {
	return w.prefix() + "middlewares/bai_appproxy_plugin_" + id
}
func (w *Writer) sdPrefix(id string) string { return w.prefix() + "middlewares/bai_sd_" + id }

// Keys returns every key the coordinator writes for c, with its value.
func (w *Writer) Keys(c Circuit) map[string]string {
	kv := map[string]string{}
	r := w.routerPrefix(c.ID) + "/"
	kv[r+"rule"] = "Host(`" + c.Hostname + "`)"
	if c.Rule != "" {
		kv[r+"rule"] = c.Rule
	}
	kv[r+"service"] = "bai_service_" + c.ID
	kv[r+"entrypoints/0"] = "domainproxy"
	mws := []string{"CORSHeaders"}
	if !w.UnchainAppProxyPlugins {
		mws = append(mws, "bai_appproxy_plugin_"+c.ID, "bai_appproxy_plugin_"+c.ID+"_go")
	}
	mws = append(mws, c.ExtraMiddlewares...)
	if c.SD {
		mws = append(mws, "bai_sd_"+c.ID)
	}
	for i, m := range mws {
		kv[r+"middlewares/"+strconv.Itoa(i)] = m
	}
	for k, v := range w.serviceKeys(c) {
		kv[k] = v
	}
	h := w.prefix() + "middlewares/CORSHeaders/headers/"
	kv[h+"accessControlAllowHeaders"] = "*"
	kv[h+"accessControlAllowOriginList/0"] = "*"

	circuitJSON, _ := json.Marshal(map[string]interface{}{
		"id": c.ID, "app": c.App, "protocol": "http", "app_mode": c.Mode, "frontend_mode": "wildcard",
		"session_ids": circuitSessionIDs(c),
	})
	kv[w.pluginPrefix(c.ID)+"/plugin/appproxy-traefik-plugin/circuit"] = string(circuitJSON)
	g := w.pluginPrefix(c.ID) + "_go/plugin/appproxy-traefik-plugin-go/"
	kv[g+"id"] = c.ID
	kv[g+"lastusedmarkerpath"] = "/var/lib/backend.ai/appproxy/worker/last-used-time-marker.socket"
	for i, s := range circuitSessionIDs(c) {
		kv[g+"sessionids/"+strconv.Itoa(i)] = s
	}
	if c.SD {
		for k, v := range w.sdKeys(c) {
			kv[k] = v
		}
	}
	return kv
}

// serviceKeys are nothing at all for a circuit with no routes (every
// inference circuit at creation): Circuit.traefik_services returns nothing,
// not even the health check.
func (w *Writer) serviceKeys(c Circuit) map[string]string {
	kv := map[string]string{}
	if len(c.Routes) == 0 {
		return kv
	}
	s := w.servicePrefix(c.ID) + "/loadBalancer/"
	for i, rt := range c.Routes {
		kv[s+"servers/"+strconv.Itoa(i)+"/url"] = rt.URL()
	}
	if c.HealthCheckPath != "" {
		interval := c.HealthInterval
		if interval == "" {
			interval = "10s"
		}
		kv[s+"healthCheck/path"] = c.HealthCheckPath
		kv[s+"healthCheck/interval"] = interval
		kv[s+"healthCheck/timeout"] = "5s"
	}
	return kv
}

// sdKeys is the traefik-sd middleware, lower-case as the coordinator writes
// plugin keys. Routes carry their ids so every server gets its labels.
func (w *Writer) sdKeys(c Circuit) map[string]string {
	name := c.PluginName
	if name == "" {
		name = "traefik-sd"
	}
	p := w.sdPrefix(c.ID) + "/plugin/" + name + "/"
	kv := map[string]string{
		p + "circuitid":       c.ID,
		p + "workerauthority": w.Authority,
	}
	if c.SidecarURL != "" {
		kv[p+"sidecarurl"] = c.SidecarURL
	}
	if c.MetricsPort != 0 {
		kv[p+"metricsport"] = strconv.Itoa(c.MetricsPort)
	}
	if c.MetricsPath != "" {
		kv[p+"metricspath"] = c.MetricsPath
	}
	for i, s := range circuitSessionIDs(c) {
		kv[p+"sessionids/"+strconv.Itoa(i)] = s
	}
	for i, rt := range c.Routes {
		kv[p+"routes/"+strconv.Itoa(i)+"/url"] = rt.URL()
		kv[p+"routes/"+strconv.Itoa(i)+"/sessionid"] = rt.SessionID
		if rt.RouteID != "" {
			kv[p+"routes/"+strconv.Itoa(i)+"/routeid"] = rt.RouteID
		}
	}
	keys := make([]string, 0, len(c.Labels))
	for k := range c.Labels {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		kv[p+"labels/"+url.PathEscape(k)] = c.Labels[k]
	}
	return kv
}

// circuitSessionIDs is the circuit's session_ids: set when it is created and
// never updated, so an inference circuit (created with no routes) keeps []
// and only route_info names its sessions.
func circuitSessionIDs(c Circuit) []string {
	if c.Mode == "inference" {
		return []string{}
	}
	return sessionIDs(c)
}

func sessionIDs(c Circuit) []string {
	seen := map[string]bool{}
	out := []string{}
	for _, r := range c.Routes {
		if r.SessionID != "" && !seen[r.SessionID] {
			seen[r.SessionID] = true
			out = append(out, r.SessionID)
		}
	}
	return out
}

// Put creates or rewrites whole circuits, as the coordinator does at create
// and at every start: per batch of five, one transaction that deletes the
// stale keys of the circuits' subtrees and puts every key, unchanged ones
// included. (etcd refuses a put inside a delete-range of the same
// transaction, so stale keys are found first.)
func (w *Writer) Put(ctx context.Context, circuits ...Circuit) error {
	for start := 0; start < len(circuits); start += 5 {
		end := start + 5
		if end > len(circuits) {
			end = len(circuits)
		}
		var prefixes []string
		kv := map[string]string{}
		for _, c := range circuits[start:end] {
			prefixes = append(prefixes, w.subtrees(c.ID)...)
			for k, v := range w.Keys(c) {
				kv[k] = v
			}
		}
		if err := w.replace(ctx, prefixes, kv); err != nil {
			return fmt.Errorf("writing circuits: %w", err)
		}
	}
	return nil
}

// UpdateRoutes replaces only the services of the given circuits, in one
// transaction, as the coordinator's route sync does. The traefik-sd
// middleware's routes are rewritten with them.
func (w *Writer) UpdateRoutes(ctx context.Context, circuits ...Circuit) error {
	var prefixes []string
	kv := map[string]string{}
	for _, c := range circuits {
		prefixes = append(prefixes, w.servicePrefix(c.ID)+"/")
		for k, v := range w.serviceKeys(c) {
			kv[k] = v
		}
		if c.SD {
			prefixes = append(prefixes, w.sdPrefix(c.ID)+"/")
			for k, v := range w.sdKeys(c) {
				kv[k] = v
			}
		}
	}
	if err := w.replace(ctx, prefixes, kv); err != nil {
		return fmt.Errorf("updating routes: %w", err)
	}
	return nil
}

func (w *Writer) replace(ctx context.Context, prefixes []string, kv map[string]string) error {
	var ops []clientv3.Op
	for _, p := range prefixes {
		resp, err := w.Client.Get(ctx, p, clientv3.WithPrefix(), clientv3.WithKeysOnly())
		if err != nil {
			return err
		}
		for _, k := range resp.Kvs {
			if _, keep := kv[string(k.Key)]; !keep {
				ops = append(ops, clientv3.OpDelete(string(k.Key)))
			}
		}
	}
	ops = append(ops, putOps(kv)...)
	_, err := w.Client.Txn(ctx).Then(ops...).Commit()
	return err
}

// Delete removes circuits as unload_traefik_circuit does: separate prefix
// deletes, each its own revision, in the coordinator's order (router,
// service, the plugin middlewares, whose prefix also matches _go, their
// legacy path, the IP allow-list), then traefik-sd's own middleware, which
// the coordinator change adds last. A watcher sees every step: a router
// gone while its service and middlewares remain, and so on.
func (w *Writer) Delete(ctx context.Context, ids ...string) error {
	for _, id := range ids {
		for _, p := range w.deletePrefixes(id) {
			if _, err := w.Client.Delete(ctx, p, clientv3.WithPrefix()); err != nil {
				return fmt.Errorf("deleting circuit %s (%s): %w", id, p, err)
			}
		}
	}
	return nil
}

// DeletePrefixes are the prefixes Delete removes for one circuit, in order.
func (w *Writer) DeletePrefixes(id string) []string { return w.deletePrefixes(id) }

func (w *Writer) deletePrefixes(id string) []string {
	return []string{w.routerPrefix(id), w.servicePrefix(id), w.pluginPrefix(id),
		w.prefix() + "middlewares/appproxy/plugin/bai_appproxy_plugin_" + id,
		w.prefix() + "middlewares/bai_ipallowlist_" + id, w.sdPrefix(id)}
}

// subtrees are what a create replaces for one circuit.
func (w *Writer) subtrees(id string) []string {
	return []string{w.routerPrefix(id), w.servicePrefix(id), w.pluginPrefix(id),
		w.prefix() + "middlewares/bai_ipallowlist_" + id, w.sdPrefix(id)}
}

func putOps(kv map[string]string) []clientv3.Op {
	keys := make([]string, 0, len(kv))
	for k := range kv {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	ops := make([]clientv3.Op, 0, len(keys))
	for _, k := range keys {
		ops = append(ops, clientv3.OpPut(k, kv[k]))
	}
	return ops
}

// BulkLoad writes circuits into an empty tree, as many whole circuits per
// transaction as fit in etcd's default 128 operations, for benchmarks that
// need many circuits fast. A circuit is never split across transactions (a
// watcher would see it half written); the coordinator itself writes five
// circuits per transaction (Put).
func (w *Writer) BulkLoad(ctx context.Context, circuits []Circuit) error {
	var ops []clientv3.Op
	seen := map[string]bool{} // shared keys (CORSHeaders) go once: etcd refuses a key twice in a transaction
	flush := func() error {
		if len(ops) == 0 {
			return nil
		}
		_, err := w.Client.Txn(ctx).Then(ops...).Commit()
		ops = ops[:0]
		return err
	}
	for _, c := range circuits {
		var circuitOps []clientv3.Op
		for _, op := range putOps(w.Keys(c)) {
			if k := string(op.KeyBytes()); strings.Contains(k, "/middlewares/CORSHeaders/") {
				if seen[k] {
					continue
				}
				seen[k] = true
			}
			circuitOps = append(circuitOps, op)
		}
		if len(ops)+len(circuitOps) > 128 {
			if err := flush(); err != nil {
				return err
			}
		}
		ops = append(ops, circuitOps...)
	}
	return flush()
}

// SampleInference is the i-th of a family of distinct inference circuits with
// two routes and a health check and the traefik-sd middleware, for
// benchmarks and load tests.
func SampleInference(i int) Circuit {
	return Circuit{
		ID: fmt.Sprintf("%08d-0000-4000-8000-000000000000", i), App: "llama-chat", Mode: "inference",
		Hostname: fmt.Sprintf("c%d.example", i), HealthCheckPath: "/health", SD: true,
		Routes: []Route{
			{RouteID: fmt.Sprintf("%08d-0000-4000-8000-00000000000a", i), SessionID: fmt.Sprintf("%08d-0000-4000-8000-0000000000a0", i), Host: fmt.Sprintf("10.%d.%d.%d", i>>14&255, i>>6&255, i&63*2), Port: 8000},
			{RouteID: fmt.Sprintf("%08d-0000-4000-8000-00000000000b", i), SessionID: fmt.Sprintf("%08d-0000-4000-8000-0000000000b0", i), Host: fmt.Sprintf("10.%d.%d.%d", i>>14&255, i>>6&255, i&63*2+1), Port: 8000},
		},
	}
}
