package daemon_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/traefik-sd/traefik-sd/internal/testbed"
	"github.com/traefik-sd/traefik-sd/plugin"
	"github.com/traefik-sd/traefik-sd/sidecar/config"
	"github.com/traefik-sd/traefik-sd/sidecar/dynamic"
	"github.com/traefik-sd/traefik-sd/sidecar/watch"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// fakeTraefik plays Traefik for the daemon's tests (the end-to-end tests run
// the real one): it loads the configuration from etcd as Traefik's etcd
// provider would, serves /metrics and the API's router answers, and runs the
// traefik-sd plugin itself, compiled, calling New for every traefik-sd
// middleware on every reload and cancelling the previous generation, so the
// plugin's real sender pushes to the sidecar.
type fakeTraefik struct {
	metrics *fakeTraefikMetrics
	URL     string
	client  *clientv3.Client
	root    string

	mu       sync.Mutex
	routers  map[string]routerAnswer // by qualified name
	sorted   []string                // the routers' names in order, for the listing's pages; nil after a reload
	disabled map[string]string       // router name -> Traefik's error
	noPlugin bool
	// badStatus, when set, is the status the API gives every router: one
	// Traefik does not use, so that each answer is refused.
	badStatus string
	frozen    bool // stops following etcd, as a Traefik that loaded everything and sees no router change
	// readFor bounds one read of the whole tree (2 s unless set: a test
	// that pauses etcd must see the stand-in give up as quickly).
	readFor time.Duration
	sidecar string
	loaded  string // what the current generation was built from
	cancel  context.CancelFunc
	loads   int
}

type routerAnswer struct {
	Name        string   `json:"name"`
	Provider    string   `json:"provider"`
	Status      string   `json:"status"`
	Error       []string `json:"error,omitempty"`
	Service     string   `json:"service"`
	Middlewares []string `json:"middlewares,omitempty"`
}

func startFakeTraefik(t testbed.T, client *clientv3.Client, authority string) *fakeTraefik {
	f := &fakeTraefik{metrics: &fakeTraefikMetrics{}, client: client, root: "traefik/worker_" + authority,
		routers: map[string]routerAnswer{}, disabled: map[string]string{}}
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	f.URL = srv.URL
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			f.reload(ctx)
			select {
			case <-ctx.Done():
			case <-time.After(50 * time.Millisecond):
			}
		}
	}()
	t.Cleanup(func() {
		stop()
		<-done
		f.mu.Lock()
		if f.cancel != nil {
			f.cancel()
		}
		f.mu.Unlock()
	})
	return f
}

// attach points the plugin at a sidecar, as its sidecarURL would.
func (f *fakeTraefik) attach(sidecar string) {
	f.mu.Lock()
	f.sidecar = sidecar
	f.loaded = ""
	f.mu.Unlock()
}

// disable makes Traefik report a router disabled, as for a bad rule.
func (f *fakeTraefik) disable(router, why string) {
	f.mu.Lock()
	f.disabled[router] = why
	f.loaded = ""
	f.mu.Unlock()
}

// freeze stops following etcd: a benchmark that changes only services
// measures the sidecar's path, not the stand-in's reloads.
func (f *fakeTraefik) freeze() {
	f.mu.Lock()
	f.frozen = true
	f.mu.Unlock()
}

// reload reads etcd and, when anything changed, builds a new generation.
func (f *fakeTraefik) reload(ctx context.Context) {
	f.mu.Lock()
	idle := f.frozen || f.sidecar == ""
	readFor := f.readFor
	f.mu.Unlock()
	if idle {
		return
	}
	if readFor <= 0 {
		readFor = 2 * time.Second
	}
	rctx, cancel := context.WithTimeout(ctx, readFor)
	defer cancel()
	// One absent key tells the revision: a count over the prefix would
	// walk etcd 3.4's whole index every poll.
	head, err := f.client.Get(rctx, f.root+"-revision-probe")
	if err != nil {
		return // etcd down: Traefik keeps its configuration
	}
	f.mu.Lock()
	fingerprint, _ := json.Marshal([]interface{}{head.Header.Revision, f.disabled, f.sidecar, f.noPlugin})
	skip := string(fingerprint) == f.loaded
	f.mu.Unlock()
	if skip {
		return
	}
	resp, err := f.client.Get(rctx, f.root+"/", clientv3.WithPrefix(), clientv3.WithRev(head.Header.Revision))
	if err != nil {
		return
	}
	var listing watch.Events
	for _, kv := range resp.Kvs {
		listing = append(listing, watch.Event{Key: strings.TrimPrefix(string(kv.Key), f.root+"/"), Value: string(kv.Value)})
	}
	sort.Slice(listing, func(i, j int) bool { return listing[i].Key < listing[j].Key })
	store := dynamic.NewStore("traefik-sd")
	store.Reset(listing)
	store.Commit()

	f.mu.Lock()
	defer f.mu.Unlock()
	f.loaded = string(fingerprint)
	f.loads++
	routers := map[string]routerAnswer{}
	genCtx, genCancel := context.WithCancel(context.Background())
	for name, r := range store.Routers {
		a := routerAnswer{Name: name + "@etcd", Provider: "etcd", Status: "enabled", Service: r.Service, Middlewares: r.Middlewares}
		// Traefik builds a router's service before its middlewares: a
		// router whose service does not exist (an inference circuit before
		// its first route) is disabled and its plugin never instantiated.
		if _, ok := store.Services[r.Service]; !ok {
			a.Status, a.Error = "disabled", []string{fmt.Sprintf("the service %q does not exist", r.Service+"@etcd")}
			routers[a.Name] = a
			continue
		}
		for _, m := range r.Middlewares {
			mw := store.Middlewares[m]
			if mw == nil || mw.SD == nil {
				continue
			}
			if f.noPlugin {
				a.Status, a.Error = "disabled", []string{"plugin: unknown plugin type: traefik-sd"}
				continue
			}
			cfg := *mw.SD
			cfg.SidecarURL, cfg.RemovalDelay, cfg.ResyncInterval = f.sidecar, "300ms", plugin.DefaultResyncInterval
			_, _ = plugin.New(genCtx, http.NotFoundHandler(), &cfg, m+"@etcd")
		}
		if why, ok := f.disabled[name+"@etcd"]; ok {
			a.Status, a.Error = "disabled", []string{why}
		}
		routers[a.Name] = a
	}
	f.routers, f.sorted = routers, nil
	if f.cancel != nil {
		f.cancel()
	}
	f.cancel = genCancel
}

// answer is what the API says of r (f.mu held).
func (f *fakeTraefik) answer(r routerAnswer) routerAnswer {
	if f.badStatus != "" {
		r.Status = f.badStatus
	}
	return r
}

// answerBadly makes the API give every router the status st, one Traefik
// does not use ("" answers as Traefik does again).
func (f *fakeTraefik) answerBadly(st string) {
	f.mu.Lock()
	f.badStatus = st
	f.mu.Unlock()
}

func (f *fakeTraefik) ServeHTTP(rw http.ResponseWriter, req *http.Request) {
	if req.URL.Path == "/metrics" {
		f.metrics.ServeHTTP(rw, req)
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	rw.Header().Set("Content-Type", "application/json")
	switch rest := strings.TrimPrefix(req.URL.EscapedPath(), "/api/http/"); {
	case rest == "routers":
		// Paged as Traefik pages it (pkg/api/criterion.go, pagination):
		// per_page (100 unless given) from page (1 unless given), a page
		// past the end refused, X-Next-Page naming the next and 1 after
		// the last. Whole, the listing of 100,000 routers was one answer
		// of tens of megabytes, which Traefik never sends.
		if f.sorted == nil {
			f.sorted = make([]string, 0, len(f.routers))
			for name := range f.routers {
				f.sorted = append(f.sorted, name)
			}
			sort.Strings(f.sorted)
		}
		per, page := 100, 1
		if v, err := strconv.Atoi(req.URL.Query().Get("per_page")); err == nil {
			per = v
		}
		if v, err := strconv.Atoi(req.URL.Query().Get("page")); err == nil {
			page = v
		}
		start := (page - 1) * per
		if start != 0 && start >= len(f.sorted) {
			http.Error(rw, fmt.Sprintf("invalid request: page: %d, per_page: %d", page, per), http.StatusBadRequest)
			return
		}
		end := min(start+per, len(f.sorted))
		next := 1
		if page*per < len(f.sorted) {
			next = page + 1
		}
		list := make([]routerAnswer, 0, end-start)
		for _, name := range f.sorted[start:end] {
			list = append(list, f.answer(f.routers[name]))
		}
		rw.Header().Set("X-Next-Page", strconv.Itoa(next))
		_ = json.NewEncoder(rw).Encode(list)
	case strings.HasPrefix(rest, "routers/"):
		name, _ := url.PathUnescape(strings.TrimPrefix(rest, "routers/"))
		r, ok := f.routers[name]
		if !ok {
			http.Error(rw, `{"message":"router not found"}`, http.StatusNotFound)
			return
		}
		_ = json.NewEncoder(rw).Encode(f.answer(r))
	case strings.HasPrefix(rest, "middlewares/"):
		name, _ := url.PathUnescape(strings.TrimPrefix(rest, "middlewares/"))
		local, _, _ := strings.Cut(name, "@")
		var usedBy []string
		for _, r := range f.routers {
			for _, m := range r.Middlewares {
				if m == local || m == name {
					usedBy = append(usedBy, r.Name)
				}
			}
		}
		if usedBy == nil {
			http.Error(rw, `{"message":"middleware not found"}`, http.StatusNotFound)
			return
		}
		sort.Strings(usedBy)
		_ = json.NewEncoder(rw).Encode(map[string]interface{}{"name": name, "status": "enabled", "usedBy": usedBy})
	default:
		http.NotFound(rw, req)
	}
}

// startBeside runs another sidecar on the env's etcd with a Traefik of its
// own (an HA node, or a sidecar with other options); it returns its base URL
// and a stop that waits for it. Unless cfg names a coordinator, it asks the
// env's, as every sidecar of a worker does.
func (e *env) startBeside(t *testing.T, cfg *config.Configuration) (string, func()) {
	if cfg.BackendAI.CoordinatorURL == "" {
		e.askCoordinator(cfg)
	}
	f := startFakeTraefik(t, e.client, cfg.Worker.Authority)
	cfg.Traefik.MetricsURL = f.URL + "/metrics"
	testbed.Must(t, cfg.Complete(), "config")
	addr, stop := startDaemon(t, cfg)
	f.attach("http://" + addr)
	return "http://" + addr, stop
}
