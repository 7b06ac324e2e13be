package engine_test

import (
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/traefik-sd/traefik-sd/internal/coordinator"
	"github.com/traefik-sd/traefik-sd/plugin"
	"github.com/traefik-sd/traefik-sd/sidecar/dynamic"
	"github.com/traefik-sd/traefik-sd/sidecar/engine"
	"github.com/traefik-sd/traefik-sd/sidecar/pluginsync"
	"github.com/traefik-sd/traefik-sd/sidecar/routeinfo"
	"github.com/traefik-sd/traefik-sd/sidecar/scrape"
	"github.com/traefik-sd/traefik-sd/sidecar/targets"
	"github.com/traefik-sd/traefik-sd/sidecar/traefikapi"
	"github.com/traefik-sd/traefik-sd/sidecar/watch"
)

const rootKey = "traefik/worker_worker-1/"

var t0 = time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)

func options(etcd bool) engine.Options {
	return engine.Options{
		Targets:    targets.Options{WorkerAuthority: "worker-1", WorkerNode: "node-a", Provider: "etcd", TraefikTarget: "127.0.0.1:8080"},
		Etcd:       etcd,
		PluginName: "traefik-sd",
		AskTraefik: true,
		StartGrace: 10 * time.Second, NotServedSettle: 15 * time.Second,
	}
}

// The coordinator with the traefik-sd setting of the patch, and without.
var (
	writer     = &coordinator.Writer{Authority: "worker-1", UnchainAppProxyPlugins: true, SD: &coordinator.TraefikSD{}}
	writerNoSD = &coordinator.Writer{Authority: "worker-1", UnchainAppProxyPlugins: true}
)

// tc is a circuit and whether its coordinator writes the traefik-sd middleware.
type tc struct {
	coordinator.Circuit
	sd bool
}

func (c tc) writer() *coordinator.Writer {
	if c.sd {
		return writer
	}
	return writerNoSD
}

func circuit(id string, sd bool) tc {
	return tc{Circuit: coordinator.Circuit{
		ID: id, App: "llama", Mode: "inference", Hostname: id + ".example",
		Routes: []coordinator.Route{
			{RouteID: "r1", SessionID: "s1", Host: "10.0.1.1", Port: 8000},
			{RouteID: "r2", SessionID: "s2", Host: "10.0.1.2", Port: 8000},
		},
	}, sd: sd}
}

// table is the coordinator's answer for these circuits.
func table(t *testing.T, cs ...tc) *routeinfo.Table {
	t.Helper()
	var answers []string
	for _, c := range cs {
		answers = append(answers, string(writer.CircuitJSON(c.Circuit)))
	}
	tb, err := routeinfo.Decode([]byte(`{"circuits":[` + strings.Join(answers, ",") + `]}`))
	if err != nil {
		t.Fatal(err)
	}
	return tb
}

// newEngine is an engine that has the coordinator's route table for every
// circuit these tests write: the route and session ids etcd does not hold.
func newEngine(t *testing.T, opts engine.Options, at time.Time) *engine.Engine {
	t.Helper()
	var answers []string
	for _, id := range []string{"c1", "a", "b"} {
		answers = append(answers, string(writer.CircuitJSON(circuit(id, true).Circuit)))
	}
	table, err := routeinfo.Decode([]byte(`{"circuits":[` + strings.Join(answers, ",") + `]}`))
	if err != nil {
		t.Fatal(err)
	}
	e := engine.New(opts, at)
	e.Routes(table)
	return e
}

// put is the etcd batch that writes a circuit's keys.
func put(c tc, at time.Time) watch.Batch {
	b := watch.Batch{Received: at}
	keys := c.writer().Keys(c.Circuit)
	names := make([]string, 0, len(keys))
	for k := range keys {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		b.Events = append(b.Events, watch.Event{Key: strings.TrimPrefix(k, rootKey), Value: keys[k]})
	}
	return b
}

// del is the etcd batch that deletes a circuit's keys.
func del(c tc, at time.Time) watch.Batch {
	b := put(c, at)
	for i := range b.Events {
		b.Events[i].Deleted, b.Events[i].Value = true, ""
	}
	return b
}

func listed(at time.Time) []watch.Batch { return []watch.Batch{{Snapshot: true, Received: at}} }

// live is a push update of one Traefik process carrying the traefik-sd
// middlewares of the given circuits, with their configuration as the plugin
// reports it.
func live(node string, full bool, at time.Time, cs ...tc) pluginsync.Update {
	u := pluginsync.Update{Node: node, Full: full, Received: at}
	for _, c := range cs {
		// What Traefik decodes from the patched coordinator's keys: identity
		// only; an inference circuit's session_ids stay empty.
		cfg := plugin.Config{CircuitID: c.ID, MetricsPath: "/metrics", WorkerAuthority: "worker-1", Labels: c.Labels}
		for _, r := range c.Routes {
			if c.Mode != "inference" {
				cfg.SessionIDs = append(cfg.SessionIDs, r.SessionID)
			}
		}
		cfg.Normalize()
		u.Live = append(u.Live, plugin.LiveMiddleware{Name: "bai_sd_" + c.ID + "@etcd", Instances: 1, Config: cfg})
	}
	return u
}

func router(c tc, status string, errs ...string) traefikapi.Router {
	mws := []string{"CORSHeaders@etcd"}
	if c.sd {
		mws = append(mws, "bai_sd_"+c.ID+"@etcd")
	}
	return traefikapi.Router{Name: "bai_router_" + c.ID + "@etcd", Status: status, Errors: errs,
		Service: "bai_service_" + c.ID + "@etcd", Middlewares: mws}
}

func answer(rs ...traefikapi.Router) traefikapi.Update { return traefikapi.Update{Routers: rs} }

// routes renders the route targets as "address circuit session route router service" lines.
func routes(e *engine.Engine) string {
	var out []string
	for _, t := range e.Targets() {
		if t.Label("service_group") != targets.GroupRoute {
			continue
		}
		out = append(out, fmt.Sprintf("%s %s %s %s %s %s", t.Address, t.Label("circuit_id"), t.Label("session_id"),
			t.Label("route_id"), t.Label("traefik_router"), t.Label("traefik_service")))
	}
	return strings.Join(out, "\n")
}

func lines(c tc, addrs ...string) string {
	var out []string
	for _, r := range c.Routes {
		addr := fmt.Sprintf("%s:%d", r.Host, r.Port)
		for _, a := range addrs {
			if a == addr {
				out = append(out, fmt.Sprintf("%s %s %s %s bai_router_%s@etcd bai_service_%s@etcd", addr, c.ID, r.SessionID, r.RouteID, c.ID, c.ID))
			}
		}
	}
	return strings.Join(out, "\n")
}

func both(c tc) string { return lines(c, "10.0.1.1:8000", "10.0.1.2:8000") }

// readyEngine is an engine in etcd mode that has listed etcd and swept
// Traefik's routers (none yet).
func readyEngine(t *testing.T) *engine.Engine {
	t.Helper()
	e := newEngine(t, options(true), t0)
	e.Etcd(listed(t0))
	e.Routers(traefikapi.Update{Sweep: true})
	if !e.Ready(t0) {
		t.Fatal("not ready after etcd was listed and Traefik swept, with no traefik-sd circuit to wait for")
	}
	return e
}

func TestACircuitIsPublishedOnlyWhileTraefikServesItsRouterAndRunsItsMiddleware(t *testing.T) {
	e := readyEngine(t)
	c := circuit("c1", true)

	res := e.Etcd([]watch.Batch{put(c, t0)})
	if got := routes(e); got != "" {
		t.Fatalf("published before Traefik loaded the circuit:\n%s", got)
	}
	if strings.Join(res.Ask.Routers, ",") != "bai_router_c1@etcd" {
		t.Errorf("an etcd change must ask Traefik about its router, asked %v", res.Ask.Routers)
	}

	res = e.Pushes([]pluginsync.Update{live("traefik-0", true, t0, c)})
	if got := routes(e); got != "" {
		t.Fatalf("published on a push alone (Traefik calls New before it parses the rule):\n%s", got)
	}
	if strings.Join(res.Ask.Middlewares, ",") != "bai_sd_c1@etcd" {
		t.Errorf("a push must ask Traefik about its middleware's routers, asked %v", res.Ask.Middlewares)
	}

	e.Routers(answer(router(c, traefikapi.StatusEnabled)))
	if got, want := routes(e), both(c); got != want {
		t.Fatalf("served and live:\n%s\nwant\n%s", got, want)
	}

	// Traefik disables the router (a bad rule): withdrawn, with Traefik's error kept.
	e.Routers(answer(router(c, traefikapi.StatusDisabled, "error while parsing rule Hots(`x`)")))
	if got := routes(e); got != "" {
		t.Fatalf("published though Traefik disabled the router:\n%s", got)
	}
	counts, _ := e.NotServed(t0)
	if counts[targets.ReasonDisabled] != 1 {
		t.Errorf("not served counts: %v", counts)
	}
	_, report := e.NotServed(t0.Add(16 * time.Second))
	if len(report) != 1 || report[0].Reason != targets.ReasonDisabled || !strings.Contains(report[0].Error, "Hots") || report[0].CircuitID != "c1" {
		t.Errorf("report: %+v", report)
	}
	if _, again := e.NotServed(t0.Add(30 * time.Second)); len(again) != 0 {
		t.Errorf("reported twice: %+v", again)
	}

	// A warning still serves.
	e.Routers(answer(router(c, traefikapi.StatusWarning, "tls option unknown")))
	if got := routes(e); got != both(c) {
		t.Fatalf("a router in warning serves requests, yet:\n%s", got)
	}

	// Traefik restarts: its API answers before its providers have loaded,
	// while the plugin still reports the middleware live. Not withdrawn.
	e.Routers(traefikapi.Update{Sweep: true})
	e.Routers(traefikapi.Update{Gone: []string{"bai_router_c1@etcd"}})
	if got := routes(e); got != both(c) {
		t.Fatalf("withdrawn while Traefik was between configurations:\n%s", got)
	}
	// Traefik dropped it: the plugin's instance goes, and so does the target.
	e.Pushes([]pluginsync.Update{{Node: "traefik-0", Removed: []string{"bai_sd_c1@etcd"}, Received: t0}})
	if got := routes(e); got != "" {
		t.Fatalf("published after Traefik dropped the router:\n%s", got)
	}
	// Now absent from Traefik's API, with no live instance: not loaded.
	e.Routers(traefikapi.Update{Gone: []string{"bai_router_c1@etcd"}})
	if counts, _ := e.NotServed(t0); counts[targets.ReasonNotLoaded] != 1 {
		t.Errorf("counts: %v", counts)
	}
}

func TestWithoutThePluginInTraefikNoRouteIsPublished(t *testing.T) {
	e := readyEngine(t)
	c := circuit("c1", true)
	e.Etcd([]watch.Batch{put(c, t0)})
	// Traefik serves the router (the plugin is absent, yet suppose it built
	// the chain anyway): no live instance, nothing published.
	e.Routers(answer(router(c, traefikapi.StatusEnabled)))
	if got := routes(e); got != "" {
		t.Fatalf("published with no live plugin instance:\n%s", got)
	}
	counts, report := e.NotServed(t0)
	if counts[targets.ReasonPluginNotLive] != 1 || len(report) != 0 {
		t.Errorf("counts %v, report %+v (must wait to settle)", counts, report)
	}
	if _, report = e.NotServed(t0.Add(20 * time.Second)); len(report) != 1 || report[0].Reason != targets.ReasonPluginNotLive {
		t.Errorf("report after settling: %+v", report)
	}
	// The plugin's instance goes live: published; and it goes again: withdrawn.
	e.Pushes([]pluginsync.Update{live("traefik-0", true, t0, c)})
	if routes(e) != both(c) {
		t.Fatalf("not published once live:\n%s", routes(e))
	}
	e.Pushes([]pluginsync.Update{{Node: "traefik-0", Removed: []string{"bai_sd_c1@etcd"}, Received: t0}})
	if got := routes(e); got != "" {
		t.Fatalf("published after the middleware's last instance went:\n%s", got)
	}
}

func TestAProcessGoneSilentWithdrawsOnlyWhatNoOtherServes(t *testing.T) {
	e := readyEngine(t)
	a, b := circuit("a", true), circuit("b", true)
	e.Etcd([]watch.Batch{put(a, t0), put(b, t0)})
	e.Routers(answer(router(a, traefikapi.StatusEnabled), router(b, traefikapi.StatusEnabled)))
	e.Pushes([]pluginsync.Update{live("traefik-0", true, t0, a, b), live("traefik-1", true, t0, b)})
	if e.LiveMiddlewares() != 3 {
		t.Errorf("live middlewares summed over processes: %d", e.LiveMiddlewares())
	}
	// traefik-0 expires (the store's Expire update empties its set).
	res := e.Pushes([]pluginsync.Update{{Node: "traefik-0", Full: true, Received: t0}})
	if got, want := routes(e), both(b); got != want {
		t.Fatalf("after traefik-0 went silent:\n%s\nwant\n%s", got, want)
	}
	if strings.Join(res.Ask.Middlewares, ",") != "bai_sd_a@etcd" {
		t.Errorf("changed middlewares: %v (b is still live in traefik-1)", res.Ask.Middlewares)
	}
}

func TestRoutesAllIsGatedByTraefiksAPIAlone(t *testing.T) {
	opts := options(true)
	opts.Targets.RoutesAll = true
	e := newEngine(t, opts, t0)
	e.Etcd(listed(t0))
	e.Routers(traefikapi.Update{Sweep: true})
	c := circuit("c1", false)
	e.Etcd([]watch.Batch{put(c, t0)})
	if got := routes(e); got != "" {
		t.Fatalf("published before Traefik loaded it:\n%s", got)
	}
	e.Routers(answer(router(c, traefikapi.StatusEnabled)))
	// Without the middleware, ids come from etcd alone: no session per route.
	if got := routes(e); !strings.Contains(got, "10.0.1.1:8000 c1") || !strings.Contains(got, "10.0.1.2:8000 c1") {
		t.Fatalf("routes.all circuit served by Traefik not published:\n%s", got)
	}
	e.Routers(answer(router(c, traefikapi.StatusDisabled, "middleware \"nope@etcd\" does not exist")))
	if got := routes(e); got != "" {
		t.Fatalf("published though disabled:\n%s", got)
	}
}

func TestWithoutEtcdThePushesAndTraefikSayEverything(t *testing.T) {
	e := newEngine(t, options(false), t0)
	if e.Ready(t0) {
		t.Fatal("ready before the plugin sent its set and Traefik was listed")
	}
	c := circuit("c1", true)
	e.Routers(traefikapi.Update{Sweep: true, Routers: []traefikapi.Router{router(c, traefikapi.StatusEnabled),
		{Name: "api@internal", Status: traefikapi.StatusEnabled, Service: "api@internal"}}})
	if e.Ready(t0) {
		t.Fatal("ready without the plugin's full set")
	}
	e.Pushes([]pluginsync.Update{live("traefik-0", true, t0, c)})
	if !e.Ready(t0) {
		t.Fatal("not ready with both")
	}
	if got, want := routes(e), both(c); got != want {
		t.Fatalf("plugin-only targets:\n%s\nwant\n%s", got, want)
	}
	for _, tg := range e.Targets() {
		if tg.Label("service_group") == targets.GroupRoute && tg.Label("worker_authority") != "worker-1" {
			t.Errorf("no worker_authority: %+v", tg)
		}
	}
	// Health is matched on the server URL under the router's service.
	var p scrape.Parser
	res := p.Parse([]byte(`traefik_service_server_up{service="bai_service_c1@etcd",url="http://10.0.1.2:8000/"} 0` + "\n"))
	e.Scrape(res)
	if got, want := routes(e), lines(c, "10.0.1.1:8000"); got != want {
		t.Fatalf("down server kept:\n%s\nwant\n%s", got, want)
	}
	e.Routers(answer(router(c, traefikapi.StatusDisabled, "boom")))
	if got := routes(e); got != "" {
		t.Fatalf("published though disabled:\n%s", got)
	}
}

func TestRestartWaitsForThePluginsFullSetWithinTheGrace(t *testing.T) {
	c := circuit("c1", true)
	e := newEngine(t, options(true), t0)
	e.Etcd([]watch.Batch{{Snapshot: true, Received: t0, Events: put(c, t0).Events}})
	e.Routers(traefikapi.Update{Sweep: true, Routers: []traefikapi.Router{router(c, traefikapi.StatusEnabled)}})
	if e.Ready(t0.Add(time.Second)) {
		t.Fatal("ready before the plugin's full set, though etcd holds a traefik-sd circuit")
	}
	e.Pushes([]pluginsync.Update{live("traefik-0", true, t0, c)})
	if !e.Ready(t0.Add(2 * time.Second)) {
		t.Fatal("not ready after the full set")
	}
	if !e.Take() || routes(e) != both(c) {
		t.Fatalf("the first set served lacks what Traefik serves:\n%s", routes(e))
	}

	// With no plugin at all, the grace bounds the wait.
	e = newEngine(t, options(true), t0)
	e.Etcd([]watch.Batch{{Snapshot: true, Received: t0, Events: put(c, t0).Events}})
	e.Routers(traefikapi.Update{Sweep: true})
	if e.Ready(t0.Add(9 * time.Second)) {
		t.Fatal("ready within the grace")
	}
	if !e.Ready(t0.Add(10 * time.Second)) {
		t.Fatal("still waiting after the grace")
	}
	if !e.Ready(t0) {
		t.Fatal("readiness went back")
	}
}

func TestRoutersTraefikHasNotLoadedAreAskedAgainAfterASweep(t *testing.T) {
	opts := options(true)
	opts.Targets.RoutesAll = true
	e := newEngine(t, opts, t0)
	c := circuit("c1", false)
	res := e.Etcd([]watch.Batch{{Snapshot: true, Received: t0, Events: put(c, t0).Events}})
	if strings.Join(res.Ask.Routers, ",") != "bai_router_c1@etcd" {
		t.Errorf("the first listing asked about %v", res.Ask.Routers)
	}
	// Traefik, starting beside the sidecar, has loaded nothing yet.
	res = e.Routers(traefikapi.Update{Sweep: true})
	if strings.Join(res.Ask.Remind, ",") != "bai_router_c1@etcd" {
		t.Errorf("a sweep without an etcd router must ask about it again, reminded %v", res.Ask.Remind)
	}
	e.Routers(answer(router(c, traefikapi.StatusEnabled)))
	if res = e.Routers(traefikapi.Update{Sweep: true, Routers: []traefikapi.Router{router(c, traefikapi.StatusEnabled)}}); len(res.Ask.Remind) != 0 {
		t.Errorf("asked again about a router Traefik serves: %v", res.Ask.Remind)
	}
}

func TestOnlyChangesThatCanMoveARoutersStatusAskTraefik(t *testing.T) {
	e := readyEngine(t)
	c := circuit("c1", true)
	e.Etcd([]watch.Batch{put(c, t0)})
	e.Pushes([]pluginsync.Update{live("traefik-0", true, t0, c)})
	e.Routers(answer(router(c, traefikapi.StatusEnabled)))

	// A route change rewrites the service's servers only.
	moved := c
	moved.Routes = []coordinator.Route{{RouteID: "r3", SessionID: "s3", Host: "10.0.1.3", Port: 8000}}
	var services watch.Batch
	for _, ev := range del(c, t0).Events {
		if strings.Contains(ev.Key, "/services/") {
			services.Events = append(services.Events, ev)
		}
	}
	for _, ev := range put(moved, t0).Events {
		if strings.Contains(ev.Key, "/services/") {
			services.Events = append(services.Events, ev)
		}
	}
	if res := e.Etcd([]watch.Batch{services}); !res.Changed || len(res.Ask.Routers) != 0 {
		t.Errorf("a route change: changed %v, asked %v (servers do not move a router's status)", res.Changed, res.Ask.Routers)
	}
	// The service going does.
	var gone watch.Batch
	for _, ev := range del(moved, t0).Events {
		if strings.Contains(ev.Key, "/services/") {
			gone.Events = append(gone.Events, ev)
		}
	}
	if res := e.Etcd([]watch.Batch{gone}); strings.Join(res.Ask.Routers, ",") != "bai_router_c1@etcd" {
		t.Errorf("the service deleted: asked %v", res.Ask.Routers)
	}
	// So does a middleware the router names.
	var mw watch.Batch
	for _, ev := range put(c, t0).Events {
		if strings.Contains(ev.Key, "/middlewares/bai_sd_") && strings.HasSuffix(ev.Key, "/metricsport") {
			mw.Events = append(mw.Events, ev)
		}
	}
	mw.Events = append(mw.Events, watch.Event{Key: "http/middlewares/bai_sd_c1/plugin/traefik-sd/metricspath", Value: "/stats"})
	if res := e.Etcd([]watch.Batch{mw}); strings.Join(res.Ask.Routers, ",") != "bai_router_c1@etcd" {
		t.Errorf("its middleware changed: asked %v", res.Ask.Routers)
	}
}

func TestAFailedAnswerOfTraefikKeepsTheLastOne(t *testing.T) {
	e := readyEngine(t)
	c := circuit("c1", true)
	e.Etcd([]watch.Batch{put(c, t0)})
	e.Pushes([]pluginsync.Update{live("traefik-0", true, t0, c)})
	e.Routers(answer(router(c, traefikapi.StatusEnabled)))
	e.Routers(traefikapi.Update{Err: fmt.Errorf("connection refused")})
	e.Routers(traefikapi.Update{Sweep: true, Err: fmt.Errorf("connection refused")})
	if got := routes(e); got != both(c) {
		t.Fatalf("a failed answer withdrew targets:\n%s", got)
	}
	// A sweep that no longer lists it, once the plugin's instance is gone
	// too, withdraws it.
	e.Pushes([]pluginsync.Update{{Node: "traefik-0", Full: true, Received: t0}})
	e.Routers(traefikapi.Update{Sweep: true})
	if got := routes(e); got != "" {
		t.Fatalf("kept after a sweep without it:\n%s", got)
	}
}

func TestEtcdDeleteWithdrawsAtOnce(t *testing.T) {
	e := readyEngine(t)
	c := circuit("c1", true)
	e.Etcd([]watch.Batch{put(c, t0)})
	e.Pushes([]pluginsync.Update{live("traefik-0", true, t0, c)})
	e.Routers(answer(router(c, traefikapi.StatusEnabled)))
	// The coordinator deletes the router first: no target, before Traefik reloads.
	router := del(c, t0)
	var routerOnly watch.Batch
	for _, ev := range router.Events {
		if strings.Contains(ev.Key, "/routers/") {
			routerOnly.Events = append(routerOnly.Events, ev)
		}
	}
	e.Etcd([]watch.Batch{routerOnly})
	if got := routes(e); got != "" {
		t.Fatalf("published after its router was deleted:\n%s", got)
	}
	if counts, _ := e.NotServed(t0); counts[targets.ReasonDisabled]+counts[targets.ReasonNotLoaded]+counts[targets.ReasonPluginNotLive] != 0 {
		t.Errorf("a deleted circuit counted as not served: %v", counts)
	}
}

func TestEtcdChangeToPushDelayIsMeasuredOnMatchingConfig(t *testing.T) {
	e := readyEngine(t)
	c := circuit("c1", true)
	e.Etcd([]watch.Batch{put(c, t0)})
	other := c
	other.Labels = map[string]string{"team": "a"}
	if res := e.Pushes([]pluginsync.Update{live("traefik-0", true, t0.Add(time.Second), other)}); len(res.PushDelays) != 0 {
		t.Fatalf("a push with another config completed the measurement: %v", res.PushDelays)
	}
	res := e.Pushes([]pluginsync.Update{live("traefik-0", true, t0.Add(3*time.Second), c)})
	if len(res.PushDelays) != 1 || res.PushDelays[0] != 3*time.Second {
		t.Fatalf("delays: %v", res.PushDelays)
	}
}

// What a first listing holds, Traefik loaded before the sidecar looked: the
// plugin's set that follows is no etcd change reaching Traefik. A change
// after it still is.
func TestAFirstListingMeasuresNoDelayToThePush(t *testing.T) {
	c, d := circuit("c1", true), circuit("c2", true)
	e := newEngine(t, options(true), t0)
	e.Etcd([]watch.Batch{{Snapshot: true, Received: t0, Events: put(c, t0).Events}})
	if res := e.Pushes([]pluginsync.Update{live("traefik-0", true, t0.Add(2*time.Second), c)}); len(res.PushDelays) != 0 {
		t.Fatalf("the first listing's middleware measured %v", res.PushDelays)
	}
	e.Etcd([]watch.Batch{put(d, t0.Add(3*time.Second))})
	res := e.Pushes([]pluginsync.Update{live("traefik-0", false, t0.Add(4*time.Second), d)})
	if len(res.PushDelays) != 1 || res.PushDelays[0] != time.Second {
		t.Fatalf("a circuit written after the listing measured %v", res.PushDelays)
	}
}

func TestAnUnchangedInputPublishesNothingNew(t *testing.T) {
	e := readyEngine(t)
	c := circuit("c1", true)
	e.Etcd([]watch.Batch{put(c, t0)})
	e.Pushes([]pluginsync.Update{live("traefik-0", true, t0, c)})
	e.Routers(answer(router(c, traefikapi.StatusEnabled)))
	// The first inputs publish the circuit: what follows compares with a
	// set that holds it, not with an empty one.
	if !e.Take() {
		t.Fatal("the first inputs published nothing new")
	}
	if got := routes(e); got != both(c) {
		t.Fatalf("published after the first inputs:\n%s\nwant\n%s", got, both(c))
	}
	digest := e.Digest()
	// The coordinator's identical rewrite, the plugin's periodic full set and
	// an identical answer of Traefik change nothing.
	e.Etcd([]watch.Batch{put(c, t0)})
	e.Pushes([]pluginsync.Update{live("traefik-0", true, t0, c)})
	e.Routers(answer(router(c, traefikapi.StatusEnabled)))
	if e.Take() || e.Digest() != digest {
		t.Error("identical inputs changed the set")
	}
}

// TestACircuitWithNoRoutesIsCountedAsNoRoutesNotAsAFault: every inference
// circuit is created with no routes, so etcd holds its router and its
// middlewares but no service at all; Traefik disables such a router. It is
// not published, and it is counted under no_routes, not disabled.
func TestACircuitWithNoRoutesIsCountedAsNoRoutesNotAsAFault(t *testing.T) {
	e := readyEngine(t)
	full := circuit("c1", true)
	bare := full
	bare.Routes = nil
	e.Etcd([]watch.Batch{put(bare, t0)})
	e.Routers(answer(router(bare, traefikapi.StatusDisabled, `the service "bai_service_c1@etcd" does not exist`)))
	counts, _ := e.NotServed(t0)
	if counts[targets.ReasonNoRoutes] != 1 || counts[targets.ReasonDisabled] != 0 || counts[targets.ReasonNotLoaded] != 0 {
		t.Errorf("not served: %v; want one no_routes", counts)
	}
	if got := routes(e); got != "" {
		t.Errorf("published with no routes:\n%s", got)
	}
	if n := len(e.Store().Errors); n != 0 {
		t.Errorf("%d broken objects", n)
	}

	e.Etcd([]watch.Batch{put(full, t0)})
	e.Pushes([]pluginsync.Update{live("traefik-0", true, t0, full)})
	e.Routers(answer(router(full, traefikapi.StatusEnabled)))
	if got, want := routes(e), lines(full, "10.0.1.1:8000", "10.0.1.2:8000"); got != want {
		t.Errorf("after its first routes:\n%s\nwant:\n%s", got, want)
	}
	if counts, _ := e.NotServed(t0); counts[targets.ReasonNoRoutes] != 0 {
		t.Errorf("still counted: %v", counts)
	}
}

// TestANewServerWaitsForTheCoordinatorToNameIt: etcd shows a new route's
// server before the coordinator, asked half a second later, names its
// route and session. Published at once it would gain those labels a moment
// later, a new series in Prometheus; so an unnamed new server waits for an
// answer asked after the change. A named one does not wait, one published
// before never leaves, and an answer that fails or does not name it ends
// the wait: it is then published without ids.
func TestANewServerWaitsForTheCoordinatorToNameIt(t *testing.T) {
	opts := options(true)
	opts.AskCoordinator = true
	e := newEngine(t, opts, t0)
	e.Etcd(listed(t0))
	e.Routers(traefikapi.Update{Sweep: true})
	if !e.Ready(t0) {
		t.Fatal("not ready with etcd listed, Traefik swept and the coordinator answered")
	}
	c := circuit("c1", true)
	t1 := t0.Add(time.Second)
	e.Etcd([]watch.Batch{put(c, t1)})
	e.Pushes([]pluginsync.Update{live("traefik-0", true, t1, c)})
	e.Routers(answer(router(c, traefikapi.StatusEnabled)))
	if got, want := routes(e), both(c); got != want {
		t.Fatalf("servers the coordinator names wait:\n%s\nwant\n%s", got, want)
	}
	e.Coordinator(routeinfo.Answer{Table: table(t, c), Asked: t1})

	// A route added: etcd shows 10.0.1.3 before the coordinator names it.
	grown := c
	grown.Routes = append(append([]coordinator.Route(nil), c.Routes...), coordinator.Route{RouteID: "r3", SessionID: "s3", Host: "10.0.1.3", Port: 8000})
	t2 := t0.Add(2 * time.Second)
	e.Etcd([]watch.Batch{put(grown, t2)})
	if got, want := routes(e), both(c); got != want {
		t.Fatalf("an unnamed new server published before the coordinator answered:\n%s\nwant\n%s", got, want)
	}
	// An answer asked before the change does not end the wait.
	e.Coordinator(routeinfo.Answer{Table: table(t, c), Asked: t2.Add(-time.Millisecond)})
	if got, want := routes(e), both(c); got != want {
		t.Fatalf("an answer asked before the change released it:\n%s\nwant\n%s", got, want)
	}
	e.Coordinator(routeinfo.Answer{Table: table(t, grown), Asked: t2.Add(500 * time.Millisecond)})
	if got, want := routes(e), lines(grown, "10.0.1.1:8000", "10.0.1.2:8000", "10.0.1.3:8000"); got != want {
		t.Fatalf("once named:\n%s\nwant\n%s", got, want)
	}

	// A route the coordinator never names waits for one answer, a failed
	// one included, and then stays through later waits.
	odd := grown
	odd.Routes = append(append([]coordinator.Route(nil), grown.Routes...), coordinator.Route{Host: "10.0.1.4", Port: 8000})
	t3 := t0.Add(3 * time.Second)
	e.Etcd([]watch.Batch{put(odd, t3)})
	if strings.Contains(routes(e), "10.0.1.4") {
		t.Fatalf("published while the coordinator is asked:\n%s", routes(e))
	}
	e.Coordinator(routeinfo.Answer{Err: fmt.Errorf("503"), Asked: t3.Add(time.Millisecond)})
	unnamed := "10.0.1.4:8000 c1   bai_router_c1@etcd bai_service_c1@etcd"
	if got := routes(e); !strings.Contains(got, unnamed) {
		t.Fatalf("the wait did not end with a failed answer:\n%s", got)
	}
	moved := odd
	moved.Routes = append(append([]coordinator.Route(nil), odd.Routes...), coordinator.Route{Host: "10.0.1.5", Port: 8000})
	e.Etcd([]watch.Batch{put(moved, t0.Add(4*time.Second))})
	if got := routes(e); !strings.Contains(got, unnamed) || strings.Contains(got, "10.0.1.5") {
		t.Fatalf("a server published before left during a later wait, or the new one did not wait:\n%s", got)
	}
}

// TestAChangeAsksTheCoordinatorAboutItsCircuitsAlone: at 100,000 circuits
// the whole list is tens of megabytes to make and decode, and a route
// change asked for it every time. A change now asks about the circuits
// whose routers it rebuilt; their answer patches the table, and a circuit
// the coordinator no longer has loses its ids while the others keep theirs.
func TestAChangeAsksTheCoordinatorAboutItsCircuitsAlone(t *testing.T) {
	opts := options(true)
	opts.AskCoordinator = true
	e := newEngine(t, opts, t0)
	if res := e.Etcd(listed(t0)); !res.Ask.Coordinator || res.Ask.CoordinatorCircuits != nil {
		t.Fatalf("the first listing asks for the whole list: %+v", res.Ask)
	}
	e.Routers(traefikapi.Update{Sweep: true})
	a, b := circuit("a", true), circuit("b", true)
	t1 := t0.Add(time.Second)
	e.Etcd([]watch.Batch{put(a, t1), put(b, t1)})
	e.Pushes([]pluginsync.Update{live("traefik-0", true, t1, a, b)})
	e.Routers(answer(router(a, traefikapi.StatusEnabled), router(b, traefikapi.StatusEnabled)))
	e.Coordinator(routeinfo.Answer{Table: table(t, a, b), Asked: t1})
	if got, want := routes(e), both(a)+"\n"+both(b); got != want {
		t.Fatalf("after the whole list:\n%s\nwant\n%s", got, want)
	}

	grown := a
	grown.Routes = append(append([]coordinator.Route(nil), a.Routes...), coordinator.Route{RouteID: "r3", SessionID: "s3", Host: "10.0.1.3", Port: 8000})
	t2 := t0.Add(2 * time.Second)
	res := e.Etcd([]watch.Batch{put(grown, t2)})
	if !res.Ask.Coordinator || fmt.Sprint(res.Ask.CoordinatorCircuits) != "[a]" {
		t.Fatalf("a route change of a asks %+v, want the coordinator about [a]", res.Ask)
	}
	e.Coordinator(routeinfo.Answer{Table: table(t, grown), Asked: t2.Add(500 * time.Millisecond), Circuits: []string{"a"}})
	if got, want := routes(e), lines(grown, "10.0.1.1:8000", "10.0.1.2:8000", "10.0.1.3:8000")+"\n"+both(b); got != want {
		t.Fatalf("after the answer about a:\n%s\nwant\n%s", got, want)
	}
	// An answer about b that does not hold it (404): b's routes are gone
	// from the table, a's stay.
	if res := e.Coordinator(routeinfo.Answer{Table: table(t), Asked: t2.Add(time.Second), Circuits: []string{"b"}}); !res.Changed {
		t.Fatal("b gone from the coordinator changed nothing")
	}
	got := routes(e)
	if !strings.Contains(got, "10.0.1.3:8000 a s3 r3") || !strings.Contains(got, "10.0.1.1:8000 b   bai_router_b@etcd") {
		t.Fatalf("after b is gone from the coordinator, a keeps its ids and b has none:\n%s", got)
	}
}

// TestCircuitsAskedOneByOneNeedNoList: a coordinator whose whole list
// fails (larger than the sidecar takes, say) still names the circuits a
// change asks about one by one.
func TestCircuitsAskedOneByOneNeedNoList(t *testing.T) {
	opts := options(true)
	opts.AskCoordinator = true
	e := engine.New(opts, t0) // no list, not even newEngine's
	e.Etcd(listed(t0))
	e.Routers(traefikapi.Update{Sweep: true})
	e.Coordinator(routeinfo.Answer{Err: fmt.Errorf("answer larger than 67108864 bytes"), Asked: t0})
	a := circuit("a", true)
	t1 := t0.Add(time.Second)
	e.Etcd([]watch.Batch{put(a, t1)})
	e.Pushes([]pluginsync.Update{live("traefik-0", true, t1, a)})
	e.Routers(answer(router(a, traefikapi.StatusEnabled)))
	// A route etcd shows and the plugin's set does not: its ids come from
	// the coordinator alone.
	grown := a
	grown.Routes = append(append([]coordinator.Route(nil), a.Routes...), coordinator.Route{RouteID: "r3", SessionID: "s3", Host: "10.0.1.3", Port: 8000})
	t2 := t0.Add(2 * time.Second)
	e.Etcd([]watch.Batch{put(grown, t2)})
	if res := e.Coordinator(routeinfo.Answer{Table: table(t, grown), Asked: t2.Add(time.Second), Circuits: []string{"a"}}); !res.Changed {
		t.Fatal("the answer about a changed nothing")
	}
	if got := routes(e); !strings.Contains(got, "10.0.1.3:8000 a s3 r3") {
		t.Fatalf("a's new route without its ids, with no list:\n%s", got)
	}
}

// TestACoordinatorAnswerRebuildsTheCircuitsItChanged: after the first
// answer (which rebuilds every router, none of which read routes yet), an
// answer rebuilds only the circuits whose routes it changed, and they get
// their new ids; the others keep theirs.
func TestACoordinatorAnswerRebuildsTheCircuitsItChanged(t *testing.T) {
	opts := options(true)
	opts.AskTraefik = false
	e := engine.New(opts, t0)
	a, b := circuit("a", true), circuit("b", true)
	e.Etcd([]watch.Batch{{Snapshot: true, Received: t0}, put(a, t0), put(b, t0)})
	e.Pushes([]pluginsync.Update{live("traefik-0", true, t0, a, b)})
	if !e.Ready(t0) {
		t.Fatal("not ready")
	}
	e.Take()
	e.Routes(table(t, a, b))
	if got, want := routes(e), both(a)+"\n"+both(b); got != want {
		t.Fatalf("after the first answer:\n%s\nwant\n%s", got, want)
	}
	moved := b
	moved.Routes = append([]coordinator.Route(nil), b.Routes...)
	moved.Routes[0].RouteID, moved.Routes[0].SessionID = "r1-new", "s1-new"
	if res := e.Routes(table(t, a, moved)); !res.Changed {
		t.Fatal("an answer with new ids changed nothing")
	}
	if got, want := routes(e), both(a)+"\n"+both(moved); got != want {
		t.Fatalf("after b's ids changed:\n%s\nwant\n%s", got, want)
	}
}

// A re-list comes in pages: until its last page the published set is the
// one before it, whatever the pages already said; a listing that starts
// over (etcd failed half way) forgets the pages before.
// twoServed is a ready engine publishing circuits a and b, both served.
func twoServed(t *testing.T) (*engine.Engine, tc, tc) {
	e := readyEngine(t)
	a, b := circuit("a", true), circuit("b", true)
	e.Etcd([]watch.Batch{put(a, t0), put(b, t0)})
	e.Pushes([]pluginsync.Update{live("traefik-0", true, t0, a, b)})
	e.Routers(answer(router(a, traefikapi.StatusEnabled), router(b, traefikapi.StatusEnabled)))
	e.Take()
	return e, a, b
}

func TestARelistInPagesChangesTheSetOnlyAtItsLastPage(t *testing.T) {
	e, a, b := twoServed(t)
	before := routes(e)
	if before != both(a)+"\n"+both(b) {
		t.Fatalf("published before the re-list:\n%s", before)
	}
	// A re-list of a with one server fewer (changed while the watch was
	// lost) and b as it was, two keys a page, abandoned before its last
	// page; then the listing again, without b (deleted meanwhile).
	changed := a
	changed.Routes = a.Routes[:1]
	both := append(put(changed, t0).Events, put(b, t0).Events...)
	sort.Slice(both, func(i, j int) bool { return both[i].Key < both[j].Key })
	pages := func(events []watch.Event, upTo int) {
		for part, i := 0, 0; i < len(events) && part < upTo; part, i = part+1, i+2 {
			end := min(i+2, len(events))
			e.Etcd([]watch.Batch{{Snapshot: true, Part: part, More: end < len(events), Received: t0, Events: events[i:end]}})
			if end < len(events) && (e.Take() || routes(e) != before) {
				t.Fatalf("page %d of %d keys changed the set before the last:\n%s", part, len(events), routes(e))
			}
		}
	}
	pages(both, (len(both)+1)/2-1)
	alone := put(changed, t0).Events
	pages(alone, len(alone))
	if got, want := routes(e), lines(a, "10.0.1.1:8000"); got != want {
		t.Fatalf("after the last page:\n%s\nwant\n%s", got, want)
	}
	objects := map[dynamic.ObjectID]bool{}
	for _, ev := range alone {
		id, _, _ := dynamic.SplitKey(ev.Key)
		objects[id] = true
	}
	if n := e.Store().Len(); n != len(objects) {
		t.Fatalf("the store holds %d objects after the listing, the listing %d", n, len(objects))
	}
}

// A re-list after a deletion while the watch was lost lists the ranges
// that lost a key (Batch.Listed): a held key in one of them that the batch
// lacks is deleted, and keys outside them are kept.
func TestARelistThatListedARangeDeletesWhatItLacks(t *testing.T) {
	e, a, b := twoServed(t)
	if got := routes(e); got != both(a)+"\n"+both(b) {
		t.Fatalf("published before the re-list:\n%s", got)
	}
	// b's router deleted meanwhile: the routers' range listed, a's router
	// alone in it; nothing else read.
	relist := watch.Batch{Since: 1, Revision: 2, Received: t0, Listed: []watch.KeyRange{{Key: "http/routers/", End: "http/routers0"}}}
	for _, ev := range put(a, t0).Events {
		if strings.HasPrefix(ev.Key, "http/routers/") {
			relist.Events = append(relist.Events, ev)
		}
	}
	e.Etcd([]watch.Batch{relist})
	if got := routes(e); got != both(a) {
		t.Fatalf("after the re-list:\n%s\nwant\n%s", got, both(a))
	}
	if n, want := len(e.Store().Routers), 1; n != want {
		t.Fatalf("%d routers held after the re-list, want %d", n, want)
	}
	if n, want := len(e.Store().Services), 2; n != want {
		t.Fatalf("%d services held after the re-list, want %d: it listed only the routers", n, want)
	}
}
