// Package targets combines the decoded configuration and Traefik's server
// health into the set of Prometheus targets, sorted so that the same inputs
// always give the same set.
package targets

import (
	"cmp"
	"net"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/traefik-sd/traefik-sd/plugin"
	"github.com/traefik-sd/traefik-sd/sidecar/dynamic"
	"github.com/traefik-sd/traefik-sd/sidecar/serverurl"
	"github.com/traefik-sd/traefik-sd/sidecar/source"
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
	// KeepDown publishes a server Traefik reports down too, with
	// __meta_traefik_server_health="down", for users who would rather see
	// up == 0 than a target that vanished.
	KeepDown bool
	// NoMeta leaves the __meta_traefik_* labels out: they make each
	// target's JSON half as large again, which a large worker that does not
	// relabel with them need not pay.
	NoMeta bool
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
	Lookup(circuitID, hostPort string) (source.RouteIDs, bool)
	// Servers are the server URLs the coordinator gave Traefik for a
	// circuit: without etcd, the servers of a middleware that lists none.
	Servers(circuitID string) []string
}

// Traefik is what this node's Traefik itself says it runs: the traefik-sd
// middlewares its plugin reports live, and each router's status from its
// API. Names are qualified (name@provider).
type Traefik interface {
	// Live is the configuration of a traefik-sd middleware with a live
	// instance in Traefik, or nil. It may be held elsewhere too (the
	// store's): read it, never write to it.
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
	// Rule and EntryPoints name its hosts and entry points
	// (__meta_traefik_* labels).
	Rule        string
	EntryPoints []string
}

// Services are Traefik's services as its API lists them, by qualified
// name: without etcd, they hold each router's servers.
type Services interface {
	Service(name string) (ServiceDef, bool)
}

// ServiceDef is a service's servers (URLs, as configured) or the services
// it sends to (qualified).
type ServiceDef struct {
	Servers  []string
	Children []string
}

// Inputs are the sources a target set is built from. A large change builds
// routers on several goroutines at once: nothing may change the inputs
// while Update runs, and reading them must write nothing (Traefik.Routers,
// which may cache its list, is called before the routers are built).
type Inputs struct {
	// Store is the configuration decoded from etcd; nil when the sidecar
	// runs without etcd, and then routers come from Traefik and servers
	// from the middleware's routes or the coordinator's route_info.
	Store *dynamic.Store
	// Traefik gates publication: a circuit is published only while
	// Traefik serves its router and, for a traefik-sd circuit, runs its
	// middleware. Nil publishes what etcd holds, ungated.
	Traefik Traefik
	// Services hold each router's servers when Store is nil.
	Services Services
	Health   Health
	Routes   RouteInfo
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
		// slices', not sort.Slice, which allocates twice a call, for
		// every router built; the same algorithm, so the same order.
		slices.SortFunc(ls, func(a, b Label) int { return strings.Compare(a.Name, b.Name) })
		ts[i].Labels = ls
	}
	slices.SortFunc(ts, compareTargets)
	out := ts[:0]
	for i, t := range ts {
		if i > 0 && compareTargets(ts[i-1], t) == 0 {
			continue
		}
		out = append(out, t)
	}
	return out
}

func compareTargets(a, b Target) int {
	if c := strings.Compare(a.Label("service_group"), b.Label("service_group")); c != 0 {
		return c
	}
	if c := strings.Compare(a.Address, b.Address); c != 0 {
		return c
	}
	for i := 0; i < len(a.Labels) && i < len(b.Labels); i++ {
		if c := strings.Compare(a.Labels[i].Name, b.Labels[i].Name); c != 0 {
			return c
		}
		if c := strings.Compare(a.Labels[i].Value, b.Labels[i].Value); c != 0 {
			return c
		}
	}
	return cmp.Compare(len(a.Labels), len(b.Labels))
}

// builder builds one router's targets and records every input it read
// (found or not), so that a change to any of them rebuilds the router.
type builder struct {
	opts      Options
	in        Inputs
	reads     []dynamic.ObjectID
	notServed *NotServed
	// before are the router's targets as last built, for HoldUnnamed.
	before []storedTarget
	// exists is set once the router is found in its definitions; held,
	// once a server was left out waiting for the coordinator.
	exists bool
	held   bool
	defs   definitions
}

func (b *builder) read(kind dynamic.Kind, name string) {
	b.reads = append(b.reads, dynamic.ObjectID{Kind: kind, Name: name})
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

// routerSpec is a router as its definitions hold it: its references, as
// written (etcd, qualified or not: qualifying every one would cost an
// allocation each) or qualified (Traefik's API), and what the
// __meta_traefik_* labels name.
type routerSpec struct {
	tcp         bool
	service     string
	middlewares []string
	rule        string
	entryPoints []string
}

// identity is what a router's middlewares say about it: the traefik-sd
// middleware's configuration (and its reference), and the ids Backend.AI's
// own middlewares carry.
type identity struct {
	sd    *plugin.Config
	sdRef string
	id    dynamic.AppProxyIdentity
}

// router builds the targets of one router, named name@provider.
func (b *builder) router(out []Target, name string) []Target {
	spec, ok := b.defs.router(b, name)
	if !ok {
		return out
	}
	b.exists = true
	who := b.defs.identity(b, spec)
	sd := who.sd
	if sd == nil && !b.opts.RoutesAll {
		return out
	}
	circuitID := who.id.CircuitID
	if sd != nil && sd.CircuitID != "" {
		circuitID = sd.CircuitID
	}
	if circuitID == "" {
		// Backend.AI names a circuit's router bai_router_<circuit id>; any
		// other router is published without one.
		local, _, _ := strings.Cut(strings.TrimPrefix(name, tcpPrefix), "@")
		if id, ok := strings.CutPrefix(local, "bai_router_"); ok {
			circuitID = id
		}
	}
	if b.in.Routes != nil && circuitID != "" {
		b.read(readRoutes, circuitID)
	}
	servers, hasService := b.defs.servers(b, spec, sd, circuitID)
	if !hasService {
		if b.in.Traefik != nil {
			b.notServed = &NotServed{Router: name, CircuitID: circuitID, Reason: ReasonNoRoutes}
		}
		return out
	}
	if !b.served(name, sd, who.sdRef, circuitID) {
		return out
	}

	sessions := who.id.SessionIDs
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
	var meta []Label
	if !b.opts.NoMeta {
		meta = routerMeta(name, spec)
	}
	for _, srv := range servers {
		down := b.in.Health != nil && b.in.Health.Down(srv.healthKey(), srv.url)
		if down && !b.opts.KeepDown {
			continue
		}
		host, ownPort, scheme, ok := srv.endpoint()
		if !ok {
			continue
		}
		port := metricsPort
		if port == "" {
			port = ownPort
		}
		sessionID, routeID, endpointID, app := "", "", "", who.id.App
		if rt, ok := routeByURL[strings.TrimSuffix(srv.url, "/")]; ok {
			sessionID, routeID = rt.SessionID, rt.RouteID
		}
		address := net.JoinHostPort(host, port)
		if b.in.Routes != nil && circuitID != "" {
			ids, ok := b.in.Routes.Lookup(circuitID, net.JoinHostPort(host, ownPort))
			if !ok && b.in.HoldUnnamed && !b.published(address) {
				b.held = true
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
		health := "up"
		if down {
			health = "down"
		}
		// Gathered on the stack, then copied without the empty ones
		// (Prometheus treats an empty label as absent); the Builder keeps
		// only their values (storedTarget).
		var buf [24]Label
		all := append(buf[:0],
			Label{"service_group", GroupRoute},
			Label{"circuit_id", circuitID},
			Label{"session_id", sessionID},
			Label{"route_id", routeID},
			Label{"worker_authority", b.opts.WorkerAuthority},
			Label{"app", app},
			Label{"endpoint_id", endpointID},
			Label{"traefik_router", strings.TrimPrefix(name, tcpPrefix)},
			Label{"traefik_service", srv.service},
		)
		serverLabel := "__meta_traefik_server_url"
		if spec.tcp {
			serverLabel = "__meta_traefik_server_address"
		}
		if !b.opts.NoMeta {
			all = append(all, meta...)
			all = append(all, Label{serverLabel, srv.url})
		}
		if b.opts.KeepDown {
			// Without it every server published is up: the label would say nothing.
			all = append(all, Label{"__meta_traefik_server_health", health})
		}
		all = append(all, extra...)
		if metricsPath != "/metrics" {
			all = append(all, Label{"__metrics_path__", metricsPath})
		}
		if scheme == "https" {
			all = append(all, Label{"__scheme__", "https"})
		}
		out = append(out, Target{Address: address, Labels: nonEmpty(all)})
	}
	return out
}

// nonEmpty copies the labels that have a value.
func nonEmpty(ls []Label) []Label {
	n := 0
	for _, l := range ls {
		if l.Value != "" {
			n++
		}
	}
	out := make([]Label, 0, n)
	for _, l := range ls {
		if l.Value != "" {
			out = append(out, l)
		}
	}
	return out
}

// routerMeta are the router's __meta_traefik_* labels, shared by its
// targets: what its traefik_router and traefik_service labels do not
// already say (each label is repeated in every target of the body, so a
// duplicate of one would only add its bytes). Lists follow Prometheus's
// convention (",a,b,"), so that a relabelling regex can match one element
// with ".*,a,.*".
func routerMeta(name string, spec routerSpec) []Label {
	_, provider, _ := strings.Cut(name, "@")
	protocol := "http"
	if spec.tcp {
		protocol = "tcp"
	}
	return []Label{
		{"__meta_traefik_router_protocol", protocol},
		{"__meta_traefik_router_provider", provider},
		{"__meta_traefik_router_entrypoints", promList(spec.entryPoints)},
		{"__meta_traefik_router_rule_hosts", promList(RuleHosts(spec.rule))},
	}
}

func promList(items []string) string {
	if len(items) == 0 {
		return ""
	}
	return "," + strings.Join(items, ",") + ","
}

// RuleHosts lists the hosts a router's rule names in Host(...) matchers,
// in order, each once: Host(`a`) || Host(`b`, `c`). HostRegexp and HostSNI
// are not hosts.
func RuleHosts(rule string) []string {
	var hosts []string
	for rest := rule; ; {
		i := strings.Index(rest, "Host(")
		if i < 0 {
			return hosts
		}
		// HostHeader(, HostRegexp( and HostSNI( do not match "Host(";
		// a longer matcher name ending in Host( (say "XHost(") is not one.
		prefixed := i > 0 && isNameByte(rest[i-1])
		rest = rest[i+len("Host("):]
		end := strings.IndexByte(rest, ')')
		if end < 0 {
			return hosts
		}
		if !prefixed {
			for _, arg := range strings.Split(rest[:end], ",") {
				h := strings.Trim(strings.TrimSpace(arg), "`\"'")
				if h != "" && !slices.Contains(hosts, h) {
					hosts = append(hosts, h)
				}
			}
		}
		rest = rest[end+1:]
	}
}

func isNameByte(c byte) bool {
	return c == '_' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')
}

// published tells whether the router's last build had a target at address.
func (b *builder) published(address string) bool {
	for _, t := range b.before {
		if t.address == address {
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
	case sd != nil && b.defs.live(b, qualify(sdRef, b.opts.Provider)) == nil:
		b.notServed = &NotServed{Router: name, CircuitID: circuitID, Reason: ReasonPluginNotLive}
	default:
		return true
	}
	return false
}

type server struct {
	service string // the load-balancer service that holds it, qualified, as Traefik reports health
	url     string // an HTTP server's URL, or a TCP server's address
	tcp     bool
}

// tcpPrefix keys TCP routers and services apart from HTTP ones of the same
// name, wherever both meet: the builder's routers, Traefik's view, health.
const tcpPrefix = "tcp:"

// TCPKey is how a TCP router or service is keyed among HTTP ones.
func TCPKey(name string) string { return tcpPrefix + name }

// healthKey is the service whose health names this server.
func (s server) healthKey() string {
	if s.tcp {
		return tcpPrefix + s.service
	}
	return s.service
}

// endpoint is the server's host and port, and its scheme (HTTP).
func (s server) endpoint() (host, port, scheme string, ok bool) {
	if s.tcp {
		host, port, err := net.SplitHostPort(s.url)
		return host, port, "", err == nil && host != "" && port != ""
	}
	if scheme, host, port, ok := serverurl.Plain(s.url); ok {
		if port == "" {
			port = defaultPort(scheme)
		}
		return host, port, scheme, true
	}
	u, err := url.Parse(s.url)
	if err != nil || u.Hostname() == "" {
		return "", "", "", false
	}
	return u.Hostname(), serverPort(u), u.Scheme, true
}

// maxDepth bounds service nesting; Traefik refuses cycles, etcd may still hold one.
const maxDepth = 8

func serverPort(u *url.URL) string {
	if p := u.Port(); p != "" {
		return p
	}
	return defaultPort(u.Scheme)
}

func defaultPort(scheme string) string {
	if scheme == "https" {
		return "443"
	}
	return "80"
}
