package server_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/valyala/fasthttp"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/traefik-sd/traefik-sd/internal/testbed"
	"github.com/traefik-sd/traefik-sd/plugin"
	"github.com/traefik-sd/traefik-sd/sidecar/metrics"
	"github.com/traefik-sd/traefik-sd/sidecar/pluginsync"
	"github.com/traefik-sd/traefik-sd/sidecar/publish"
	"github.com/traefik-sd/traefik-sd/sidecar/server"
	"github.com/traefik-sd/traefik-sd/sidecar/targets"
	"github.com/valyala/fasthttp/fasthttputil"
	"go.uber.org/goleak"
)

// fasthttp keeps a process-wide date updater, and a stopped server's worker
// pool cleaner finishes its sleep before it sees the stop: the library's,
// not ours.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.updateServerDate.func1"),
		goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.(*workerPool).Start.func2"),
	)
}

type harness struct {
	srv    *server.Server
	ready  atomic.Bool
	client *http.Client
	stop   func()
	// ln is the in-memory listener, for raw connections.
	ln       *fasthttputil.InmemoryListener
	maxConns int
	http     *fasthttp.Server
}

func newHarness(t *testing.T, configure func(*server.Server)) *harness {
	return newHarnessConns(t, 1024, configure)
}

// newHarnessConns serves at most maxConns connections at once.
func newHarnessConns(t *testing.T, maxConns int, configure func(*server.Server)) *harness {
	h := &harness{maxConns: maxConns}
	pub := publish.New()
	pub.Publish(targets.AppendJSON(nil, []targets.Target{{Address: "10.0.1.21:8000", Labels: []targets.Label{{Name: "circuit_id", Value: "c1"}, {Name: "service_group", Value: "appproxy-circuit-route"}}}}), nil)
	h.srv = &server.Server{
		Publisher: pub, Plugins: pluginsync.NewStore(), Metrics: metrics.New(),
		Log: slog.New(slog.NewTextHandler(io.Discard, nil)), Ready: h.ready.Load, MaxPushBytes: 4096,
	}
	h.ready.Store(true)
	if configure != nil {
		configure(h.srv)
	}
	ln := fasthttputil.NewInmemoryListener()
	h.ln = ln
	fs := h.srv.HTTPServer(5*time.Second, 5*time.Second, h.maxConns)
	h.http = fs
	done := make(chan struct{})
	go func() { _ = fs.Serve(ln); close(done) }()
	h.client = &http.Client{Transport: &http.Transport{
		DialContext:        func(context.Context, string, string) (net.Conn, error) { return ln.Dial() },
		DisableCompression: true,
	}}
	h.stop = func() {
		h.client.CloseIdleConnections()
		_ = fs.Shutdown()
		_ = ln.Close()
		<-done
	}
	t.Cleanup(h.stop)
	return h
}

func (h *harness) do(t *testing.T, method, path string, body []byte, header map[string]string) (*http.Response, []byte) {
	t.Helper()
	req, _ := http.NewRequest(method, "http://sidecar"+path, bytes.NewReader(body))
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := h.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, b
}

func TestTargetsAreHTTPSDWithETagAndGzip(t *testing.T) {
	h := newHarness(t, nil)
	resp, body := h.do(t, http.MethodGet, "/v1/targets", nil, nil)
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("%s %q", resp.Status, resp.Header.Get("Content-Type"))
	}
	var groups []map[string]json.RawMessage
	if err := json.Unmarshal(body, &groups); err != nil || len(groups) != 1 || len(groups[0]) != 2 {
		t.Fatalf("not strict HTTP SD JSON: %s (%v)", body, err)
	}
	etag := resp.Header.Get("ETag")
	resp, _ = h.do(t, http.MethodGet, "/v1/targets", nil, map[string]string{"If-None-Match": etag})
	if resp.StatusCode != http.StatusNotModified {
		t.Errorf("If-None-Match with the current ETag: %s", resp.Status)
	}
	resp, gz := h.do(t, http.MethodGet, "/v1/targets", nil, map[string]string{"Accept-Encoding": "gzip"})
	if resp.Header.Get("Content-Encoding") != "gzip" {
		t.Fatalf("no gzip: %v", resp.Header)
	}
	zr, err := gzip.NewReader(bytes.NewReader(gz))
	if err != nil {
		t.Fatal(err)
	}
	plain, _ := io.ReadAll(zr)
	if !bytes.Equal(plain, body) {
		t.Errorf("gzip body differs:\n%s\n%s", plain, body)
	}
	// HEAD answers the length and ETag a GET would, with no body.
	resp, headBody := h.do(t, http.MethodHead, "/v1/targets", nil, nil)
	if resp.StatusCode != 200 || resp.ContentLength != int64(len(body)) || len(headBody) != 0 || resp.Header.Get("ETag") != etag {
		t.Errorf("HEAD: %s, length %d (GET's %d), %d body bytes, ETag %q (GET's %q)", resp.Status, resp.ContentLength, len(body), len(headBody), resp.Header.Get("ETag"), etag)
	}
}

func TestTargetsNotServedBeforeReady(t *testing.T) {
	h := newHarness(t, nil)
	h.ready.Store(false)
	if resp, _ := h.do(t, http.MethodGet, "/v1/targets", nil, nil); resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("before the first listing: %s", resp.Status)
	}
	if resp, _ := h.do(t, http.MethodGet, "/readyz", nil, nil); resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("readyz: %s", resp.Status)
	}
	if resp, _ := h.do(t, http.MethodGet, "/healthz", nil, nil); resp.StatusCode != 200 {
		t.Errorf("healthz: %s", resp.Status)
	}
}

func validPush(seq uint64, full bool) []byte {
	b, _ := json.Marshal(plugin.Push{Node: "n", Boot: "b", Seq: seq, Full: full, ResyncSeconds: 30, HeartbeatSeconds: 2,
		Middlewares: []plugin.LiveMiddleware{{Name: "bai_sd_c1@etcd", Instances: 1, Since: time.Unix(0, 0).UTC(), Config: plugin.Config{CircuitID: "c1", MetricsPath: "/metrics"}}}})
	return b
}

func TestPushAnswers(t *testing.T) {
	logs := &testbed.LogBuffer{}
	h := newHarness(t, func(s *server.Server) {
		s.SetCredentials(server.Credentials{PushToken: "s3cret"})
		s.Log = slog.New(slog.NewTextHandler(logs, nil))
	})
	auth := map[string]string{"Authorization": "Bearer s3cret"}
	testCases := []struct {
		desc   string
		body   []byte
		header map[string]string
		want   int
		inBody string
	}{
		{desc: "no token", body: validPush(1, true), want: 401},
		{desc: "wrong token", body: validPush(1, true), header: map[string]string{"Authorization": "Bearer s3cres"}, want: 401},
		{desc: "garbage", body: []byte("{{{"), header: auth, want: 400, inBody: "push body"},
		{desc: "one byte over the limit, which reaches the handler", body: bytes.Repeat([]byte(" "), 4097), header: auth, want: 413},
		{desc: "a delta before any full", body: validPush(1, false), header: auth, want: 409},
		{desc: "full", body: validPush(1, true), header: auth, want: 204},
		{desc: "the next delta", body: validPush(2, false), header: auth, want: 204},
	}
	for _, test := range testCases {
		resp, body := h.do(t, http.MethodPost, plugin.SyncPath, test.body, test.header)
		if resp.StatusCode != test.want || !strings.Contains(string(body), test.inBody) {
			t.Errorf("%s: got %s %q, want %d with %q", test.desc, resp.Status, body, test.want, test.inBody)
		}
	}
	updates := h.srv.Plugins.Drain()
	if h.srv.Plugins.Nodes() != 1 || len(updates) != 2 || !updates[0].Full || updates[0].Live[0].Name != "bai_sd_c1@etcd" {
		t.Errorf("updates after pushes: %+v", updates)
	}
	_, metricsBody := h.do(t, http.MethodGet, "/metrics", nil, nil)
	for _, want := range []string{`traefik_sd_plugin_pushes_total{result="unauthorized"} 2`, `traefik_sd_plugin_pushes_total{result="malformed"} 1`,
		`traefik_sd_plugin_pushes_total{result="need_full"} 1`, `traefik_sd_plugin_pushes_total{result="too_large"} 1`} {
		if !strings.Contains(string(metricsBody), want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	// A wrong token is logged with who sent it, at most once a second
	// (TestRefusalsAreLoggedAtMostOnceASecond): both came within one.
	if n := strings.Count(logs.String(), `msg="plugin push refused: wrong or missing token" remote=`); n != 1 {
		t.Errorf("%d unauthorized log lines, want 1:\n%s", n, logs.String())
	}
}

func TestReadCredentials(t *testing.T) {
	h := newHarness(t, func(s *server.Server) {
		s.SetCredentials(server.Credentials{ReadToken: "reader", ReadUser: "prom", ReadPassword: "pw"})
	})
	basic := "Basic " + base64.StdEncoding.EncodeToString([]byte("prom:pw"))
	for _, c := range []struct {
		auth string
		want int
	}{{"", 401}, {"Bearer nope", 401}, {"Bearer reader", 200}, {basic, 200}, {"Basic " + base64.StdEncoding.EncodeToString([]byte("prom:no")), 401}} {
		resp, _ := h.do(t, http.MethodGet, "/v1/targets", nil, map[string]string{"Authorization": c.auth})
		if resp.StatusCode != c.want {
			t.Errorf("Authorization %q: %s, want %d", c.auth, resp.Status, c.want)
		}
	}
	if resp, _ := h.do(t, http.MethodGet, "/healthz", nil, nil); resp.StatusCode != 200 {
		t.Errorf("healthz needs no credentials: %s", resp.Status)
	}
}

// TestWrongMethodSaysWhichAreAllowed: a 405 carries Allow.
func TestWrongMethodSaysWhichAreAllowed(t *testing.T) {
	h := newHarness(t, nil)
	for path, allow := range map[string]string{"/v1/targets": "GET, HEAD", "/v1/plugin/sync": "POST"} {
		method := http.MethodPost
		if allow == "POST" {
			method = http.MethodGet
		}
		resp, _ := h.do(t, method, path, nil, nil)
		if resp.StatusCode != http.StatusMethodNotAllowed || resp.Header.Get("Allow") != allow {
			t.Errorf("%s %s: %d, Allow %q; want 405 and %q", method, path, resp.StatusCode, resp.Header.Get("Allow"), allow)
		}
	}
}

// TestCredentialsChangeWhileServing: a secret re-read on SIGHUP applies to
// the next request.
func TestCredentialsChangeWhileServing(t *testing.T) {
	var srv *server.Server
	h := newHarness(t, func(s *server.Server) {
		srv = s
		s.SetCredentials(server.Credentials{ReadToken: "old"})
	})
	if resp, _ := h.do(t, http.MethodGet, "/v1/targets", nil, map[string]string{"Authorization": "Bearer old"}); resp.StatusCode != 200 {
		t.Fatalf("old token: %d", resp.StatusCode)
	}
	srv.SetCredentials(server.Credentials{ReadToken: "new"})
	for token, want := range map[string]int{"old": 401, "new": 200} {
		if resp, _ := h.do(t, http.MethodGet, "/v1/targets", nil, map[string]string{"Authorization": "Bearer " + token}); resp.StatusCode != want {
			t.Errorf("token %s after the change: %d, want %d", token, resp.StatusCode, want)
		}
	}
}

// TestRequestsRefusedBeforeAnyHandler: fasthttp refuses a body over
// --server.maxPushBytes (+1), a request it cannot parse, and connections
// past --server.maxConns before any handler runs; each is answered and
// counted, an oversized push among the pushes too, as the README says.
func TestRequestsRefusedBeforeAnyHandler(t *testing.T) {
	h := newHarness(t, nil)
	for _, size := range []int{5000, 100000} {
		// Headers alone, on a connection of their own: the answer comes as
		// soon as they are in and the connection closes unread, so a client
		// still writing the body may see the close before the answer (an
		// HTTP client did, now and then).
		conn, err := h.ln.Dial()
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(conn, "POST /v1/plugin/sync HTTP/1.1\r\nHost: sidecar\r\nAuthorization: Bearer x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n", size)
		answer, _ := io.ReadAll(io.LimitReader(conn, 512))
		conn.Close()
		if !bytes.HasPrefix(answer, []byte("HTTP/1.1 413")) {
			t.Errorf("a %d-byte push over a 4096-byte limit: %q, want 413", size, answer)
		}
	}
	if v := testutil.ToFloat64(h.srv.Metrics.Pushes.WithLabelValues("too_large")); v != 2 {
		t.Errorf("plugin_pushes_total{result=too_large} = %v, want 2", v)
	}
	if v := testutil.ToFloat64(h.srv.Metrics.RequestErrors.WithLabelValues("too_large")); v != 2 {
		t.Errorf("http_request_errors_total{kind=too_large} = %v, want 2", v)
	}

	conn, err := h.ln.Dial()
	if err != nil {
		t.Fatal(err)
	}
	_, _ = conn.Write([]byte("NOT HTTP AT ALL\r\n\r\n"))
	answer, _ := io.ReadAll(io.LimitReader(conn, 512))
	conn.Close()
	if !bytes.HasPrefix(answer, []byte("HTTP/1.1 400")) {
		t.Errorf("a malformed request: %q, want 400", answer)
	}
	if v := testutil.ToFloat64(h.srv.Metrics.RequestErrors.WithLabelValues("malformed")); v != 1 {
		t.Errorf("http_request_errors_total{kind=malformed} = %v, want 1", v)
	}
}

// TestConnectionsOverTheLimitAre503: with --server.maxConns=1, a second
// connection while one is open is answered 503 and counted.
func TestConnectionsOverTheLimitAre503(t *testing.T) {
	h := newHarnessConns(t, 1, nil)
	held, err := h.ln.Dial()
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	_, _ = held.Write([]byte("GET /v1/targets HTTP/1.1\r\nHost: x\r\n")) // headers not finished: the slot stays taken
	time.Sleep(100 * time.Millisecond)
	second, err := h.ln.Dial()
	if err != nil {
		t.Fatal(err)
	}
	defer second.Close()
	_, _ = second.Write([]byte("GET /v1/targets HTTP/1.1\r\nHost: x\r\n\r\n"))
	answer, _ := io.ReadAll(io.LimitReader(second, 512))
	if !bytes.HasPrefix(answer, []byte("HTTP/1.1 503")) {
		t.Errorf("a connection over the limit: %q, want 503", answer)
	}
	if n := h.http.GetRejectedConnectionsCount(); n != 1 {
		t.Errorf("rejected connections counted: %d, want 1 (traefik_sd_http_rejected_connections_total)", n)
	}
}

// A body larger than the publisher keeps is rendered as it is sent: the
// same bytes, with their length known up front (not chunked), and a HEAD
// and a gzip request answer as for a kept one.
func TestALargeBodyIsSentAsItIsRendered(t *testing.T) {
	var ts []targets.Target
	for i := 0; i < 5000; i++ {
		ts = append(ts, targets.Target{Address: fmt.Sprintf("10.0.%d.%d:8000", i/250, i%250),
			Labels: []targets.Label{{Name: "circuit_id", Value: fmt.Sprintf("c%d", i)}, {Name: "service_group", Value: "appproxy-circuit-route"}}})
	}
	want := targets.AppendJSON(nil, ts)
	h := newHarness(t, func(s *server.Server) {
		s.Publisher.KeepUpTo = 4096
		s.Publisher.Publish(want, nil)
	})
	if h.srv.Publisher.Current().Kept() != nil {
		t.Fatalf("a %d-byte body is kept with KeepUpTo 4096", len(want))
	}
	for i := 0; i < 2; i++ {
		resp, body := h.do(t, http.MethodGet, "/v1/targets", nil, nil)
		if resp.StatusCode != 200 || !bytes.Equal(body, want) {
			t.Fatalf("%s: %d bytes, want the %d published", resp.Status, len(body), len(want))
		}
		if resp.ContentLength != int64(len(want)) || len(resp.TransferEncoding) != 0 {
			t.Errorf("length %d, transfer encoding %v: want Content-Length %d", resp.ContentLength, resp.TransferEncoding, len(want))
		}
	}
	resp, headBody := h.do(t, http.MethodHead, "/v1/targets", nil, nil)
	if resp.StatusCode != 200 || resp.ContentLength != int64(len(want)) || len(headBody) != 0 {
		t.Errorf("HEAD: %s, length %d, %d body bytes", resp.Status, resp.ContentLength, len(headBody))
	}
	resp, gz := h.do(t, http.MethodGet, "/v1/targets", nil, map[string]string{"Accept-Encoding": "gzip"})
	zr, err := gzip.NewReader(bytes.NewReader(gz))
	if err != nil {
		t.Fatalf("gzip: %s %v", resp.Status, err)
	}
	if plain, _ := io.ReadAll(zr); !bytes.Equal(plain, want) {
		t.Errorf("the gzip form holds %d bytes, want the %d published", len(plain), len(want))
	}
}
