package daemon_test

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/traefik-sd/traefik-sd/internal/testbed"
	"github.com/traefik-sd/traefik-sd/sidecar/config"
	"github.com/traefik-sd/traefik-sd/sidecar/daemon"
	"github.com/traefik/paerser/types"
)

// TestTraefikCredentialsReachTraefikAndRotateOnSIGHUP: a Traefik whose API
// and /metrics take one basic-auth user and a client certificate over
// HTTPS is read by the sidecar given --traefik.auth.* and --traefik.tls.*,
// on both paths. When Traefik's password changes, both are refused until
// the password file is re-read (SIGHUP), then answer again, with no
// restart; no password reaches the log.
func TestTraefikCredentialsReachTraefikAndRotateOnSIGHUP(t *testing.T) {
	dir := t.TempDir()
	certs := testbed.GenerateCerts(t, dir)
	var password atomic.Pointer[string]
	setPassword := func(pw string) { password.Store(&pw) }
	setPassword("pw-one")
	// Answers and refusals by path: 0 the API, 1 /metrics.
	var answered, refused [2]atomic.Int64
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(rw http.ResponseWriter, req *http.Request) {
		i := 0
		if req.URL.Path == "/metrics" {
			i = 1
		}
		if u, p, ok := req.BasicAuth(); !ok || u != "sd" || p != *password.Load() {
			refused[i].Add(1)
			http.Error(rw, "401 Unauthorized", http.StatusUnauthorized)
			return
		}
		answered[i].Add(1)
		if i == 0 {
			_, _ = rw.Write([]byte("[]"))
			return
		}
		_, _ = rw.Write([]byte("traefik_config_last_reload_success 1.7e9\n"))
	}))
	srv.TLS = certs.MutualTLS(t)
	srv.StartTLS()
	defer srv.Close()

	pwFile := filepath.Join(dir, "traefik-password")
	testbed.Must(t, os.WriteFile(pwFile, []byte("pw-one\n"), 0o600), "password file")
	cfg := config.Default()
	cfg.Address = "127.0.0.1:0"
	cfg.Etcd.Endpoints = nil // plugin-only: Traefik's API names the routers
	cfg.Worker.Authority = "worker-auth"
	cfg.Worker.Node = "node-a"
	cfg.Traefik.MetricsURL = srv.URL + "/metrics"
	cfg.Traefik.ScrapeInterval = types.Duration(100 * time.Millisecond)
	cfg.Traefik.APISweep = types.Duration(time.Second)
	cfg.Traefik.Auth = config.TraefikAuth{Username: "sd", PasswordFile: pwFile}
	cfg.Traefik.TLS = &config.TLS{CA: certs.CA, Cert: certs.ClientCert, Key: certs.ClientKey}
	testbed.Must(t, cfg.Complete(), "config")

	log := &testbed.LogBuffer{}
	d := daemon.New(cfg, slog.New(slog.NewTextHandler(log, &slog.HandlerOptions{Level: slog.LevelDebug})))
	ctx, cancel := context.WithCancel(context.Background())
	started := make(chan net.Addr, 1)
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx, started) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("daemon: %v", err)
		}
	}()
	var base string
	select {
	case a := <-started:
		base = "http://" + a.String()
	case err := <-done:
		t.Fatalf("daemon did not start: %v", err)
	}
	metric := func(series string) string { return testbed.Metric(ctx, base+"/metrics", series) }
	counts := func() string {
		return fmt.Sprintf("API %d answered %d refused, /metrics %d answered %d refused; sidecar: scrapes ok %s error %s, API sweeps %s errors %s",
			answered[0].Load(), refused[0].Load(), answered[1].Load(), refused[1].Load(),
			metric(`traefik_sd_traefik_scrapes_total{result="ok"}`), metric(`traefik_sd_traefik_scrapes_total{result="error"}`),
			metric(`traefik_sd_traefik_api_answers_total{result="sweep"}`), metric(`traefik_sd_traefik_api_answers_total{result="error"}`))
	}
	testbed.Eventually(t, 20*time.Second, "the API and /metrics answer the sidecar", func() (bool, string) {
		return answered[0].Load() > 0 && answered[1].Load() > 0 && metric(`traefik_sd_traefik_scrapes_total{result="ok"}`) != "0" &&
			metric(`traefik_sd_traefik_api_answers_total{result="sweep"}`) != "0", counts()
	})
	if refused[0].Load()+refused[1].Load() != 0 {
		t.Errorf("requests without the credentials: %s", counts())
	}

	// Traefik's password rotates, and the mounted secret with it; the
	// sidecar sends the old one until it re-reads the file.
	setPassword("pw-two")
	testbed.Must(t, os.WriteFile(pwFile, []byte("pw-two\n"), 0o600), "password file")
	testbed.Eventually(t, 20*time.Second, "the old password refused on both paths", func() (bool, string) {
		return refused[0].Load() > 0 && refused[1].Load() > 0 && metric(`traefik_sd_traefik_scrapes_total{result="error"}`) != "0" &&
			metric(`traefik_sd_traefik_api_answers_total{result="error"}`) != "0", counts()
	})
	d.ReloadSecrets()
	api, scrapes := answered[0].Load(), answered[1].Load()
	testbed.Eventually(t, 20*time.Second, "the new password taken on both paths", func() (bool, string) {
		return answered[0].Load() > api && answered[1].Load() > scrapes, counts()
	})
	testbed.Eventually(t, 10*time.Second, "the log tells of the outage's end", func() (bool, string) {
		// Without etcd the services' listing asks the API too, and may be
		// the one whose return is logged.
		api := log.Count("Traefik's API answers again") + log.Count("Traefik's API lists its services again")
		return log.Count("Traefik's /metrics answers again") > 0 && api > 0, log.Lines("")
	})
	if log.Count("401 Unauthorized") == 0 || log.Count("--traefik.auth.password") == 0 {
		t.Errorf("the log does not name the refusal and the re-read secret:\n%s", log.Lines(""))
	}
	for _, pw := range []string{"pw-one", "pw-two"} {
		if lines := log.Lines(pw); strings.TrimSpace(lines) != "" {
			t.Errorf("the log holds a password:\n%s", lines)
		}
	}
}
