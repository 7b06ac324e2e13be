package daemon

import (
	"cmp"
	"errors"
	"log/slog"
	"strings"
	"time"

	"github.com/traefik-sd/traefik-sd/sidecar/engine"
	"github.com/traefik-sd/traefik-sd/sidecar/pluginsync"
	"github.com/traefik-sd/traefik-sd/sidecar/redact"
	"github.com/traefik-sd/traefik-sd/sidecar/routeinfo"
	"github.com/traefik-sd/traefik-sd/sidecar/scrape"
	"github.com/traefik-sd/traefik-sd/sidecar/source"
	"github.com/traefik-sd/traefik-sd/sidecar/targets"
	"github.com/traefik-sd/traefik-sd/sidecar/traefikapi"
	"github.com/traefik-sd/traefik-sd/sidecar/watch"
)

// observed is what the log last said of each outside party and of etcd's
// listing, so that a change is logged once, not on every attempt. The
// loop owns it.
type observed struct {
	apiFailing, coordFailing, scrapeFailing, etcdFailing, servicesFailing bool
	listedOnce                                                            bool
	// coordSkipped is the last answer's unjoinable routes, logged when it changes.
	coordSkipped string
	// listedKeys counts the keys of the listing whose pages are coming in.
	listedKeys int
}

// outage logs a party's loss when it starts failing (lost, with err) and
// its return when it answers again (back), once each and not on every
// attempt; attrs name the party. It tells whether err is a failure.
func (d *Daemon) outage(failing *bool, err error, lost, back string, attrs ...any) bool {
	switch {
	case err != nil && !*failing:
		d.log.Warn(lost, append(attrs[:len(attrs):len(attrs)], "error", err)...)
	case err == nil && *failing:
		d.log.Info(back, attrs...)
	}
	*failing = err != nil
	return err != nil
}

// redactedURL is a party's URL as the log shows it, redacted only when a
// line is written: most attempts log nothing.
type redactedURL string

func (u redactedURL) LogValue() slog.Value { return slog.StringValue(redact.URL(string(u))) }

// observe counts and logs one source's message (each source's loss and
// return through outage); it tells whether the engine should apply it.
func (d *Daemon) observe(m source.Reported) bool {
	switch m := m.(type) {
	case source.EtcdReports:
		for _, r := range m {
			if r.Status != nil {
				d.watchStatus(*r.Status)
			}
		}
		batches := m.Batches()
		if len(batches) == 0 {
			return false
		}
		d.etcdListed(batches)
	case source.PushBatch:
		d.pluginsStarted(m)
	case source.Scrape:
		return d.scraped(m)
	case source.Routers:
		d.traefikAnswered(m)
	case source.Services:
		d.servicesListed(m)
	case source.Routes:
		// A failed answer is applied too, without its table: it still ends
		// the wait of the servers held for the coordinator.
		d.coordinatorAnswered(m)
	}
	return true
}

// errNoAnswer stands in for a stale watch's error should it come without
// one: a loss must never read as a return.
var errNoAnswer = errors.New("etcd does not answer")

func (d *Daemon) watchStatus(st watch.Status) {
	endpoints := d.cfg.Etcd.Endpoints
	if st.Connected {
		d.metrics.EtcdConnected.Set(1)
		d.metrics.EtcdLastProgress.SetToCurrentTime()
		d.etcdContact = time.Now()
		d.outage(&d.etcdFailing, nil, "", "etcd answers again", "endpoints", endpoints, "revision", st.Revision)
		return
	}
	d.metrics.EtcdConnected.Set(0)
	keeping := "serving the last good target set"
	if !d.ready.Load() {
		keeping = "nothing is published until it is listed"
	}
	if st.Stale {
		d.outage(&d.etcdFailing, cmp.Or(st.Err, errNoAnswer), "etcd is not answering; "+keeping, "", "endpoints", endpoints)
		return
	}
	if st.Relist {
		reason := "watch_lost"
		if st.Compacted {
			reason = "compacted"
		}
		d.metrics.EtcdRelists.WithLabelValues(reason).Inc()
	}
	if st.Err != nil {
		d.outage(&d.etcdFailing, st.Err, "etcd watch interrupted; re-listing, and "+keeping, "", "endpoints", endpoints)
	}
}

// etcdListed logs each listing of etcd among batches.
func (d *Daemon) etcdListed(batches []watch.Batch) {
	for _, b := range batches {
		if b.Since != 0 {
			d.metrics.EtcdRelistsChangesOnly.Inc()
			d.metrics.EtcdRelistRangesListed.Add(float64(len(b.Listed)))
			d.log.Info("etcd re-read: what was written since the watch was lost, and the ranges that lost a key meanwhile", "rootKey", d.cfg.Etcd.RootKey, "keys", len(b.Events), "rangesListed", len(b.Listed), "since", b.Since, "revision", b.Revision)
		}
		if !b.Snapshot {
			continue
		}
		if b.Part == 0 {
			d.listedKeys = 0
		}
		d.listedKeys += len(b.Events)
		if b.More {
			continue
		}
		what := "etcd re-listed; the target set follows it again"
		if !d.listedOnce {
			what = "etcd listed; the target set follows it from here"
			d.listedOnce = true
		}
		d.log.Info(what, "rootKey", d.cfg.Etcd.RootKey, "keys", d.listedKeys, "pages", b.Part+1, "revision", b.Revision)
	}
}

// etcdDecoded counts and logs the objects etcd's batches left undecodable.
func (d *Daemon) etcdDecoded(res engine.Result) {
	for _, err := range res.DecodeErrors {
		d.metrics.DecodeErrors.Inc()
		d.log.Warn("ignoring an object that cannot be decoded; the rest still counts", "error", err)
	}
	if store := d.engine.Store(); store != nil {
		d.metrics.DecodeBroken.Set(float64(len(store.Errors)))
		d.metrics.EtcdObjects.Set(float64(store.Len()))
	}
}

// etcdApplied measures the last batch applied, once it is published.
func (d *Daemon) etcdApplied(last watch.Batch) {
	d.metrics.EtcdRevision.Set(float64(last.Revision))
	d.metrics.EtcdLastEvent.Set(float64(last.Received.UnixNano()) / 1e9)
}

// pluginsStarted counts and logs each Traefik process that began a session.
func (d *Daemon) pluginsStarted(updates []pluginsync.Update) {
	for _, u := range updates {
		if u.NewBoot {
			d.metrics.PluginSessions.Inc()
			d.log.Info("a Traefik process's plugin started pushing", "node", u.Node, "middlewares", len(u.Live))
		}
	}
}

// pluginsGone logs each Traefik process whose plugin went silent.
func (d *Daemon) pluginsGone(gone []pluginsync.Update) {
	for _, u := range gone {
		d.log.Warn("the plugin of a Traefik process went silent; withdrawing what it served", "node", u.Node)
	}
}

// housekept measures the plugin's processes and the circuits Traefik does
// not serve, and logs each of those once it has been unserved a while.
func (d *Daemon) housekept(now time.Time) {
	d.metrics.PluginNodes.Set(float64(d.plugins.Nodes()))
	d.metrics.PluginMiddlewares.Set(float64(d.engine.LiveMiddlewares()))
	counts, report := d.engine.NotServed(now)
	for reason, n := range counts {
		d.metrics.CircuitsNotServed.WithLabelValues(reason).Set(float64(n))
	}
	for _, ns := range report {
		if ns.Reason == targets.ReasonNoRoutes {
			d.log.Info("a circuit has no routes yet; nothing to publish until it has", "circuit", ns.CircuitID, "router", ns.Router)
			continue
		}
		d.log.Warn("etcd holds a circuit that Traefik does not serve; not publishing it",
			"circuit", ns.CircuitID, "router", ns.Router, "reason", ns.Reason, "traefikError", ns.Error)
	}
}

// rendered measures a set just published: from start (the publishing's)
// and, when known, from received (the change's).
func (d *Daemon) rendered(received, start time.Time) {
	d.metrics.Renders.Inc()
	d.metrics.RenderSeconds.Observe(time.Since(start).Seconds())
	if !received.IsZero() {
		d.metrics.ChangeToPublish.Observe(time.Since(received).Seconds())
	}
	for _, g := range []string{targets.GroupRoute, targets.GroupTraefik, targets.GroupWorker, targets.GroupCoordinator} {
		d.metrics.Targets.WithLabelValues(g).Set(float64(d.pub.Current().Groups[g]))
	}
	d.log.Debug("published targets", "bytes", d.pub.Current().Size())
}

// scraped counts one scrape of Traefik's /metrics; it tells whether the
// scrape succeeded.
func (d *Daemon) scraped(o scrape.Outcome) bool {
	if d.outage(&d.scrapeFailing, o.Err, "scraping Traefik's /metrics failed; keeping the last known server health",
		"Traefik's /metrics answers again", "url", redactedURL(d.cfg.Traefik.MetricsURL)) {
		d.metrics.Scrapes.WithLabelValues("error").Inc()
		return false
	}
	d.metrics.Scrapes.WithLabelValues("ok").Inc()
	d.metrics.ScrapeLastSuccess.Set(float64(o.At.UnixNano()) / 1e9)
	d.scrapeAt = o.At
	d.downServers = o.Result.DownServers()
	if o.Result.Broken > 0 {
		d.metrics.ScrapeBrokenLines.Add(float64(o.Result.Broken))
		d.log.Warn("skipped malformed lines in Traefik's metrics", "count", o.Result.Broken, "first", o.Result.FirstError)
	}
	d.metrics.TraefikServersDown.Set(float64(o.Result.DownCount()))
	if o.Result.LastReloadSuccess > 0 {
		d.metrics.TraefikReload.WithLabelValues("success").Set(o.Result.LastReloadSuccess)
	}
	if o.Result.LastReloadFailure > 0 {
		d.metrics.TraefikReload.WithLabelValues("failure").Set(o.Result.LastReloadFailure)
	}
	return true
}

// traefikAnswered counts an answer of Traefik's API.
func (d *Daemon) traefikAnswered(u traefikapi.Update) {
	kind := "routers"
	if u.Sweep {
		kind = "sweep"
	}
	if d.outage(&d.apiFailing, u.Err, "asking Traefik's API which routers it serves failed; keeping its last answer",
		"Traefik's API answers again", "url", redactedURL(d.cfg.Traefik.APIURL)) {
		d.metrics.TraefikAPI.WithLabelValues("error").Inc()
		return
	}
	d.metrics.TraefikAPI.WithLabelValues(kind).Inc()
	d.metrics.TraefikAPILastSuccess.Set(float64(u.At.UnixNano()) / 1e9)
}

// servicesListed counts a listing of Traefik's services.
func (d *Daemon) servicesListed(l traefikapi.Listing) {
	if d.outage(&d.servicesFailing, l.Err, "listing Traefik's services failed; keeping the last listing",
		"Traefik's API lists its services again", "url", redactedURL(d.cfg.Traefik.APIURL)) {
		d.metrics.TraefikAPI.WithLabelValues("error").Inc()
		return
	}
	d.metrics.TraefikAPI.WithLabelValues("services").Inc()
	d.metrics.TraefikAPILastSuccess.Set(float64(l.At.UnixNano()) / 1e9)
}

// coordinatorAnswered counts an answer of the coordinator; a failed one
// keeps its last good table.
func (d *Daemon) coordinatorAnswered(a routeinfo.Answer) bool {
	if d.outage(&d.coordFailing, a.Err, "asking the coordinator for route ids failed; keeping its last good answer",
		"the coordinator answers again", "url", redactedURL(d.cfg.BackendAI.CoordinatorURL)) {
		d.metrics.CoordinatorPolls.WithLabelValues("error").Inc()
		return false
	}
	d.metrics.CoordinatorPolls.WithLabelValues("ok").Inc()
	d.metrics.CoordinatorLastSuccess.SetToCurrentTime()
	d.metrics.CoordinatorRoutes.Set(float64(a.Table.Len()))
	skipped := a.Table.Skipped()
	d.metrics.CoordinatorRoutesSkipped.Set(float64(len(skipped)))
	if joined := strings.Join(skipped, "; "); joined != d.coordSkipped {
		d.coordSkipped = joined
		if len(skipped) > 0 {
			d.log.Warn("the coordinator's answer names routes that cannot be joined; their targets get no route or session id from it",
				"routes", len(skipped), "skipped", joined)
		}
	}
	return true
}

// startedLog says, once serving, how the sidecar runs, and what anyone who
// reaches a non-loopback address may do without credentials.
func (d *Daemon) startedLog() {
	mode := "etcd"
	if d.cfg.PluginOnly() {
		mode = "plugin-only (no etcd)"
	}
	d.log.Info("traefik-sd started", "address", d.addr.String(), "mode", mode, "rootKey", d.cfg.Etcd.RootKey,
		"traefikAPI", redact.URL(d.cfg.Traefik.APIURL), "authority", d.cfg.Worker.Authority, "node", d.cfg.Worker.Node)
	if d.api == nil {
		d.log.Warn("neither --traefik.apiURL nor --traefik.metricsURL is set: routers Traefik disabled cannot be told apart, so only the plugin's pushes gate what is published")
	}
	for _, w := range d.cfg.AccessWarnings() {
		d.log.Warn(w, "address", d.cfg.Address)
	}
}
