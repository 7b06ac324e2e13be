// Package metrics defines the sidecar's own metrics, served on /metrics.
package metrics

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/traefik-sd/traefik-sd/sidecar/version"
)

// Metrics are the sidecar's collectors, registered on their own registry.
type Metrics struct {
	Registry *prometheus.Registry

	Targets                  *prometheus.GaugeVec
	TargetsDropped           *prometheus.GaugeVec
	Renders                  prometheus.Counter
	RenderSeconds            prometheus.Histogram
	ChangeToPublish          prometheus.Histogram
	EtcdConnected            prometheus.Gauge
	EtcdRevision             prometheus.Gauge
	EtcdLastEvent            prometheus.Gauge
	EtcdLastProgress         prometheus.Gauge
	EtcdRelists              *prometheus.CounterVec
	EtcdRelistsChangesOnly   prometheus.Counter
	EtcdRelistRangesListed   prometheus.Counter
	EtcdObjects              prometheus.Gauge
	DecodeErrors             prometheus.Counter
	DecodeBroken             prometheus.Gauge
	Pushes                   *prometheus.CounterVec
	PluginNodes              prometheus.Gauge
	PluginMiddlewares        prometheus.Gauge
	EtcdToPluginPush         prometheus.Histogram
	Scrapes                  *prometheus.CounterVec
	ScrapeBrokenLines        prometheus.Counter
	ScrapeLastSuccess        prometheus.Gauge
	TraefikServersDown       prometheus.Gauge
	TraefikReload            *prometheus.GaugeVec
	Requests                 *prometheus.CounterVec
	RequestErrors            *prometheus.CounterVec
	CoordinatorPolls         *prometheus.CounterVec
	CoordinatorLastSuccess   prometheus.Gauge
	CoordinatorRoutes        prometheus.Gauge
	SDEntries                *prometheus.GaugeVec
	SDErrors                 *prometheus.CounterVec
	SDLastSuccess            *prometheus.GaugeVec
	CoordinatorRoutesSkipped prometheus.Gauge
	PluginSessions           prometheus.Counter
	CircuitsNotServed        *prometheus.GaugeVec
	TraefikAPI               *prometheus.CounterVec
	TraefikAPILastSuccess    prometheus.Gauge
	// RejectedPerIP counts connections refused past --server.maxConnsPerIP.
	RejectedPerIP prometheus.Counter
}

// CountConnections exposes the server's open and refused connections
// (refused past --server.maxConns), read from the server when scraped.
func (m *Metrics) CountConnections(open, rejected func() float64) {
	m.Registry.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "traefik_sd", Name: "http_open_connections", Help: "Open connections to the sidecar's API."}, open),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: "traefik_sd", Name: "http_rejected_connections_total", Help: "Connections refused because --server.maxConns were open."}, rejected),
	)
}

// New creates and registers every collector.
func New() *Metrics {
	const ns = "traefik_sd"
	m := &Metrics{
		Registry:                 prometheus.NewRegistry(),
		Targets:                  prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: ns, Name: "targets", Help: "Published targets per service group."}, []string{"service_group"}),
		TargetsDropped:           prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: ns, Name: "targets_left_out", Help: "Targets left out by a limit (--limits.maxTargets, --limits.maxLabels)."}, []string{"limit"}),
		Renders:                  prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Name: "renders_total", Help: "Times the target set changed and was rendered."}),
		RenderSeconds:            prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: ns, Name: "render_seconds", Help: "Time to build and render the target set.", Buckets: prometheus.ExponentialBuckets(0.0001, 4, 9)}),
		ChangeToPublish:          prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: ns, Name: "etcd_change_to_publish_seconds", Help: "Delay from receiving an etcd change to publishing the new target set.", Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14)}),
		EtcdConnected:            prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Name: "etcd_watch_up", Help: "1 while the etcd watch is established."}),
		EtcdRevision:             prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Name: "etcd_revision", Help: "Last etcd revision applied, and published if it changed the set."}),
		EtcdLastEvent:            prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Name: "etcd_last_update_timestamp_seconds", Help: "When the last etcd listing or change was applied."}),
		EtcdLastProgress:         prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Name: "etcd_last_contact_timestamp_seconds", Help: "When etcd last confirmed the watch is current; the published set may be stale by now minus this."}),
		EtcdRelists:              prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "etcd_relists_total", Help: "Re-lists of the root key, by reason."}, []string{"reason"}),
		EtcdRelistsChangesOnly:   prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Name: "etcd_relists_read_changes_total", Help: "Re-lists that read only the keys written since the watch was lost, and listed only the ranges between two marks that lost a key meanwhile; the others listed the root key whole."}),
		EtcdRelistRangesListed:   prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Name: "etcd_relist_ranges_listed_total", Help: "Ranges of the root key listed by re-lists that read only changes, because a key in them was deleted while the watch was lost."}),
		EtcdObjects:              prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Name: "etcd_objects", Help: "HTTP routers, services and middlewares under the root key."}),
		DecodeErrors:             prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Name: "decode_errors_total", Help: "Objects under the root key that could not be decoded (each time one is written)."}),
		DecodeBroken:             prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Name: "decode_broken_objects", Help: "Objects currently ignored because they cannot be decoded."}),
		Pushes:                   prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "plugin_pushes_total", Help: "Plugin pushes by result."}, []string{"result"}),
		PluginNodes:              prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Name: "plugin_nodes", Help: "Traefik processes whose plugin pushes are current."}),
		PluginMiddlewares:        prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Name: "plugin_middlewares", Help: "traefik-sd middlewares live in Traefik, summed over processes."}),
		EtcdToPluginPush:         prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: ns, Name: "etcd_change_to_plugin_push_seconds", Help: "Delay from an etcd change of a traefik-sd middleware to the plugin push showing Traefik runs it.", Buckets: prometheus.ExponentialBuckets(0.05, 2, 12)}),
		Scrapes:                  prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "traefik_scrapes_total", Help: "Scrapes of Traefik's /metrics by result."}, []string{"result"}),
		ScrapeBrokenLines:        prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Name: "traefik_scrape_broken_lines_total", Help: "Malformed lines skipped in Traefik's /metrics."}),
		ScrapeLastSuccess:        prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Name: "traefik_scrape_last_success_timestamp_seconds", Help: "When Traefik's /metrics was last read; server health older than this is stale."}),
		TraefikServersDown:       prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Name: "traefik_servers_down", Help: "Servers Traefik reports down (withdrawn from the targets)."}),
		TraefikReload:            prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: ns, Name: "traefik_last_reload_timestamp_seconds", Help: "Traefik's last configuration reload, by outcome."}, []string{"outcome"}),
		Requests:                 prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "http_requests_total", Help: "Requests to the sidecar by path and status code."}, []string{"path", "code"}),
		RequestErrors:            prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "http_request_errors_total", Help: "Requests refused before any handler ran, by kind (tls_handshake, timeout, too_large, malformed)."}, []string{"kind"}),
		CoordinatorPolls:         prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "coordinator_polls_total", Help: "Answers asked of the AppProxy coordinator for route ids, by result."}, []string{"result"}),
		CoordinatorLastSuccess:   prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Name: "coordinator_last_success_timestamp_seconds", Help: "When the coordinator last answered; route ids older than this may be stale."}),
		CoordinatorRoutes:        prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Name: "coordinator_routes", Help: "Routes named in the coordinator's last good answer."}),
		SDEntries:                prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: ns, Name: "servicediscovery_entries", Help: "Entries this sidecar keeps in Backend.AI's ServiceDiscovery store, by store (etcd, redis)."}, []string{"store"}),
		SDErrors:                 prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "servicediscovery_write_errors_total", Help: "Failed writes to Backend.AI's ServiceDiscovery store (retried), by store."}, []string{"store"}),
		SDLastSuccess:            prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: ns, Name: "servicediscovery_last_success_timestamp_seconds", Help: "When the ServiceDiscovery store last took a whole sync, by store."}, []string{"store"}),
		PluginSessions:           prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Name: "plugin_sessions_total", Help: "Traefik processes whose plugin began a session: a full push under a boot id this sidecar had not seen for its node (a Traefik start or restart, or this sidecar's own)."}),
		CoordinatorRoutesSkipped: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Name: "coordinator_routes_skipped", Help: "Routes in the coordinator's last good answer that cannot be joined (kernel_host null or empty, kernel_port out of range)."}),
		CircuitsNotServed:        prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: ns, Name: "circuits_not_served", Help: "Circuits etcd holds that are not published because Traefik does not serve them, by reason (not_loaded, disabled, plugin_not_live, no_routes: a circuit with no routes yet, which is no fault)."}, []string{"reason"}),
		TraefikAPI:               prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "traefik_api_answers_total", Help: "Rounds of questions to Traefik's API about its routers, by result (routers, sweep, error)."}, []string{"result"}),
		TraefikAPILastSuccess:    prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Name: "traefik_api_last_success_timestamp_seconds", Help: "When Traefik's API last answered; router states older than this may be stale."}),
		RejectedPerIP:            prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Name: "http_rejected_connections_per_ip_total", Help: "Connections refused because their client address already held --server.maxConnsPerIP."}),
	}
	m.Registry.MustRegister(m.Targets, m.TargetsDropped, m.Renders, m.RenderSeconds, m.ChangeToPublish, m.EtcdConnected, m.EtcdRevision,
		m.EtcdLastEvent, m.EtcdLastProgress, m.EtcdRelists, m.EtcdRelistsChangesOnly, m.EtcdRelistRangesListed, m.EtcdObjects, m.DecodeErrors, m.DecodeBroken, m.Pushes, m.PluginNodes,
		m.PluginMiddlewares, m.EtcdToPluginPush, m.Scrapes, m.ScrapeBrokenLines, m.ScrapeLastSuccess,
		m.TraefikServersDown, m.TraefikReload, m.Requests, m.RequestErrors, m.CoordinatorPolls, m.CoordinatorLastSuccess, m.CoordinatorRoutes, m.SDEntries, m.SDErrors, m.SDLastSuccess, m.CoordinatorRoutesSkipped, m.PluginSessions,
		m.CircuitsNotServed, m.TraefikAPI, m.TraefikAPILastSuccess, m.RejectedPerIP,
		prometheus.NewGoCollector(), prometheus.NewProcessCollector(prometheus.ProcessCollectorOpts{}))
	v, r, g := version.Info()
	build := prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: ns, Name: "build_info", Help: "Always 1: the build's version, VCS revision and Go version as labels."}, []string{"version", "revision", "goversion"})
	build.WithLabelValues(v, r, g).Set(1)
	m.Registry.MustRegister(build)
	// Every labelled series the sidecar can count starts at 0, so that
	// rate() and absent() work before the first event.
	for _, result := range []string{"full", "delta", "unauthorized", "too_large", "malformed", "need_full", "node_held", "too_many_sessions", "error"} {
		m.Pushes.WithLabelValues(result)
	}
	for _, reason := range []string{"watch_lost", "compacted"} {
		m.EtcdRelists.WithLabelValues(reason)
	}
	for _, kind := range []string{"tls_handshake", "timeout", "too_large", "malformed"} {
		m.RequestErrors.WithLabelValues(kind)
	}
	for _, result := range []string{"ok", "error"} {
		m.Scrapes.WithLabelValues(result)
		m.CoordinatorPolls.WithLabelValues(result)
	}
	for _, result := range []string{"routers", "sweep", "error"} {
		m.TraefikAPI.WithLabelValues(result)
	}
	for _, limit := range []string{"targets", "labels"} {
		m.TargetsDropped.WithLabelValues(limit)
	}
	return m
}
