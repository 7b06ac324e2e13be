package engine

import (
	"slices"
	"strings"
	"time"

	"github.com/traefik-sd/traefik-sd/sidecar/source"
	"github.com/traefik-sd/traefik-sd/sidecar/targets"
)

// serviceView is Traefik's services as its API last listed them: without
// etcd, each router's servers.
type serviceView map[string]source.Service

func (v serviceView) Service(name string) (targets.ServiceDef, bool) {
	s, ok := v[name]
	return targets.ServiceDef{Servers: s.Servers, Children: s.Children}, ok
}

// changedDefinitions lists the services whose servers or children differ
// between two listings, or that appeared or went.
func changedDefinitions(old, cur serviceView) []string {
	var out []string
	for name, s := range cur {
		if o, ok := old[name]; !ok || !slices.Equal(o.Servers, s.Servers) || !slices.Equal(o.Children, s.Children) {
			out = append(out, name)
		}
	}
	for name := range old {
		if _, ok := cur[name]; !ok {
			out = append(out, name)
		}
	}
	return out
}

// apiHealth is server health from the services' serverStatus, for a
// Traefik whose /metrics the sidecar does not read (OTLP only, say).
// Traefik shows every server of a rebuilt service UP until its next health
// check, so after any reload a server that is down reads UP for up to one
// interval: a server once DOWN is believed up again only after it has read
// UP for two intervals, long enough for a check to have run and its
// answer to have been listed. A server never seen DOWN is up.
type apiHealth struct {
	servers map[string]map[string]*serverHealth // service -> server URL
}

type serverHealth struct {
	down    bool
	upSince time.Time // first UP read since it was down
}

func newAPIHealth() *apiHealth { return &apiHealth{servers: map[string]map[string]*serverHealth{}} }

// Down implements targets.Health.
func (h *apiHealth) Down(service, serverURL string) bool {
	s := h.servers[service][serverURL]
	return s != nil && s.down
}

// apply reads a listing taken at at; it returns the services whose down
// servers changed.
func (h *apiHealth) apply(services []source.Service, at time.Time) []string {
	var changed []string
	seen := make(map[string]bool, len(services))
	for _, svc := range services {
		seen[svc.Name] = true
		known := h.servers[svc.Name]
		moved := false
		next := make(map[string]*serverHealth, len(svc.Status))
		for url, st := range svc.Status {
			s := known[url]
			if s == nil {
				s = &serverHealth{}
			}
			switch {
			case st == source.ServerDown:
				moved = moved || !s.down
				s.down, s.upSince = true, time.Time{}
			case s.down && s.upSince.IsZero():
				s.upSince = at
			case s.down && at.Sub(s.upSince) >= 2*svc.HealthInterval:
				s.down, s.upSince, moved = false, time.Time{}, true
			}
			next[url] = s
		}
		for url, s := range known {
			if _, ok := next[url]; !ok && s.down {
				moved = true // it left the service, down
			}
		}
		if len(next) == 0 {
			delete(h.servers, svc.Name)
		} else {
			h.servers[svc.Name] = next
		}
		if moved {
			changed = append(changed, svc.Name)
		}
	}
	for name, servers := range h.servers {
		if seen[name] {
			continue
		}
		delete(h.servers, name)
		for _, s := range servers {
			if s.down {
				changed = append(changed, name)
				break
			}
		}
	}
	return changed
}

// Services applies a listing of Traefik's services: without etcd, the
// routers' servers; without /metrics, their health. A failed listing
// changes nothing: the last one stands.
func (e *Engine) Services(l source.Services) Result {
	if l.Err != nil {
		return Result{}
	}
	e.servicesListed = true
	var changed []string
	if !l.Same {
		// TCP routers and services are keyed apart from HTTP ones.
		all := make([]source.Service, 0, len(l.Services)+len(l.TCPServices))
		all = append(all, l.Services...)
		for _, s := range l.TCPServices {
			s.Name = targets.TCPKey(s.Name)
			all = append(all, s)
		}
		cur := make(serviceView, len(all))
		for _, s := range all {
			cur[s.Name] = s
		}
		if !e.opts.Etcd {
			changed = changedDefinitions(e.serviceView, cur)
		}
		e.serviceView, e.listing = cur, all
		if names := e.traefik.tcpRoutersChanged(l.TCPRouters); len(names) > 0 {
			e.update(targets.Changes{Routers: names})
		}
	}
	if e.apiHealth != nil {
		// Also on a listing that did not change: a server that read UP
		// long enough is believed up now.
		changed = append(changed, e.apiHealth.apply(e.listing, l.At)...)
	}
	if len(changed) > 0 {
		e.update(targets.Changes{Services: changed})
	}
	return Result{Changed: e.changed}
}

// tcpRoutersChanged replaces the TCP routers with a listing of them and
// returns those whose state changed (keyed targets.TCPKey).
func (v *traefikView) tcpRoutersChanged(routers []source.Router) []string {
	u := source.Routers{Sweep: true}
	for _, r := range routers {
		r.Name = targets.TCPKey(r.Name)
		u.Routers = append(u.Routers, r)
	}
	return v.routersChanged(u, func(name string) bool { return strings.HasPrefix(name, targets.TCPKey("")) })
}
