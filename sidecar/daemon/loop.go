package daemon

import (
	"context"
	"fmt"
	"time"

	"github.com/traefik-sd/traefik-sd/sidecar/engine"
	"github.com/traefik-sd/traefik-sd/sidecar/publish"
	"github.com/traefik-sd/traefik-sd/sidecar/source"
	"github.com/traefik-sd/traefik-sd/sidecar/watch"
)

// feed runs a source when on and hands each message it sends to the loop,
// on the one channel every source shares.
func feed[T source.Reported](ctx context.Context, run func(func()), on bool, poll func(context.Context, chan<- T), to chan<- source.Reported) {
	if !on {
		return
	}
	ch := make(chan T, 1)
	run(func() { poll(ctx, ch) })
	run(func() {
		for {
			select {
			case m := <-ch:
				select {
				case to <- m:
				case <-ctx.Done():
					return
				}
			case <-ctx.Done():
				return
			}
		}
	})
}

// feedEtcd is feed for the etcd watch, which sends a report per watch
// response: each is handed on with every one already queued behind it, so
// that a burst of changes is applied, and rendered, once.
func feedEtcd(ctx context.Context, run func(func()), w *watch.Watcher, to chan<- source.Reported) {
	if w == nil {
		return
	}
	ch := make(chan source.EtcdReport, 64)
	run(func() { w.Run(ctx, ch) })
	run(func() {
		for {
			var burst source.EtcdReports
			select {
			case r := <-ch:
				burst = append(burst, r)
			case <-ctx.Done():
				return
			}
			for queued := true; queued; {
				select {
				case r := <-ch:
					burst = append(burst, r)
				default:
					queued = false
				}
			}
			select {
			case to <- burst:
			case <-ctx.Done():
				return
			}
		}
	})
}

// loop is the one goroutine that reads and changes the engine. After each
// input it publishes the set and stores a view of its state for the status
// page, so that no reader ever waits on it or it on them.
func (d *Daemon) loop(ctx context.Context, messages <-chan source.Reported, serveErr <-chan error) error {
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	for {
		input := true
		select {
		case <-ctx.Done():
			return nil
		case err := <-serveErr:
			if err != nil {
				return fmt.Errorf("serving: %w", err)
			}
			return nil
		case m := <-messages:
			d.take(m)
		case now := <-tick.C:
			input = d.housekeeping(now)
			if now.Sub(d.sinceAt) >= sinceEvery {
				d.trackSince(now)
			}
		}
		d.show(time.Now(), input)
	}
}

// take applies one source's message: the observer counts and logs it,
// the engine applies it, and what the engine asks goes to the sources.
func (d *Daemon) take(m source.Reported) {
	apply := d.observe(m)
	if !apply {
		return
	}
	if a, ok := m.(source.Routes); ok && a.Err != nil {
		a.Table = nil // counted and logged; the last good table stays
		m = a
	}
	res := d.engine.Apply(m)
	etcd, isEtcd := m.(source.EtcdReports)
	if !isEtcd {
		d.handle(res, time.Time{})
		return
	}
	batches := etcd.Batches()
	for _, b := range batches {
		// Applied: the engine keeps nothing of a listing's page, and the
		// watcher reads its next pages into this one's memory.
		if b.Release != nil {
			b.Release()
		}
	}
	last := batches[len(batches)-1]
	if last.More {
		// A listing's page: nothing of it is applied until its last, nor
		// its revision or object count shown.
		return
	}
	d.etcdDecoded(res)
	d.handle(res, last.Received)
	// Set last, so that a revision shown is one applied and published.
	d.revision = last.Revision
	d.etcdApplied(last)
}

// handle acts on what the engine says an input changed: questions for
// Traefik's API, measurements, and publishing the set once it may be served.
func (d *Daemon) handle(res engine.Result, received time.Time) {
	now := time.Now()
	if d.api != nil {
		d.api.Ask(res.Ask.Routers, res.Ask.Middlewares, now)
		d.api.Remind(res.Ask.Remind, now)
		if res.Ask.Sweep {
			d.api.Sweep()
		}
	}
	if res.Ask.Services && d.services != nil {
		d.services.Kick()
	}
	if res.Ask.Coordinator && d.coord != nil {
		d.coord.Kick(res.Ask.CoordinatorCircuits...)
	}
	for _, delay := range res.PushDelays {
		d.metrics.EtcdToPluginPush.Observe(delay.Seconds())
	}
	if !d.engine.Ready(now) {
		return
	}
	if !d.ready.Swap(true) && d.firstSet != nil {
		d.firstSet()
	}
	if d.engine.Take() {
		d.publish(received)
	}
}

// publish renders the engine's set if its body differs from the one served.
func (d *Daemon) publish(received time.Time) {
	start := time.Now()
	for limit, n := range d.engine.Dropped() {
		d.metrics.TargetsDropped.WithLabelValues(limit).Set(float64(n))
	}
	freeze := func() publish.Lazy {
		// The status page lists the same frozen set: one freeze per change.
		d.frozen, d.early = d.engine.Freeze(), nil
		return d.frozen
	}
	if !d.pub.SetLazy(d.engine.Digest(), freeze, d.engine.Groups()) {
		return
	}
	d.offerServiceDiscovery()
	d.rendered(received, start)
}

// housekeeping runs on a tick: processes gone silent, the first set once
// the start grace is over, and the circuits Traefik does not serve. It
// tells whether it gave the engine an input.
func (d *Daemon) housekeeping(now time.Time) bool {
	gone := d.plugins.Expire(now)
	if len(gone) > 0 {
		d.pluginsGone(gone)
		d.handle(d.engine.Pushes(gone), time.Time{})
	} else {
		d.handle(engine.Result{}, time.Time{}) // the start grace may be over
	}
	d.engine.ExpirePending(now)
	d.housekept(now)
	return len(gone) > 0
}
