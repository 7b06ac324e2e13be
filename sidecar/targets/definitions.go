package targets

import (
	"strings"

	"github.com/traefik-sd/traefik-sd/plugin"
	"github.com/traefik-sd/traefik-sd/sidecar/dynamic"
)

// definitions say what each router is: its service, its middlewares and
// its servers. etcd's decoded configuration says it where the sidecar reads
// etcd; otherwise Traefik's own API does, whatever its provider. Each
// records what it read (builder.read), so that a change to any of it
// rebuilds the router.
type definitions interface {
	// routers lists every router, qualified, for a full build.
	routers() []string
	router(b *builder, name string) (routerSpec, bool)
	identity(b *builder, spec routerSpec) identity
	// servers lists the servers the router sends to; hasService is false
	// when its service does not exist (a circuit with no routes yet).
	servers(b *builder, spec routerSpec, sd *plugin.Config, circuitID string) (servers []server, hasService bool)
	// input is the input a source's change names, as routers read it: a
	// service's health or a middleware's live instance (qualified).
	input(kind dynamic.Kind, ref string) dynamic.ObjectID
	// live is the traefik-sd middleware's configuration where Traefik runs it.
	live(b *builder, ref string) *plugin.Config
}

func definitionsOf(opts Options, in Inputs) definitions {
	if in.Store != nil {
		return etcdDefinitions{store: in.Store, provider: opts.Provider}
	}
	return apiDefinitions{in: in}
}

// Kinds of inputs beside etcd's objects, for the reverse index. With etcd
// none is recorded: a live middleware or a service's health is found through
// the etcd object of the same name, which the router already read, and a
// router's own changes rebuild it by name. Each entry costs a map per router,
// which at 200,000 targets is megabytes.
const (
	readLive    = dynamic.OtherKinds + iota // without etcd: a middleware's live instance, by qualified name
	readService                             // without etcd: a service and its servers' health, by qualified name
	// readRoutes: the coordinator's routes of a circuit, by circuit id, so
	// that its answer rebuilds the circuits it changed and not every one.
	readRoutes
)

// etcdDefinitions are the routers, services and middlewares etcd holds for
// the provider named (Traefik's etcd provider); a reference to another
// provider's object resolves to nothing.
type etcdDefinitions struct {
	store    *dynamic.Store
	provider string
}

func (d etcdDefinitions) routers() []string {
	out := make([]string, 0, len(d.store.Routers)+len(d.store.TCPRouters))
	for name := range d.store.Routers {
		out = append(out, name+"@"+d.provider)
	}
	for name := range d.store.TCPRouters {
		out = append(out, tcpPrefix+name+"@"+d.provider)
	}
	return out
}

func (d etcdDefinitions) router(b *builder, name string) (routerSpec, bool) {
	routers := d.store.Routers
	name, tcp := strings.CutPrefix(name, tcpPrefix)
	if tcp {
		routers = d.store.TCPRouters
	}
	local, provider, _ := strings.Cut(name, "@")
	if provider != d.provider {
		return routerSpec{}, false
	}
	r := routers[local]
	if r == nil {
		return routerSpec{}, false
	}
	return routerSpec{tcp: tcp, service: r.Service, middlewares: r.Middlewares, rule: r.Rule, entryPoints: r.EntryPoints}, true
}

func (d etcdDefinitions) identity(b *builder, spec routerSpec) identity {
	var who identity
	for _, ref := range spec.middlewares {
		name, ok := b.local(ref)
		if !ok {
			continue
		}
		b.read(dynamic.Middlewares, name)
		m := d.store.Middlewares[name]
		if m == nil {
			continue
		}
		if m.SD != nil && who.sd == nil {
			who.sd, who.sdRef = m.SD, ref // qualified only if Traefik's view is asked
		}
		if m.AppProxy != nil {
			if who.id.CircuitID == "" {
				who.id.CircuitID = m.AppProxy.CircuitID
			}
			if len(who.id.SessionIDs) == 0 {
				who.id.SessionIDs = m.AppProxy.SessionIDs
			}
			if who.id.App == "" {
				who.id.App = m.AppProxy.App
			}
		}
	}
	return who
}

func (d etcdDefinitions) servers(b *builder, spec routerSpec, _ *plugin.Config, _ string) ([]server, bool) {
	name, ok := b.local(spec.service)
	if !ok {
		return nil, true // another provider's: nothing etcd says
	}
	if d.service(b, name, spec.tcp) == nil {
		return nil, false
	}
	return d.collect(b, name, spec.tcp, 0, map[string]bool{}), true
}

func (d etcdDefinitions) service(b *builder, name string, tcp bool) *dynamic.Service {
	if tcp {
		b.read(dynamic.TCPServices, name)
		return d.store.TCPServices[name]
	}
	b.read(dynamic.Services, name)
	return d.store.Services[name]
}

func (d etcdDefinitions) collect(b *builder, name string, tcp bool, depth int, seen map[string]bool) []server {
	if depth > maxDepth || seen[name] {
		return nil
	}
	svc := d.service(b, name, tcp)
	if svc == nil {
		return nil
	}
	seen[name] = true
	defer delete(seen, name)
	var out []server
	child := func(ref string) {
		if c, ok := b.local(qualify(ref, d.provider)); ok {
			out = append(out, d.collect(b, c, tcp, depth+1, seen)...)
		}
	}
	switch {
	case svc.LoadBalancer != nil:
		// One string for the service's servers: every target keeps it.
		qualified := name + "@" + d.provider
		for _, s := range svc.LoadBalancer.Servers {
			if u := s.URL; u != "" && !tcp {
				out = append(out, server{service: qualified, url: u})
			} else if a := s.Address; a != "" && tcp {
				out = append(out, server{service: qualified, url: a, tcp: true})
			}
		}
	case svc.Weighted != nil:
		for _, w := range svc.Weighted.Services {
			child(w.Name)
		}
	case svc.Failover != nil:
		child(svc.Failover.Service)
		child(svc.Failover.Fallback)
	case svc.Mirroring != nil:
		child(svc.Mirroring.Service)
	}
	return out
}

func (d etcdDefinitions) input(kind dynamic.Kind, ref string) dynamic.ObjectID {
	if r, tcp := strings.CutPrefix(ref, tcpPrefix); tcp && kind == dynamic.Services {
		kind, ref = dynamic.TCPServices, r
	}
	if name, provider, _ := strings.Cut(ref, "@"); provider == d.provider {
		return dynamic.ObjectID{Kind: kind, Name: name}
	}
	// Another provider's object: no etcd router reads it.
	return dynamic.ObjectID{Kind: kind, Name: ref}
}

// apiDefinitions are what Traefik's API reports, for any provider: its
// routers, the services it lists, and the traefik-sd middlewares its plugin
// reports live (the API names a router's middlewares, not their plugin).
type apiDefinitions struct {
	in Inputs
}

func (d apiDefinitions) routers() []string {
	if d.in.Traefik == nil {
		return nil
	}
	return d.in.Traefik.Routers()
}

func (d apiDefinitions) router(b *builder, name string) (routerSpec, bool) {
	r, known := d.in.Traefik.Router(name)
	if !known {
		return routerSpec{}, false
	}
	return routerSpec{tcp: strings.HasPrefix(name, tcpPrefix), service: r.Service, middlewares: r.Middlewares,
		rule: r.Rule, entryPoints: r.EntryPoints}, true
}

func (d apiDefinitions) identity(b *builder, spec routerSpec) identity {
	var who identity
	for _, ref := range spec.middlewares {
		if cfg := d.live(b, ref); cfg != nil && who.sd == nil {
			who.sd, who.sdRef = cfg, ref
		}
	}
	return who
}

// servers are those of the router's service as Traefik's API lists it,
// weighted, failover and mirroring services resolved as with etcd. Until
// the service is listed, the middleware's routes or, where it names none
// (Backend.AI's middleware carries identity only), those the coordinator
// gave Traefik for the circuit stand in.
func (d apiDefinitions) servers(b *builder, spec routerSpec, sd *plugin.Config, circuitID string) ([]server, bool) {
	if spec.tcp {
		if d.in.Services == nil {
			return nil, true
		}
		return d.collect(b, spec.service, true, 0, map[string]bool{}), true
	}
	b.read(readService, spec.service)
	if d.in.Services != nil {
		if _, listed := d.in.Services.Service(spec.service); listed {
			return d.collect(b, spec.service, false, 0, map[string]bool{}), true
		}
	}
	var out []server
	if sd != nil {
		for _, rt := range sd.Routes {
			out = append(out, server{service: spec.service, url: rt.URL})
		}
	}
	if len(out) == 0 && d.in.Routes != nil && circuitID != "" {
		for _, u := range d.in.Routes.Servers(circuitID) {
			out = append(out, server{service: spec.service, url: u})
		}
	}
	return out, true
}

func (d apiDefinitions) collect(b *builder, name string, tcp bool, depth int, seen map[string]bool) []server {
	if depth > maxDepth || seen[name] {
		return nil
	}
	key := name
	if tcp {
		key = tcpPrefix + name
	}
	b.read(readService, key)
	svc, ok := d.in.Services.Service(key)
	if !ok {
		return nil
	}
	seen[name] = true
	defer delete(seen, name)
	out := make([]server, 0, len(svc.Servers))
	for _, u := range svc.Servers {
		out = append(out, server{service: name, url: u, tcp: tcp})
	}
	for _, c := range svc.Children {
		out = append(out, d.collect(b, c, tcp, depth+1, seen)...)
	}
	return out
}

func (d apiDefinitions) input(kind dynamic.Kind, ref string) dynamic.ObjectID {
	if kind == dynamic.Middlewares {
		return dynamic.ObjectID{Kind: readLive, Name: ref}
	}
	return dynamic.ObjectID{Kind: readService, Name: ref}
}

func (d etcdDefinitions) live(b *builder, ref string) *plugin.Config {
	return b.in.Traefik.Live(ref) // found through the etcd middleware the router read
}

func (d apiDefinitions) live(b *builder, ref string) *plugin.Config {
	b.read(readLive, ref)
	return b.in.Traefik.Live(ref)
}
