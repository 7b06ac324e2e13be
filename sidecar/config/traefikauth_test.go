package config_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestTraefikAuthOptions: the credentials and TLS sent to Traefik's API and
// /metrics come from flags, the environment or a file; the password and
// the token from …File options, re-read on SIGHUP; and what makes no sense
// is refused with the option's name.
func TestTraefikAuthOptions(t *testing.T) {
	dir := t.TempDir()
	write := fileWriter(t, dir)
	base := []string{"--worker.authority=w", "--traefik.metricsURL=https://127.0.0.1:8443/metrics", "--traefik.apiURL=http://127.0.0.1:8080"}

	cfg, err := load(t, append(base, "--traefik.auth.username=sd", "--traefik.auth.passwordFile="+write("pw", "pw-1\n"),
		"--traefik.tls.ca=/ca.pem", "--traefik.tls.cert=/c.pem", "--traefik.tls.key=/k.pem")...)
	if err != nil {
		t.Fatal(err)
	}
	if a := cfg.Traefik.Auth; a.Username != "sd" || a.Password != "pw-1" || cfg.Traefik.TLS == nil ||
		cfg.Traefik.TLS.CA != "/ca.pem" || cfg.Traefik.TLS.Cert != "/c.pem" || cfg.Traefik.TLS.Key != "/k.pem" {
		t.Fatalf("decoded: %+v %+v", cfg.Traefik.Auth, cfg.Traefik.TLS)
	}
	write("pw", "pw-2\n")
	if changed, err := cfg.ReadSecrets(); err != nil || strings.Join(changed, ",") != "--traefik.auth.password" || cfg.Traefik.Auth.Password != "pw-2" {
		t.Errorf("re-read: %v %v, password %q", changed, err, cfg.Traefik.Auth.Password)
	}

	t.Setenv("TRAEFIK_SD_TRAEFIK_AUTH_TOKENFILE", write("tok", "tok-1\n"))
	cfg, err = load(t, base...)
	if err != nil || cfg.Traefik.Auth.Token != "tok-1" {
		t.Fatalf("a token from the environment's file: %v, %q", err, cfg.Traefik.Auth.Token)
	}
	write("tok", "tok-2")
	if changed, err := cfg.ReadSecrets(); err != nil || strings.Join(changed, ",") != "--traefik.auth.token" || cfg.Traefik.Auth.Token != "tok-2" {
		t.Errorf("re-read: %v %v, token %q", changed, err, cfg.Traefik.Auth.Token)
	}
	os.Unsetenv("TRAEFIK_SD_TRAEFIK_AUTH_TOKENFILE")

	yml := write("traefik-sd.yml", "worker: {authority: w}\ntraefik:\n  metricsURL: http://127.0.0.1:8080/metrics\n  auth: {token: tok-file}\n")
	if cfg, err = load(t, "--configFile="+yml); err != nil || cfg.Traefik.Auth.Token != "tok-file" {
		t.Errorf("a token from the file: %v, %q", err, cfg.Traefik.Auth.Token)
	}

	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--traefik.auth.username=sd", "--traefik.auth.password=p", "--traefik.auth.token=t"}, "--traefik.auth.username (basic auth) and --traefik.auth.token (bearer): give one"},
		{[]string{"--traefik.auth.username=sd", "--traefik.auth.passwordFile=" + write("p2", "p"), "--traefik.auth.tokenFile=" + write("t2", "t")}, "give one"},
		{[]string{"--traefik.auth.password=p"}, "--traefik.auth.password (or passwordFile) needs --traefik.auth.username"},
		{[]string{"--traefik.auth.passwordFile=" + write("p3", "p")}, "needs --traefik.auth.username"},
		{[]string{"--traefik.auth.username=sd"}, "--traefik.auth.username needs --traefik.auth.password"},
		{[]string{"--traefik.auth.username=s:d", "--traefik.auth.password=p"}, "--traefik.auth.username: no colon"},
		{[]string{"--traefik.auth.token=a\tb"}, "--traefik.auth.token: no control characters"},
		{[]string{"--traefik.auth.token=t", "--traefik.auth.tokenFile=" + write("t3", "t")}, "--traefik.auth.token and --traefik.auth.tokenFile: give one"},
		{[]string{"--traefik.auth.tokenFile=" + write("t4", "\n")}, "--traefik.auth.tokenFile " + filepath.Join(dir, "t4") + ": empty"},
		{[]string{"--traefik.auth.passwordFile=" + filepath.Join(dir, "absent"), "--traefik.auth.username=sd"}, "--traefik.auth.passwordFile: open"},
		{[]string{"--traefik.tls.cert=/c.pem"}, "--traefik.tls.cert and --traefik.tls.key go together"},
	} {
		if _, err := load(t, append(base, c.args...)...); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: %v, want %q", c.args, err, c.want)
		}
	}
	// Credentials in a URL and in the options; TLS with no https URL;
	// either with no Traefik to send them to.
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--traefik.apiURL=http://sd:p@127.0.0.1:8080", "--traefik.auth.token=t"}, "--traefik.apiURL has credentials in it, and --traefik.auth.* is set: give one"},
		{[]string{"--traefik.metricsURL=http://127.0.0.1:8080/metrics", "--traefik.tls.ca=/ca.pem"}, "--traefik.tls.*: only used over https"},
		{[]string{"--traefik.auth.token=t"}, "set --traefik.apiURL or --traefik.metricsURL"},
		{[]string{"--traefik.tls.insecureSkipVerify"}, "set --traefik.apiURL or --traefik.metricsURL"},
	} {
		if _, err := load(t, append([]string{"--worker.authority=w"}, c.args...)...); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: %v, want %q", c.args, err, c.want)
		}
	}
}
