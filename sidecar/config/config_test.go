package config_test

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/traefik-sd/traefik-sd/sidecar/config"
	"github.com/traefik/paerser/types"
)

// load runs the paerser command as main does, with args after the program name.
func load(t *testing.T, args ...string) (*config.Configuration, error) {
	t.Helper()
	cfg := config.Default()
	var completeErr error
	cmd := config.Command(cfg, func() error { completeErr = cfg.Complete(); return nil })
	saved := os.Args
	os.Args = append([]string{"traefik-sd"}, args...)
	defer func() { os.Args = saved }()
	if err := cliExecute(cmd); err != nil {
		return cfg, err
	}
	return cfg, completeErr
}

func TestFlags(t *testing.T) {
	cfg, err := load(t, "--worker.authority=worker-1", "--etcd.endpoints=10.0.0.1:2379,10.0.0.2:2379",
		"--traefik.metricsURL=http://127.0.0.1:8080/metrics", "--traefik.scrapeInterval=2s", "--routes.all")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Etcd.RootKey != "traefik/worker_worker-1" || len(cfg.Etcd.Endpoints) != 2 || cfg.Traefik.Target != "127.0.0.1:8080" ||
		time.Duration(cfg.Traefik.ScrapeInterval) != 2*time.Second || !cfg.Routes.All || cfg.Address != "127.0.0.1:9180" {
		t.Errorf("decoded: %+v", cfg)
	}
	if cfg.Worker.Node == "" {
		t.Error("worker.node not defaulted to the host name")
	}
}

func TestEnvironment(t *testing.T) {
	t.Setenv("TRAEFIK_SD_WORKER_AUTHORITY", "worker-env")
	t.Setenv("TRAEFIK_SD_PLUGIN_TOKEN", "tok")
	cfg, err := load(t)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Worker.Authority != "worker-env" || cfg.Plugin.Token != "tok" {
		t.Errorf("decoded: %+v", cfg)
	}
}

func TestFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "traefik-sd.yml")
	yml := "worker:\n  authority: worker-file\netcd:\n  endpoints: [\"127.0.0.1:2379\"]\n  rootKey: custom/root/\nappproxy:\n  workerTarget: 10.0.0.9:10201\n"
	if err := os.WriteFile(path, []byte(yml), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := load(t, "--configFile="+path)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Worker.Authority != "worker-file" || cfg.Etcd.RootKey != "custom/root" || cfg.AppProxy.WorkerTarget != "10.0.0.9:10201" {
		t.Errorf("decoded: %+v", cfg)
	}
}

// TestRedisStore: the password comes from a file (a mounted secret) with
// its trailing newline cut, and is never needed in a flag.
func TestRedisStore(t *testing.T) {
	pw := filepath.Join(t.TempDir(), "password")
	if err := os.WriteFile(pw, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := load(t, "--worker.authority=w", "--backendai.redis.address=redis.backendai:6379",
		"--backendai.redis.passwordFile="+pw, "--backendai.redis.db=2")
	if err != nil {
		t.Fatal(err)
	}
	if r := cfg.BackendAI.Redis; r.Address != "redis.backendai:6379" || r.Password != "s3cret" || r.DB != 2 {
		t.Errorf("decoded: %+v", r)
	}
}

// TestRedisSentinelOptions: Backend.AI's sentinel, service_name, password
// and sentinel_password copy across, from flags or a file; without a
// sentinel password the Sentinels get the password, as Backend.AI sends it.
func TestRedisSentinelOptions(t *testing.T) {
	dir := t.TempDir()
	pw := filepath.Join(dir, "password")
	if err := os.WriteFile(pw, []byte("develove\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := load(t, "--worker.authority=w", "--backendai.redis.sentinel=127.0.0.1:9503,127.0.0.1:9504,127.0.0.1:9505",
		"--backendai.redis.serviceName=mymaster", "--backendai.redis.passwordFile="+pw)
	if err != nil {
		t.Fatal(err)
	}
	r := cfg.BackendAI.Redis
	if !r.Enabled() || strings.Join(r.Sentinel, " ") != "127.0.0.1:9503 127.0.0.1:9504 127.0.0.1:9505" || r.ServiceName != "mymaster" ||
		r.Password != "develove" || r.SentinelAuth() != "develove" {
		t.Errorf("decoded: %+v, sentinel password %q", r, r.SentinelAuth())
	}
	file := filepath.Join(dir, "traefik-sd.yml")
	yml := "backendai:\n  redis:\n    sentinel: [\"redis-sentinel:26379\"]\n    serviceName: backend-ai\n    password: m\n    sentinelPassword: s\n"
	if err := os.WriteFile(file, []byte(yml), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err = load(t, "--worker.authority=w", "--configFile="+file)
	if err != nil {
		t.Fatal(err)
	}
	if r := cfg.BackendAI.Redis; len(r.Sentinel) != 1 || r.ServiceName != "backend-ai" || r.Password != "m" || r.SentinelAuth() != "s" {
		t.Errorf("from the file: %+v, sentinel password %q", r, r.SentinelAuth())
	}
}

func TestRefusedWithTheOptionName(t *testing.T) {
	testCases := []struct {
		desc string
		args []string
		want string
	}{
		{"no authority", nil, "--worker.authority"},
		{"bad metrics URL", []string{"--worker.authority=w", "--traefik.metricsURL=127.0.0.1:8080"}, "--traefik.metricsURL"},
		{"target without port", []string{"--worker.authority=w", "--appproxy.coordinatorTarget=10.0.0.1"}, "--appproxy.coordinatorTarget"},
		{"tiny scrape interval", []string{"--worker.authority=w", "--traefik.scrapeInterval=1ms"}, "--traefik.scrapeInterval"},
		{"bad address", []string{"--worker.authority=w", "--address=nowhere"}, "--address"},
		{"cert without key", []string{"--worker.authority=w", "--server.tlsCert=/x"}, "--server.tlsKey"},
		{"plugin name with slash", []string{"--worker.authority=w", "--plugin.name=a/b"}, "--plugin.name"},
		{"redis address without port", []string{"--worker.authority=w", "--backendai.redis.address=redis"}, "--backendai.redis.address"},
		{"redis password twice", []string{"--worker.authority=w", "--backendai.redis.address=r:6379", "--backendai.redis.password=a", "--backendai.redis.passwordFile=/x"}, "--backendai.redis.passwordFile"},
		{"redis password file missing", []string{"--worker.authority=w", "--backendai.redis.address=r:6379", "--backendai.redis.passwordFile=/nonexistent/pw"}, "--backendai.redis.passwordFile"},
		{"redis db negative", []string{"--worker.authority=w", "--backendai.redis.address=r:6379", "--backendai.redis.db=-1"}, "--backendai.redis.db"},
		{"redis options without an address", []string{"--worker.authority=w", "--backendai.redis.password=a"}, "--backendai.redis.address"},
		{"redis heartbeat outliving the TTL", []string{"--worker.authority=w", "--backendai.redis.address=r:6379", "--backendai.heartbeat=90s"}, "--backendai.heartbeat"},
		{"redis address and sentinel", []string{"--worker.authority=w", "--backendai.redis.address=r:6379", "--backendai.redis.sentinel=s:26379", "--backendai.redis.serviceName=m"}, "--backendai.redis.sentinel"},
		{"sentinel without a service name", []string{"--worker.authority=w", "--backendai.redis.sentinel=s:26379"}, "--backendai.redis.serviceName"},
		{"sentinel without a port", []string{"--worker.authority=w", "--backendai.redis.sentinel=s:26379,s2", "--backendai.redis.serviceName=m"}, "--backendai.redis.sentinel"},
		{"service name with an address", []string{"--worker.authority=w", "--backendai.redis.address=r:6379", "--backendai.redis.serviceName=m"}, "--backendai.redis.serviceName"},
		{"sentinel password with an address", []string{"--worker.authority=w", "--backendai.redis.address=r:6379", "--backendai.redis.sentinelPassword=x"}, "--backendai.redis.sentinelPassword"},
		{"sentinel password twice", []string{"--worker.authority=w", "--backendai.redis.sentinel=s:26379", "--backendai.redis.serviceName=m", "--backendai.redis.sentinelPassword=a", "--backendai.redis.sentinelPasswordFile=/x"}, "--backendai.redis.sentinelPasswordFile"},
		{"an etcd range from the top", []string{"--worker.authority=w", "--etcd.ranges=http/routers/,/tcp/"}, "--etcd.ranges[1]"},
		{"etcd ranges one inside the other", []string{"--worker.authority=w", "--etcd.ranges=http/,http/routers/"}, "--etcd.ranges[1]"},
		{"a service name alone", []string{"--worker.authority=w", "--backendai.redis.serviceName=m"}, "--backendai.redis.address"},
	}
	for _, test := range testCases {
		t.Run(test.desc, func(t *testing.T) {
			_, err := load(t, test.args...)
			if err == nil || !strings.Contains(err.Error(), test.want) {
				t.Errorf("error %v, want one naming %s", err, test.want)
			}
		})
	}
}

// TestSourcesCompose: the file, then TRAEFIK_SD_* variables, then flags,
// each overriding the one before, as a Kubernetes pod has them: settings
// in args, secrets in the environment.
func TestSourcesCompose(t *testing.T) {
	path := filepath.Join(t.TempDir(), "traefik-sd.yml")
	yml := "worker:\n  authority: worker-file\nserver:\n  readTimeout: 5s\n  writeTimeout: 20s\netcd:\n  endpoints: [\"10.0.0.1:2379\", \"10.0.0.2:2379\"]\n"
	if err := os.WriteFile(path, []byte(yml), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("TRAEFIK_SD_SERVER_READTIMEOUT", "7s")
	t.Setenv("TRAEFIK_SD_BACKENDAI_COORDINATORTOKEN", "from-env")
	cfg, err := load(t, "--configFile="+path, "--server.readTimeout=9s", "--worker.node=n1")
	if err != nil {
		t.Fatal(err)
	}
	checks := map[string]bool{
		"authority from the file":            cfg.Worker.Authority == "worker-file",
		"writeTimeout from the file":         time.Duration(cfg.Server.WriteTimeout) == 20*time.Second,
		"endpoints from the file":            strings.Join(cfg.Etcd.Endpoints, ",") == "10.0.0.1:2379,10.0.0.2:2379",
		"the token from the environment":     cfg.BackendAI.CoordinatorToken == "from-env",
		"readTimeout: the flag over the env": time.Duration(cfg.Server.ReadTimeout) == 9*time.Second,
		"defaults where nothing says":        cfg.Address == "127.0.0.1:9180",
	}
	for what, ok := range checks {
		if !ok {
			t.Errorf("%s: %+v", what, cfg)
		}
	}
	// The environment over the file, with no flag for it.
	cfg, err = load(t, "--configFile="+path)
	if err != nil || time.Duration(cfg.Server.ReadTimeout) != 7*time.Second {
		t.Errorf("readTimeout %v (%v), want the environment's 7s", time.Duration(cfg.Server.ReadTimeout), err)
	}
	// An empty --etcd.endpoints= over the file's list: no etcd.
	cfg, err = load(t, "--configFile="+path, "--etcd.endpoints=", "--traefik.apiURL=http://127.0.0.1:8080")
	if err != nil || !cfg.PluginOnly() {
		t.Errorf("--etcd.endpoints= over a file's list: plugin-only %v (%v)", cfg.PluginOnly(), err)
	}
}

// TestSecretsFromFiles: every secret has a …File variant (a mounted
// Secret); a re-read picks up a rotated value; giving both is refused.
func TestSecretsFromFiles(t *testing.T) {
	write := fileWriter(t, t.TempDir())
	cfg, err := load(t, "--worker.authority=w",
		"--plugin.tokenFile="+write("push", "push-1\n"),
		"--server.readTokenFile="+write("read", "read-1"),
		"--server.readUser=prom", "--server.readPasswordFile="+write("pw", "pw-1\n"),
		"--etcd.passwordFile="+write("etcd", "etcd-1\n"), "--etcd.username=u",
		"--backendai.coordinatorURL=http://c:10200", "--backendai.workerID=w1",
		"--backendai.coordinatorTokenFile="+write("coord", "coord-1\n"))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Plugin.Token != "push-1" || cfg.Server.ReadToken != "read-1" || cfg.Server.ReadPassword != "pw-1" ||
		cfg.Etcd.Password != "etcd-1" || cfg.BackendAI.CoordinatorToken != "coord-1" {
		t.Fatalf("secrets: %+v %+v %+v", cfg.Plugin, cfg.Server, cfg.BackendAI)
	}
	write("push", "push-2\n")
	changed, err := cfg.ReadSecrets()
	if err != nil || strings.Join(changed, ",") != "--plugin.token" || cfg.Plugin.Token != "push-2" {
		t.Errorf("re-read: %v %v, token %q", changed, err, cfg.Plugin.Token)
	}
	if _, err := load(t, "--worker.authority=w", "--plugin.token=x", "--plugin.tokenFile="+write("push", "y")); err == nil ||
		!strings.Contains(err.Error(), "--plugin.token and --plugin.tokenFile") {
		t.Errorf("both a token and its file: %v", err)
	}
	if _, err := load(t, "--worker.authority=w", "--plugin.tokenFile="+write("empty", "\n")); err == nil || !strings.Contains(err.Error(), "empty") {
		t.Errorf("an empty token file: %v", err)
	}
}

// TestEveryBadValueNamesItsOption: whatever the source, a value that
// cannot be decoded or makes no sense is refused at start with the
// option's name (as that source spells it) and what is accepted.
func TestEveryBadValueNamesItsOption(t *testing.T) {
	dir := t.TempDir()
	type source struct {
		name string
		give func(t *testing.T, key, value string) []string // returns the args
	}
	flagSrc := source{"flag", func(_ *testing.T, key, value string) []string { return []string{"--" + key + "=" + value} }}
	envSrc := source{"env", func(t *testing.T, key, value string) []string {
		t.Setenv("TRAEFIK_SD_"+strings.ToUpper(strings.ReplaceAll(key, ".", "_")), value)
		return nil
	}}
	fileSrc := source{"file", func(t *testing.T, key, value string) []string {
		parts := strings.Split(key, ".")
		var b strings.Builder
		for i, p := range parts[:len(parts)-1] {
			b.WriteString(strings.Repeat("  ", i) + p + ":\n")
		}
		b.WriteString(strings.Repeat("  ", len(parts)-1) + parts[len(parts)-1] + ": \"" + value + "\"\n")
		p := filepath.Join(dir, strings.ReplaceAll(t.Name(), "/", "_")+".yml")
		if err := os.WriteFile(p, []byte(b.String()), 0o600); err != nil {
			t.Fatal(err)
		}
		return []string{"--configFile=" + p}
	}}
	cases := []struct {
		key, value string
		want       []string // in the error, beside the option's name
	}{
		{"server.readTimeout", "abc", []string{"readTimeout", "a duration such as"}},
		{"server.readTimeout", "-5s", []string{"readTimeout", "above 0"}},
		{"server.writeTimeout", "0s", []string{"writeTimeout", "above 0"}},
		{"etcd.requestTimeout", "-1s", []string{"requestTimeout", "above 0"}},
		{"routes.all", "maybe", []string{"all", "true or false"}},
		{"server.maxConns", "many", []string{"maxConns", "a whole number"}},
		{"server.maxConns", "0", []string{"maxConns", "at least 1"}},
		{"server.maxConnsPerIP", "-1", []string{"maxConnsPerIP", "0 (no bound) or more"}},
		{"server.keepBodyUpTo", "-1", []string{"keepBodyUpTo", "0 (keep none) or more"}},
		{"server.tlsClientCA", "/etc/ca.pem", []string{"tlsClientCA", "needs --server.tlsCert"}},
		{"etcd.endpoints", "10.0.0.1", []string{"endpoints", "host:port"}},
		{"etcd.endpoints", "ftp://x:1", []string{"endpoints", "host:port"}},
		{"worker.node", "a node", []string{"worker.node", "no spaces"}},
		{"traefik.scrapeInterval", "1ms", []string{"scrapeInterval", "at least"}},
		{"no.suchOption", "1", []string{"not an option"}},
	}
	for _, src := range []source{flagSrc, envSrc, fileSrc} {
		for _, c := range cases {
			t.Run(src.name+"/"+c.key+"="+c.value, func(t *testing.T) {
				args := append([]string{"--worker.authority=w"}, src.give(t, c.key, c.value)...)
				_, err := load(t, args...)
				if err == nil {
					t.Fatal("accepted")
				}
				for _, w := range c.want {
					if !strings.Contains(strings.ToLower(err.Error()), strings.ToLower(w)) {
						t.Errorf("error %q does not say %q", err, w)
					}
				}
			})
		}
	}
	// The authority: spaces or slashes would land in etcd's root key.
	for _, bad := range []string{"worker 1", "worker/1"} {
		if _, err := load(t, "--worker.authority="+bad); err == nil || !strings.Contains(err.Error(), "--worker.authority") {
			t.Errorf("authority %q: %v", bad, err)
		}
	}
	// An unknown variable is named, not ignored.
	t.Run("unknown variable", func(t *testing.T) {
		t.Setenv("TRAEFIK_SD_WORKER_AUTORITY", "typo")
		if _, err := load(t, "--worker.authority=w"); err == nil || !strings.Contains(err.Error(), "TRAEFIK_SD_WORKER_AUTORITY") {
			t.Errorf("error %v, want one naming the variable", err)
		}
	})
}

// TestREADMEListsEveryOption: the README's options table names every
// option with its variable, so that it cannot fall behind the code.
func TestREADMEListsEveryOption(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	options, err := config.Options()
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range options {
		if !strings.Contains(string(readme), "| `--"+o.Flag+"` | `"+o.Env+"` |") {
			t.Errorf("the README's options table lacks --%s (%s)", o.Flag, o.Env)
		}
	}
}

// fileWriter writes files (secrets, say) into dir and returns each one's
// path.
func fileWriter(t *testing.T, dir string) func(name, v string) string {
	return func(name, v string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(v), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
}

// TestAPlainTraefikNeedsNoBackendAI: without etcd and without a
// ServiceDiscovery store nothing names a worker, so no authority is asked
// for, and --routes.all lists what Traefik's API lists; either store, or
// etcd, still needs the authority its keys are named by.
func TestAPlainTraefikNeedsNoBackendAI(t *testing.T) {
	cfg, err := load(t, "--etcd.endpoints=", "--traefik.apiURL=http://127.0.0.1:8080", "--routes.all", "--routes.keepDown")
	if err != nil {
		t.Fatalf("refused: %v", err)
	}
	if !cfg.PluginOnly() || !cfg.Routes.All || !cfg.Routes.KeepDown || cfg.Worker.Authority != "" || cfg.Traefik.MetricsURL != "" {
		t.Errorf("got %+v", cfg)
	}
	for _, args := range [][]string{
		{"--traefik.apiURL=http://127.0.0.1:8080"}, // etcd by default
		{"--etcd.endpoints=", "--traefik.apiURL=http://127.0.0.1:8080", "--backendai.redis.address=r:6379"},
		{"--etcd.endpoints=", "--traefik.apiURL=http://127.0.0.1:8080", "--backendai.etcd.endpoints=127.0.0.1:2379"},
	} {
		if _, err := load(t, args...); err == nil || !strings.Contains(err.Error(), "--worker.authority") {
			t.Errorf("%v: got %v, want --worker.authority required", args, err)
		}
	}
}

// TestFlagsGiveTheConfigurationBack: the command line Flags writes for a
// configuration loads into the same configuration, durations, lists,
// booleans turned off and optional groups included; an option left at its
// default is not written.
func TestFlagsGiveTheConfigurationBack(t *testing.T) {
	want := config.Default()
	want.Address = "127.0.0.1:19180"
	want.Worker.Authority, want.Worker.Node = "worker-1", "node-a"
	want.Etcd.Endpoints = []string{"10.0.0.1:2379", "10.0.0.2:2379"}
	want.Etcd.ProgressInterval = types.Duration(300 * time.Millisecond)
	want.Etcd.TLS = &config.TLS{InsecureSkipVerify: true}
	want.Traefik.MetricsURL = "http://127.0.0.1:8080/metrics"
	want.Traefik.ScrapeInterval = types.Duration(90 * time.Second)
	want.Routes.All, want.Routes.Meta = true, false
	want.Server.MaxPushBytes = 200 << 20
	args, err := config.Flags(want)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range args {
		if strings.HasPrefix(a, "--log.level=") || strings.HasPrefix(a, "--server.maxConns=") {
			t.Errorf("%s: written, though at its default", a)
		}
	}
	got, err := load(t, args...)
	if err != nil {
		t.Fatalf("loading %q: %v", args, err)
	}
	if err := want.Complete(); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("loaded from %q:\n%+v\nwant\n%+v", args, got, want)
	}
}
