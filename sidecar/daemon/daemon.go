// Package daemon runs the sidecar: it owns every goroutine, feeds the etcd
// watcher's batches and Traefik's scrapes into the decoded configuration, and
// republishes the target set whenever what would be published changes.
//
// Data flows one way: sources (watch, scrape, plugin pushes) -> one loop that
// owns the dynamic.Store -> targets.Build -> publish.Publisher -> server.
package daemon

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/traefik-sd/traefik-sd/sidecar/config"
	"github.com/traefik-sd/traefik-sd/sidecar/dynamic"
	"github.com/traefik-sd/traefik-sd/sidecar/metrics"
	"github.com/traefik-sd/traefik-sd/sidecar/pluginsync"
	"github.com/traefik-sd/traefik-sd/sidecar/publish"
	"github.com/traefik-sd/traefik-sd/sidecar/routeinfo"
	"github.com/traefik-sd/traefik-sd/sidecar/scrape"
	"github.com/traefik-sd/traefik-sd/sidecar/server"
	"github.com/traefik-sd/traefik-sd/sidecar/servicediscovery"
	"github.com/traefik-sd/traefik-sd/sidecar/targets"
	"github.com/traefik-sd/traefik-sd/sidecar/watch"
	"github.com/valyala/fasthttp"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// Daemon is one running sidecar.
type Daemon struct {
	cfg     *config.Configuration
	log     *slog.Logger
	metrics *metrics.Metrics
	pub     *publish.Publisher
	plugins *pluginsync.Store
	store   *dynamic.Store
	builder *targets.Builder
	health  health
	routes  *routeinfo.Table // the coordinator's last good answer, if asked
	kick    chan struct{}    // asks the coordinator poller to ask now
	// sdUpdates hands the latest set to the ServiceDiscovery writer, if any.
	sdUpdates chan []targets.Target
	ready     atomic.Bool
	opts      targets.Options
	addr      net.Addr
}

// health is the last good scrape's view of down servers.
type health struct{ down map[string]bool }

func (h health) Down(service, serverURL string) bool {
	return h.down[scrape.ServerKey(service, serverURL)]
}

// New prepares a daemon from a completed configuration.
func New(cfg *config.Configuration, log *slog.Logger) *Daemon {
	m := metrics.New()
	d := &Daemon{
		cfg:     cfg,
		log:     log,
		metrics: m,
		pub:     publish.New(),
		plugins: pluginsync.NewStore(func(delay time.Duration) { m.EtcdToPluginPush.Observe(delay.Seconds()) }),
		store:   dynamic.NewStore(cfg.Plugin.Name),
		kick:    make(chan struct{}, 1),
		opts: targets.Options{
			WorkerAuthority:   cfg.Worker.Authority,
			WorkerNode:        cfg.Worker.Node,
			Provider:          cfg.Traefik.Provider,
			RoutesAll:         cfg.Routes.All,
			TraefikTarget:     cfg.Traefik.Target,
			WorkerTarget:      cfg.AppProxy.WorkerTarget,
			CoordinatorTarget: cfg.AppProxy.CoordinatorTarget,
			MaxTargets:        cfg.Limits.MaxTargets,
			MaxLabels:         cfg.Limits.MaxLabels,
		},
	}
	if u, err := url.Parse(cfg.Traefik.MetricsURL); err == nil && cfg.Traefik.MetricsURL != "" {
		d.opts.TraefikMetricsPath = u.Path
		d.opts.TraefikScheme = u.Scheme
	}
	d.builder = targets.NewBuilder(d.opts)
	d.builder.SetRenderer(publish.AppendJSON)
	return d
}

// Addr is the address the API listens on, once Run has started it.
func (d *Daemon) Addr() net.Addr { return d.addr }

// Run serves until ctx is done, then stops everything it started and waits for it.
func (d *Daemon) Run(ctx context.Context, started chan<- net.Addr) error {
	client, err := d.etcdClient()
	if err != nil {
		return err
	}
	defer client.Close()

	ln, err := net.Listen("tcp", d.cfg.Address)
	if err != nil {
		return fmt.Errorf("--address %s: %w", d.cfg.Address, err)
	}
	d.addr = ln.Addr()
	api := &server.Server{
		Publisher:    d.pub,
		Plugins:      d.plugins,
		Metrics:      d.metrics,
		Log:          d.log,
		PushToken:    d.cfg.Plugin.Token,
		ReadToken:    d.cfg.Server.ReadToken,
		ReadUser:     d.cfg.Server.ReadUser,
		ReadPassword: d.cfg.Server.ReadPassword,
		Ready:        d.ready.Load,
		MaxPushBytes: d.cfg.Server.MaxPushBytes,
	}
	httpd := &fasthttp.Server{
		Handler:            api.Handler(),
		Name:               "traefik-sd",
		ReadTimeout:        time.Duration(d.cfg.Server.ReadTimeout),
		WriteTimeout:       time.Duration(d.cfg.Server.WriteTimeout),
		IdleTimeout:        time.Minute,
		MaxRequestBodySize: d.cfg.Server.MaxPushBytes + 1,
		Concurrency:        d.cfg.Server.MaxConns,
		NoDefaultDate:      true,
		Logger:             slogPrinter{d.log},
		ErrorHandler:       d.requestError,
	}
	d.metrics.CountConnections(func() float64 { return float64(httpd.GetOpenConnectionsCount()) },
		func() float64 { return float64(httpd.GetRejectedConnectionsCount()) })

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	serveErr := make(chan error, 1)
	wg.Add(1)
	go func() {
		defer wg.Done()
		var err error
		if d.cfg.Server.TLSCert != "" {
			err = httpd.ServeTLS(ln, d.cfg.Server.TLSCert, d.cfg.Server.TLSKey)
		} else {
			err = httpd.Serve(ln)
		}
		serveErr <- err
	}()

	batches := make(chan watch.Batch, 64)
	statuses := make(chan watch.Status, 16)
	w := &watch.Watcher{Client: client, Prefix: d.cfg.Etcd.RootKey, Timeout: time.Duration(d.cfg.Etcd.RequestTimeout),
		ProgressInterval: time.Duration(d.cfg.Etcd.ProgressInterval)}
	wg.Add(1)
	go func() { defer wg.Done(); w.Run(ctx, batches, statuses) }()

	scrapes := make(chan scrape.Outcome, 1)
	if d.cfg.Traefik.MetricsURL != "" {
		s := &scrape.Scraper{URL: d.cfg.Traefik.MetricsURL, Interval: time.Duration(d.cfg.Traefik.ScrapeInterval), Client: &http.Client{}}
		wg.Add(1)
		go func() { defer wg.Done(); s.Run(ctx, scrapes) }()
	}

	if len(d.cfg.BackendAI.Etcd.Endpoints) > 0 {
		sd := d.cfg.BackendAI.Etcd
		sdClient, err := newEtcdClient("--backendai.etcd", sd.Endpoints, sd.Username, sd.Password, sd.TLS, time.Duration(d.cfg.Etcd.DialTimeout))
		if err != nil {
			cancel()
			_ = httpd.Shutdown()
			wg.Wait()
			return err
		}
		defer sdClient.Close()
		d.sdUpdates = make(chan []targets.Target, 1)
		wg.Add(1)
		go func() { defer wg.Done(); d.runServiceDiscovery(ctx, sdClient, d.sdUpdates) }()
	}

	tables := make(chan *routeinfo.Table, 1)
	if d.cfg.BackendAI.CoordinatorURL != "" {
		wg.Add(1)
		go func() { defer wg.Done(); d.pollCoordinator(ctx, tables) }()
	}

	if started != nil {
		started <- d.addr
	}
	d.log.Info("traefik-sd started", "address", d.addr.String(), "rootKey", d.cfg.Etcd.RootKey,
		"authority", d.cfg.Worker.Authority, "node", d.cfg.Worker.Node)
	err = d.loop(ctx, batches, statuses, scrapes, tables, serveErr)
	cancel()
	_ = httpd.Shutdown()
	wg.Wait()
	return err
}

func (d *Daemon) loop(ctx context.Context, batches <-chan watch.Batch, statuses <-chan watch.Status,
	scrapes <-chan scrape.Outcome, tables <-chan *routeinfo.Table, serveErr <-chan error,
) error {
	expire := time.NewTicker(time.Second)
	defer expire.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case err := <-serveErr:
			if err != nil {
				return fmt.Errorf("serving: %w", err)
			}
			return nil
		case b := <-batches:
			d.applyBatch(b)
			// Take what else is queued before rendering once.
			for more := true; more; {
				select {
				case b = <-batches:
					d.applyBatch(b)
				default:
					more = false
				}
			}
			d.commit(b.Received)
		case st := <-statuses:
			d.watchStatus(st)
		case t := <-tables:
			if !t.Equal(d.routes) {
				d.routes = t
				d.republish(time.Time{}, targets.Changes{All: true})
			}
		case o := <-scrapes:
			if changed := d.applyScrape(o); len(changed) > 0 {
				d.republish(time.Time{}, targets.Changes{Services: changed})
			}
		case now := <-expire.C:
			for _, node := range d.plugins.Expire(now) {
				d.log.Warn("plugin of a Traefik process went silent; forgetting it", "node", node)
			}
			nodes := d.plugins.Nodes()
			total := 0
			for _, n := range nodes {
				total += len(n.Middlewares)
			}
			d.metrics.PluginNodes.Set(float64(len(nodes)))
			d.metrics.PluginMiddlewares.Set(float64(total))
		}
	}
}

func (d *Daemon) applyBatch(b watch.Batch) {
	if b.Snapshot {
		d.store.Reset(b.Events)
	} else {
		for _, ev := range b.Events {
			id, sub, ok := dynamic.SplitKey(ev.Key)
			if !ok {
				continue
			}
			if ev.Deleted {
				d.store.Delete(id, sub)
			} else {
				d.store.Put(id, sub, ev.Value)
			}
		}
	}
	d.metrics.EtcdRevision.Set(float64(b.Revision))
	d.metrics.EtcdLastEvent.Set(float64(b.Received.UnixNano()) / 1e9)
}

// commit decodes what the batches changed and republishes if that matters.
func (d *Daemon) commit(received time.Time) {
	changed, errs := d.store.Commit()
	for _, err := range errs {
		d.metrics.DecodeErrors.Inc()
		d.log.Warn("ignoring an object that cannot be decoded; the rest still counts", "error", err)
	}
	d.metrics.DecodeBroken.Set(float64(len(d.store.Errors)))
	d.metrics.EtcdObjects.Set(float64(d.store.Len()))
	for _, id := range changed {
		if id.Kind != dynamic.Middlewares {
			continue
		}
		if m := d.store.Middlewares[id.Name]; m != nil && m.SD != nil {
			d.plugins.NoteEtcdChange(id.Name, m.SD, received)
		}
	}
	if len(changed) > 0 || !d.ready.Load() {
		d.republish(received, targets.Changes{Objects: changed, All: !d.ready.Load()})
		select { // new circuits may have routes the coordinator can name
		case d.kick <- struct{}{}:
		default:
		}
	}
	d.ready.Store(true)
}

// republish rebuilds what the changes touch and publishes the set if its
// body differs.
func (d *Daemon) republish(received time.Time, ch targets.Changes) {
	start := time.Now()
	var routes targets.RouteInfo
	if d.routes != nil {
		routes = d.routes
	}
	d.builder.Update(d.store, d.health, routes, ch)
	for limit, n := range d.builder.Dropped() {
		d.metrics.TargetsDropped.WithLabelValues(limit).Set(float64(n))
	}
	if !d.pub.SetDigested(d.builder.Digest(), d.builder.AppendJSON, d.builder.Groups()) {
		return
	}
	if d.sdUpdates != nil {
		// Latest wins: a set the writer has not taken yet is replaced.
		select {
		case <-d.sdUpdates:
		default:
		}
		d.sdUpdates <- d.builder.Targets()
	}
	d.metrics.Renders.Inc()
	d.metrics.RenderSeconds.Observe(time.Since(start).Seconds())
	if !received.IsZero() {
		d.metrics.ChangeToPublish.Observe(time.Since(received).Seconds())
	}
	for _, g := range []string{targets.GroupRoute, targets.GroupTraefik, targets.GroupWorker, targets.GroupCoordinator} {
		d.metrics.Targets.WithLabelValues(g).Set(float64(d.pub.Current().Groups[g]))
	}
	d.log.Debug("published targets", "bytes", len(d.pub.Current().Body))
}

func (d *Daemon) watchStatus(st watch.Status) {
	if st.Connected {
		d.metrics.EtcdConnected.Set(1)
		d.metrics.EtcdLastProgress.SetToCurrentTime()
		return
	}
	d.metrics.EtcdConnected.Set(0)
	if st.Stale {
		d.log.Warn("etcd is not answering; serving the last good target set", "error", st.Err)
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
		d.log.Warn("etcd watch interrupted; serving the last good target set and re-listing", "error", st.Err)
	}
}

// applyScrape takes one scrape; it returns the services (name@provider)
// whose servers' health changed.
func (d *Daemon) applyScrape(o scrape.Outcome) []string {
	if o.Err != nil {
		d.metrics.Scrapes.WithLabelValues("error").Inc()
		d.log.Debug("scraping Traefik failed; keeping the last known server health", "error", o.Err)
		return nil
	}
	d.metrics.Scrapes.WithLabelValues("ok").Inc()
	d.metrics.ScrapeLastSuccess.Set(float64(o.At.UnixNano()) / 1e9)
	if o.Result.Broken > 0 {
		d.metrics.ScrapeBrokenLines.Add(float64(o.Result.Broken))
		d.log.Warn("skipped malformed lines in Traefik's metrics", "count", o.Result.Broken, "first", o.Result.FirstError)
	}
	d.metrics.TraefikServersDown.Set(float64(len(o.Result.Down)))
	if o.Result.LastReloadSuccess > 0 {
		d.metrics.TraefikReload.WithLabelValues("success").Set(o.Result.LastReloadSuccess)
	}
	if o.Result.LastReloadFailure > 0 {
		d.metrics.TraefikReload.WithLabelValues("failure").Set(o.Result.LastReloadFailure)
	}
	changed := changedServices(d.health.down, o.Result.Down)
	d.health = health{down: o.Result.Down}
	return changed
}

// changedServices lists the services with a server in one down set but not
// the other.
func changedServices(before, after map[string]bool) []string {
	seen := map[string]bool{}
	var out []string
	note := func(key string) {
		service, _, _ := strings.Cut(key, "\x00")
		if !seen[service] {
			seen[service] = true
			out = append(out, service)
		}
	}
	for k := range before {
		if !after[k] {
			note(k)
		}
	}
	for k := range after {
		if !before[k] {
			note(k)
		}
	}
	return out
}

func (d *Daemon) etcdClient() (*clientv3.Client, error) {
	c := d.cfg.Etcd
	return newEtcdClient("--etcd", c.Endpoints, c.Username, c.Password, c.TLS, time.Duration(c.DialTimeout))
}

func newEtcdClient(option string, endpoints []string, user, password string, t *config.TLS, dial time.Duration) (*clientv3.Client, error) {
	cc := clientv3.Config{
		Endpoints:            endpoints,
		DialTimeout:          dial,
		DialKeepAliveTime:    5 * time.Second,
		DialKeepAliveTimeout: 3 * time.Second,
		Username:             user,
		Password:             password,
		Logger:               zap.NewNop(),
	}
	if t != nil {
		tc := &tls.Config{InsecureSkipVerify: t.InsecureSkipVerify} //nolint:gosec // an operator's explicit choice
		if t.CA != "" {
			pem, err := os.ReadFile(t.CA)
			if err != nil {
				return nil, fmt.Errorf("%s.tls.ca: %w", option, err)
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("%s.tls.ca: no certificate found", option)
			}
			tc.RootCAs = pool
		}
		if t.Cert != "" {
			cert, err := tls.LoadX509KeyPair(t.Cert, t.Key)
			if err != nil {
				return nil, fmt.Errorf("%s.tls.cert/key: %w", option, err)
			}
			tc.Certificates = []tls.Certificate{cert}
		}
		cc.TLS = tc
	}
	client, err := clientv3.New(cc)
	if err != nil {
		return nil, fmt.Errorf("etcd client (%s): %w", option, err)
	}
	return client, nil
}

// runServiceDiscovery writes every published set into Backend.AI's store.
func (d *Daemon) runServiceDiscovery(ctx context.Context, client *clientv3.Client, updates <-chan []targets.Target) {
	w := &servicediscovery.Writer{
		Client: client, Namespace: d.cfg.BackendAI.Etcd.Namespace, Version: "traefik-sd",
		Heartbeat: time.Duration(d.cfg.BackendAI.Heartbeat), Timeout: time.Duration(d.cfg.Etcd.RequestTimeout),
		OnError: func(err error) {
			d.metrics.SDErrors.Inc()
			d.log.Warn("writing Backend.AI ServiceDiscovery entries failed; retrying", "error", err)
		},
		OnSync: func(entries, skipped int) {
			d.metrics.SDEntries.Set(float64(entries))
			d.metrics.SDSkipped.Set(float64(skipped))
		},
	}
	w.Run(ctx, updates)
}

// pollCoordinator asks the coordinator for route ids every poll interval
// and soon after etcd changes. A failed answer keeps the last good one
// (nothing is sent), and says so in the metrics and, once, in the log.
func (d *Daemon) pollCoordinator(ctx context.Context, out chan<- *routeinfo.Table) {
	c := &routeinfo.Client{URL: d.cfg.BackendAI.CoordinatorURL, WorkerID: d.cfg.BackendAI.WorkerID,
		Token: d.cfg.BackendAI.CoordinatorToken, HTTP: &http.Client{Timeout: 10 * time.Second}}
	ticker := time.NewTicker(time.Duration(d.cfg.BackendAI.PollInterval))
	defer ticker.Stop()
	failing := false
	for {
		t, err := c.Fetch(ctx)
		switch {
		case err != nil && ctx.Err() != nil:
			return
		case err != nil:
			d.metrics.CoordinatorPolls.WithLabelValues("error").Inc()
			if !failing {
				d.log.Warn("asking the coordinator for route ids failed; keeping its last good answer", "error", err)
			}
			failing = true
		default:
			if failing {
				d.log.Info("the coordinator answers again")
			}
			failing = false
			d.metrics.CoordinatorPolls.WithLabelValues("ok").Inc()
			d.metrics.CoordinatorLastSuccess.SetToCurrentTime()
			d.metrics.CoordinatorRoutes.Set(float64(t.Len()))
			select {
			case out <- t:
			case <-ctx.Done():
				return
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		case <-d.kick:
			// A burst of etcd changes (a coordinator batch) asks once.
			select {
			case <-ctx.Done():
				return
			case <-time.After(500 * time.Millisecond):
			}
		}
	}
}

// requestError answers and counts a request fasthttp refused before any
// handler ran: too slow, too large or malformed.
func (d *Daemon) requestError(ctx *fasthttp.RequestCtx, err error) {
	var netErr net.Error
	switch {
	case errors.As(err, &netErr) && netErr.Timeout():
		d.metrics.RequestErrors.WithLabelValues("timeout").Inc()
		ctx.Error("request timeout", fasthttp.StatusRequestTimeout)
	case errors.Is(err, fasthttp.ErrBodyTooLarge):
		d.metrics.RequestErrors.WithLabelValues("too_large").Inc()
		ctx.Error("request body too large", fasthttp.StatusRequestEntityTooLarge)
	default:
		d.metrics.RequestErrors.WithLabelValues("malformed").Inc()
		ctx.Error("malformed request", fasthttp.StatusBadRequest)
	}
}

type slogPrinter struct{ log *slog.Logger }

func (p slogPrinter) Printf(format string, args ...interface{}) {
	p.log.Warn(fmt.Sprintf(format, args...))
}
