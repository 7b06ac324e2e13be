package daemon

import (
	"context"
	"fmt"
	"time"

	"github.com/traefik-sd/traefik-sd/sidecar/engine"
	"github.com/traefik-sd/traefik-sd/sidecar/publish"
	"github.com/traefik-sd/traefik-sd/sidecar/routeinfo"
	"github.com/traefik-sd/traefik-sd/sidecar/scrape"
	"github.com/traefik-sd/traefik-sd/sidecar/traefikapi"
	"github.com/traefik-sd/traefik-sd/sidecar/watch"
)

// sources are the channels the loop reads; a nil channel is a source that
// does not run.
type sources struct {
	etcd     chan watch.Report
	scrapes  chan scrape.Outcome
	routers  chan traefikapi.Update
	answers  chan routeinfo.Answer
	services chan traefikapi.Listing
	serveErr chan error
}

// start runs a source's poll when on and returns the channel it reports
// on; off, it returns nil, which the loop's select never picks.
func start[T any](ctx context.Context, run func(func()), on bool, buffer int, poll func(context.Context, chan<- T)) chan T {
	if !on {
		return nil
	}
	ch := make(chan T, buffer)
	run(func() { poll(ctx, ch) })
	return ch
}

// loop is the one goroutine that reads and changes the engine. After each
// input it publishes the set and stores a view of its state for the status
// page, so that no reader ever waits on it or it on them.
func (d *Daemon) loop(ctx context.Context, src sources) error {
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	for {
		input := true
		select {
		case <-ctx.Done():
			return nil
		case err := <-src.serveErr:
			if err != nil {
				return fmt.Errorf("serving: %w", err)
			}
			return nil
		case r := <-src.etcd:
			d.etcdReports(r, src.etcd)
		case <-d.plugins.Ready():
			updates := d.plugins.Drain()
			d.pluginsStarted(updates)
			d.handle(d.engine.Pushes(updates), time.Time{})
		case o := <-src.scrapes:
			if d.scraped(o) {
				d.handle(d.engine.Scrape(o.Result), time.Time{})
			}
		case u := <-src.routers:
			d.traefikAnswered(u)
			d.handle(d.engine.Routers(u), time.Time{})
		case l := <-src.services:
			d.servicesListed(l)
			d.handle(d.engine.Services(l), time.Time{})
		case a := <-src.answers:
			if !d.coordinatorAnswered(a) {
				a.Table = nil // counted and logged; the last good table stays
			}
			d.handle(d.engine.Coordinator(a), time.Time{})
		case now := <-tick.C:
			input = d.housekeeping(now)
			if now.Sub(d.sinceAt) >= sinceEvery {
				d.trackSince(now)
			}
		}
		d.show(time.Now(), input)
	}
}

// etcdReports applies a watch report and every one already queued behind
// it, so that a burst renders once.
func (d *Daemon) etcdReports(r watch.Report, more <-chan watch.Report) {
	var batches []watch.Batch
	take := func(r watch.Report) {
		if r.Status != nil {
			d.watchStatus(*r.Status)
		} else {
			batches = append(batches, *r.Batch)
		}
	}
	take(r)
	for queued := true; queued; {
		select {
		case r = <-more:
			take(r)
		default:
			queued = false
		}
	}
	if len(batches) == 0 {
		return
	}
	d.etcdListed(batches)
	last := batches[len(batches)-1]
	res := d.engine.Etcd(batches)
	d.etcdDecoded(res)
	if res.Changed && d.coord != nil {
		d.coord.Kick()
	}
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
		d.api.Ask(res.AskRouters, res.AskMiddlewares, now)
		d.api.Remind(res.RemindRouters, now)
		if res.Sweep {
			d.api.Sweep()
		}
	}
	if res.AskServices && d.services != nil {
		d.services.Kick()
	}
	for _, delay := range res.PushDelays {
		d.metrics.EtcdToPluginPush.Observe(delay.Seconds())
	}
	if !d.engine.Ready(now) {
		return
	}
	d.ready.Store(true)
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
