// Package engine combines what the sources report into the target set. It
// does no I/O, calls no source and keeps no clock of its own: every input is
// a message of package source (an etcd batch, the plugin's pushes, a scrape
// of Traefik's /metrics, Traefik's routers and services, the coordinator's
// route table), every time is passed in, and what it wants asked goes out in
// its Result, so that each rule is tested with values alone.
//
// The rules, in the order they apply:
//   - etcd says what a circuit is: its router, service, servers and ids.
//     Without etcd, Traefik's API says it, whatever its provider: routers,
//     and their servers from its services.
//   - Traefik's own view says whether it is published: the router must be
//     one Traefik's API reports enabled and, for a traefik-sd circuit, the
//     plugin must report its middleware live. Traefik calls the plugin's New
//     before it parses a router's rule, so a push alone proves nothing.
//   - Traefik's /metrics (or, without it, its services' serverStatus) says
//     which servers are down; they are left out (or kept, marked down).
//   - The coordinator's API names the route and session of each server.
package engine

import (
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"reflect"
	"sort"
	"strings"
	"time"

	"github.com/traefik-sd/traefik-sd/internal/shrink"
	"github.com/traefik-sd/traefik-sd/plugin"
	"github.com/traefik-sd/traefik-sd/sidecar/dynamic"
	"github.com/traefik-sd/traefik-sd/sidecar/source"
	"github.com/traefik-sd/traefik-sd/sidecar/targets"
)

// Options configure an engine.
type Options struct {
	Targets targets.Options
	// Etcd is false when the sidecar runs without etcd (plugin-only mode).
	Etcd bool
	// PluginName is traefik-sd's plugin key in etcd (plugin/<name>/...).
	PluginName string
	// AskTraefik is true when Traefik's API is asked about routers. Without
	// it every router counts as served, and the plugin alone gates.
	AskTraefik bool
	// StartGrace bounds how long the first answer waits for the plugin's
	// full set and Traefik's first listing, so that a restarted sidecar
	// never publishes a set that lacks what Traefik serves.
	StartGrace time.Duration
	// NotServedSettle is how long a circuit must stay unserved before it is
	// reported: a new circuit is unserved until Traefik reloads.
	NotServedSettle time.Duration
	// AskCoordinator is true when the coordinator's API is asked soon
	// after every etcd change. A server etcd shows before the coordinator
	// has named it then waits for its answer, so that its target appears
	// once, with its route and session ids, instead of gaining labels a
	// moment later (a new series in Prometheus).
	AskCoordinator bool
	// ListServices is true when Traefik's services are listed (Services):
	// without etcd they hold the routers' servers, and the first set waits
	// for them. HealthFromAPI takes server health from their serverStatus,
	// for a Traefik whose /metrics is not read.
	ListServices  bool
	HealthFromAPI bool
}

// Engine is the one owner of the combined state. Not safe for concurrent
// use: the daemon's loop calls it.
type Engine struct {
	opts    Options
	store   *dynamic.Store
	traefik *traefikView
	health  *source.Health
	routes  *source.RouteTable
	builder *targets.Builder
	// idsDue is when etcd first changed a service since the coordinator
	// last answered a question asked after such a change; zero when no
	// answer is due. answered: the coordinator answered once.
	idsDue   time.Time
	answered bool

	start  time.Time
	listed bool // etcd was listed once
	// paging: a listing's pages are coming in; nothing is decoded until
	// its last page.
	paging  bool
	synced  bool // a plugin sent its full set
	swept   bool // Traefik's API listed every router once
	ready   bool
	changed bool // the set changed since the last Take

	// pending holds, per traefik-sd middleware, the etcd change that its
	// next push should show, to measure how long Traefik took to load it.
	pending map[string]pendingChange
	// unserved stamps when each router began to be unserved, and whether
	// that was reported.
	unserved map[string]unservedSince
	// The most pending and unserved held since they were last copied: a
	// re-list or a start can fill them with every circuit (shrink).
	pendingPeak, unservedPeak int
	// services holds the etcd services that exist: a router's status in
	// Traefik depends on its service existing, not on its servers.
	services map[string]bool

	// serviceView and listing are Traefik's services as last listed;
	// apiHealth, their servers' health when /metrics is not read.
	serviceView    serviceView
	listing        []source.Service
	apiHealth      *apiHealth
	servicesListed bool
}

type pendingChange struct {
	config uint64
	at     time.Time
}

type unservedSince struct {
	at       time.Time
	reported targets.NotServed
	done     bool
}

// New returns an engine whose state is empty at start.
func New(opts Options, start time.Time) *Engine {
	e := &Engine{
		opts:     opts,
		traefik:  newTraefikView(opts.AskTraefik),
		builder:  targets.NewBuilder(opts.Targets),
		start:    start,
		pending:  map[string]pendingChange{},
		unserved: map[string]unservedSince{},
		services: map[string]bool{},
	}
	if opts.Etcd {
		e.store = dynamic.NewStore(opts.PluginName)
	}
	if opts.HealthFromAPI {
		e.apiHealth = newAPIHealth()
	}
	return e
}

// Result is what one input changed, and what should be asked because of it.
type Result struct {
	// Changed: the target set may differ; publish it if ready.
	Changed bool
	// Ask is what the sources should be asked; the engine calls none.
	Ask Questions
	// DecodeErrors are etcd objects that could not be decoded.
	DecodeErrors []error
	// PushDelays are etcd changes of a traefik-sd middleware now shown
	// running by a push: how long Traefik took to load them.
	PushDelays []time.Duration
}

// Questions are what an input makes worth asking the sources, as one value.
type Questions struct {
	// Routers and Middlewares are for Traefik's API: what this input may
	// have changed in Traefik's view. Remind are routers Traefik did not
	// hold at its last listing, to ask about unless already asked. Sweep
	// asks for every router (a Traefik process restarted).
	Routers     []string
	Middlewares []string
	Remind      []string
	Sweep       bool
	// Services lists Traefik's services again soon: a router names a
	// service the last listing did not hold, or etcd changed a TCP router.
	Services bool
	// Coordinator asks the coordinator again soon: etcd changed what it
	// names. CoordinatorCircuits, when set, are the circuits to ask about;
	// unset, every circuit.
	Coordinator         bool
	CoordinatorCircuits []string
}

// Apply takes one source's message. A failure changes nothing: the last
// good answer stands (a failed coordinator's answer still ends the wait of
// the servers it was asked about, see Coordinator).
func (e *Engine) Apply(m source.Reported) Result {
	switch m := m.(type) {
	case source.EtcdReports:
		return e.Etcd(m.Batches())
	case source.PushBatch:
		return e.Pushes(m)
	case source.Scrape:
		if m.Err != nil {
			return Result{}
		}
		return e.Scrape(m.Result)
	case source.Routers:
		return e.Routers(m)
	case source.Services:
		return e.Services(m)
	case source.Routes:
		return e.Coordinator(m)
	}
	return Result{}
}

func (e *Engine) inputs() targets.Inputs {
	in := targets.Inputs{Store: e.store, Traefik: e.traefik}
	if e.serviceView != nil {
		in.Services = e.serviceView
	}
	if e.health != nil {
		in.Health = e.health
	} else if e.apiHealth != nil {
		in.Health = e.apiHealth
	}
	if e.routes != nil {
		in.Routes = e.routes
	}
	in.HoldUnnamed = !e.idsDue.IsZero()
	return in
}

func (e *Engine) update(ch targets.Changes) []string {
	touched := e.builder.Update(e.inputs(), ch)
	if len(touched) > 0 {
		e.changed = true
	}
	return touched
}

// Etcd applies watch batches, in order, then rebuilds once.
func (e *Engine) Etcd(batches []source.EtcdBatch) Result {
	var res Result
	if e.store == nil || len(batches) == 0 {
		return res
	}
	for _, b := range batches {
		if b.Snapshot {
			if b.Part == 0 || !e.paging {
				e.store.BeginReset()
			}
			e.store.ResetPage(b.Events)
			if e.paging = b.More; !e.paging {
				e.store.EndReset()
			}
			continue
		}
		// A re-list listed these ranges as they are: what they lack was
		// deleted. Their keys are among the events, in key order.
		e.store.DeleteUnlisted(b.Events, b.Listed)
		for _, ev := range b.Events {
			id, sub, ok := dynamic.SplitKey(ev.Key)
			if !ok {
				continue
			}
			if ev.Deleted {
				e.store.Delete(id, sub)
			} else {
				e.store.Put(id, sub, ev.Value)
			}
		}
	}
	if e.paging {
		// The rest of the listing is still to come: the set stays the
		// last one until then.
		return res
	}
	received := batches[len(batches)-1].Received
	changed, errs := e.store.Commit()
	res.DecodeErrors = errs
	first := !e.listed
	if !first {
		// A first listing changes every object, but etcd changed none of
		// them: Traefik loaded them before the sidecar looked, and the
		// plugin's set that follows measures nothing (at 100,000 circuits
		// it was as many false delays, and a map of them kept).
		e.notePending(changed, received)
	}
	dueNow := false
	if e.opts.AskCoordinator && e.idsDue.IsZero() {
		for _, id := range changed {
			if id.Kind == dynamic.Services {
				e.idsDue, dueNow = received, true
				break
			}
		}
	}
	e.listed = true
	asks := e.routerStatusMayChange(changed)
	touched := e.update(targets.Changes{Objects: changed, All: first})
	if first {
		// Asking about every router of a first listing is one listing of
		// Traefik's API (the watcher turns a long list into one).
		asks = touched
	}
	res.Ask.Routers = asks
	for _, id := range changed {
		// Traefik's TCP routers are listed with its services, not asked one by one.
		if id.Kind == dynamic.TCPRouters || id.Kind == dynamic.TCPServices {
			res.Ask.Services = e.opts.ListServices
		}
	}
	if e.opts.AskCoordinator {
		// The circuits whose routers this change rebuilt, one by one; the
		// whole list only when a changed service belongs to no circuit's
		// router, or for the first listing.
		circuits := e.builder.Circuits(touched)
		switch {
		case first || (dueNow && len(circuits) == 0):
			res.Ask.Coordinator = true
		case len(circuits) > 0:
			res.Ask.Coordinator, res.Ask.CoordinatorCircuits = true, circuits
		}
	}
	res.Changed = e.changed
	return res
}

// Pushes applies the plugin's updates, in the order they were accepted.
func (e *Engine) Pushes(updates []source.Pushes) Result {
	var res Result
	changed := map[string]bool{}
	for _, u := range updates {
		if u.Full && len(u.Live) > 0 {
			e.synced = true
		}
		if u.NewBoot {
			res.Ask.Sweep = true
		}
		for _, name := range e.traefik.apply(u, e.storedConfig) {
			changed[name] = true
		}
		for _, m := range u.Live {
			if d, ok := e.matchPending(m, u.Received); ok {
				res.PushDelays = append(res.PushDelays, d)
			}
		}
	}
	e.pending = shrink.Map(e.pending, &e.pendingPeak)
	if len(changed) == 0 {
		return res
	}
	names := make([]string, 0, len(changed))
	for n := range changed {
		names = append(names, n)
	}
	sort.Strings(names)
	e.update(targets.Changes{Live: names})
	res.Ask.Middlewares = names
	res.Changed = e.changed
	return res
}

// storedConfig is the traefik-sd configuration etcd holds for a middleware
// named as the plugin names it (name@provider), or nil.
func (e *Engine) storedConfig(name string) *plugin.Config {
	if e.store == nil {
		return nil
	}
	local, ok := strings.CutSuffix(name, "@"+e.opts.Targets.Provider)
	if !ok {
		return nil
	}
	if m := e.store.Middlewares[local]; m != nil {
		return m.SD
	}
	return nil
}

// routerStatusMayChange lists the routers whose status in Traefik an etcd
// change may alter: their own object, a middleware they name, or their
// service appearing or going. A route change rewrites only a service's
// servers, which Traefik's router status does not depend on, so it asks
// nothing.
func (e *Engine) routerStatusMayChange(changed []dynamic.ObjectID) []string {
	ask := map[string]bool{}
	for _, id := range changed {
		switch id.Kind {
		case dynamic.Routers:
			ask[id.Name+"@"+e.opts.Targets.Provider] = true
		case dynamic.Services:
			exists := e.store.Services[id.Name] != nil
			if exists == e.services[id.Name] {
				continue
			}
			if exists {
				e.services[id.Name] = true
			} else {
				delete(e.services, id.Name)
			}
			fallthrough
		case dynamic.Middlewares:
			for _, r := range e.builder.Readers(id) {
				ask[r] = true
			}
		}
	}
	out := make([]string, 0, len(ask))
	for r := range ask {
		out = append(out, r)
	}
	sort.Strings(out)
	return out
}

// notePending records each changed traefik-sd middleware's configuration,
// for the push that shows Traefik loaded it (matchPending).
func (e *Engine) notePending(changed []dynamic.ObjectID, received time.Time) {
	for _, id := range changed {
		if id.Kind != dynamic.Middlewares {
			continue
		}
		if m := e.store.Middlewares[id.Name]; m != nil && m.SD != nil {
			if key, ok := configHash(m.SD); ok {
				e.pending[id.Name] = pendingChange{config: key, at: received}
			}
		}
	}
}

func (e *Engine) matchPending(m plugin.LiveMiddleware, at time.Time) (time.Duration, bool) {
	name, _, _ := strings.Cut(m.Name, "@")
	pc, ok := e.pending[name]
	if !ok {
		return 0, false
	}
	if key, ok := configHash(&m.Config); !ok || key != pc.config {
		return 0, false
	}
	delete(e.pending, name)
	return at.Sub(pc.at), true
}

// Routers applies an answer of Traefik's API. A failed round changes
// nothing: the last answer stands until Traefik answers again.
func (e *Engine) Routers(u source.Routers) Result {
	var res Result
	if u.Err != nil {
		return res
	}
	if !u.Same {
		if names := e.traefik.routersChanged(u, isHTTPRouter); len(names) > 0 {
			e.update(targets.Changes{Routers: names})
			res.Ask.Services = e.unlistedService(names)
		}
	}
	if u.Sweep {
		e.swept = true
		// Traefik may not have loaded them yet (it starts beside the
		// sidecar, and reloads take seconds at scale): ask again, on the
		// recheck schedule, rather than wait a whole sweep interval.
		for router, ns := range e.builder.NotServed() {
			if ns.Reason == targets.ReasonNotLoaded {
				res.Ask.Remind = append(res.Ask.Remind, router)
			}
		}
		sort.Strings(res.Ask.Remind)
	}
	res.Changed = e.changed
	return res
}

func isHTTPRouter(name string) bool { return !strings.HasPrefix(name, targets.TCPKey("")) }

// unlistedService tells whether, without etcd, one of these routers names
// a service Traefik's last listing did not hold: a new router, whose
// servers are in the next listing.
func (e *Engine) unlistedService(routers []string) bool {
	if e.opts.Etcd || !e.opts.ListServices {
		return false
	}
	for _, name := range routers {
		if r, ok := e.traefik.routers[name]; ok && r.Service != "" {
			if _, listed := e.serviceView[r.Service]; !listed {
				return true
			}
		}
	}
	return false
}

// Scrape applies a successful scrape of Traefik's /metrics.
func (e *Engine) Scrape(r source.Health) Result {
	prev := e.health
	e.health = &r
	var changed []string
	if prev == nil {
		changed = r.DownServices()
	} else {
		changed = r.ChangedServices(prev)
	}
	if len(changed) > 0 {
		e.update(targets.Changes{Services: changed})
	}
	return Result{Changed: e.changed}
}

// Routes applies the coordinator's route table.
func (e *Engine) Routes(t *source.RouteTable) Result { return e.Coordinator(source.Routes{Table: t}) }

// Coordinator applies an answer of the coordinator: a new route table, or
// a failure, which keeps the last one. An answer asked after the etcd
// change that made ids due ends the wait of the servers it held back,
// named or not: a coordinator that fails or never names a server does not
// keep it out.
func (e *Engine) Coordinator(a source.Routes) Result {
	released := false
	if !e.idsDue.IsZero() && !a.Asked.Before(e.idsDue) {
		e.idsDue, released = time.Time{}, true
	}
	var (
		changed, all bool
		circuits     []string
	)
	switch {
	case a.Err == nil && a.Table != nil && a.Circuits != nil:
		// An answer about a few circuits patches the table it was asked
		// after: the engine owns the table, nothing else holds it. With no
		// list yet (a coordinator that cannot list them all), those
		// circuits still get their ids.
		if e.routes == nil {
			e.routes = source.NewRouteTable()
			all = true // routers built so far read no routes
		}
		circuits = e.routes.Patch(a.Table, a.Circuits)
		changed = len(circuits) > 0
		all = all && changed
	case a.Err == nil && a.Table != nil && a.Circuits == nil:
		circuits = a.Table.ChangedCircuits(e.routes)
		changed = len(circuits) > 0
		// Routers built before the first answer read no routes: that
		// answer rebuilds them all.
		if all = changed && e.routes == nil; all {
			circuits = nil
		}
		e.routes = a.Table
	}
	if a.Err == nil && a.Table != nil {
		e.answered = true
	} else if !a.Asked.IsZero() {
		e.answered = true // a coordinator that fails does not hold readiness
	}
	if !changed && !released {
		return Result{}
	}
	// The circuits the answer changed, and those that held a server back
	// for it; at 10,000 circuits a rebuild of every one took a tenth of a
	// second or more, and every change behind it waited.
	e.update(targets.Changes{Circuits: circuits, Held: released, All: all})
	return Result{Changed: e.changed}
}

// Ready tells whether the set may be served: etcd was listed, and the
// plugin sent its full set and Traefik's API was listed (or there is nothing
// to wait for, or the grace period is over). Once ready, always ready.
func (e *Engine) Ready(now time.Time) bool {
	if e.ready {
		return true
	}
	if e.opts.Etcd && !e.listed {
		return false
	}
	graceOver := now.Sub(e.start) >= e.opts.StartGrace
	plugin := e.synced || graceOver || (e.opts.Etcd && !e.holdsTraefikSD())
	api := !e.opts.AskTraefik || e.swept || graceOver
	// The first set waits for the coordinator to name what etcd listed.
	coordinator := !e.opts.AskCoordinator || (e.answered && e.idsDue.IsZero()) || graceOver
	services := !e.opts.ListServices || e.servicesListed || graceOver
	e.ready = plugin && api && coordinator && services
	if e.ready {
		e.changed = true // the first set is published as soon as it may be
	}
	return e.ready
}

// holdsTraefikSD tells whether etcd holds a traefik-sd middleware, whose
// circuit would wait for the plugin.
func (e *Engine) holdsTraefikSD() bool {
	for _, m := range e.store.Middlewares {
		if m.SD != nil {
			return true
		}
	}
	return false
}

// Take reports whether the set changed since the last Take.
func (e *Engine) Take() bool {
	c := e.changed
	e.changed = false
	return c
}

// Digest, AppendJSON, Targets and Groups read the current set.
func (e *Engine) Digest() [sha256.Size]byte    { return e.builder.Digest() }
func (e *Engine) AppendJSON(dst []byte) []byte { return e.builder.AppendJSON(dst) }

// Freeze captures the set to render later (targets.Builder.Freeze).
func (e *Engine) Freeze() *targets.Frozen   { return e.builder.Freeze() }
func (e *Engine) Targets() []targets.Target { return e.builder.Targets() }
func (e *Engine) Groups() map[string]int    { return e.builder.Groups() }

// EachTarget calls fn with each current target without making the whole
// set (targets.Builder.Each): fn must not keep a target's Labels.
func (e *Engine) EachTarget(fn func(targets.Target)) { e.builder.Each(fn) }

// Dropped says how many targets each limit leaves out.
func (e *Engine) Dropped() map[string]int { return e.builder.Dropped() }

// Store is the decoded etcd configuration (nil without etcd), for reading.
func (e *Engine) Store() *dynamic.Store { return e.store }

// LiveMiddlewares counts the live traefik-sd middlewares, summed over Traefik processes.
func (e *Engine) LiveMiddlewares() int { return e.traefik.liveCount() }

// NotServed reports the circuits Traefik does not serve: their count by
// reason, and those unserved for at least NotServedSettle that were not
// reported yet (or whose reason changed), to be logged once each.
func (e *Engine) NotServed(now time.Time) (counts map[string]int, report []targets.NotServed) {
	counts = map[string]int{targets.ReasonNotLoaded: 0, targets.ReasonDisabled: 0, targets.ReasonPluginNotLive: 0, targets.ReasonNoRoutes: 0}
	current := e.builder.NotServed()
	for router := range e.unserved {
		if _, ok := current[router]; !ok {
			delete(e.unserved, router)
		}
	}
	e.unserved = shrink.Map(e.unserved, &e.unservedPeak)
	for router, ns := range current {
		counts[ns.Reason]++
		u, ok := e.unserved[router]
		if !ok || u.reported.Reason != ns.Reason || u.reported.Error != ns.Error {
			u = unservedSince{at: now, reported: ns}
		}
		if !u.done && now.Sub(u.at) >= e.opts.NotServedSettle {
			u.done = true
			report = append(report, ns)
		}
		e.unserved[router] = u
	}
	sort.Slice(report, func(i, j int) bool { return report[i].Router < report[j].Router })
	return counts, report
}

// ExpirePending forgets load measurements older than ten minutes: a change
// Traefik never loaded must not be matched by a much later push.
func (e *Engine) ExpirePending(now time.Time) {
	for name, pc := range e.pending {
		if now.Sub(pc.at) > 10*time.Minute {
			delete(e.pending, name)
		}
	}
}

func configHash(cfg *plugin.Config) (uint64, bool) {
	b, err := json.Marshal(cfg)
	if err != nil {
		return 0, false
	}
	h := fnv.New64a()
	_, _ = h.Write(b)
	return h.Sum64(), true
}

// traefikView is Traefik's own view as the engine last heard it.
type traefikView struct {
	ask bool
	// nodes holds each Traefik process's live middlewares, by name, with
	// the configuration the process runs; since, when each process's
	// session began. A configuration is never written to once held: Live
	// hands it out as it is, and one equal to the store's is the store's
	// (held once, not once more per pushing process).
	nodes   map[string]map[string]*plugin.Config
	since   map[string]time.Time
	routers map[string]targets.RouterState
	names   []string // of routers, sorted; nil when stale
}

func newTraefikView(ask bool) *traefikView {
	return &traefikView{ask: ask, nodes: map[string]map[string]*plugin.Config{}, since: map[string]time.Time{},
		routers: map[string]targets.RouterState{}}
}

// Live is the middleware's configuration in the process with the oldest
// session that runs it (the node name breaks a tie): one answer, whatever
// order the pushes came in. Not the first by name, which anyone who can
// push could win by picking a name ("!"); a process that joins later, under
// a new name, cannot change what an older one reports, and a node's name
// is bound to its live process (pluginsync), so a push cannot take one over.
func (v *traefikView) Live(name string) *plugin.Config {
	var best string
	var cfg *plugin.Config
	for node, set := range v.nodes {
		if c, ok := set[name]; ok && (cfg == nil || v.older(node, best)) {
			best = node
			cfg = c
		}
	}
	return cfg
}

// older tells whether node a's session began before b's.
func (v *traefikView) older(a, b string) bool {
	sa, sb := v.since[a], v.since[b]
	if !sa.Equal(sb) {
		return sa.Before(sb)
	}
	return a < b
}

func (v *traefikView) Router(name string) (targets.RouterState, bool) {
	if !v.ask {
		return targets.RouterState{Served: true}, true
	}
	r, ok := v.routers[name]
	return r, ok
}

func (v *traefikView) Routers() []string {
	if v.names == nil {
		v.names = make([]string, 0, len(v.routers))
		for n := range v.routers {
			v.names = append(v.names, n)
		}
		sort.Strings(v.names)
	}
	return v.names
}

func (v *traefikView) liveCount() int {
	n := 0
	for _, set := range v.nodes {
		n += len(set)
	}
	return n
}

// apply takes one update and returns the middlewares whose live
// configuration, as Live answers it, changed. held is a configuration
// already held for a middleware (the store's, from etcd), or nil: a
// pushed one equal to it is kept as that one.
func (v *traefikView) apply(u source.Pushes, held func(name string) *plugin.Config) []string {
	affected := map[string]bool{}
	old := v.nodes[u.Node]
	if u.Full {
		for name := range old {
			affected[name] = true
		}
	}
	for _, m := range u.Live {
		affected[m.Name] = true
	}
	for _, name := range u.Removed {
		affected[name] = true
	}
	before := make(map[string]*plugin.Config, len(affected))
	for name := range affected {
		before[name] = v.Live(name)
	}
	set := old
	if u.Full || set == nil {
		set = make(map[string]*plugin.Config, len(u.Live))
	}
	for i := range u.Live {
		m := &u.Live[i]
		if c := held(m.Name); c != nil && sameConfig(*c, m.Config) {
			set[m.Name] = c
			continue
		}
		// Its own copy, so that the push's slice, with every name and
		// time in it, is not kept for the one configuration.
		c := m.Config
		set[m.Name] = &c
	}
	for _, name := range u.Removed {
		delete(set, name)
	}
	if len(set) == 0 {
		delete(v.nodes, u.Node)
		delete(v.since, u.Node)
	} else {
		v.nodes[u.Node] = set
		switch _, known := v.since[u.Node]; {
		case !u.Since.IsZero():
			v.since[u.Node] = u.Since
		case !known || u.NewBoot:
			v.since[u.Node] = u.Received
		}
	}
	var changed []string
	for name, was := range before {
		if !reflect.DeepEqual(was, v.Live(name)) {
			changed = append(changed, name)
		}
	}
	return changed
}

// sameConfig tells whether two configurations say the same: a push leaves
// out the empty lists and labels that etcd's decoding holds as empty.
// Any other difference, in a field added later too, makes them differ.
func sameConfig(a, b plugin.Config) bool {
	return reflect.DeepEqual(emptyAsNil(a), emptyAsNil(b))
}

func emptyAsNil(c plugin.Config) plugin.Config {
	if len(c.SessionIDs) == 0 {
		c.SessionIDs = nil
	}
	if len(c.Routes) == 0 {
		c.Routes = nil
	}
	if len(c.Labels) == 0 {
		c.Labels = nil
	}
	return c
}

// routersChanged applies an answer of Traefik's API and returns the routers
// whose state changed. A sweep replaces the routers mine selects: HTTP
// routers come from one listing, TCP ones from another.
func (v *traefikView) routersChanged(u source.Routers, mine func(string) bool) []string {
	var changed []string
	seen := make(map[string]bool, len(u.Routers))
	for _, r := range u.Routers {
		seen[r.Name] = true
		st := targets.RouterState{Served: r.Served(), Service: r.Service, Middlewares: r.Middlewares,
			Rule: r.Rule, EntryPoints: r.EntryPoints}
		if !st.Served {
			st.Error = strings.Join(r.Errors, "; ")
			if st.Error == "" {
				st.Error = fmt.Sprintf("status %s", r.Status)
			}
		}
		if old, ok := v.routers[r.Name]; !ok || !reflect.DeepEqual(old, st) {
			if !ok {
				v.names = nil
			}
			v.routers[r.Name] = st
			changed = append(changed, r.Name)
		}
	}
	gone := u.Gone
	if u.Sweep {
		gone = nil
		for name := range v.routers {
			if !seen[name] && mine(name) {
				gone = append(gone, name)
			}
		}
	}
	for _, name := range gone {
		old, ok := v.routers[name]
		if !ok || v.betweenGenerations(old) {
			continue
		}
		delete(v.routers, name)
		v.names = nil
		changed = append(changed, name)
	}
	sort.Strings(changed)
	return changed
}

// betweenGenerations tells whether a served router that Traefik's API no
// longer lists is more likely between two of Traefik's configurations than
// dropped: a restarted Traefik answers its API before its providers have
// loaded, and a reloading one before it switches. While the plugin still
// reports one of its middlewares live, its last state stands; dropping the
// router cancels that instance, and the plugin reports it gone within its
// removal delay (or the process goes silent), which withdraws it then.
func (v *traefikView) betweenGenerations(last targets.RouterState) bool {
	if !last.Served {
		return false
	}
	for _, m := range last.Middlewares {
		if v.Live(m) != nil {
			return true
		}
	}
	return false
}

// Unserved lists the circuits etcd holds that are not published, by router,
// without touching what NotServed has reported (for the status page).
func (e *Engine) Unserved() []targets.NotServed {
	m := e.builder.NotServed()
	out := make([]targets.NotServed, 0, len(m))
	for _, ns := range m {
		out = append(out, ns)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Router < out[j].Router })
	return out
}
