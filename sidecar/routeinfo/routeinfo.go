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
	"strings"
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
func Decode(body []byte) (*Table, error) { return decodeList(bytes.NewReader(body)) }

// decodeList reads the answer as it arrives, one circuit at a time: at
// 100,000 circuits it is tens of megabytes, which neither the body nor a
// slice of every circuit need hold at once. It reads as encoding/json would
// read the whole object: the field's name matched in any case, the last of
// two such fields the one that counts.
func decodeList(r io.Reader) (*Table, error) {
	dec := json.NewDecoder(r)
	fail := func(err error) (*Table, error) { return nil, fmt.Errorf("coordinator answer: %w", err) }
	if tok, err := dec.Token(); err != nil {
		return fail(err)
	} else if tok != json.Delim('{') {
		return fail(fmt.Errorf("not an object: %v", tok))
	}
	var t *Table
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return fail(err)
		}
		if key, _ := tok.(string); !strings.EqualFold(key, "circuits") {
			var skip json.RawMessage
			if err := dec.Decode(&skip); err != nil {
				return fail(err)
			}
			continue
		}
		t = nil
		tok, err = dec.Token()
		if err != nil {
			return fail(err)
		}
		if tok == nil {
			continue // null, as if absent
		}
		if tok != json.Delim('[') {
			return fail(fmt.Errorf("circuits: not an array: %v", tok))
		}
		t = source.NewRouteTable()
		for i := 0; dec.More(); i++ {
			var c circuitJSON
			if err := dec.Decode(&c); err != nil {
				return fail(fmt.Errorf("circuits[%d]: %w", i, err))
			}
			if c.ID == "" {
				return nil, fmt.Errorf("circuits[%d].id: missing", i)
			}
			add(t, c)
		}
		if _, err := dec.Token(); err != nil {
			return fail(err)
		}
	}
	if _, err := dec.Token(); err != nil {
		return fail(err)
	}
	if t == nil {
		return nil, errors.New("coordinator answer: no circuits field")
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

// Fetch asks once for every circuit of the worker, decoding the answer as
// it arrives.
func (c *Client) Fetch(ctx context.Context) (*Table, error) {
	var t *Table
	_, err := c.do(ctx, "/api/worker/"+url.PathEscape(c.WorkerID)+"/circuits", false, func(body io.Reader) (err error) {
		t, err = decodeList(body)
		return err
	})
	return t, err
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

// get asks for path and reads the whole answer; with absentOK, a 404 is
// an answer (found false).
func (c *Client) get(ctx context.Context, path string, absentOK bool) (body []byte, found bool, err error) {
	found, err = c.do(ctx, path, absentOK, func(r io.Reader) (err error) {
		body, err = io.ReadAll(r)
		return err
	})
	return body, found, err
}

// do asks for path and hands the answer, bounded by MaxBytes, to read.
func (c *Client) do(ctx context.Context, path string, absentOK bool, read func(io.Reader) error) (found bool, err error) {
	u := c.URL + path
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return false, err
	}
	if t := c.token.Load(); t != nil {
		req.Header.Set("X-BackendAI-Token", *t)
	}
	req.Header.Set("Accept", "application/json")
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return false, err
	}
	defer resp.Body.Close()
	if absentOK && resp.StatusCode == http.StatusNotFound {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4<<10))
		return false, nil
	}
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 256))
		return false, fmt.Errorf("%s: %s %s", u, resp.Status, bytes.TrimSpace(msg))
	}
	limit := c.MaxBytes
	if limit <= 0 {
		limit = DefaultMaxBytes
	}
	body := &io.LimitedReader{R: resp.Body, N: limit + 1}
	err = read(body)
	if body.N <= 0 {
		return false, fmt.Errorf("%s: answer larger than %d bytes", u, limit)
	}
	if err != nil {
		return false, err
	}
	return true, nil
}

// DefaultMaxBytes bounds an answer: the whole list of a worker's circuits
// is about 700 bytes a circuit, so this is about 700,000 circuits. The
// list is read as it arrives, so the bound is on time, not memory.
const DefaultMaxBytes = 512 << 20

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
// between, a whole list answered or not (one too large for MaxBytes).
func (p *Poller) Run(ctx context.Context, out chan<- Answer) {
	p.init()
	backoff := retry.Capped(p.Interval)
	listDue := time.NewTimer(0)
	defer listDue.Stop()
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
		if whole || everything {
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
