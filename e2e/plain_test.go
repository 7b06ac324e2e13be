//go:build e2e

package e2e_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"reflect"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/traefik-sd/traefik-sd/e2e/stack"
	"github.com/traefik-sd/traefik-sd/internal/testbed"
)

// A plain Traefik (stack.StartPlain): no etcd, no Backend.AI. The sidecar
// reads routers from Traefik's /api/http/routers and services (servers,
// serverStatus) from /api/http/services; a router whose middlewares
// include a traefik-sd middleware gets each server of its service
// published, labelled with what Traefik calls them and, as Prometheus SD
// meta labels, the router's provider, entry points and rule's hosts and
// the server's URL and health.

const plainRouteGroup = "appproxy-circuit-route"

// plainRoutes is the route targets a sidecar publishes: labels by address.
func plainRoutes(ctx context.Context, sc *stack.PlainSidecar) (map[string]map[string]string, error) {
	groups, err := sc.Targets(ctx)
	if err != nil {
		return nil, err
	}
	out := map[string]map[string]string{}
	for _, g := range groups {
		if g.Labels["service_group"] != plainRouteGroup {
			continue
		}
		for _, addr := range g.Targets {
			if _, dup := out[addr]; dup {
				return nil, fmt.Errorf("%s published twice", addr)
			}
			out[addr] = g.Labels
		}
	}
	return out, nil
}

// plainShow renders route targets one per line, labels sorted.
func plainShow(routes map[string]map[string]string) string {
	var ls []string
	for addr, labels := range routes {
		var kv []string
		for k, v := range labels {
			kv = append(kv, fmt.Sprintf("%s=%q", k, v))
		}
		sort.Strings(kv)
		ls = append(ls, addr+" {"+strings.Join(kv, ", ")+"}")
	}
	sort.Strings(ls)
	return "\n  " + strings.Join(ls, "\n  ")
}

// waitPlainRoutes waits until the sidecar publishes exactly want: these
// addresses, each with exactly these labels.
func waitPlainRoutes(t *testing.T, ctx context.Context, sc *stack.PlainSidecar, what string, timeout time.Duration,
	want map[string]map[string]string) {
	t.Helper()
	testbed.Eventually(t, timeout, what, func() (bool, string) {
		got, err := plainRoutes(ctx, sc)
		if err != nil {
			return false, err.Error()
		}
		return reflect.DeepEqual(got, want), "got" + plainShow(got) + "\nwant" + plainShow(want)
	})
}

// waitPlainAddrs waits until the sidecar's route targets are exactly these
// addresses, and returns them.
func waitPlainAddrs(t *testing.T, ctx context.Context, sc *stack.PlainSidecar, what string, timeout time.Duration,
	addrs ...string) map[string]map[string]string {
	t.Helper()
	want := append([]string(nil), addrs...)
	sort.Strings(want)
	var routes map[string]map[string]string
	testbed.Eventually(t, timeout, what, func() (bool, string) {
		got, err := plainRoutes(ctx, sc)
		if err != nil {
			return false, err.Error()
		}
		var have []string
		for addr := range got {
			have = append(have, addr)
		}
		sort.Strings(have)
		routes = got
		return reflect.DeepEqual(have, want) || (len(have) == 0 && len(want) == 0), fmt.Sprintf("want %v; got%s", want, plainShow(got))
	})
	return routes
}

// plainLabels is what a route target of router (on the web entry point,
// rule Host(`host`)) and its load-balancer service is labelled, for
// server c in the given health ("up" or "down" with --routes.keepDown,
// else ""), plus the middleware's labels.
func plainLabels(router, service, provider, host string, c *stack.Container, health string, extra map[string]string) map[string]string {
	m := map[string]string{
		"service_group":                     plainRouteGroup,
		"traefik_router":                    router + "@" + provider,
		"traefik_service":                   service + "@" + provider,
		"__meta_traefik_router_provider":    provider,
		"__meta_traefik_router_protocol":    "http",
		"__meta_traefik_router_entrypoints": ",web,",
		"__meta_traefik_router_rule_hosts":  "," + host + ",",
		"__meta_traefik_server_url":         c.ServerURL(),
	}
	if health != "" { // only with --routes.keepDown
		m["__meta_traefik_server_health"] = health
	}
	for k, v := range extra {
		m[k] = v
	}
	return m
}

// withoutMeta drops the __meta_ labels, which Prometheus drops after
// relabelling.
func withoutMeta(routes map[string]map[string]string) map[string]map[string]string {
	out := map[string]map[string]string{}
	for addr, labels := range routes {
		out[addr] = map[string]string{}
		for k, v := range labels {
			if !strings.HasPrefix(k, "__meta_") {
				out[addr][k] = v
			}
		}
	}
	return out
}

// waitPlainPrometheus waits until Prometheus scrapes exactly these route
// targets, each up and with the given traefik_router and traefik_service.
func waitPlainPrometheus(t *testing.T, ctx context.Context, p *stack.Plain, router, service string, addrs ...string) {
	t.Helper()
	want := append([]string(nil), addrs...)
	sort.Strings(want)
	testbed.Eventually(t, 60*time.Second, "Prometheus scrapes the route targets", func() (bool, string) {
		targets, err := p.PrometheusTargets(ctx)
		if err != nil {
			return false, err.Error()
		}
		var have, problems []string
		for _, tg := range targets {
			if tg.Labels["service_group"] != plainRouteGroup {
				continue
			}
			have = append(have, tg.Labels["instance"])
			if tg.Health != "up" {
				problems = append(problems, fmt.Sprintf("%s is %s: %s", tg.ScrapeURL, tg.Health, tg.LastError))
			}
			if tg.Labels["traefik_router"] != router || tg.Labels["traefik_service"] != service {
				problems = append(problems, fmt.Sprintf("%s: %v", tg.ScrapeURL, tg.Labels))
			}
		}
		sort.Strings(have)
		return reflect.DeepEqual(have, want) && len(problems) == 0, fmt.Sprintf("have %v, want %v; %v", have, want, problems)
	})
}

// plainNever polls the sidecar until stopped and records whether any of
// the banned addresses was ever published as a route target.
type plainNever struct {
	mu      sync.Mutex
	seen    map[string]bool
	done    chan struct{}
	stopped chan struct{}
}

func watchPlainNever(ctx context.Context, sc *stack.PlainSidecar, banned ...string) *plainNever {
	w := &plainNever{seen: map[string]bool{}, done: make(chan struct{}), stopped: make(chan struct{})}
	go func() {
		defer close(w.stopped)
		for {
			select {
			case <-w.done:
				return
			case <-time.After(100 * time.Millisecond):
			}
			routes, err := plainRoutes(ctx, sc)
			if err != nil {
				continue
			}
			w.mu.Lock()
			for _, addr := range banned {
				if labels, ok := routes[addr]; ok {
					w.seen[addr+" "+labels["traefik_router"]] = true
				}
			}
			w.mu.Unlock()
		}
	}()
	return w
}

func (w *plainNever) stop() []string {
	close(w.done)
	<-w.stopped
	var out []string
	for k := range w.seen {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// plainTwoRouters is r1 (Host a.example, the sd middleware with labels)
// on s1 (servers, health-checked) and, when r2 is given, r2 (b.example, no
// middleware) on s2.
func plainTwoRouters(sidecarURL string, labels map[string]string, s1 []*stack.Container, r2 *stack.Container) stack.PlainConfig {
	cfg := stack.PlainConfig{
		Routers:     []stack.PlainRouter{{Name: "r1", Host: "a.example", Service: "s1", Middlewares: []string{"sd"}}},
		Services:    []stack.PlainService{{Name: "s1", HealthCheck: true}},
		Middlewares: map[string]map[string]interface{}{"sd": stack.SDMiddleware(sidecarURL, labels)},
	}
	for _, c := range s1 {
		cfg.Services[0].Servers = append(cfg.Services[0].Servers, c.ServerURL())
	}
	if r2 != nil {
		cfg.Routers = append(cfg.Routers, stack.PlainRouter{Name: "r2", Host: "b.example", Service: "s2"})
		cfg.Services = append(cfg.Services, stack.PlainService{Name: "s2", Servers: []string{r2.ServerURL()}})
	}
	return cfg
}

// TestPlainTraefikFileProvider: Traefik's file provider, the traefik-sd
// middleware on r1 only. r1's two servers are published with every label
// and meta label, r2's never; a server failing its health check leaves
// and returns when healed; a server removed from the service, then the
// router deleted, are withdrawn.
func TestPlainTraefikFileProvider(t *testing.T) {
	p := stack.StartPlain(t, stack.PlainOptions{Dir: t.TempDir(), Quiet: true})
	ctx := testbed.Context(t, 3*time.Minute)
	a := stack.StartContainer(t, "a", "", "")
	b := stack.StartContainer(t, "b", "", "")
	c := stack.StartContainer(t, "c", "", "")
	team := map[string]string{"team": "ml"}
	never := watchPlainNever(ctx, p.Sidecar, c.HostPort)

	cfg := plainTwoRouters(p.SidecarURL, team, []*stack.Container{a, b}, c)
	p.SetConfig(cfg.YAML())
	label := func(s *stack.Container, health string) map[string]string {
		return plainLabels("r1", "s1", "file", "a.example", s, "", team)
	}
	waitPlainRoutes(t, ctx, p.Sidecar, "r1's servers published with their labels, r2's not", 30*time.Second,
		map[string]map[string]string{a.HostPort: label(a, "up"), b.HostPort: label(b, "up")})
	waitPlainPrometheus(t, ctx, p, "r1@file", "s1@file", a.HostPort, b.HostPort)

	b.SetHealthy(false)
	waitPlainAddrs(t, ctx, p.Sidecar, "a server failing its health check withdrawn", 15*time.Second, a.HostPort)
	b.SetHealthy(true)
	waitPlainRoutes(t, ctx, p.Sidecar, "the healed server back", 60*time.Second,
		map[string]map[string]string{a.HostPort: label(a, "up"), b.HostPort: label(b, "up")})

	cfg = plainTwoRouters(p.SidecarURL, team, []*stack.Container{a}, c)
	p.SetConfig(cfg.YAML())
	waitPlainRoutes(t, ctx, p.Sidecar, "a server removed from s1 withdrawn", 30*time.Second,
		map[string]map[string]string{a.HostPort: label(a, "up")})

	cfg.Routers = cfg.Routers[1:] // r2 only
	p.SetConfig(cfg.YAML())
	waitPlainAddrs(t, ctx, p.Sidecar, "r1 deleted: its targets withdrawn", 30*time.Second)

	if seen := never.stop(); len(seen) > 0 {
		t.Errorf("a router without the traefik-sd middleware was published: %v", seen)
	}
}

// TestPlainTraefikOTLPOnly: Traefik exports its metrics over OTLP only, so
// it serves no /metrics, and the sidecar runs with --traefik.metricsURL=
// (empty): health comes from the API's serverStatus.
func TestPlainTraefikOTLPOnly(t *testing.T) {
	p := stack.StartPlain(t, stack.PlainOptions{Dir: t.TempDir(), Quiet: true, OTLPOnly: true})
	ctx := testbed.Context(t, 3*time.Minute)
	if p.TraefikMetricsURL != "" {
		t.Fatalf("TraefikMetricsURL = %q with OTLPOnly", p.TraefikMetricsURL)
	}
	resp, err := http.Get(p.TraefikAPI + "/metrics")
	testbed.Must(t, err, "Traefik's /metrics")
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Fatalf("Traefik's /metrics with OTLP only: %s, want 404", resp.Status)
	}
	testbed.Eventually(t, 15*time.Second, "Traefik pushes its metrics over OTLP", func() (bool, string) {
		n := p.OTLPPushes()
		return n > 0, fmt.Sprintf("%d pushes", n)
	})

	a := stack.StartContainer(t, "a", "", "")
	b := stack.StartContainer(t, "b", "", "")
	p.SetConfig(plainTwoRouters(p.SidecarURL, nil, []*stack.Container{a, b}, nil).YAML())
	label := func(s *stack.Container, health string) map[string]string {
		return plainLabels("r1", "s1", "file", "a.example", s, "", nil)
	}
	waitPlainRoutes(t, ctx, p.Sidecar, "r1's servers published without Traefik's /metrics", 30*time.Second,
		map[string]map[string]string{a.HostPort: label(a, "up"), b.HostPort: label(b, "up")})

	b.SetHealthy(false)
	waitPlainAddrs(t, ctx, p.Sidecar, "a server failing its health check withdrawn (serverStatus DOWN)", 15*time.Second, a.HostPort)
	b.SetHealthy(true)
	waitPlainRoutes(t, ctx, p.Sidecar, "the healed server back (serverStatus UP)", 60*time.Second,
		map[string]map[string]string{a.HostPort: label(a, "up"), b.HostPort: label(b, "up")})
}

// TestPlainTraefikRedisProvider: Traefik's Redis KV provider (rootKey
// traefik); references are @redis, and a server added to the service in
// Redis is followed.
func TestPlainTraefikRedisProvider(t *testing.T) {
	p := stack.StartPlain(t, stack.PlainOptions{Dir: t.TempDir(), Quiet: true, Provider: stack.ProviderRedis})
	ctx := testbed.Context(t, 3*time.Minute)
	a := stack.StartContainer(t, "a", "", "")
	b := stack.StartContainer(t, "b", "", "")
	team := map[string]string{"team": "ml"}
	label := func(s *stack.Container) map[string]string {
		return plainLabels("r1", "s1", "redis", "a.example", s, "", team)
	}

	kv, err := stack.YAMLToKV(stack.PlainRootKey, plainTwoRouters(p.SidecarURL, team, []*stack.Container{a}, nil).YAML())
	testbed.Must(t, err, "the configuration as KV keys")
	for _, k := range []string{"traefik/http/routers/r1/rule", "traefik/http/routers/r1/middlewares/0",
		"traefik/http/services/s1/loadBalancer/servers/0/url", "traefik/http/middlewares/sd/plugin/traefik-sd/sidecarUrl"} {
		if _, ok := kv[k]; !ok {
			t.Fatalf("no %s in %v", k, kv)
		}
	}
	p.SetKV(kv)
	waitPlainRoutes(t, ctx, p.Sidecar, "r1@redis's server published", 30*time.Second,
		map[string]map[string]string{a.HostPort: label(a)})
	waitPlainPrometheus(t, ctx, p, "r1@redis", "s1@redis", a.HostPort)

	kv["traefik/http/services/s1/loadBalancer/servers/1/url"] = b.ServerURL()
	p.SetKV(kv)
	waitPlainRoutes(t, ctx, p.Sidecar, "a server added in Redis published", 30*time.Second,
		map[string]map[string]string{a.HostPort: label(a), b.HostPort: label(b)})
}

// TestPlainTraefikKeepDown: with --routes.keepDown a server failing its
// health check stays published, its __meta_traefik_server_health down.
func TestPlainTraefikKeepDown(t *testing.T) {
	p := stack.StartPlain(t, stack.PlainOptions{Dir: t.TempDir(), Quiet: true, SidecarArgs: []string{"--routes.keepDown"}})
	ctx := testbed.Context(t, 3*time.Minute)
	a := stack.StartContainer(t, "a", "", "")
	b := stack.StartContainer(t, "b", "", "")
	p.SetConfig(plainTwoRouters(p.SidecarURL, nil, []*stack.Container{a, b}, nil).YAML())
	label := func(s *stack.Container, health string) map[string]string {
		return plainLabels("r1", "s1", "file", "a.example", s, health, nil)
	}
	waitPlainRoutes(t, ctx, p.Sidecar, "both servers up", 30*time.Second,
		map[string]map[string]string{a.HostPort: label(a, "up"), b.HostPort: label(b, "up")})
	b.SetHealthy(false)
	waitPlainRoutes(t, ctx, p.Sidecar, "the failing server kept, marked down", 15*time.Second,
		map[string]map[string]string{a.HostPort: label(a, "up"), b.HostPort: label(b, "down")})
	b.SetHealthy(true)
	waitPlainRoutes(t, ctx, p.Sidecar, "the healed server marked up", 60*time.Second,
		map[string]map[string]string{a.HostPort: label(a, "up"), b.HostPort: label(b, "up")})
}

// TestHealthFromAPIAgreesWithMetrics: one Traefik, two sidecars with
// --routes.all (routers without the middleware published too, no plugin
// needed): one reads health from Traefik's /metrics, the other (with
// --traefik.metricsURL= empty) from the API's serverStatus. They publish
// the same, a failing server is withdrawn by both, and both return it.
func TestHealthFromAPIAgreesWithMetrics(t *testing.T) {
	p := stack.StartPlain(t, stack.PlainOptions{Dir: t.TempDir(), Quiet: true, SidecarArgs: []string{"--routes.all"}})
	fromAPI := p.StartSidecar(t, "", "--routes.all")
	ctx := testbed.Context(t, 3*time.Minute)
	a := stack.StartContainer(t, "a", "", "")
	b := stack.StartContainer(t, "b", "", "")
	c := stack.StartContainer(t, "c", "", "")
	p.SetConfig(stack.PlainConfig{
		Routers: []stack.PlainRouter{
			{Name: "r1", Host: "a.example", Service: "s1"},
			{Name: "r2", Host: "b.example", Service: "s2"},
		},
		Services: []stack.PlainService{
			{Name: "s1", Servers: []string{a.ServerURL(), b.ServerURL()}, HealthCheck: true},
			{Name: "s2", Servers: []string{c.ServerURL()}, HealthCheck: true},
		},
	}.YAML())
	want := map[string]map[string]string{
		a.HostPort: plainLabels("r1", "s1", "file", "a.example", a, "", nil),
		b.HostPort: plainLabels("r1", "s1", "file", "a.example", b, "", nil),
		c.HostPort: plainLabels("r2", "s2", "file", "b.example", c, "", nil),
	}
	sidecars := map[string]*stack.PlainSidecar{"health from /metrics": p.Sidecar, "health from the API": fromAPI}
	for name, sc := range sidecars {
		waitPlainRoutes(t, ctx, sc, name+": every router published without the middleware", 30*time.Second, want)
	}

	both := func(what string, timeout time.Duration, addrs ...string) (map[string]map[string]string, map[string]map[string]string) {
		t.Helper()
		var fromMetrics, fromServerStatus map[string]map[string]string
		testbed.Eventually(t, timeout, what, func() (bool, string) {
			var msg []string
			ok := true
			for name, sc := range sidecars {
				got, err := plainRoutes(ctx, sc)
				if err != nil {
					return false, name + ": " + err.Error()
				}
				var have []string
				for addr := range got {
					have = append(have, addr)
				}
				sort.Strings(have)
				if !reflect.DeepEqual(have, addrs) {
					ok = false
				}
				msg = append(msg, name+":"+plainShow(got))
				if sc == fromAPI {
					fromServerStatus = got
				} else {
					fromMetrics = got
				}
			}
			sort.Strings(msg)
			return ok, fmt.Sprintf("want %v\n%s", addrs, strings.Join(msg, "\n"))
		})
		return fromMetrics, fromServerStatus
	}
	sorted := func(addrs ...string) []string { sort.Strings(addrs); return addrs }

	b.SetHealthy(false)
	m, s := both("both sidecars withdraw the failing server", 15*time.Second, sorted(a.HostPort, c.HostPort)...)
	if !reflect.DeepEqual(withoutMeta(m), withoutMeta(s)) {
		t.Errorf("the two sidecars disagree:\nfrom /metrics%s\nfrom the API%s", plainShow(m), plainShow(s))
	}
	b.SetHealthy(true)
	m, s = both("both sidecars return the healed server", 60*time.Second, sorted(a.HostPort, b.HostPort, c.HostPort)...)
	if !reflect.DeepEqual(withoutMeta(m), withoutMeta(s)) {
		t.Errorf("the two sidecars disagree:\nfrom /metrics%s\nfrom the API%s", plainShow(m), plainShow(s))
	}
	for name, sc := range sidecars {
		waitPlainRoutes(t, ctx, sc, name+": every label as before", 30*time.Second, want)
	}
}
