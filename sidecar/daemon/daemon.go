// Package daemon runs the sidecar: it starts every source, hands what each
// reports to the engine in one loop, and publishes the engine's target set.
// It owns every goroutine it starts and stops them all before Run returns.
//
// Data flows one way: sources (etcd watch, plugin pushes, Traefik's
// /metrics, Traefik's API, the coordinator's API) -> engine -> publisher
// (HTTP SD body) and Backend.AI's ServiceDiscovery store.
package daemon

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"fmt"
	"hash/maphash"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"
	"github.com/traefik-sd/traefik-sd/sidecar/config"
	"github.com/traefik-sd/traefik-sd/sidecar/engine"
	"github.com/traefik-sd/traefik-sd/sidecar/etcdconn"
	"github.com/traefik-sd/traefik-sd/sidecar/metrics"
	"github.com/traefik-sd/traefik-sd/sidecar/pluginsync"
	"github.com/traefik-sd/traefik-sd/sidecar/publish"
	"github.com/traefik-sd/traefik-sd/sidecar/redact"
	"github.com/traefik-sd/traefik-sd/sidecar/routeinfo"
	"github.com/traefik-sd/traefik-sd/sidecar/scrape"
	"github.com/traefik-sd/traefik-sd/sidecar/server"
	"github.com/traefik-sd/traefik-sd/sidecar/servicediscovery"
	"github.com/traefik-sd/traefik-sd/sidecar/status"
	"github.com/traefik-sd/traefik-sd/sidecar/targets"
	"github.com/traefik-sd/traefik-sd/sidecar/traefikapi"
	"github.com/traefik-sd/traefik-sd/sidecar/watch"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// Daemon is one running sidecar.
type Daemon struct {
	cfg     *config.Configuration
	log     *slog.Logger
	metrics *metrics.Metrics
	pub     *publish.Publisher
	plugins *pluginsync.Store
	engine  *engine.Engine
	api     *traefikapi.Watcher // nil when Traefik's API is not asked
	coord   *routeinfo.Poller   // nil without a coordinator
	// sdUpdates hand the latest set to each ServiceDiscovery writer.
	sdUpdates []chan []targets.Target
	ready     atomic.Bool
	addr      net.Addr

	// traefikAuth carries every request to Traefik's API and /metrics,
	// with --traefik.auth.* and over --traefik.tls.*.
	traefikAuth *traefikapi.Auth

	// Each outside party's state, so that a loss and a return are logged
	// once each, not on every attempt.
	apiFailing, coordFailing, scrapeFailing, etcdFailing bool
	listedOnce                                           bool
	// coordSkipped is the last answer's unjoinable routes, logged when it changes.
	coordSkipped string

	// The status page: its requests to the loop, and what the loop keeps
	// for it.
	statusReq   chan chan *status.Snapshot
	since       map[uint64]time.Time
	sinceSeed   maphash.Seed
	sinceAt     time.Time // of the last trackSince
	sinceDigest [sha256.Size]byte
	revision    int64
	etcdContact time.Time
	downServers []string
	scrapeAt    time.Time

	// server and redisPassword take re-read secrets (SIGHUP).
	server        *server.Server
	redisPassword atomic.Pointer[string]
	secretsMu     sync.Mutex
	// sentinelAuth is the password the Sentinels were dialled with, kept
	// to warn when a re-read changes it (it applies from the next start).
	sentinelAuth string
}

// applySecrets hands the configured secrets to what checks or sends them.
func (d *Daemon) applySecrets() {
	d.server.SetCredentials(server.Credentials{PushToken: d.cfg.Plugin.Token, ReadToken: d.cfg.Server.ReadToken,
		ReadUser: d.cfg.Server.ReadUser, ReadPassword: d.cfg.Server.ReadPassword})
	if d.coord != nil {
		d.coord.Client.SetToken(d.cfg.BackendAI.CoordinatorToken)
	}
	pw := d.cfg.BackendAI.Redis.Password
	d.redisPassword.Store(&pw)
	d.setTraefikCredentials()
}

// setTraefikCredentials hands --traefik.auth.* to the transport every
// request to Traefik goes through.
func (d *Daemon) setTraefikCredentials() {
	a := d.cfg.Traefik.Auth
	d.traefikAuth.SetCredentials(traefikapi.Credentials{Username: a.Username, Password: a.Password, Token: a.Token})
}

// traefikTLS reads --traefik.tls.* into that transport, before any request.
func (d *Daemon) traefikTLS() error {
	if d.cfg.Traefik.TLS == nil {
		return nil
	}
	tc, err := d.cfg.Traefik.TLS.ClientConfig("--traefik")
	if err != nil {
		return err
	}
	d.traefikAuth.Base.(*http.Transport).TLSClientConfig = tc
	return nil
}

// ReloadSecrets re-reads every …File secret (on SIGHUP) and uses the new
// values from the next request or connection on: the push and read
// credentials, the coordinator's token, the Redis password and what is sent
// to Traefik's API and /metrics (--traefik.auth.*); and the
// server's TLS certificate, key and client CA, served from the next
// handshake on (a file that does not read keeps the ones in use). etcd's
// passwords are taken at the next start (its client keeps its session), and
// so is the Sentinels' (go-redis dials them with a fixed password).
func (d *Daemon) ReloadSecrets() {
	d.secretsMu.Lock()
	defer d.secretsMu.Unlock()
	if s := d.cfg.Server; d.server != nil && s.TLSCert != "" {
		if err := d.server.LoadTLS(s.TLSCert, s.TLSKey, s.TLSClientCA); err != nil {
			d.log.Warn("re-reading the TLS certificate failed; the one in use stays", "error", err)
		} else {
			d.log.Info("TLS certificate re-read; new connections get it", "cert", s.TLSCert, "clientCA", s.TLSClientCA)
		}
	}
	changed, err := d.cfg.ReadSecrets()
	if err != nil {
		d.log.Warn("re-reading the secret files failed; the secrets in use stay", "error", err)
		return
	}
	if d.server != nil {
		d.applySecrets()
	}
	for _, name := range changed {
		if strings.HasSuffix(name, "etcd.password") {
			d.log.Warn("a changed etcd password is used from the next start", "option", name)
		}
	}
	if r := d.cfg.BackendAI.Redis; d.server != nil && len(r.Sentinel) > 0 && r.SentinelAuth() != d.sentinelAuth {
		d.log.Warn("a changed Sentinel password is used from the next start (without sentinelPassword, the Redis password stands for it)",
			"option", "--backendai.redis.sentinelPassword")
	}
	d.log.Info("secret files re-read", "changed", strings.Join(changed, ","))
}

// New prepares a daemon from a completed configuration.
func New(cfg *config.Configuration, log *slog.Logger) *Daemon {
	opts := targets.Options{
		WorkerAuthority:   cfg.Worker.Authority,
		WorkerNode:        cfg.Worker.Node,
		Provider:          cfg.Traefik.Provider,
		RoutesAll:         cfg.Routes.All,
		TraefikTarget:     cfg.Traefik.Target,
		WorkerTarget:      cfg.AppProxy.WorkerTarget,
		CoordinatorTarget: cfg.AppProxy.CoordinatorTarget,
		MaxTargets:        cfg.Limits.MaxTargets,
		MaxLabels:         cfg.Limits.MaxLabels,
	}
	if u, err := url.Parse(cfg.Traefik.MetricsURL); err == nil && cfg.Traefik.MetricsURL != "" {
		opts.TraefikMetricsPath = u.Path
		opts.TraefikScheme = u.Scheme
	}
	d := &Daemon{
		cfg:       cfg,
		sinceSeed: maphash.MakeSeed(),
		log:       log,
		metrics:   metrics.New(),
		pub:       publish.New(),
		plugins:   pluginsync.NewStore(),
		// TLS is read in Run, which can fail before it serves.
		traefikAuth: traefikapi.NewAuth(nil),
		engine: engine.New(engine.Options{
			Targets:         opts,
			Etcd:            !cfg.PluginOnly(),
			PluginName:      cfg.Plugin.Name,
			AskTraefik:      cfg.Traefik.APIURL != "",
			StartGrace:      time.Duration(cfg.Plugin.StartGrace),
			NotServedSettle: notServedSettle,
			AskCoordinator:  cfg.BackendAI.CoordinatorURL != "",
		}, time.Now()),
	}
	if cfg.Plugin.MaxSessions > 0 {
		d.plugins.SetMaxSessions(cfg.Plugin.MaxSessions)
	}
	d.setTraefikCredentials()
	if cfg.Traefik.APIURL != "" {
		d.api = &traefikapi.Watcher{
			Client:        &traefikapi.Client{Base: cfg.Traefik.APIURL, HTTP: d.traefikAuth.Client(10 * time.Second)},
			SweepInterval: time.Duration(cfg.Traefik.APISweep),
		}
	}
	if cfg.BackendAI.CoordinatorURL != "" {
		client := &routeinfo.Client{URL: cfg.BackendAI.CoordinatorURL, WorkerID: cfg.BackendAI.WorkerID,
			HTTP: &http.Client{Timeout: 10 * time.Second}}
		client.SetToken(cfg.BackendAI.CoordinatorToken)
		d.coord = &routeinfo.Poller{
			Client:   client,
			Interval: time.Duration(cfg.BackendAI.PollInterval),
			Settle:   500 * time.Millisecond,
		}
	}
	return d
}

// notServedSettle is how long a circuit etcd holds may stay unserved by
// Traefik before it is logged: a new circuit is unserved until Traefik's
// next reload, which at 10,000 routers takes several seconds.
const notServedSettle = 15 * time.Second

// Addr is the address the API listens on, once Run has started it.
func (d *Daemon) Addr() net.Addr { return d.addr }

// sources are the channels the loop reads; a nil channel is a source that
// does not run.
type sources struct {
	etcd     chan watch.Report
	scrapes  chan scrape.Outcome
	routers  chan traefikapi.Update
	answers  chan routeinfo.Answer
	serveErr chan error
}

// Run serves until ctx is done, then stops everything it started and waits for it.
func (d *Daemon) Run(ctx context.Context, started chan<- net.Addr) error {
	if err := d.traefikTLS(); err != nil {
		return err
	}
	var client *clientv3.Client
	if !d.cfg.PluginOnly() {
		var err error
		if client, err = d.etcdClient(); err != nil {
			return err
		}
		defer client.Close()
	}
	stores, closeStores, err := d.serviceDiscoveryStores()
	if err != nil {
		return err
	}
	defer closeStores()

	api := &server.Server{
		Publisher:     d.pub,
		Plugins:       d.plugins,
		Metrics:       d.metrics,
		Log:           d.log,
		Ready:         d.ready.Load,
		MaxPushBytes:  d.cfg.Server.MaxPushBytes,
		MaxConnsPerIP: d.cfg.Server.MaxConnsPerIP,
	}
	if d.cfg.Server.TLSCert != "" {
		// Read before listening, so that "started" is never logged by a
		// sidecar about to fail on its certificate.
		if err := api.LoadTLS(d.cfg.Server.TLSCert, d.cfg.Server.TLSKey, d.cfg.Server.TLSClientCA); err != nil {
			return err
		}
	}
	ln, err := net.Listen("tcp", d.cfg.Address)
	if err != nil {
		return fmt.Errorf("--address %s: %w", d.cfg.Address, err)
	}
	d.addr = ln.Addr()
	d.server = api
	d.statusReq = make(chan chan *status.Snapshot)
	api.Status = d.statusOf
	d.applySecrets()
	httpd := api.HTTPServer(time.Duration(d.cfg.Server.ReadTimeout), time.Duration(d.cfg.Server.WriteTimeout), d.cfg.Server.MaxConns)
	d.metrics.CountConnections(func() float64 { return float64(httpd.GetOpenConnectionsCount()) },
		func() float64 { return float64(httpd.GetRejectedConnectionsCount()) })

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	run := func(f func()) {
		wg.Add(1)
		go func() { defer wg.Done(); f() }()
	}
	src := sources{serveErr: make(chan error, 1)}
	run(func() {
		// The bound per client address comes first, before a TLS handshake.
		served := api.Listener(ln, d.cfg.Server.TLSCert == "")
		if d.cfg.Server.TLSCert != "" {
			served = tls.NewListener(served, api.TLSConfig())
		}
		src.serveErr <- httpd.Serve(served)
	})
	if client != nil {
		src.etcd = make(chan watch.Report, 64)
		w := &watch.Watcher{Client: client, Prefix: d.cfg.Etcd.RootKey, Ranges: d.cfg.Etcd.Ranges, Timeout: time.Duration(d.cfg.Etcd.RequestTimeout),
			ProgressInterval: time.Duration(d.cfg.Etcd.ProgressInterval)}
		run(func() { w.Run(ctx, src.etcd) })
	}
	if d.cfg.Traefik.MetricsURL != "" {
		src.scrapes = make(chan scrape.Outcome, 1)
		s := &scrape.Scraper{URL: d.cfg.Traefik.MetricsURL, Interval: time.Duration(d.cfg.Traefik.ScrapeInterval), Client: d.traefikAuth.Client(0)}
		run(func() { s.Run(ctx, src.scrapes) })
	}
	if d.api != nil {
		src.routers = make(chan traefikapi.Update, 4)
		run(func() { d.api.Run(ctx, src.routers) })
	}
	if d.coord != nil {
		src.answers = make(chan routeinfo.Answer, 1)
		run(func() { d.coord.Run(ctx, src.answers) })
	}
	for _, store := range stores {
		updates := make(chan []targets.Target, 1)
		d.sdUpdates = append(d.sdUpdates, updates)
		run(func() { d.runServiceDiscovery(ctx, store, updates) })
	}

	if started != nil {
		started <- d.addr
	}
	mode := "etcd"
	if d.cfg.PluginOnly() {
		mode = "plugin-only (no etcd)"
	}
	d.log.Info("traefik-sd started", "address", d.addr.String(), "mode", mode, "rootKey", d.cfg.Etcd.RootKey,
		"traefikAPI", redact.URL(d.cfg.Traefik.APIURL), "authority", d.cfg.Worker.Authority, "node", d.cfg.Worker.Node)
	if d.api == nil {
		d.log.Warn("neither --traefik.apiURL nor --traefik.metricsURL is set: routers Traefik disabled cannot be told apart, so only the plugin's pushes gate what is published")
	}
	d.warnOpenAccess()
	err = d.loop(ctx, src)
	cancel()
	_ = httpd.Shutdown()
	wg.Wait()
	return err
}

func (d *Daemon) loop(ctx context.Context, src sources) error {
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	for {
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
			d.handle(d.engine.Pushes(d.pluginUpdates()), time.Time{})
		case o := <-src.scrapes:
			if d.scraped(o) {
				d.handle(d.engine.Scrape(o.Result), time.Time{})
			}
		case u := <-src.routers:
			d.traefikAnswered(u)
			d.handle(d.engine.Routers(u), time.Time{})
		case a := <-src.answers:
			if !d.coordinatorAnswered(a) {
				a.Table = nil // counted and logged; the last good table stays
			}
			d.handle(d.engine.Coordinator(a), time.Time{})
		case now := <-tick.C:
			d.housekeeping(now)
			if now.Sub(d.sinceAt) >= sinceEvery {
				d.trackSince(now)
			}
		case reply := <-d.statusReq:
			reply <- d.snapshot(time.Now())
		}
	}
}

// warnOpenAccess says, at start, what anyone who reaches a non-loopback
// address may do without credentials.
func (d *Daemon) warnOpenAccess() {
	for _, w := range d.cfg.AccessWarnings() {
		d.log.Warn(w, "address", d.cfg.Address)
	}
}

// pluginUpdates takes the plugin's queued updates, counting and logging
// each Traefik process that began a session.
func (d *Daemon) pluginUpdates() []pluginsync.Update {
	updates := d.plugins.Drain()
	for _, u := range updates {
		if u.NewBoot {
			d.metrics.PluginSessions.Inc()
			d.log.Info("a Traefik process's plugin started pushing", "node", u.Node, "middlewares", len(u.Live))
		}
	}
	return updates
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
	for _, b := range batches {
		if b.Snapshot {
			what := "etcd re-listed; the target set follows it again"
			if !d.listedOnce {
				what = "etcd listed; the target set follows it from here"
				d.listedOnce = true
			}
			d.log.Info(what, "rootKey", d.cfg.Etcd.RootKey, "keys", len(b.Events), "revision", b.Revision)
		}
	}
	last := batches[len(batches)-1]
	res := d.engine.Etcd(batches)
	for _, err := range res.DecodeErrors {
		d.metrics.DecodeErrors.Inc()
		d.log.Warn("ignoring an object that cannot be decoded; the rest still counts", "error", err)
	}
	if store := d.engine.Store(); store != nil {
		d.metrics.DecodeBroken.Set(float64(len(store.Errors)))
		d.metrics.EtcdObjects.Set(float64(store.Len()))
	}
	if res.Changed && d.coord != nil {
		d.coord.Kick()
	}
	d.handle(res, last.Received)
	// Set last, so that a revision shown is one applied and published.
	d.revision = last.Revision
	d.metrics.EtcdRevision.Set(float64(last.Revision))
	d.metrics.EtcdLastEvent.Set(float64(last.Received.UnixNano()) / 1e9)
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
	if !d.pub.SetLazy(d.engine.Digest(), func() publish.Lazy { return d.engine.Freeze() }, d.engine.Groups()) {
		return
	}
	if len(d.sdUpdates) > 0 {
		set := d.engine.Targets()
		for _, updates := range d.sdUpdates {
			// Latest wins: a set the writer has not taken yet is replaced.
			select {
			case <-updates:
			default:
			}
			updates <- set
		}
	}
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

// housekeeping runs on a tick: processes gone silent, the first set once
// the start grace is over, and the circuits Traefik does not serve.
func (d *Daemon) housekeeping(now time.Time) {
	if gone := d.plugins.Expire(now); len(gone) > 0 {
		for _, u := range gone {
			d.log.Warn("the plugin of a Traefik process went silent; withdrawing what it served", "node", u.Node)
		}
		d.handle(d.engine.Pushes(gone), time.Time{})
	} else {
		d.handle(engine.Result{}, time.Time{}) // the start grace may be over
	}
	d.engine.ExpirePending(now)
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

func (d *Daemon) watchStatus(st watch.Status) {
	if st.Connected {
		d.metrics.EtcdConnected.Set(1)
		d.metrics.EtcdLastProgress.SetToCurrentTime()
		d.etcdContact = time.Now()
		if d.etcdFailing {
			d.log.Info("etcd answers again", "endpoints", d.cfg.Etcd.Endpoints, "revision", st.Revision)
			d.etcdFailing = false
		}
		return
	}
	d.metrics.EtcdConnected.Set(0)
	keeping := "serving the last good target set"
	if !d.ready.Load() {
		keeping = "nothing is published until it is listed"
	}
	if st.Stale {
		if !d.etcdFailing {
			d.log.Warn("etcd is not answering; "+keeping, "endpoints", d.cfg.Etcd.Endpoints, "error", st.Err)
		}
		d.etcdFailing = true
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
		if !d.etcdFailing {
			d.log.Warn("etcd watch interrupted; re-listing, and "+keeping, "endpoints", d.cfg.Etcd.Endpoints, "error", st.Err)
		}
		d.etcdFailing = true
	}
}

// scraped counts one scrape of Traefik's /metrics; it tells whether the
// scrape succeeded.
func (d *Daemon) scraped(o scrape.Outcome) bool {
	if d.outage(&d.scrapeFailing, o.Err, "scraping Traefik's /metrics failed; keeping the last known server health",
		"Traefik's /metrics answers again", d.cfg.Traefik.MetricsURL) {
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
		"Traefik's API answers again", d.cfg.Traefik.APIURL) {
		d.metrics.TraefikAPI.WithLabelValues("error").Inc()
		return
	}
	d.metrics.TraefikAPI.WithLabelValues(kind).Inc()
	d.metrics.TraefikAPILastSuccess.Set(float64(u.At.UnixNano()) / 1e9)
}

// coordinatorAnswered counts an answer of the coordinator; a failed one
// keeps its last good table.
func (d *Daemon) coordinatorAnswered(a routeinfo.Answer) bool {
	if d.outage(&d.coordFailing, a.Err, "asking the coordinator for route ids failed; keeping its last good answer",
		"the coordinator answers again", d.cfg.BackendAI.CoordinatorURL) {
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

// outage logs a party's loss and its return once each, not on every
// attempt; it tells whether err is a failure.
func (d *Daemon) outage(failing *bool, err error, lost, back, url string) bool {
	switch {
	case err != nil && !*failing:
		d.log.Warn(lost, "url", redact.URL(url), "error", err)
	case err == nil && *failing:
		d.log.Info(back, "url", redact.URL(url))
	}
	*failing = err != nil
	return err != nil
}

func (d *Daemon) etcdClient() (*clientv3.Client, error) {
	c := d.cfg.Etcd
	return etcdconn.Dial("--etcd", c.Endpoints, c.Username, c.Password, c.TLS, time.Duration(c.DialTimeout), d.log)
}

// serviceDiscoveryStores connects to the Backend.AI stores configured;
// closing them is the caller's, after every writer has withdrawn.
func (d *Daemon) serviceDiscoveryStores() ([]servicediscovery.Store, func(), error) {
	var stores []servicediscovery.Store
	var closers []func()
	closeAll := func() {
		for _, c := range closers {
			c()
		}
	}
	if sd := d.cfg.BackendAI.Etcd; len(sd.Endpoints) > 0 {
		client, err := etcdconn.Dial("--backendai.etcd", sd.Endpoints, sd.Username, sd.Password, sd.TLS, time.Duration(d.cfg.Etcd.DialTimeout), d.log)
		if err != nil {
			return nil, closeAll, err
		}
		closers = append(closers, func() { client.Close() })
		stores = append(stores, &servicediscovery.EtcdStore{Client: client, Namespace: sd.Namespace,
			LeaseTTL: 3 * time.Duration(d.cfg.BackendAI.Heartbeat)})
	}
	if r := d.cfg.BackendAI.Redis; r.Enabled() {
		client, err := d.redisClient(r)
		if err != nil {
			closeAll()
			return nil, func() {}, err
		}
		closers = append(closers, func() { _ = client.Close() })
		stores = append(stores, &servicediscovery.RedisStore{Client: client})
	}
	return stores, closeAll, nil
}

// redisClient dials the Redis the Manager reads: the address given, or
// the master the Sentinels name, followed through failovers (go-redis asks
// the Sentinels again when they announce a new master or a connection
// breaks), as Backend.AI's ValkeySentinelClient does.
func (d *Daemon) redisClient(r config.SDRedis) (*redis.Client, error) {
	// The client's own log (a dial failing, say) goes through ours at
	// debug; each outcome that matters is logged by the writer.
	redis.SetLogger(redisLog{d.log})
	var tc *tls.Config
	if r.TLS != nil {
		var err error
		if tc, err = r.TLS.ClientConfig("--backendai.redis"); err != nil {
			return nil, err
		}
	}
	// Asked on every new connection to the master, so that a password
	// rotated on SIGHUP is used without a restart.
	credentials := func() (string, string) {
		pw := ""
		if p := d.redisPassword.Load(); p != nil {
			pw = *p
		}
		return r.Username, pw
	}
	dial := time.Duration(d.cfg.Etcd.DialTimeout)
	if len(r.Sentinel) == 0 {
		return redis.NewClient(&redis.Options{Addr: r.Address, DB: r.DB, CredentialsProvider: credentials,
			TLSConfig: tc, DialTimeout: dial, DisableIdentity: true,
			MaintNotificationsConfig: &maintnotifications.Config{Mode: maintnotifications.ModeDisabled}}), nil
	}
	// Sentinels take a plain password, fixed for the client's life (go-redis
	// has no provider for them); Backend.AI sends them no user name either.
	d.secretsMu.Lock()
	d.sentinelAuth = r.SentinelAuth()
	d.secretsMu.Unlock()
	return redis.NewFailoverClient(&redis.FailoverOptions{MasterName: r.ServiceName, SentinelAddrs: r.Sentinel,
		SentinelPassword: r.SentinelAuth(), DB: r.DB, CredentialsProvider: credentials,
		TLSConfig: tc, DialTimeout: dial, DisableIdentity: true}), nil
}

// redisLog carries go-redis's internal messages into the sidecar's log.
type redisLog struct{ log *slog.Logger }

func (l redisLog) Printf(_ context.Context, format string, v ...interface{}) {
	l.log.Debug("redis client", "message", fmt.Sprintf(format, v...))
}

// runServiceDiscovery writes every published set into one Backend.AI store.
func (d *Daemon) runServiceDiscovery(ctx context.Context, store servicediscovery.Store, updates <-chan []targets.Target) {
	name := store.Name()
	failing := false
	w := &servicediscovery.Writer{
		Store: store, Version: "traefik-sd", Authority: d.cfg.Worker.Authority, Node: d.cfg.Worker.Node,
		Heartbeat: time.Duration(d.cfg.BackendAI.Heartbeat), Timeout: time.Duration(d.cfg.Etcd.RequestTimeout),
		OnError: func(err error) {
			d.metrics.SDErrors.WithLabelValues(name).Inc()
			if !failing {
				d.log.Warn("writing Backend.AI ServiceDiscovery entries failed; retrying every 2s", "store", name, "error", err)
			}
			failing = true
		},
		OnSync: func(entries int) {
			d.metrics.SDEntries.WithLabelValues(name).Set(float64(entries))
		},
		OnWritten: func() {
			d.metrics.SDLastSuccess.WithLabelValues(name).SetToCurrentTime()
			if failing {
				d.log.Info("writing Backend.AI ServiceDiscovery entries works again", "store", name)
			}
			failing = false
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
