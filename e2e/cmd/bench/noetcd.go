package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/traefik-sd/traefik-sd/e2e/stack"
	"github.com/traefik-sd/traefik-sd/internal/testbed"
	"github.com/traefik-sd/traefik-sd/sidecar/config"
	"github.com/traefik-sd/traefik-sd/sidecar/traefikapi"
)

// noEtcd measures the sidecar without etcd, learning everything from
// Traefik's API, at each size in sizes: n routers on Traefik's file
// provider, each with its own service of one server and its own traefik-sd
// middleware, as a plain-Traefik user writes them (README, "Any Traefik, any
// provider"). Per size it prints one line: change -> /v1/targets p50 and
// p99, the same change until Traefik's own API shows it, the sidecar's
// requests per second to Traefik's API at rest and while a change goes
// through, and the API bytes it read per change.
//
// The sidecar runs with StartPlain's flags but the default intervals, which
// are what bound the latency: --traefik.scrapeInterval (5s) is how often
// /api/http/services is listed, the only way a server's new URL reaches the
// sidecar here (a router that does not change is never asked about), and
// --traefik.apiSweep (30s) how often /api/http/routers is listed whole. So
// expect p50 near Traefik's reload plus half a scrapeInterval, and the max
// near Traefik's reload plus a whole one.
//
// rounds changes are measured at up to 1,000 routers; above that, fewer
// (noEtcdRounds), since every change costs Traefik a reload of all n routers.
func noEtcd(t testbed.T, dir string, sizes []int, rounds int) {
	for _, n := range sizes {
		noEtcdSize(t, dir, n, noEtcdRounds(n, rounds))
	}
}

// noEtcdRoundBudget bounds the rounds above 1,000 routers (after three):
// under a loaded machine one change there has taken a minute.
const noEtcdRoundBudget = 90 * time.Second

// noEtcdRounds keeps a size above 1,000 routers to a few minutes: each round
// waits for Traefik to rebuild every router (8 s at 10,000 with the plugin,
// BENCHMARKS.md) and then for the sidecar's next listing.
func noEtcdRounds(n, rounds int) int {
	if n <= 1000 {
		return rounds
	}
	return min(rounds, max(3, rounds*2500/n))
}

func noEtcdSize(t testbed.T, dir string, n, rounds int) {
	defaults := config.Default()
	scrapeEvery := time.Duration(defaults.Traefik.ScrapeInterval)
	sweepEvery := time.Duration(defaults.Traefik.APISweep)
	// The last question the Watcher asks about the routers of one change
	// (or of the plugin's first full push) comes this long after it.
	lastRecheck := traefikapi.Recheck[len(traefikapi.Recheck)-1]

	work := filepath.Join(dir, "noetcd-"+strconv.Itoa(n))
	traefikDir, configDir := filepath.Join(work, "traefik"), filepath.Join(work, "dynamic")
	testbed.Must(t, os.MkdirAll(configDir, 0o755), "the file provider's directory")
	stack.InstallPlugin(t, traefikDir)
	entry, apiPort, sidecarPort := testbed.FreePort(t), testbed.FreePort(t), testbed.FreePort(t)
	api := "http://127.0.0.1:" + strconv.Itoa(apiPort)
	sidecarURL := "http://127.0.0.1:" + strconv.Itoa(sidecarPort)

	cfg := &plainRouters{n: n, sidecarURL: sidecarURL, port: make([]int, n)}
	for i := range cfg.port {
		cfg.port[i] = 20000
	}
	// In the watched directory before Traefik starts, as on a restart: the
	// bench measures changes, not the first load.
	writeAtomic(t, filepath.Join(configDir, "dynamic.yml"), cfg.yaml())
	// StartPlain's static configuration (throttle 200ms, Prometheus metrics
	// with router and service labels), so that its figures and this bench's
	// describe one Traefik.
	provider := fmt.Sprintf("  file:\n    directory: %q\n    watch: true", configDir)
	static := fmt.Sprintf(stack.PlainTraefikStatic, entry, apiPort, stack.PlainPrometheusMetrics, provider, "WARN")
	testbed.Must(t, os.WriteFile(filepath.Join(traefikDir, "traefik.yml"), []byte(static), 0o644), "traefik.yml")
	start := time.Now()
	traefik := testbed.Start(t, &testbed.Process{
		Name: fmt.Sprintf("traefik-noetcd-%d", n), Path: testbed.Binary(t, "TRAEFIK_BIN", "traefik"),
		Args: []string{"--configFile=" + filepath.Join(traefikDir, "traefik.yml")}, Dir: traefikDir,
		Log: filepath.Join(work, "traefik.log"),
	})
	defer traefik.Stop()
	testbed.WaitHTTP(t, traefik, api+"/ping", http.StatusOK, 60*time.Second)

	// /metrics goes through the proxy too: the sidecar's every request to
	// Traefik is then seen, and one that bypassed it would show up as a
	// figure too low. It is counted apart, and the line reports the API
	// alone: what a scrape costs depends on Traefik's metric options and
	// its traffic, not on the routers' definitions this bench is about.
	// (Traefik gzips /metrics, so those bytes are compressed; its API
	// answers identity, so the API bytes are what the sidecar decodes.)
	proxy := startCountingProxy(t, api)
	defer proxy.close()
	sidecar := testbed.Start(t, &testbed.Process{
		Name: fmt.Sprintf("traefik-sd-noetcd-%d", n), Path: testbed.Binary(t, "SIDECAR_BIN", "traefik-sd"),
		Args: []string{
			"--address=127.0.0.1:" + strconv.Itoa(sidecarPort),
			"--etcd.endpoints=",
			"--traefik.apiURL=" + proxy.url,
			"--traefik.metricsURL=" + proxy.url + "/metrics",
			// Traefik's own target is published with its real address,
			// which the metrics URL through the proxy would otherwise name.
			"--traefik.target=127.0.0.1:" + strconv.Itoa(apiPort),
		},
		Dir: work, Log: filepath.Join(work, "traefik-sd.log"),
	})
	defer sidecar.Stop()
	fail := func(format string, args ...interface{}) {
		t.Fatalf("noetcd, %d routers: %s\n---- traefik-sd ----\n%s\n---- traefik ----\n%s",
			n, fmt.Sprintf(format, args...), sidecar.Tail(), traefik.Tail())
	}
	testbed.WaitHTTP(t, sidecar, sidecarURL+"/readyz", http.StatusOK, 3*time.Minute)

	routeTargets := func() int {
		v, _ := strconv.Atoi(testbed.Metric(context.Background(), sidecarURL+"/metrics",
			`traefik_sd_targets{service_group="appproxy-circuit-route"}`))
		return v
	}
	testbed.Eventually(t, 5*time.Minute, fmt.Sprintf("noetcd: the sidecar publishing all %d routers' targets", n), func() (bool, string) {
		if !traefik.Running() || !sidecar.Running() {
			fail("a process exited before every target was published")
		}
		got := routeTargets()
		return got == n, fmt.Sprintf("%d route targets published", got)
	})
	published := time.Now()
	t.Logf("noetcd: %d routers: all published %v after Traefik's start", n, published.Sub(start).Round(time.Millisecond))
	if s := proxy.snapshot(); s.apiReqs == 0 || s.apiBytes == 0 {
		fail("the sidecar published its targets, but the counting proxy saw %d API requests and %d bytes: its requests do not go through it", s.apiReqs, s.apiBytes)
	}

	// The plugin's first full push set every router on the Watcher's recheck
	// schedule, a listing of every router each time: at rest is after it.
	settling := proxy.snapshot()
	if settle := time.Until(published.Add(lastRecheck + time.Second)); settle > 0 {
		time.Sleep(settle)
	}
	t.Logf("noetcd: %d routers: settling, %v after the publish: %s", n, time.Since(published).Round(time.Millisecond), proxy.snapshot().minus(settling))
	// One sweep interval holds exactly one listing of the routers and
	// sweepEvery/scrapeEvery of the services; a shorter window would catch
	// the sweep or miss it.
	before := proxy.snapshot()
	time.Sleep(sweepEvery)
	rest := proxy.snapshot().minus(before)
	restRPS := float64(rest.apiReqs) / sweepEvery.Seconds()
	t.Logf("noetcd: %d routers: at rest over %v: %s", n, sweepEvery, rest)

	ctx := context.Background()
	poll := &http.Client{Timeout: 10 * time.Second}
	_, etag, err := targetsIfChanged(ctx, poll, sidecarURL, "")
	if err != nil {
		fail("/v1/targets: %v", err)
	}
	var toTargets, toAPI []time.Duration
	var perChange []int64
	var reloadReqs int64
	var reloadTime time.Duration
	var reloads counts
	fewest := n
	roundsStart := time.Now()
	for r := 0; r < rounds; r++ {
		if n > 1000 && r >= 3 && time.Since(roundsStart) > noEtcdRoundBudget {
			t.Logf("noetcd: %d routers: %d rounds in %v, past the budget of %v: stopping there", n, r, time.Since(roundsStart).Round(time.Second), noEtcdRoundBudget)
			break
		}
		// Written right after the previous publish, each change would land
		// just after a listing and wait a whole interval; spreading the
		// writes over the interval samples every phase of the poll.
		time.Sleep(time.Duration(math.Mod(float64(r+1)*0.6180339887, 1) * float64(scrapeEvery)))
		k := (r * 7919) % n
		cfg.port[k] = 21000 + r
		want := cfg.serverURL(k)
		target := []byte(strconv.Quote(strings.TrimPrefix(want, "http://")))
		before := proxy.snapshot()
		written := time.Now()
		writeAtomic(t, filepath.Join(configDir, "dynamic.yml"), cfg.yaml())
		var inAPI, inTargets time.Duration
		// Every body published before the right one: a change of one
		// server should publish once, and a reload should withdraw
		// nothing, so both say whether other routers moved meanwhile.
		bodies, least := 0, n
		for inAPI == 0 || inTargets == 0 {
			if time.Since(written) > 2*time.Minute {
				fail("round %d: s%d's new server %s not seen within 2m (Traefik's API after %v, /v1/targets after %v)", r, k, want, inAPI, inTargets)
			}
			if inAPI == 0 {
				if s, err := serviceServer(ctx, api, fmt.Sprintf("s%d@file", k)); err == nil && s == want {
					inAPI = time.Since(written)
				}
			}
			if inTargets == 0 {
				body, tag, err := targetsIfChanged(ctx, poll, sidecarURL, etag)
				if err != nil {
					fail("round %d: /v1/targets: %v", r, err)
				}
				if body != nil {
					etag = tag
					bodies++
					least = min(least, routeTargets())
					if bytes.Contains(body, target) {
						inTargets = time.Since(written)
					}
				}
			}
			time.Sleep(25 * time.Millisecond)
		}
		during := proxy.snapshot().minus(before)
		t.Logf("noetcd: %d routers: round %d: s%d in Traefik's API after %v, in /v1/targets after %v; %d bodies published, at least %d route targets; %s",
			n, r, k, inAPI.Round(time.Millisecond), inTargets.Round(time.Millisecond), bodies, least, during)
		fewest = min(fewest, least)
		reloads = reloads.plus(during)
		toAPI, toTargets = append(toAPI, inAPI), append(toTargets, inTargets)
		perChange = append(perChange, during.apiBytes)
		reloadReqs += during.apiReqs
		reloadTime += inTargets
	}
	rounds = len(toTargets)
	if fewest < n {
		t.Logf("noetcd: %d routers: a change of one server withdrew others: as few as %d of %d route targets were published meanwhile", n, fewest, n)
	}
	// Each window ends with the listing that carried its change, so it
	// holds one by construction: this rate exceeds the one at rest even
	// when a reload makes the sidecar ask nothing more (the log says which).
	reloadRPS := float64(reloadReqs) / reloadTime.Seconds()
	t.Logf("noetcd: %d routers: over %d changes (%v from write to publish in all): %s", n, rounds, reloadTime.Round(time.Millisecond), reloads)
	// The sidecar reads every listing but decodes only one whose pages hash
	// differently: per change, one whole listing, whichever service moved.
	t.Logf("noetcd: %d routers: one listing of /api/http/services is %d B", n, listingBytes(t, api))

	sort.Slice(perChange, func(i, j int) bool { return perChange[i] < perChange[j] })
	fmt.Printf("BenchmarkNoEtcdChangeToTargets/routers=%d\t%d\t%.1f p50-ms\t%.1f p99-ms\t%.1f traefik-api-p50-ms\t%.2f api-req/s-rest\t%.2f api-req/s-reload\t%d api-bytes/change\n",
		n, rounds, ms(percentile(toTargets, 50)), ms(percentile(toTargets, 99)), ms(percentile(toAPI, 50)),
		restRPS, reloadRPS, perChange[len(perChange)/2])
}

// percentile is the nearest-rank percentile: with fewer than 100 rounds,
// the 99th is the largest.
func percentile(ds []time.Duration, p int) time.Duration {
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[max(0, (len(s)*p+99)/100-1)]
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// plainRouters is the file provider's configuration: router r<i> on the web
// entry point, its service s<i> with one server, its middleware sd<i>. The
// servers are loopback addresses nothing listens on, hence no health check:
// Traefik would mark them down and the sidecar rightly withdraw them.
type plainRouters struct {
	n          int
	sidecarURL string
	port       []int // server i's port
}

func (c *plainRouters) serverURL(i int) string {
	return fmt.Sprintf("http://127.%d.%d.%d:%d", 1+i>>16&127, i>>8&255, i&255, c.port[i])
}

func (c *plainRouters) yaml() string {
	var b strings.Builder
	b.WriteString("http:\n  routers:\n")
	for i := 0; i < c.n; i++ {
		fmt.Fprintf(&b, "    r%d:\n      rule: Host(`r%d.example`)\n      entryPoints: [web]\n      middlewares: [sd%d]\n      service: s%d\n", i, i, i, i)
	}
	b.WriteString("  services:\n")
	for i := 0; i < c.n; i++ {
		fmt.Fprintf(&b, "    s%d:\n      loadBalancer:\n        servers:\n          - url: %s\n", i, c.serverURL(i))
	}
	b.WriteString("  middlewares:\n")
	for i := 0; i < c.n; i++ {
		fmt.Fprintf(&b, "    sd%d:\n      plugin:\n        traefik-sd:\n          sidecarUrl: %s\n", i, c.sidecarURL)
	}
	return b.String()
}

// writeAtomic replaces path whole: the file provider never reads half a file.
func writeAtomic(t testbed.T, path, content string) {
	tmp := filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".tmp")
	testbed.Must(t, os.WriteFile(tmp, []byte(content), 0o644), "writing %s", tmp)
	testbed.Must(t, os.Rename(tmp, path), "renaming %s", tmp)
}

// listingBytes reads every page of /api/http/services as the sidecar's
// Poller does (1,000 a page), directly, and returns their size.
func listingBytes(t testbed.T, api string) int {
	total := 0
	for page := 1; ; {
		resp, err := http.Get(fmt.Sprintf("%s/api/http/services?per_page=1000&page=%d", api, page))
		testbed.Must(t, err, "listing Traefik's services")
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		testbed.Must(t, err, "listing Traefik's services")
		total += len(b)
		next, err := strconv.Atoi(resp.Header.Get("X-Next-Page"))
		if err != nil || next <= page {
			return total
		}
		page = next
	}
}

// serviceServer is the first server URL Traefik's API shows for a service,
// asked directly, not through the proxy, whose counts are the sidecar's.
func serviceServer(ctx context.Context, api, name string) (string, error) {
	var s stack.TraefikService
	if err := stack.GetJSON(ctx, api+"/api/http/services/"+url.PathEscape(name), &s); err != nil {
		return "", err
	}
	if s.LoadBalancer == nil || len(s.LoadBalancer.Servers) == 0 {
		return "", fmt.Errorf("%s: no server", name)
	}
	return s.LoadBalancer.Servers[0].URL, nil
}

// targetsIfChanged returns /v1/targets's body and ETag unless the ETag is
// still etag: asking at 100 Hz must not make the sidecar send megabytes.
func targetsIfChanged(ctx context.Context, c *http.Client, sidecarURL, etag string) ([]byte, string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, sidecarURL+"/v1/targets", nil)
	if err != nil {
		return nil, "", err
	}
	if etag != "" {
		req.Header.Set("If-None-Match", etag)
	}
	resp, err := c.Do(req)
	if err != nil {
		return nil, "", err
	}
	defer resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusNotModified:
		return nil, etag, nil
	case http.StatusOK:
		body, err := io.ReadAll(resp.Body)
		return body, resp.Header.Get("ETag"), err
	default:
		return nil, "", fmt.Errorf("%s", resp.Status)
	}
}

// The kinds of request the sidecar makes to Traefik, counted apart so that
// the log says which one the figures come from.
const (
	kindServices   = iota // /api/http/services, paged
	kindRouters           // /api/http/routers, paged: a sweep
	kindRouter            // /api/http/routers/{name}
	kindMiddleware        // /api/http/middlewares/{name}: which routers use it
	kindOtherAPI          // /api/tcp/..., anything else under /api/
	kindMetrics           // /metrics, and anything outside /api/
	kinds
)

var kindNames = [kinds]string{"services-list", "routers-list", "router", "middleware", "other-api", "metrics"}

func kindOf(path string) int {
	switch {
	case path == "/api/http/services":
		return kindServices
	case path == "/api/http/routers":
		return kindRouters
	case strings.HasPrefix(path, "/api/http/routers/"):
		return kindRouter
	case strings.HasPrefix(path, "/api/http/middlewares/"):
		return kindMiddleware
	case strings.HasPrefix(path, "/api/"):
		return kindOtherAPI
	default:
		return kindMetrics
	}
}

// countingProxy stands between the sidecar and Traefik's entry point,
// forwarding every request unchanged and counting requests and response
// body bytes by kind.
type countingProxy struct {
	url   string
	srv   *http.Server
	reqs  [kinds]atomic.Int64
	bytes [kinds]atomic.Int64
}

func startCountingProxy(t testbed.T, upstream string) *countingProxy {
	to, err := url.Parse(upstream)
	testbed.Must(t, err, "the proxy's upstream")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	testbed.Must(t, err, "the counting proxy's listener")
	p := &countingProxy{url: "http://" + ln.Addr().String()}
	rp := &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			r.SetURL(to)
		},
		// The Watcher asks 8 routers at once; keep the connections.
		Transport: &http.Transport{MaxIdleConnsPerHost: 16, IdleConnTimeout: time.Minute},
		ModifyResponse: func(resp *http.Response) error {
			resp.Body = &countingBody{ReadCloser: resp.Body, n: &p.bytes[kindOf(resp.Request.URL.Path)]}
			return nil
		},
	}
	p.srv = &http.Server{ReadHeaderTimeout: 10 * time.Second, Handler: http.HandlerFunc(func(rw http.ResponseWriter, req *http.Request) {
		p.reqs[kindOf(req.URL.Path)].Add(1)
		rp.ServeHTTP(rw, req)
	})}
	go func() { _ = p.srv.Serve(ln) }()
	t.Cleanup(p.close)
	return p
}

func (p *countingProxy) close() { _ = p.srv.Close() }

type countingBody struct {
	io.ReadCloser
	n *atomic.Int64
}

func (b *countingBody) Read(buf []byte) (int, error) {
	n, err := b.ReadCloser.Read(buf)
	b.n.Add(int64(n))
	return n, err
}

// counts are the proxy's counters at one moment, or between two.
type counts struct {
	reqs, bytes       [kinds]int64
	apiReqs, apiBytes int64 // every kind under /api/
}

func (p *countingProxy) snapshot() counts {
	var c counts
	for k := 0; k < kinds; k++ {
		c.reqs[k], c.bytes[k] = p.reqs[k].Load(), p.bytes[k].Load()
	}
	return c.total()
}

func (c counts) total() counts {
	c.apiReqs, c.apiBytes = 0, 0
	for k := 0; k < kinds; k++ {
		if k != kindMetrics {
			c.apiReqs += c.reqs[k]
			c.apiBytes += c.bytes[k]
		}
	}
	return c
}

func (c counts) minus(o counts) counts {
	for k := 0; k < kinds; k++ {
		c.reqs[k] -= o.reqs[k]
		c.bytes[k] -= o.bytes[k]
	}
	return c.total()
}

func (c counts) plus(o counts) counts {
	for k := 0; k < kinds; k++ {
		c.reqs[k] += o.reqs[k]
		c.bytes[k] += o.bytes[k]
	}
	return c.total()
}

func (c counts) String() string {
	var parts []string
	for k := 0; k < kinds; k++ {
		if c.reqs[k] > 0 {
			parts = append(parts, fmt.Sprintf("%s %d req %d B", kindNames[k], c.reqs[k], c.bytes[k]))
		}
	}
	if len(parts) == 0 {
		return "no request"
	}
	return strings.Join(parts, ", ")
}
