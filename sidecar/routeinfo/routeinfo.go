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
	"sort"
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
		add(t, c)
	}
	return t, nil
}

// DecodeCircuit reads the coordinator's answer about one circuit (GET
// /api/circuit/{id}: the circuit itself, as in the list) into t.
func DecodeCircuit(t *Table, id string, body []byte) error {
	var c circuitJSON
	if err := json.NewDecoder(bytes.NewReader(body)).Decode(&c); err != nil {
		return fmt.Errorf("circuit %s: %w", id, err)
	}
	if c.ID != id {
		return fmt.Errorf("circuit %s: the answer is about circuit %q", id, c.ID)
	}
	add(t, c)
	return nil
}

// add joins one circuit's routes into t.
func add(t *Table, c circuitJSON) {
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

// Fetch asks once for every circuit of the worker.
func (c *Client) Fetch(ctx context.Context) (*Table, error) {
	body, _, err := c.get(ctx, "/api/worker/"+url.PathEscape(c.WorkerID)+"/circuits", false)
	if err != nil {
		return nil, err
	}
	return Decode(body)
}

// FetchCircuits asks about each circuit alone (GET /api/circuit/{id},
// get_circuit, the same token): after an etcd change, a few circuits'
// answers instead of the worker's every circuit, which at 100,000 circuits
// is tens of megabytes for the coordinator to make and the sidecar to
// decode. A circuit the coordinator no longer has (404) is left out of the
// table: its routes are gone.
func (c *Client) FetchCircuits(ctx context.Context, ids []string) (*Table, error) {
	t := source.NewRouteTable()
	for _, id := range ids {
		body, found, err := c.get(ctx, "/api/circuit/"+url.PathEscape(id), true)
		if err != nil {
			return nil, err
		}
		if !found {
			continue
		}
		if err := DecodeCircuit(t, id, body); err != nil {
			return nil, err
		}
	}
	return t, nil
}

// get asks for path; with absentOK, a 404 is an answer (found false).
func (c *Client) get(ctx context.Context, path string, absentOK bool) (body []byte, found bool, err error) {
	u := c.URL + path
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, false, err
	}
	if t := c.token.Load(); t != nil {
		req.Header.Set("X-BackendAI-Token", *t)
	}
	req.Header.Set("Accept", "application/json")
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return nil, false, err
	}
	defer resp.Body.Close()
	if absentOK && resp.StatusCode == http.StatusNotFound {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4<<10))
		return nil, false, nil
	}
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 256))
		return nil, false, fmt.Errorf("%s: %s %s", u, resp.Status, bytes.TrimSpace(msg))
	}
	limit := c.MaxBytes
	if limit <= 0 {
		limit = 64 << 20
	}
	body, err = io.ReadAll(io.LimitReader(resp.Body, limit+1))
	if err != nil {
		return nil, false, err
	}
	if int64(len(body)) > limit {
		return nil, false, fmt.Errorf("%s: answer larger than %d bytes", u, limit)
	}
	return body, true, nil
}

// Poller is the source: it asks for every circuit every Interval, and
// soon after a Kick about the circuits kicked.
type Poller struct {
	Client   *Client
	Interval time.Duration
	// Settle is how long a Kick waits, so that a burst of etcd changes (a
	// coordinator batch) asks once.
	Settle time.Duration
	// MaxCircuits bounds the circuits asked about one by one after a kick;
	// more (a coordinator's start-up rewrites every circuit) ask for the
	// whole list. 0 always asks for the whole list.
	MaxCircuits int

	kick chan struct{}
	once sync.Once

	mu         sync.Mutex
	pending    map[string]bool
	everything bool
}

func (p *Poller) init() {
	p.once.Do(func() { p.kick, p.pending = make(chan struct{}, 1), map[string]bool{} })
}

// Kick asks for a round soon about circuits, or about every circuit when
// none is named: etcd changed them, and the coordinator may name new
// routes. It never blocks.
func (p *Poller) Kick(circuits ...string) {
	p.init()
	p.mu.Lock()
	p.everything = p.everything || len(circuits) == 0
	for _, c := range circuits {
		p.pending[c] = true
	}
	p.mu.Unlock()
	select {
	case p.kick <- struct{}{}:
	default:
	}
}

// take returns the circuits kicked since the last round, sorted, or
// everything when the whole list is wanted, and forgets them.
func (p *Poller) take() (ids []string, everything bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	everything = p.everything || len(p.pending) > p.MaxCircuits
	if !everything {
		ids = make([]string, 0, len(p.pending))
		for id := range p.pending {
			ids = append(ids, id)
		}
		sort.Strings(ids)
	}
	p.pending, p.everything = map[string]bool{}, false
	return ids, everything
}

// Run asks until ctx is done, sending every answer, failed ones included:
// the engine keeps the last good table, the daemon counts and logs failures.
// The whole list comes first and then every Interval (or sooner after a
// failure, backing off); kicked circuits are asked about one by one in
// between, once a whole list has answered for them to patch.
func (p *Poller) Run(ctx context.Context, out chan<- Answer) {
	p.init()
	backoff := retry.Capped(p.Interval)
	listDue := time.NewTimer(0)
	defer listDue.Stop()
	listed := false
	for {
		whole := false
		select {
		case <-ctx.Done():
			return
		case <-listDue.C:
			whole = true
		case <-p.kick:
			select {
			case <-ctx.Done():
				return
			case <-time.After(p.Settle):
			}
		}
		ids, everything := p.take()
		if whole || everything || !listed {
			ids = nil
		} else if len(ids) == 0 {
			continue // a kick the last whole list already answered
		}
		asked := time.Now()
		var t *Table
		var err error
		if ids == nil {
			t, err = p.Client.Fetch(ctx)
		} else {
			t, err = p.Client.FetchCircuits(ctx, ids)
		}
		if err != nil && ctx.Err() != nil {
			return
		}
		switch {
		case ids == nil:
			next := p.Interval - time.Since(asked)
			if err != nil {
				next = backoff.Failed()
			} else {
				backoff.Succeeded()
				listed = true
			}
			if !listDue.Stop() {
				select {
				case <-listDue.C:
				default:
				}
			}
			listDue.Reset(max(next, 0))
		case err != nil:
			// What these circuits became is asked with the whole list.
			p.Kick()
		}
		select {
		case out <- Answer{Table: t, Err: err, Asked: asked, Circuits: ids}:
		case <-ctx.Done():
			return
		}
	}
}
