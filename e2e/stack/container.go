package stack

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/traefik-sd/traefik-sd/internal/coordinator"
	"github.com/traefik-sd/traefik-sd/internal/testbed"
)

// Container is a sample session container: an app on every path, a health
// check that can be made to fail, and its own /metrics.
type Container struct {
	Name     string
	HostPort string
	Session  string
	RouteID  string

	healthy  atomic.Bool
	requests atomic.Int64
	scrapes  atomic.Int64
}

// StartContainer serves a container on a free loopback port until the test ends.
func StartContainer(t testbed.T, name, session, routeID string) *Container {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	testbed.Must(t, err, "container %s", name)
	c := &Container{Name: name, HostPort: ln.Addr().String(), Session: session, RouteID: routeID}
	c.healthy.Store(true)
	srv := &http.Server{Handler: c, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	})
	return c
}

// SetHealthy makes /health answer 200 (true) or 503 (false).
func (c *Container) SetHealthy(ok bool) { c.healthy.Store(ok) }

// Requests is how many app requests reached the container.
func (c *Container) Requests() int64 { return c.requests.Load() }

// Scrapes is how many times /metrics was read.
func (c *Container) Scrapes() int64 { return c.scrapes.Load() }

func (c *Container) ServeHTTP(rw http.ResponseWriter, req *http.Request) {
	switch req.URL.Path {
	case "/health":
		if !c.healthy.Load() {
			http.Error(rw, "unhealthy", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(rw, "ok")
	case "/metrics", "/custom/metrics": // the second for a circuit with its own metricsPath
		c.scrapes.Add(1)
		rw.Header().Set("Content-Type", "text/plain; version=0.0.4")
		fmt.Fprintf(rw, "# TYPE sample_app_requests_total counter\nsample_app_requests_total{container=%q} %d\n", c.Name, c.requests.Load())
	default:
		c.requests.Add(1)
		fmt.Fprintf(rw, "hello from %s\n", c.Name)
	}
}

// Route is the container as a coordinator route.
func (c *Container) Route() coordinator.Route {
	host, port, _ := net.SplitHostPort(c.HostPort)
	p, _ := strconv.Atoi(port)
	return coordinator.Route{RouteID: c.RouteID, SessionID: c.Session, Host: host, Port: p}
}
