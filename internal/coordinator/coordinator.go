// Package coordinator plays Backend.AI's AppProxy coordinator in tests and
// the demo. It writes what the coordinator at the commit named in
// integrations/backend.ai writes, key for key: each circuit's router,
// service and middlewares as Circuit.traefik_routers, traefik_services and
// get_traefik_middlewares build them (models/circuit.py), through the same
// transactions (types.py: initialize_traefik_circuits replaces five
// circuits' subtrees per transaction, a route update replaces services
// alone in one transaction, an unload is separate prefix deletes, each its
// own revision, and the leader's reconcile rewrites services one circuit at
// a time, then drops orphans found through their services). With the
// traefik-sd setting of the patch (Writer.SD) it also writes the bai_sd_<id>
// middleware, for HTTP circuits only, exactly as the patched coordinator
// does. It answers GET /api/worker/{id}/circuits from the same circuits
// (API).
package coordinator

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"sort"
	"strconv"
	"strings"
	"sync"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// Route is one session container behind a circuit (RouteInfo).
type Route struct {
	RouteID   string // empty for interactive circuits (route_id null)
	SessionID string
	Host      string
	Port      int
	// NullHost is a route whose kernel_host is null: the coordinator's API
	// says null, and Traefik gets current_kernel_host, "localhost".
	NullHost bool
}

// KernelHost is current_kernel_host: kernel_host, or "localhost" for null.
func (r Route) KernelHost() string {
	if r.NullHost {
		return "localhost"
	}
	return r.Host
}

// URL is the server URL the coordinator writes for this route.
func (r Route) URL() string {
	return "http://" + r.KernelHost() + ":" + strconv.Itoa(r.Port) + "/"
}

// Protocols and frontend modes, as Backend.AI spells them.
const (
	HTTP     = "http"
	TCP      = "tcp"
	Wildcard = "wildcard"
	PortMode = "port"
)

// Circuit is what the coordinator knows of one circuit.
type Circuit struct {
	ID   string
	App  string
	Mode string // "interactive" or "inference"
	// Protocol is "http" (the default here) or "tcp".
	Protocol string
	// FrontendMode is "wildcard" (the default here) or "port"; a port-mode
	// circuit's entry point is portproxy_<Port>.
	FrontendMode string
	Port         int
	// Subdomain is a wildcard-mode circuit's subdomain: its Host() rule is
	// Host(`<Subdomain><Writer.WildcardDomain>`) and its JSON's subdomain.
	Subdomain string
	// Hostname, when set, is the host of the Host() rule instead of the one
	// Backend.AI derives (<subdomain><wildcard domain>, or the worker's
	// hostname in port mode); a wildcard-mode circuit without Subdomain
	// takes its JSON's subdomain from Hostname's first label.
	Hostname string
	Routes   []Route
	// HealthCheckPath, when set, writes a health check (inference
	// circuits whose endpoint enables it).
	HealthCheckPath string
	HealthInterval  string // default 10s
	HealthTimeout   string // default 5s
	// AllowedClientIPs are the entries of the circuit's allowed_client_ips
	// (the comma-separated string, split at its commas): an HTTP circuit
	// gets bai_ipallowlist_<id> in its chain, a TCP one a ClientIP() rule,
	// with the entries normalized as ClientIPValidator does (ranges).
	AllowedClientIPs []string
	OpenToPublic     bool

	// Beyond the coordinator: what the sidecar's tests need that no
	// coordinator writes. Labels, MetricsPort and MetricsPath go into
	// bai_sd_<id> (the patch writes one metrics port and path for every
	// circuit, from its setting, and no labels); Rule
	// replaces the Host() rule and ExtraMiddlewares go into the router's
	// chain before bai_sd_<id> (the tests of routers Traefik refuses).
	Labels           map[string]string
	MetricsPort      int
	MetricsPath      string
	Rule             string
	ExtraMiddlewares []string
}

func (c Circuit) protocol() string {
	if c.Protocol == "" {
		return HTTP
	}
	return c.Protocol
}

// TraefikSD is the coordinator setting the patch adds
// ([proxy-coordinator.traefik.traefik-sd]); off unless a Writer has one.
type TraefikSD struct {
	PluginName  string // the plugin's key in Traefik's configuration; default "traefik-sd"
	SidecarURL  string
	MetricsPort int
	MetricsPath string
}

// MaxTxnOps is etcd's default --max-txn-ops, which Backend.AI leaves as it is.
const MaxTxnOps = 128

// Writer writes the circuits of one worker, and remembers them for the API.
type Writer struct {
	Client *clientv3.Client
	// Namespace is proxy_coordinator.traefik.etcd.namespace; the root key
	// Traefik reads is <Namespace>/worker_<Authority>. Default "traefik".
	Namespace string
	Authority string
	// WorkerID is the worker's id at the coordinator (the circuit JSON's
	// "worker", and the API's path).
	WorkerID string
	// SD is the patch's setting; nil is Backend.AI as it is.
	SD *TraefikSD
	// TLSListen is the worker's tls_listen: routers get tls = "".
	TLSListen bool
	// Hostname is the worker's hostname, the Host() rule of its port-mode
	// circuits; WildcardDomain (".example.com") follows a wildcard-mode
	// circuit's Subdomain. A circuit's Hostname overrides both.
	Hostname, WildcardDomain string
	// LastUsedMarkerPath is the worker's traefik_last_used_marker_path
	// (DefaultLastUsedMarkerPath when empty). LastUsedMarkerPathNull is a
	// worker whose path is null: Backend.AI writes str(None), "None".
	LastUsedMarkerPath     string
	LastUsedMarkerPathNull bool
	// JWTSecret and PermitHashSecret are the coordinator's secrets, which
	// it writes into every HTTP circuit's WASM middleware.
	JWTSecret, PermitHashSecret string
	// IPStrategyDepth and IPStrategyExcludedIPs are the coordinator's
	// client_ip_strategy, written into each ipAllowList.
	IPStrategyDepth       int
	IPStrategyExcludedIPs []string
	// UnchainAppProxyPlugins keeps Backend.AI's own plugin middlewares out
	// of the router chain (their keys are still written). Traefik disables
	// a router whose plugin it does not have, and those plugins are not
	// available outside Backend.AI: the end-to-end Traefik runs without.
	UnchainAppProxyPlugins bool

	mu       sync.Mutex
	circuits map[string]Circuit
}

// Defaults of the worker and the coordinator's configuration.
const (
	DefaultLastUsedMarkerPath = "/var/lib/backend.ai/appproxy/worker/last-used-time-marker.socket"
	DefaultJWTSecret          = "7b3e0f1c9d2a4e8f"                 // a test secret; never printed by the sidecar
	DefaultPermitHashSecret   = "f0e1d2c3b4a5968778695a4b3c2d1e0f" // likewise
	// PermitCookieName is PERMIT_COOKIE_NAME.
	PermitCookieName = "appproxy_permit"
)

func (w *Writer) root() string {
	ns := w.Namespace
	if ns == "" {
		ns = "traefik"
	}
	return ns + "/worker_" + w.Authority
}

// RootKey is what Traefik's etcd provider and the sidecar are given.
func (w *Writer) RootKey() string { return w.root() }

func (w *Writer) prefix(protocol string) string { return w.root() + "/" + protocol + "/" }

func (w *Writer) routerPrefix(c Circuit) string {
	return w.prefix(c.protocol()) + "routers/bai_router_" + c.ID
}
func (w *Writer) servicePrefix(c Circuit) string {
	return w.prefix(c.protocol()) + "services/bai_service_" + c.ID
}
func (w *Writer) middlewarePrefix(c Circuit, name string) string {
	return w.prefix(c.protocol()) + "middlewares/" + name
}

// object is one Traefik object's subtree: the prefix atomic_replace_prefixes
// replaces, and its keys.
type object struct {
	prefix string
	kv     map[string]string
}

// objects are what initialize_traefik_circuits replaces for a circuit, in
// its order: routers, services, middlewares. A circuit with no routes has no
// service object at all.
func (w *Writer) objects(c Circuit) []object {
	var out []object
	flat := func(prefix string, body map[string]any) {
		kv := map[string]string{}
		flatten(prefix, body, kv)
		out = append(out, object{prefix, kv})
	}
	flat(w.routerPrefix(c), w.routerBody(c))
	if svc := w.serviceBody(c); svc != nil {
		flat(w.servicePrefix(c), svc)
	}
	for _, m := range w.middlewares(c) {
		flat(w.middlewarePrefix(c, m.name), m.body)
	}
	return out
}

// flatten is convert_to_etcd_dict and _flatten_nested_dict: maps joined with
// "/", each key quoted (quote(k, safe="")), lists as 0, 1, …, an empty list
// or map writes nothing, values as str().
func flatten(prefix string, v any, kv map[string]string) {
	switch v := v.(type) {
	case map[string]any:
		for k, x := range v {
			flatten(prefix+"/"+quote(k), x, kv)
		}
	case []string:
		for i, x := range v {
			kv[prefix+"/"+strconv.Itoa(i)] = x
		}
	case string:
		kv[prefix] = v
	case int:
		kv[prefix] = strconv.Itoa(v)
	default:
		panic(fmt.Sprintf("coordinator: cannot flatten %T", v))
	}
}

// quote is Python's urllib.parse.quote(k, safe=""): every byte but
// A-Z a-z 0-9 _ . - ~ percent-encoded, in upper-case hex.
func quote(k string) string {
	var b strings.Builder
	for i := 0; i < len(k); i++ {
		c := k[i]
		if 'A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || strings.IndexByte("_.-~", c) >= 0 {
			b.WriteByte(c)
		} else {
			fmt.Fprintf(&b, "%%%02X", c)
		}
	}
	return b.String()
}

// ranges is ClientIPValidator(allowed_client_ips).ranges: each entry
// stripped, blank ones skipped, a bare address as /32 or /128, host bits
// cleared (ip_network(entry, strict=False)), unparsable ones skipped.
func (c Circuit) ranges() []string {
	var out []string
	for _, e := range c.AllowedClientIPs {
		e = strings.TrimSpace(e)
		if e == "" {
			continue
		}
		if p, err := netip.ParsePrefix(e); err == nil {
			out = append(out, p.Masked().String())
		} else if a, err := netip.ParseAddr(e); err == nil && a.Zone() == "" {
			out = append(out, netip.PrefixFrom(a, a.BitLen()).String())
		}
	}
	return out
}

// host is the Host() rule's host: traefik_rule.
func (w *Writer) host(c Circuit) string {
	switch {
	case c.Hostname != "":
		return c.Hostname
	case c.FrontendMode == PortMode:
		return w.Hostname
	default:
		return c.Subdomain + w.WildcardDomain
	}
}

func (w *Writer) routerBody(c Circuit) map[string]any {
	rule := "Host(`" + w.host(c) + "`)"
	ranges := c.ranges()
	if c.protocol() == TCP {
		rule = "ClientIP(`0.0.0.0/0`)"
		if len(ranges) > 0 {
			quoted := make([]string, len(ranges))
			for i, r := range ranges {
				quoted[i] = "`" + r + "`"
			}
			rule = "ClientIP(" + strings.Join(quoted, ", ") + ")"
		}
	}
	if c.Rule != "" {
		rule = c.Rule
	}
	body := map[string]any{
		"rule":        rule,
		"service":     "bai_service_" + c.ID,
		"entrypoints": []string{entrypoint(c)},
	}
	if c.protocol() == TCP {
		return body
	}
	mws := []string{"CORSHeaders"}
	if len(ranges) > 0 {
		mws = append(mws, "bai_ipallowlist_"+c.ID)
	}
	if !w.UnchainAppProxyPlugins {
		mws = append(mws, "bai_appproxy_plugin_"+c.ID, "bai_appproxy_plugin_"+c.ID+"_go")
	}
	mws = append(mws, c.ExtraMiddlewares...)
	if w.SD != nil {
		mws = append(mws, "bai_sd_"+c.ID)
	}
	body["middlewares"] = mws
	if w.TLSListen {
		body["tls"] = ""
	}
	return body
}

func entrypoint(c Circuit) string {
	if c.FrontendMode == PortMode {
		return "portproxy_" + strconv.Itoa(c.Port)
	}
	return "domainproxy"
}

// serviceBody is nil for a circuit with no routes: Circuit.traefik_services
// returns nothing, not even the health check.
func (w *Writer) serviceBody(c Circuit) map[string]any {
	if len(c.Routes) == 0 {
		return nil
	}
	servers := map[string]any{}
	for i, rt := range c.Routes {
		if c.protocol() == TCP {
			servers[strconv.Itoa(i)] = map[string]any{"address": rt.KernelHost() + ":" + strconv.Itoa(rt.Port)}
		} else {
			servers[strconv.Itoa(i)] = map[string]any{"url": rt.URL()}
		}
	}
	lb := map[string]any{"servers": servers}
	if c.protocol() == HTTP && c.HealthCheckPath != "" {
		lb["healthCheck"] = map[string]any{
			"path":     c.HealthCheckPath,
			"interval": or(c.HealthInterval, "10s"),
			"timeout":  or(c.HealthTimeout, "5s"),
		}
	}
	return map[string]any{"loadBalancer": lb}
}

type middleware struct {
	name string
	body map[string]any
}

// middlewares is get_traefik_middlewares: nothing for TCP.
func (w *Writer) middlewares(c Circuit) []middleware {
	if c.protocol() == TCP {
		return nil
	}
	out := []middleware{
		{"CORSHeaders", map[string]any{"headers": map[string]any{
			"accessControlAllowHeaders":    "*",
			"accessControlAllowOriginList": []string{"*"},
		}}},
		{"bai_appproxy_plugin_" + c.ID, map[string]any{"plugin": map[string]any{
			"appproxy-traefik-plugin": map[string]any{
				"circuit":            string(w.CircuitJSON(c)),
				"jwt_secret":         or(w.JWTSecret, DefaultJWTSecret),
				"permit_hash_secret": or(w.PermitHashSecret, DefaultPermitHashSecret),
				"permit_cookie_name": PermitCookieName,
			},
		}}},
		{"bai_appproxy_plugin_" + c.ID + "_go", map[string]any{"plugin": map[string]any{
			"appproxy-traefik-plugin-go": map[string]any{
				"id":                 c.ID,
				"sessionids":         circuitSessionIDs(c),
				"lastusedmarkerpath": w.lastUsedMarkerPath(),
			},
		}}},
	}
	if ranges := c.ranges(); len(ranges) > 0 {
		allow := map[string]any{"sourceRange": ranges}
		switch {
		case w.IPStrategyDepth > 0:
			allow["ipStrategy"] = map[string]any{"depth": w.IPStrategyDepth}
		case len(w.IPStrategyExcludedIPs) > 0:
			allow["ipStrategy"] = map[string]any{"excludedIPs": w.IPStrategyExcludedIPs}
		}
		out = append(out, middleware{"bai_ipallowlist_" + c.ID, map[string]any{"ipAllowList": allow}})
	}
	if w.SD != nil {
		out = append(out, middleware{"bai_sd_" + c.ID, map[string]any{"plugin": map[string]any{
			or(w.SD.PluginName, "traefik-sd"): w.sdBody(c),
		}}})
	}
	return out
}

// sdBody is the patch's traefik_sd_middleware: identity only, what never
// changes in a circuit's life, so a route change rewrites none of it.
func (w *Writer) sdBody(c Circuit) map[string]any {
	body := map[string]any{
		"circuitid":       c.ID,
		"workerauthority": w.Authority,
		"sessionids":      circuitSessionIDs(c),
	}
	if w.SD.SidecarURL != "" {
		body["sidecarurl"] = w.SD.SidecarURL
	}
	if port := c.MetricsPort; port != 0 || w.SD.MetricsPort != 0 {
		if port == 0 {
			port = w.SD.MetricsPort
		}
		body["metricsport"] = port
	}
	if p := or(c.MetricsPath, w.SD.MetricsPath); p != "" {
		body["metricspath"] = p
	}
	if len(c.Labels) > 0 {
		labels := map[string]any{}
		for k, v := range c.Labels {
			labels[k] = v
		}
		body["labels"] = labels
	}
	return body
}

func (w *Writer) lastUsedMarkerPath() string {
	if w.LastUsedMarkerPathNull {
		return "None"
	}
	return or(w.LastUsedMarkerPath, DefaultLastUsedMarkerPath)
}

func or(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// circuitSessionIDs is the circuit's session_ids: set when it is created
// (Circuit.create: every route's session, repeats kept) and never updated,
// so an inference circuit (created with no routes) keeps [] and only
// route_info names its sessions.
func circuitSessionIDs(c Circuit) []string {
	out := []string{}
	if c.Mode == "inference" {
		return out
	}
	for _, r := range c.Routes {
		if r.SessionID != "" {
			out = append(out, r.SessionID)
		}
	}
	return out
}

// Keys returns every key the coordinator writes for c, with its value.
func (w *Writer) Keys(c Circuit) map[string]string {
	kv := map[string]string{}
	for _, o := range w.objects(c) {
		for k, v := range o.kv {
			kv[k] = v
		}
	}
	return kv
}

// Put creates or rewrites whole circuits, as initialize_traefik_circuits
// does at create and at every start: per batch, one transaction that
// deletes the stale keys of the circuits' subtrees and puts every key,
// unchanged ones included. Backend.AI batches five circuits; with the
// traefik-sd setting, the patch also closes a batch before its puts pass
// etcd's 128 operations (batches).
func (w *Writer) Put(ctx context.Context, circuits ...Circuit) error {
	for _, batch := range w.batches(circuits) {
		var objs []object
		for _, c := range batch {
			objs = append(objs, w.objects(c)...)
		}
		if err := w.replace(ctx, objs); err != nil {
			return fmt.Errorf("writing circuits: %w", err)
		}
		w.remember(batch...)
	}
	return nil
}

// batches is itertools.batched(circuits, 5), and with the setting also
// bounded by the puts' count: the bai_sd_<id> keys would otherwise push
// five circuits that Backend.AI writes today over etcd's limit, and the
// coordinator would not start. A circuit is never split.
func (w *Writer) batches(circuits []Circuit) [][]Circuit {
	var out [][]Circuit
	var cur []Circuit
	ops := 0
	for _, c := range circuits {
		n := len(w.Keys(c))
		if len(cur) == 5 || (w.SD != nil && len(cur) > 0 && ops+n > MaxTxnOps) {
			out = append(out, cur)
			cur, ops = nil, 0
		}
		cur = append(cur, c)
		ops += n
	}
	if len(cur) > 0 {
		out = append(out, cur)
	}
	return out
}

// UpdateRoutes replaces only the services of the given circuits, in one
// transaction, as _update_traefik_circuit_routes_bulk does; a circuit with
// no routes has its service removed. No middleware is touched, with the
// traefik-sd setting or without.
func (w *Writer) UpdateRoutes(ctx context.Context, circuits ...Circuit) error {
	var objs []object
	for _, c := range circuits {
		kv := map[string]string{}
		if svc := w.serviceBody(c); svc != nil {
			flatten(w.servicePrefix(c), svc, kv)
		}
		objs = append(objs, object{w.servicePrefix(c), kv})
	}
	if err := w.replace(ctx, objs); err != nil {
		return fmt.Errorf("updating routes: %w", err)
	}
	w.remember(circuits...)
	return nil
}

// replace is atomic_replace_prefixes: read every prefix's keys (a string
// prefix, as written, with no trailing slash), then one transaction that
// deletes the stale ones and puts every new one. Keys named twice (the
// shared CORSHeaders) are put once.
func (w *Writer) replace(ctx context.Context, objs []object) error {
	kv := map[string]string{}
	existing := map[string]bool{}
	for _, o := range objs {
		resp, err := w.Client.Get(ctx, o.prefix, clientv3.WithPrefix(), clientv3.WithKeysOnly())
		if err != nil {
			return err
		}
		for _, k := range resp.Kvs {
			existing[string(k.Key)] = true
		}
		for k, v := range o.kv {
			kv[k] = v
		}
	}
	var ops []clientv3.Op
	for _, k := range sortedKeys(existing) {
		if _, keep := kv[k]; !keep {
			ops = append(ops, clientv3.OpDelete(k))
		}
	}
	ops = append(ops, putOps(kv)...)
	if len(ops) == 0 {
		return nil
	}
	_, err := w.Client.Txn(ctx).Then(ops...).Commit()
	return err
}

// Delete removes circuits as unload_traefik_circuit does: separate prefix
// deletes, each its own revision, in the coordinator's order (router,
// service and, for HTTP, the plugin middlewares, whose prefix also matches
// _go, their legacy path, the IP allow-list, then bai_sd_<id>, which the
// patch adds last, setting or not). A watcher sees every step: a router gone while its
// service and middlewares remain, and so on.
func (w *Writer) Delete(ctx context.Context, ids ...string) error {
	for _, id := range ids {
		c := w.known(id)
		for _, p := range w.deletePrefixes(c) {
			if _, err := w.Client.Delete(ctx, p, clientv3.WithPrefix()); err != nil {
				return fmt.Errorf("deleting circuit %s (%s): %w", id, p, err)
			}
		}
		w.forget(id)
	}
	return nil
}

// DeletePrefixes are the prefixes Delete removes for one circuit, in order.
func (w *Writer) DeletePrefixes(id string) []string { return w.deletePrefixes(w.known(id)) }

func (w *Writer) deletePrefixes(c Circuit) []string {
	out := []string{w.routerPrefix(c), w.servicePrefix(c)}
	if c.protocol() == HTTP {
		out = append(out, w.middlewarePrefix(c, "bai_appproxy_plugin_"+c.ID),
			w.middlewarePrefix(c, "appproxy/plugin/bai_appproxy_plugin_"+c.ID),
			w.middlewarePrefix(c, "bai_ipallowlist_"+c.ID),
			// With the setting off too: turning it off leaves nothing behind.
			// Deleting nothing moves no revision.
			w.middlewarePrefix(c, "bai_sd_"+c.ID))
	}
	return out
}

// Reconcile is the leader's periodic on_reconcile_traefik_routes: every
// live circuit's service rewritten, one circuit per transaction (routers and
// middlewares are not), then every circuit whose bai_service_<uuid> is in
// etcd but not live deleted as Delete deletes it. A circuit with no service
// keys is never found that way.
func (w *Writer) Reconcile(ctx context.Context) error {
	live := w.Circuits()
	for _, c := range live {
		if err := w.UpdateRoutes(ctx, c); err != nil {
			return err
		}
	}
	isLive := map[string]bool{}
	for _, c := range live {
		isLive[c.protocol()+"\x00"+c.ID] = true
	}
	for _, protocol := range []string{HTTP, TCP} {
		services := w.prefix(protocol) + "services/"
		resp, err := w.Client.Get(ctx, services, clientv3.WithPrefix(), clientv3.WithKeysOnly())
		if err != nil {
			return err
		}
		stale := map[string]bool{}
		for _, kv := range resp.Kvs {
			top, _, _ := strings.Cut(strings.TrimPrefix(string(kv.Key), services), "/")
			id, ok := strings.CutPrefix(top, "bai_service_")
			if ok && isUUID(id) && !isLive[protocol+"\x00"+id] {
				stale[id] = true
			}
		}
		for _, id := range sortedKeys(stale) {
			for _, p := range w.deletePrefixes(Circuit{ID: id, Protocol: protocol}) {
				if _, err := w.Client.Delete(ctx, p, clientv3.WithPrefix()); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// isUUID is what Python's UUID() accepts of a bai_service_ suffix, in the
// canonical form the coordinator writes.
func isUUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i, r := range s {
		switch {
		case i == 8 || i == 13 || i == 18 || i == 23:
			if r != '-' {
				return false
			}
		case !strings.ContainsRune("0123456789abcdefABCDEF", r):
			return false
		}
	}
	return true
}

func (w *Writer) remember(cs ...Circuit) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.circuits == nil {
		w.circuits = map[string]Circuit{}
	}
	for _, c := range cs {
		w.circuits[c.ID] = c
	}
}

func (w *Writer) forget(id string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	delete(w.circuits, id)
}

// known is the circuit as last written, or an HTTP circuit of that id.
func (w *Writer) known(id string) Circuit {
	w.mu.Lock()
	defer w.mu.Unlock()
	if c, ok := w.circuits[id]; ok {
		return c
	}
	return Circuit{ID: id}
}

// Circuit is the circuit of that id as last written, if it is not deleted.
func (w *Writer) Circuit(id string) (Circuit, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	c, ok := w.circuits[id]
	return c, ok
}

// Circuits are the circuits written and not deleted, by id.
func (w *Writer) Circuits() []Circuit {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := make([]Circuit, 0, len(w.circuits))
	for _, c := range w.circuits {
		out = append(out, c)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func putOps(kv map[string]string) []clientv3.Op {
	ops := make([]clientv3.Op, 0, len(kv))
	for _, k := range sortedKeys(kv) {
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
		if len(ops)+len(circuitOps) > MaxTxnOps {
			if err := flush(); err != nil {
				return err
			}
		}
		ops = append(ops, circuitOps...)
	}
	if err := flush(); err != nil {
		return err
	}
	w.remember(circuits...)
	return nil
}

// SampleInference is the i-th of a family of distinct inference circuits with
// two routes and a health check, for benchmarks and load tests.
func SampleInference(i int) Circuit {
	return Circuit{
		ID: fmt.Sprintf("%08d-0000-4000-8000-000000000000", i), App: "llama-chat", Mode: "inference",
		Hostname: fmt.Sprintf("c%d.example", i), HealthCheckPath: "/health",
		Routes: []Route{
			{RouteID: fmt.Sprintf("%08d-0000-4000-8000-00000000000a", i), SessionID: fmt.Sprintf("%08d-0000-4000-8000-0000000000a0", i), Host: fmt.Sprintf("10.%d.%d.%d", i>>14&255, i>>6&255, i&63*2), Port: 8000},
			{RouteID: fmt.Sprintf("%08d-0000-4000-8000-00000000000b", i), SessionID: fmt.Sprintf("%08d-0000-4000-8000-0000000000b0", i), Host: fmt.Sprintf("10.%d.%d.%d", i>>14&255, i>>6&255, i&63*2+1), Port: 8000},
		},
	}
}

// CircuitJSON is SerializableCircuit(**circuit.dump_model()).model_dump_json():
// the WASM middleware's circuit key and one element of the API's answer.
// Pydantic writes fields in declaration order, compactly, UUIDs as
// strings, enums by value, floats with a fraction, and no HTML escaping.
func (w *Writer) CircuitJSON(c Circuit) []byte {
	type routeInfo struct {
		RouteID      *string     `json:"route_id"`
		SessionID    string      `json:"session_id"`
		SessionName  *string     `json:"session_name"`
		KernelHost   *string     `json:"kernel_host"`
		KernelPort   int         `json:"kernel_port"`
		Protocol     string      `json:"protocol"`
		TrafficRatio json.Number `json:"traffic_ratio"`
	}
	type circuit struct {
		ID               string         `json:"id"`
		App              string         `json:"app"`
		Protocol         string         `json:"protocol"`
		Worker           string         `json:"worker"`
		AppMode          string         `json:"app_mode"`
		FrontendMode     string         `json:"frontend_mode"`
		Envs             map[string]any `json:"envs"`
		Arguments        *string        `json:"arguments"`
		OpenToPublic     bool           `json:"open_to_public"`
		AllowedClientIPs *string        `json:"allowed_client_ips"`
		Port             *int           `json:"port"`
		Subdomain        *string        `json:"subdomain"`
		UserID           *string        `json:"user_id"`
		EndpointID       *string        `json:"endpoint_id"`
		RuntimeVariant   *string        `json:"runtime_variant"`
		RouteInfo        []routeInfo    `json:"route_info"`
		SessionIDs       []string       `json:"session_ids"`
		CreatedAt        string         `json:"created_at"`
		UpdatedAt        string         `json:"updated_at"`
	}
	str := func(s string) *string { return &s }
	out := circuit{
		ID: c.ID, App: c.App, Protocol: c.protocol(), Worker: or(w.WorkerID, "00000000-0000-4000-8000-00000000c0de"),
		AppMode: or(c.Mode, "interactive"), FrontendMode: or(c.FrontendMode, Wildcard), Envs: map[string]any{},
		OpenToPublic: c.OpenToPublic, RouteInfo: []routeInfo{}, SessionIDs: circuitSessionIDs(c),
		CreatedAt: "2026-11-24T10:00:00Z", UpdatedAt: "2026-11-24T10:00:00Z",
	}
	if len(c.AllowedClientIPs) > 0 {
		out.AllowedClientIPs = str(strings.Join(c.AllowedClientIPs, ","))
	}
	if c.FrontendMode == PortMode {
		out.Port = &c.Port
	} else if c.Subdomain != "" {
		out.Subdomain = str(c.Subdomain)
	} else {
		out.Subdomain = str(strings.SplitN(c.Hostname, ".", 2)[0])
	}
	if c.Mode == "inference" {
		out.EndpointID = str(EndpointID(c))
	}
	for _, r := range c.Routes {
		ri := routeInfo{SessionID: r.SessionID, SessionName: str("session-" + r.SessionID),
			KernelPort: r.Port, Protocol: c.protocol(), TrafficRatio: "1.0"}
		if r.RouteID != "" {
			ri.RouteID = str(r.RouteID)
		}
		if !r.NullHost {
			ri.KernelHost = str(r.Host)
		}
		out.RouteInfo = append(out.RouteInfo, ri)
	}
	var b strings.Builder
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(out); err != nil {
		panic(err)
	}
	return []byte(strings.TrimSuffix(b.String(), "\n"))
}

// EndpointID is an inference circuit's endpoint_id, derived from its id.
func EndpointID(c Circuit) string {
	tail := "000000000000" + c.ID
	return "e0e1e2e3-aaaa-4bbb-8ccc-" + tail[len(tail)-12:]
}
