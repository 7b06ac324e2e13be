package daemon

import (
	"context"
	"hash/maphash"
	"sort"
	"time"

	"github.com/traefik-sd/traefik-sd/sidecar/status"
	"github.com/traefik-sd/traefik-sd/sidecar/targets"
	"github.com/traefik-sd/traefik-sd/sidecar/version"
)

// statusOf asks the loop, which owns the engine, for a snapshot.
func (d *Daemon) statusOf(ctx context.Context) (*status.Snapshot, error) {
	reply := make(chan *status.Snapshot, 1)
	select {
	case d.statusReq <- reply:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	select {
	case s := <-reply:
		return s, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
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
// status page asks, which notes them first.
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
	for _, t := range d.engine.Targets() {
		k := targetKey(d.sinceSeed, t)
		if at, ok := d.since[k]; ok {
			next[k] = at
		} else {
			next[k] = now
		}
	}
	d.since = next
}

// snapshot is the state the status page shows; the loop calls it.
func (d *Daemon) snapshot(now time.Time) *status.Snapshot {
	d.trackSince(now)
	v, r, g := version.Info()
	s := &status.Snapshot{
		At: now, Authority: d.cfg.Worker.Authority, Node: d.cfg.Worker.Node,
		Version: "traefik-sd " + v + " (" + r + ", " + g + ")", Ready: d.ready.Load(),
		EtcdMode: !d.cfg.PluginOnly(), EtcdRevision: d.revision, EtcdWatchUp: !d.etcdFailing && d.listedOnce,
		EtcdContact: d.etcdContact, DownServers: d.downServers, TraefikScrape: d.scrapeAt,
	}
	groups := map[string]*status.Group{}
	circuits := map[string]*status.Circuit{}
	for _, t := range d.engine.Targets() {
		name := t.Label("service_group")
		g := groups[name]
		if g == nil {
			g = &status.Group{Name: name}
			groups[name] = g
		}
		st := status.Target{Address: t.Address, Since: d.since[targetKey(d.sinceSeed, t)]}
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
	for _, ns := range d.engine.Unserved() {
		s.NotServed = append(s.NotServed, status.NotServed{Circuit: ns.CircuitID, Router: ns.Router, Reason: ns.Reason, Error: ns.Error})
	}
	if store := d.engine.Store(); store != nil {
		for id, err := range store.Errors {
			s.Broken = append(s.Broken, status.Broken{Key: d.cfg.Etcd.RootKey + "/" + id.String(), Error: err.Error()})
		}
		sort.Slice(s.Broken, func(i, j int) bool { return s.Broken[i].Key < s.Broken[j].Key })
	}
	return s
}
