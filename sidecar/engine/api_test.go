package engine_test

import (
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/traefik-sd/traefik-sd/plugin"
	"github.com/traefik-sd/traefik-sd/sidecar/engine"
	"github.com/traefik-sd/traefik-sd/sidecar/pluginsync"
	"github.com/traefik-sd/traefik-sd/sidecar/targets"
	"github.com/traefik-sd/traefik-sd/sidecar/traefikapi"
	"github.com/traefik-sd/traefik-sd/sidecar/watch"
)

// plainOptions is a sidecar beside a plain Traefik: no etcd, no
// Backend.AI, definitions and (without /metrics) health from its API.
func plainOptions(healthFromAPI bool) engine.Options {
	return engine.Options{
		Targets:    targets.Options{Provider: "etcd", TraefikTarget: "127.0.0.1:8080"},
		PluginName: "traefik-sd", AskTraefik: true, ListServices: true, HealthFromAPI: healthFromAPI,
		StartGrace: 10 * time.Second, NotServedSettle: 15 * time.Second,
	}
}

func lb(name string, interval time.Duration, servers ...string) traefikapi.Service {
	s := traefikapi.Service{Name: name, Servers: servers, HealthInterval: interval, Status: map[string]string{}}
	for _, u := range servers {
		s.Status[u] = traefikapi.ServerUp
	}
	return s
}

func fileRouter(name, service string, mws ...string) traefikapi.Router {
	return traefikapi.Router{Name: name, Status: traefikapi.StatusEnabled, Service: service, Middlewares: mws,
		Rule: "Host(`" + strings.TrimSuffix(name, "@file") + ".example`)", EntryPoints: []string{"web"}}
}

// sdLive is the plugin reporting `plugin: {traefik-sd: {}}` live under name.
func sdLive(at time.Time, labels map[string]string, names ...string) pluginsync.Update {
	u := pluginsync.Update{Node: "traefik-0", Full: true, Received: at}
	for _, n := range names {
		cfg := plugin.CreateConfig()
		for k, v := range labels {
			cfg.Labels[k] = v
		}
		cfg.Normalize()
		u.Live = append(u.Live, plugin.LiveMiddleware{Name: n, Instances: 1, Config: *cfg})
	}
	return u
}

// plainRoutes renders the route targets as "address router service health" lines.
func plainRoutes(e *engine.Engine) string {
	var out []string
	for _, t := range e.Targets() {
		if t.Label("service_group") == targets.GroupRoute {
			// Without --routes.keepDown every server published is up, unlabelled.
			health := t.Label("__meta_traefik_server_health")
			if health == "" {
				health = "up"
			}
			out = append(out, fmt.Sprintf("%s %s %s %s", t.Address, t.Label("traefik_router"), t.Label("traefik_service"), health))
		}
	}
	return strings.Join(out, "\n")
}

func plainEngine(t *testing.T, opts engine.Options) *engine.Engine {
	t.Helper()
	e := engine.New(opts, t0)
	e.Routers(traefikapi.Update{Sweep: true, Routers: []traefikapi.Router{
		fileRouter("r1@file", "s1@file", "sd@file"),
		fileRouter("r2@file", "w@file", "sd@file"),
		fileRouter("r3@file", "s3@file"), // no traefik-sd middleware
	}})
	e.Pushes([]pluginsync.Update{sdLive(t0, map[string]string{"team": "vision"}, "sd@file")})
	if e.Ready(t0) {
		t.Fatal("ready before Traefik's services were listed: every target would be missing its servers")
	}
	return e
}

func listing(at time.Time, ss ...traefikapi.Service) traefikapi.Listing {
	return traefikapi.Listing{Services: ss, At: at}
}

func TestAPlainTraefiksServersComeFromItsAPI(t *testing.T) {
	e := plainEngine(t, plainOptions(true))
	w := traefikapi.Service{Name: "w@file", Children: []string{"s2@file", "s1@file"}}
	res := e.Services(listing(t0, lb("s1@file", time.Second, "http://10.0.0.1:80", "http://10.0.0.2:80"),
		lb("s2@file", 0, "http://10.0.0.3:9000"), lb("s3@file", 0, "http://10.0.0.4:80"), w))
	if !res.Changed || !e.Ready(t0) {
		t.Fatalf("a listing that gives every router its servers: changed %v, ready %v", res.Changed, e.Ready(t0))
	}
	want := strings.Join([]string{
		"10.0.0.1:80 r1@file s1@file up", "10.0.0.2:80 r1@file s1@file up",
		"10.0.0.1:80 r2@file s1@file up", "10.0.0.2:80 r2@file s1@file up", "10.0.0.3:9000 r2@file s2@file up",
	}, "\n")
	if got := plainRoutes(e); got != want {
		t.Fatalf("targets:\n%s\nwant (r3 has no traefik-sd middleware)\n%s", got, want)
	}
	for _, tg := range e.Targets() {
		if tg.Label("traefik_router") != "r1@file" {
			continue
		}
		for name, want := range map[string]string{
			"circuit_id": "", "worker_authority": "", "team": "vision",
			"__meta_traefik_router_provider": "file", "__meta_traefik_router_protocol": "http",
			"__meta_traefik_router_entrypoints": ",web,", "__meta_traefik_router_rule_hosts": ",r1.example,",
			"__meta_traefik_server_url": "http://" + tg.Address, "__meta_traefik_server_health": "",
		} {
			if got := tg.Label(name); got != want {
				t.Errorf("%s %s = %q, want %q", tg.Address, name, got, want)
			}
		}
	}
	// A server leaves its service: only that target goes.
	e.Services(listing(t0.Add(time.Second), lb("s1@file", time.Second, "http://10.0.0.1:80"),
		lb("s2@file", 0, "http://10.0.0.3:9000"), lb("s3@file", 0, "http://10.0.0.4:80"), w))
	if got, want := plainRoutes(e), "10.0.0.1:80 r1@file s1@file up\n10.0.0.1:80 r2@file s1@file up\n10.0.0.3:9000 r2@file s2@file up"; got != want {
		t.Fatalf("after a server left s1:\n%s\nwant\n%s", got, want)
	}
}

// TestHealthFromTheAPIOutlastsAReload: Traefik shows every server UP when
// it rebuilds a service, until its next health check. A server DOWN before
// an unrelated reload must not come back on that UP alone.
func TestHealthFromTheAPIOutlastsAReload(t *testing.T) {
	e := plainEngine(t, plainOptions(true))
	up := lb("s1@file", time.Second, "http://10.0.0.1:80", "http://10.0.0.2:80")
	down := lb("s1@file", time.Second, "http://10.0.0.1:80", "http://10.0.0.2:80")
	down.Status["http://10.0.0.2:80"] = traefikapi.ServerDown
	others := []traefikapi.Service{lb("s2@file", 0), lb("s3@file", 0), {Name: "w@file", Children: []string{"s2@file"}}}
	at := func(s time.Duration, svc traefikapi.Service) traefikapi.Listing {
		return listing(t0.Add(s*time.Second/10), append([]traefikapi.Service{svc}, others...)...)
	}
	r1 := func(addrs ...string) string {
		var out []string
		for _, a := range addrs {
			out = append(out, a+" r1@file s1@file up")
		}
		return strings.Join(out, "\n")
	}
	e.Services(at(0, up))
	if got, want := plainRoutes(e), r1("10.0.0.1:80", "10.0.0.2:80"); got != want {
		t.Fatalf("at start:\n%s\nwant\n%s", got, want)
	}
	e.Services(at(10, down))
	if got, want := plainRoutes(e), r1("10.0.0.1:80"); got != want {
		t.Fatalf("a DOWN server stays published:\n%s\nwant\n%s", got, want)
	}
	// A reload: UP for less than two intervals, then the check says DOWN.
	e.Services(at(15, up))
	e.Services(at(30, up))
	if got, want := plainRoutes(e), r1("10.0.0.1:80"); got != want {
		t.Fatalf("a reload's UP republished a down server:\n%s\nwant\n%s", got, want)
	}
	e.Services(at(36, down))
	// It recovers: UP for two intervals (1 s each here).
	e.Services(at(40, up))
	e.Services(at(50, up))
	if got, want := plainRoutes(e), r1("10.0.0.1:80"); got != want {
		t.Fatalf("believed up after one interval:\n%s\nwant\n%s", got, want)
	}
	e.Services(traefikapi.Listing{Same: true, At: t0.Add(6 * time.Second)})
	if got, want := plainRoutes(e), r1("10.0.0.1:80", "10.0.0.2:80"); got != want {
		t.Fatalf("not back after two intervals UP:\n%s\nwant\n%s", got, want)
	}
	// A failed listing keeps what is known.
	e.Services(traefikapi.Listing{Err: fmt.Errorf("connection refused"), At: t0.Add(7 * time.Second)})
	if got, want := plainRoutes(e), r1("10.0.0.1:80", "10.0.0.2:80"); got != want {
		t.Fatalf("a failed listing moved the set:\n%s\nwant\n%s", got, want)
	}
}

func TestKeepDownPublishesADownServerWithItsHealth(t *testing.T) {
	opts := plainOptions(true)
	opts.Targets.KeepDown = true
	e := plainEngine(t, opts)
	s1 := lb("s1@file", time.Second, "http://10.0.0.1:80", "http://10.0.0.2:80")
	s1.Status["http://10.0.0.2:80"] = traefikapi.ServerDown
	e.Services(listing(t0, s1, lb("s2@file", 0), lb("s3@file", 0), traefikapi.Service{Name: "w@file"}))
	if got, want := plainRoutes(e), "10.0.0.1:80 r1@file s1@file up\n10.0.0.2:80 r1@file s1@file down"; got != want {
		t.Fatalf("with keepDown:\n%s\nwant\n%s", got, want)
	}
}

// TestRoutesAllWithoutEtcdPublishesEveryRouterTraefikServes: no
// middleware, no plugin; Traefik's API alone decides.
func TestRoutesAllWithoutEtcdPublishesEveryRouterTraefikServes(t *testing.T) {
	opts := plainOptions(false)
	opts.Targets.RoutesAll = true
	e := engine.New(opts, t0)
	disabled := fileRouter("r4@file", "s3@file")
	disabled.Status = traefikapi.StatusDisabled
	e.Routers(traefikapi.Update{Sweep: true, Routers: []traefikapi.Router{fileRouter("r3@file", "s3@file"), disabled}})
	res := e.Services(listing(t0, lb("s3@file", 0, "http://10.0.0.4:80")))
	// No plugin pushes here: the first set waits the start grace for them,
	// since pushes add labels (--plugin.startGrace=0 without the plugin).
	if !res.Changed || e.Ready(t0) || !e.Ready(t0.Add(opts.StartGrace)) {
		t.Fatal("readiness: want after the start grace, once Traefik's routers and services were listed")
	}
	if got, want := plainRoutes(e), "10.0.0.4:80 r3@file s3@file up"; got != want {
		t.Fatalf("routes.all:\n%s\nwant (r4 is disabled)\n%s", got, want)
	}
}

// TestANewRoutersServiceIsListedAtOnce: a router that names a service the
// last listing did not hold asks for a listing, rather than waiting a
// whole interval with no servers.
func TestANewRoutersServiceIsListedAtOnce(t *testing.T) {
	e := plainEngine(t, plainOptions(false))
	e.Services(listing(t0, lb("s1@file", 0, "http://10.0.0.1:80"), lb("s2@file", 0), lb("s3@file", 0), traefikapi.Service{Name: "w@file"}))
	if res := e.Routers(traefikapi.Update{Routers: []traefikapi.Router{fileRouter("r1@file", "s1@file", "sd@file")}}); res.Ask.Services {
		t.Error("asked for a listing about a known service")
	}
	if res := e.Routers(traefikapi.Update{Routers: []traefikapi.Router{fileRouter("r5@file", "s5@file", "sd@file")}}); !res.Ask.Services {
		t.Error("a router with an unlisted service did not ask for a listing")
	}
}

// TestTCPRoutersWithRoutesAll: Traefik has no TCP plugin middleware, so
// --routes.all publishes TCP routers' servers, from etcd or from Traefik's
// API, while Traefik's listing of its TCP routers says it serves them.
func TestTCPRoutersWithRoutesAll(t *testing.T) {
	tcpRouter := traefikapi.Router{Name: "bai_router_t1@etcd", Status: traefikapi.StatusEnabled, Service: "bai_service_t1@etcd",
		Rule: "HostSNI(`*`)", EntryPoints: []string{"portproxy_10223"}}
	tcpService := traefikapi.Service{Name: "bai_service_t1@etcd", Servers: []string{"10.0.1.12:2200"}}
	for _, etcd := range []bool{true, false} {
		t.Run(fmt.Sprintf("etcd=%v", etcd), func(t *testing.T) {
			opts := plainOptions(false)
			opts.Etcd, opts.Targets.RoutesAll, opts.StartGrace = etcd, true, 0
			e := engine.New(opts, t0)
			e.Routers(traefikapi.Update{Sweep: true})
			if etcd {
				b := watch.Batch{Snapshot: true, Received: t0}
				for k, v := range map[string]string{
					"tcp/routers/bai_router_t1/rule":                             "HostSNI(`*`)",
					"tcp/routers/bai_router_t1/service":                          "bai_service_t1",
					"tcp/routers/bai_router_t1/entrypoints/0":                    "portproxy_10223",
					"tcp/services/bai_service_t1/loadBalancer/servers/0/address": "10.0.1.12:2200",
				} {
					b.Events = append(b.Events, watch.Event{Key: k, Value: v})
				}
				sort.Slice(b.Events, func(i, j int) bool { return b.Events[i].Key < b.Events[j].Key })
				if res := e.Etcd([]watch.Batch{b}); !res.Ask.Services {
					t.Error("a TCP router written to etcd did not ask for Traefik's listing")
				}
				if got := plainRoutes(e); got != "" {
					t.Fatalf("published before Traefik lists the TCP router:\n%s", got)
				}
			}
			e.Services(traefikapi.Listing{TCPRouters: []traefikapi.Router{tcpRouter}, TCPServices: []traefikapi.Service{tcpService}, At: t0})
			if !e.Ready(t0) {
				t.Fatal("not ready")
			}
			if got, want := plainRoutes(e), "10.0.1.12:2200 bai_router_t1@etcd bai_service_t1@etcd up"; got != want {
				t.Fatalf("TCP targets:\n%s\nwant\n%s", got, want)
			}
			for _, tg := range e.Targets() {
				if tg.Label("service_group") == targets.GroupRoute &&
					(tg.Label("circuit_id") != "t1" || tg.Label("__meta_traefik_router_protocol") != "tcp" || tg.Label("__meta_traefik_server_address") != "10.0.1.12:2200") {
					t.Errorf("labels: %+v", tg.Labels)
				}
			}
			// Traefik drops the TCP router: its targets go.
			e.Services(traefikapi.Listing{TCPServices: []traefikapi.Service{tcpService}, At: t0.Add(time.Second)})
			if got := plainRoutes(e); got != "" {
				t.Fatalf("kept after Traefik dropped the TCP router:\n%s", got)
			}
		})
	}
}

// TestMetaLabelsCanBeLeftOut: --routes.meta=false publishes the same
// targets without a single __meta_ label.
func TestMetaLabelsCanBeLeftOut(t *testing.T) {
	opts := plainOptions(true)
	opts.Targets.NoMeta = true
	e := plainEngine(t, opts)
	e.Services(listing(t0, lb("s1@file", time.Second, "http://10.0.0.1:80"), lb("s2@file", 0), lb("s3@file", 0), traefikapi.Service{Name: "w@file"}))
	if got, want := plainRoutes(e), "10.0.0.1:80 r1@file s1@file up"; got != want {
		t.Fatalf("targets:\n%s\nwant\n%s", got, want)
	}
	for _, tg := range e.Targets() {
		for _, l := range tg.Labels {
			if strings.HasPrefix(l.Name, "__meta_") {
				t.Errorf("%s: %s=%q with meta labels off", tg.Address, l.Name, l.Value)
			}
		}
	}
}
