// Package server serves the sidecar's HTTP API with fasthttp: the published
// targets, the plugin's pushes, and the sidecar's own status.
package server

import (
	"bytes"
	"context"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"github.com/traefik-sd/traefik-sd/sidecar/status"
	"log/slog"
	"net"
	"strconv"
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

	metricsHandler fasthttp.RequestHandler
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
		s.Metrics.Requests.WithLabelValues(path, strconv.Itoa(ctx.Response.StatusCode())).Inc()
	}
}

// HTTPServer is the fasthttp server the sidecar runs: limits a request
// meets before any handler (its read time, a body one byte over
// MaxPushBytes, the connections at once) answered and counted by
// RequestError.
func (s *Server) HTTPServer(readTimeout, writeTimeout time.Duration, maxConns int) *fasthttp.Server {
	return &fasthttp.Server{
		Handler:            s.Handler(),
		Name:               "traefik-sd",
		ReadTimeout:        readTimeout,
		WriteTimeout:       writeTimeout,
		IdleTimeout:        time.Minute,
		MaxRequestBodySize: s.MaxPushBytes + 1,
		Concurrency:        maxConns,
		NoDefaultDate:      true,
		Logger:             s.Logger(),
		ErrorHandler:       s.RequestError,
	}
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
	if err := status.Render(ctx, snap); err != nil {
		s.Log.Warn("rendering the status page failed", "error", err)
	}
}

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
	ctx.Response.SetBodyRaw(r.Body())
}

func (s *Server) push(ctx *fasthttp.RequestCtx) {
	if !ctx.IsPost() {
		methodNotAllowed(ctx, "POST")
		return
	}
	if token := s.creds().PushToken; token != "" && !bearerMatches(ctx.Request.Header.Peek("Authorization"), token) {
		s.Metrics.Pushes.WithLabelValues("unauthorized").Inc()
		s.Log.Warn("plugin push refused: wrong or missing token", "remote", ctx.RemoteAddr().String())
		ctx.Error("wrong or missing bearer token", fasthttp.StatusUnauthorized)
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
		s.Log.Warn("plugin push refused", "remote", ctx.RemoteAddr().String(), "error", err)
		ctx.Error(err.Error(), fasthttp.StatusBadRequest)
		return
	}
	if err := s.Plugins.Apply(p, time.Now()); err != nil {
		if errors.Is(err, pluginsync.ErrNeedFull) {
			s.Metrics.Pushes.WithLabelValues("need_full").Inc()
			ctx.Error(err.Error(), fasthttp.StatusConflict)
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
		ctx.Response.Header.Set("WWW-Authenticate", `Basic realm="traefik-sd"`)
	}
	ctx.Error("unauthorized", fasthttp.StatusUnauthorized)
	return false
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
// handler ran: too slow, too large or malformed.
func (s *Server) RequestError(ctx *fasthttp.RequestCtx, err error) {
	var netErr net.Error
	switch {
	case errors.As(err, &netErr) && netErr.Timeout():
		s.Metrics.RequestErrors.WithLabelValues("timeout").Inc()
		ctx.Error("request timeout", fasthttp.StatusRequestTimeout)
	case errors.Is(err, fasthttp.ErrBodyTooLarge):
		s.Metrics.RequestErrors.WithLabelValues("too_large").Inc()
		// fasthttp refuses a body over its limit before any handler runs;
		// a push refused so is still a push, counted with the others.
		if string(ctx.Path()) == plugin.SyncPath {
			s.Metrics.Pushes.WithLabelValues("too_large").Inc()
			s.Log.Warn("plugin push refused: body over --server.maxPushBytes", "limit", s.MaxPushBytes, "remote", ctx.RemoteAddr().String())
		}
		ctx.Error("request body too large", fasthttp.StatusRequestEntityTooLarge)
	default:
		s.Metrics.RequestErrors.WithLabelValues("malformed").Inc()
		ctx.Error("malformed request", fasthttp.StatusBadRequest)
	}
}

// Logger adapts fasthttp's own messages to the sidecar's log.
func (s *Server) Logger() fasthttp.Logger { return slogPrinter{s.Log} }

type slogPrinter struct{ log *slog.Logger }

func (p slogPrinter) Printf(format string, args ...interface{}) {
	p.log.Warn(fmt.Sprintf(format, args...))
}
