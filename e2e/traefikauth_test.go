//go:build e2e

package e2e_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/traefik-sd/traefik-sd/e2e/stack"
	"github.com/traefik-sd/traefik-sd/internal/coordinator"
	"github.com/traefik-sd/traefik-sd/internal/testbed"
)

// askTraefik GETs url with client, and basic auth when user is set; it
// returns the status, or the error of a request that got none.
func askTraefik(ctx context.Context, client *http.Client, url, user, password string) (int, string, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if user != "" {
		req.SetBasicAuth(user, password)
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return resp.StatusCode, string(body), nil
}

// TestTraefikWhoseAPIAndMetricsNeedAuth runs the real Traefik v3.6.12 with
// its API not insecure but served through a router with a basicAuth
// middleware (bcrypt), and its /metrics (prometheus@internal, routed by
// hand) only on an entry point of its own over TLS, asking for a client
// certificate and the same basic auth. The sidecar given
// --traefik.auth.* and --traefik.tls.* reads both: it publishes a circuit
// (which it does only once Traefik's API reports its router served) and
// withdraws a server whose health check fails (which only /metrics tells).
// The same sidecar without the credentials is refused by both: Traefik's
// 401, counted.
func TestTraefikWhoseAPIAndMetricsNeedAuth(t *testing.T) {
	started := time.Now()
	dir := t.TempDir()
	s := stack.Start(t, stack.Options{Dir: dir, TraefikAuth: true, NoPrometheus: true})
	ctx := testbed.Context(t, 5*time.Minute)
	t.Logf("stack up in %v", time.Since(started))
	a := s.TraefikAuth

	// Traefik itself: nothing without the credentials, on either path.
	plain := &http.Client{Timeout: 5 * time.Second}
	if code, _, err := askTraefik(ctx, plain, s.TraefikAPI+"/api/http/routers", "", ""); err != nil || code != http.StatusUnauthorized {
		t.Fatalf("Traefik's API without credentials: %d %v, want 401", code, err)
	}
	if code, _, err := askTraefik(ctx, plain, s.TraefikAPI+"/api/http/routers", stack.TraefikUser, stack.TraefikPassword); err != nil || code != http.StatusOK {
		t.Fatalf("Traefik's API with the credentials: %d %v, want 200", code, err)
	}
	if code, _, err := askTraefik(ctx, plain, s.TraefikAPI+"/metrics", stack.TraefikUser, stack.TraefikPassword); err != nil || code != http.StatusNotFound {
		t.Errorf("/metrics on the traefik entry point: %d %v, want 404 (only on the metrics entry point)", code, err)
	}
	caPEM, err := os.ReadFile(a.Certs.CA)
	testbed.Must(t, err, "CA")
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(caPEM)
	clientCert, err := tls.LoadX509KeyPair(a.Certs.ClientCert, a.Certs.ClientKey)
	testbed.Must(t, err, "client certificate")
	over := func(tc *tls.Config) *http.Client {
		return &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: tc}}
	}
	if _, _, err := askTraefik(ctx, over(&tls.Config{RootCAs: roots}), s.TraefikMetricsURL, stack.TraefikUser, stack.TraefikPassword); err == nil {
		t.Errorf("/metrics without a client certificate: answered, want the handshake refused")
	}
	withCert := over(&tls.Config{RootCAs: roots, Certificates: []tls.Certificate{clientCert}})
	if code, _, err := askTraefik(ctx, withCert, s.TraefikMetricsURL, "", ""); err != nil || code != http.StatusUnauthorized {
		t.Errorf("/metrics with a client certificate and no basic auth: %d %v, want 401", code, err)
	}
	if code, body, err := askTraefik(ctx, withCert, s.TraefikMetricsURL, stack.TraefikUser, stack.TraefikPassword); err != nil || code != http.StatusOK ||
		!strings.Contains(body, "traefik_config_reloads_total") {
		t.Fatalf("/metrics with everything: %d %v, want 200 with Traefik's metrics", code, err)
	}

	// The sidecar with the credentials: Traefik's API gates the circuit in,
	// its /metrics takes a failing server out.
	llama1 := stack.StartContainer(t, "llama-1", "4e5f8a9b-0c1d-4e2f-8a4b-5c6d7e8f9a0b", "8d1e6f0a-3b2c-4e5f-8a9b-0c1d2e3f4a5b")
	llama2 := stack.StartContainer(t, "llama-2", "7a8b9c0d-1e2f-4a3b-8c5d-6e7f8a9b0c1d", "2c3d4e5f-6a7b-4c8d-9e0f-1a2b3c4d5e6f")
	inference := coordinator.Circuit{
		ID: inferenceID, App: "llama-chat", Mode: "inference", Hostname: "llama-chat.example",
		Routes: []coordinator.Route{llama1.Route(), llama2.Route()}, HealthCheckPath: "/health", HealthInterval: "1s",
	}
	line := func(c *stack.Container) string { return routeLine(c.HostPort, inferenceID, c.Session, c.RouteID) }
	published := func(what, want string) time.Duration {
		return testbed.Eventually(t, 60*time.Second, what, func() (bool, string) {
			got, err := sidecarRoutes(ctx, s)
			if err != nil {
				return false, err.Error()
			}
			return got == want, fmt.Sprintf("\n%s\nAPI answers: %s sweeps, %s errors; scrapes: %s ok, %s errors", got,
				s.SidecarMetric(ctx, `traefik_sd_traefik_api_answers_total{result="sweep"}`),
				s.SidecarMetric(ctx, `traefik_sd_traefik_api_answers_total{result="error"}`),
				s.SidecarMetric(ctx, `traefik_sd_traefik_scrapes_total{result="ok"}`),
				s.SidecarMetric(ctx, `traefik_sd_traefik_scrapes_total{result="error"}`))
		})
	}
	both := lines([]string{line(llama1), line(llama2)})
	written := time.Now()
	testbed.Must(t, s.Coord.Put(ctx, inference), "create the circuit")
	published("the circuit published once Traefik's API shows its router", both)
	t.Logf("LATENCY etcd write -> published through Traefik's API behind basicAuth %v", time.Since(written))
	router := "bai_router_" + inferenceID + "@etcd"
	if code, body, err := askTraefik(ctx, plain, s.TraefikAPI+"/api/http/routers/"+router, stack.TraefikUser, stack.TraefikPassword); err != nil ||
		code != http.StatusOK || !strings.Contains(body, `"status":"enabled"`) {
		t.Errorf("Traefik's own view of %s: %d %v %s", router, code, err, body)
	}

	llama2.SetHealthy(false)
	failed := time.Now()
	published("the server whose health check fails withdrawn (Traefik's /metrics over TLS)", line(llama1))
	t.Logf("LATENCY health check failing -> withdrawn %v", time.Since(failed))
	llama2.SetHealthy(true)
	published("the healed server back", both)
	for _, series := range []string{`traefik_sd_traefik_scrapes_total{result="ok"}`, `traefik_sd_traefik_api_answers_total{result="sweep"}`} {
		if n, err := strconv.ParseFloat(s.SidecarMetric(ctx, series), 64); err != nil || n < 1 {
			t.Errorf("%s: %v %v, want at least 1", series, n, err)
		}
	}
	if scrapeOK := s.SidecarMetric(ctx, "traefik_sd_traefik_scrape_last_success_timestamp_seconds"); scrapeOK == "" || scrapeOK == "0" {
		t.Errorf("no successful scrape: %q", scrapeOK)
	}

	// The same sidecar without --traefik.auth.* (the TLS options kept, so
	// that what refuses it is the missing basic auth): both paths 401.
	port := testbed.FreePort(t)
	bare := "http://127.0.0.1:" + strconv.Itoa(port)
	var args []string
	for _, arg := range s.Sidecar.Args {
		switch {
		case strings.HasPrefix(arg, "--traefik.auth."):
		case strings.HasPrefix(arg, "--address="):
			args = append(args, "--address=127.0.0.1:"+strconv.Itoa(port))
		default:
			args = append(args, arg)
		}
	}
	if len(args) != len(s.Sidecar.Args)-2 {
		t.Fatalf("the sidecar's arguments had no --traefik.auth.username and …passwordFile to leave out: %q", s.Sidecar.Args)
	}
	logPath := filepath.Join(dir, "traefik-sd-without-credentials.log")
	p := testbed.Start(t, &testbed.Process{Name: "traefik-sd-without-credentials", Path: s.Sidecar.Path, Args: args, Dir: dir, Log: logPath})
	testbed.WaitHTTP(t, p, bare+"/healthz", http.StatusOK, 30*time.Second)
	metric := func(series string) string { return testbed.Metric(ctx, bare+"/metrics", series) }
	testbed.Eventually(t, 30*time.Second, "the sidecar without credentials refused by Traefik's API and /metrics", func() (bool, string) {
		apiErrors, _ := strconv.ParseFloat(metric(`traefik_sd_traefik_api_answers_total{result="error"}`), 64)
		scrapeErrors, _ := strconv.ParseFloat(metric(`traefik_sd_traefik_scrapes_total{result="error"}`), 64)
		return apiErrors >= 1 && scrapeErrors >= 2, fmt.Sprintf("API errors %v, scrape errors %v", apiErrors, scrapeErrors)
	})
	for _, series := range []string{`traefik_sd_traefik_api_answers_total{result="sweep"}`, `traefik_sd_traefik_api_answers_total{result="routers"}`,
		`traefik_sd_traefik_scrapes_total{result="ok"}`} {
		if got := metric(series); got != "0" {
			t.Errorf("the sidecar without credentials: %s = %q, want 0", series, got)
		}
	}
	log, err := os.ReadFile(logPath)
	testbed.Must(t, err, "its log")
	for _, want := range []string{"asking Traefik's API which routers it serves failed", "scraping Traefik's /metrics failed", "401 Unauthorized"} {
		if !strings.Contains(string(log), want) {
			t.Errorf("the log of the sidecar without credentials lacks %q:\n%s", want, log)
		}
	}
	// Neither sidecar's log holds the password.
	withLog, err := os.ReadFile(filepath.Join(dir, "traefik-sd.log"))
	testbed.Must(t, err, "the sidecar's log")
	if strings.Contains(string(withLog)+string(log), stack.TraefikPassword) {
		t.Errorf("a sidecar's log holds Traefik's password")
	}
	t.Logf("whole run %v", time.Since(started))
}
