package source

import (
	"slices"
	"sort"
	"strings"
	"time"
)

// RouteIDs are what the coordinator knows of one route.
type RouteIDs struct {
	SessionID  string
	RouteID    string
	EndpointID string
	App        string
}

// RouteTable maps a circuit and a kernel's host:port to its IDs.
type RouteTable struct {
	routes map[string]RouteIDs
	// servers are each circuit's server URLs in route_info order, as the
	// coordinator writes them into Traefik's service.
	servers map[string][]string
	// skipped says, for each route that cannot be joined, which and why.
	skipped []string
}

// Skipped names the routes of the answer that cannot be joined (a null
// kernel_host, a port out of range), each with its circuit and index.
func (t *RouteTable) Skipped() []string {
	if t == nil {
		return nil
	}
	return t.skipped
}

// Lookup returns the IDs of the route of circuitID at hostPort.
func (t *RouteTable) Lookup(circuitID, hostPort string) (RouteIDs, bool) {
	if t == nil {
		return RouteIDs{}, false
	}
	ids, ok := t.routes[circuitID+"\x00"+hostPort]
	return ids, ok
}

// Servers lists the server URLs the coordinator gives Traefik for a circuit
// (Circuit.traefik_services: http://<kernel_host>:<kernel_port>/), in
// route_info order. Without etcd, and with a middleware that lists no
// routes, they are the circuit's servers.
func (t *RouteTable) Servers(circuitID string) []string {
	if t == nil {
		return nil
	}
	return t.servers[circuitID]
}

// Len is the number of routes known.
func (t *RouteTable) Len() int {
	if t == nil {
		return 0
	}
	return len(t.routes)
}

// Equal tells whether two tables say the same.
func (t *RouteTable) Equal(o *RouteTable) bool {
	if t.Len() != o.Len() {
		return false
	}
	if t.Len() == 0 {
		return true
	}
	for k, v := range t.routes {
		if w, ok := o.routes[k]; !ok || w != v {
			return false
		}
	}
	// Without etcd the servers come from here: a kernel that moved, or a
	// second route to the same kernel, is a change even with equal ids.
	if len(t.servers) != len(o.servers) {
		return false
	}
	for id, s := range t.servers {
		if !slices.Equal(s, o.servers[id]) {
			return false
		}
	}
	return true
}

// ChangedCircuits lists the circuits whose routes or servers differ from
// old's (every circuit of either when one is nil), sorted: an answer of the
// coordinator rebuilds those alone.
func (t *RouteTable) ChangedCircuits(old *RouteTable) []string {
	var tr, or map[string]RouteIDs
	var ts, os map[string][]string
	if t != nil {
		tr, ts = t.routes, t.servers
	}
	if old != nil {
		or, os = old.routes, old.servers
	}
	changed := map[string]bool{}
	circuit := func(key string) string { id, _, _ := strings.Cut(key, "\x00"); return id }
	for k, v := range tr {
		if w, ok := or[k]; !ok || w != v {
			changed[circuit(k)] = true
		}
	}
	for k := range or {
		if _, ok := tr[k]; !ok {
			changed[circuit(k)] = true
		}
	}
	for id, s := range ts {
		if !slices.Equal(s, os[id]) {
			changed[id] = true
		}
	}
	for id := range os {
		if _, ok := ts[id]; !ok {
			changed[id] = true
		}
	}
	out := make([]string, 0, len(changed))
	for id := range changed {
		out = append(out, id)
	}
	sort.Strings(out)
	return out
}

// NewRouteTable returns an empty table, to fill with Add, AddServer and Skip.
func NewRouteTable() *RouteTable {
	return &RouteTable{routes: map[string]RouteIDs{}, servers: map[string][]string{}}
}

// Add names the route of circuitID at the kernel's hostPort.
func (t *RouteTable) Add(circuitID, hostPort string, ids RouteIDs) {
	t.routes[circuitID+"\x00"+hostPort] = ids
}

// AddServer appends a server URL the coordinator gives Traefik for circuitID.
func (t *RouteTable) AddServer(circuitID, url string) {
	t.servers[circuitID] = append(t.servers[circuitID], url)
}

// Skip names a route that cannot be joined, and why.
func (t *RouteTable) Skip(why string) { t.skipped = append(t.skipped, why) }

// Routes is one round of asking the coordinator: its table, or why not,
// and when it was asked: an answer asked before an etcd change may not
// know what the change added.
type Routes struct {
	Table *RouteTable
	Err   error
	Asked time.Time
}
