package source

import (
	"slices"
	"sort"
	"time"
)

// RouteIDs are what the coordinator knows of one route.
type RouteIDs struct {
	SessionID  string
	RouteID    string
	EndpointID string
	App        string
}

// RouteTable maps a circuit and a kernel's host:port to its IDs. It is kept
// by circuit, so that an answer about a few circuits replaces their part
// alone (Patch) instead of the coordinator listing every circuit again.
type RouteTable struct {
	circuits map[string]*circuitRoutes
	n        int // routes, over every circuit
	// skipped says, for each route that cannot be joined, which and why.
	skipped []string
}

// circuitRoutes is one circuit's part: a handful of routes, searched in
// order (cheaper than a map per circuit at 100,000 circuits).
type circuitRoutes struct {
	routes []route
	// servers are the circuit's server URLs in route_info order, as the
	// coordinator writes them into Traefik's service.
	servers []string
}

type route struct {
	hostPort string
	ids      RouteIDs
}

func (c *circuitRoutes) lookup(hostPort string) (RouteIDs, bool) {
	if c == nil {
		return RouteIDs{}, false
	}
	for _, r := range c.routes {
		if r.hostPort == hostPort {
			return r.ids, true
		}
	}
	return RouteIDs{}, false
}

func (c *circuitRoutes) equal(o *circuitRoutes) bool {
	if c == nil || o == nil {
		return c == o
	}
	if len(c.routes) != len(o.routes) || !slices.Equal(c.servers, o.servers) {
		return false
	}
	for _, r := range c.routes {
		if ids, ok := o.lookup(r.hostPort); !ok || ids != r.ids {
			return false
		}
	}
	return true
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
	return t.circuits[circuitID].lookup(hostPort)
}

// Servers lists the server URLs the coordinator gives Traefik for a circuit
// (Circuit.traefik_services: http://<kernel_host>:<kernel_port>/), in
// route_info order. Without etcd, and with a middleware that lists no
// routes, they are the circuit's servers.
func (t *RouteTable) Servers(circuitID string) []string {
	if t == nil {
		return nil
	}
	if c := t.circuits[circuitID]; c != nil {
		return c.servers
	}
	return nil
}

// Len is the number of routes known.
func (t *RouteTable) Len() int {
	if t == nil {
		return 0
	}
	return t.n
}

func (t *RouteTable) circuit(id string) *circuitRoutes {
	if t == nil {
		return nil
	}
	return t.circuits[id]
}

// Equal tells whether two tables say the same.
func (t *RouteTable) Equal(o *RouteTable) bool {
	if t.Len() != o.Len() {
		return false
	}
	// Without etcd the servers come from here: a kernel that moved, or a
	// second route to the same kernel, is a change even with equal ids.
	return len(t.ChangedCircuits(o)) == 0
}

func (t *RouteTable) circuitsOrNil() map[string]*circuitRoutes {
	if t == nil {
		return nil
	}
	return t.circuits
}

// ChangedCircuits lists the circuits whose routes or servers differ from
// old's (every circuit of either when one is nil), sorted: an answer of the
// coordinator rebuilds those alone.
func (t *RouteTable) ChangedCircuits(old *RouteTable) []string {
	var out []string
	for id, c := range t.circuitsOrNil() {
		if !c.equal(old.circuit(id)) {
			out = append(out, id)
		}
	}
	for id := range old.circuitsOrNil() {
		if t.circuit(id) == nil {
			out = append(out, id)
		}
	}
	sort.Strings(out)
	return out
}

// Patch replaces the part of each of circuits with part's (none when part
// does not name it: the coordinator no longer has it) and returns those
// that changed, sorted. The table is changed in place: its owner asked.
func (t *RouteTable) Patch(part *RouteTable, circuits []string) []string {
	var changed []string
	for _, id := range circuits {
		old, c := t.circuits[id], part.circuit(id)
		if old.equal(c) {
			continue
		}
		changed = append(changed, id)
		if old != nil {
			t.n -= len(old.routes)
			delete(t.circuits, id)
		}
		if c != nil {
			t.n += len(c.routes)
			t.circuits[id] = c
		}
	}
	sort.Strings(changed)
	return slices.Compact(changed)
}

// NewRouteTable returns an empty table, to fill with Add, AddServer and Skip.
func NewRouteTable() *RouteTable {
	return &RouteTable{circuits: map[string]*circuitRoutes{}}
}

func (t *RouteTable) own(circuitID string) *circuitRoutes {
	c := t.circuits[circuitID]
	if c == nil {
		c = &circuitRoutes{}
		t.circuits[circuitID] = c
	}
	return c
}

// Add names the route of circuitID at the kernel's hostPort.
func (t *RouteTable) Add(circuitID, hostPort string, ids RouteIDs) {
	c := t.own(circuitID)
	for i, r := range c.routes {
		if r.hostPort == hostPort {
			c.routes[i].ids = ids
			return
		}
	}
	c.routes = append(c.routes, route{hostPort, ids})
	t.n++
}

// AddServer appends a server URL the coordinator gives Traefik for circuitID.
func (t *RouteTable) AddServer(circuitID, url string) {
	c := t.own(circuitID)
	c.servers = append(c.servers, url)
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
	// Circuits, when set, are the circuits asked about one by one: Table
	// is their part alone (a circuit it does not name is gone). Unset, the
	// answer is the whole list.
	Circuits []string
}
