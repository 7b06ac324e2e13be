// Command demo starts the whole path with the real programs (etcd, Traefik
// with the traefik-sd plugin, the sidecar, sample containers, Prometheus),
// creates a few circuits as Backend.AI's coordinator with the traefik-sd
// patch would (integrations/backend.ai), and answers its API, prints where to
// look, and runs until interrupted; then it stops everything it started.
package main

import (
	"context"
	"flag"
	"fmt"
	"net/http"
	"os"
	"os/signal"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/traefik-sd/traefik-sd/e2e/stack"
	"github.com/traefik-sd/traefik-sd/internal/coordinator"
	"github.com/traefik-sd/traefik-sd/internal/testbed"
)

func main() {
	runFor := flag.Duration("for", 0, "stop after this long (0: until interrupted)")
	flag.Parse()
	r := &testbed.Runner{}
	dir, err := os.MkdirTemp("", "traefik-sd-demo-")
	if err != nil {
		r.Fatalf("%v", err)
	}
	r.Cleanup(func() { os.RemoveAll(dir) })

	fmt.Println("Starting etcd, Traefik with the traefik-sd plugin, traefik-sd, sample containers, Redis and Prometheus…")
	s := stack.Start(r, stack.Options{Dir: dir, ScrapeInterval: 2 * time.Second, Quiet: true, Redis: true})
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if *runFor > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, *runFor)
		defer cancel()
	}

	jupyter := stack.StartContainer(r, "jupyter", "0b7c1c1e-2f0a-4d8e-9a41-6a1f3e5d7c90", "")
	llama1 := stack.StartContainer(r, "llama-1", "4e5f8a9b-0c1d-4e2f-8a4b-5c6d7e8f9a0b", "8d1e6f0a-3b2c-4e5f-8a9b-0c1d2e3f4a5b")
	llama2 := stack.StartContainer(r, "llama-2", "7a8b9c0d-1e2f-4a3b-8c5d-6e7f8a9b0c1d", "2c3d4e5f-6a7b-4c8d-9e0f-1a2b3c4d5e6f")
	circuits := []coordinator.Circuit{
		{
			ID: "6a1f3e5d-0b7c-4d8e-9a41-1c1e2f0a7c90", App: "jupyter", Mode: "interactive", Hostname: "jupyter.example",
			Routes: []coordinator.Route{jupyter.Route()},
		},
		{
			ID: "9f0c7f0e-8a1b-4c3d-8e5f-3f0f2a9e6c8e", App: "llama-chat", Mode: "inference", Hostname: "llama-chat.example",
			Routes: []coordinator.Route{llama1.Route(), llama2.Route()}, HealthCheckPath: "/health", HealthInterval: "2s",
		},
	}
	if err := s.Coord.Put(ctx, circuits...); err != nil {
		r.Fatalf("writing circuits: %v", err)
	}
	fmt.Println("Wrote 2 circuits into etcd as the AppProxy coordinator with the traefik-sd patch does; waiting until Prometheus scrapes them…")
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		if up := routesUp(ctx, s); up == 3 {
			break
		}
		time.Sleep(500 * time.Millisecond)
	}

	fmt.Printf(`
traefik-sd is running. Look at:
  its status page (open it in a browser):               %[1]s/
  targets the sidecar publishes (Prometheus HTTP SD):  curl -s %[1]s/v1/targets | python3 -m json.tool
  the sidecar's own metrics:                          curl -s %[1]s/metrics | grep ^traefik_sd_
  what Prometheus discovered and scrapes:             %[2]s/targets   (API: %[2]s/api/v1/targets)
  Traefik's routers as loaded (API):                  curl -s %[3]s/api/http/routers | python3 -m json.tool
  a request through Traefik:                          curl -s -H 'Host: llama-chat.example' %[4]s/
  the etcd keys:                                      ETCDCTL_API=3 etcdctl --endpoints=%[5]s get --prefix %[9]s/ --keys-only
  the coordinator's route and session ids (its API):  curl -s -H 'X-BackendAI-Token: %[11]s' %[10]s/api/worker/%[12]s/circuits | python3 -m json.tool
  the same targets in Backend.AI's ServiceDiscovery (Redis), as its Manager serves them:
                                                      curl -s %[7]s/metrics/service_discovery | python3 -m json.tool
                                                      redis-cli -u redis://%[8]s --scan --pattern 'service_discovery.*'
Logs are in %[6]s. Press Ctrl-C to stop everything.

`, s.SidecarURL, s.PrometheusURL, s.TraefikAPI, s.EntryURL, s.Etcd.Endpoint, dir, s.ManagerURL, s.Redis.Address,
		s.Coord.RootKey(), s.CoordinatorURL, s.CoordinatorAPI.Token, stack.WorkerID)
	printTargets(ctx, s)

	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			fmt.Println("\nStopping everything…")
			r.Stop()
			return
		case <-tick.C:
			// A little traffic so the containers and Traefik have something to count.
			for _, host := range []string{"jupyter.example", "llama-chat.example"} {
				req, _ := http.NewRequestWithContext(ctx, http.MethodGet, s.EntryURL+"/", nil)
				req.Host = host
				if resp, err := http.DefaultClient.Do(req); err == nil {
					resp.Body.Close()
				}
			}
		}
	}
}

func routesUp(ctx context.Context, s *stack.Stack) int {
	targets, err := s.PrometheusTargets(ctx)
	if err != nil {
		return 0
	}
	n := 0
	for _, t := range targets {
		if t.Labels["service_group"] == "appproxy-circuit-route" && t.Health == "up" {
			n++
		}
	}
	return n
}

func printTargets(ctx context.Context, s *stack.Stack) {
	targets, err := s.PrometheusTargets(ctx)
	if err != nil {
		fmt.Println("Prometheus:", err)
		return
	}
	var rows []string
	for _, t := range targets {
		rows = append(rows, fmt.Sprintf("  %-5s %-22s %-20s circuit_id=%s session_id=%s route_id=%s worker_authority=%s",
			t.Health, t.Labels["instance"], t.Labels["service_group"], t.Labels["circuit_id"], t.Labels["session_id"], t.Labels["route_id"], t.Labels["worker_authority"]))
	}
	sort.Strings(rows)
	fmt.Println("Prometheus targets now (health, instance, service_group, labels):")
	fmt.Println(strings.Join(rows, "\n"))
}
