package server_test

import (
	"context"
	"crypto/tls"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/traefik-sd/traefik-sd/internal/testbed"
	"github.com/traefik-sd/traefik-sd/plugin"
	"github.com/traefik-sd/traefik-sd/sidecar/metrics"
	"github.com/traefik-sd/traefik-sd/sidecar/pluginsync"
	"github.com/traefik-sd/traefik-sd/sidecar/publish"
	"github.com/traefik-sd/traefik-sd/sidecar/server"
	"github.com/traefik-sd/traefik-sd/sidecar/status"
)

// exchange writes a raw request on a new connection and reads the answer
// until the server closes it, or 3 s pass; it says how long that took.
func exchange(t *testing.T, dial func() (net.Conn, error), request string) (string, time.Duration) {
	t.Helper()
	c, err := dial()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	start := time.Now()
	_ = c.SetDeadline(start.Add(3 * time.Second))
	if _, err := io.WriteString(c, request); err != nil {
		t.Fatal(err)
	}
	answer, _ := io.ReadAll(c)
	return string(answer), time.Since(start)
}

// TestBodyLimitsAreDecidedFromTheHeaders: a request announcing a body the
// push limit would allow is refused as soon as its headers are in, before
// a byte of its body is sent, unless it is a POST to the push path with
// the push token: without the token 401, on any other path 413, the
// connection closed after the answer. The authorized push alone has its
// body read.
func TestBodyLimitsAreDecidedFromTheHeaders(t *testing.T) {
	const limit = 1 << 20
	h := newHarness(t, func(s *server.Server) {
		s.MaxPushBytes = limit
		s.SetCredentials(server.Credentials{PushToken: "s3cret"})
	})
	dial := func() (net.Conn, error) { return h.ln.Dial() }
	announce := "Content-Length: " + strconv.Itoa(limit) + "\r\n\r\n" // and no body sent
	for _, c := range []struct{ desc, request, want string }{
		{"a push without the token", "POST /v1/plugin/sync HTTP/1.1\r\nHost: x\r\n" + announce, "HTTP/1.1 401"},
		{"a push with a wrong token", "POST /v1/plugin/sync HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer s3cres\r\n" + announce, "HTTP/1.1 401"},
		{"/healthz", "GET /healthz HTTP/1.1\r\nHost: x\r\n" + announce, "HTTP/1.1 413"},
		{"/v1/targets", "POST /v1/targets HTTP/1.1\r\nHost: x\r\n" + announce, "HTTP/1.1 413"},
		{"the push path with the token but not POST", "PUT /v1/plugin/sync HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer s3cret\r\n" + announce, "HTTP/1.1 413"},
	} {
		answer, took := exchange(t, dial, c.request)
		// The harness's read timeout is 5 s: a server waiting for the body
		// would answer 408 then, or not within the 3 s read here.
		if !strings.HasPrefix(answer, c.want) || took > time.Second || !strings.Contains(answer, "Connection: close") {
			t.Errorf("%s, announcing %d body bytes and sending none: %q after %v; want %s at once, then the connection closed",
				c.desc, limit, answer, took.Round(time.Millisecond), c.want)
		}
	}
	if v := testutil.ToFloat64(h.srv.Metrics.Pushes.WithLabelValues("unauthorized")); v != 2 {
		t.Errorf("plugin_pushes_total{result=unauthorized} = %v, want 2", v)
	}
	if v := testutil.ToFloat64(h.srv.Metrics.RequestErrors.WithLabelValues("too_large")); v != 3 {
		t.Errorf("http_request_errors_total{kind=too_large} = %v, want 3", v)
	}
	// With the token, a body far over the small limit is read and reaches
	// the push handler (which finds it is no push), also with a query.
	for _, path := range []string{"/v1/plugin/sync", "/v1/plugin/sync?via=query"} {
		resp, body := h.do(t, http.MethodPost, path, []byte(strings.Repeat(" ", 100000)), map[string]string{"Authorization": "Bearer s3cret"})
		if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(body), "push body") {
			t.Errorf("an authorized 100,000-byte push to %s: %s %q; want 400 from the push handler", path, resp.Status, body)
		}
	}
}

// newServer is a server as the harness makes it, for a listener of the test's own.
func newServer(configure func(*server.Server)) *server.Server {
	s := &server.Server{
		Publisher: publish.New(), Plugins: pluginsync.NewStore(), Metrics: metrics.New(),
		Log: slog.New(slog.NewTextHandler(io.Discard, nil)), Ready: func() bool { return true }, MaxPushBytes: 4096,
	}
	s.Publisher.Publish([]byte("[]"), nil)
	if configure != nil {
		configure(s)
	}
	return s
}

// serveLoopback serves s on a loopback port as the daemon does: through
// s.Listener, and TLS with s.TLSConfig when tlsOn. It returns the address.
func serveLoopback(t *testing.T, s *server.Server, tlsOn bool) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := s.Listener(ln, !tlsOn)
	if tlsOn {
		served = tls.NewListener(served, s.TLSConfig())
	}
	fs := s.HTTPServer(5*time.Second, 5*time.Second, 64)
	done := make(chan struct{})
	go func() { _ = fs.Serve(served); close(done) }()
	t.Cleanup(func() { _ = fs.Shutdown(); <-done })
	return ln.Addr().String()
}

// TestConnectionsPerIPAreBounded: with --server.maxConnsPerIP=2 and two
// connections open from 127.0.0.1, a third is answered 429 at once,
// counted and logged; once one of the two closes, a new one is served.
func TestConnectionsPerIPAreBounded(t *testing.T) {
	logs := &testbed.LogBuffer{}
	s := newServer(func(s *server.Server) {
		s.MaxConnsPerIP = 2
		s.Log = slog.New(slog.NewTextHandler(logs, nil))
	})
	addr := serveLoopback(t, s, false)
	dial := func() (net.Conn, error) { return net.Dial("tcp", addr) }
	var held []net.Conn
	for range 2 {
		c, err := dial()
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_, _ = io.WriteString(c, "GET /healthz HTTP/1.1\r\nHost: x\r\n") // headers not finished: the connection stays
		held = append(held, c)
	}
	answer, took := exchange(t, dial, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
	if !strings.HasPrefix(answer, "HTTP/1.1 429") || !strings.Contains(answer, "X-Content-Type-Options: nosniff") || took > time.Second {
		t.Errorf("a third connection from the address: %q after %v; want 429 at once", answer, took)
	}
	if v := testutil.ToFloat64(s.Metrics.RejectedPerIP); v != 1 {
		t.Errorf("traefik_sd_http_rejected_connections_per_ip_total = %v, want 1", v)
	}
	if !strings.Contains(logs.String(), `msg="connection refused: its address holds --server.maxConnsPerIP connections" remote=127.0.0.1 limit=2`) {
		t.Errorf("the refusal is not logged:\n%s", logs.String())
	}
	held[0].Close()
	testbed.Eventually(t, 5*time.Second, "a connection served once one of the two closed", func() (bool, string) {
		answer, _ := exchange(t, dial, "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
		return strings.HasPrefix(answer, "HTTP/1.1 200"), answer
	})
}

// TestRefusalsAreLoggedAtMostOnceASecond: refused pushes and failed TLS
// handshakes are each counted, and logged at most once a second per kind;
// the next line says how many were held back.
func TestRefusalsAreLoggedAtMostOnceASecond(t *testing.T) {
	logs := &testbed.LogBuffer{}
	h := newHarness(t, func(s *server.Server) {
		s.SetCredentials(server.Credentials{PushToken: "s3cret"})
		s.Log = slog.New(slog.NewTextHandler(logs, nil))
	})
	const burst = 20
	const refused = `msg="plugin push refused: wrong or missing token"`
	for range burst {
		h.do(t, http.MethodPost, plugin.SyncPath, validPush(1, true), nil)
	}
	if n := strings.Count(logs.String(), refused); n != 1 {
		t.Errorf("%d pushes refused within a second logged %d lines, want 1:\n%s", burst, n, logs.String())
	}
	time.Sleep(1100 * time.Millisecond)
	h.do(t, http.MethodPost, plugin.SyncPath, validPush(1, true), nil)
	if n := strings.Count(logs.String(), refused); n != 2 || !strings.Contains(logs.String(), "suppressed="+strconv.Itoa(burst-1)) {
		t.Errorf("a second later: %d lines, want 2, the second with suppressed=%d:\n%s", n, burst-1, logs.String())
	}
	if v := testutil.ToFloat64(h.srv.Metrics.Pushes.WithLabelValues("unauthorized")); v != burst+1 {
		t.Errorf("plugin_pushes_total{result=unauthorized} = %v, want %d: every refusal counted", v, burst+1)
	}

	// Plain HTTP to the HTTPS port: a failed handshake each.
	tlsLogs := &testbed.LogBuffer{}
	certs := testbed.GenerateCerts(t, t.TempDir())
	s := newServer(func(s *server.Server) { s.Log = slog.New(slog.NewTextHandler(tlsLogs, nil)) })
	if err := s.LoadTLS(certs.ServerCert, certs.ServerKey, ""); err != nil {
		t.Fatal(err)
	}
	addr := serveLoopback(t, s, true)
	dial := func() (net.Conn, error) { return net.Dial("tcp", addr) }
	const failed = "does not look like a TLS handshake"
	for range burst {
		exchange(t, dial, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
	}
	handshakes := func() float64 { return testutil.ToFloat64(s.Metrics.RequestErrors.WithLabelValues("tls_handshake")) }
	testbed.Eventually(t, 5*time.Second, "every failed handshake counted", func() (bool, string) {
		return handshakes() == burst, strconv.FormatFloat(handshakes(), 'f', -1, 64)
	})
	if n := strings.Count(tlsLogs.String(), failed); n != 1 {
		t.Errorf("%d failed handshakes within a second logged %d lines, want 1:\n%s", burst, n, tlsLogs.String())
	}
	time.Sleep(1100 * time.Millisecond)
	exchange(t, dial, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
	testbed.Eventually(t, 5*time.Second, "the next failure logged with what was held back", func() (bool, string) {
		return strings.Count(tlsLogs.String(), failed) == 2 && strings.Contains(tlsLogs.String(), "suppressed="+strconv.Itoa(burst-1)), tlsLogs.String()
	})
}

// TestEveryAnswerSaysNosniff: every answer, the handlers' and those given
// before any handler runs, carries X-Content-Type-Options: nosniff; the
// status page also a Content-Security-Policy that allows its inline style
// alone, and no framing.
func TestEveryAnswerSaysNosniff(t *testing.T) {
	h := newHarness(t, func(s *server.Server) {
		s.SetCredentials(server.Credentials{PushToken: "s3cret", ReadToken: "r", ReadUser: "u", ReadPassword: "p"})
		s.Status = func(context.Context) (*status.Snapshot, error) { return &status.Snapshot{At: time.Now()}, nil }
	})
	read := map[string]string{"Authorization": "Bearer r"}
	for _, c := range []struct {
		method, path string
		header       map[string]string
		want         int
	}{
		{http.MethodGet, "/", read, 200},
		{http.MethodGet, "/v1/targets", read, 200},
		{http.MethodHead, "/v1/targets", read, 200},
		{http.MethodGet, "/metrics", read, 200},
		{http.MethodGet, "/readyz", read, 200},
		{http.MethodGet, "/healthz", nil, 200},
		{http.MethodGet, "/v1/targets", nil, 401},
		{http.MethodGet, "/nowhere", nil, 404},
		{http.MethodGet, "/v1/plugin/sync", nil, 405},
		{http.MethodPost, "/v1/plugin/sync", nil, 401},
	} {
		resp, _ := h.do(t, c.method, c.path, nil, c.header)
		if resp.StatusCode != c.want || resp.Header.Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("%s %s: %d, X-Content-Type-Options %q; want %d and nosniff", c.method, c.path, resp.StatusCode, resp.Header.Get("X-Content-Type-Options"), c.want)
		}
		if c.want == 401 && c.path == "/v1/targets" && resp.Header.Get("WWW-Authenticate") == "" {
			t.Errorf("%s %s: 401 without WWW-Authenticate, with basic auth configured", c.method, c.path)
		}
		csp, frame := resp.Header.Get("Content-Security-Policy"), resp.Header.Get("X-Frame-Options")
		if c.path == "/" && (csp != "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'" || frame != "DENY") {
			t.Errorf("the status page: Content-Security-Policy %q, X-Frame-Options %q", csp, frame)
		}
	}
	dial := func() (net.Conn, error) { return h.ln.Dial() }
	for _, request := range []string{"GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n", "NOT HTTP AT ALL\r\n\r\n"} {
		if answer, _ := exchange(t, dial, request); !strings.Contains(answer, "\r\nX-Content-Type-Options: nosniff\r\n") {
			t.Errorf("refused before any handler, %q: %q lacks nosniff", request, answer)
		}
	}
}
