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
}

// Build returns every target: the route targets by router name, then
// address and labels, then the static ones by group. It is a Builder's
// first, full build.
func Build(opts Options, store *dynamic.Store, health Health, routes RouteInfo) []Target {
	b := NewBuilder(opts)
	b.Update(store, health, routes, Changes{All: true})
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

// builder builds one router's targets and records every object it read
// (found or not), so that a change to any of them rebuilds the router.
type builder struct {
	opts   Options
	store  *dynamic.Store
	health Health
	routes RouteInfo
	reads  []dynamic.ObjectID
}

func (b *builder) middleware(name string) *dynamic.Middleware {
	b.reads = append(b.reads, dynamic.ObjectID{Kind: dynamic.Middlewares, Name: name})
	return b.store.Middlewares[name]
}

func (b *builder) service(name string) *dynamic.Service {
	b.reads = append(b.reads, dynamic.ObjectID{Kind: dynamic.Services, Name: name})
	return b.store.Services[name]
}

// local resolves a reference to an object of the etcd provider.
func (b *builder) local(ref string) (string, bool) {
	name, provider, qualified := strings.Cut(ref, "@")
	if qualified && provider != b.opts.Provider {
		return "", false
	}
	return name, name != ""
}

func (b *builder) router(out []Target, routerName string, r *dynamic.Router) []Target {
	var sd *plugin.Config
	var id dynamic.AppProxyIdentity
	for _, ref := range r.Middlewares {
		name, ok := b.local(ref)
		if !ok {
			continue
		}
		m := b.middleware(name)
		if m == nil {
			continue
		}
		if m.SD != nil && sd == nil {
			sd = m.SD
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
	if sd == nil && !b.opts.RoutesAll {
		return out
	}
	serviceName, ok := b.local(r.Service)
	if !ok {
		return out
	}
	circuitID := id.CircuitID
	sessions := id.SessionIDs
	metricsPath, metricsPort := "/metrics", ""
	var extra []Label
	var routeByURL map[string]plugin.Route
	if sd != nil {
		circuitID = sd.CircuitID
		if len(sd.SessionIDs) > 0 {
			sessions = sd.SessionIDs
		}
		metricsPath = sd.MetricsPath
		if sd.MetricsPort != 0 {
			metricsPort = strconv.Itoa(sd.MetricsPort)
		}
		for k, v := range sd.Labels {
			extra = append(extra, Label{k, v})
		}
		routeByURL = make(map[string]plugin.Route, len(sd.Routes))
		for _, rt := range sd.Routes {
			routeByURL[strings.TrimSuffix(rt.URL, "/")] = rt
		}
	}
	if circuitID == "" {
		circuitID = strings.TrimPrefix(routerName, "bai_router_")
		if circuitID == routerName {
			return out // not a circuit: nothing says which
		}
	}

	for _, srv := range b.servers(serviceName, 0, map[string]bool{}) {
		if b.health != nil && b.health.Down(srv.service+"@"+b.opts.Provider, srv.url) {
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
		if b.routes != nil {
			if ids, ok := b.routes.Lookup(circuitID, net.JoinHostPort(u.Hostname(), serverPort(u))); ok {
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
		scheme := ""
		if u.Scheme == "https" {
			scheme = "https"
		}
		labels := append([]Label{
			{"service_group", GroupRoute},
			{"circuit_id", circuitID},
			{"session_id", sessionID},
			{"route_id", routeID},
			{"worker_authority", b.opts.WorkerAuthority},
			{"app", app},
			{"endpoint_id", endpointID},
			{"traefik_router", routerName + "@" + b.opts.Provider},
			{"traefik_service", srv.service + "@" + b.opts.Provider},
		}, extra...)
		if metricsPath != "/metrics" {
			labels = append(labels, Label{"__metrics_path__", metricsPath})
		}
		if scheme != "" {
			labels = append(labels, Label{"__scheme__", scheme})
		}
		out = append(out, Target{Address: net.JoinHostPort(u.Hostname(), port), Labels: labels})
	}
	return out
}

type server struct {
	service string // the load-balancer service that holds it, as Traefik reports health
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
				out = append(out, server{service: name, url: s.URL})
			}
		}
	case svc.Weighted != nil:
		for _, w := range svc.Weighted.Services {
			if child, ok := b.local(w.Name); ok {
				out = append(out, b.servers(child, depth+1, seen)...)
			}
		}
	case svc.Failover != nil:
		for _, ref := range []string{svc.Failover.Service, svc.Failover.Fallback} {
			if child, ok := b.local(ref); ok {
				out = append(out, b.servers(child, depth+1, seen)...)
			}
		}
	case svc.Mirroring != nil:
		if child, ok := b.local(svc.Mirroring.Service); ok {
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
