package stack

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/traefik-sd/traefik-sd/internal/testbed"
	"gopkg.in/yaml.v3"
)

// A plain Traefik: no etcd, no Backend.AI. Traefik v3 with the traefik-sd
// plugin (a local plugin, as Start installs it) reads its routers from the
// file provider or from Redis; the sidecar runs without etcd
// (--etcd.endpoints=) and without --worker.authority, learning routers and
// services from Traefik's API; Prometheus discovers through it.

// The providers StartPlain can give Traefik.
const (
	ProviderFile  = "file"
	ProviderRedis = "redis"
)

// PlainRootKey is the Redis provider's rootKey (Traefik's default).
const PlainRootKey = "traefik"

// PlainOptions tune StartPlain.
type PlainOptions struct {
	Dir string // working directory for every process
	// Provider is ProviderFile (the default: providers.file.directory,
	// watched) or ProviderRedis (a redis-server, rootKey PlainRootKey).
	Provider string
	// OTLPOnly gives Traefik metrics.otlp only (pushed to a loopback sink
	// that accepts anything), so its /metrics answers 404, and runs the
	// sidecar with --traefik.metricsURL= (empty).
	OTLPOnly bool
	// SidecarArgs are appended to the sidecar's arguments.
	SidecarArgs []string
	// ScrapeInterval is Prometheus's scrape and SD refresh interval
	// (default 1s).
	ScrapeInterval time.Duration
	// Quiet keeps Traefik's log at warnings.
	Quiet bool
	// NoPrometheus leaves Prometheus out.
	NoPrometheus bool
}

// Plain is a running plain-Traefik stack.
type Plain struct {
	Provider   string
	Traefik    *testbed.Process
	Sidecar    *PlainSidecar // the sidecar Prometheus discovers through
	Prometheus *testbed.Process
	Redis      *testbed.Redis // with ProviderRedis

	EntryURL   string // Traefik's web entry point
	TraefikAPI string // Traefik's traefik entry point: API, ping, /metrics
	// TraefikMetricsURL is Traefik's /metrics, "" with OTLPOnly.
	TraefikMetricsURL string
	SidecarURL        string // Sidecar.URL
	PrometheusURL     string
	// ConfigDir is the file provider's watched directory.
	ConfigDir string
	// OTLPURL is where Traefik pushes its metrics with OTLPOnly.
	OTLPURL string

	t         testbed.T
	dir       string
	sidecars  int
	otlpPosts atomic.Int64
	redis     *redis.Client
	kvKeys    map[string]bool // what SetKV wrote last
}

// PlainSidecar is one traefik-sd process of a Plain stack.
type PlainSidecar struct {
	*testbed.Process
	URL string
}

// StartPlain brings Traefik, the sidecar and Prometheus up and waits until
// each answers (the sidecar's /readyz within 30 s).
func StartPlain(t testbed.T, opts PlainOptions) *Plain {
	t.Helper()
	if opts.ScrapeInterval == 0 {
		opts.ScrapeInterval = time.Second
	}
	if opts.Provider == "" {
		opts.Provider = ProviderFile
	}
	if opts.Provider != ProviderFile && opts.Provider != ProviderRedis {
		t.Fatalf("PlainOptions.Provider %q: want %q or %q", opts.Provider, ProviderFile, ProviderRedis)
	}
	p := &Plain{Provider: opts.Provider, t: t, dir: opts.Dir, kvKeys: map[string]bool{}}
	p.startTraefik(t, opts)
	metricsURL := p.TraefikMetricsURL
	p.Sidecar = p.StartSidecar(t, metricsURL, opts.SidecarArgs...)
	p.SidecarURL = p.Sidecar.URL
	if !opts.NoPrometheus {
		p.startPrometheus(t, opts)
	}
	return p
}

// PlainTraefikStatic is Traefik's static configuration (filled in with
// fmt: entry point web, entry point traefik, the metrics block, the
// provider block, the log level).
const PlainTraefikStatic = `entryPoints:
  web:
    address: "127.0.0.1:%d"
  traefik:
    address: "127.0.0.1:%d"
ping: {}
api:
  insecure: true
  dashboard: false
%s
providers:
  providersThrottleDuration: 200ms
%s
` + TraefikPlugin + `log:
  level: %s
`

// PlainPrometheusMetrics is Traefik's Prometheus metrics on the traefik
// entry point, labelled as Start's.
const PlainPrometheusMetrics = `metrics:
  prometheus:
    entryPoint: traefik
    addRoutersLabels: true
    addServicesLabels: true`

// PlainOTLPMetrics is OTLP over HTTP only (filled in with the endpoint).
const PlainOTLPMetrics = `metrics:
  otlp:
    addRoutersLabels: true
    addServicesLabels: true
    pushInterval: 1s
    http:
      endpoint: "%s"`

func (p *Plain) startTraefik(t testbed.T, opts PlainOptions) {
	t.Helper()
	dir := filepath.Join(opts.Dir, "traefik")
	InstallPlugin(t, dir)
	entry, api := testbed.FreePort(t), testbed.FreePort(t)
	p.EntryURL = "http://127.0.0.1:" + strconv.Itoa(entry)
	p.TraefikAPI = "http://127.0.0.1:" + strconv.Itoa(api)

	metrics := PlainPrometheusMetrics
	if opts.OTLPOnly {
		p.startOTLPSink(t)
		metrics = fmt.Sprintf(PlainOTLPMetrics, p.OTLPURL)
	} else {
		p.TraefikMetricsURL = p.TraefikAPI + "/metrics"
	}

	var provider string
	switch opts.Provider {
	case ProviderFile:
		p.ConfigDir = filepath.Join(opts.Dir, "dynamic")
		testbed.Must(t, os.MkdirAll(p.ConfigDir, 0o755), "the file provider's directory")
		provider = fmt.Sprintf("  file:\n    directory: %q\n    watch: true", p.ConfigDir)
	case ProviderRedis:
		rdir := filepath.Join(opts.Dir, "redis")
		testbed.Must(t, os.MkdirAll(rdir, 0o755), "redis dir")
		p.Redis = testbed.StartRedis(t, rdir)
		p.redis = p.Redis.Client(t)
		provider = fmt.Sprintf("  redis:\n    endpoints: [%q]\n    rootKey: %q", p.Redis.Address, PlainRootKey)
	}

	level := "INFO"
	if opts.Quiet {
		level = "WARN"
	}
	static := fmt.Sprintf(PlainTraefikStatic, entry, api, metrics, provider, level)
	testbed.Must(t, os.WriteFile(filepath.Join(dir, "traefik.yml"), []byte(static), 0o644), "traefik.yml")
	p.Traefik = testbed.Start(t, &testbed.Process{
		Name: "traefik",
		Path: testbed.Binary(t, "TRAEFIK_BIN", "traefik"),
		Args: []string{"--configFile=" + filepath.Join(dir, "traefik.yml")},
		Dir:  dir,
		Log:  filepath.Join(opts.Dir, "traefik.log"),
	})
	testbed.WaitHTTP(t, p.Traefik, p.TraefikAPI+"/ping", http.StatusOK, 60*time.Second)
	if opts.OTLPOnly {
		// No Prometheus metrics anywhere: /metrics is no route of Traefik's.
		testbed.WaitHTTP(t, p.Traefik, p.TraefikAPI+"/metrics", http.StatusNotFound, 5*time.Second)
	}
}

// startOTLPSink serves the OTLP endpoint Traefik pushes to: every request
// is read and answered 200 with an empty body (an empty
// ExportMetricsServiceResponse).
func (p *Plain) startOTLPSink(t testbed.T) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	testbed.Must(t, err, "the OTLP sink's listener")
	srv := &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(rw http.ResponseWriter, req *http.Request) {
		_, _ = io.Copy(io.Discard, req.Body)
		p.otlpPosts.Add(1)
		rw.Header().Set("Content-Type", "application/x-protobuf")
		rw.WriteHeader(http.StatusOK)
	})}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	})
	p.OTLPURL = "http://" + ln.Addr().String() + "/v1/metrics"
}

// OTLPPushes is how many requests Traefik's OTLP exporter made to the sink.
func (p *Plain) OTLPPushes() int64 { return p.otlpPosts.Load() }

// StartSidecar starts one more sidecar reading this Traefik's API, on a
// port of its own, with metricsURL ("" for none: health from the API's
// serverStatus) and args appended; it waits for its /readyz (30 s).
// StartPlain starts the first one this way.
func (p *Plain) StartSidecar(t testbed.T, metricsURL string, args ...string) *PlainSidecar {
	t.Helper()
	p.sidecars++
	name := "traefik-sd"
	if p.sidecars > 1 {
		name += "-" + strconv.Itoa(p.sidecars)
	}
	port := testbed.FreePort(t)
	sc := &PlainSidecar{URL: "http://127.0.0.1:" + strconv.Itoa(port)}
	sc.Process = testbed.Start(t, &testbed.Process{
		Name: name,
		Path: testbed.Binary(t, "SIDECAR_BIN", "traefik-sd"),
		Args: append([]string{
			"--address=127.0.0.1:" + strconv.Itoa(port),
			"--etcd.endpoints=",
			"--traefik.apiURL=" + p.TraefikAPI,
			"--traefik.metricsURL=" + metricsURL,
			"--traefik.scrapeInterval=1s",
			"--traefik.apiSweep=2s",
		}, args...),
		Dir: p.dir,
		Log: filepath.Join(p.dir, name+".log"),
	})
	testbed.WaitHTTP(t, sc.Process, sc.URL+"/readyz", http.StatusOK, 30*time.Second)
	return sc
}

func (p *Plain) startPrometheus(t testbed.T, opts PlainOptions) {
	t.Helper()
	cfg := fmt.Sprintf(PrometheusConfig, opts.ScrapeInterval, p.SidecarURL, strings.TrimPrefix(p.SidecarURL, "http://"))
	p.Prometheus, p.PrometheusURL = startPrometheus(t, opts.Dir, cfg)
}

// SetConfig replaces Traefik's dynamic configuration with yamlText (the
// file provider's YAML). With the file provider it is written atomically
// into the watched directory (a temporary file Traefik ignores, renamed);
// with Redis the same configuration goes in as Traefik's KV keys (SetKV).
func (p *Plain) SetConfig(yamlText string) {
	p.t.Helper()
	switch p.Provider {
	case ProviderFile:
		tmp := filepath.Join(p.ConfigDir, ".dynamic.yml.tmp")
		testbed.Must(p.t, os.WriteFile(tmp, []byte(yamlText), 0o644), "writing the dynamic configuration")
		testbed.Must(p.t, os.Rename(tmp, filepath.Join(p.ConfigDir, "dynamic.yml")), "renaming the dynamic configuration")
	case ProviderRedis:
		kv, err := YAMLToKV(PlainRootKey, yamlText)
		testbed.Must(p.t, err, "the dynamic configuration as KV keys")
		p.SetKV(kv)
	}
}

// SetKV makes kv (full keys: traefik/http/routers/r1/rule, …) the KV
// configuration in Redis, in one transaction: keys the previous SetKV
// wrote that kv lacks are deleted. Only with ProviderRedis.
func (p *Plain) SetKV(kv map[string]string) {
	p.t.Helper()
	if p.redis == nil {
		p.t.Fatalf("SetKV: the stack runs the %s provider, not redis", p.Provider)
	}
	for k := range kv {
		if !strings.HasPrefix(k, PlainRootKey+"/") {
			p.t.Fatalf("SetKV: key %q is not under %s/", k, PlainRootKey)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := p.redis.TxPipelined(ctx, func(pipe redis.Pipeliner) error {
		for k := range p.kvKeys {
			if _, keep := kv[k]; !keep {
				pipe.Del(ctx, k)
			}
		}
		for k, v := range kv {
			pipe.Set(ctx, k, v, 0)
		}
		return nil
	})
	testbed.Must(p.t, err, "writing Traefik's keys into Redis")
	p.kvKeys = map[string]bool{}
	for k := range kv {
		p.kvKeys[k] = true
	}
}

// YAMLToKV flattens a dynamic configuration in YAML into Traefik's KV
// layout under root: a map's keys and a list's indexes become path
// segments, a scalar the value (http.routers.r1.entryPoints: [web] is
// root/http/routers/r1/entryPoints/0 = web).
func YAMLToKV(root, yamlText string) (map[string]string, error) {
	var doc interface{}
	if err := yaml.Unmarshal([]byte(yamlText), &doc); err != nil {
		return nil, err
	}
	out := map[string]string{}
	var walk func(prefix string, v interface{}) error
	walk = func(prefix string, v interface{}) error {
		switch v := v.(type) {
		case nil:
			return nil
		case map[string]interface{}:
			for k, sub := range v {
				if err := walk(prefix+"/"+k, sub); err != nil {
					return err
				}
			}
		case []interface{}:
			for i, sub := range v {
				if err := walk(prefix+"/"+strconv.Itoa(i), sub); err != nil {
					return err
				}
			}
		case string:
			out[prefix] = v
		case bool, int, int64, uint64, float64:
			out[prefix] = fmt.Sprint(v)
		default:
			return fmt.Errorf("%s: a %T has no KV form", prefix, v)
		}
		return nil
	}
	return out, walk(root, doc)
}

// KVKeys returns the keys now under PlainRootKey/ in Redis, sorted.
func (p *Plain) KVKeys(ctx context.Context) ([]string, error) {
	keys, err := p.redis.Keys(ctx, PlainRootKey+"/*").Result()
	sort.Strings(keys)
	return keys, err
}

// Targets returns the groups the (first) sidecar publishes.
func (p *Plain) Targets(ctx context.Context) ([]SDGroup, error) {
	return p.Sidecar.Targets(ctx)
}

// Targets returns the groups this sidecar publishes at /v1/targets.
func (sc *PlainSidecar) Targets(ctx context.Context) ([]SDGroup, error) {
	var groups []SDGroup
	err := GetJSON(ctx, sc.URL+"/v1/targets", &groups)
	return groups, err
}

// PrometheusTargets returns Prometheus's active targets.
func (p *Plain) PrometheusTargets(ctx context.Context) ([]PromTarget, error) {
	return prometheusTargets(ctx, p.PrometheusURL)
}

// TraefikJSON decodes the answer of Traefik's API at path (e.g.
// /api/http/routers/r1@file).
func (p *Plain) TraefikJSON(ctx context.Context, path string, into interface{}) error {
	return GetJSON(ctx, p.TraefikAPI+path, into)
}

// TraefikService is a service as Traefik's API shows it, in part.
type TraefikService struct {
	Name         string            `json:"name"`
	Provider     string            `json:"provider"`
	Status       string            `json:"status"`
	ServerStatus map[string]string `json:"serverStatus"`
	LoadBalancer *struct {
		Servers []struct {
			URL string `json:"url"`
		} `json:"servers"`
	} `json:"loadBalancer"`
}

// Service returns one service from Traefik's API, by its qualified name.
func (p *Plain) Service(ctx context.Context, name string) (TraefikService, error) {
	var s TraefikService
	err := p.TraefikJSON(ctx, "/api/http/services/"+url.PathEscape(name), &s)
	return s, err
}

// TraefikRouterInfo is a router as Traefik's API shows it, in part.
type TraefikRouterInfo struct {
	Name        string   `json:"name"`
	Provider    string   `json:"provider"`
	Status      string   `json:"status"`
	Rule        string   `json:"rule"`
	Service     string   `json:"service"`
	EntryPoints []string `json:"entryPoints"`
	Middlewares []string `json:"middlewares"`
	Error       []string `json:"error"`
}

// Router returns one router from Traefik's API, by its qualified name.
func (p *Plain) Router(ctx context.Context, name string) (TraefikRouterInfo, error) {
	var r TraefikRouterInfo
	err := p.TraefikJSON(ctx, "/api/http/routers/"+url.PathEscape(name), &r)
	return r, err
}

// PlainConfig is a dynamic configuration for SetConfig, in the terms the
// tests use; YAML renders it.
type PlainConfig struct {
	Routers  []PlainRouter
	Services []PlainService
	// Middlewares are traefik-sd middlewares by name: each its plugin
	// configuration (SDMiddleware).
	Middlewares map[string]map[string]interface{}
}

// PlainRouter is an HTTP router on the web entry point.
type PlainRouter struct {
	Name        string
	Host        string // the rule is Host(`Host`)
	Service     string
	Middlewares []string
}

// PlainService is a load-balancer service.
type PlainService struct {
	Name    string
	Servers []string // URLs
	// HealthCheck checks /health every second, timing out after 500ms.
	HealthCheck bool
}

// SDMiddleware is a traefik-sd middleware's plugin configuration: where
// the sidecar is, and extra labels (none when nil).
func SDMiddleware(sidecarURL string, labels map[string]string) map[string]interface{} {
	m := map[string]interface{}{"sidecarUrl": sidecarURL}
	if len(labels) > 0 {
		m["labels"] = labels
	}
	return m
}

// ServerURL is a container's URL as a server of a service.
func (c *Container) ServerURL() string { return "http://" + c.HostPort }

// YAML renders the configuration as the file provider reads it.
func (c PlainConfig) YAML() string {
	routers := map[string]interface{}{}
	for _, r := range c.Routers {
		router := map[string]interface{}{
			"rule":        "Host(`" + r.Host + "`)",
			"entryPoints": []string{"web"},
			"service":     r.Service,
		}
		if len(r.Middlewares) > 0 {
			router["middlewares"] = r.Middlewares
		}
		routers[r.Name] = router
	}
	services := map[string]interface{}{}
	for _, s := range c.Services {
		var servers []map[string]string
		for _, u := range s.Servers {
			servers = append(servers, map[string]string{"url": u})
		}
		lb := map[string]interface{}{"servers": servers}
		if s.HealthCheck {
			lb["healthCheck"] = map[string]string{"path": "/health", "interval": "1s", "timeout": "500ms"}
		}
		services[s.Name] = map[string]interface{}{"loadBalancer": lb}
	}
	httpConf := map[string]interface{}{}
	if len(routers) > 0 {
		httpConf["routers"] = routers
	}
	if len(services) > 0 {
		httpConf["services"] = services
	}
	if len(c.Middlewares) > 0 {
		mws := map[string]interface{}{}
		for name, cfg := range c.Middlewares {
			mws[name] = map[string]interface{}{"plugin": map[string]interface{}{"traefik-sd": cfg}}
		}
		httpConf["middlewares"] = mws
	}
	b, err := yaml.Marshal(map[string]interface{}{"http": httpConf})
	if err != nil {
		panic(err) // maps of strings always marshal
	}
	return string(b)
}
