package daemon_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/traefik-sd/traefik-sd/internal/testbed"
	"github.com/traefik-sd/traefik-sd/sidecar/config"
	"github.com/traefik/paerser/types"
)

const (
	interactiveLine = "10.0.1.10:9100 11111111-aaaa-4aaa-8aaa-000000000001 sess-i "
	inferenceLines  = "10.0.1.21:8000 22222222-bbbb-4bbb-8bbb-000000000002 sess-1 route-1\n" +
		"10.0.1.22:8000 22222222-bbbb-4bbb-8bbb-000000000002 sess-2 route-2"
)

// TestTraefiksViewGatesPublication: a router Traefik disables is withdrawn
// and counted with Traefik's error; a Traefik without the plugin gets no
// route target at all.
func TestTraefiksViewGatesPublication(t *testing.T) {
	e := startEnv(t, "worker-gate")
	ctx := testbed.Context(t, 2*time.Minute)
	testbed.Must(t, e.coord.Put(ctx, interactive(), inference()), "create")
	e.waitRoutes(t, "created", interactiveLine+"\n"+inferenceLines)

	e.traefik.disable("bai_router_22222222-bbbb-4bbb-8bbb-000000000002@etcd", "error while parsing rule Hots(`llama-chat.example`)")
	e.waitRoutes(t, "a router Traefik disabled is withdrawn", interactiveLine)
	testbed.Eventually(t, 10*time.Second, "counted as not served", func() (bool, string) {
		m := e.sidecarMetric(t, `traefik_sd_circuits_not_served{reason="disabled"}`)
		return m == "1", m
	})
	// Without the plugin in its static configuration, Traefik disables every
	// router that names a traefik-sd middleware, and no push ever comes.
	e.traefik.mu.Lock()
	e.traefik.noPlugin = true
	e.traefik.loaded = ""
	e.traefik.mu.Unlock()
	e.waitRoutes(t, "a Traefik without the plugin publishes no route", "")
	groups, _, _ := e.targets(t)
	if len(groups) != 2 { // Traefik's own and the coordinator's
		t.Errorf("static targets lost: %+v", groups)
	}
}

// TestPluginOnlyModeNeedsNoEtcd: with --etcd.endpoints= empty, the circuits
// come from the plugin's pushes and Traefik's API alone, with every label
// the middleware and Traefik give.
func TestPluginOnlyModeNeedsNoEtcd(t *testing.T) {
	e := startEnv(t, "worker-noetcd")
	ctx := testbed.Context(t, 2*time.Minute)
	cfg := config.Default()
	cfg.Address = "127.0.0.1:0"
	cfg.Etcd.Endpoints = nil
	cfg.Worker.Authority, cfg.Worker.Node = "worker-noetcd", "node-p"
	cfg.Traefik.ScrapeInterval = types100ms
	base, _ := e.startBeside(t, cfg)
	if !cfg.PluginOnly() {
		t.Fatal("the configuration is not plugin-only")
	}
	testbed.Must(t, e.coord.Put(ctx, interactive(), inference()), "create")
	other := &env{base: base}
	other.waitRoutes(t, "plugin-only targets", interactiveLine+"\n"+inferenceLines)
	groups, _, _ := other.targets(t)
	for _, g := range groups {
		if g.Labels["service_group"] != "appproxy-circuit-route" {
			continue
		}
		id := g.Labels["circuit_id"]
		if g.Labels["worker_authority"] != "worker-noetcd" || g.Labels["traefik_router"] != "bai_router_"+id+"@etcd" ||
			g.Labels["traefik_service"] != "bai_service_"+id+"@etcd" {
			t.Errorf("labels: %+v", g.Labels)
		}
	}
	testbed.Must(t, e.coord.Delete(ctx, interactive().ID), "delete")
	other.waitRoutes(t, "a circuit Traefik dropped is withdrawn", inferenceLines)
}

// TestRestartedSidecarNeverServesAShortSet: stopped and started again on the
// same address, the sidecar answers 503 until the plugin (told by its next
// heartbeat that the sidecar lost its set) has sent everything, then the
// whole set; no 200 answer ever lacks a target.
func TestRestartedSidecarNeverServesAShortSet(t *testing.T) {
	e := startEnv(t, "worker-restart")
	ctx := testbed.Context(t, 2*time.Minute)
	testbed.Must(t, e.coord.Put(ctx, interactive(), inference()), "create")
	want := interactiveLine + "\n" + inferenceLines
	e.waitRoutes(t, "created", want)

	cfg := config.Default()
	cfg.Address = "127.0.0.1:" + strconv.Itoa(testbed.FreePort(t))
	cfg.Etcd.Endpoints = []string{e.etcd.Endpoint}
	cfg.Worker.Authority, cfg.Worker.Node = "worker-restart", "node-r"
	cfg.Traefik.ScrapeInterval = types100ms
	side, stop := e.startBeside(t, cfg)
	under := &env{base: side}
	under.waitRoutes(t, "the sidecar under test publishes", want)

	// Poll all along, faster than Prometheus would.
	var mu sync.Mutex
	var short []string
	oks := 0
	quit := make(chan struct{})
	polled := make(chan struct{})
	go func() {
		defer close(polled)
		for {
			select {
			case <-quit:
				return
			case <-time.After(20 * time.Millisecond):
			}
			status, got := under.routesNow()
			mu.Lock()
			if status == http.StatusOK {
				oks++
				if got != want {
					short = append(short, got)
				}
			}
			mu.Unlock()
		}
	}()

	stop()
	_, stop = startDaemon(t, cfg)
	defer stop()
	took := testbed.Eventually(t, 20*time.Second, "the restarted sidecar serves the whole set", func() (bool, string) {
		status, got := under.routesNow()
		return status == http.StatusOK && got == want, fmt.Sprintf("%d\n%s", status, got)
	})
	t.Logf("the restarted sidecar served the whole set %v after it started", took)
	if took > 8*time.Second {
		t.Errorf("the plugin took %v to resend its set to a restarted sidecar; its 2s heartbeat should bring it within 5s", took)
	}
	time.Sleep(500 * time.Millisecond)
	close(quit)
	<-polled
	if len(short) > 0 {
		t.Errorf("%d of %d answers with 200 lacked targets, e.g.:\n%s", len(short), oks, short[0])
	}
	if m := under.sidecarMetric(t, `traefik_sd_plugin_pushes_total{result="need_full"}`); m == "" || m == "0" {
		t.Errorf("the restarted sidecar never answered a heartbeat with 409: %q", m)
	}
}

// routesNow is one answer of /v1/targets: its status and, on 200, its route lines.
func (e *env) routesNow() (int, string) {
	resp, err := http.Get(e.base + "/v1/targets")
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return resp.StatusCode, ""
	}
	var groups []group
	if err := json.NewDecoder(resp.Body).Decode(&groups); err != nil {
		return 0, err.Error()
	}
	return resp.StatusCode, routeSet(groups)
}

var types100ms = types.Duration(100 * time.Millisecond)

// TestABadAnswerOfTraefiksAPIIsCountedAndLoggedOnce: while Traefik's API
// gives a router a status Traefik does not use, every answer is refused and
// counted in traefik_sd_traefik_api_answers_total{result="error"}, read from
// the sidecar's own /metrics; the failure is logged once, with the status,
// not once per answer; the last good answer stands; and its return is logged
// once too.
func TestABadAnswerOfTraefiksAPIIsCountedAndLoggedOnce(t *testing.T) {
	log := &testbed.LogBuffer{}
	e := startEnvLogging(t, "worker-badapi", func(cfg *config.Configuration) {
		cfg.Traefik.APISweep = types.Duration(time.Second) // a listing every second, so answers keep coming
	}, log)
	ctx := testbed.Context(t, 2*time.Minute)
	testbed.Must(t, e.coord.Put(ctx, interactive()), "create")
	e.waitRoutes(t, "created", interactiveLine)
	const failed, back = "asking Traefik's API which routers it serves failed", "Traefik's API answers again"
	if m := e.sidecarMetric(t, `traefik_sd_traefik_api_answers_total{result="error"}`); m != "0" {
		t.Fatalf("errors counted before any bad answer: %q", m)
	}

	e.traefik.answerBadly("sleeping")
	testbed.Eventually(t, 30*time.Second, "three bad answers counted", func() (bool, string) {
		m := e.sidecarMetric(t, `traefik_sd_traefik_api_answers_total{result="error"}`)
		n, err := strconv.Atoi(m)
		return err == nil && n >= 3, m
	})
	if n := log.Count(failed); n != 1 || !strings.Contains(log.Lines(failed), `status \"sleeping\"`) {
		t.Errorf("the failure logged %d times, want once, naming the status:\n%s", n, log.Lines(failed))
	}
	if status, got := e.routesNow(); status != http.StatusOK || got != interactiveLine {
		t.Errorf("the last good answer did not stand: %d\n%s", status, got)
	}

	e.traefik.answerBadly("")
	testbed.Eventually(t, 30*time.Second, "the return logged", func() (bool, string) {
		return log.Count(back) > 0, log.Lines(back)
	})
	// A second listing after the return: still one line of each.
	ok := e.sidecarMetric(t, `traefik_sd_traefik_api_answers_total{result="sweep"}`)
	testbed.Eventually(t, 30*time.Second, "another good listing", func() (bool, string) {
		m := e.sidecarMetric(t, `traefik_sd_traefik_api_answers_total{result="sweep"}`)
		return m != ok && m != "", ok + " -> " + m
	})
	if nf, nb := log.Count(failed), log.Count(back); nf != 1 || nb != 1 {
		t.Errorf("logged %d failures and %d returns, want one each:\n%s\n%s", nf, nb, log.Lines(failed), log.Lines(back))
	}
}
