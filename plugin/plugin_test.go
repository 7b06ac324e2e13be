package plugin_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/traefik-sd/traefik-sd/plugin"
)

// fakeSidecar applies pushes the way the real sidecar does (full replaces,
// delta must follow the last seq) and keeps the history for the tests.
type fakeSidecar struct {
	mu       sync.Mutex
	failWith int // status to answer with; 0 = accept
	lastSeq  uint64
	lastBoot string
	live     map[string]plugin.LiveMiddleware
	removed  []string
	pushes   int
	fulls    int
	tokens   []string
	// largest is the largest accepted push body, to show what a push carries.
	largest int
	// answers is each push as "full" or "delta" (with the names it
	// carries) and the status it got, in order; answeredAt is when each
	// arrived.
	answers    []string
	answeredAt []time.Time
}

func newFakeSidecar(t *testing.T) (*fakeSidecar, *httptest.Server) {
	f := &fakeSidecar{live: map[string]plugin.LiveMiddleware{}}
	srv := httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(srv.Close)
	return f, srv
}

func (f *fakeSidecar) serve(rw http.ResponseWriter, req *http.Request) {
	if req.URL.Path != plugin.SyncPath || req.Method != http.MethodPost {
		http.Error(rw, "wrong endpoint", http.StatusNotFound)
		return
	}
	body, err := io.ReadAll(req.Body)
	if err != nil {
		http.Error(rw, err.Error(), http.StatusBadRequest)
		return
	}
	var p plugin.Push
	if err := json.Unmarshal(body, &p); err != nil {
		http.Error(rw, err.Error(), http.StatusBadRequest)
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.tokens = append(f.tokens, req.Header.Get("Authorization"))
	if f.failWith != 0 {
		http.Error(rw, "induced failure", f.failWith)
		return
	}
	kind := "delta"
	if p.Full {
		kind = "full"
	}
	for _, m := range p.Middlewares {
		kind += " " + m.Name
	}
	f.answeredAt = append(f.answeredAt, time.Now())
	if !p.Full && (p.Boot != f.lastBoot || p.Seq != f.lastSeq+1) {
		f.answers = append(f.answers, kind+" -> 409")
		http.Error(rw, "need full", http.StatusConflict)
		return
	}
	f.answers = append(f.answers, kind+" -> 204")
	f.pushes++
	if len(body) > f.largest {
		f.largest = len(body)
	}
	f.lastSeq, f.lastBoot = p.Seq, p.Boot
	if p.Full {
		f.fulls++
		f.live = map[string]plugin.LiveMiddleware{}
	}
	for _, m := range p.Middlewares {
		f.live[m.Name] = m
	}
	for _, name := range p.Removed {
		delete(f.live, name)
		f.removed = append(f.removed, name)
	}
	rw.WriteHeader(http.StatusNoContent)
}

func (f *fakeSidecar) names() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var names []string
	for name := range f.live {
		names = append(names, name)
	}
	sort.Strings(names)
	return strings.Join(names, ",")
}

func (f *fakeSidecar) setFailure(status int) {
	f.mu.Lock()
	f.failWith = status
	f.mu.Unlock()
}

func (f *fakeSidecar) forget() {
	f.mu.Lock()
	f.live = map[string]plugin.LiveMiddleware{}
	f.lastBoot = ""
	f.lastSeq = 0
	f.mu.Unlock()
}

func testConfig(sidecarURL, circuit string) *plugin.Config {
	cfg := plugin.CreateConfig()
	cfg.CircuitID = circuit
	cfg.WorkerAuthority = "worker-1"
	cfg.SidecarURL = sidecarURL
	cfg.RemovalDelay = "300ms"
	cfg.ResyncInterval = "1s"
	return cfg
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestCreateConfigDefaults(t *testing.T) {
	cfg := plugin.CreateConfig()
	if cfg.MetricsPath != "/metrics" || cfg.SidecarURL != "http://127.0.0.1:9180" || cfg.MetricsPort != 0 {
		t.Errorf("defaults: got path %q, sidecar %q, port %d", cfg.MetricsPath, cfg.SidecarURL, cfg.MetricsPort)
	}
	if cfg.Labels == nil || cfg.SessionIDs == nil || cfg.Routes == nil {
		t.Error("CreateConfig must make its maps and slices")
	}
}

// TestAnEmptyConfigIsAPlainTraefiksMiddleware: `plugin: {traefik-sd: {}}`
// is enough; a router that is no Backend.AI circuit has no circuit id.
func TestAnEmptyConfigIsAPlainTraefiksMiddleware(t *testing.T) {
	if err := plugin.CreateConfig().Validate(); err != nil {
		t.Fatalf("the defaults alone are refused: %v", err)
	}
}

func TestNewRejectsInvalidConfig(t *testing.T) {
	testCases := []struct {
		desc    string
		change  func(c *plugin.Config)
		wantErr string
	}{
		{desc: "a worker without its circuit (half written)", change: func(c *plugin.Config) { c.CircuitID, c.WorkerAuthority = "", "worker-1" },
			wantErr: "circuitId: required with workerAuthority or sessionIds"},
		{desc: "sessions without their circuit", change: func(c *plugin.Config) { c.CircuitID, c.SessionIDs = " ", []string{"s1"} },
			wantErr: "circuitId: required with workerAuthority or sessionIds"},
		{desc: "circuit id not UTF-8", change: func(c *plugin.Config) { c.CircuitID = "\xff" }, wantErr: "circuitId: not valid UTF-8"},
		{desc: "label name with a dash", change: func(c *plugin.Config) { c.Labels["team-name"] = "x" }, wantErr: "labels.team-name"},
		{desc: "label name with __ prefix", change: func(c *plugin.Config) { c.Labels["__address__"] = "x" }, wantErr: "labels.__address__"},
		{desc: "label that overrides an identity", change: func(c *plugin.Config) { c.Labels["circuit_id"] = "x" }, wantErr: "reserved"},
		{desc: "label the sidecar writes from the coordinator", change: func(c *plugin.Config) { c.Labels["endpoint_id"] = "x" }, wantErr: "labels.endpoint_id: reserved"},
		{desc: "Prometheus's job label", change: func(c *plugin.Config) { c.Labels["job"] = "spoofed" }, wantErr: "labels.job: reserved"},
		{desc: "Prometheus's instance label", change: func(c *plugin.Config) { c.Labels["instance"] = "x" }, wantErr: "labels.instance: reserved"},
		{desc: "route URL with a port out of range", change: func(c *plugin.Config) { c.Routes = []plugin.Route{{URL: "http://10.0.0.1:70000/"}} }, wantErr: "routes[0].url"},
		{desc: "port out of range", change: func(c *plugin.Config) { c.MetricsPort = 70000 }, wantErr: "metricsPort"},
		{desc: "negative port", change: func(c *plugin.Config) { c.MetricsPort = -1 }, wantErr: "metricsPort"},
		{desc: "relative metrics path", change: func(c *plugin.Config) { c.MetricsPath = "metrics" }, wantErr: "metricsPath"},
		{desc: "sidecar URL without scheme", change: func(c *plugin.Config) { c.SidecarURL = "127.0.0.1:9180" }, wantErr: "sidecarURL"},
		{desc: "route URL without host", change: func(c *plugin.Config) {
			c.Routes = []plugin.Route{{URL: "http://10.0.0.1:80/"}, {URL: "http:///x"}}
		}, wantErr: "routes[1].url"},
		{desc: "route URL with a bad scheme", change: func(c *plugin.Config) { c.Routes = []plugin.Route{{URL: "ftp://h/"}} }, wantErr: "routes[0].url"},
		{desc: "removal delay not a duration", change: func(c *plugin.Config) { c.RemovalDelay = "soon" }, wantErr: "removalDelay"},
		{desc: "zero resync interval", change: func(c *plugin.Config) { c.ResyncInterval = "0s" }, wantErr: "resyncInterval"},
		// Values may be secrets (a URL's password, a value mistyped into
		// the wrong key), and New's error reaches Traefik's log and API and
		// the sidecar's status page: it names the field, never the value.
		{desc: "route URL with a password and a port out of range", change: func(c *plugin.Config) {
			c.Routes = []plugin.Route{{URL: "http://u:" + secretMarker + "@10.0.0.1:70000/"}}
		}, wantErr: "routes[0].url: port out of range"},
		{desc: "route URL with a password and a bad scheme", change: func(c *plugin.Config) {
			c.Routes = []plugin.Route{{URL: "ftp://u:" + secretMarker + "@h/"}}
		}, wantErr: "routes[0].url: scheme must be"},
		{desc: "route URL with a password that does not parse", change: func(c *plugin.Config) {
			c.Routes = []plugin.Route{{URL: "http://u:" + secretMarker + "@[::1"}}
		}, wantErr: "routes[0].url: not a URL"},
		{desc: "sidecar URL with userinfo and a bad scheme", change: func(c *plugin.Config) {
			c.SidecarURL = "ftp://u:" + secretMarker + "@127.0.0.1:9180"
		}, wantErr: "sidecarURL: not an http(s) URL"},
		{desc: "sidecar URL with userinfo that does not parse", change: func(c *plugin.Config) {
			c.SidecarURL = "http://u:" + secretMarker + "@[::1"
		}, wantErr: "sidecarURL: not an http(s) URL"},
		{desc: "a secret in the metrics path", change: func(c *plugin.Config) { c.MetricsPath = secretMarker }, wantErr: "metricsPath: must start with /"},
		{desc: "a secret in the removal delay", change: func(c *plugin.Config) { c.RemovalDelay = secretMarker }, wantErr: "removalDelay: not a duration"},
		{desc: "a secret in the resync interval", change: func(c *plugin.Config) { c.ResyncInterval = "-" + secretMarker }, wantErr: "resyncInterval: not a duration"},
	}
	next := http.HandlerFunc(func(http.ResponseWriter, *http.Request) {})
	for _, test := range testCases {
		test := test
		t.Run(test.desc, func(t *testing.T) {
			cfg := testConfig("http://127.0.0.1:1", "c-invalid")
			test.change(cfg)
			handler, err := plugin.New(context.Background(), next, cfg, "bai_sd_invalid@etcd")
			if err == nil {
				t.Fatal("New accepted an invalid config")
			}
			if handler != nil {
				t.Error("New returned a handler with its error")
			}
			if !strings.Contains(err.Error(), test.wantErr) {
				t.Errorf("error %q does not name %q", err, test.wantErr)
			}
			if strings.Contains(err.Error(), secretMarker) {
				t.Errorf("error %q quotes the value", err)
			}
		})
	}
}

// secretMarker stands for a secret in a value: no error may hold it.
const secretMarker = "s3cr3t"

func TestServeHTTPPassesThrough(t *testing.T) {
	_, srv := newFakeSidecar(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	next := http.HandlerFunc(func(rw http.ResponseWriter, req *http.Request) {
		rw.Header().Set("X-Next", req.URL.Path)
		rw.WriteHeader(http.StatusTeapot)
	})
	handler, err := plugin.New(ctx, next, testConfig(srv.URL, "c-pass"), "bai_sd_pass@etcd")
	if err != nil {
		t.Fatal(err)
	}
	rec := httptest.NewRecorder()
	handler.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "http://app.example/v1/chat", nil))
	if rec.Code != http.StatusTeapot || rec.Header().Get("X-Next") != "/v1/chat" {
		t.Errorf("request did not reach next unchanged: status %d, X-Next %q", rec.Code, rec.Header().Get("X-Next"))
	}
}

func TestPushesConfigOfLiveMiddlewares(t *testing.T) {
	side, srv := newFakeSidecar(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cfg := testConfig(srv.URL, "c-1")
	cfg.Token = "s3cret"
	cfg.SessionIDs = []string{"s-10", "s-2"}
	cfg.Routes = []plugin.Route{{URL: "http://10.0.1.22:8000/", SessionID: "s-2"}, {URL: "http://10.0.1.21:8000/", SessionID: "s-10", RouteID: "r-1"}}
	cfg.Labels["team"] = "ml"
	if _, err := plugin.New(ctx, http.NotFoundHandler(), cfg, "bai_sd_c-1@etcd"); err != nil {
		t.Fatal(err)
	}
	cfg2 := testConfig(srv.URL, "c-2")
	cfg2.Token = "s3cret"
	if _, err := plugin.New(ctx, http.NotFoundHandler(), cfg2, "bai_sd_c-2@etcd"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "both middlewares pushed", func() bool { return side.names() == "bai_sd_c-1@etcd,bai_sd_c-2@etcd" })

	side.mu.Lock()
	defer side.mu.Unlock()
	got := side.live["bai_sd_c-1@etcd"].Config
	if got.CircuitID != "c-1" || got.WorkerAuthority != "worker-1" || got.Labels["team"] != "ml" {
		t.Errorf("pushed config lost fields: %+v", got)
	}
	// As Traefik gave them: the sidecar normalizes what it receives
	// (TestSyncNormalizesPushedLists), so New does not pay for it.
	if strings.Join(got.SessionIDs, " ") != "s-10 s-2" || len(got.Routes) != 2 || got.Routes[1].URL != "http://10.0.1.21:8000/" || got.Routes[1].RouteID != "r-1" {
		t.Errorf("lists lost: sessions %v routes %+v", got.SessionIDs, got.Routes)
	}
	if got.Token != "" {
		t.Error("the token travelled in the body")
	}
	for _, token := range side.tokens {
		if token != "Bearer s3cret" {
			t.Errorf("Authorization header: got %q", token)
		}
	}
}

func TestReloadDoesNotFlap(t *testing.T) {
	side, srv := newFakeSidecar(t)
	ctx1, cancel1 := context.WithCancel(context.Background())
	if _, err := plugin.New(ctx1, http.NotFoundHandler(), testConfig(srv.URL, "c-reload"), "bai_sd_reload@etcd"); err != nil {
		t.Fatal(err)
	}
	// A router the last reload really drops, with the same removal delay:
	// its removal is what shows that the sender has waited out the delay
	// since every reload, however slowly it runs. A wrong removal of the
	// reloaded router is due no later, so it is pushed with it or before.
	gone, cancelGone := context.WithCancel(context.Background())
	defer cancelGone()
	if _, err := plugin.New(gone, http.NotFoundHandler(), testConfig(srv.URL, "c-dropped"), "bai_sd_dropped@etcd"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "first push", func() bool { return side.names() == "bai_sd_dropped@etcd,bai_sd_reload@etcd" })

	// A reload, as Traefik does it: the old generation's ctx is cancelled and
	// New runs again for the same router.
	for i := 0; i < 3; i++ {
		cancel1()
		var ctx2 context.Context
		ctx2, cancel1 = context.WithCancel(context.Background())
		if _, err := plugin.New(ctx2, http.NotFoundHandler(), testConfig(srv.URL, "c-reload"), "bai_sd_reload@etcd"); err != nil {
			t.Fatal(err)
		}
		time.Sleep(150 * time.Millisecond)
	}
	cancelGone()
	waitFor(t, "the dropped router's removal pushed", func() bool {
		return !strings.Contains(side.names(), "bai_sd_dropped@etcd")
	})
	side.mu.Lock()
	removed := append([]string{}, side.removed...)
	side.mu.Unlock()
	for _, name := range removed {
		if name != "bai_sd_dropped@etcd" {
			t.Errorf("a reload reported the middleware gone: %v", removed)
			break
		}
	}
	if side.names() != "bai_sd_reload@etcd" {
		t.Errorf("live set after reloads: %q", side.names())
	}
	cancel1()
}

// TestALongReloadDoesNotFlap: Traefik cancels every old instance before it
// builds the first new one, and at 10,000 routers the rebuild takes longer
// than the removal delay and the burst bound together. A middleware the
// rebuild reaches late was reported removed, then live again, and the
// sidecar withdrew its targets meanwhile.
func TestALongReloadDoesNotFlap(t *testing.T) {
	side, srv := newFakeSidecar(t)
	ctx1, cancel1 := context.WithCancel(context.Background())
	if _, err := plugin.New(ctx1, http.NotFoundHandler(), testConfig(srv.URL, "c-late"), "bai_sd_late@etcd"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "first push", func() bool { return side.names() == "bai_sd_late@etcd" })

	// The rebuild: the old instance cancelled, then New for other routers
	// for ten times the removal delay (300ms), in runs with short pauses
	// as Traefik's own work between routers makes, and only then for this
	// one.
	cancel1()
	var keep []context.CancelFunc
	defer func() {
		for _, c := range keep {
			c()
		}
	}()
	for start := time.Now(); time.Since(start) < 3*time.Second; {
		ctx, cancel := context.WithCancel(context.Background())
		keep = append(keep, cancel)
		name := fmt.Sprintf("bai_sd_filler%d@etcd", len(keep))
		if _, err := plugin.New(ctx, http.NotFoundHandler(), testConfig(srv.URL, "c-filler"), name); err != nil {
			t.Fatal(err)
		}
		if len(keep)%10 == 0 {
			time.Sleep(40 * time.Millisecond)
		}
	}
	ctx2, cancel2 := context.WithCancel(context.Background())
	defer cancel2()
	if _, err := plugin.New(ctx2, http.NotFoundHandler(), testConfig(srv.URL, "c-late"), "bai_sd_late@etcd"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second)
	side.mu.Lock()
	removed := append([]string{}, side.removed...)
	side.mu.Unlock()
	if len(removed) > 0 {
		t.Errorf("a long reload reported middlewares gone: %v", removed)
	}
	if !strings.Contains(side.names(), "bai_sd_late@etcd") {
		t.Errorf("the late middleware is not live: %q", side.names())
	}
}

func TestRemovedAfterDelay(t *testing.T) {
	side, srv := newFakeSidecar(t)
	ctx, cancel := context.WithCancel(context.Background())
	keep, cancelKeep := context.WithCancel(context.Background())
	defer cancelKeep()
	if _, err := plugin.New(ctx, http.NotFoundHandler(), testConfig(srv.URL, "c-gone"), "bai_sd_gone@etcd"); err != nil {
		t.Fatal(err)
	}
	if _, err := plugin.New(keep, http.NotFoundHandler(), testConfig(srv.URL, "c-keep"), "bai_sd_keep@etcd"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "both pushed", func() bool { return side.names() == "bai_sd_gone@etcd,bai_sd_keep@etcd" })

	cancelled := time.Now()
	cancel()
	waitFor(t, "removal pushed", func() bool { return side.names() == "bai_sd_keep@etcd" })
	if waited := time.Since(cancelled); waited < 300*time.Millisecond {
		t.Errorf("removed after %v, before the 300ms removal delay", waited)
	}
	side.mu.Lock()
	defer side.mu.Unlock()
	if len(side.removed) != 1 || side.removed[0] != "bai_sd_gone@etcd" {
		t.Errorf("removals: %v", side.removed)
	}
}

// TestAFullPushListsMiddlewaresByName: a push lists its middlewares sorted
// by name, whatever order New was called in, so that two pushes of the
// same set are the same bytes.
func TestAFullPushListsMiddlewaresByName(t *testing.T) {
	side, srv := newFakeSidecar(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	names := []string{"bai_sd_order_d@etcd", "bai_sd_order_b@etcd", "bai_sd_order_e@etcd", "bai_sd_order_a@etcd", "bai_sd_order_c@etcd"}
	for _, name := range names {
		if _, err := plugin.New(ctx, http.NotFoundHandler(), testConfig(srv.URL, "c-order"), name); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "the set pushed", func() bool { return strings.Count(side.names(), "bai_sd_order_") == len(names) })
	side.mu.Lock()
	defer side.mu.Unlock()
	// Every push, in case a stalled machine split the burst in two.
	for _, answer := range side.answers {
		listed := strings.Fields(strings.TrimSuffix(answer, " -> 204"))[1:]
		if !sort.StringsAreSorted(listed) {
			t.Errorf("a push lists its middlewares out of order: %q", answer)
		}
	}
}

// TestNewWithAnEndedContextIsRemoved: an instance whose context ended
// before New was called is gone after the removal delay, also when the
// sender has already seen that context end. The sender watches each
// cancellation signal until it fires and then forgets it, so it must take
// it up again for an instance recorded later, or never prune that one.
func TestNewWithAnEndedContextIsRemoved(t *testing.T) {
	side, srv := newFakeSidecar(t)
	keep, cancelKeep := context.WithCancel(context.Background())
	defer cancelKeep()
	if _, err := plugin.New(keep, http.NotFoundHandler(), testConfig(srv.URL, "c-kept"), "bai_sd_kept@etcd"); err != nil {
		t.Fatal(err)
	}
	ended, cancel := context.WithCancel(context.Background())
	cancel()
	for _, name := range []string{"bai_sd_ended_1@etcd", "bai_sd_ended_2@etcd"} {
		if _, err := plugin.New(ended, http.NotFoundHandler(), testConfig(srv.URL, "c-ended"), name); err != nil {
			t.Fatal(err)
		}
		waitFor(t, name+" removed", func() bool {
			side.mu.Lock()
			defer side.mu.Unlock()
			for _, gone := range side.removed {
				if gone == name {
					return true
				}
			}
			return false
		})
	}
	if side.names() != "bai_sd_kept@etcd" {
		t.Errorf("live set: %q", side.names())
	}
}

func TestSidecarDownThenUpLosesNothing(t *testing.T) {
	side, srv := newFakeSidecar(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if _, err := plugin.New(ctx, http.NotFoundHandler(), testConfig(srv.URL, "c-a"), "bai_sd_a@etcd"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "first push", func() bool { return side.names() == "bai_sd_a@etcd" })

	// The sidecar goes away while routers come and go.
	side.setFailure(http.StatusServiceUnavailable)
	short, cancelShort := context.WithCancel(context.Background())
	for _, id := range []string{"b", "c", "d"} {
		if _, err := plugin.New(ctx, http.NotFoundHandler(), testConfig(srv.URL, "c-"+id), "bai_sd_"+id+"@etcd"); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := plugin.New(short, http.NotFoundHandler(), testConfig(srv.URL, "c-e"), "bai_sd_e@etcd"); err != nil {
		t.Fatal(err)
	}
	cancelShort()
	// Routers churn while it is down: what is gone must not pile up.
	for i := 0; i < 500; i++ {
		churn, cancelChurn := context.WithCancel(context.Background())
		if _, err := plugin.New(churn, http.NotFoundHandler(), testConfig(srv.URL, "c-churn"), "bai_sd_churn_"+strconv.Itoa(i)+"@etcd"); err != nil {
			t.Fatal(err)
		}
		cancelChurn()
	}
	time.Sleep(700 * time.Millisecond)

	// It comes back having lost its state, as a restarted sidecar does.
	side.forget()
	side.mu.Lock()
	side.largest = 0
	side.mu.Unlock()
	side.setFailure(0)
	waitFor(t, "the live set delivered after recovery", func() bool {
		return side.names() == "bai_sd_a@etcd,bai_sd_b@etcd,bai_sd_c@etcd,bai_sd_d@etcd"
	})
	side.mu.Lock()
	defer side.mu.Unlock()
	// Four live middlewares are about 1.2 KB; the 500 churned ones would be 150 KB.
	if side.largest > 4096 {
		t.Errorf("a push after recovery carried %d bytes: the outage's churn piled up", side.largest)
	}
}

func TestRestartedSidecarRelearnsTheSet(t *testing.T) {
	side, srv := newFakeSidecar(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if _, err := plugin.New(ctx, http.NotFoundHandler(), testConfig(srv.URL, "c-r"), "bai_sd_r@etcd"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "first push", func() bool { return side.names() == "bai_sd_r@etcd" })
	side.forget()
	// Nothing changes in Traefik; the periodic full push (1s here) restores it.
	waitFor(t, "resync after the sidecar forgot", func() bool { return side.names() == "bai_sd_r@etcd" })
}

// conflictAnswerBound is half the sender's first retry backoff (250 ms).
const conflictAnswerBound = 125 * time.Millisecond

// TestAConflictIsAnsweredWithTheFullSet isolates the 409 path: with a
// resync of an hour, a delta refused with 409 must be followed at once by
// a full push carrying every live middleware. "At once" is measured at the
// sidecar, from the 409 to the full push: under conflictAnswerBound, half
// the sender's first retry backoff (250 ms) and far below its 2 s
// heartbeat, so a 409 taken for an ordinary failure, or a full push left to
// the next sweep, tick or heartbeat, fails. A loaded machine only delays,
// never hastens, a push, so the measure is taken up to three times and the
// fastest must be under the bound.
func TestAConflictIsAnsweredWithTheFullSet(t *testing.T) {
	side, srv := newFakeSidecar(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	longResync := func(circuit string) *plugin.Config {
		cfg := testConfig(srv.URL, circuit)
		cfg.ResyncInterval = "1h"
		// The sender's sweep (a quarter of the removal delay, at most
		// 500 ms) is not what may answer a 409.
		cfg.RemovalDelay = "1h"
		return cfg
	}
	if _, err := plugin.New(ctx, http.NotFoundHandler(), longResync("c-r"), "bai_sd_r@etcd"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "first push", func() bool { return side.names() == "bai_sd_r@etcd" })
	live := []string{"bai_sd_r@etcd"}
	var gaps []time.Duration
	for round := 0; round < 3; round++ {
		side.forget()
		side.mu.Lock()
		// Two statements: Yaegi v0.16 panics on "a, b = nil, nil" for slices.
		side.answers = nil
		side.answeredAt = nil
		side.mu.Unlock()
		name := "bai_sd_s" + strconv.Itoa(round) + "@etcd"
		live = append(live, name)
		sort.Strings(live)
		if _, err := plugin.New(ctx, http.NotFoundHandler(), longResync("c-s"+strconv.Itoa(round)), name); err != nil {
			t.Fatal(err)
		}
		want := strings.Join(live, ",")
		waitFor(t, "full push after a 409", func() bool { return side.names() == want })
		side.mu.Lock()
		answers := append([]string{}, side.answers...)
		at := append([]time.Time{}, side.answeredAt...)
		side.mu.Unlock()
		// The first answer may be a heartbeat's (an empty delta) or the new
		// middleware's delta; either way a 409 and then the full set.
		if len(answers) < 2 || !strings.HasSuffix(answers[0], "-> 409") ||
			answers[1] != "full "+strings.Join(live, " ")+" -> 204" {
			t.Fatalf("pushes after the sidecar forgot: %q; want a delta refused with 409, then the full set", answers)
		}
		gap := at[1].Sub(at[0])
		gaps = append(gaps, gap)
		if gap < conflictAnswerBound {
			t.Logf("the full set followed the 409 after %v (rounds: %v)", gap, gaps)
			return
		}
	}
	t.Errorf("the full set followed the 409 after %v; want under %v, well before a retry backoff (250ms) or a heartbeat (2s)", gaps, conflictAnswerBound)
}

func TestHeartbeatRevealsARestartedSidecarWithinSeconds(t *testing.T) {
	side, srv := newFakeSidecar(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cfg := testConfig(srv.URL, "c-hb")
	cfg.ResyncInterval = "1h" // so only a heartbeat can bring the set back
	if _, err := plugin.New(ctx, http.NotFoundHandler(), cfg, "bai_sd_hb@etcd"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "first push", func() bool { return side.names() == "bai_sd_hb@etcd" })
	side.mu.Lock()
	before := side.pushes
	side.mu.Unlock()
	// Idle, the sender still pushes: empty deltas that follow the sequence.
	waitFor(t, "a heartbeat", func() bool {
		side.mu.Lock()
		defer side.mu.Unlock()
		return side.pushes > before
	})
	// The sidecar restarts: the next heartbeat gets 409 and the set follows.
	side.forget()
	start := time.Now()
	waitFor(t, "the set after a heartbeat's 409", func() bool { return side.names() == "bai_sd_hb@etcd" })
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("the set came back after %v; a heartbeat every 2s should bring it within 5s", took)
	}
}

// A reload's burst of New calls is recorded and pushed once it ends, not
// while it goes on: the push that first carries them carries them all.
func TestABurstOfNewCallsIsPushedWhenItEnds(t *testing.T) {
	side, srv := newFakeSidecar(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	const n = 60
	var widest time.Duration
	last := time.Now()
	for i := 0; i < n; i++ {
		if _, err := plugin.New(ctx, http.NotFoundHandler(), testConfig(srv.URL, fmt.Sprintf("c-burst-%d", i)), fmt.Sprintf("bai_sd_burst_%02d@etcd", i)); err != nil {
			t.Fatal(err)
		}
		if gap := time.Since(last); gap > widest {
			widest = gap
		}
		last = time.Now()
		// A burst longer than the sender's 100 ms batch window, with calls
		// closer than its 20 ms quiet window.
		time.Sleep(2 * time.Millisecond)
	}
	waitFor(t, "the burst pushed", func() bool {
		side.mu.Lock()
		defer side.mu.Unlock()
		return len(side.live) >= n
	})
	side.mu.Lock()
	defer side.mu.Unlock()
	if widest >= 15*time.Millisecond {
		// The machine paused this test as long as the quiet window: the
		// sender was right to take that for the burst's end.
		t.Skipf("the burst paused for %v; cannot judge it as one", widest)
	}
	for _, a := range side.answers {
		if strings.Contains(a, "bai_sd_burst_") && !strings.Contains(a, fmt.Sprintf("bai_sd_burst_%02d", n-1)) {
			t.Fatalf("a push carried part of the burst before it ended: %s", a)
		}
	}
}

// syncBuffer is a log destination the sender goroutine writes to while the
// test reads it.
type syncBuffer struct {
	mu  sync.Mutex
	buf strings.Builder
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// lines returns the lines that hold s.
func (b *syncBuffer) lines(s string) []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []string
	for _, line := range strings.Split(b.buf.String(), "\n") {
		if strings.Contains(line, s) {
			out = append(out, line)
		}
	}
	return out
}

// captureFailures sends the log package's output (the plugin's failures,
// Traefik's error level) to a buffer until the test ends.
func captureFailures(t *testing.T) *syncBuffer {
	b := &syncBuffer{}
	prev := log.Writer()
	log.SetOutput(b)
	t.Cleanup(func() { log.SetOutput(prev) })
	return b
}

// tokensSeen is every Authorization header the sidecar got, deduplicated.
func (f *fakeSidecar) tokensSeen() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	seen := map[string]bool{}
	var out []string
	for _, tok := range f.tokens {
		if !seen[tok] {
			seen[tok] = true
			out = append(out, tok)
		}
	}
	sort.Strings(out)
	return strings.Join(out, ",")
}

// TestOneTokenPerSidecar: middlewares naming one sidecarUrl share one
// token, the first recorded. A later middleware without a token, or with
// another, changes nothing of what every push carries (it used to: the last
// recorded won, so one middleware without a token stripped it from every
// push); the mismatch is logged once, as a failure, naming the middlewares
// and no token.
func TestOneTokenPerSidecar(t *testing.T) {
	failures := captureFailures(t)
	side, srv := newFakeSidecar(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	first := testConfig(srv.URL, "c-tok-1")
	first.Token = "first-token"
	if _, err := plugin.New(ctx, http.NotFoundHandler(), first, "bai_sd_tok_1@etcd"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the first middleware pushed", func() bool { return side.names() == "bai_sd_tok_1@etcd" })

	// Two more middlewares name the same sidecar: one without a token, one
	// with another; each reload records them again.
	for round := 0; round < 2; round++ {
		none := testConfig(srv.URL, "c-tok-2")
		none.Labels["round"] = strconv.Itoa(round)
		other := testConfig(srv.URL, "c-tok-3")
		other.Token = "other-token"
		other.Labels["round"] = strconv.Itoa(round)
		if _, err := plugin.New(ctx, http.NotFoundHandler(), none, "bai_sd_tok_2@etcd"); err != nil {
			t.Fatal(err)
		}
		if _, err := plugin.New(ctx, http.NotFoundHandler(), other, "bai_sd_tok_3@etcd"); err != nil {
			t.Fatal(err)
		}
		want := strconv.Itoa(round)
		waitFor(t, "round "+want+" pushed", func() bool {
			side.mu.Lock()
			defer side.mu.Unlock()
			return side.live["bai_sd_tok_2@etcd"].Config.Labels["round"] == want && side.live["bai_sd_tok_3@etcd"].Config.Labels["round"] == want
		})
	}
	if got := side.tokensSeen(); got != "Bearer first-token" {
		t.Errorf("Authorization headers pushed: %q; want only the first recorded token", got)
	}
	logged := failures.lines("bai_sd_tok_")
	if len(logged) != 1 {
		t.Fatalf("the mismatch was logged %d times, want once: %q", len(logged), logged)
	}
	if !strings.Contains(logged[0], "bai_sd_tok_1@etcd") || !strings.Contains(logged[0], "bai_sd_tok_2@etcd") || !strings.Contains(logged[0], srv.URL) {
		t.Errorf("the mismatch does not name the middlewares and the sidecar: %q", logged[0])
	}
	if strings.Contains(logged[0], "first-token") || strings.Contains(logged[0], "other-token") {
		t.Errorf("the log holds a token: %q", logged[0])
	}
}

// TestATokenRotatedEverywhereIsFollowed: when every middleware of a sidecar
// gets a new token in one reload (a rotation), pushes carry the new token
// and nothing is logged.
func TestATokenRotatedEverywhereIsFollowed(t *testing.T) {
	failures := captureFailures(t)
	side, srv := newFakeSidecar(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	names := []string{"bai_sd_rot_1@etcd", "bai_sd_rot_2@etcd"}
	for round, token := range []string{"old-token", "new-token"} {
		// The reload that rotates calls New for the other middleware
		// first: the order of a reload's New calls is Traefik's, so the
		// first recorded may see its token change after the others.
		order := []int{0, 1}
		if round == 1 {
			order = []int{1, 0}
		}
		for _, i := range order {
			cfg := testConfig(srv.URL, "c-rot-"+strconv.Itoa(i))
			cfg.Token = token
			cfg.Labels["token"] = token
			if _, err := plugin.New(ctx, http.NotFoundHandler(), cfg, names[i]); err != nil {
				t.Fatal(err)
			}
		}
		want := token
		waitFor(t, want+" pushed", func() bool {
			side.mu.Lock()
			defer side.mu.Unlock()
			return side.live[names[0]].Config.Labels["token"] == want && side.live[names[1]].Config.Labels["token"] == want
		})
	}
	side.mu.Lock()
	last := side.tokens[len(side.tokens)-1]
	side.mu.Unlock()
	if last != "Bearer new-token" {
		t.Errorf("after the rotation the push carried %q", last)
	}
	if logged := failures.lines("bai_sd_rot_"); len(logged) != 0 {
		t.Errorf("a rotation was logged as a mismatch: %q", logged)
	}
}

// TestTheLogRedactsTheSidecarURL: a sidecarUrl with userinfo is named in
// the log with the password (or a bare user, a token) redacted.
func TestTheLogRedactsTheSidecarURL(t *testing.T) {
	failures := captureFailures(t)
	_, srv := newFakeSidecar(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	withPassword := strings.Replace(srv.URL, "http://", "http://user:"+secretMarker+"@", 1)
	first := testConfig(withPassword, "c-red-1")
	first.Token = "t"
	if _, err := plugin.New(ctx, http.NotFoundHandler(), first, "bai_sd_red_1@etcd"); err != nil {
		t.Fatal(err)
	}
	if _, err := plugin.New(ctx, http.NotFoundHandler(), testConfig(withPassword, "c-red-2"), "bai_sd_red_2@etcd"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the mismatch logged", func() bool { return len(failures.lines("bai_sd_red_")) > 0 })
	logged := strings.Join(failures.lines("bai_sd_red_"), "\n")
	if strings.Contains(logged, secretMarker) || !strings.Contains(logged, "user:xxxxx@") {
		t.Errorf("the sidecar URL is not redacted: %q", logged)
	}
}

// TestWhenTheFirstMiddlewareGoesItsTokenPassesOn: once the middleware whose
// token a sidecar's pushes carry is gone, the oldest remaining one's token
// counts, so a sidecar is not left with the token of a configuration that
// no longer exists.
func TestWhenTheFirstMiddlewareGoesItsTokenPassesOn(t *testing.T) {
	captureFailures(t) // the mismatch meanwhile is expected
	side, srv := newFakeSidecar(t)
	first, cancelFirst := context.WithCancel(context.Background())
	defer cancelFirst()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	a := testConfig(srv.URL, "c-pass-a")
	a.Token = "token-a"
	if _, err := plugin.New(first, http.NotFoundHandler(), a, "bai_sd_pass_a@etcd"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the first pushed", func() bool { return side.names() == "bai_sd_pass_a@etcd" })
	b := testConfig(srv.URL, "c-pass-b")
	b.Token = "token-b"
	if _, err := plugin.New(ctx, http.NotFoundHandler(), b, "bai_sd_pass_b@etcd"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "both pushed", func() bool { return side.names() == "bai_sd_pass_a@etcd,bai_sd_pass_b@etcd" })
	cancelFirst()
	waitFor(t, "the first removed", func() bool { return side.names() == "bai_sd_pass_b@etcd" })
	waitFor(t, "a push with the remaining middleware's token", func() bool {
		side.mu.Lock()
		defer side.mu.Unlock()
		return side.tokens[len(side.tokens)-1] == "Bearer token-b"
	})
}
