package daemon_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/traefik-sd/traefik-sd/internal/coordinator"
	"github.com/traefik-sd/traefik-sd/internal/testbed"
	"github.com/traefik-sd/traefik-sd/sidecar/config"
	"github.com/traefik-sd/traefik-sd/sidecar/daemon"
	"github.com/traefik/paerser/types"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

type group struct {
	Targets []string          `json:"targets"`
	Labels  map[string]string `json:"labels"`
}

// fakeTraefikMetrics serves server_up lines the test sets.
type fakeTraefikMetrics struct {
	mu   sync.Mutex
	body string
}

func (f *fakeTraefikMetrics) ServeHTTP(rw http.ResponseWriter, _ *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	_, _ = io.WriteString(rw, f.body)
}

func (f *fakeTraefikMetrics) set(body string) {
	f.mu.Lock()
	f.body = body
	f.mu.Unlock()
}

type env struct {
	// logTo, when set, receives the sidecar's log from info up.
	logTo io.Writer
	// processIn, when set, runs the sidecar as the built binary, a process
	// of its own with its log in that directory, instead of in the tests'.
	processIn string
	etcd      *testbed.Etcd
	client    *clientv3.Client
	coord     *coordinator.Writer
	base      string
	metrics   *fakeTraefikMetrics
	traefik   *fakeTraefik
	// coordinatorURL serves the coordinator's API from what coord wrote.
	coordinatorURL string
}

// askCoordinator points cfg at the env's coordinator API, asked every second.
func (e *env) askCoordinator(cfg *config.Configuration) {
	cfg.BackendAI.CoordinatorURL = e.coordinatorURL
	cfg.BackendAI.CoordinatorToken = testAPIToken
	cfg.BackendAI.WorkerID = testWorkerID
	cfg.BackendAI.PollInterval = types.Duration(time.Second)
}

func startEnv(t testing.TB, authority string) *env {
	return startEnvWith(t, authority, nil, t.TempDir())
}

// startEnvWith starts etcd and the sidecar, letting configure change the
// sidecar's configuration first; dir defaults to a temporary directory.
func startEnvWith(t testbed.T, authority string, configure func(*config.Configuration), dirs ...string) *env {
	return startEnvLogging(t, authority, configure, nil, dirs...)
}

// startEnvLogging is startEnvWith with the sidecar's log, from info up,
// written to logTo (nil: warnings and errors to stderr).
func startEnvLogging(t testbed.T, authority string, configure func(*config.Configuration), logTo io.Writer, dirs ...string) *env {
	var dir string
	if len(dirs) > 0 {
		dir = dirs[0]
	} else {
		dir = t.(interface{ TempDir() string }).TempDir()
	}
	return (&env{logTo: logTo}).start(t, authority, configure, dir)
}

// startEnvProcess is startEnvWith with the sidecar as the built binary
// (SIDECAR_BIN, or traefik-sd on the PATH): its heap and its collector are
// its own, not shared with the stand-ins, as beside a real Traefik.
func startEnvProcess(t testbed.T, authority string, configure func(*config.Configuration), dir string) *env {
	return (&env{processIn: dir}).start(t, authority, configure, dir)
}

func (e *env) start(t testbed.T, authority string, configure func(*config.Configuration), dir string) *env {
	e.etcd = testbed.StartEtcd(t, dir)
	client, err := clientv3.New(clientv3.Config{Endpoints: []string{e.etcd.Endpoint}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	testbed.Must(t, err, "etcd client")
	t.Cleanup(func() { client.Close() })
	e.client = client
	// The coordinator with the patch's setting on, and its API answering
	// from what it wrote: route and session ids come from there.
	e.coord = &coordinator.Writer{Client: client, Authority: authority, WorkerID: testWorkerID, SD: &coordinator.TraefikSD{}}
	api := &coordinator.API{Token: testAPIToken, WorkerID: testWorkerID, Writer: e.coord}
	apiSrv := httptest.NewServer(api)
	t.Cleanup(apiSrv.Close)

	cfg := config.Default()
	cfg.Address = "127.0.0.1:0"
	cfg.Etcd.Endpoints = []string{e.etcd.Endpoint}
	cfg.Worker.Authority = authority
	cfg.Worker.Node = "node-a"
	cfg.Traefik.ScrapeInterval = types.Duration(100 * time.Millisecond)
	cfg.AppProxy.CoordinatorTarget = "10.0.0.5:10200"
	cfg.Etcd.ProgressInterval = types.Duration(300 * time.Millisecond)
	cfg.Etcd.RequestTimeout = types.Duration(2 * time.Second)
	e.coordinatorURL = apiSrv.URL
	e.askCoordinator(cfg)
	if configure != nil {
		configure(cfg)
	}
	e.base, e.traefik = e.runWithTraefik(t, cfg)
	e.metrics = e.traefik.metrics
	return e
}

// runWithTraefik starts a Traefik stand-in for cfg's authority, points
// cfg at it, runs the sidecar and the plugin's pushes to it, and waits until
// the sidecar is ready. It returns the sidecar's base URL.
func (e *env) runWithTraefik(t testbed.T, cfg *config.Configuration) (string, *fakeTraefik) {
	f := startFakeTraefik(t, e.client, cfg.Worker.Authority)
	cfg.Traefik.MetricsURL = f.URL + "/metrics"
	var args []string // the binary's, written before Complete derives from them
	if e.processIn != "" {
		cfg.Address = "127.0.0.1:" + strconv.Itoa(testbed.FreePort(t))
		var err error
		args, err = config.Flags(cfg)
		testbed.Must(t, err, "the sidecar's flags")
	}
	testbed.Must(t, cfg.Complete(), "config")
	addr := cfg.Address
	if e.processIn != "" {
		testbed.Start(t, &testbed.Process{Name: "traefik-sd", Path: testbed.Binary(t, "SIDECAR_BIN", "traefik-sd"),
			Args: args, Dir: e.processIn, Log: filepath.Join(e.processIn, "traefik-sd.log")})
	} else {
		addr, _ = startDaemonLogging(t, cfg, e.logTo)
	}
	base := "http://" + addr
	f.attach(base)
	testbed.WaitHTTP(t, nil, base+"/readyz", http.StatusOK, 20*time.Second)
	return base, f
}

// runDaemon runs the sidecar in-process until the test ends; it returns
// the address it listens on.
func runDaemon(t testbed.T, cfg *config.Configuration) string {
	addr, _ := startDaemon(t, cfg)
	return addr
}

// startDaemon runs the sidecar in-process and returns its address and a
// stop that waits for it to end; the stop also runs when the test ends.
func startDaemon(t testbed.T, cfg *config.Configuration) (string, func()) {
	return startDaemonLogging(t, cfg, nil)
}

// startDaemonLogging is startDaemon with the log, from info up, written to
// logTo (nil: warnings and errors to stderr).
func startDaemonLogging(t testbed.T, cfg *config.Configuration, logTo io.Writer) (string, func()) {
	ctx, cancel := context.WithCancel(context.Background())
	started := make(chan net.Addr, 1)
	done := make(chan error, 1)
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	if logTo != nil {
		log = slog.New(slog.NewTextHandler(logTo, &slog.HandlerOptions{Level: slog.LevelInfo}))
	}
	go func() { done <- daemon.New(cfg, log).Run(ctx, started) }()
	var addr string
	select {
	case a := <-started:
		addr = a.String()
	case err := <-done:
		cancel()
		t.Fatalf("daemon did not start: %v", err)
	}
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("daemon: %v", err)
				}
			case <-time.After(10 * time.Second):
				t.Errorf("daemon did not stop within 10s")
			}
		})
	}
	t.Cleanup(stop)
	return addr, stop
}

func (e *env) targets(t testing.TB) ([]group, string, []byte) {
	t.Helper()
	resp, err := http.Get(e.base + "/v1/targets")
	testbed.Must(t, err, "GET /v1/targets")
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("/v1/targets: %s %q", resp.Status, resp.Header.Get("Content-Type"))
	}
	var groups []group
	testbed.Must(t, json.Unmarshal(body, &groups), "decoding %s", body)
	return groups, resp.Header.Get("ETag"), body
}

// routeSet renders the route targets as "address session route" lines.
func routeSet(groups []group) string {
	var lines []string
	for _, g := range groups {
		if g.Labels["service_group"] != "appproxy-circuit-route" {
			continue
		}
		lines = append(lines, fmt.Sprintf("%s %s %s %s", g.Targets[0], g.Labels["circuit_id"], g.Labels["session_id"], g.Labels["route_id"]))
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}

func (e *env) waitRoutes(t *testing.T, what, want string) time.Duration {
	t.Helper()
	return testbed.Eventually(t, 15*time.Second, what, func() (bool, string) {
		status, got := e.routesNow()
		return status == http.StatusOK && got == want, fmt.Sprintf("%d\n%s", status, got)
	})
}

func interactive() coordinator.Circuit {
	return coordinator.Circuit{
		ID: "11111111-aaaa-4aaa-8aaa-000000000001", App: "jupyter", Mode: "interactive", Hostname: "jupyter.example",
		Routes:      []coordinator.Route{{SessionID: "sess-i", Host: "10.0.1.10", Port: 8080}},
		MetricsPort: 9100,
	}
}

func inference() coordinator.Circuit {
	return coordinator.Circuit{
		ID: "22222222-bbbb-4bbb-8bbb-000000000002", App: "llama-chat", Mode: "inference", Hostname: "llama-chat.example",
		Routes: []coordinator.Route{
			{RouteID: "route-1", SessionID: "sess-1", Host: "10.0.1.21", Port: 8000},
			{RouteID: "route-2", SessionID: "sess-2", Host: "10.0.1.22", Port: 8000},
		},
		HealthCheckPath: "/health",
	}
}

func TestCircuitLifecycleAgainstRealEtcd(t *testing.T) {
	e := startEnv(t, "worker-1")
	ctx := testbed.Context(t, 2*time.Minute)

	groups, _, _ := e.targets(t)
	var traefik, coord *group
	for i := range groups {
		switch groups[i].Labels["service_group"] {
		case "traefik":
			traefik = &groups[i]
		case "appproxy-coordinator":
			coord = &groups[i]
		}
	}
	if traefik == nil || traefik.Labels["worker_authority"] != "worker-1" || traefik.Labels["worker_node"] != "node-a" {
		t.Fatalf("Traefik's own target missing or unlabelled at start: %+v", groups)
	}
	if coord == nil || coord.Targets[0] != "10.0.0.5:10200" {
		t.Fatalf("coordinator target missing: %+v", groups)
	}

	testbed.Must(t, e.coord.Put(ctx, interactive(), inference()), "create circuits")
	took := e.waitRoutes(t, "created circuits", strings.Join([]string{
		"10.0.1.10:9100 11111111-aaaa-4aaa-8aaa-000000000001 sess-i ",
		"10.0.1.21:8000 22222222-bbbb-4bbb-8bbb-000000000002 sess-1 route-1",
		"10.0.1.22:8000 22222222-bbbb-4bbb-8bbb-000000000002 sess-2 route-2",
	}, "\n"))
	t.Logf("etcd write -> /v1/targets: %v (polling every 25ms)", took)

	groups, etag, body := e.targets(t)
	for _, g := range groups {
		if g.Labels["service_group"] == "appproxy-circuit-route" && (g.Labels["worker_authority"] != "worker-1" ||
			!strings.HasPrefix(g.Labels["traefik_router"], "bai_router_") || !strings.HasSuffix(g.Labels["traefik_router"], "@etcd")) {
			t.Errorf("route target lacks labels: %+v", g)
		}
	}

	// The coordinator rewrites everything every ~30 s even when nothing changed.
	testbed.Must(t, e.coord.Put(ctx, interactive(), inference()), "identical rewrite")
	e.handledAll(t, ctx, "worker-1")
	_, etag2, body2 := e.targets(t)
	if etag2 != etag || string(body2) != string(body) {
		t.Errorf("an identical rewrite changed the body:\n%s\n%s", body, body2)
	}

	// Routes change: one added, one removed.
	inf := inference()
	inf.Routes = []coordinator.Route{inf.Routes[1], {RouteID: "route-3", SessionID: "sess-3", Host: "10.0.1.23", Port: 8000}}
	testbed.Must(t, e.coord.UpdateRoutes(ctx, inf), "update routes")
	e.waitRoutes(t, "routes changed", strings.Join([]string{
		"10.0.1.10:9100 11111111-aaaa-4aaa-8aaa-000000000001 sess-i ",
		"10.0.1.22:8000 22222222-bbbb-4bbb-8bbb-000000000002 sess-2 route-2",
		"10.0.1.23:8000 22222222-bbbb-4bbb-8bbb-000000000002 sess-3 route-3",
	}, "\n"))

	// Traefik reports one server down: withdrawn; up again: back.
	svc := "bai_service_22222222-bbbb-4bbb-8bbb-000000000002@etcd"
	e.metrics.set(fmt.Sprintf("# TYPE traefik_service_server_up gauge\ntraefik_service_server_up{service=%q,url=\"http://10.0.1.22:8000/\"} 0\ntraefik_service_server_up{service=%q,url=\"http://10.0.1.23:8000/\"} 1\n", svc, svc))
	e.waitRoutes(t, "down server withdrawn", strings.Join([]string{
		"10.0.1.10:9100 11111111-aaaa-4aaa-8aaa-000000000001 sess-i ",
		"10.0.1.23:8000 22222222-bbbb-4bbb-8bbb-000000000002 sess-3 route-3",
	}, "\n"))
	e.metrics.set(fmt.Sprintf("traefik_service_server_up{service=%q,url=\"http://10.0.1.22:8000/\"} 1\n", svc))
	e.waitRoutes(t, "healed server back", strings.Join([]string{
		"10.0.1.10:9100 11111111-aaaa-4aaa-8aaa-000000000001 sess-i ",
		"10.0.1.22:8000 22222222-bbbb-4bbb-8bbb-000000000002 sess-2 route-2",
		"10.0.1.23:8000 22222222-bbbb-4bbb-8bbb-000000000002 sess-3 route-3",
	}, "\n"))

	// A malformed value voids only its own object.
	_, err := e.client.Put(ctx, "traefik/worker_worker-1/http/services/bai_service_11111111-aaaa-4aaa-8aaa-000000000001/loadBalancer/servers/0/url", "http://10.0.1.10:8080/\xff")
	testbed.Must(t, err, "put malformed")
	e.waitRoutes(t, "malformed service ignored, the rest kept", strings.Join([]string{
		"10.0.1.22:8000 22222222-bbbb-4bbb-8bbb-000000000002 sess-2 route-2",
		"10.0.1.23:8000 22222222-bbbb-4bbb-8bbb-000000000002 sess-3 route-3",
	}, "\n"))
	if m := e.sidecarMetric(t, "traefik_sd_decode_broken_objects"); m != "1" {
		t.Errorf("decode_broken_objects = %q, want 1", m)
	}
	if m := e.sidecarMetric(t, "traefik_sd_decode_errors_total"); m != "1" {
		t.Errorf("decode_errors_total = %q, want 1", m)
	}

	// A broken line in Traefik's /metrics is skipped and counted; the
	// lines around it still count.
	e.metrics.set(fmt.Sprintf("traefik_service_server_up{service=%q,url=\"http://10.0.1.22:8000/\"} 1\nthis is {not a metric\ntraefik_service_server_up{service=%q,url=\"http://10.0.1.23:8000/\"} 0\n", svc, svc))
	e.waitRoutes(t, "a down server read past a broken line", "10.0.1.22:8000 22222222-bbbb-4bbb-8bbb-000000000002 sess-2 route-2")
	testbed.Eventually(t, 5*time.Second, "the broken line counted", func() (bool, string) {
		m := e.sidecarMetric(t, "traefik_sd_traefik_scrape_broken_lines_total")
		return m != "" && m != "0", m
	})

	// Delete with the coordinator's prefix deletes.
	testbed.Must(t, e.coord.Delete(ctx, inf.ID), "delete")
	e.waitRoutes(t, "deleted circuit withdrawn", "")
}

// startEnvWithCoordinator starts the env with --routes.all and the
// coordinator's API answered by api, asked every second.
func startEnvWithCoordinator(t *testing.T, authority string, api *coordinator.API) *env {
	apiSrv := httptest.NewServer(api)
	t.Cleanup(apiSrv.Close)
	e := startEnvWith(t, authority, func(cfg *config.Configuration) {
		cfg.Routes.All = true
		cfg.BackendAI.CoordinatorURL = apiSrv.URL
		cfg.BackendAI.CoordinatorToken = api.Token
		cfg.BackendAI.WorkerID = api.WorkerID
		cfg.BackendAI.PollInterval = types.Duration(time.Second)
	})
	// A coordinator without the patch's setting: identities come from
	// Backend.AI's own keys and its API.
	e.coord.SD = nil
	return e
}

// The worker's id at the coordinator in these tests, and the coordinator's API secret.
const (
	testWorkerID = "5a2b3c4d-1111-4222-8333-444455556666"
	testAPIToken = "api-secret"
)

func (e *env) sidecarMetric(_ *testing.T, series string) string {
	return testbed.Metric(context.Background(), e.base+"/metrics", series)
}

// TestCompactionAndEtcdRestartConverge: etcd is killed; once the sidecar
// has seen it go, it still serves its last good set. etcd restarts while the
// sidecar is cut off from it (a proxy between them), circuits change and
// etcd compacts past the sidecar's watch, so that when the connection
// returns the watch cannot resume: the sidecar must re-list, count it as a
// compaction, and converge.
func TestCompactionAndEtcdRestartConverge(t *testing.T) {
	e, proxy := startBehindProxy(t, "worker-2")
	ctx := testbed.Context(t, 2*time.Minute)
	testbed.Must(t, e.coord.Put(ctx, interactive()), "create")
	want := "10.0.1.10:9100 11111111-aaaa-4aaa-8aaa-000000000001 sess-i "
	e.waitRoutes(t, "created", want)
	if m := e.sidecarMetric(t, `traefik_sd_etcd_relists_total{reason="compacted"}`); m != "0" {
		t.Fatalf("compacted re-lists before any compaction: %q", m)
	}

	// etcd goes away; once the sidecar reports it gone (not after a fixed
	// time, which under load can pass before it noticed anything), it
	// still serves its last good set.
	e.etcd.Kill()
	testbed.Eventually(t, 20*time.Second, "etcd's loss noticed", func() (bool, string) {
		m := e.sidecarMetric(t, "traefik_sd_etcd_watch_up")
		return m == "0", m
	})
	groups, _, _ := e.targets(t)
	if got := routeSet(groups); got != want {
		t.Fatalf("set changed while etcd was down:\n%s", got)
	}

	// etcd returns where the sidecar cannot reach it; changes, then a
	// compaction past them.
	proxy.Cut()
	e.etcd.Restart(t, false)
	testbed.WaitHTTP(t, e.etcd.Process, "http://"+e.etcd.Endpoint+"/health", http.StatusOK, 30*time.Second)
	testbed.Must(t, e.coord.Put(ctx, inference()), "create while cut off")
	testbed.Must(t, e.coord.Delete(ctx, interactive().ID), "delete while cut off")
	resp, err := e.client.Get(ctx, "x")
	testbed.Must(t, err, "get revision")
	_, err = e.client.Compact(ctx, resp.Header.Revision)
	testbed.Must(t, err, "compact")
	// The sidecar saw none of it: its watch is behind the compaction.
	groups, _, _ = e.targets(t)
	if got := routeSet(groups); got != want {
		t.Fatalf("the sidecar followed etcd while cut off from it:\n%s", got)
	}
	proxy.Restore()

	testbed.Eventually(t, 30*time.Second, "a re-list counted as compacted", func() (bool, string) {
		m := e.sidecarMetric(t, `traefik_sd_etcd_relists_total{reason="compacted"}`)
		return m != "" && m != "0", m
	})
	e.waitRoutes(t, "converged after restart and compaction", strings.Join([]string{
		"10.0.1.21:8000 22222222-bbbb-4bbb-8bbb-000000000002 sess-1 route-1",
		"10.0.1.22:8000 22222222-bbbb-4bbb-8bbb-000000000002 sess-2 route-2",
	}, "\n"))
}

func TestPausedEtcdIsReportedStaleAndTheSetKept(t *testing.T) {
	e := startEnv(t, "worker-3")
	ctx := testbed.Context(t, 2*time.Minute)
	testbed.Must(t, e.coord.Put(ctx, interactive(), inference()), "create")
	want := strings.Join([]string{
		"10.0.1.10:9100 11111111-aaaa-4aaa-8aaa-000000000001 sess-i ",
		"10.0.1.21:8000 22222222-bbbb-4bbb-8bbb-000000000002 sess-1 route-1",
		"10.0.1.22:8000 22222222-bbbb-4bbb-8bbb-000000000002 sess-2 route-2",
	}, "\n")
	e.waitRoutes(t, "created", want)
	testbed.Eventually(t, 10*time.Second, "watch reported up", func() (bool, string) {
		m := e.sidecarMetric(t, "traefik_sd_etcd_watch_up")
		return m == "1", m
	})

	// Paused past the client's timeouts: the watch goes quiet, not broken.
	e.etcd.Signal(syscall.SIGSTOP)
	paused := true
	defer func() {
		if paused {
			e.etcd.Signal(syscall.SIGCONT)
		}
	}()
	took := testbed.Eventually(t, 20*time.Second, "staleness reported", func() (bool, string) {
		m := e.sidecarMetric(t, "traefik_sd_etcd_watch_up")
		return m == "0", m
	})
	t.Logf("a paused etcd was reported stale after %v", took)
	groups, _, _ := e.targets(t)
	if got := routeSet(groups); got != want {
		t.Fatalf("the set changed while etcd was paused:\n%s", got)
	}

	e.etcd.Signal(syscall.SIGCONT)
	paused = false
	testbed.Eventually(t, 30*time.Second, "watch up again", func() (bool, string) {
		m := e.sidecarMetric(t, "traefik_sd_etcd_watch_up")
		return m == "1", m
	})
	testbed.Must(t, e.coord.Delete(ctx, interactive().ID), "delete after resume")
	e.waitRoutes(t, "a change after the pause flows", strings.Join(strings.Split(want, "\n")[1:], "\n"))
}

// TestRouteIDsFromTheCoordinator: an installation whose coordinator has not
// added the traefik-sd middleware still gets every route labelled, with
// --routes.all and the coordinator's API; when the coordinator fails, its
// last good answer stays.
func TestRouteIDsFromTheCoordinator(t *testing.T) {
	api := &coordinator.API{Token: "api-secret", WorkerID: "5a2b3c4d-1111-4222-8333-444455556666"}
	e := startEnvWithCoordinator(t, "worker-api", api)
	ctx := testbed.Context(t, time.Minute)
	inf := inference()
	api.Set(inf)
	testbed.Must(t, e.coord.Put(ctx, inf), "create")
	e.waitRoutes(t, "routes labelled from the coordinator", strings.Join([]string{
		"10.0.1.21:8000 22222222-bbbb-4bbb-8bbb-000000000002 sess-1 route-1",
		"10.0.1.22:8000 22222222-bbbb-4bbb-8bbb-000000000002 sess-2 route-2",
	}, "\n"))
	groups, _, _ := e.targets(t)
	for _, g := range groups {
		if g.Labels["circuit_id"] == inf.ID && (g.Labels["endpoint_id"] == "" || g.Labels["app"] != "llama-chat") {
			t.Errorf("endpoint_id or app missing: %+v", g.Labels)
		}
	}

	// The coordinator goes down; a route is added in etcd meanwhile.
	api.Fail(true)
	inf.Routes = append(inf.Routes, coordinator.Route{RouteID: "route-3", SessionID: "sess-3", Host: "10.0.1.23", Port: 8000})
	testbed.Must(t, e.coord.UpdateRoutes(ctx, inf), "add a route")
	e.waitRoutes(t, "known routes keep their ids, the new one waits for them", strings.Join([]string{
		"10.0.1.21:8000 22222222-bbbb-4bbb-8bbb-000000000002 sess-1 route-1",
		"10.0.1.22:8000 22222222-bbbb-4bbb-8bbb-000000000002 sess-2 route-2",
		"10.0.1.23:8000 22222222-bbbb-4bbb-8bbb-000000000002  ",
	}, "\n"))
	testbed.Eventually(t, 10*time.Second, "the failure counted", func() (bool, string) {
		m := e.sidecarMetric(t, `traefik_sd_coordinator_polls_total{result="error"}`)
		return m != "" && m != "0", m
	})

	api.Set(inf)
	api.Fail(false)
	e.waitRoutes(t, "the coordinator back", strings.Join([]string{
		"10.0.1.21:8000 22222222-bbbb-4bbb-8bbb-000000000002 sess-1 route-1",
		"10.0.1.22:8000 22222222-bbbb-4bbb-8bbb-000000000002 sess-2 route-2",
		"10.0.1.23:8000 22222222-bbbb-4bbb-8bbb-000000000002 sess-3 route-3",
	}, "\n"))
}

// TestAWatchPastACompactionReLists: the sidecar's connection to etcd is cut
// (the etcd server keeps running) while circuits change and etcd compacts
// past the watch's revision; when the connection returns, the watch cannot
// resume there, so the sidecar re-lists, counts it, and converges; a key
// was deleted, and the tree is one range between marks, so listing the
// range that lost it is listing the root key whole.
func TestAWatchPastACompactionReLists(t *testing.T) {
	e, proxy := startBehindProxy(t, "worker-cp")
	ctx := testbed.Context(t, 2*time.Minute)
	testbed.Must(t, e.coord.Put(ctx, interactive()), "create")
	e.waitRoutes(t, "created", "10.0.1.10:9100 11111111-aaaa-4aaa-8aaa-000000000001 sess-i ")
	if m := e.sidecarMetric(t, `traefik_sd_etcd_relists_total{reason="compacted"}`); m != "0" {
		t.Fatalf("compacted re-lists before any compaction: %q", m)
	}

	e.cutOff(t, proxy)
	testbed.Must(t, e.coord.Put(ctx, inference()), "create while cut off")
	testbed.Must(t, e.coord.Delete(ctx, interactive().ID), "delete while cut off")
	e.compactNow(t, ctx)
	proxy.Restore()

	testbed.Eventually(t, 30*time.Second, "a re-list counted as compacted", func() (bool, string) {
		m := e.sidecarMetric(t, `traefik_sd_etcd_relists_total{reason="compacted"}`)
		return m != "" && m != "0", m
	})
	e.waitRoutes(t, "converged after the compaction", strings.Join([]string{
		"10.0.1.21:8000 22222222-bbbb-4bbb-8bbb-000000000002 sess-1 route-1",
		"10.0.1.22:8000 22222222-bbbb-4bbb-8bbb-000000000002 sess-2 route-2",
	}, "\n"))
	// A key was deleted while cut off: only a listing could find it.
	if m := e.sidecarMetric(t, "traefik_sd_etcd_relists_read_changes_total"); m != "0" {
		t.Fatalf("re-lists that read only changes after a deletion: %q", m)
	}

}

// TestAWatchPastACompactionReadsOnlyWhatWasWritten: as above, but while cut
// off a circuit is created and another's route moves, and nothing is
// deleted: the re-list reads only the keys written since, and converges.
func TestAWatchPastACompactionReadsOnlyWhatWasWritten(t *testing.T) {
	e, proxy := startBehindProxy(t, "worker-cw")
	ctx := testbed.Context(t, 2*time.Minute)
	testbed.Must(t, e.coord.Put(ctx, inference()), "create")
	e.waitRoutes(t, "created", strings.Join([]string{
		"10.0.1.21:8000 22222222-bbbb-4bbb-8bbb-000000000002 sess-1 route-1",
		"10.0.1.22:8000 22222222-bbbb-4bbb-8bbb-000000000002 sess-2 route-2",
	}, "\n"))

	e.cutOff(t, proxy)
	moved := inference()
	moved.Routes[1].Host = "10.0.1.23"
	// Two revisions, so that compacting at the last one removes the
	// revision the watch would resume from.
	testbed.Must(t, e.coord.Put(ctx, interactive()), "create while cut off")
	testbed.Must(t, e.coord.Put(ctx, moved), "move while cut off")
	e.compactNow(t, ctx)
	proxy.Restore()

	testbed.Eventually(t, 30*time.Second, "a compacted re-list that read only changes", func() (bool, string) {
		m := e.sidecarMetric(t, `traefik_sd_etcd_relists_total{reason="compacted"}`)
		c := e.sidecarMetric(t, "traefik_sd_etcd_relists_read_changes_total")
		return m == "1" && c == "1", m + " " + c
	})
	e.waitRoutes(t, "converged after the compaction", strings.Join([]string{
		"10.0.1.10:9100 11111111-aaaa-4aaa-8aaa-000000000001 sess-i ",
		"10.0.1.21:8000 22222222-bbbb-4bbb-8bbb-000000000002 sess-1 route-1",
		"10.0.1.23:8000 22222222-bbbb-4bbb-8bbb-000000000002 sess-2 route-2",
	}, "\n"))
}

// startBehindProxy starts the environment with the sidecar reaching etcd
// through a proxy that can cut it off.
func startBehindProxy(t *testing.T, worker string) (*env, *testbed.Proxy) {
	var proxy *testbed.Proxy
	e := startEnvWith(t, worker, func(cfg *config.Configuration) {
		proxy = testbed.StartProxy(t, cfg.Etcd.Endpoints[0])
		cfg.Etcd.Endpoints = []string{proxy.Address}
	})
	return e, proxy
}

// cutOff cuts the sidecar off from etcd and waits until it says so.
func (e *env) cutOff(t *testing.T, proxy *testbed.Proxy) {
	t.Helper()
	proxy.Cut()
	testbed.Eventually(t, 20*time.Second, "the cut noticed", func() (bool, string) {
		m := e.sidecarMetric(t, "traefik_sd_etcd_watch_up")
		return m == "0", m
	})
}

// compactNow compacts etcd at its latest revision.
func (e *env) compactNow(t *testing.T, ctx context.Context) {
	t.Helper()
	resp, err := e.client.Get(ctx, "x")
	testbed.Must(t, err, "revision")
	_, err = e.client.Compact(ctx, resp.Header.Revision)
	testbed.Must(t, err, "compact")
}

// TestLimitsLeaveTargetsOutAndCountThem: past --limits.maxTargets, whole
// routers are left out in name order, and counted.
func TestLimitsLeaveTargetsOutAndCountThem(t *testing.T) {
	e := startEnvWith(t, "worker-lim", func(cfg *config.Configuration) { cfg.Limits.MaxTargets = 1 })
	ctx := testbed.Context(t, time.Minute)
	testbed.Must(t, e.coord.Put(ctx, interactive(), inference()), "create")
	e.waitRoutes(t, "only the first router in name order", "10.0.1.10:9100 11111111-aaaa-4aaa-8aaa-000000000001 sess-i ")
	testbed.Eventually(t, 10*time.Second, "the inference circuit's two targets counted as left out", func() (bool, string) {
		m := e.sidecarMetric(t, `traefik_sd_targets_left_out{limit="targets"}`)
		return m == "2", m
	})
}
