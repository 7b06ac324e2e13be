// Package stack brings up the whole path with the real programs, for the
// end-to-end tests and the demo: etcd, Traefik v3 with the traefik-sd plugin
// loaded as a local plugin, the traefik-sd sidecar binary, sample containers
// and Prometheus discovering through the sidecar's HTTP SD endpoint. Every
// port is a free loopback port and every process stops with the test.
package stack

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/traefik-sd/traefik-sd/internal/coordinator"
	"github.com/traefik-sd/traefik-sd/internal/manager"
	"github.com/traefik-sd/traefik-sd/internal/testbed"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// The AppProxy worker the stack plays: its authority, its id at the
// coordinator, and the coordinator's proxy_coordinator.traefik.etcd.namespace
// (Backend.AI's sample configuration's, not Traefik's usual "traefik"), so
// the root key is backend/worker_worker-1.
const (
	Authority = "worker-1"
	WorkerID  = "0e1d2c3b-4a59-4687-9786-a5b4c3d2e1f0"
	Namespace = "backend"
)

// Options tune the stack.
type Options struct {
	Dir string // working directory for every process
	// ScrapeInterval is Prometheus's scrape and SD refresh interval.
	ScrapeInterval time.Duration
	// Quiet keeps Traefik's log at warnings.
	Quiet bool
	// NoPlugin leaves the plugin out of Traefik's static configuration.
	NoPlugin bool
	// PluginOnly runs the sidecar without etcd (--etcd.endpoints=).
	PluginOnly bool
	// NoPrometheus leaves Prometheus out, for benchmarks whose targets
	// nothing should scrape.
	NoPrometheus bool
	// BeforeTraefik runs once etcd is up and before Traefik starts: what it
	// writes, Traefik lists once at start instead of following it event by
	// event (its etcd provider re-lists the whole tree on every event).
	BeforeTraefik func(w *coordinator.Writer) error
	// Redis starts a redis-server as Backend.AI's ServiceDiscovery store
	// (its default) and has the sidecar write into it.
	Redis bool
	// PluginFromRegistry has Traefik install the plugin the way users do,
	// from experimental.plugins (module, version, hash), downloaded from a
	// loopback stand-in of its plugin registry, instead of localPlugins.
	PluginFromRegistry bool
	// EtcdProxy puts a proxy between the sidecar and etcd, which a test
	// can cut (Stack.EtcdProxy) while the coordinator still writes etcd.
	EtcdProxy bool
	// ThroughManager has Prometheus discover through a stand-in of the
	// Manager's GET /metrics/service_discovery, served from the Redis
	// store, as Backend.AI's own Prometheus job does, instead of through
	// the sidecar. It implies Redis.
	ThroughManager bool
	// SidecarArgs are more options for the sidecar.
	SidecarArgs []string
	// TCPPort adds a TCP entry point portproxy_<port> on that port, for
	// TCP circuits in port mode (as Backend.AI's workers have).
	TCPPort int
	// TraefikAuth serves Traefik's API only through a router with a
	// basicAuth middleware (api.insecure off), and its /metrics only on an
	// entry point of its own over TLS, asking for a client certificate and
	// the same basic auth; the sidecar gets the credentials, the CA and a
	// client certificate (traefikauth.go).
	TraefikAuth bool
}

// Stack is the running set of programs.
type Stack struct {
	Etcd       *testbed.Etcd
	Traefik    *testbed.Process
	Sidecar    *testbed.Process
	Prometheus *testbed.Process
	Redis      *testbed.Redis  // with Options.Redis
	EtcdProxy  *testbed.Proxy  // with Options.EtcdProxy
	Registry   *PluginRegistry // with Options.PluginFromRegistry
	Client     *clientv3.Client
	Coord      *coordinator.Writer
	// CoordinatorAPI answers GET /api/worker/{id}/circuits at
	// CoordinatorURL from what Coord wrote; the sidecar asks it for route
	// and session ids.
	CoordinatorAPI *coordinator.API
	CoordinatorURL string

	// TraefikMetricsURL is the /metrics the sidecar scrapes: on TraefikAPI,
	// or with Options.TraefikAuth on its own HTTPS entry point.
	TraefikMetricsURL string
	// TraefikAuth is what Options.TraefikAuth made: certificates and the
	// password file.
	TraefikAuth *TraefikAuth

	EntryURL      string // Traefik's domainproxy entry point
	TraefikAPI    string // Traefik's traefik entry point: API, ping, /metrics
	SidecarURL    string
	PrometheusURL string
	// ManagerURL serves the Manager's HTTP SD answer from Redis, with
	// Options.Redis.
	ManagerURL string
	// AppProxyWorker and AppProxyCoordinator stand in for the AppProxy
	// processes' /metrics (Backend.AI's own cannot run here).
	AppProxyWorker      *Container
	AppProxyCoordinator *Container
}

// Start brings everything up and waits until each part answers.
func Start(t testbed.T, opts Options) *Stack {
	t.Helper()
	if opts.ScrapeInterval == 0 {
		opts.ScrapeInterval = time.Second
	}
	s := &Stack{}
	if opts.ThroughManager {
		opts.Redis = true
	}
	s.Etcd = testbed.StartEtcd(t, opts.Dir)
	if opts.EtcdProxy {
		s.EtcdProxy = testbed.StartProxy(t, s.Etcd.Endpoint)
	}
	if opts.Redis {
		s.Redis = testbed.StartRedis(t, opts.Dir)
	}
	client, err := clientv3.New(clientv3.Config{Endpoints: []string{s.Etcd.Endpoint}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	testbed.Must(t, err, "etcd client")
	t.Cleanup(func() { client.Close() })
	s.Client = client
	s.Coord = &coordinator.Writer{Client: client, Namespace: Namespace, Authority: Authority, WorkerID: WorkerID,
		UnchainAppProxyPlugins: true}
	// The coordinator's API, answering from what it wrote: Backend.AI's own
	// cannot run here.
	s.CoordinatorAPI = &coordinator.API{Token: "coordinator-api-secret", WorkerID: WorkerID, Writer: s.Coord}
	api := httptest.NewServer(s.CoordinatorAPI)
	t.Cleanup(api.Close)
	s.CoordinatorURL = api.URL

	s.AppProxyWorker = StartContainer(t, "appproxy-worker", "", "")
	s.AppProxyCoordinator = StartContainer(t, "appproxy-coordinator", "", "")

	sidecarPort := testbed.FreePort(t)
	s.SidecarURL = "http://127.0.0.1:" + strconv.Itoa(sidecarPort)
	// The coordinator patch's setting, as an operator sets it:
	// [proxy_coordinator.traefik.traefik_sd] enabled, sidecar_url.
	s.Coord.SD = &coordinator.TraefikSD{SidecarURL: s.SidecarURL}
	if opts.BeforeTraefik != nil {
		testbed.Must(t, opts.BeforeTraefik(s.Coord), "writing etcd before Traefik starts")
	}
	s.startTraefik(t, opts)
	s.startSidecar(t, opts, sidecarPort)
	if s.Redis != nil {
		s.startManager(t)
	}
	if !opts.NoPrometheus {
		s.startPrometheus(t, opts)
	}
	return s
}

func (s *Stack) startTraefik(t testbed.T, opts Options) {
	t.Helper()
	dir := filepath.Join(opts.Dir, "traefik")
	var env []string
	if opts.PluginFromRegistry {
		testbed.Must(t, os.MkdirAll(dir, 0o755), "traefik dir")
		s.Registry = StartPluginRegistry(t, dir, "v0.1.0")
		// Traefik's plugin client is Go's default transport: it takes the
		// proxy and the roots from the environment.
		env = []string{"HTTPS_PROXY=" + s.Registry.ProxyURL, "SSL_CERT_FILE=" + s.Registry.CAFile}
	} else {
		InstallPlugin(t, dir)
	}
	entry, api := testbed.FreePort(t), testbed.FreePort(t)
	s.EntryURL = "http://127.0.0.1:" + strconv.Itoa(entry)
	s.TraefikAPI = "http://127.0.0.1:" + strconv.Itoa(api)
	level := "INFO"
	if opts.Quiet {
		level = "WARN"
	}
	static := fmt.Sprintf(TraefikStatic, entry, api, s.Etcd.Endpoint, s.Coord.RootKey(), level)
	if opts.NoPlugin {
		static = strings.Replace(static, TraefikPlugin, "", 1)
	}
	if opts.TCPPort != 0 {
		static = strings.Replace(static, "entryPoints:\n", fmt.Sprintf("entryPoints:\n  portproxy_%[1]d:\n    address: \"127.0.0.1:%[1]d\"\n", opts.TCPPort), 1)
	}
	if s.Registry != nil {
		static = strings.Replace(static, TraefikPlugin, fmt.Sprintf(TraefikRegistryPlugin, ModulePath, s.Registry.Version, s.Registry.Hash), 1)
	}
	s.TraefikMetricsURL = s.TraefikAPI + "/metrics"
	if opts.TraefikAuth {
		static = s.guardTraefik(t, dir, static)
	}
	testbed.Must(t, os.WriteFile(filepath.Join(dir, "traefik.yml"), []byte(static), 0o644), "traefik.yml")
	s.Traefik = testbed.Start(t, &testbed.Process{
		Name: "traefik",
		Path: testbed.Binary(t, "TRAEFIK_BIN", "traefik"),
		Args: []string{"--configFile=" + filepath.Join(dir, "traefik.yml")},
		Env:  env,
		Dir:  dir,
		Log:  filepath.Join(opts.Dir, "traefik.log"),
	})
	testbed.WaitHTTP(t, s.Traefik, s.TraefikAPI+"/ping", http.StatusOK, 60*time.Second)
}

// InstallPlugin lays the plugin out as a local plugin for a Traefik whose
// working directory is dir: plugins-local/src/<module>/{.traefik.yml,plugin/}.
func InstallPlugin(t testbed.T, dir string) {
	t.Helper()
	pluginDir := filepath.Join(dir, "plugins-local", "src", "github.com", "traefik-sd", "traefik-sd")
	testbed.Must(t, os.MkdirAll(filepath.Join(pluginDir, "plugin"), 0o755), "plugin dir")
	root := repoRoot()
	copyFile(t, filepath.Join(root, ".traefik.yml"), filepath.Join(pluginDir, ".traefik.yml"))
	sources, _ := filepath.Glob(filepath.Join(root, "plugin", "*.go"))
	for _, src := range sources {
		if !strings.HasSuffix(src, "_test.go") {
			copyFile(t, src, filepath.Join(pluginDir, "plugin", filepath.Base(src)))
		}
	}
}

// TraefikStatic is the static configuration the stack runs Traefik with; an
// operator's differs only in addresses (see examples/traefik.yml).
const TraefikStatic = `entryPoints:
  domainproxy:
    address: "127.0.0.1:%d"
  traefik:
    address: "127.0.0.1:%d"
ping: {}
api:
  insecure: true
  dashboard: false
metrics:
  prometheus:
    entryPoint: traefik
    addRoutersLabels: true
    addServicesLabels: true
providers:
  providersThrottleDuration: 200ms
  etcd:
    endpoints: ["%s"]
    rootKey: "%s"
` + TraefikPlugin + `log:
  level: %s
`

// TraefikRegistryPlugin loads the plugin as users install it: module,
// version and the zip's hash (filled in with fmt).
const TraefikRegistryPlugin = `experimental:
  plugins:
    traefik-sd:
      moduleName: %s
      version: %s
      hash: %s
`

// TraefikPlugin is the part of TraefikStatic that loads the plugin.
const TraefikPlugin = `experimental:
  localPlugins:
    traefik-sd:
      moduleName: github.com/traefik-sd/traefik-sd
`

func (s *Stack) startSidecar(t testbed.T, opts Options, port int) {
	t.Helper()
	endpoints := s.Etcd.Endpoint
	if s.EtcdProxy != nil {
		endpoints = s.EtcdProxy.Address
	}
	if opts.PluginOnly {
		endpoints = ""
	}
	tokenFile := filepath.Join(opts.Dir, "coordinator-token")
	testbed.Must(t, os.WriteFile(tokenFile, []byte(s.CoordinatorAPI.Token+"\n"), 0o600), "coordinator token file")
	extra := []string{
		// The root key from the coordinator's configuration:
		// <proxy_coordinator.traefik.etcd.namespace>/worker_<authority>.
		"--etcd.rootKey=" + s.Coord.RootKey(),
		"--backendai.coordinatorURL=" + s.CoordinatorURL,
		"--backendai.workerID=" + WorkerID,
		"--backendai.coordinatorTokenFile=" + tokenFile,
		"--backendai.pollInterval=5s",
	}
	if s.Redis != nil {
		extra = append(extra, "--backendai.redis.address="+s.Redis.Address, "--backendai.heartbeat=1s")
	}
	if s.TraefikAuth != nil {
		extra = append(extra, s.TraefikAuth.SidecarArgs(s.TraefikAPI)...)
	}
	extra = append(extra, opts.SidecarArgs...)
	s.Sidecar = testbed.Start(t, &testbed.Process{
		Name: "traefik-sd",
		Path: testbed.Binary(t, "SIDECAR_BIN", "traefik-sd"),
		Args: append([]string{
			"--address=127.0.0.1:" + strconv.Itoa(port),
			"--etcd.endpoints=" + endpoints,
			"--worker.authority=" + Authority,
			"--worker.node=node-a",
			"--traefik.metricsURL=" + s.TraefikMetricsURL,
			"--traefik.scrapeInterval=500ms",
			"--etcd.progressInterval=1s",
			"--etcd.requestTimeout=3s",
			"--appproxy.workerTarget=" + s.AppProxyWorker.HostPort,
			"--appproxy.coordinatorTarget=" + s.AppProxyCoordinator.HostPort,
		}, extra...),
		Dir: opts.Dir,
		Log: filepath.Join(opts.Dir, "traefik-sd.log"),
	})
	testbed.WaitHTTP(t, s.Sidecar, s.SidecarURL+"/readyz", http.StatusOK, 30*time.Second)
}

// PrometheusConfig is the scrape configuration: one job discovering through
// the sidecar, keeping its labels, and one scraping the sidecar's own
// /metrics (the job examples/grafana-dashboard.json and alerts.yml expect).
const PrometheusConfig = `global:
  scrape_interval: %[1]s
  scrape_timeout: %[1]s
scrape_configs:
  - job_name: traefik-sd
    http_sd_configs:
      - url: %[2]s/v1/targets
        refresh_interval: %[1]s
  - job_name: traefik-sd-sidecar
    static_configs:
      - targets: ["%[3]s"]
`

// ManagerPrometheusConfig is Backend.AI's own job (its refresh is 60s;
// here every interval is the stack's): HTTP SD from the Manager.
const ManagerPrometheusConfig = `global:
  scrape_interval: %[1]s
  scrape_timeout: %[1]s
scrape_configs:
  - job_name: backendai
    http_sd_configs:
      - url: %[2]s/metrics/service_discovery
        refresh_interval: %[1]s
`

// startManager serves the Manager's GET /metrics/service_discovery from
// the Redis store, read as the Manager reads it.
func (s *Stack) startManager(t testbed.T) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	testbed.Must(t, err, "the Manager's listener")
	srv := &http.Server{Handler: manager.Handler(manager.RedisReader(s.Redis.Client(t))), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	})
	s.ManagerURL = "http://" + ln.Addr().String()
}

func (s *Stack) startPrometheus(t testbed.T, opts Options) {
	t.Helper()
	cfg := fmt.Sprintf(PrometheusConfig, opts.ScrapeInterval, s.SidecarURL, strings.TrimPrefix(s.SidecarURL, "http://"))
	if opts.ThroughManager {
		cfg = fmt.Sprintf(ManagerPrometheusConfig, opts.ScrapeInterval, s.ManagerURL)
	}
	s.Prometheus, s.PrometheusURL = startPrometheus(t, opts.Dir, cfg)
}

// startPrometheus runs Prometheus with cfg as its configuration, in
// dir/prometheus, and waits until it is ready.
func startPrometheus(t testbed.T, dir, cfg string) (*testbed.Process, string) {
	t.Helper()
	work := filepath.Join(dir, "prometheus")
	testbed.Must(t, os.MkdirAll(work, 0o755), "prometheus dir")
	testbed.Must(t, os.WriteFile(filepath.Join(work, "prometheus.yml"), []byte(cfg), 0o644), "prometheus.yml")
	port := testbed.FreePort(t)
	url := "http://127.0.0.1:" + strconv.Itoa(port)
	p := testbed.Start(t, &testbed.Process{
		Name: "prometheus",
		Path: testbed.Binary(t, "PROMETHEUS_BIN", "prometheus"),
		Args: []string{
			"--config.file=" + filepath.Join(work, "prometheus.yml"),
			"--storage.tsdb.path=" + filepath.Join(work, "data"),
			"--web.listen-address=127.0.0.1:" + strconv.Itoa(port),
			"--log.level=warn",
		},
		Dir: work,
		Log: filepath.Join(dir, "prometheus.log"),
	})
	testbed.WaitHTTP(t, p, url+"/-/ready", http.StatusOK, 60*time.Second)
	return p, url
}

// PromTarget is one active target as Prometheus's /api/v1/targets shows it.
type PromTarget struct {
	Labels     map[string]string `json:"labels"`
	ScrapeURL  string            `json:"scrapeUrl"`
	Health     string            `json:"health"`
	LastError  string            `json:"lastError"`
	ScrapePool string            `json:"scrapePool"`
}

// PrometheusTargets returns Prometheus's active targets.
func (s *Stack) PrometheusTargets(ctx context.Context) ([]PromTarget, error) {
	return prometheusTargets(ctx, s.PrometheusURL)
}

// prometheusTargets asks the Prometheus at url for its active targets.
func prometheusTargets(ctx context.Context, url string) ([]PromTarget, error) {
	var body struct {
		Status string `json:"status"`
		Data   struct {
			ActiveTargets []PromTarget `json:"activeTargets"`
		} `json:"data"`
	}
	if err := GetJSON(ctx, url+"/api/v1/targets?state=active", &body); err != nil {
		return nil, err
	}
	return body.Data.ActiveTargets, nil
}

// SDGroup is one group of the sidecar's /v1/targets.
type SDGroup struct {
	Targets []string          `json:"targets"`
	Labels  map[string]string `json:"labels"`
}

// SidecarTargets returns the sidecar's published groups.
func (s *Stack) SidecarTargets(ctx context.Context) ([]SDGroup, error) {
	var groups []SDGroup
	err := GetJSON(ctx, s.SidecarURL+"/v1/targets", &groups)
	return groups, err
}

// SidecarMetric returns the value of one sample of the sidecar's /metrics, by
// its full text before the value (name and labels), or "".
func (s *Stack) SidecarMetric(ctx context.Context, series string) string {
	return testbed.Metric(ctx, s.SidecarURL+"/metrics", series)
}

// GetJSON decodes the JSON answer of a GET, bounded by 5 s; a status other
// than 200 is an error.
func GetJSON(ctx context.Context, url string, into interface{}) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s", url, resp.Status)
	}
	return json.NewDecoder(resp.Body).Decode(into)
}

func copyFile(t testbed.T, from, to string) {
	b, err := os.ReadFile(from)
	testbed.Must(t, err, "reading %s", from)
	testbed.Must(t, os.WriteFile(to, b, 0o644), "writing %s", to)
}

func repoRoot() string {
	_, self, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(self), "..", "..")
}
