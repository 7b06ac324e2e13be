package daemon_test

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/traefik-sd/traefik-sd/internal/coordinator"
	"github.com/traefik-sd/traefik-sd/internal/testbed"
	"github.com/traefik-sd/traefik-sd/sidecar/config"
	"github.com/traefik-sd/traefik-sd/sidecar/daemon"
	"github.com/traefik/paerser/types"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

func tlsConfig(t *testing.T, certs testbed.Certs, withClientCert bool) *tls.Config {
	pem, err := os.ReadFile(certs.CA)
	testbed.Must(t, err, "CA")
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	c := &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	if withClientCert {
		cert, err := tls.LoadX509KeyPair(certs.ClientCert, certs.ClientKey)
		testbed.Must(t, err, "client certificate")
		c.Certificates = []tls.Certificate{cert}
	}
	return c
}

func sidecarConfig(t *testing.T, endpoint, authority string) *config.Configuration {
	cfg := config.Default()
	cfg.Address = "127.0.0.1:0"
	cfg.Etcd.Endpoints = []string{endpoint}
	cfg.Etcd.DialTimeout = types.Duration(2 * time.Second)
	cfg.Etcd.RequestTimeout = types.Duration(2 * time.Second)
	cfg.Worker.Authority, cfg.Worker.Node = authority, "node-a"
	return cfg
}

// unpluggedInteractive is a circuit written by a coordinator without the
// traefik-sd setting (these tests' writers have none), for the tests of
// access to etcd and to the sidecar: with --routes.all it is
// published once Traefik's API reports its router, with no plugin push (an
// in-process plugin cannot trust the test CA of an HTTPS sidecar).
func unpluggedInteractive() coordinator.Circuit { return interactive() }

// runBesideTraefik runs the sidecar with --routes.all and a Traefik
// stand-in that reads etcd through client; it returns the sidecar's address.
func runBesideTraefik(t *testing.T, client *clientv3.Client, cfg *config.Configuration) string {
	f := startFakeTraefik(t, client, cfg.Worker.Authority)
	cfg.Traefik.MetricsURL = f.URL + "/metrics"
	cfg.Routes.All = true
	testbed.Must(t, cfg.Complete(), "config")
	addr := runDaemon(t, cfg)
	f.attach("http://" + addr)
	return addr
}

func get(t *testing.T, client *http.Client, url, auth string) (int, string) {
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestTLSEverywhere: etcd requires client certificates, the sidecar serves
// HTTPS and wants a bearer token to read.
func TestTLSEverywhere(t *testing.T) {
	dir := t.TempDir()
	certs := testbed.GenerateCerts(t, dir)
	etcd := testbed.StartEtcdTLS(t, dir, certs)
	ctx := testbed.Context(t, time.Minute)

	client, err := clientv3.New(clientv3.Config{Endpoints: []string{etcd.Endpoint}, TLS: tlsConfig(t, certs, true), DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	testbed.Must(t, err, "etcd client")
	defer client.Close()
	coord := &coordinator.Writer{Client: client, Authority: "worker-tls"}
	testbed.Must(t, coord.Put(ctx, unpluggedInteractive()), "write over TLS")

	cfg := sidecarConfig(t, etcd.Endpoint, "worker-tls")
	cfg.Etcd.TLS = &config.TLS{CA: certs.CA, Cert: certs.ClientCert, Key: certs.ClientKey}
	cfg.Server.TLSCert, cfg.Server.TLSKey = certs.ServerCert, certs.ServerKey
	cfg.Server.ReadToken = "reader"
	base := "https://" + runBesideTraefik(t, client, cfg)

	https := &http.Client{Transport: &http.Transport{TLSClientConfig: tlsConfig(t, certs, false)}, Timeout: 5 * time.Second}
	testbed.Eventually(t, 20*time.Second, "targets over HTTPS from an etcd reached with a client certificate", func() (bool, string) {
		code, body := get(t, https, base+"/v1/targets", "Bearer reader")
		return code == 200 && strings.Contains(body, interactive().ID), body
	})
	if code, _ := get(t, https, base+"/v1/targets", ""); code != http.StatusUnauthorized {
		t.Errorf("without the token: %d", code)
	}
	if code, body := get(t, &http.Client{Timeout: 2 * time.Second}, strings.Replace(base, "https", "http", 1)+"/v1/targets", "Bearer reader"); code == 200 {
		t.Errorf("plain HTTP was answered: %s", body)
	}
}

func TestEtcdRefusesASidecarWithoutClientCertificate(t *testing.T) {
	dir := t.TempDir()
	certs := testbed.GenerateCerts(t, dir)
	etcd := testbed.StartEtcdTLS(t, dir, certs)
	cfg := sidecarConfig(t, etcd.Endpoint, "worker-tls")
	cfg.Etcd.TLS = &config.TLS{CA: certs.CA}
	testbed.Must(t, cfg.Complete(), "config")
	base := "http://" + runDaemon(t, cfg)
	// Never ready, over several of the etcd client's dial attempts: a
	// negative, so it is watched for a while rather than waited on.
	for deadline := time.Now().Add(3 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if code, body := get(t, http.DefaultClient, base+"/readyz", ""); code != http.StatusServiceUnavailable {
			t.Fatalf("ready without being able to read etcd: %d %s", code, body)
		}
	}
}

func TestEtcdUserAndPassword(t *testing.T) {
	e := startEnv(t, "worker-auth")
	ctx := testbed.Context(t, time.Minute)
	// Turn on etcd's authentication: a root user, and one for the sidecar
	// that may only read the root key.
	for _, step := range []func() error{
		func() error { _, err := e.client.UserAdd(ctx, "root", "rootpw"); return err },
		func() error { _, err := e.client.UserGrantRole(ctx, "root", "root"); return err },
		func() error { _, err := e.client.RoleAdd(ctx, "sd-reader"); return err },
		func() error {
			_, err := e.client.RoleGrantPermission(ctx, "sd-reader", "traefik/worker_worker-auth/", clientv3.GetPrefixRangeEnd("traefik/worker_worker-auth/"), clientv3.PermissionType(clientv3.PermRead))
			return err
		},
		func() error { _, err := e.client.UserAdd(ctx, "traefik-sd", "s3cret"); return err },
		func() error { _, err := e.client.UserGrantRole(ctx, "traefik-sd", "sd-reader"); return err },
		func() error { _, err := e.client.AuthEnable(ctx); return err },
	} {
		testbed.Must(t, step(), "enabling etcd auth")
	}
	root, err := clientv3.New(clientv3.Config{Endpoints: []string{e.etcd.Endpoint}, Username: "root", Password: "rootpw", DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	testbed.Must(t, err, "root client")
	defer root.Close()
	testbed.Must(t, (&coordinator.Writer{Client: root, Authority: "worker-auth"}).Put(ctx, unpluggedInteractive()), "write as root")

	good := sidecarConfig(t, e.etcd.Endpoint, "worker-auth")
	good.Etcd.Username, good.Etcd.Password = "traefik-sd", "s3cret"
	base := "http://" + runBesideTraefik(t, root, good)
	testbed.Eventually(t, 20*time.Second, "targets read with user and password", func() (bool, string) {
		code, body := get(t, http.DefaultClient, base+"/v1/targets", "")
		return code == 200 && strings.Contains(body, interactive().ID), body
	})

	// A wrong password is refused at start, with the reason.
	bad := sidecarConfig(t, e.etcd.Endpoint, "worker-auth")
	bad.Etcd.Username, bad.Etcd.Password = "traefik-sd", "wrong"
	testbed.Must(t, bad.Complete(), "config")
	errc := make(chan error, 1)
	go func() {
		errc <- daemon.New(bad, slog.New(slog.NewTextHandler(io.Discard, nil))).Run(ctx, nil)
	}()
	select {
	case err := <-errc:
		if err == nil || !strings.Contains(err.Error(), "authentication failed") {
			t.Errorf("a wrong password: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Error("a sidecar with a wrong etcd password kept running")
	}
}

// TestEtcdRoleWithoutTheCoordinatorsSecrets: the coordinator writes its
// jwt_secret and permit_hash_secret under the root key the sidecar reads.
// An etcd role can leave them out: it grants the routers, the services, the
// traefik-sd middlewares and tcp/, no more. etcd refuses that user the
// secrets and the root key as a whole; the sidecar with --etcd.ranges reads
// what it needs and publishes the circuit with its identity.
func TestEtcdRoleWithoutTheCoordinatorsSecrets(t *testing.T) {
	e := startEnv(t, "worker-role")
	ctx := testbed.Context(t, time.Minute)
	const root = "traefik/worker_worker-role/"
	ranges := []string{"http/routers/", "http/services/", "http/middlewares/bai_sd_", "tcp/"}
	steps := []func() error{
		func() error { _, err := e.client.UserAdd(ctx, "root", "rootpw"); return err },
		func() error { _, err := e.client.UserGrantRole(ctx, "root", "root"); return err },
		func() error { _, err := e.client.RoleAdd(ctx, "traefik-sd"); return err },
	}
	for _, r := range ranges {
		steps = append(steps, func() error {
			_, err := e.client.RoleGrantPermission(ctx, "traefik-sd", root+r, clientv3.GetPrefixRangeEnd(root+r), clientv3.PermissionType(clientv3.PermRead))
			return err
		})
	}
	steps = append(steps,
		func() error { _, err := e.client.UserAdd(ctx, "traefik-sd", "s3cret"); return err },
		func() error { _, err := e.client.UserGrantRole(ctx, "traefik-sd", "traefik-sd"); return err },
		func() error { _, err := e.client.AuthEnable(ctx); return err })
	for _, step := range steps {
		testbed.Must(t, step(), "the role")
	}
	admin, err := clientv3.New(clientv3.Config{Endpoints: []string{e.etcd.Endpoint}, Username: "root", Password: "rootpw", DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	testbed.Must(t, err, "root client")
	defer admin.Close()
	c := interactive()
	patched := &coordinator.Writer{Client: admin, Authority: "worker-role", SD: &coordinator.TraefikSD{}}
	testbed.Must(t, patched.Put(ctx, c), "write as root")

	user, err := clientv3.New(clientv3.Config{Endpoints: []string{e.etcd.Endpoint}, Username: "traefik-sd", Password: "s3cret", DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	testbed.Must(t, err, "the sidecar's user")
	defer user.Close()
	secret := root + "http/middlewares/bai_appproxy_plugin_" + c.ID + "/plugin/appproxy-traefik-plugin/jwt_secret"
	for _, key := range []string{secret, root} {
		if _, err := user.Get(ctx, key, clientv3.WithPrefix()); err == nil || !strings.Contains(err.Error(), "permission denied") {
			t.Fatalf("the role reads %s: %v", key, err)
		}
	}

	cfg := sidecarConfig(t, e.etcd.Endpoint, "worker-role")
	cfg.Etcd.Username, cfg.Etcd.Password, cfg.Etcd.Ranges = "traefik-sd", "s3cret", ranges
	base := "http://" + runBesideTraefik(t, admin, cfg)
	testbed.Eventually(t, 20*time.Second, "the circuit published from the granted ranges", func() (bool, string) {
		code, body := get(t, http.DefaultClient, base+"/v1/targets", "")
		return code == 200 && strings.Contains(body, `"circuit_id":"`+c.ID+`"`) && strings.Contains(body, `"session_id":"sess-i"`) &&
			strings.Contains(body, "10.0.1.10:9100"), body
	})

	// The control: the same user reading the root key whole never gets
	// ready (watched for a while: a negative).
	whole := sidecarConfig(t, e.etcd.Endpoint, "worker-role")
	whole.Etcd.Username, whole.Etcd.Password = "traefik-sd", "s3cret"
	other := "http://" + runBesideTraefik(t, admin, whole)
	for deadline := time.Now().Add(3 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if code, body := get(t, http.DefaultClient, other+"/readyz", ""); code != http.StatusServiceUnavailable {
			t.Fatalf("ready reading the whole root key under the role: %d %s", code, body)
		}
	}
}

// TestSlowClientIsCutOff: a client that trickles its request is dropped at
// the read timeout, and others are served meanwhile.
func TestSlowClientIsCutOff(t *testing.T) {
	e := startEnvWith(t, "worker-slow", func(cfg *config.Configuration) { cfg.Server.ReadTimeout = types.Duration(time.Second) })
	conn, err := net.Dial("tcp", strings.TrimPrefix(e.base, "http://"))
	testbed.Must(t, err, "dial")
	defer conn.Close()
	_, _ = conn.Write([]byte("GET /v1/targets HTTP/1.1\r\nHost: x\r\n"))
	start := time.Now()
	for i := 0; i < 30; i++ {
		if code, _ := get(t, http.DefaultClient, e.base+"/healthz", ""); code != 200 {
			t.Fatalf("another client was not served while one trickled: %d", code)
		}
		if _, err := conn.Write([]byte("X-Slow: 1\r\n")); err != nil {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 512)
	n, _ := conn.Read(buf)
	if waited := time.Since(start); waited > 5*time.Second {
		t.Errorf("the trickling client was kept for %v past a 1s read timeout", waited)
	}
	if !strings.HasPrefix(string(buf[:n]), "HTTP/1.1 408") {
		t.Errorf("the trickling client got %q, want 408 Request Timeout", buf[:n])
	}
	testbed.Eventually(t, 5*time.Second, "the cut-off counted", func() (bool, string) {
		m := e.sidecarMetric(t, `traefik_sd_http_request_errors_total{kind="timeout"}`)
		return m == "1", m
	})
}

// TestConnectionsOverTheLimitAreCountedInMetrics: with --server.maxConns=1
// and one connection open, the next ones are refused with 503, and the
// sidecar's own /metrics, read on that one connection, counts them in
// traefik_sd_http_rejected_connections_total and itself in
// traefik_sd_http_open_connections. Plugin-only and with no plugin pushing,
// nothing else connects to it.
func TestConnectionsOverTheLimitAreCountedInMetrics(t *testing.T) {
	traefik := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, req *http.Request) {
		if req.URL.Path == "/api/http/routers" {
			_, _ = io.WriteString(rw, "[]")
		}
	}))
	t.Cleanup(traefik.Close)
	cfg := config.Default()
	cfg.Address = "127.0.0.1:0"
	cfg.Etcd.Endpoints = nil
	cfg.Worker.Authority, cfg.Worker.Node = "worker-conns", "node-c"
	cfg.Traefik.MetricsURL = traefik.URL + "/metrics"
	cfg.Server.MaxConns = 1
	testbed.Must(t, cfg.Complete(), "config")
	addr := runDaemon(t, cfg)

	held, err := net.Dial("tcp", addr)
	testbed.Must(t, err, "dial")
	defer held.Close()
	// Headers not finished: the slot stays taken until the test ends them.
	_, _ = held.Write([]byte("GET /metrics HTTP/1.1\r\nHost: x\r\n"))
	// Until the held connection takes the slot, another may be served.
	const want = 2
	refused, served := 0, 0
	for deadline := time.Now().Add(10 * time.Second); refused < want; {
		if time.Now().After(deadline) {
			t.Fatalf("%d connections refused within 10s (%d served), want %d", refused, served, want)
		}
		c, err := net.Dial("tcp", addr)
		testbed.Must(t, err, "dial")
		_, _ = c.Write([]byte("GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"))
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		answer, _ := io.ReadAll(c)
		c.Close()
		switch {
		case strings.HasPrefix(string(answer), "HTTP/1.1 503"):
			refused++
		case strings.HasPrefix(string(answer), "HTTP/1.1 200"):
			served++
			time.Sleep(20 * time.Millisecond)
		default:
			t.Fatalf("a connection over the limit got %q, want 503", answer)
		}
	}
	// The held request finished: the metrics it gets count what was refused.
	_, _ = held.Write([]byte("Connection: close\r\n\r\n"))
	_ = held.SetReadDeadline(time.Now().Add(5 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(held), nil)
	testbed.Must(t, err, "the held request's answer")
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	rejected, open := "", ""
	for _, line := range strings.Split(string(body), "\n") {
		if v, ok := strings.CutPrefix(line, "traefik_sd_http_rejected_connections_total "); ok {
			rejected = v
		}
		if v, ok := strings.CutPrefix(line, "traefik_sd_http_open_connections "); ok {
			open = v
		}
	}
	if resp.StatusCode != http.StatusOK || rejected != strconv.Itoa(want) || open != "1" {
		t.Errorf("/metrics: %s; traefik_sd_http_rejected_connections_total %q, want %d (the refused connections); traefik_sd_http_open_connections %q, want 1 (this one)",
			resp.Status, rejected, want, open)
	}
}
