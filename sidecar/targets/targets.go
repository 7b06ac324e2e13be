// Package targets combines the decoded configuration and Traefik's server
// health into the set of Prometheus targets, sorted so that the same inputs
// always give the same set.
package targets

import (
	"net"
	"net/url"
	"sort"
	"strconv"
	"strings"

	"github.com/traefik-sd/traefik-sd/plugin"
	"github.com/traefik-sd/traefik-sd/sidecar/dynamic"
	"github.com/traefik-sd/traefik-sd/sidecar/routeinfo"
)

// Service groups (the service_group label).
const (
	GroupRoute       = "appproxy-circuit-route"
	GroupTraefik     = "traefik"
	GroupWorker      = "appproxy-worker"
	GroupCoordinator = "appproxy-coordinator"
)

// Label is one target label.
type Label struct {
	Name, Value string
}

// Target is one scrape target with its labels, sorted by name.
type Target struct {
	Address string
	Labels  []Label
}

// Label returns the value of a label, or "".
func (t Target) Label(name string) string {
	for _, l := range t.Labels {
		if l.Name == name {
			return l.Value
		}
	}
	return ""
}

// Options are the static parts of the target set.
type Options struct {
	WorkerAuthority string
	WorkerNode      string
	// Provider is the name Traefik gives the etcd provider ("etcd"): references
	// such as "bai_service_x@etcd" resolve in the store only with it.
	Provider string
	// RoutesAll publishes every identifiable HTTP circuit, not only those
	// whose router has the traefik-sd middleware.
	RoutesAll bool
	// TraefikTarget is Traefik's own metrics endpoint as Prometheus reaches it.
	TraefikTarget      string
	TraefikMetricsPath string
	TraefikScheme      string
	WorkerTarget       string
	CoordinatorTarget  string
	// MaxTargets bounds the route targets published (0: no bound); routers
	// past it, in name order, are left out and counted.
	MaxTargets int
	// MaxLabels bounds the labels of one target (0: no bound); a target with
	// more is left out and counted.
	MaxLabels int
}

// Health tells whether Traefik reports a server down. service is the
// service name as Traefik reports it (with @provider), serverURL exactly as
// configured. Unknown servers are not down.
type Health interface {
	Down(service, serverURL string) bool
}

// RouteInfo gives per-route ids that etcd does not hold (the coordinator's
// route_info), keyed by circuit and kernel host:port.
type RouteInfo interface {
	Lookup(circuitID, hostPort string) (routeinfo.IDs, bool)
	// Servers are the server URLs the coordinator gave Traefik for a
	// circuit: without etcd, the servers of a middleware that lists none.
	Servers(circuitID string) []string
}

// Traefik is what this node's Traefik itself says it runs: the traefik-sd
// middlewares its plugin reports live, and each router's status from its
// API. Names are qualified (name@provider).
type Traefik interface {
	// Live is the configuration of a traefik-sd middleware with a live
	// instance in Traefik, or nil.
	Live(middleware string) *plugin.Config
	// Router is Traefik's view of a router; known is false when Traefik
	// does not hold it (not loaded yet, or dropped).
	Router(name string) (r RouterState, known bool)
	// Routers lists every router Traefik reported: with no etcd, they are
	// the routers there are.
	Routers() []string
}

// RouterState is a router as Traefik serves it.
type RouterState struct {
	// Served is false when Traefik disabled the router; Error says why.
	Served bool
	Error  string
	// Service and Middlewares are its references, qualified.
	Service     string
	Middlewares []string
}

// Inputs are the sources a target set is built from.
type Inputs struct {
	// Store is the configuration decoded from etcd; nil when the sidecar
	// runs without etcd, and then routers come from Traefik and servers
	// from the middleware's routes or the coordinator's route_info.
	Store *dynamic.Store
	// Traefik gates publication: a circuit is published only while
	// Traefik serves its router and, for a traefik-sd circuit, runs its
	// middleware. Nil publishes what etcd holds, ungated.
	Traefik Traefik
	Health  Health
	Routes  RouteInfo
	// HoldUnnamed leaves out a server that Routes does not name and that
	// its router did not publish before: the coordinator is being asked
	// again after an etcd change, and a target published now would change
	// its labels (route_id, session_id) when the answer comes.
	HoldUnnamed bool
}

// Why a circuit that etcd holds is not published (traefik_sd_circuits_not_served{reason}).
const (
	// ReasonNotLoaded: Traefik does not hold the router (not loaded yet, or
	// its provider dropped it).
	ReasonNotLoaded = "not_loaded"
	// ReasonDisabled: Traefik holds the router but disabled it (a bad rule,
	// a middleware or plugin it cannot build); NotServed.Error is Traefik's.
	ReasonDisabled = "disabled"
	// ReasonPluginNotLive: the router is served but no instance of its
	// traefik-sd middleware is live (the plugin is not in Traefik's static
	// configuration, or has not reported yet).
	ReasonPluginNotLive = "plugin_not_live"
	// ReasonNoRoutes: etcd holds no service for the router: a circuit with
	// no routes (every inference circuit until its first route) has no
	// service keys at all. Traefik disables such a router; nothing is wrong.
	ReasonNoRoutes = "no_routes"
)

// NotServed is a circuit left out because Traefik does not serve it.
type NotServed struct {
	Router    string // qualified
	CircuitID string
	Reason    string
	Error     string // Traefik's, for ReasonDisabled
}

// Build returns every target: the route targets by router name, then
// address and labels, then the static ones by group. It is a Builder's
// first, full build.
func Build(opts Options, in Inputs) []Target {
	b := NewBuilder(opts)
	b.Update(in, Changes{All: true})
	return b.Targets()
}

// staticTargets are Traefik's own and the AppProxy processes', sorted by group.
func staticTargets(opts Options) []Target {
	var out []Target
	add := func(group, address, path, scheme string, labels ...Label) {
		if address == "" {
			return
		}
		ls := append([]Label{{"service_group", group}}, labels...)
		if path != "" && path != "/metrics" {
			ls = append(ls, Label{"__metrics_path__", path})
		}
		if scheme != "" && scheme != "http" {
			ls = append(ls, Label{"__scheme__", scheme})
		}
		out = append(out, Target{Address: address, Labels: ls})
	}
	add(GroupTraefik, opts.TraefikTarget, opts.TraefikMetricsPath, opts.TraefikScheme,
		Label{"worker_authority", opts.WorkerAuthority}, Label{"worker_node", opts.WorkerNode})
	add(GroupWorker, opts.WorkerTarget, "", "", Label{"worker_authority", opts.WorkerAuthority})
	add(GroupCoordinator, opts.CoordinatorTarget, "", "")
	return Normalize(out)
}

// Normalize sorts labels and targets and drops exact duplicates and empty
// labels (Prometheus treats an empty label as absent).
func Normalize(ts []Target) []Target {
	for i := range ts {
		ls := ts[i].Labels[:0]
		for _, l := range ts[i].Labels {
			if l.Value != "" {
				ls = append(ls, l)
			}
		}
		sort.Slice(ls, func(a, b int) bool { return ls[a].Name < ls[b].Name })
		ts[i].Labels = ls
	}
	sort.Slice(ts, func(i, j int) bool { return less(ts[i], ts[j]) })
	out := ts[:0]
	for i, t := range ts {
		if i > 0 && !less(ts[i-1], t) {
			continue
		}
		out = append(out, t)
	}
	return out
}

func less(a, b Target) bool {
	if ga, gb := a.Label("service_group"), b.Label("service_group"); ga != gb {
		return ga < gb
	}
	if a.Address != b.Address {
		return a.Address < b.Address
	}
	for i := 0; i < len(a.Labels) && i < len(b.Labels); i++ {
		if a.Labels[i] != b.Labels[i] {
			if a.Labels[i].Name != b.Labels[i].Name {
				return a.Labels[i].Name < b.Labels[i].Name
			}
			return a.Labels[i].Value < b.Labels[i].Value
		}
	}
	return len(a.Labels) < len(b.Labels)
}

// builder builds one router's targets and records every input it read
// (found or not), so that a change to any of them rebuilds the router.
type builder struct {
	opts      Options
	in        Inputs
	reads     []dynamic.ObjectID
	notServed *NotServed
	// before are the router's targets as last built, for HoldUnnamed.
	before []Target
	// exists is set once the router is found in its source (etcd, or
	// Traefik without etcd).
	exists bool
}

// Kinds of inputs beside etcd's objects, for the reverse index. With etcd
// none is recorded: a live middleware or a service's health is found through
// the etcd object of the same name, which the router already read, and a
// router's own changes rebuild it by name. Each entry costs a map per router,
// which at 200,000 targets is megabytes.
const (
	readLive   dynamic.Kind = "live"   // without etcd: a middleware's live instance, by qualified name
	readHealth dynamic.Kind = "health" // without etcd: the health of a service's servers, by qualified name
)

func (b *builder) read(kind dynamic.Kind, name string) {
	b.reads = append(b.reads, dynamic.ObjectID{Kind: kind, Name: name})
}

func (b *builder) middleware(name string) *dynamic.Middleware {
	b.read(dynamic.Middlewares, name)
	return b.in.Store.Middlewares[name]
}

func (b *builder) service(name string) *dynamic.Service {
	b.read(dynamic.Services, name)
	return b.in.Store.Services[name]
}

func (b *builder) live(ref string) *plugin.Config {
	if b.in.Store == nil {
		b.read(readLive, ref)
	}
	return b.in.Traefik.Live(ref)
}

// local resolves a reference, as etcd holds it (qualified or not), to an
// object of the etcd provider.
func (b *builder) local(ref string) (string, bool) {
	name, provider, qualified := strings.Cut(ref, "@")
	if qualified && provider != b.opts.Provider {
		return "", false
	}
	return name, name != ""
}

// qualify adds the referring router's provider to a reference without one,
// as Traefik resolves it.
func qualify(ref, provider string) string {
	if ref == "" || strings.Contains(ref, "@") {
		return ref
	}
	return ref + "@" + provider
}

// routerSpec is a router's references, from etcd (as written, qualified
// or not: qualifying every one would cost an allocation each) or from
// Traefik (qualified).
type routerSpec struct {
	service     string
	middlewares []string
}

// router builds the targets of one router, named name@provider.
func (b *builder) router(out []Target, name string) []Target {
	local, provider, _ := strings.Cut(name, "@")
	var spec routerSpec
	if b.in.Store != nil {
		if provider != b.opts.Provider {
			return out
		}
		r := b.in.Store.Routers[local]
		if r == nil {
			return out
		}
		b.exists = true
		spec = routerSpec{service: r.Service, middlewares: r.Middlewares}
	} else {
		r, known := b.in.Traefik.Router(name)
		if !known {
			return out
		}
		b.exists = true
		spec = routerSpec{service: r.Service, middlewares: r.Middlewares}
	}

	var sd *plugin.Config
	sdRef := ""
	var id dynamic.AppProxyIdentity
	for _, ref := range spec.middlewares {
		if b.in.Store == nil {
			// Without etcd, the plugin's own report names its middleware.
			if cfg := b.live(ref); cfg != nil && sd == nil {
				sd, sdRef = cfg, ref
			}
			continue
		}
		mwName, ok := b.local(ref)
		if !ok {
			continue
		}
		m := b.middleware(mwName)
		if m == nil {
			continue
		}
		if m.SD != nil && sd == nil {
			sd, sdRef = m.SD, ref // qualified only if Traefik's view is asked
		}
		if m.AppProxy != nil {
			if id.CircuitID == "" {
				id.CircuitID = m.AppProxy.CircuitID
			}
			if len(id.SessionIDs) == 0 {
				id.SessionIDs = m.AppProxy.SessionIDs
			}
			if id.App == "" {
				id.App = m.AppProxy.App
			}
		}
	}
	if sd == nil && !(b.opts.RoutesAll && b.in.Store != nil) {
		return out
	}
	circuitID := id.CircuitID
	if sd != nil {
		circuitID = sd.CircuitID
	}
	if circuitID == "" {
		circuitID = strings.TrimPrefix(local, "bai_router_")
		if circuitID == local {
			return out // not a circuit: nothing says which
		}
	}
	if b.in.Store != nil {
		if svc, ok := b.local(spec.service); ok && b.service(svc) == nil {
			if b.in.Traefik != nil {
				b.notServed = &NotServed{Router: name, CircuitID: circuitID, Reason: ReasonNoRoutes}
			}
			return out
		}
	}
	if !b.served(name, sd, sdRef, circuitID) {
		return out
	}

	sessions := id.SessionIDs
	metricsPath, metricsPort := "/metrics", ""
	var extra []Label
	var routeByURL map[string]plugin.Route
	if sd != nil {
		if len(sd.SessionIDs) > 0 {
			sessions = sd.SessionIDs
		}
		metricsPath = sd.MetricsPath
		if sd.MetricsPort != 0 {
			metricsPort = strconv.Itoa(sd.MetricsPort)
		}
		for k, v := range sd.Labels {
			// Validation refuses these (plugin.Config.Validate, for etcd and
			// pushes alike); a configuration that skipped it still may not
			// override what traefik-sd or Prometheus set (job, instance).
			if plugin.IsReservedLabel(k) || !plugin.IsLabelName(k) {
				continue
			}
			extra = append(extra, Label{k, v})
		}
		routeByURL = make(map[string]plugin.Route, len(sd.Routes))
		for _, rt := range sd.Routes {
			routeByURL[strings.TrimSuffix(rt.URL, "/")] = rt
		}
	}

	var servers []server
	if b.in.Store != nil {
		if svc, ok := b.local(spec.service); ok {
			servers = b.servers(svc, 0, map[string]bool{})
		}
	} else {
		// Without etcd the servers are the middleware's routes or, where
		// it lists none (Backend.AI's middleware carries identity only),
		// those the coordinator gave Traefik for the circuit. Traefik
		// reports their health under the router's service.
		for _, rt := range sd.Routes {
			servers = append(servers, server{service: spec.service, url: rt.URL})
		}
		if len(servers) == 0 && b.in.Routes != nil {
			for _, u := range b.in.Routes.Servers(circuitID) {
				servers = append(servers, server{service: spec.service, url: u})
			}
		}
	}
	lastService := ""
	for _, srv := range servers {
		if b.in.Store == nil && srv.service != lastService {
			b.read(readHealth, srv.service)
			lastService = srv.service
		}
		if b.in.Health != nil && b.in.Health.Down(srv.service, srv.url) {
			continue
		}
		u, err := url.Parse(srv.url)
		if err != nil || u.Hostname() == "" {
			continue
		}
		port := metricsPort
		if port == "" {
			port = serverPort(u)
		}
		sessionID, routeID, endpointID, app := "", "", "", id.App
		if rt, ok := routeByURL[strings.TrimSuffix(srv.url, "/")]; ok {
			sessionID, routeID = rt.SessionID, rt.RouteID
		}
		address := net.JoinHostPort(u.Hostname(), port)
		if b.in.Routes != nil {
			ids, ok := b.in.Routes.Lookup(circuitID, net.JoinHostPort(u.Hostname(), serverPort(u)))
			if !ok && b.in.HoldUnnamed && !b.published(address) {
				continue
			}
			if ok {
				if sessionID == "" {
					sessionID, routeID = ids.SessionID, ids.RouteID
				}
				endpointID = ids.EndpointID
				if app == "" {
					app = ids.App
				}
			}
		}
		if sessionID == "" && len(sessions) == 1 {
			sessionID = sessions[0]
		}
		labels := append([]Label{
			{"service_group", GroupRoute},
			{"circuit_id", circuitID},
			{"session_id", sessionID},
			{"route_id", routeID},
			{"worker_authority", b.opts.WorkerAuthority},
			{"app", app},
			{"endpoint_id", endpointID},
			{"traefik_router", name},
			{"traefik_service", srv.service},
		}, extra...)
		if metricsPath != "/metrics" {
			labels = append(labels, Label{"__metrics_path__", metricsPath})
		}
		if u.Scheme == "https" {
			labels = append(labels, Label{"__scheme__", "https"})
		}
		out = append(out, Target{Address: address, Labels: labels})
	}
	return out
}

// published tells whether the router's last build had a target at address.
func (b *builder) published(address string) bool {
	for _, t := range b.before {
		if t.Address == address {
			return true
		}
	}
	return false
}

// served applies Traefik's view: the router must be one Traefik serves and,
// for a traefik-sd circuit, its middleware must have a live instance. What
// it refuses it records, so that the operator sees why.
func (b *builder) served(name string, sd *plugin.Config, sdRef, circuitID string) bool {
	if b.in.Traefik == nil {
		return true
	}
	r, known := b.in.Traefik.Router(name)
	switch {
	case !known:
		b.notServed = &NotServed{Router: name, CircuitID: circuitID, Reason: ReasonNotLoaded}
	case !r.Served:
		b.notServed = &NotServed{Router: name, CircuitID: circuitID, Reason: ReasonDisabled, Error: r.Error}
	case sd != nil && b.live(qualify(sdRef, b.opts.Provider)) == nil:
		b.notServed = &NotServed{Router: name, CircuitID: circuitID, Reason: ReasonPluginNotLive}
	default:
		return true
	}
	return false
}

type server struct {
	service string // the load-balancer service that holds it, qualified, as Traefik reports health
	url     string
}

// maxDepth bounds service nesting; Traefik refuses cycles, etcd may still hold one.
const maxDepth = 8

func (b *builder) servers(name string, depth int, seen map[string]bool) []server {
	if depth > maxDepth || seen[name] {
		return nil
	}
	svc := b.service(name)
	if svc == nil {
		return nil
	}
	seen[name] = true
	defer delete(seen, name)
	var out []server
	switch {
	case svc.LoadBalancer != nil:
		for _, s := range svc.LoadBalancer.Servers {
			if s.URL != "" {
				out = append(out, server{service: name + "@" + b.opts.Provider, url: s.URL})
			}
		}
	case svc.Weighted != nil:
		for _, w := range svc.Weighted.Services {
			if child, ok := b.local(qualify(w.Name, b.opts.Provider)); ok {
				out = append(out, b.servers(child, depth+1, seen)...)
			}
		}
	case svc.Failover != nil:
		for _, ref := range []string{svc.Failover.Service, svc.Failover.Fallback} {
			if child, ok := b.local(qualify(ref, b.opts.Provider)); ok {
				out = append(out, b.servers(child, depth+1, seen)...)
			}
		}
	case svc.Mirroring != nil:
		if child, ok := b.local(qualify(svc.Mirroring.Service, b.opts.Provider)); ok {
			out = append(out, b.servers(child, depth+1, seen)...)
		}
	}
	return out
}

func serverPort(u *url.URL) string {
	if p := u.Port(); p != "" {
		return p
	}
	if u.Scheme == "https" {
		return "443"
	}
	return "80"
}
