// Command bench measures what the plugin costs Traefik, with the real
// Traefik build and the plugin loaded as a local plugin, each figure against
// the same Traefik without the plugin in the same run:
//
//   - throughput of one router with and without the plugin in its chain
//     (a Go load generator over loopback, rounds alternated);
//   - a configuration reload with 10,000 routers, each with and without its
//     own traefik-sd middleware (so New runs 10,000 times);
//   - etcd write -> /v1/targets through Traefik's reload, the plugin's push
//     and Traefik's API, at 10 and at 10,000 circuits (publish.go).
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
	"sort"
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
	rounds := flag.Int("rounds", 3, "throughput rounds per variant")
	routers := flag.Int("routers", 10000, "routers in the reload benchmark")
	publishRounds := flag.Int("publishRounds", 10, "changes measured per scale in the etcd-to-targets benchmark")
	parts := flag.String("parts", "throughput,reload,publish", "which benchmarks to run")
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
		reload(r, dir, backend, sidecar, *routers)
	}
	if run("publish") {
		for _, n := range []int{10, *routers} {
			publishDelay(r, dir, n, *publishRounds)
		}
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
	entry   string
	api     string
	dynamic string
}

// startTraefik runs Traefik with a file provider (watching dynamic) and the
// plugin as a local plugin, as the end-to-end stack does.
func startTraefik(t testbed.T, dir, name string) *traefik {
	work := filepath.Join(dir, name)
	stack.InstallPlugin(t, work)
	installNoopPlugin(t, work)
	entry, api := testbed.FreePort(t), testbed.FreePort(t)
	tr := &traefik{entry: "http://127.0.0.1:" + strconv.Itoa(entry), api: "http://127.0.0.1:" + strconv.Itoa(api), dynamic: filepath.Join(work, "dynamic.yml")}
	testbed.Must(t, os.WriteFile(tr.dynamic, []byte("http: {}\n"), 0o644), "dynamic.yml")
	static := fmt.Sprintf(`entryPoints:
  web:
    address: "127.0.0.1:%d"
  traefik:
    address: "127.0.0.1:%d"
ping: {}
providers:
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
log:
  level: ERROR
`, entry, api, tr.dynamic)
	testbed.Must(t, os.WriteFile(filepath.Join(work, "traefik.yml"), []byte(static), 0o644), "traefik.yml")
	tr.proc = testbed.Start(t, &testbed.Process{
		Name: "traefik-" + name, Path: testbed.Binary(t, "TRAEFIK_BIN", "traefik"),
		Args: []string{"--configFile=" + filepath.Join(work, "traefik.yml")}, Dir: work, Log: filepath.Join(work, "traefik.log"),
	})
	testbed.WaitHTTP(t, tr.proc, tr.api+"/ping", http.StatusOK, 60*time.Second)
	return tr
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
	p := filepath.Join(dir, "plugins-local", "src", "example.com", "noop")
	testbed.Must(t, os.MkdirAll(p, 0o755), "noop plugin")
	testbed.Must(t, os.WriteFile(filepath.Join(p, ".traefik.yml"), []byte("displayName: noop\ntype: middleware\nimport: example.com/noop\nsummary: does nothing\ntestData: {}\n"), 0o644), "noop manifest")
	src, err := os.ReadFile(filepath.Join(repoRoot(), "testdata", "noop-plugin", "noop.go"))
	testbed.Must(t, err, "noop source")
	testbed.Must(t, os.WriteFile(filepath.Join(p, "noop.go"), src, 0o644), "noop source")
}

func routersYAML(n int, plugin string, backend, sidecar string, extra int) string {
	var b strings.Builder
	b.WriteString("http:\n  routers:\n")
	for i := 0; i < n+extra; i++ {
		fmt.Fprintf(&b, "    r%d:\n      rule: Host(`c%d.example`)\n      service: s%d\n", i, i, i)
		if plugin != "" {
			fmt.Fprintf(&b, "      middlewares: [sd%d]\n", i)
		}
	}
	b.WriteString("  services:\n")
	for i := 0; i < n+extra; i++ {
		fmt.Fprintf(&b, "    s%d:\n      loadBalancer:\n        servers:\n          - url: %s\n", i, backend)
	}
	if plugin != "" {
		b.WriteString("  middlewares:\n")
		for i := 0; i < n+extra; i++ {
			fmt.Fprintf(&b, "    sd%d:\n      plugin:\n        %s:\n          circuitId: c%d\n", i, plugin, i)
			if plugin == "traefik-sd" {
				fmt.Fprintf(&b, "          sidecarURL: %s\n", sidecar)
			}
		}
	}
	return b.String()
}

func waitServed(t testbed.T, tr *traefik, host string, timeout time.Duration) time.Duration {
	start := time.Now()
	client := &http.Client{Timeout: 2 * time.Second}
	for time.Since(start) < timeout {
		req, _ := http.NewRequest(http.MethodGet, tr.entry+"/", nil)
		req.Host = host
		if resp, err := client.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return time.Since(start)
			}
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("%s not served within %v:\n%s", host, timeout, tr.proc.Tail())
	return 0
}

func throughput(t testbed.T, dir, backend, sidecar string, round time.Duration, rounds int) {
	tr := startTraefik(t, dir, "throughput")
	cfg := fmt.Sprintf(`http:
  routers:
    plain:
      rule: Host(`+"`plain.example`"+`)
      service: s
    plugged:
      rule: Host(`+"`plugged.example`"+`)
      service: s
      middlewares: [sd]
  services:
    s:
      loadBalancer:
        servers:
          - url: %s
  middlewares:
    sd:
      plugin:
        traefik-sd:
          circuitId: bench
          sidecarURL: %s
`, backend, sidecar)
	tr.writeDynamic(t, cfg)
	waitServed(t, tr, "plain.example", 30*time.Second)
	waitServed(t, tr, "plugged.example", 30*time.Second)
	load(tr, "plain.example", time.Second) // warm up
	var plain, plugged []float64
	for i := 0; i < rounds; i++ {
		plain = append(plain, load(tr, "plain.example", round))
		plugged = append(plugged, load(tr, "plugged.example", round))
	}
	p, q := median(plain), median(plugged)
	fmt.Printf("BenchmarkTraefikRouter/baseline=without-plugin\t1\t%.0f ns/op\t%.0f req/s\n", 1e9/p, p)
	fmt.Printf("BenchmarkTraefikRouter/with-plugin\t1\t%.0f ns/op\t%.0f req/s\n", 1e9/q, q)
	tr.proc.Stop()
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

func reload(t testbed.T, dir, backend, sidecar string, n int) {
	for _, variant := range []struct {
		name   string
		plugin string
	}{{"baseline=without-plugin", ""}, {"noop-yaegi-plugin", "noop"}, {"with-plugin", "traefik-sd"}} {
		tr := startTraefik(t, dir, "reload-"+variant.name)
		start := time.Now()
		tr.writeDynamic(t, routersYAML(n, variant.plugin, backend, sidecar, 0))
		waitServed(t, tr, fmt.Sprintf("c%d.example", n-1), 5*time.Minute)
		first := time.Since(start)
		// A reload: one router more, every router rebuilt (and New run again for each).
		start = time.Now()
		tr.writeDynamic(t, routersYAML(n, variant.plugin, backend, sidecar, 1))
		waitServed(t, tr, fmt.Sprintf("c%d.example", n), 5*time.Minute)
		again := time.Since(start)
		fmt.Printf("BenchmarkTraefikLoad%dRouters/%s\t1\t%d ns/op\n", n, variant.name, first.Nanoseconds())
		fmt.Printf("BenchmarkTraefikReload%dRouters/%s\t1\t%d ns/op\n", n, variant.name, again.Nanoseconds())
		tr.proc.Stop()
	}
}

func median(xs []float64) float64 {
	sort.Float64s(xs)
	return xs[len(xs)/2]
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
