// Package daemon runs the sidecar: it starts every source, hands what each
// reports to the engine in one loop, and publishes the engine's target set.
// It owns every goroutine it starts and stops them all before Run returns.
//
// Data flows one way: sources (etcd watch, plugin pushes, Traefik's
// /metrics, Traefik's API, the coordinator's API) -> engine -> publisher
// (HTTP SD body), Backend.AI's ServiceDiscovery store and the status page.
// Only the loop (loop.go) touches the engine; what reads its results
// (observe.go, servicediscovery.go, status.go) never makes it wait.
package daemon

import (
	"context"
	"crypto/tls"
	"fmt"
	"hash/maphash"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"github.com/traefik-sd/traefik-sd/sidecar/config"
	"github.com/traefik-sd/traefik-sd/sidecar/dynamic"
	"github.com/traefik-sd/traefik-sd/sidecar/engine"
	"github.com/traefik-sd/traefik-sd/sidecar/metrics"
	"github.com/traefik-sd/traefik-sd/sidecar/pluginsync"
	"github.com/traefik-sd/traefik-sd/sidecar/publish"
	"github.com/traefik-sd/traefik-sd/sidecar/routeinfo"
	"github.com/traefik-sd/traefik-sd/sidecar/scrape"
	"github.com/traefik-sd/traefik-sd/sidecar/server"
	"github.com/traefik-sd/traefik-sd/sidecar/source"
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
	scraper *scrape.Scraper     // nil without --traefik.metricsURL
	api     *traefikapi.Watcher // nil when Traefik's API is not asked
	// services lists Traefik's services: without etcd, each router's
	// servers; without /metrics, their health; with --routes.all, TCP
	// routers. nil when none of these is wanted.
	services *traefikapi.Poller
	coord    *routeinfo.Poller // nil without a coordinator
	ready    atomic.Bool
	firstSet func() // OnFirstSet's
	addr     net.Addr
	server   *server.Server

	// traefikAuth carries every request to Traefik's API and /metrics,
	// with --traefik.auth.* and over --traefik.tls.*.
	traefikAuth *traefikapi.Auth

	observed         // observe.go
	shown            // status.go
	secrets          // secrets.go
	serviceDiscovery // servicediscovery.go
}

// OnFirstSet has fn called once, on the loop, when the first set may be
// served: the sidecar's start is over. Call it before Run.
func (d *Daemon) OnFirstSet(fn func()) { d.firstSet = fn }

// New prepares a daemon from a completed configuration.
func New(cfg *config.Configuration, log *slog.Logger) *Daemon {
	opts := targets.Options{
		WorkerAuthority:   cfg.Worker.Authority,
		WorkerNode:        cfg.Worker.Node,
		Provider:          cfg.Traefik.Provider,
		RoutesAll:         cfg.Routes.All,
		KeepDown:          cfg.Routes.KeepDown,
		NoMeta:            !cfg.Routes.Meta,
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
		cfg:     cfg,
		log:     log,
		metrics: metrics.New(),
		pub:     newPublisher(cfg.Server.KeepBodyUpTo),
		plugins: pluginsync.NewStore(),
		// TLS is read in Run, which can fail before it serves.
		traefikAuth: traefikapi.NewAuth(nil),
		engine: engine.New(engine.Options{
			Targets:         opts,
			ListServices:    cfg.ListsServices(),
			HealthFromAPI:   cfg.Traefik.MetricsURL == "" && cfg.Traefik.APIURL != "",
			Etcd:            !cfg.PluginOnly(),
			PluginName:      cfg.Plugin.Name,
			AskTraefik:      cfg.Traefik.APIURL != "",
			StartGrace:      time.Duration(cfg.Plugin.StartGrace),
			NotServedSettle: notServedSettle,
			AskCoordinator:  cfg.BackendAI.CoordinatorURL != "",
		}, time.Now()),
		shown: shown{sinceSeed: maphash.MakeSeed()},
	}
	if cfg.Plugin.MaxSessions > 0 {
		d.plugins.SetMaxSessions(cfg.Plugin.MaxSessions)
	}
	d.setTraefikCredentials()
	if cfg.Traefik.MetricsURL != "" {
		d.scraper = &scrape.Scraper{URL: cfg.Traefik.MetricsURL, Interval: time.Duration(cfg.Traefik.ScrapeInterval), Client: d.traefikAuth.Client(0)}
	}
	if cfg.Traefik.APIURL != "" {
		d.api = &traefikapi.Watcher{
			Client:        &traefikapi.Client{Base: cfg.Traefik.APIURL, HTTP: d.traefikAuth.Client(10 * time.Second)},
			SweepInterval: time.Duration(cfg.Traefik.APISweep),
		}
	}
	if cfg.ListsServices() {
		d.services = traefikapi.NewPoller(&traefikapi.Client{Base: cfg.Traefik.APIURL, HTTP: d.traefikAuth.Client(10 * time.Second)},
			time.Duration(cfg.Traefik.ScrapeInterval), cfg.PluginOnly() || cfg.Traefik.MetricsURL == "", cfg.Routes.All)
	}
	if cfg.BackendAI.CoordinatorURL != "" {
		client := &routeinfo.Client{URL: cfg.BackendAI.CoordinatorURL, WorkerID: cfg.BackendAI.WorkerID,
			HTTP: &http.Client{Timeout: 10 * time.Second}}
		client.SetToken(cfg.BackendAI.CoordinatorToken)
		d.coord = &routeinfo.Poller{
			Client:   client,
			Interval: time.Duration(cfg.BackendAI.PollInterval),
			Settle:   500 * time.Millisecond,
			// A coordinator's batch of five circuits, a Manager's route
			// changes: asked one by one. A start-up's rewrite of every
			// circuit asks for the list.
			MaxCircuits: 64,
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
	// The page may be asked before the loop handles its first input.
	d.show(time.Now(), true)
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
	var etcd *watch.Watcher
	if client != nil {
		etcd = &watch.Watcher{Client: client, Prefix: d.cfg.Etcd.RootKey, Ranges: d.cfg.Etcd.Ranges, Timeout: time.Duration(d.cfg.Etcd.RequestTimeout),
			ProgressInterval: time.Duration(d.cfg.Etcd.ProgressInterval), Findable: dynamic.Findable}
	}
	// One line per source: one that is off does not run.
	messages := make(chan source.Reported)
	feedEtcd(ctx, run, etcd, messages)
	feed(ctx, run, true, d.plugins.Run, messages)
	feed(ctx, run, d.scraper != nil, d.scraper.Run, messages)
	feed(ctx, run, d.api != nil, d.api.Run, messages)
	feed(ctx, run, d.services != nil, d.services.Run, messages)
	feed(ctx, run, d.coord != nil, d.coord.Run, messages)
	serveErr := make(chan error, 1)
	run(func() {
		// The bound per client address comes first, before a TLS handshake.
		served := api.Listener(ln, d.cfg.Server.TLSCert == "")
		if d.cfg.Server.TLSCert != "" {
			served = tls.NewListener(served, api.TLSConfig())
		}
		serveErr <- httpd.Serve(served)
	})
	d.startServiceDiscovery(ctx, run, stores)

	if started != nil {
		started <- d.addr
	}
	d.startedLog()
	err = d.loop(ctx, messages, serveErr)
	cancel()
	_ = httpd.Shutdown()
	wg.Wait()
	return err
}

func newPublisher(keepUpTo int) *publish.Publisher {
	p := publish.New()
	p.KeepUpTo = keepUpTo
	return p
}
