package config_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/traefik-sd/traefik-sd/sidecar/config"
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
