// Package routeinfo reads per-route identities that etcd does not hold from
// Backend.AI's AppProxy coordinator: GET /api/worker/{worker_id}/circuits
// (header X-BackendAI-Token) answers each circuit with its route_info, which
// names the session and route behind every kernel_host:kernel_port.
package routeinfo

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/traefik-sd/traefik-sd/sidecar/retry"
	"github.com/traefik-sd/traefik-sd/sidecar/source"
)

// IDs, Table and Answer are the messages of the coordinator's source
// (package source).
type (
	IDs    = source.RouteIDs
	Table  = source.RouteTable
	Answer = source.Routes
)

type routeJSON struct {
	RouteID        *string `json:"route_id"`
	RouteIDAlias   *string `json:"route-id"`
	SessionID      *string `json:"session_id"`
	SessionIDAlias *string `json:"session-id"`
	KernelHost     *string `json:"kernel_host"`
	KernelPort     int     `json:"kernel_port"`
}

type circuitJSON struct {
	ID         string      `json:"id"`
	App        string      `json:"app"`
	EndpointID *string     `json:"endpoint_id"`
	RouteInfo  []routeJSON `json:"route_info"`
}

func first(a, b *string) string {
	if a != nil {
		return *a
	}
	if b != nil {
		return *b
	}
	return ""
}

// Decode reads the coordinator's answer. Unknown fields are fine (the
// coordinator sends the whole circuit). A route without a host (kernel_host
// may be null: Traefik then gets localhost, which says nothing of where the
// kernel is) or with a port out of range is skipped and named in Skipped;
// the rest of the answer still counts.
func Decode(body []byte) (*Table, error) {
	var answer struct {
		Circuits *[]circuitJSON `json:"circuits"`
	}
	if err := json.NewDecoder(bytes.NewReader(body)).Decode(&answer); err != nil {
		return nil, fmt.Errorf("coordinator answer: %w", err)
	}
	if answer.Circuits == nil {
		return nil, errors.New("coordinator answer: no circuits field")
	}
	t := source.NewRouteTable()
	for i, c := range *answer.Circuits {
		if c.ID == "" {
			return nil, fmt.Errorf("circuits[%d].id: missing", i)
		}
		endpoint := ""
		if c.EndpointID != nil {
			endpoint = *c.EndpointID
		}
		for j, r := range c.RouteInfo {
			switch {
			case r.KernelHost == nil || *r.KernelHost == "":
				host := "null"
				if r.KernelHost != nil {
					host = `""`
				}
				t.Skip(fmt.Sprintf("circuit %s route_info[%d]: kernel_host is %s", c.ID, j, host))
				continue
			case r.KernelPort < 1 || r.KernelPort > 65535:
				t.Skip(fmt.Sprintf("circuit %s route_info[%d]: kernel_port %d out of range", c.ID, j, r.KernelPort))
				continue
			}
			hostPort := net.JoinHostPort(*r.KernelHost, strconv.Itoa(r.KernelPort))
			t.Add(c.ID, hostPort, IDs{
				SessionID: first(r.SessionID, r.SessionIDAlias), RouteID: first(r.RouteID, r.RouteIDAlias),
				EndpointID: endpoint, App: c.App,
			})
			t.AddServer(c.ID, "http://"+hostPort+"/")
		}
	}
	return t, nil
}

// Client asks the coordinator. SetToken gives it the API secret, and may
// replace it while it runs.
type Client struct {
	token atomic.Pointer[string]

	// URL is the coordinator's base URL, e.g. http://coordinator:10200.
	URL      string
	WorkerID string
	HTTP     *http.Client
	// MaxBytes bounds an answer.
	MaxBytes int64
}

// SetToken sets the coordinator's API secret (X-BackendAI-Token).
func (c *Client) SetToken(token string) { c.token.Store(&token) }

// Fetch asks once.
func (c *Client) Fetch(ctx context.Context) (*Table, error) {
	u := c.URL + "/api/worker/" + url.PathEscape(c.WorkerID) + "/circuits"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	if t := c.token.Load(); t != nil {
		req.Header.Set("X-BackendAI-Token", *t)
	}
	req.Header.Set("Accept", "application/json")
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 256))
		return nil, fmt.Errorf("%s: %s %s", u, resp.Status, bytes.TrimSpace(msg))
	}
	limit := c.MaxBytes
	if limit <= 0 {
		limit = 64 << 20
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(body)) > limit {
		return nil, fmt.Errorf("%s: answer larger than %d bytes", u, limit)
	}
	return Decode(body)
}

// Poller is the source: it asks every Interval and soon after a Kick.
type Poller struct {
	Client   *Client
	Interval time.Duration
	// Settle is how long a Kick waits, so that a burst of etcd changes (a
	// coordinator batch) asks once.
	Settle time.Duration

	kick chan struct{}
	once sync.Once
}

func (p *Poller) init() { p.once.Do(func() { p.kick = make(chan struct{}, 1) }) }

// Kick asks for a round soon: new circuits may have routes the coordinator
// can name. It never blocks.
func (p *Poller) Kick() {
	p.init()
	select {
	case p.kick <- struct{}{}:
	default:
	}
}

// Run asks until ctx is done, sending every answer, failed ones included:
// the engine keeps the last good table, the daemon counts and logs failures.
func (p *Poller) Run(ctx context.Context, out chan<- Answer) {
	p.init()
	backoff := retry.Capped(p.Interval)
	wait := time.NewTimer(p.Interval)
	defer wait.Stop()
	for {
		asked := time.Now()
		t, err := p.Client.Fetch(ctx)
		if err != nil && ctx.Err() != nil {
			return
		}
		next := p.Interval - time.Since(asked)
		if err != nil {
			next = backoff.Failed()
		} else {
			backoff.Succeeded()
		}
		select {
		case out <- Answer{Table: t, Err: err, Asked: asked}:
		case <-ctx.Done():
			return
		}
		if !wait.Stop() {
			select {
			case <-wait.C:
			default:
			}
		}
		wait.Reset(max(next, 0))
		select {
		case <-ctx.Done():
			return
		case <-wait.C:
		case <-p.kick:
			select {
			case <-ctx.Done():
				return
			case <-time.After(p.Settle):
			}
		}
	}
}
