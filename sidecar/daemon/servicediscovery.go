package daemon

import (
	"context"
	"time"

	"github.com/traefik-sd/traefik-sd/sidecar/servicediscovery"
	"github.com/traefik-sd/traefik-sd/sidecar/targets"
)

// serviceDiscovery is the loop's side of the Backend.AI writers.
type serviceDiscovery struct {
	// sdUpdates hand the latest set to each ServiceDiscovery writer.
	sdUpdates []chan *targets.Frozen
}

// startServiceDiscovery runs one writer per store.
func (d *Daemon) startServiceDiscovery(ctx context.Context, run func(func()), stores []servicediscovery.Store) {
	for _, store := range stores {
		updates := make(chan *targets.Frozen, 1)
		d.sdUpdates = append(d.sdUpdates, updates)
		run(func() { d.runServiceDiscovery(ctx, store, updates) })
	}
}

// offerServiceDiscovery hands the engine's set to every writer; the loop
// calls it after publishing. The set is frozen, not made: a writer makes
// the targets of the set it takes, and never those of a set a later one
// replaced (at 200,000 targets, about 80 MB each).
func (d *Daemon) offerServiceDiscovery() {
	if len(d.sdUpdates) == 0 {
		return
	}
	set := d.engine.Freeze()
	for _, updates := range d.sdUpdates {
		// Latest wins: a set the writer has not taken yet is replaced.
		select {
		case <-updates:
		default:
		}
		updates <- set
	}
}

// runServiceDiscovery writes every published set into one Backend.AI store.
func (d *Daemon) runServiceDiscovery(ctx context.Context, store servicediscovery.Store, updates <-chan *targets.Frozen) {
	name := store.Name()
	failing := false
	w := &servicediscovery.Writer{
		Store: store, Version: "traefik-sd", Authority: d.cfg.Worker.Authority, Node: d.cfg.Worker.Node,
		Heartbeat: time.Duration(d.cfg.BackendAI.Heartbeat), Timeout: time.Duration(d.cfg.Etcd.RequestTimeout),
		OnError: func(err error) {
			d.metrics.SDErrors.WithLabelValues(name).Inc()
			d.outage(&failing, err, "writing Backend.AI ServiceDiscovery entries failed; retrying (250ms, doubling to 5s)", "", "store", name)
		},
		OnSync: func(entries int) {
			d.metrics.SDEntries.WithLabelValues(name).Set(float64(entries))
		},
		OnWritten: func() {
			d.metrics.SDLastSuccess.WithLabelValues(name).SetToCurrentTime()
			d.outage(&failing, nil, "", "writing Backend.AI ServiceDiscovery entries works again", "store", name)
		},
		OnUnwritable: func(t targets.Target, err error) {
			d.log.Warn("a target cannot be a ServiceDiscovery entry; left out of the store", "store", name, "target", t.Address, "error", err)
		},
		OnSwept: func(removed int) {
			if removed > 0 {
				d.log.Info("removed ServiceDiscovery entries an earlier run left and the current set has not", "store", name, "entries", removed)
			}
		},
	}
	d.metrics.SDErrors.WithLabelValues(name)
	w.Run(ctx, updates)
}
