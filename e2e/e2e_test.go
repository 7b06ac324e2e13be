//go:build e2e

// The end-to-end suite runs the real programs (`make e2e` builds and passes
// them): etcd, Traefik v3.6.12 with the plugin as a local plugin, the sidecar
// binary and Prometheus. It checks what Prometheus itself discovers and scrapes.
package e2e_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/traefik-sd/traefik-sd/e2e/stack"
	"github.com/traefik-sd/traefik-sd/internal/coordinator"
	"github.com/traefik-sd/traefik-sd/internal/testbed"
)

const (
	interactiveID = "6a1f3e5d-0b7c-4d8e-9a41-1c1e2f0a7c90"
	inferenceID   = "9f0c7f0e-8a1b-4c3d-8e5f-3f0f2a9e6c8e"
)

// routeLine is how a route target is compared: address and identity.
func routeLine(addr, circuit, session, route string) string {
	return strings.TrimSpace(fmt.Sprintf("%s %s %s %s", addr, circuit, session, route))
}

func lines(ls []string) string {
	sort.Strings(ls)
	return strings.Join(ls, "\n")
}

func sidecarRoutes(ctx context.Context, s *stack.Stack) (string, error) {
	groups, err := s.SidecarTargets(ctx)
	if err != nil {
		return "", err
	}
	var ls []string
	for _, g := range groups {
		if g.Labels["service_group"] == "appproxy-circuit-route" {
			if g.Labels["worker_authority"] != stack.Authority {
				return "", fmt.Errorf("route target without worker_authority: %+v", g)
			}
			ls = append(ls, routeLine(g.Targets[0], g.Labels["circuit_id"], g.Labels["session_id"], g.Labels["route_id"]))
		}
	}
	return lines(ls), nil
}

// promRoutes is the route targets Prometheus has, with every one scraped
// successfully (up) when requireUp.
func promRoutes(ctx context.Context, s *stack.Stack, requireUp bool) (string, string) {
	targets, err := s.PrometheusTargets(ctx)
	if err != nil {
		return "", err.Error()
	}
	var ls []string
	problem := ""
	for _, t := range targets {
		if t.Labels["service_group"] != "appproxy-circuit-route" {
			continue
		}
		if requireUp && t.Health != "up" {
			problem = fmt.Sprintf("%s is %s: %s", t.ScrapeURL, t.Health, t.LastError)
		}
		if t.Labels["worker_authority"] != stack.Authority {
			problem = fmt.Sprintf("%s lacks worker_authority", t.ScrapeURL)
		}
		ls = append(ls, routeLine(t.Labels["instance"], t.Labels["circuit_id"], t.Labels["session_id"], t.Labels["route_id"]))
	}
	return lines(ls), problem
}

func waitConverged(t *testing.T, ctx context.Context, s *stack.Stack, what, want string) (sidecar, prom time.Duration) {
	t.Helper()
	start := time.Now()
	sidecar = testbed.Eventually(t, 30*time.Second, what+" (sidecar)", func() (bool, string) {
		got, err := sidecarRoutes(ctx, s)
		if err != nil {
			return false, err.Error()
		}
		return got == want, "\n" + got
	})
	testbed.Eventually(t, 60*time.Second, what+" (Prometheus)", func() (bool, string) {
		got, problem := promRoutes(ctx, s, true)
		return got == want && problem == "", "\n" + got + "\n" + problem
	})
	return sidecar, time.Since(start)
}

func get(t *testing.T, entry, host string) (int, string) {
	req, _ := http.NewRequest(http.MethodGet, entry+"/", nil)
	req.Host = host
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestEndToEnd(t *testing.T) {
	started := time.Now()
	s := stack.Start(t, stack.Options{Dir: t.TempDir(), ScrapeInterval: time.Second})
	ctx := testbed.Context(t, 20*time.Minute)
	t.Logf("stack up in %v", time.Since(started))

	// make e2e runs on etcd as Backend.AI deploys it (3.5 or later), built
	// from its Go module (ETCD_BIN); make unit's integration tests run on
	// Debian's 3.4.
	var version struct {
		Server string `json:"etcdserver"`
	}
	testbed.Must(t, stack.GetJSON(ctx, "http://"+s.Etcd.Endpoint+"/version", &version), "etcd's version")
	t.Logf("etcd %s", version.Server)
	if os.Getenv("ETCD_BIN") != "" && !(strings.HasPrefix(version.Server, "3.5.") || strings.HasPrefix(version.Server, "3.6.") || strings.HasPrefix(version.Server, "3.7.")) {
		t.Errorf("ETCD_BIN runs etcd %s; the end-to-end run is meant for 3.5 or later", version.Server)
	}

	// 1. Traefik's own target, registered when the worker starts.
	testbed.Eventually(t, 60*time.Second, "Traefik's target scraped", func() (bool, string) {
		targets, err := s.PrometheusTargets(ctx)
		if err != nil {
			return false, err.Error()
		}
		for _, tg := range targets {
			if tg.Labels["service_group"] == "traefik" {
				ok := tg.Health == "up" && tg.Labels["worker_authority"] == stack.Authority && tg.Labels["worker_node"] == "node-a"
				return ok, fmt.Sprintf("%+v", tg)
			}
		}
		return false, fmt.Sprintf("%d targets, none of Traefik", len(targets))
	})
	for _, group := range []string{"appproxy-worker", "appproxy-coordinator"} {
		group := group
		testbed.Eventually(t, 30*time.Second, group+" target scraped", func() (bool, string) {
			targets, _ := s.PrometheusTargets(ctx)
			for _, tg := range targets {
				if tg.Labels["service_group"] == group && tg.Health == "up" {
					return true, ""
				}
			}
			return false, "absent"
		})
	}

	// 2. Circuits created: every healthy route endpoint is registered.
	jupyter := stack.StartContainer(t, "jupyter", "0b7c1c1e-2f0a-4d8e-9a41-6a1f3e5d7c90", "")
	llama1 := stack.StartContainer(t, "llama-1", "4e5f8a9b-0c1d-4e2f-8a4b-5c6d7e8f9a0b", "8d1e6f0a-3b2c-4e5f-8a9b-0c1d2e3f4a5b")
	llama2 := stack.StartContainer(t, "llama-2", "7a8b9c0d-1e2f-4a3b-8c5d-6e7f8a9b0c1d", "2c3d4e5f-6a7b-4c8d-9e0f-1a2b3c4d5e6f")
	llama3 := stack.StartContainer(t, "llama-3", "1a2b3c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d", "3d4e5f6a-7b8c-4d9e-8f0a-1b2c3d4e5f6a")
	interactive := coordinator.Circuit{
		ID: interactiveID, App: "jupyter", Mode: "interactive", Hostname: "jupyter.example",
		Routes: []coordinator.Route{jupyter.Route()},
	}
	inference := coordinator.Circuit{
		ID: inferenceID, App: "llama-chat", Mode: "inference", Hostname: "llama-chat.example",
		Routes: []coordinator.Route{llama1.Route(), llama2.Route()}, HealthCheckPath: "/health", HealthInterval: "1s",
	}
	line := func(c *stack.Container, circuit string) string {
		return routeLine(c.HostPort, circuit, c.Session, c.RouteID)
	}
	want := lines([]string{line(jupyter, interactiveID), line(llama1, inferenceID), line(llama2, inferenceID)})
	testbed.Must(t, s.Coord.Put(ctx, interactive, inference), "create circuits")
	toSidecar, toProm := waitConverged(t, ctx, s, "circuits created", want)
	t.Logf("LATENCY create: etcd write -> /v1/targets %v, -> Prometheus scraping every route %v", toSidecar, toProm)
	testbed.Eventually(t, 30*time.Second, "up == 1 for every route", func() (bool, string) {
		return queryUp(ctx, s) == "1 1 1", queryUp(ctx, s)
	})

	// 3. Requests through Traefik reach the containers with the plugin in the chain.
	testbed.Eventually(t, 30*time.Second, "requests through Traefik", func() (bool, string) {
		c1, b1 := get(t, s.EntryURL, "jupyter.example")
		c2, b2 := get(t, s.EntryURL, "llama-chat.example")
		return c1 == 200 && c2 == 200 && strings.HasPrefix(b1, "hello from jupyter") && strings.HasPrefix(b2, "hello from llama"),
			fmt.Sprintf("%d %q / %d %q", c1, b1, c2, b2)
	})
	testbed.Eventually(t, 30*time.Second, "plugin pushes from Traefik reach the sidecar", func() (bool, string) {
		m := s.SidecarMetric(ctx, "traefik_sd_plugin_middlewares")
		return m == "2", "plugin_middlewares=" + m
	})
	t.Logf("LATENCY etcd change -> Traefik loaded it (plugin push): count %s, sum %ss",
		s.SidecarMetric(ctx, "traefik_sd_etcd_change_to_plugin_push_seconds_count"), s.SidecarMetric(ctx, "traefik_sd_etcd_change_to_plugin_push_seconds_sum"))

	// 4. Routes change (one added, one removed); health follows Traefik's checks.
	inference.Routes = []coordinator.Route{llama2.Route(), llama3.Route()}
	testbed.Must(t, s.Coord.UpdateRoutes(ctx, inference), "update routes")
	want = lines([]string{line(jupyter, interactiveID), line(llama2, inferenceID), line(llama3, inferenceID)})
	toSidecar, toProm = waitConverged(t, ctx, s, "routes changed", want)
	t.Logf("LATENCY route change: etcd write -> /v1/targets %v, -> Prometheus %v", toSidecar, toProm)

	llama3.SetHealthy(false)
	failed := time.Now()
	waitConverged(t, ctx, s, "unhealthy container withdrawn", lines([]string{line(jupyter, interactiveID), line(llama2, inferenceID)}))
	t.Logf("LATENCY health check failing -> withdrawn from Prometheus %v", time.Since(failed))
	llama3.SetHealthy(true)
	waitConverged(t, ctx, s, "healed container back", want)

	// 5. Deleted with the coordinator's prefix deletes: withdrawn.
	testbed.Must(t, s.Coord.Delete(ctx, interactiveID), "delete circuit")
	want = lines([]string{line(llama2, inferenceID), line(llama3, inferenceID)})
	toSidecar, toProm = waitConverged(t, ctx, s, "deleted circuit withdrawn", want)
	t.Logf("LATENCY delete: etcd write -> /v1/targets %v, -> Prometheus %v", toSidecar, toProm)
	if llama3.Scrapes() == 0 || llama2.Scrapes() == 0 {
		t.Errorf("containers were never scraped: %d %d", llama2.Scrapes(), llama3.Scrapes())
	}

	// 6. Restarts converge to exactly the expected set, and nothing else is
	// ever published meanwhile.
	ghosts := watchForGhosts(ctx, s, want)
	// The sessions so far: at least the running Traefik's. A read that
	// fails must fail here, not leave nothing to compare with.
	before := s.SidecarMetric(ctx, "traefik_sd_plugin_sessions_total")
	sessions, err := strconv.ParseFloat(before, 64)
	if err != nil || sessions < 1 {
		t.Fatalf("traefik_sd_plugin_sessions_total before the Traefik restart: %q, want a count of at least 1", before)
	}
	s.Traefik.Restart(t, false)
	testbed.WaitHTTP(t, s.Traefik, s.TraefikAPI+"/ping", http.StatusOK, 60*time.Second)
	waitConverged(t, ctx, s, "after a Traefik restart", want)
	// The restarted process's plugin pushed its own full set, under a new
	// boot id: one more session, and its one live middleware.
	testbed.Eventually(t, 60*time.Second, "the restarted Traefik's plugin pushes under a new boot id", func() (bool, string) {
		now := s.SidecarMetric(ctx, "traefik_sd_plugin_sessions_total")
		m := s.SidecarMetric(ctx, "traefik_sd_plugin_middlewares")
		after, err := strconv.ParseFloat(now, 64)
		return err == nil && after > sessions && m == "1", fmt.Sprintf("sessions %v -> %q, plugin_middlewares=%s", sessions, now, m)
	})

	s.Sidecar.Signal(syscall.SIGKILL)
	s.Sidecar.Restart(t, true)
	testbed.WaitHTTP(t, s.Sidecar, s.SidecarURL+"/readyz", http.StatusOK, 30*time.Second)
	waitConverged(t, ctx, s, "after the sidecar was killed", want)
	// The new sidecar learned the set from the plugin re-sending it whole
	// (its heartbeat got 409), not from a periodic resync (5 minutes).
	if full := s.SidecarMetric(ctx, `traefik_sd_plugin_pushes_total{result="full"}`); full == "" || full == "0" {
		t.Errorf("the restarted sidecar got no full push from the plugin: %q", full)
	}

	s.Etcd.Restart(t, true)
	testbed.WaitHTTP(t, s.Etcd.Process, "http://"+s.Etcd.Endpoint+"/health", http.StatusOK, 30*time.Second)
	waitConverged(t, ctx, s, "after etcd was killed", want)
	// A change after the etcd restart still flows.
	testbed.Must(t, s.Coord.Put(ctx, interactive), "recreate after etcd restart")
	want = lines([]string{line(jupyter, interactiveID), line(llama2, inferenceID), line(llama3, inferenceID)})
	ghosts.allow(want)
	waitConverged(t, ctx, s, "change after etcd restart", want)
	if bad := ghosts.stop(); len(bad) > 0 {
		t.Errorf("published during restarts though never expected:\n%s", strings.Join(bad, "\n"))
	}
	t.Logf("whole run %v", time.Since(started))
}

func queryUp(ctx context.Context, s *stack.Stack) string {
	var body struct {
		Data struct {
			Result []struct {
				Value []interface{} `json:"value"`
			} `json:"result"`
		} `json:"data"`
	}
	q := url.QueryEscape(`up{service_group="appproxy-circuit-route"}`)
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, s.PrometheusURL+"/api/v1/query?query="+q, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if err := json.Unmarshal(b, &body); err != nil {
		return err.Error()
	}
	var vs []string
	for _, r := range body.Data.Result {
		if len(r.Value) == 2 {
			vs = append(vs, fmt.Sprint(r.Value[1]))
		}
	}
	sort.Strings(vs)
	return strings.Join(vs, " ")
}

// ghostWatch polls the sidecar and records any route target that is not in
// the allowed set (a target that should not have been published), and any
// answer that lacks an expected one (a good target dropped).
type ghostWatch struct {
	mu      sync.Mutex
	allowed map[string]bool
	ghosts  map[string]bool
	want    string
	done    chan struct{}
	stopped chan struct{}
}

func watchForGhosts(ctx context.Context, s *stack.Stack, want string) *ghostWatch {
	g := &ghostWatch{allowed: map[string]bool{}, ghosts: map[string]bool{}, done: make(chan struct{}), stopped: make(chan struct{}), want: want}
	g.allow(want)
	go func() {
		defer close(g.stopped)
		for {
			select {
			case <-g.done:
				return
			case <-time.After(50 * time.Millisecond):
			}
			got, err := sidecarRoutes(ctx, s)
			if err != nil {
				continue // the sidecar is down or not ready: Prometheus keeps its last list
			}
			g.mu.Lock()
			present := map[string]bool{}
			for _, l := range strings.Split(got, "\n") {
				present[l] = true
				if !g.allowed[l] {
					g.ghosts["published: "+l] = true
				}
			}
			for _, l := range strings.Split(g.want, "\n") {
				if !present[l] {
					g.ghosts["dropped: "+l] = true
				}
			}
			g.mu.Unlock()
		}
	}()
	return g
}

func (g *ghostWatch) allow(set string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, l := range strings.Split(set, "\n") {
		g.allowed[l] = true
	}
}

func (g *ghostWatch) stop() []string {
	close(g.done)
	<-g.stopped
	var out []string
	for l := range g.ghosts {
		out = append(out, l)
	}
	sort.Strings(out)
	return out
}
