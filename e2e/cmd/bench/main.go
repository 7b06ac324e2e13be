// Command bench measures what the plugin costs Traefik, with the real
// Traefik build and the plugin loaded as a local plugin, each figure against
// the same Traefik without the plugin in the same run:
//
//   - throughput of one router with and without the plugin in its chain
//     (a Go load generator over loopback, rounds alternated, one line per
//     round);
//   - a configuration load and reload with 10,000 routers, plain, with a
//     no-op Yaegi plugin, with their own traefik-sd middleware (so New runs
//     10,000 times), and in Backend.AI's own middleware chain with and
//     without traefik-sd (reload.go), rounds alternated; then a CPU profile
//     of Traefik over one more reload of each variant with a plugin, so
//     that each goal's variant and its baseline can be compared part by
//     part (profile.go);
//   - Traefik's etcd ceiling: with 1,000 to 10,000 circuits loaded before it
//     starts, how long a new circuit takes to reach its API and the
//     sidecar (ceiling.go); then etcd write -> /v1/targets through Traefik's
//     reload, the plugin's push and Traefik's API, at 10 circuits and at
//     the largest count Traefik followed (publish.go);
//   - without etcd, definitions from Traefik's API: a server change to
//     /v1/targets at 1,000 and 10,000 routers, and the requests and bytes
//     the sidecar asks of Traefik's API (noetcd.go).
//
// It prints Go benchmark lines, which scripts/bench.sh reads.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/traefik-sd/traefik-sd/e2e/stack"
	"github.com/traefik-sd/traefik-sd/internal/testbed"
)

func main() {
	roundTime := flag.Duration("round", 4*time.Second, "length of one throughput round")
	rounds := flag.Int("rounds", 10, "throughput rounds per variant, variants alternated; one line per round")
	routers := flag.Int("routers", 10000, "routers in the reload benchmark")
	reloadRounds := flag.Int("reloadRounds", 5, "reload rounds per variant, variants alternated; one line per round")
	profile := flag.Bool("profile", true, "after the reload rounds, profile Traefik over one more reload of each variant with a plugin")
	profileDir := flag.String("profileDir", "", "keep those CPU profiles in this directory (by default they go with the run's temporary directory)")
	publishRounds := flag.Int("publishRounds", 10, "changes measured per scale in the etcd-to-targets benchmark")
	ceilingRounds := flag.Int("ceilingRounds", 3, "new circuits measured per size in Traefik's etcd ceiling")
	noEtcdRounds := flag.Int("noEtcdRounds", 20, "changes measured per size without etcd (fewer above 1,000 routers)")
	parts := flag.String("parts", "throughput,reload,publish,noetcd", "which benchmarks to run")
	flag.Parse()
	r := &testbed.Runner{}
	defer r.Stop()
	dir, err := os.MkdirTemp("", "traefik-sd-bench-")
	if err != nil {
		r.Fatalf("%v", err)
	}
	r.Cleanup(func() { os.RemoveAll(dir) })

	backend := startBackend(r)
	sidecar := startPushSink(r)
	run := func(part string) bool { return strings.Contains(","+*parts+",", ","+part+",") }
	if run("throughput") {
		throughput(r, dir, backend, sidecar, *roundTime, *rounds)
	}
	if run("reload") {
		reload(r, dir, backend, sidecar, *routers, *reloadRounds, *profile, *profileDir)
	}
	if run("publish") {
		publishDelay(r, dir, 10, *publishRounds)
		// Traefik's etcd provider re-reads and re-decodes the whole tree
		// per watch event: find where it stops following, then measure
		// the whole path at the largest size it follows.
		if n := ceiling(r, dir, []int{1000, 2000, 5000, *routers}, *ceilingRounds); n > 0 {
			publishDelay(r, dir, n, *publishRounds)
		}
	}
	if run("noetcd") {
		noEtcd(r, dir, []int{1000, *routers}, *noEtcdRounds)
	}
}

// startBackend is the container behind every router: a tiny answer.
func startBackend(t testbed.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	testbed.Must(t, err, "backend")
	srv := &http.Server{Handler: http.HandlerFunc(func(rw http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(rw, "ok\n")
	}), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return "http://" + ln.Addr().String() + "/"
}

// startPushSink accepts the plugin's pushes, as the sidecar would.
func startPushSink(t testbed.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	testbed.Must(t, err, "push sink")
	srv := &http.Server{Handler: http.HandlerFunc(func(rw http.ResponseWriter, req *http.Request) {
		_, _ = io.Copy(io.Discard, req.Body)
		rw.WriteHeader(http.StatusNoContent)
	}), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return "http://" + ln.Addr().String()
}

type traefik struct {
	proc    *testbed.Process
	work    string
	entry   string
	api     string
	dynamic string
}

// startTraefik runs Traefik with a file provider (watching dynamic) and the
// plugins as local plugins, as the end-to-end stack does. Every Traefik gets
// the same plugins, whatever its variant uses, so that their start-up cost
// and memory are the same in every variant. debug turns on Traefik's API
// with its pprof endpoints (profile.go); the timed runs go without, as
// api.debug also turns on block and mutex profiling.
func startTraefik(t testbed.T, dir, name string, debug bool) *traefik {
	work := filepath.Join(dir, name)
	stack.InstallPlugin(t, work)
	installNoopPlugin(t, work)
	installAppProxyPlugins(t, work)
	entry, api := testbed.FreePort(t), testbed.FreePort(t)
	tr := &traefik{work: work, entry: "http://127.0.0.1:" + strconv.Itoa(entry), api: "http://127.0.0.1:" + strconv.Itoa(api), dynamic: filepath.Join(work, "dynamic.toml")}
	testbed.Must(t, os.WriteFile(tr.dynamic, nil, 0o644), "dynamic.toml")
	apiConfig := ""
	if debug {
		apiConfig = "api:\n  insecure: true\n  dashboard: false\n  debug: true\n"
	}
	// The entry point is named as on a Backend.AI worker, whose routers name
	// it (reload.go); the other routers have none and get every entry point.
	static := fmt.Sprintf(`entryPoints:
  domainproxy:
    address: "127.0.0.1:%d"
  traefik:
    address: "127.0.0.1:%d"
ping: {}
%sproviders:
  providersThrottleDuration: 10ms
  file:
    filename: %q
    watch: true
experimental:
  localPlugins:
    traefik-sd:
      moduleName: github.com/traefik-sd/traefik-sd
    noop:
      moduleName: example.com/noop
%slog:
  level: ERROR
`, entry, api, apiConfig, tr.dynamic, appProxyLocalPlugins)
	testbed.Must(t, os.WriteFile(filepath.Join(work, "traefik.yml"), []byte(static), 0o644), "traefik.yml")
	tr.proc = testbed.Start(t, &testbed.Process{
		Name: "traefik-" + name, Path: testbed.Binary(t, "TRAEFIK_BIN", "traefik"),
		Args: []string{"--configFile=" + filepath.Join(work, "traefik.yml")}, Dir: work, Log: filepath.Join(work, "traefik.log"),
	})
	testbed.WaitHTTP(t, tr.proc, tr.api+"/ping", http.StatusOK, 60*time.Second)
	// Traefik starts without any plugin when one fails to load, and then
	// only disables the routers that use them: say so now, not after
	// minutes of waiting for a router.
	if log, _ := os.ReadFile(tr.proc.Log); strings.Contains(string(log), "Plugins are disabled") {
		t.Fatalf("%s: Traefik could not load the plugins:\n%s", name, tr.proc.Tail())
	}
	return tr
}

// checkLog fails the run if Traefik has logged an error: a middleware it
// could not build (a plugin's above all) disables only its router, and the
// figures would be of fewer routers than they say.
func (tr *traefik) checkLog(t testbed.T, what string) {
	if line := tr.logError(); line != "" {
		t.Fatalf("%s: Traefik logged an error:\n%s", what, line)
	}
}

// logError is the first line of Traefik's log, which has errors only
// (log.level).
func (tr *traefik) logError() string {
	log, _ := os.ReadFile(tr.proc.Log)
	for _, l := range strings.Split(string(log), "\n") {
		if strings.TrimSpace(l) != "" {
			return l
		}
	}
	return ""
}

// stop ends Traefik and removes its directory: the configuration of 10,000
// Backend.AI circuits is tens of megabytes, and a run starts dozens.
func (tr *traefik) stop() {
	tr.proc.Stop()
	_ = os.RemoveAll(tr.work)
}

// writeDynamic replaces the file provider's configuration atomically.
func (tr *traefik) writeDynamic(t testbed.T, content string) {
	tmp := tr.dynamic + ".tmp"
	testbed.Must(t, os.WriteFile(tmp, []byte(content), 0o644), "dynamic")
	testbed.Must(t, os.Rename(tmp, tr.dynamic), "dynamic")
}

// installNoopPlugin adds the smallest Yaegi plugin there is (CreateConfig,
// and New returning next): what any plugin costs Traefik, whatever it does.
func installNoopPlugin(t testbed.T, dir string) {
	installYaegiPlugin(t, dir, "noop", "noop-plugin", "noop.go")
}

// installYaegiPlugin installs testdata/<from>/<file> as the local Yaegi
// plugin example.com/<module>.
func installYaegiPlugin(t testbed.T, dir, module, from, file string) {
	p := filepath.Join(dir, "plugins-local", "src", "example.com", module)
	testbed.Must(t, os.MkdirAll(p, 0o755), "%s plugin", module)
	manifest := fmt.Sprintf("displayName: %s\ntype: middleware\nimport: example.com/%s\nsummary: does nothing\ntestData: {}\n", module, module)
	testbed.Must(t, os.WriteFile(filepath.Join(p, ".traefik.yml"), []byte(manifest), 0o644), "%s manifest", module)
	src, err := os.ReadFile(filepath.Join(repoRoot(), "testdata", from, file))
	testbed.Must(t, err, "%s source", module)
	testbed.Must(t, os.WriteFile(filepath.Join(p, file), src, 0o644), "%s source", module)
}

// waitServed waits until host answers 200 through Traefik. A router whose
// middleware Traefik could not build is never served: an error in the log
// ends the wait at once.
func waitServed(t testbed.T, tr *traefik, host string, timeout time.Duration) time.Duration {
	start := time.Now()
	client := &http.Client{Timeout: 2 * time.Second}
	lastLook := start
	for time.Since(start) < timeout {
		if time.Since(lastLook) > time.Second {
			tr.checkLog(t, host)
			lastLook = time.Now()
		}
		req, _ := http.NewRequest(http.MethodGet, tr.entry+"/", nil)
		req.Host = host
		if resp, err := client.Do(req); err == nil {
			_, _ = io.Copy(io.Discard, resp.Body) // so that the connection is reused
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return time.Since(start)
			}
		}
		// Until it is served, Traefik matches the host against every router
		// it has: milliseconds of CPU at 10,000 routers. Asked every 5 ms,
		// that was 29% of Traefik's CPU samples over a reload (two cores),
		// so the pause grows with the wait, keeping the figure within 1%.
		time.Sleep(min(max(time.Since(start)/100, 5*time.Millisecond), 100*time.Millisecond))
	}
	t.Fatalf("%s not served within %v:\n%s", host, timeout, tr.proc.Tail())
	return 0
}

// throughput alternates the two routers round by round in one Traefik, and
// prints each round as it is measured: benchreport pairs the i-th round of
// one with the i-th of the other, so a drift of the machine over the run
// falls on both alike.
func throughput(t testbed.T, dir, backend, sidecar string, round time.Duration, rounds int) {
	tr := startTraefik(t, dir, "throughput", false)
	defer tr.stop()
	cfg := renderTOML(t, map[string]any{"http": map[string]any{
		"routers": map[string]any{
			"plain":   map[string]any{"rule": "Host(`plain.example`)", "service": "s"},
			"plugged": map[string]any{"rule": "Host(`plugged.example`)", "service": "s", "middlewares": []any{"sd"}},
		},
		"services": map[string]any{"s": map[string]any{"loadBalancer": map[string]any{"servers": []any{map[string]any{"url": backend}}}}},
		"middlewares": map[string]any{"sd": map[string]any{"plugin": map[string]any{
			"traefik-sd": map[string]any{"circuitId": "bench", "sidecarURL": sidecar},
		}}},
	}})
	tr.writeDynamic(t, cfg)
	waitServed(t, tr, "plain.example", 30*time.Second)
	waitServed(t, tr, "plugged.example", 30*time.Second)
	variants := []struct{ name, host string }{
		{"baseline=without-plugin", "plain.example"},
		{"with-plugin", "plugged.example"},
	}
	for _, v := range variants {
		load(tr, v.host, time.Second) // warm up
	}
	for i := 0; i < rounds; i++ {
		for _, v := range variants {
			rps := load(tr, v.host, round)
			if rps == 0 {
				t.Fatalf("throughput: no request to %s answered 200 in round %d:\n%s", v.host, i+1, tr.proc.Tail())
			}
			fmt.Printf("BenchmarkTraefikRouter/%s\t1\t%.0f ns/op\t%.0f req/s\n", v.name, 1e9/rps, rps)
		}
	}
	tr.checkLog(t, "throughput")
}

// load drives one host for d with 16 keep-alive clients; it returns requests per second.
func load(tr *traefik, host string, d time.Duration) float64 {
	transport := &http.Transport{MaxIdleConnsPerHost: 32, DisableCompression: true}
	defer transport.CloseIdleConnections()
	client := &http.Client{Transport: transport, Timeout: 5 * time.Second}
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	var done atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for w := 0; w < 16; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				req, _ := http.NewRequestWithContext(ctx, http.MethodGet, tr.entry+"/", nil)
				req.Host = host
				resp, err := client.Do(req)
				if err != nil {
					continue
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					done.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	return float64(done.Load()) / time.Since(start).Seconds()
}

// repoRoot is the checkout the program runs in (make bench runs it there).
func repoRoot() string {
	wd, _ := os.Getwd()
	for dir := wd; dir != "/"; dir = filepath.Dir(dir) {
		if _, err := os.Stat(filepath.Join(dir, ".traefik.yml")); err == nil {
			return dir
		}
	}
	return wd
}
