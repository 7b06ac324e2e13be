package config_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestANonLoopbackAddressNeedsAPushToken: a push says what Prometheus
// scrapes, so a sidecar others can reach refuses to start without a push
// token, unless --plugin.insecure says so; on loopback nothing is needed.
func TestANonLoopbackAddressNeedsAPushToken(t *testing.T) {
	tokenFile := filepath.Join(t.TempDir(), "push-token")
	if err := os.WriteFile(tokenFile, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	testCases := []struct {
		desc    string
		args    []string
		wantErr string // "" to start
	}{
		{"all interfaces, no token", []string{"--address=0.0.0.0:9180"}, "--plugin.token"},
		{"an empty host, no token", []string{"--address=:9180"}, "--plugin.token"},
		{"a pod address, no token", []string{"--address=10.1.2.3:9180"}, "--plugin.insecure"},
		{"IPv6 all interfaces, no token", []string{"--address=[::]:9180"}, "--plugin.tokenFile"},
		{"a host name, no token", []string{"--address=sd.example:9180"}, "--plugin.token"},
		{"loopback", []string{"--address=127.0.0.1:9180"}, ""},
		{"loopback elsewhere in 127/8", []string{"--address=127.0.0.2:9180"}, ""},
		{"IPv6 loopback", []string{"--address=[::1]:9180"}, ""},
		{"localhost", []string{"--address=localhost:9180"}, ""},
		{"the default address", nil, ""},
		{"all interfaces with a token", []string{"--address=0.0.0.0:9180", "--plugin.token=s3cret"}, ""},
		{"all interfaces with a token file", []string{"--address=0.0.0.0:9180", "--plugin.tokenFile=" + tokenFile}, ""},
		{"all interfaces, insecure on purpose", []string{"--address=0.0.0.0:9180", "--plugin.insecure"}, ""},
		{"no session allowed", []string{"--plugin.maxSessions=0"}, "--plugin.maxSessions"},
	}
	for _, test := range testCases {
		t.Run(test.desc, func(t *testing.T) {
			_, err := load(t, append([]string{"--worker.authority=w"}, test.args...)...)
			switch {
			case test.wantErr == "" && err != nil:
				t.Errorf("refused: %v", err)
			case test.wantErr != "" && (err == nil || !strings.Contains(err.Error(), test.wantErr)):
				t.Errorf("error %v, want one naming %s", err, test.wantErr)
			}
		})
	}
	cfg, err := load(t, "--worker.authority=w")
	if err != nil || cfg.Plugin.MaxSessions != 64 || cfg.Plugin.Insecure {
		t.Errorf("defaults: maxSessions %d, insecure %v (%v); want 64 and false", cfg.Plugin.MaxSessions, cfg.Plugin.Insecure, err)
	}
}

// TestOpenAccessIsWarnedAtStart: on a non-loopback address the sidecar
// warns about pushes accepted without a token and reads without
// credentials; on loopback, or with credentials, it says nothing.
func TestOpenAccessIsWarnedAtStart(t *testing.T) {
	testCases := []struct {
		desc string
		args []string
		want []string // a word of each warning, in order
	}{
		{"loopback, nothing set", nil, nil},
		{"open reads", []string{"--address=0.0.0.0:9180", "--plugin.token=p"}, []string{"--server.readTokenFile"}},
		{"open pushes and reads", []string{"--address=:9180", "--plugin.insecure"}, []string{"INSECURE", "--server.readTokenFile"}},
		{"a read token", []string{"--address=0.0.0.0:9180", "--plugin.token=p", "--server.readToken=r"}, nil},
		{"basic auth", []string{"--address=0.0.0.0:9180", "--plugin.token=p", "--server.readUser=u", "--server.readPassword=pw"}, nil},
		{"insecure with a token", []string{"--address=0.0.0.0:9180", "--plugin.token=p", "--plugin.insecure", "--server.readToken=r"}, nil},
		{"client certificates required", []string{"--address=0.0.0.0:9180", "--plugin.token=p",
			"--server.tlsCert=/c.pem", "--server.tlsKey=/k.pem", "--server.tlsClientCA=/ca.pem"}, nil},
	}
	for _, test := range testCases {
		t.Run(test.desc, func(t *testing.T) {
			cfg, err := load(t, append([]string{"--worker.authority=w"}, test.args...)...)
			if err != nil {
				t.Fatal(err)
			}
			got := cfg.AccessWarnings()
			ok := len(got) == len(test.want)
			for i := 0; ok && i < len(got); i++ {
				ok = strings.Contains(got[i], test.want[i])
			}
			if !ok {
				t.Errorf("warnings %q, want one for each of %q", got, test.want)
			}
		})
	}
}
