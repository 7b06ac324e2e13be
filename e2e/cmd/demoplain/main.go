// Command demoplain starts traefik-sd in front of a plain Traefik: no etcd,
// no Backend.AI. Traefik (with the traefik-sd plugin) reads its routers from
// a watched directory (the file provider); the sidecar learns routers and
// services from Traefik's API; two sample containers sit behind one router
// with the traefik-sd middleware, and Prometheus discovers them through the
// sidecar. It prints what the sidecar publishes and what Prometheus
// scrapes, and runs until interrupted (or -for); then it stops everything
// it started.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/traefik-sd/traefik-sd/e2e/stack"
	"github.com/traefik-sd/traefik-sd/internal/testbed"
)

func main() {
	runFor := flag.Duration("for", 0, "stop after this long (0: until interrupted)")
	flag.Parse()
	r := &testbed.Runner{}
	dir, err := os.MkdirTemp("", "traefik-sd-demo-plain-")
	if err != nil {
		r.Fatalf("%v", err)
	}
	r.Cleanup(func() { os.RemoveAll(dir) })

	fmt.Println("Starting Traefik with the traefik-sd plugin (file provider), traefik-sd without etcd, sample containers and Prometheus…")
	p := stack.StartPlain(r, stack.PlainOptions{Dir: dir, ScrapeInterval: 2 * time.Second, Quiet: true})
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if *runFor > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, *runFor)
		defer cancel()
	}

	app1 := stack.StartContainer(r, "app-1", "", "")
	app2 := stack.StartContainer(r, "app-2", "", "")
	p.SetConfig(stack.PlainConfig{
		Routers: []stack.PlainRouter{{Name: "app", Host: "app.example", Service: "app", Middlewares: []string{"sd"}}},
		Services: []stack.PlainService{{Name: "app", Servers: []string{app1.ServerURL(), app2.ServerURL()},
			HealthCheck: true}},
		Middlewares: map[string]map[string]interface{}{"sd": stack.SDMiddleware(p.SidecarURL, map[string]string{"team": "demo"})},
	}.YAML())
	config := filepath.Join(p.ConfigDir, "dynamic.yml")
	fmt.Printf("Wrote %s (router app, Host(`app.example`), the traefik-sd middleware sd, service app with 2 servers); waiting until Prometheus scrapes them…\n", config)
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		if routesUp(ctx, p) == 2 {
			break
		}
		time.Sleep(500 * time.Millisecond)
	}

	fmt.Printf(`
traefik-sd is running in front of a plain Traefik. Look at:
  its status page (open it in a browser):               %[1]s/
  targets the sidecar publishes (Prometheus HTTP SD):  curl -s %[1]s/v1/targets | python3 -m json.tool
  the sidecar's own metrics:                          curl -s %[1]s/metrics | grep ^traefik_sd_
  what Prometheus discovered and scrapes:             %[2]s/targets   (API: %[2]s/api/v1/targets)
  Traefik's routers and services (API):               curl -s %[3]s/api/http/routers | python3 -m json.tool
                                                      curl -s %[3]s/api/http/services | python3 -m json.tool
  a request through Traefik:                          curl -s -H 'Host: app.example' %[4]s/
  Traefik's dynamic configuration (watched; edit it): %[5]s
Logs are in %[6]s. Press Ctrl-C to stop everything.

`, p.SidecarURL, p.PrometheusURL, p.TraefikAPI, p.EntryURL, config, dir)
	// Printed even when -for ran out while waiting: what there is.
	show, cancelShow := context.WithTimeout(context.Background(), 10*time.Second)
	printSidecar(show, p)
	printTargets(show, p)
	cancelShow()

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
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, p.EntryURL+"/", nil)
			req.Host = "app.example"
			if resp, err := http.DefaultClient.Do(req); err == nil {
				resp.Body.Close()
			}
		}
	}
}

func routesUp(ctx context.Context, p *stack.Plain) int {
	targets, err := p.PrometheusTargets(ctx)
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

// printSidecar prints the sidecar's /v1/targets body, indented.
func printSidecar(ctx context.Context, p *stack.Plain) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, p.SidecarURL+"/v1/targets", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		fmt.Println("traefik-sd:", err)
		return
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var out bytes.Buffer
	if json.Indent(&out, body, "", "  ") != nil {
		out.Reset()
		out.Write(body)
	}
	fmt.Printf("GET %s/v1/targets (%s):\n%s\n\n", p.SidecarURL, resp.Status, strings.TrimSpace(out.String()))
}

func printTargets(ctx context.Context, p *stack.Plain) {
	targets, err := p.PrometheusTargets(ctx)
	if err != nil {
		fmt.Println("Prometheus:", err)
		return
	}
	var rows []string
	for _, t := range targets {
		rows = append(rows, fmt.Sprintf("  %-5s %-22s %-19s %-23s traefik_router=%s traefik_service=%s team=%s",
			t.Health, t.Labels["instance"], t.Labels["job"], t.Labels["service_group"], t.Labels["traefik_router"], t.Labels["traefik_service"], t.Labels["team"]))
	}
	sort.Strings(rows)
	fmt.Println("Prometheus targets now (health, instance, job, service_group, labels):")
	fmt.Println(strings.Join(rows, "\n"))
}
