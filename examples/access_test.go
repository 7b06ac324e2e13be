package examples

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// TestExamplesCarryAndSendCredentials: the host configuration
// (traefik-sd.yml) listens on every interface, so it must start with the
// sidecar's own loader (a push token is required there) and leave nothing
// open (a read token); Prometheus's example sends the read token wherever it
// reads a sidecar: its HTTP SD URL and the sidecars' own /metrics.
func TestExamplesCarryAndSendCredentials(t *testing.T) {
	raw, err := os.ReadFile("traefik-sd.yml")
	if err != nil {
		t.Fatal(err)
	}
	// The secrets' files, where the example says they are, in a directory
	// of the test.
	const secrets = "/run/secrets/traefik-sd/"
	tmp := t.TempDir()
	text := string(raw)
	for _, f := range []string{"push-token", "read-token"} {
		if !strings.Contains(text, secrets+f) {
			t.Errorf("traefik-sd.yml does not read %s from %s", f, secrets)
		}
		if err := os.WriteFile(filepath.Join(tmp, f), []byte("from-the-secret-"+f+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	file := filepath.Join(tmp, "traefik-sd.yml")
	if err := os.WriteFile(file, []byte(strings.ReplaceAll(text, secrets, tmp+"/")), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := loadArgs([]string{"--configFile=" + file})
	if err != nil {
		t.Fatalf("traefik-sd.yml does not load: %v", err)
	}
	if cfg.Loopback() {
		t.Errorf("traefik-sd.yml listens on %s: this test is for an address others reach", cfg.Address)
	}
	if w := cfg.AccessWarnings(); cfg.Plugin.Insecure || len(w) > 0 || !strings.HasPrefix(cfg.Server.ReadToken, "from-the-secret-") {
		t.Errorf("traefik-sd.yml leaves access open (insecure %v, read token %q): %q", cfg.Plugin.Insecure, cfg.Server.ReadToken, w)
	}

	var prom struct {
		ScrapeConfigs []struct {
			JobName       string `yaml:"job_name"`
			Authorization *struct {
				CredentialsFile string `yaml:"credentials_file"`
			} `yaml:"authorization"`
			HTTPSDConfigs []struct {
				URL           string `yaml:"url"`
				Authorization *struct {
					CredentialsFile string `yaml:"credentials_file"`
				} `yaml:"authorization"`
			} `yaml:"http_sd_configs"`
		} `yaml:"scrape_configs"`
	}
	raw, err = os.ReadFile("prometheus.yml")
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(raw, &prom); err != nil {
		t.Fatal(err)
	}
	reads := 0
	for _, sc := range prom.ScrapeConfigs {
		for _, sd := range sc.HTTPSDConfigs {
			reads++
			if sd.Authorization == nil || sd.Authorization.CredentialsFile == "" {
				t.Errorf("job %s reads %s without the read token", sc.JobName, sd.URL)
			}
		}
		if sc.JobName == "traefik-sd-sidecar" {
			reads++
			if sc.Authorization == nil || sc.Authorization.CredentialsFile == "" {
				t.Errorf("job %s scrapes the sidecars' /metrics without the read token", sc.JobName)
			}
		}
	}
	if reads != 2 {
		t.Errorf("prometheus.yml reads the sidecar %d times, want its HTTP SD URL and its /metrics", reads)
	}
}
