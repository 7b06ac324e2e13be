//go:build e2e

package e2e_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/traefik-sd/traefik-sd/e2e/stack"
	"github.com/traefik-sd/traefik-sd/internal/coordinator"
	"github.com/traefik-sd/traefik-sd/internal/testbed"
)

// traefikRouter is a router as Traefik's own API reports it.
type traefikRouter struct {
	Status string   `json:"status"`
	Error  []string `json:"error"`
}

func routerInTraefik(ctx context.Context, s *stack.Stack, name string) (traefikRouter, error) {
	var r traefikRouter
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, s.TraefikAPI+"/api/http/routers/"+url.PathEscape(name), nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return r, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return r, fmt.Errorf("%s", resp.Status)
	}
	return r, json.NewDecoder(resp.Body).Decode(&r)
}

// waitDisabled waits until Traefik's API reports the router disabled with an
// error containing want, and returns that error.
func waitDisabled(t *testing.T, ctx context.Context, s *stack.Stack, name, want string) string {
	t.Helper()
	var got traefikRouter
	testbed.Eventually(t, 30*time.Second, "Traefik disables "+name, func() (bool, string) {
		var err error
		got, err = routerInTraefik(ctx, s, name)
		if err != nil {
			return false, err.Error()
		}
		return got.Status == "disabled" && strings.Contains(strings.Join(got.Error, " "), want), fmt.Sprintf("%+v", got)
	})
	return strings.Join(got.Error, "; ")
}

// neverPublished polls the sidecar until stopped and records any route
// target of the given circuits.
type neverPublished struct {
	seen    map[string]bool
	mu      sync.Mutex
	done    chan struct{}
	stopped chan struct{}
}

func watchNeverPublished(ctx context.Context, s *stack.Stack, circuits ...string) *neverPublished {
	w := &neverPublished{seen: map[string]bool{}, done: make(chan struct{}), stopped: make(chan struct{})}
	banned := map[string]bool{}
	for _, c := range circuits {
		banned[c] = true
	}
	go func() {
		defer close(w.stopped)
		for {
			select {
			case <-w.done:
				return
			case <-time.After(50 * time.Millisecond):
			}
			groups, err := s.SidecarTargets(ctx)
			if err != nil {
				continue
			}
			w.mu.Lock()
			for _, g := range groups {
				if banned[g.Labels["circuit_id"]] {
					w.seen[g.Labels["circuit_id"]+" "+g.Targets[0]] = true
				}
			}
			w.mu.Unlock()
		}
	}()
	return w
}

func (w *neverPublished) stop() []string {
	close(w.done)
	<-w.stopped
	var out []string
	for k := range w.seen {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// TestRoutersTraefikRefusesAreNeverPublished: a router with a bad rule and
// one naming a middleware that does not exist both get a live plugin
// instance (Traefik builds the middlewares before it parses the rule), yet
// Traefik's API shows them disabled, and the sidecar never publishes them.
// A traefik-sd middleware whose configuration New refuses (a label name
// Prometheus would reject) disables its router in Traefik too, with New's
// error naming the field.
func TestRoutersTraefikRefusesAreNeverPublished(t *testing.T) {
	s := stack.Start(t, stack.Options{Dir: t.TempDir(), ScrapeInterval: time.Second, Quiet: true})
	ctx := testbed.Context(t, 5*time.Minute)
	good := stack.StartContainer(t, "good", "0b7c1c1e-0000-4d8e-9a41-6a1f3e5d7c90", "")
	badRule := stack.StartContainer(t, "bad-rule", "1b7c1c1e-0000-4d8e-9a41-6a1f3e5d7c90", "")
	noMW := stack.StartContainer(t, "no-middleware", "2b7c1c1e-0000-4d8e-9a41-6a1f3e5d7c90", "")
	badCfg := stack.StartContainer(t, "bad-config", "3b7c1c1e-0000-4d8e-9a41-6a1f3e5d7c90", "")
	const goodID, badRuleID, noMWID = "aaaa0000-0000-4000-8000-000000000001", "aaaa0000-0000-4000-8000-000000000002", "aaaa0000-0000-4000-8000-000000000003"
	const badCfgID = "aaaa0000-0000-4000-8000-000000000004"
	circuit := func(id, host string, c *stack.Container) coordinator.Circuit {
		return coordinator.Circuit{ID: id, App: "jupyter", Mode: "interactive", Hostname: host,
			Routes: []coordinator.Route{c.Route()}}
	}
	bad := circuit(badRuleID, "bad.example", badRule)
	bad.Rule = "Hots(`bad.example`)"
	missing := circuit(noMWID, "missing.example", noMW)
	missing.ExtraMiddlewares = []string{"nope"}

	refused := circuit(badCfgID, "refused.example", badCfg)
	refused.Labels = map[string]string{"bad-name": "x"}

	never := watchNeverPublished(ctx, s, badRuleID, noMWID, badCfgID)
	testbed.Must(t, s.Coord.Put(ctx, circuit(goodID, "good.example", good), bad, missing, refused), "create circuits")
	waitConverged(t, ctx, s, "the good circuit published", routeLine(good.HostPort, goodID, good.Session, ""))

	ruleErr := waitDisabled(t, ctx, s, "bai_router_"+badRuleID+"@etcd", "Hots")
	mwErr := waitDisabled(t, ctx, s, "bai_router_"+noMWID+"@etcd", "nope")
	cfgErr := waitDisabled(t, ctx, s, "bai_router_"+badCfgID+"@etcd", "bad-name")
	t.Logf("Traefik's errors: %q, %q, %q", ruleErr, mwErr, cfgErr)
	testbed.Eventually(t, 30*time.Second, "both counted as disabled by Traefik", func() (bool, string) {
		m := s.SidecarMetric(ctx, `traefik_sd_circuits_not_served{reason="disabled"}`)
		return m == "2", m
	})
	// The plugin's pushes alone would have published them: Traefik built
	// their traefik-sd middlewares (it builds a chain from its last
	// middleware, and the middlewares before it parses the rule).
	testbed.Eventually(t, 30*time.Second, "a live plugin instance for all three circuits", func() (bool, string) {
		m := s.SidecarMetric(ctx, "traefik_sd_plugin_middlewares")
		return m == "3", m
	})
	time.Sleep(3 * time.Second) // a few more polls, and a recheck round of the API
	if seen := never.stop(); len(seen) > 0 {
		t.Errorf("published circuits Traefik does not serve:\n%s", strings.Join(seen, "\n"))
	}
	got, problem := promRoutes(ctx, s, false)
	if got != routeLine(good.HostPort, goodID, good.Session, "") || problem != "" {
		t.Errorf("Prometheus has:\n%s\n%s", got, problem)
	}
}

// TestTraefikWithoutThePluginGetsNoRouteTargets: removing the plugin from
// Traefik's static configuration withdraws every circuit of the middleware.
func TestTraefikWithoutThePluginGetsNoRouteTargets(t *testing.T) {
	s := stack.Start(t, stack.Options{Dir: t.TempDir(), ScrapeInterval: time.Second, Quiet: true, NoPlugin: true})
	ctx := testbed.Context(t, 5*time.Minute)
	jupyter := stack.StartContainer(t, "jupyter", "0b7c1c1e-2f0a-4d8e-9a41-6a1f3e5d7c90", "")
	never := watchNeverPublished(ctx, s, interactiveID)
	testbed.Must(t, s.Coord.Put(ctx, coordinator.Circuit{ID: interactiveID, App: "jupyter", Mode: "interactive", Hostname: "jupyter.example",
		Routes: []coordinator.Route{jupyter.Route()}}), "create")
	why := waitDisabled(t, ctx, s, "bai_router_"+interactiveID+"@etcd", "")
	t.Logf("Traefik without the plugin: %q", why)
	testbed.Eventually(t, 30*time.Second, "counted as not served", func() (bool, string) {
		m := s.SidecarMetric(ctx, `traefik_sd_circuits_not_served{reason="disabled"}`)
		return m == "1", m
	})
	time.Sleep(3 * time.Second)
	if seen := never.stop(); len(seen) > 0 {
		t.Errorf("published without the plugin in Traefik:\n%s", strings.Join(seen, "\n"))
	}
	// Traefik's own target is still there, and scraped.
	testbed.Eventually(t, 60*time.Second, "Traefik's target scraped", func() (bool, string) {
		targets, err := s.PrometheusTargets(ctx)
		if err != nil {
			return false, err.Error()
		}
		for _, tg := range targets {
			if tg.Labels["service_group"] == "traefik" && tg.Health == "up" {
				return true, ""
			}
		}
		return false, fmt.Sprintf("%d targets", len(targets))
	})
}

// TestPluginOnlyModePublishesEveryLabel: a sidecar with no etcd at all
// publishes from the plugin's pushes, Traefik's API and /metrics.
func TestPluginOnlyModePublishesEveryLabel(t *testing.T) {
	s := stack.Start(t, stack.Options{Dir: t.TempDir(), ScrapeInterval: time.Second, Quiet: true, PluginOnly: true})
	ctx := testbed.Context(t, 5*time.Minute)
	jupyter := stack.StartContainer(t, "jupyter", "0b7c1c1e-2f0a-4d8e-9a41-6a1f3e5d7c90", "")
	llama1 := stack.StartContainer(t, "llama-1", "4e5f8a9b-0c1d-4e2f-8a4b-5c6d7e8f9a0b", "8d1e6f0a-3b2c-4e5f-8a9b-0c1d2e3f4a5b")
	llama2 := stack.StartContainer(t, "llama-2", "7a8b9c0d-1e2f-4a3b-8c5d-6e7f8a9b0c1d", "2c3d4e5f-6a7b-4c8d-9e0f-1a2b3c4d5e6f")
	interactive := coordinator.Circuit{ID: interactiveID, App: "jupyter", Mode: "interactive", Hostname: "jupyter.example",
		Routes: []coordinator.Route{jupyter.Route()}}
	inference := coordinator.Circuit{ID: inferenceID, App: "llama-chat", Mode: "inference", Hostname: "llama-chat.example",
		Routes: []coordinator.Route{llama1.Route(), llama2.Route()}, HealthCheckPath: "/health", HealthInterval: "1s"}
	testbed.Must(t, s.Coord.Put(ctx, interactive, inference), "create")
	line := func(c *stack.Container, circuit string) string {
		return routeLine(c.HostPort, circuit, c.Session, c.RouteID)
	}
	want := lines([]string{line(jupyter, interactiveID), line(llama1, inferenceID), line(llama2, inferenceID)})
	waitConverged(t, ctx, s, "published without etcd", want)

	targets, err := s.PrometheusTargets(ctx)
	testbed.Must(t, err, "Prometheus targets")
	for _, tg := range targets {
		if tg.Labels["service_group"] != "appproxy-circuit-route" {
			continue
		}
		id := tg.Labels["circuit_id"]
		for name, want := range map[string]string{
			"worker_authority": stack.Authority,
			"traefik_router":   "bai_router_" + id + "@etcd",
			"traefik_service":  "bai_service_" + id + "@etcd",
		} {
			if tg.Labels[name] != want {
				t.Errorf("%s: %s = %q, want %q", tg.ScrapeURL, name, tg.Labels[name], want)
			}
		}
		if tg.Labels["session_id"] == "" || (id == inferenceID && tg.Labels["route_id"] == "") {
			t.Errorf("%s: ids missing: %v", tg.ScrapeURL, tg.Labels)
		}
	}

	// Health still comes from Traefik's /metrics, matched on the server URL.
	llama2.SetHealthy(false)
	waitConverged(t, ctx, s, "unhealthy server withdrawn", lines([]string{line(jupyter, interactiveID), line(llama1, inferenceID)}))
	llama2.SetHealthy(true)
	waitConverged(t, ctx, s, "healed server back", want)

	testbed.Must(t, s.Coord.Delete(ctx, interactiveID), "delete")
	waitConverged(t, ctx, s, "deleted circuit withdrawn once Traefik drops it", lines([]string{line(llama1, inferenceID), line(llama2, inferenceID)}))
}

// promWatch polls Prometheus's own target list and records any expected
// route target it lost.
type promWatch struct {
	mu      sync.Mutex
	lost    map[string]bool
	polls   int
	done    chan struct{}
	stopped chan struct{}
}

func watchPrometheus(ctx context.Context, s *stack.Stack, want string) *promWatch {
	w := &promWatch{lost: map[string]bool{}, done: make(chan struct{}), stopped: make(chan struct{})}
	go func() {
		defer close(w.stopped)
		for {
			select {
			case <-w.done:
				return
			case <-time.After(200 * time.Millisecond):
			}
			got, problem := promRoutes(ctx, s, false)
			if strings.HasPrefix(problem, "Get") || strings.Contains(problem, "connection refused") {
				continue
			}
			present := map[string]bool{}
			for _, l := range strings.Split(got, "\n") {
				present[l] = true
			}
			w.mu.Lock()
			w.polls++
			for _, l := range strings.Split(want, "\n") {
				if !present[l] {
					w.lost[l] = true
				}
			}
			w.mu.Unlock()
		}
	}()
	return w
}

func (w *promWatch) stop() ([]string, int) {
	close(w.done)
	<-w.stopped
	var out []string
	for l := range w.lost {
		out = append(out, l)
	}
	sort.Strings(out)
	return out, w.polls
}

// TestSidecarKilledWhilePrometheusPollsLosesNothing: SIGKILL and restart of
// the sidecar, twice, while Prometheus refreshes its discovery every second:
// no 200 answer of the sidecar lacks a target, and Prometheus's own target
// list, polled every 200 ms, never loses one. The sidecar keeps no body
// (--server.keepBodyUpTo=0), so every answer Prometheus reads is rendered
// as it is sent, as a large set's is, and a kill can cut one short.
func TestSidecarKilledWhilePrometheusPollsLosesNothing(t *testing.T) {
	s := stack.Start(t, stack.Options{Dir: t.TempDir(), ScrapeInterval: time.Second, Quiet: true,
		SidecarArgs: []string{"--server.keepBodyUpTo=0"}})
	ctx := testbed.Context(t, 5*time.Minute)
	jupyter := stack.StartContainer(t, "jupyter", "0b7c1c1e-2f0a-4d8e-9a41-6a1f3e5d7c90", "")
	llama1 := stack.StartContainer(t, "llama-1", "4e5f8a9b-0c1d-4e2f-8a4b-5c6d7e8f9a0b", "8d1e6f0a-3b2c-4e5f-8a9b-0c1d2e3f4a5b")
	testbed.Must(t, s.Coord.Put(ctx,
		coordinator.Circuit{ID: interactiveID, App: "jupyter", Mode: "interactive", Hostname: "jupyter.example",
			Routes: []coordinator.Route{jupyter.Route()}},
		coordinator.Circuit{ID: inferenceID, App: "llama-chat", Mode: "inference", Hostname: "llama-chat.example",
			Routes: []coordinator.Route{llama1.Route()}}), "create")
	want := lines([]string{routeLine(jupyter.HostPort, interactiveID, jupyter.Session, ""), routeLine(llama1.HostPort, inferenceID, llama1.Session, llama1.RouteID)})
	waitConverged(t, ctx, s, "created", want)

	sidecar := watchForGhosts(ctx, s, want)
	prom := watchPrometheus(ctx, s, want)
	for round := 1; round <= 2; round++ {
		s.Sidecar.Signal(syscall.SIGKILL)
		s.Sidecar.Restart(t, true)
		start := time.Now()
		testbed.WaitHTTP(t, s.Sidecar, s.SidecarURL+"/readyz", http.StatusOK, 30*time.Second)
		t.Logf("round %d: the restarted sidecar was ready with the plugin's set after %v", round, time.Since(start))
		waitConverged(t, ctx, s, fmt.Sprintf("after kill %d", round), want)
		time.Sleep(3 * time.Second) // several Prometheus refreshes on the new process
	}
	if bad := sidecar.stop(); len(bad) > 0 {
		t.Errorf("the sidecar answered 200 with a wrong set:\n%s", strings.Join(bad, "\n"))
	}
	lost, polls := prom.stop()
	if polls < 20 {
		t.Errorf("Prometheus was polled only %d times", polls)
	}
	if len(lost) > 0 {
		t.Errorf("Prometheus lost targets while the sidecar restarted:\n%s", strings.Join(lost, "\n"))
	}
}
