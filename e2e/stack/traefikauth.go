package stack

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/traefik-sd/traefik-sd/internal/testbed"
	"golang.org/x/crypto/bcrypt"
)

// The basic-auth user Traefik's API and /metrics take with
// Options.TraefikAuth.
const (
	TraefikUser     = "traefik-sd"
	TraefikPassword = "traefik-api-secret"
)

// TraefikAuth is how a stack with Options.TraefikAuth guards Traefik: the
// test CA, Traefik's server certificate and the sidecar's client
// certificate, and the file holding TraefikPassword.
type TraefikAuth struct {
	Certs        testbed.Certs
	PasswordFile string
	// MetricsPort is the HTTPS entry point serving /metrics.
	MetricsPort int
}

// SidecarArgs are the sidecar's options to read such a Traefik: its API on
// api (plain HTTP behind basicAuth), its /metrics over TLS with a client
// certificate; the credentials go to both.
func (a *TraefikAuth) SidecarArgs(api string) []string {
	return []string{
		"--traefik.apiURL=" + api,
		"--traefik.auth.username=" + TraefikUser,
		"--traefik.auth.passwordFile=" + a.PasswordFile,
		"--traefik.tls.ca=" + a.Certs.CA,
		"--traefik.tls.cert=" + a.Certs.ClientCert,
		"--traefik.tls.key=" + a.Certs.ClientKey,
	}
}

// TraefikAuthDynamic is the file provider's configuration that guards
// Traefik (filled in with fmt): the API through a router on the traefik
// entry point with basicAuth; /metrics (prometheus@internal, routed by
// hand) on the metrics entry point over TLS with the same basicAuth; the
// default TLS options ask every client for a certificate the test CA
// signed (a router without a Host rule gets the default options).
const TraefikAuthDynamic = `http:
  routers:
    traefik-api:
      entryPoints: [traefik]
      rule: PathPrefix(` + "`/api`" + `)
      service: api@internal
      middlewares: [traefik-auth]
    traefik-metrics:
      entryPoints: [metrics]
      rule: PathPrefix(` + "`/metrics`" + `)
      service: prometheus@internal
      middlewares: [traefik-auth]
      tls: {}
  middlewares:
    traefik-auth:
      basicAuth:
        users:
          - "%s"
tls:
  stores:
    default:
      defaultCertificate:
        certFile: %q
        keyFile: %q
  options:
    default:
      clientAuth:
        caFiles: [%q]
        clientAuthType: RequireAndVerifyClientCert
`

// guardTraefik writes the certificates, the password file and the file
// provider's configuration, and returns static changed to use them: the
// API no longer insecure, /metrics on an entry point of its own with
// manualRouting, and the file provider beside etcd.
func (s *Stack) guardTraefik(t testbed.T, dir, static string) string {
	t.Helper()
	certDir := filepath.Join(dir, "certs")
	testbed.Must(t, os.MkdirAll(certDir, 0o755), "certs dir")
	a := &TraefikAuth{Certs: testbed.GenerateCerts(t, certDir), MetricsPort: testbed.FreePort(t),
		PasswordFile: filepath.Join(dir, "traefik-password")}
	testbed.Must(t, os.WriteFile(a.PasswordFile, []byte(TraefikPassword+"\n"), 0o600), "password file")
	// bcrypt, as htpasswd -B writes it; the lowest cost keeps Traefik's
	// check of every request cheap.
	hash, err := bcrypt.GenerateFromPassword([]byte(TraefikPassword), bcrypt.MinCost)
	testbed.Must(t, err, "bcrypt")
	dynamic := filepath.Join(dir, "dynamic.yml")
	testbed.Must(t, os.WriteFile(dynamic, []byte(fmt.Sprintf(TraefikAuthDynamic, TraefikUser+":"+string(hash),
		a.Certs.ServerCert, a.Certs.ServerKey, a.Certs.CA)), 0o644), "dynamic.yml")

	for old, repl := range map[string]string{
		"api:\n  insecure: true\n":  "api:\n  insecure: false\n",
		"    entryPoint: traefik\n": "    entryPoint: metrics\n    manualRouting: true\n",
		"entryPoints:\n":            "entryPoints:\n  metrics:\n    address: \"127.0.0.1:" + strconv.Itoa(a.MetricsPort) + "\"\n",
		"providers:\n":              "providers:\n  file:\n    filename: " + strconv.Quote(dynamic) + "\n",
	} {
		if !strings.Contains(static, old) {
			t.Fatalf("Traefik's static configuration has no %q to change", old)
		}
		static = strings.Replace(static, old, repl, 1)
	}
	s.TraefikAuth = a
	s.TraefikMetricsURL = "https://127.0.0.1:" + strconv.Itoa(a.MetricsPort) + "/metrics"
	return static
}
