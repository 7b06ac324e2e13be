//go:build e2e

package e2e_test

import (
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/traefik-sd/traefik-sd/e2e/stack"
	"github.com/traefik-sd/traefik-sd/internal/coordinator"
	"github.com/traefik-sd/traefik-sd/internal/testbed"
)

// TestPrometheusScrapesThroughTheManagersEndpoint is Backend.AI as it is
// deployed: the sidecar writes Redis (the default ServiceDiscovery store),
// the Manager's GET /metrics/service_discovery is served from it (read as
// the Manager reads it), and a real Prometheus with only Backend.AI's job
// discovers and scrapes every route and Traefik itself through it; a
// circuit with its own metrics path is scraped on that path, which shows
// Prometheus honours __metrics_path__ from the Manager's labels.
func TestPrometheusScrapesThroughTheManagersEndpoint(t *testing.T) {
	s := stack.Start(t, stack.Options{Dir: t.TempDir(), ScrapeInterval: time.Second, ThroughManager: true, Quiet: true})
	ctx := testbed.Context(t, 10*time.Minute)

	jupyter := stack.StartContainer(t, "jupyter", "0b7c1c1e-2f0a-4d8e-9a41-6a1f3e5d7c90", "")
	llama1 := stack.StartContainer(t, "llama-1", "4e5f8a9b-0c1d-4e2f-8a4b-5c6d7e8f9a0b", "8d1e6f0a-3b2c-4e5f-8a9b-0c1d2e3f4a5b")
	llama2 := stack.StartContainer(t, "llama-2", "7a8b9c0d-1e2f-4a3b-8c5d-6e7f8a9b0c1d", "2c3d4e5f-6a7b-4c8d-9e0f-1a2b3c4d5e6f")
	vllm := stack.StartContainer(t, "vllm", "5f6a7b8c-9d0e-4f1a-8b2c-3d4e5f6a7b8c", "")
	const vllmID = "0c9d8e7f-6a5b-4c3d-8e2f-1a0b9c8d7e6f"
	circuits := []coordinator.Circuit{
		{ID: interactiveID, App: "jupyter", Mode: "interactive", Hostname: "jupyter.example",
			Routes: []coordinator.Route{jupyter.Route()}},
		{ID: inferenceID, App: "llama-chat", Mode: "inference", Hostname: "llama-chat.example",
			Routes: []coordinator.Route{llama1.Route(), llama2.Route()}, HealthCheckPath: "/health", HealthInterval: "1s"},
		{ID: vllmID, App: "vllm", Mode: "interactive", Hostname: "vllm.example",
			Routes: []coordinator.Route{vllm.Route()}, MetricsPath: "/custom/metrics"},
	}
	testbed.Must(t, s.Coord.Put(ctx, circuits...), "create circuits")

	line := func(c *stack.Container, circuit, path string) string {
		return routeLine(c.HostPort, circuit, c.Session, c.RouteID) + " " + path
	}
	want := lines([]string{
		line(jupyter, interactiveID, "/metrics"), line(llama1, inferenceID, "/metrics"),
		line(llama2, inferenceID, "/metrics"), line(vllm, vllmID, "/custom/metrics"),
	})
	// What Prometheus scrapes through the Manager: every route, on its path,
	// up, with the Manager's labels; and this node's Traefik.
	through := func() (routes string, problem string) {
		targets, err := s.PrometheusTargets(ctx)
		if err != nil {
			return "", err.Error()
		}
		var ls []string
		traefik := 0
		for _, tg := range targets {
			if tg.Health != "up" {
				problem = fmt.Sprintf("%s is %s: %s", tg.ScrapeURL, tg.Health, tg.LastError)
			}
			if tg.Labels["service_id"] == "" || tg.Labels["version"] == "" {
				problem = fmt.Sprintf("%s lacks the Manager's labels: %v", tg.ScrapeURL, tg.Labels)
			}
			switch tg.Labels["service_group"] {
			case "traefik":
				traefik++
			case "appproxy-circuit-route":
				if tg.Labels["worker_authority"] != stack.Authority {
					problem = fmt.Sprintf("%s lacks worker_authority", tg.ScrapeURL)
				}
				path := tg.ScrapeURL[strings.Index(tg.ScrapeURL[len("http://"):], "/")+len("http://"):]
				ls = append(ls, routeLine(tg.Labels["instance"], tg.Labels["circuit_id"], tg.Labels["session_id"], tg.Labels["route_id"])+" "+path)
			default:
				// The AppProxy coordinator and worker register themselves
				// in Redis; the sidecar never writes their groups.
				problem = fmt.Sprintf("unexpected group %q through the Manager", tg.Labels["service_group"])
			}
		}
		if traefik != 1 {
			problem = fmt.Sprintf("%d Traefik targets, want 1", traefik)
		}
		return lines(ls), problem
	}
	took := testbed.Eventually(t, 90*time.Second, "every route and Traefik scraped through the Manager", func() (bool, string) {
		got, problem := through()
		return got == want && problem == "", "\n" + got + "\n" + problem
	})
	t.Logf("LATENCY create: etcd write -> Prometheus scraping every route through Redis and the Manager %v", took)
	if vllm.Scrapes() == 0 {
		t.Error("the container with its own metrics path was never scraped")
	}

	// The same set the sidecar publishes itself.
	sidecar, err := sidecarRoutes(ctx, s)
	testbed.Must(t, err, "sidecar targets")
	var bare []string
	for _, l := range strings.Split(want, "\n") {
		bare = append(bare, strings.TrimSpace(strings.TrimSuffix(strings.TrimSuffix(l, "/custom/metrics"), "/metrics")))
	}
	sort.Strings(bare)
	if sidecar != strings.Join(bare, "\n") {
		t.Errorf("/v1/targets:\n%s\nthrough the Manager:\n%s", sidecar, strings.Join(bare, "\n"))
	}

	// Deleted with the coordinator's prefix deletes: withdrawn from Redis,
	// so from Prometheus.
	testbed.Must(t, s.Coord.Delete(ctx, inferenceID), "delete circuit")
	want = lines([]string{line(jupyter, interactiveID, "/metrics"), line(vllm, vllmID, "/custom/metrics")})
	took = testbed.Eventually(t, 60*time.Second, "the deleted circuit withdrawn through the Manager", func() (bool, string) {
		got, problem := through()
		return got == want && problem == "", "\n" + got + "\n" + problem
	})
	t.Logf("LATENCY delete: etcd delete -> gone from Prometheus through the Manager %v", took)
}
