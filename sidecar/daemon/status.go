package daemon

import (
	"context"
	"crypto/sha256"
	"hash/maphash"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/traefik-sd/traefik-sd/sidecar/status"
	"github.com/traefik-sd/traefik-sd/sidecar/targets"
	"github.com/traefik-sd/traefik-sd/sidecar/version"
)

// The status page is built on the server's goroutines from the view the
// loop stored last. Built in the loop, a page of 100,000 circuits held up
// every change queued behind it for a tenth of a second or more; a reader
// that stalled held up the loop itself.

// view is the state the status page shows, as the loop left it after an
// input or a tick. Nothing in it is written once stored: the loop stores a
// new view, and replaces each slice and map it holds rather than change it.
type view struct {
	ready, etcdWatchUp    bool
	revision              int64
	etcdContact, scrapeAt time.Time
	downServers           []string
	set                   *targets.Frozen
	since                 map[uint64]time.Time
	sinceAt               time.Time
	notServed             []status.NotServed
	broken                []status.Broken
}

// shown is what the loop keeps for the status page, and the view it
// stored last.
type shown struct {
	view atomic.Pointer[view]

	since       map[uint64]time.Time
	sinceSeed   maphash.Seed
	sinceAt     time.Time // of the last trackSince
	sinceDigest [sha256.Size]byte
	revision    int64
	etcdContact time.Time
	downServers []string
	scrapeAt    time.Time

	// frozen is the set the publisher froze last, which is the engine's
	// once it has published (the loop publishes each change before it
	// stores a view); early is the engine's set before that, frozen anew
	// when its digest changes.
	frozen      *targets.Frozen
	early       *targets.Frozen
	earlyDigest [sha256.Size]byte

	// notServed and broken walk every circuit Traefik does not serve and
	// every broken object (all of them, when Traefik's API is down): taken
	// after an input at most once every slowEvery, and on the tick after a
	// burst.
	notServed []status.NotServed
	broken    []status.Broken
	slowAt    time.Time
	slowDue   bool

	// sightings belong to the server's goroutines.
	sightings sightings
}

const slowEvery = time.Second

// show stores the view of the loop's state; input tells whether the loop
// handled a source's report since the last view, which may have changed
// what is not served or broken.
func (d *Daemon) show(now time.Time, input bool) {
	d.slowDue = d.slowDue || input
	if d.slowDue && now.Sub(d.slowAt) >= slowEvery {
		d.slowDue, d.slowAt = false, now
		d.notServed, d.broken = d.notServedNow(), d.brokenNow()
	}
	set := d.frozen
	if set == nil {
		if digest := d.engine.Digest(); d.early == nil || digest != d.earlyDigest {
			d.early, d.earlyDigest = d.engine.Freeze(), digest
		}
		set = d.early
	}
	d.view.Store(&view{
		ready: d.ready.Load(), etcdWatchUp: !d.etcdFailing && d.listedOnce, revision: d.revision,
		etcdContact: d.etcdContact, scrapeAt: d.scrapeAt, downServers: d.downServers,
		set: set, since: d.since, sinceAt: d.sinceAt, notServed: d.notServed, broken: d.broken,
	})
}

func (d *Daemon) notServedNow() []status.NotServed {
	var out []status.NotServed
	for _, ns := range d.engine.Unserved() {
		out = append(out, status.NotServed{Circuit: ns.CircuitID, Router: ns.Router, Reason: ns.Reason, Error: ns.Error})
	}
	return out
}

func (d *Daemon) brokenNow() []status.Broken {
	store := d.engine.Store()
	if store == nil {
		return nil
	}
	var out []status.Broken
	for id, err := range store.Errors {
		out = append(out, status.Broken{Key: d.cfg.Etcd.RootKey + "/" + id.String(), Error: err.Error()})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out
}

// targetKey identifies a target by a hash of its address and labels: the
// map of first sightings holds every published target, and a string key per
// target (address and every label) was megabytes of garbage per change of
// the set at 10,000 circuits, paid in the change latency's tail.
func targetKey(seed maphash.Seed, t targets.Target) uint64 {
	var h maphash.Hash
	h.SetSeed(seed)
	h.WriteString(t.Address)
	for _, l := range t.Labels {
		h.WriteByte(0)
		h.WriteString(l.Name)
		h.WriteByte('=')
		h.WriteString(l.Value)
	}
	return h.Sum64()
}

// sinceEvery is how often the loop notes first sightings. It walks every
// target (200,000 of them at 100,000 circuits, a tenth of a second), so a
// target's first sighting is known to within this, or exactly when the
// status page shows it first (sightings).
const sinceEvery = 15 * time.Second

// trackSince notes when each published target first appeared. It runs off
// the publishing path, and only when the set changed.
func (d *Daemon) trackSince(now time.Time) {
	d.sinceAt = now
	digest := d.engine.Digest()
	if d.sinceDigest == digest && d.since != nil {
		return
	}
	d.sinceDigest = digest
	next := make(map[uint64]time.Time, len(d.since))
	d.engine.EachTarget(func(t targets.Target) {
		k := targetKey(d.sinceSeed, t)
		if at, ok := d.since[k]; ok {
			next[k] = at
		} else {
			next[k] = now
		}
	})
	d.since = next
}

// sightings are the first sightings the page made itself, of targets it
// showed before the loop's walk saw them: without them, such a target would
// read "just now" on every request until that walk.
type sightings struct {
	mu   sync.Mutex
	seen map[uint64]time.Time
}

// note tells when each target, by key, was first seen: the earlier of the
// loop's walk and the page's own sightings, now for one neither saw.
func (s *sightings) note(v *view, keys []uint64, now time.Time) []time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]time.Time, len(keys))
	next := map[uint64]time.Time{}
	for i, k := range keys {
		walked, inWalk := v.since[k]
		noted, ok := s.seen[k]
		// A walk after the page saw it did not: it went, and is back.
		ok = ok && (inWalk || !noted.Before(v.sinceAt))
		switch {
		case ok && (!inWalk || noted.Before(walked)):
			out[i], next[k] = noted, noted
		case inWalk:
			out[i] = walked
		default:
			out[i], next[k] = now, now
		}
	}
	s.seen = next
	return out
}

// statusOf builds the page's snapshot from the loop's last view, on the
// server's goroutine: it never waits for the loop.
func (d *Daemon) statusOf(context.Context) (*status.Snapshot, error) {
	v := d.view.Load()
	now := time.Now()
	set := v.set.Targets()
	keys := make([]uint64, len(set))
	for i, t := range set {
		keys[i] = targetKey(d.sinceSeed, t)
	}
	since := d.sightings.note(v, keys, now)
	ver, rev, goVersion := version.Info()
	s := &status.Snapshot{
		At: now, Authority: d.cfg.Worker.Authority, Node: d.cfg.Worker.Node,
		Version: "traefik-sd " + ver + " (" + rev + ", " + goVersion + ")", Ready: v.ready,
		EtcdMode: !d.cfg.PluginOnly(), EtcdRevision: v.revision, EtcdWatchUp: v.etcdWatchUp,
		EtcdContact: v.etcdContact, DownServers: v.downServers, TraefikScrape: v.scrapeAt,
		NotServed: v.notServed, Broken: v.broken,
	}
	groups := map[string]*status.Group{}
	circuits := map[string]*status.Circuit{}
	for i, t := range set {
		name := t.Label("service_group")
		g := groups[name]
		if g == nil {
			g = &status.Group{Name: name}
			groups[name] = g
		}
		st := status.Target{Address: t.Address, Since: since[i]}
		for _, l := range t.Labels {
			if l.Name != "service_group" {
				st.Labels = append(st.Labels, [2]string{l.Name, l.Value})
			}
		}
		id := t.Label("circuit_id")
		if name != targets.GroupRoute || id == "" {
			g.Targets = append(g.Targets, st)
			continue
		}
		c := circuits[id]
		if c == nil {
			c = &status.Circuit{ID: id}
			circuits[id] = c
		}
		c.Targets = append(c.Targets, st)
	}
	ids := make([]string, 0, len(circuits))
	for id := range circuits {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		g := groups[targets.GroupRoute]
		g.Circuits = append(g.Circuits, *circuits[id])
	}
	for _, g := range groups {
		s.Groups = append(s.Groups, *g)
	}
	for _, n := range d.plugins.Sessions() {
		s.Nodes = append(s.Nodes, status.Node{Name: n.Node, Boot: n.Boot, LastSeen: n.LastSeen})
	}
	return s, nil
}
