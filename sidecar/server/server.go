// Package server serves the sidecar's HTTP API with fasthttp: the published
// targets, the plugin's pushes, and the sidecar's own status.
package server

import (
	"bufio"
	"bytes"
	"context"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"github.com/traefik-sd/traefik-sd/sidecar/status"
	"io"
	"log/slog"
	"net"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/traefik-sd/traefik-sd/plugin"
	"github.com/traefik-sd/traefik-sd/sidecar/metrics"
	"github.com/traefik-sd/traefik-sd/sidecar/pluginsync"
	"github.com/traefik-sd/traefik-sd/sidecar/publish"
	"github.com/valyala/fasthttp"
	"github.com/valyala/fasthttp/fasthttpadaptor"
)

// Paths served.
const (
	TargetsPath = "/v1/targets"
	MetricsPath = "/metrics"
	HealthzPath = "/healthz"
	ReadyzPath  = "/readyz"
	// StatusPath is the status page, for a person.
	StatusPath = "/"
)

// Server holds what the handlers read.
type Server struct {
	Publisher *publish.Publisher
	Plugins   *pluginsync.Store
	Metrics   *metrics.Metrics
	Log       *slog.Logger
	// Credentials are checked on every request; SetCredentials replaces
	// them while serving (a rotated secret, on SIGHUP).
	credentials atomic.Pointer[Credentials]
	// Ready tells whether the first complete target set is published: etcd
	// listed, the plugin's full set and Traefik's routers in (or the start
	// grace over).
	Ready func() bool
	// MaxPushBytes bounds a push body.
	MaxPushBytes int
	// Status gives the state the status page shows; nil: no page.
	Status func(ctx context.Context) (*status.Snapshot, error)
	// MaxConnsPerIP bounds the connections one client address holds at
	// once, through Listener; 0: no bound.
	MaxConnsPerIP int

	metricsHandler fasthttp.RequestHandler
	// tlsConfig is what LoadTLS last read, taken by each new handshake.
	tlsConfig atomic.Pointer[tls.Config]
	// logs holds back repeated refusals (see warn).
	logs throttle
}

// Credentials are what requests must carry. PushToken, when set, must come
// as "Authorization: Bearer <token>" on pushes. ReadToken, when set, must
// come as a bearer token on every other path but /healthz; ReadUser and
// ReadPassword likewise as basic auth.
type Credentials struct {
	PushToken, ReadToken, ReadUser, ReadPassword string
}

// SetCredentials replaces the credentials, for every request from now on.
func (s *Server) SetCredentials(c Credentials) { s.credentials.Store(&c) }

func (s *Server) creds() Credentials {
	if c := s.credentials.Load(); c != nil {
		return *c
	}
	return Credentials{}
}

var (
	contentJSON  = []byte("application/json")
	gzipEncoding = []byte("gzip")
)

// Handler returns the request router.
func (s *Server) Handler() fasthttp.RequestHandler {
	s.metricsHandler = fasthttpadaptor.NewFastHTTPHandler(promhttp.HandlerFor(s.Metrics.Registry, promhttp.HandlerOpts{}))
	return func(ctx *fasthttp.RequestCtx) {
		path := string(ctx.Path())
		switch path {
		case TargetsPath:
			if s.authorizedReader(ctx) {
				s.targets(ctx)
			}
		case plugin.SyncPath:
			s.push(ctx)
		case MetricsPath:
			if s.authorizedReader(ctx) {
				s.metricsHandler(ctx)
			}
		case HealthzPath:
			ctx.SetBodyString("ok\n")
		case ReadyzPath:
			if s.authorizedReader(ctx) {
				s.readyz(ctx)
			}
		case StatusPath:
			if s.authorizedReader(ctx) {
				s.statusPage(ctx)
			}
		default:
			path = "other"
			ctx.Error("not found", fasthttp.StatusNotFound)
		}
		// Set last: ctx.Error resets the headers set before it.
		ctx.Response.Header.Set("X-Content-Type-Options", "nosniff")
		s.Metrics.Requests.WithLabelValues(path, strconv.Itoa(ctx.Response.StatusCode())).Inc()
	}
}

// smallBodyBytes bounds the body of every request but an authorized push:
// no other path takes one.
const smallBodyBytes = 4096

// bodyLimit decides how much body a request may bring once its headers
// are in, before a byte of the body is read: --server.maxPushBytes (+1, so
// that one byte over reaches the handler and is counted with the pushes)
// for a POST to the push path carrying the push token, smallBodyBytes for
// any other. A request over its limit is refused without its body being
// read (RequestError).
func (s *Server) bodyLimit(h *fasthttp.RequestHeader) fasthttp.RequestConfig {
	if h.IsPost() && s.pushAuthorized(h.Peek("Authorization")) && isSyncPath(h.RequestURI()) {
		return fasthttp.RequestConfig{MaxRequestBodySize: max(s.MaxPushBytes+1, smallBodyBytes)}
	}
	return fasthttp.RequestConfig{MaxRequestBodySize: smallBodyBytes}
}

// isSyncPath tells whether a request URI's path is the push path, read as
// the router reads it (fasthttp's normalized path).
func isSyncPath(requestURI []byte) bool {
	u := fasthttp.AcquireURI()
	defer fasthttp.ReleaseURI(u)
	return u.Parse(nil, requestURI) == nil && string(u.Path()) == plugin.SyncPath
}

// pushAuthorized tells whether an Authorization header carries the push
// token (constant-time), or no push token is set.
func (s *Server) pushAuthorized(auth []byte) bool {
	token := s.creds().PushToken
	return token == "" || bearerMatches(auth, token)
}

// HTTPServer is the fasthttp server the sidecar runs: limits a request
// meets before any handler (its read time, its body as bodyLimit decides
// from its headers, the connections at once) answered and counted by
// RequestError.
func (s *Server) HTTPServer(readTimeout, writeTimeout time.Duration, maxConns int) *fasthttp.Server {
	return &fasthttp.Server{
		Handler:            s.Handler(),
		Name:               "traefik-sd",
		ReadTimeout:        readTimeout,
		WriteTimeout:       writeTimeout,
		IdleTimeout:        time.Minute,
		MaxRequestBodySize: smallBodyBytes,
		HeaderReceived:     s.bodyLimit,
		// No path takes a form: none is spooled to disk or memory.
		DisablePreParseMultipartForm: true,
		Concurrency:                  maxConns,
		NoDefaultDate:                true,
		Logger:                       s.Logger(),
		ErrorHandler:                 s.RequestError,
	}
}

// LoadTLS reads the server's certificate and key and, with clientCAFile,
// the CAs a client certificate must chain to (then required); each
// handshake from then on uses them (TLSConfig). Called at start and on
// SIGHUP; on an error the configuration in use stays.
func (s *Server) LoadTLS(certFile, keyFile, clientCAFile string) error {
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return fmt.Errorf("--server.tlsCert/--server.tlsKey: %w", err)
	}
	c := &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert}}
	if clientCAFile != "" {
		pem, err := os.ReadFile(clientCAFile)
		if err != nil {
			return fmt.Errorf("--server.tlsClientCA: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return fmt.Errorf("--server.tlsClientCA %s: no PEM certificate in it", clientCAFile)
		}
		c.ClientCAs, c.ClientAuth = pool, tls.RequireAndVerifyClientCert
	}
	s.tlsConfig.Store(c)
	return nil
}

// TLSConfig is the configuration to serve HTTPS with: each handshake takes
// the certificate (and client CAs) the last LoadTLS read, so that a
// rotated certificate is served from the next connection on.
func (s *Server) TLSConfig() *tls.Config {
	return &tls.Config{MinVersion: tls.VersionTLS12, GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
		if c := s.tlsConfig.Load(); c != nil {
			return c, nil
		}
		return nil, errors.New("no certificate loaded")
	}}
}

// statusPage renders the state for a person; GET only.
func (s *Server) statusPage(ctx *fasthttp.RequestCtx) {
	if !ctx.IsGet() && !ctx.IsHead() {
		methodNotAllowed(ctx, "GET, HEAD")
		return
	}
	if s.Status == nil {
		ctx.Error("no status page", fasthttp.StatusNotFound)
		return
	}
	c, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	snap, err := s.Status(c)
	if err != nil {
		ctx.Error("status: "+err.Error(), fasthttp.StatusServiceUnavailable)
		return
	}
	ctx.SetContentType("text/html; charset=utf-8")
	ctx.Response.Header.Set("Cache-Control", "no-store")
	// The page has no script, no image and no outside asset: only its own
	// <style>. Nothing may frame it.
	ctx.Response.Header.Set("Content-Security-Policy", statusPageCSP)
	ctx.Response.Header.Set("X-Frame-Options", "DENY")
	if err := status.Render(ctx, snap); err != nil {
		s.Log.Warn("rendering the status page failed", "error", err)
	}
}

// statusPageCSP allows the status page its inline <style> and nothing else.
const statusPageCSP = "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'"

// methodNotAllowed answers 405 with the methods the path takes (RFC 9110 §15.5.6).
func methodNotAllowed(ctx *fasthttp.RequestCtx, allow string) {
	ctx.Error("method not allowed; allowed: "+allow, fasthttp.StatusMethodNotAllowed)
	ctx.Response.Header.Set("Allow", allow)
}

func (s *Server) targets(ctx *fasthttp.RequestCtx) {
	if !ctx.IsGet() && !ctx.IsHead() {
		methodNotAllowed(ctx, "GET, HEAD")
		return
	}
	// Prometheus keeps its last good list on any error: better that than a
	// partial set before etcd was read.
	if !s.Ready() {
		ctx.Error("target set not ready: waiting for etcd's listing, the plugin's full set and Traefik's router list", fasthttp.StatusServiceUnavailable)
		return
	}
	r := s.Publisher.Current()
	ctx.Response.Header.Set("ETag", r.ETag)
	ctx.Response.Header.SetContentTypeBytes(contentJSON)
	if inm := ctx.Request.Header.Peek("If-None-Match"); len(inm) > 0 && bytes.Contains(inm, []byte(r.ETag)) {
		ctx.SetStatusCode(fasthttp.StatusNotModified)
		return
	}
	if ctx.Request.Header.HasAcceptEncodingBytes(gzipEncoding) {
		ctx.Response.Header.SetContentEncodingBytes(gzipEncoding)
		ctx.Response.SetBodyRaw(r.Gzipped())
		return
	}
	if ctx.IsHead() {
		// The length, without making the body: a client that polls for a
		// new ETag must not make the sidecar build 10 MB each time.
		ctx.Response.SkipBody = true
		ctx.Response.Header.SetContentLength(r.Size())
		return
	}
	if body := r.Kept(); body != nil {
		ctx.Response.SetBodyRaw(body)
		return
	}
	// Too large to keep: rendered for this request as it is sent, with its
	// length known before.
	ctx.Response.SetBodyStream(fasthttp.NewStreamReader(func(w *bufio.Writer) {
		_ = r.WriteBody(w) // a client gone mid-body ends it; nothing to report
	}), r.Size())
}

func (s *Server) push(ctx *fasthttp.RequestCtx) {
	if !ctx.IsPost() {
		methodNotAllowed(ctx, "POST")
		return
	}
	if !s.pushAuthorized(ctx.Request.Header.Peek("Authorization")) {
		s.refuseUnauthorizedPush(ctx)
		return
	}
	body := ctx.PostBody()
	if s.MaxPushBytes > 0 && len(body) > s.MaxPushBytes {
		s.Metrics.Pushes.WithLabelValues("too_large").Inc()
		ctx.Error("push body larger than "+strconv.Itoa(s.MaxPushBytes)+" bytes", fasthttp.StatusRequestEntityTooLarge)
		return
	}
	p, err := pluginsync.Decode(body)
	if err != nil {
		s.Metrics.Pushes.WithLabelValues("malformed").Inc()
		s.warn("plugin push refused", "remote", ctx.RemoteAddr().String(), "error", err)
		ctx.Error(err.Error(), fasthttp.StatusBadRequest)
		return
	}
	if err := s.Plugins.Apply(p, time.Now()); err != nil {
		switch {
		case errors.Is(err, pluginsync.ErrNeedFull):
			s.Metrics.Pushes.WithLabelValues("need_full").Inc()
			ctx.Error(err.Error(), fasthttp.StatusConflict)
			return
		case errors.Is(err, pluginsync.ErrNodeHeld):
			// Not 409, which tells the plugin to send its full set: this
			// was one. The plugin retries with a backoff and logs the reason.
			s.Metrics.Pushes.WithLabelValues("node_held").Inc()
			ctx.Error(err.Error(), fasthttp.StatusForbidden)
			return
		case errors.Is(err, pluginsync.ErrTooManySessions):
			s.Metrics.Pushes.WithLabelValues("too_many_sessions").Inc()
			ctx.Error(err.Error(), fasthttp.StatusServiceUnavailable)
			return
		}
		s.Metrics.Pushes.WithLabelValues("error").Inc()
		ctx.Error(err.Error(), fasthttp.StatusInternalServerError)
		return
	}
	kind := "delta"
	if p.Full {
		kind = "full"
	}
	s.Metrics.Pushes.WithLabelValues(kind).Inc()
	ctx.SetStatusCode(fasthttp.StatusNoContent)
}

func (s *Server) readyz(ctx *fasthttp.RequestCtx) {
	if !s.Ready() {
		ctx.Error("not ready: waiting for etcd's listing, the plugin's full set and Traefik's router list\n", fasthttp.StatusServiceUnavailable)
		return
	}
	ctx.SetBodyString("ready\n")
}

// authorizedReader enforces the read credentials, when configured.
func (s *Server) authorizedReader(ctx *fasthttp.RequestCtx) bool {
	c := s.creds()
	if c.ReadToken == "" && c.ReadUser == "" {
		return true
	}
	auth := ctx.Request.Header.Peek("Authorization")
	if c.ReadToken != "" && bearerMatches(auth, c.ReadToken) {
		return true
	}
	if c.ReadUser != "" {
		if user, pass, ok := basicAuth(auth); ok &&
			subtle.ConstantTimeCompare(user, []byte(c.ReadUser))&subtle.ConstantTimeCompare(pass, []byte(c.ReadPassword)) == 1 {
			return true
		}
	}
	ctx.Error("unauthorized", fasthttp.StatusUnauthorized)
	if c.ReadUser != "" {
		// After ctx.Error, which resets the headers.
		ctx.Response.Header.Set("WWW-Authenticate", `Basic realm="traefik-sd"`)
	}
	return false
}

// refuseUnauthorizedPush answers a push without the push token 401; it is
// counted, and logged at most once a second (warn).
func (s *Server) refuseUnauthorizedPush(ctx *fasthttp.RequestCtx) {
	s.Metrics.Pushes.WithLabelValues("unauthorized").Inc()
	s.warn("plugin push refused: wrong or missing token", "remote", ctx.RemoteAddr().String())
	ctx.Error("wrong or missing bearer token", fasthttp.StatusUnauthorized)
}

func bearerMatches(header []byte, token string) bool {
	const prefix = "Bearer "
	if len(header) < len(prefix) || !bytes.EqualFold(header[:len(prefix)], []byte(prefix)) {
		return false
	}
	return subtle.ConstantTimeCompare(header[len(prefix):], []byte(token)) == 1
}

func basicAuth(header []byte) (user, pass []byte, ok bool) {
	const prefix = "Basic "
	if len(header) < len(prefix) || !bytes.EqualFold(header[:len(prefix)], []byte(prefix)) {
		return nil, nil, false
	}
	raw, err := base64.StdEncoding.DecodeString(string(header[len(prefix):]))
	if err != nil {
		return nil, nil, false
	}
	user, pass, ok = bytes.Cut(raw, []byte(":"))
	return user, pass, ok
}

// RequestError answers and counts a request fasthttp refused before any
// handler ran: a failed TLS handshake, too slow, too large or malformed.
func (s *Server) RequestError(ctx *fasthttp.RequestCtx, err error) {
	var netErr net.Error
	switch {
	case tlsHandshakeFailed(ctx):
		// Nothing can be answered without TLS; fasthttp logs the failure
		// through Logger, at most once a second.
		s.Metrics.RequestErrors.WithLabelValues("tls_handshake").Inc()
		return
	case errors.As(err, &netErr) && netErr.Timeout():
		s.Metrics.RequestErrors.WithLabelValues("timeout").Inc()
		ctx.Error("request timeout", fasthttp.StatusRequestTimeout)
	case errors.Is(err, fasthttp.ErrBodyTooLarge):
		// fasthttp refuses a body over bodyLimit's limit once the headers
		// are in, without reading it; a push refused so is still a push,
		// counted with the others: without the push token it is
		// unauthorized, whatever its size.
		if ctx.IsPost() && string(ctx.Path()) == plugin.SyncPath {
			if !s.pushAuthorized(ctx.Request.Header.Peek("Authorization")) {
				s.refuseUnauthorizedPush(ctx)
				break
			}
			s.Metrics.Pushes.WithLabelValues("too_large").Inc()
			s.warn("plugin push refused: body over --server.maxPushBytes", "limit", s.MaxPushBytes, "remote", ctx.RemoteAddr().String())
		}
		s.Metrics.RequestErrors.WithLabelValues("too_large").Inc()
		ctx.Error("request body too large", fasthttp.StatusRequestEntityTooLarge)
	default:
		s.Metrics.RequestErrors.WithLabelValues("malformed").Inc()
		ctx.Error("malformed request", fasthttp.StatusBadRequest)
	}
	ctx.Response.Header.Set("X-Content-Type-Options", "nosniff")
}

// tlsHandshakeFailed tells whether the request's connection is TLS whose
// handshake did not complete.
func tlsHandshakeFailed(ctx *fasthttp.RequestCtx) bool {
	st := ctx.TLSConnectionState()
	return st != nil && !st.HandshakeComplete
}

// Logger adapts fasthttp's own messages to the sidecar's log: each kind
// (its format) at most once a second, as warn does.
func (s *Server) Logger() fasthttp.Logger { return slogPrinter{s} }

type slogPrinter struct{ s *Server }

func (p slogPrinter) Printf(format string, args ...interface{}) {
	if n, ok := p.s.logs.take(format, time.Now()); ok {
		p.s.Log.Warn(fmt.Sprintf(format, args...), suppressed(n)...)
	}
}

// warn logs a refusal at WARN, at most once a second for each msg: a
// client can send thousands a second, each counted in a metric. The line
// let through says how many of its kind were held back since the last.
func (s *Server) warn(msg string, args ...any) {
	if n, ok := s.logs.take(msg, time.Now()); ok {
		s.Log.Warn(msg, append(args, suppressed(n)...)...)
	}
}

func suppressed(n int) []any {
	if n == 0 {
		return nil
	}
	return []any{"suppressed", n}
}

// logEvery is the least time between two lines of one kind.
const logEvery = time.Second

// throttle decides which log lines go through: per kind, one per
// logEvery, counting those held back. Its zero value is ready.
type throttle struct {
	mu    sync.Mutex
	kinds map[string]*held
}

type held struct {
	last time.Time
	n    int
}

// take tells whether a line of kind goes through now and, if so, how many
// were held back before it.
func (t *throttle) take(kind string, now time.Time) (int, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.kinds == nil {
		t.kinds = map[string]*held{}
	}
	h := t.kinds[kind]
	if h == nil {
		h = &held{}
		t.kinds[kind] = h
	}
	if !h.last.IsZero() && now.Sub(h.last) < logEvery {
		h.n++
		return 0, false
	}
	n := h.n
	h.last, h.n = now, 0
	return n, true
}

// Listener wraps ln so that no client address holds more than
// MaxConnsPerIP connections at once (0: no bound). One more is closed at
// once, before fasthttp or TLS sees it, counted in
// traefik_sd_http_rejected_connections_per_ip_total and logged (warn);
// answered 429 first when plain (HTTP: under TLS nothing can be said
// before a handshake). Addresses that are not TCP are not bounded.
func (s *Server) Listener(ln net.Listener, plain bool) net.Listener {
	if s.MaxConnsPerIP <= 0 {
		return ln
	}
	return &perIPListener{Listener: ln, s: s, plain: plain, open: map[string]int{}}
}

type perIPListener struct {
	net.Listener
	s     *Server
	plain bool
	mu    sync.Mutex
	open  map[string]int
}

// tooManyFromIP is the whole answer to a connection past the bound.
const tooManyFromIP = "HTTP/1.1 429 Too Many Requests\r\nConnection: close\r\nContent-Type: text/plain; charset=utf-8\r\n" +
	"X-Content-Type-Options: nosniff\r\nContent-Length: 54\r\n\r\ntoo many connections from your address at once, retry\n"

func (l *perIPListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		addr, ok := c.RemoteAddr().(*net.TCPAddr)
		if !ok {
			return c, nil
		}
		ip := addr.IP.String()
		l.mu.Lock()
		if l.open[ip] >= l.s.MaxConnsPerIP {
			l.mu.Unlock()
			l.s.Metrics.RejectedPerIP.Inc()
			l.s.warn("connection refused: its address holds --server.maxConnsPerIP connections", "remote", ip, "limit", l.s.MaxConnsPerIP)
			if l.plain {
				_ = c.SetWriteDeadline(time.Now().Add(100 * time.Millisecond))
				_, _ = io.WriteString(c, tooManyFromIP)
			}
			_ = c.Close()
			continue
		}
		l.open[ip]++
		l.mu.Unlock()
		return &perIPConn{Conn: c, release: func() {
			l.mu.Lock()
			defer l.mu.Unlock()
			if l.open[ip]--; l.open[ip] <= 0 {
				delete(l.open, ip)
			}
		}}, nil
	}
}

// perIPConn gives its address's slot back when closed, once.
type perIPConn struct {
	net.Conn
	release func()
	once    sync.Once
}

func (c *perIPConn) Close() error {
	c.once.Do(c.release)
	return c.Conn.Close()
}
