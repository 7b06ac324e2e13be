//go:build e2e

package e2e_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/traefik-sd/traefik-sd/e2e/stack"
	"github.com/traefik-sd/traefik-sd/internal/coordinator"
	"github.com/traefik-sd/traefik-sd/internal/testbed"
)

type dashboard struct {
	Panels []struct {
		Title   string `json:"title"`
		Targets []struct {
			Expr string `json:"expr"`
		} `json:"targets"`
	} `json:"panels"`
}

// promQuery runs an instant query; it returns the result's series labels,
// or Prometheus's error.
func promQuery(ctx context.Context, s *stack.Stack, expr string) ([]map[string]string, error) {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, s.PrometheusURL+"/api/v1/query?query="+url.QueryEscape(expr), nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var body struct {
		Status string `json:"status"`
		Error  string `json:"error"`
		Data   struct {
			Result []struct {
				Metric map[string]string `json:"metric"`
			} `json:"result"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return nil, err
	}
	if body.Status != "success" {
		return nil, fmt.Errorf("%s: %s", resp.Status, body.Error)
	}
	var out []map[string]string
	for _, r := range body.Data.Result {
		out = append(out, r.Metric)
	}
	return out, nil
}

// TestDashboardQueriesAnswer runs every query of
// examples/grafana-dashboard.json against the end-to-end Prometheus (the
// sidecar's own job included): each must answer without error, and the
// panel joining Traefik's per-service request rate with the containers'
// targets on circuit_id must return the circuit that took the requests.
func TestDashboardQueriesAnswer(t *testing.T) {
	raw, err := os.ReadFile("../examples/grafana-dashboard.json")
	testbed.Must(t, err, "dashboard")
	var d dashboard
	testbed.Must(t, json.Unmarshal(raw, &d), "dashboard JSON")

	s := stack.Start(t, stack.Options{Dir: t.TempDir(), ScrapeInterval: time.Second, Quiet: true})
	ctx := testbed.Context(t, 5*time.Minute)
	jupyter := stack.StartContainer(t, "jupyter", "0b7c1c1e-2f0a-4d8e-9a41-6a1f3e5d7c90", "")
	c := coordinator.Circuit{ID: interactiveID, App: "jupyter", Mode: "interactive", Hostname: "jupyter.example",
		Routes: []coordinator.Route{jupyter.Route()}}
	testbed.Must(t, s.Coord.Put(ctx, c), "create")
	waitConverged(t, ctx, s, "published", routeLine(jupyter.HostPort, interactiveID, jupyter.Session, ""))
	stop := make(chan struct{})
	defer close(stop)
	go func() { // traffic through Traefik, so that it counts requests per service
		for {
			select {
			case <-stop:
				return
			case <-time.After(100 * time.Millisecond):
				get(t, s.EntryURL, "jupyter.example")
			}
		}
	}()

	grafana := strings.NewReplacer("$__rate_interval", "30s", "$sidecar_job", "traefik-sd-sidecar")
	queries := 0
	for _, p := range d.Panels {
		for _, target := range p.Targets {
			queries++
			expr := grafana.Replace(target.Expr)
			joins := strings.Contains(p.Title, "joined")
			testbed.Eventually(t, 60*time.Second, fmt.Sprintf("panel %q answers", p.Title), func() (bool, string) {
				series, err := promQuery(ctx, s, expr)
				if err != nil {
					return false, err.Error()
				}
				if !joins {
					return true, ""
				}
				for _, m := range series {
					if m["circuit_id"] == interactiveID {
						return true, ""
					}
				}
				return false, fmt.Sprintf("the join returned %v, want the circuit %s", series, interactiveID)
			})
		}
	}
	if queries < 10 {
		t.Errorf("only %d queries found in the dashboard", queries)
	}
	// The sidecar's own job is scraped: its panels are not answering on nothing.
	if series, err := promQuery(ctx, s, `traefik_sd_etcd_watch_up{job="traefik-sd-sidecar"}`); err != nil || len(series) != 1 {
		t.Errorf("the sidecar's own metrics in Prometheus: %v %v", series, err)
	}
}
