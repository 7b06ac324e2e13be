// Package traefikapi asks Traefik's own API which HTTP routers it serves:
// /api/http/routers/{name} answers "enabled", "warning" or "disabled" with
// the errors that disabled it. Traefik builds a router's middlewares, and so
// calls the plugin's New, before it parses the rule, so a plugin instance
// alone does not prove that Traefik serves the router; this answer does.
//
// The Watcher asks about the routers a change touched, again a few times as
// Traefik reloads, and sweeps the whole list on an interval (or when a change
// touches too many routers to ask one by one). The Poller lists Traefik's
// services (their servers and serverStatus) and its TCP routers.
package traefikapi

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/traefik-sd/traefik-sd/sidecar/redact"

	"github.com/traefik-sd/traefik-sd/sidecar/retry"
	"github.com/traefik-sd/traefik-sd/sidecar/source"
)

// The messages of Traefik's API (package source).
type (
	Router  = source.Router
	Update  = source.Routers
	Service = source.Service
	Listing = source.Services
)

// Router statuses as Traefik reports them.
const (
	StatusEnabled  = source.StatusEnabled
	StatusWarning  = source.StatusWarning
	StatusDisabled = source.StatusDisabled
)

// Server statuses in a service's serverStatus.
const (
	ServerUp   = source.ServerUp
	ServerDown = source.ServerDown
)

// routerJSON is the part of Traefik's router representation read here.
type routerJSON struct {
	Name        string   `json:"name"`
	Provider    string   `json:"provider"`
	Status      string   `json:"status"`
	Error       []string `json:"error"`
	Service     string   `json:"service"`
	Middlewares []string `json:"middlewares"`
	Rule        string   `json:"rule"`
	EntryPoints []string `json:"entryPoints"`
}

func (j routerJSON) router() (Router, error) {
	provider := j.Provider
	if _, p, ok := strings.Cut(j.Name, "@"); ok && provider == "" {
		provider = p
	}
	switch {
	case j.Name == "" || !strings.Contains(j.Name, "@"):
		return Router{}, fmt.Errorf("name %q: want name@provider", redact.Text(redact.Cut(j.Name, 128)))
	case j.Status != StatusEnabled && j.Status != StatusWarning && j.Status != StatusDisabled:
		return Router{}, fmt.Errorf("router %s: status %q: want enabled, warning or disabled", redact.Cut(j.Name, 256), redact.Cut(j.Status, 64))
	}
	r := Router{Name: j.Name, Status: j.Status, Errors: redactErrors(j.Error), Service: Qualify(j.Service, provider),
		Rule: j.Rule, EntryPoints: j.EntryPoints}
	for _, m := range j.Middlewares {
		r.Middlewares = append(r.Middlewares, Qualify(m, provider))
	}
	return r, nil
}

// maxErrors bounds the errors kept of one router.
const maxErrors = 8

// redactErrors is what the sidecar keeps of Traefik's errors for a router,
// which it logs and shows on its status page: each redacted (redact.Text:
// a URL's userinfo, the values of secret-named keys; Traefik repeats a
// middleware's own error word for word, and that may quote its
// configuration) and bounded, at most maxErrors of them.
func redactErrors(errs []string) []string {
	if len(errs) == 0 {
		return nil
	}
	n := len(errs)
	if n > maxErrors {
		n = maxErrors
	}
	out := make([]string, 0, n+1)
	for _, e := range errs[:n] {
		out = append(out, redact.Text(e))
	}
	if len(errs) > n {
		out = append(out, fmt.Sprintf("(%d more)", len(errs)-n))
	}
	return out
}

// Qualify adds @provider to a reference that has none: Traefik resolves an
// unqualified reference within the referring router's provider.
func Qualify(ref, provider string) string {
	if ref == "" || strings.Contains(ref, "@") {
		return ref
	}
	return ref + "@" + provider
}

// Client reads Traefik's API.
type Client struct {
	// Base is the API's base URL, e.g. http://127.0.0.1:8080 (its traefik entry point).
	Base string
	HTTP *http.Client
	// PerPage is the page size of a sweep.
	PerPage int
	// MaxBytes bounds one answer.
	MaxBytes int64
}

// ErrNotFound is Traefik's 404: it does not hold the object (not loaded yet,
// or dropped).
var ErrNotFound = errors.New("not found")

func (c *Client) get(ctx context.Context, path string, into interface{}) (http.Header, error) {
	raw, h, err := c.getRaw(ctx, path, nil)
	if err != nil {
		return h, err
	}
	if err := json.Unmarshal(raw, into); err != nil {
		return nil, fmt.Errorf("GET %s: %s", path, redact.JSONError(err))
	}
	return h, nil
}

// getRaw reads an answer whole. With scratch, it reads into scratch and
// returns a copy of exactly the answer's size: io.ReadAll's growing slices
// cost a sweep twice the listing's size in garbage (tens of megabytes at
// 100,000 routers, every --traefik.apiSweep), which the collector then walks
// the sidecar's whole heap to free.
func (c *Client) getRaw(ctx context.Context, path string, scratch *bytes.Buffer) ([]byte, http.Header, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimSuffix(c.Base, "/")+path, nil)
	if err != nil {
		return nil, nil, err
	}
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	limit := c.MaxBytes
	if limit <= 0 {
		limit = 256 << 20
	}
	body := io.LimitReader(resp.Body, limit+1)
	switch {
	case resp.StatusCode == http.StatusNotFound:
		_, _ = io.Copy(io.Discard, body)
		return nil, resp.Header, ErrNotFound
	case resp.StatusCode != http.StatusOK:
		msg, _ := io.ReadAll(io.LimitReader(body, 512))
		return nil, nil, fmt.Errorf("GET %s: %s: %s", path, resp.Status, redact.Text(strings.TrimSpace(string(msg))))
	}
	var raw []byte
	if scratch != nil {
		scratch.Reset()
		_, err = scratch.ReadFrom(body)
		raw = bytes.Clone(scratch.Bytes())
	} else {
		raw, err = io.ReadAll(body)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("GET %s: %w", path, err)
	}
	if int64(len(raw)) > limit {
		return nil, nil, fmt.Errorf("GET %s: answer larger than %d bytes", path, limit)
	}
	return raw, resp.Header, nil
}

// Router asks about one router by its qualified name.
func (c *Client) Router(ctx context.Context, name string) (Router, error) {
	var raw json.RawMessage
	if _, err := c.get(ctx, "/api/http/routers/"+url.PathEscape(name), &raw); err != nil {
		return Router{}, err
	}
	return DecodeRouter(raw)
}

// DecodeRouter reads one router as Traefik's API writes it; an answer
// that names no provider or a status Traefik does not use is refused.
func DecodeRouter(body []byte) (Router, error) {
	var j routerJSON
	if err := json.Unmarshal(body, &j); err != nil {
		return Router{}, fmt.Errorf("router answer: %s", redact.JSONError(err))
	}
	return j.router()
}

// UsedBy asks which routers use a middleware (qualified name).
func (c *Client) UsedBy(ctx context.Context, middleware string) ([]string, error) {
	var j struct {
		UsedBy []string `json:"usedBy"`
	}
	if _, err := c.get(ctx, "/api/http/middlewares/"+url.PathEscape(middleware), &j); err != nil {
		return nil, err
	}
	return j.UsedBy, nil
}

// Routers lists every HTTP router, page by page. A router whose answer
// cannot be read fails the whole list: a sweep replaces everything known,
// so it must be complete.
func (c *Client) Routers(ctx context.Context) ([]Router, error) {
	rs, _, err := c.routers(ctx, nil)
	return rs, err
}

// routers lists every router unless the pages hash to unchanged (Traefik
// sorts them by name, so an unchanged configuration lists byte for byte
// the same): then it decodes nothing and reports same. It returns the
// pages' digest.
func (c *Client) routers(ctx context.Context, unchanged []byte) (rs []Router, digest []byte, err error) {
	pages, digest, err := c.list(ctx, "/api/http/routers")
	if err != nil || (unchanged != nil && bytes.Equal(digest, unchanged)) {
		return nil, digest, err
	}
	rs, err = decodePages(pages, "/api/http/routers", routerJSON.router)
	if err != nil {
		return nil, nil, err
	}
	sort.Slice(rs, func(i, j int) bool { return rs[i].Name < rs[j].Name })
	return rs, digest, nil
}

// list reads every page of a listing and hashes them: Traefik names the
// next page in X-Next-Page, and 1 after the last.
func (c *Client) list(ctx context.Context, path string) (pages [][]byte, digest []byte, err error) {
	perPage := c.PerPage
	if perPage <= 0 {
		perPage = 1000
	}
	h := sha256.New()
	var scratch bytes.Buffer // as large as the largest page, once
	for page := 1; ; {
		raw, hdr, err := c.getRaw(ctx, path+"?per_page="+strconv.Itoa(perPage)+"&page="+strconv.Itoa(page), &scratch)
		if err != nil {
			return nil, nil, err
		}
		pages = append(pages, raw)
		_, _ = h.Write(raw)
		next, err := strconv.Atoi(hdr.Get("X-Next-Page"))
		if err != nil || next <= page {
			break
		}
		page = next
	}
	return pages, h.Sum(nil), nil
}

// decodePages decodes a listing's pages; one object that cannot be read
// fails the whole listing, which replaces everything known.
func decodePages[J any, T any](pages [][]byte, path string, decode func(J) (T, error)) ([]T, error) {
	var out []T
	for i, raw := range pages {
		var js []J
		if err := json.Unmarshal(raw, &js); err != nil {
			return nil, fmt.Errorf("GET %s page %d: %s", path, i+1, redact.JSONError(err))
		}
		for _, j := range js {
			v, err := decode(j)
			if err != nil {
				return nil, fmt.Errorf("GET %s page %d: %w", path, i+1, err)
			}
			out = append(out, v)
		}
	}
	return out, nil
}

// Recheck is when a name asked about is asked again, counted from the
// change: Traefik throttles provider events (2 s by default) and then
// rebuilds every router before its API shows the new state, which at 10,000
// routers takes seconds, so one question right after an etcd change or a
// push (sent while Traefik is still building) sees the old state. The gaps
// grow by about half each time: an answer comes within half the reload's
// time after it, for a bounded number of questions per change.
var Recheck = []time.Duration{0, 250 * time.Millisecond, 500 * time.Millisecond, time.Second, 1500 * time.Millisecond,
	2 * time.Second, 3 * time.Second, 4500 * time.Millisecond, 7 * time.Second, 10 * time.Second, 15 * time.Second, 25 * time.Second}

// Watcher is the source: it sends an Update for every round of questions.
type Watcher struct {
	Client *Client
	// SweepInterval is how often every router is listed.
	SweepInterval time.Duration
	// SweepAbove: a round with more names than this lists everything instead.
	SweepAbove int
	// MinSweepGap spaces listings: a mass change asks on every recheck,
	// and at 10,000 routers one listing costs Traefik and the sidecar
	// a tenth of a second of CPU each.
	MinSweepGap time.Duration
	// Parallel bounds the questions in flight.
	Parallel int
	// Rechecks is when a name is asked, counted from its change (default Recheck).
	Rechecks []time.Duration

	mu sync.Mutex
	// listed is the digest of the last listing that was decoded.
	listed []byte
	// rounds are the questions of each change, asked together on one
	// schedule: a change of 10,000 routers is one round, not 10,000.
	rounds []*round
	// pending counts the rounds each name is in ("\x00"+name for middlewares).
	pending map[string]int
	poke    chan struct{}
	sweepN  bool // a sweep was asked for
}

type round struct {
	routers     []string
	middlewares []string // ask which routers use them, then ask those
	step        int      // index into the rechecks of the next time
	asked       time.Time
	at          time.Time
}

func (r *round) size() int { return len(r.routers) + len(r.middlewares) }

// add schedules a round; the caller holds mu.
func (w *Watcher) add(r *round) {
	w.rounds = append(w.rounds, r)
	for _, n := range r.routers {
		w.pending[n]++
	}
	for _, n := range r.middlewares {
		w.pending["\x00"+n]++
	}
}

// Ask schedules questions about routers and middlewares (qualified names):
// now and again at Recheck. It never blocks.
func (w *Watcher) Ask(routers, middlewares []string, now time.Time) {
	if len(routers)+len(middlewares) == 0 {
		return
	}
	w.init()
	w.mu.Lock()
	w.add(&round{routers: append([]string(nil), routers...), middlewares: append([]string(nil), middlewares...), asked: now, at: now})
	w.mu.Unlock()
	select {
	case w.poke <- struct{}{}:
	default:
	}
}

// Remind schedules questions about routers that have none pending, without
// restarting the schedule of those that have: the routers a listing did not
// find, which Traefik may still be loading. A set too large to ask about one
// by one is left to the periodic listing.
func (w *Watcher) Remind(routers []string, now time.Time) {
	if len(routers) == 0 || len(routers) > w.sweepAbove() {
		return
	}
	w.init()
	w.mu.Lock()
	var fresh []string
	for _, n := range routers {
		if w.pending[n] == 0 {
			fresh = append(fresh, n)
		}
	}
	if len(fresh) > 0 {
		w.add(&round{routers: fresh, asked: now, at: now})
	}
	w.mu.Unlock()
	select {
	case w.poke <- struct{}{}:
	default:
	}
}

func (w *Watcher) sweepAbove() int {
	if w.SweepAbove <= 0 {
		return 200
	}
	return w.SweepAbove
}

// Sweep asks for a whole listing soon.
func (w *Watcher) Sweep() {
	w.init()
	w.mu.Lock()
	w.sweepN = true
	w.mu.Unlock()
	select {
	case w.poke <- struct{}{}:
	default:
	}
}

func (w *Watcher) init() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.pending == nil {
		w.pending = map[string]int{}
		w.poke = make(chan struct{}, 1)
	}
}

// Run asks until ctx is done: a sweep first, then what is due. Every send
// also watches ctx.
func (w *Watcher) Run(ctx context.Context, out chan<- Update) {
	w.init()
	if w.SweepInterval <= 0 {
		w.SweepInterval = 30 * time.Second
	}
	if w.MinSweepGap <= 0 {
		w.MinSweepGap = 2 * time.Second
	}
	if w.Parallel <= 0 {
		w.Parallel = 8
	}
	nextSweep := time.Time{} // at once
	var lastSweep time.Time
	backoff := retry.Capped(w.SweepInterval)
	tick := time.NewTimer(0)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		case <-w.poke:
		}
		now := time.Now()
		// A round too large to ask name by name waits for the next
		// allowed listing, which answers it whole.
		if allowed := lastSweep.Add(w.MinSweepGap); now.Before(allowed) && w.dueCount(now) > w.sweepAbove() {
			if allowed.Before(nextSweep) {
				nextSweep = allowed
			}
			resetTimer(tick, allowed.Sub(now))
			continue
		}
		routers, middlewares, sweep := w.takeDue(now)
		sweep = sweep || !now.Before(nextSweep) || len(routers)+len(middlewares) > w.sweepAbove()
		var u Update
		if sweep {
			u = w.sweep(ctx)
			lastSweep = now
			if u.Err == nil {
				nextSweep = now.Add(w.SweepInterval)
				backoff.Succeeded()
			} else {
				// Traefik may be restarting: try again soon, not a whole interval later.
				nextSweep = now.Add(backoff.Failed())
			}
		} else if len(routers)+len(middlewares) > 0 {
			u = w.ask(ctx, routers, middlewares)
		}
		if sweep || len(routers)+len(middlewares) > 0 {
			u.At = time.Now()
			select {
			case out <- u:
			case <-ctx.Done():
				return
			}
		}
		resetTimer(tick, w.nextWake(nextSweep, time.Now()))
	}
}

func (w *Watcher) rechecks() []time.Duration {
	if len(w.Rechecks) > 0 {
		return w.Rechecks
	}
	return Recheck
}

// dueCount is how many questions are due now.
func (w *Watcher) dueCount(now time.Time) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := 0
	for _, r := range w.rounds {
		if !now.Before(r.at) {
			n += r.size()
		}
	}
	return n
}

// takeDue returns the names of the rounds whose time has come, each once,
// and moves each round to its next recheck, or forgets it after the last.
func (w *Watcher) takeDue(now time.Time) (routers, middlewares []string, sweep bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	sweep, w.sweepN = w.sweepN, false
	seen := map[string]bool{}
	rechecks := w.rechecks()
	kept := w.rounds[:0]
	for _, r := range w.rounds {
		if now.Before(r.at) {
			kept = append(kept, r)
			continue
		}
		for _, n := range r.routers {
			if !seen[n] {
				seen[n] = true
				routers = append(routers, n)
			}
		}
		for _, n := range r.middlewares {
			if !seen["\x00"+n] {
				seen["\x00"+n] = true
				middlewares = append(middlewares, n)
			}
		}
		// One question answers every step already past: a watcher that
		// fell behind does not ask the same names again and again.
		for r.step < len(rechecks) && !now.Before(r.asked.Add(rechecks[r.step])) {
			r.step++
		}
		if r.step < len(rechecks) {
			r.at = r.asked.Add(rechecks[r.step])
			kept = append(kept, r)
			continue
		}
		for _, n := range r.routers {
			if w.pending[n]--; w.pending[n] <= 0 {
				delete(w.pending, n)
			}
		}
		for _, n := range r.middlewares {
			if w.pending["\x00"+n]--; w.pending["\x00"+n] <= 0 {
				delete(w.pending, "\x00"+n)
			}
		}
	}
	for i := len(kept); i < len(w.rounds); i++ {
		w.rounds[i] = nil
	}
	w.rounds = kept
	sort.Strings(routers)
	sort.Strings(middlewares)
	return routers, middlewares, sweep
}

func (w *Watcher) nextWake(nextSweep, now time.Time) time.Duration {
	w.mu.Lock()
	defer w.mu.Unlock()
	wake := nextSweep.Sub(now)
	for _, r := range w.rounds {
		if d := r.at.Sub(now); d < wake {
			wake = d
		}
	}
	if wake < 10*time.Millisecond {
		wake = 10 * time.Millisecond
	}
	return wake
}

func (w *Watcher) sweep(ctx context.Context) Update {
	ctx, cancel := context.WithTimeout(ctx, w.timeout())
	defer cancel()
	w.mu.Lock()
	last := w.listed
	w.mu.Unlock()
	rs, digest, err := w.Client.routers(ctx, last)
	if err != nil {
		return Update{Err: err}
	}
	if last != nil && bytes.Equal(digest, last) {
		return Update{Sweep: true, Same: true}
	}
	w.mu.Lock()
	w.listed = digest
	w.mu.Unlock()
	return Update{Sweep: true, Routers: rs}
}

func (w *Watcher) timeout() time.Duration {
	if w.Client.HTTP != nil && w.Client.HTTP.Timeout > 0 {
		return w.Client.HTTP.Timeout
	}
	return 10 * time.Second
}

// ask answers one round: the middlewares' users first, then every router.
// One failed question fails the round, so that a half answer never reads
// as "gone".
func (w *Watcher) ask(ctx context.Context, routers, middlewares []string) Update {
	ctx, cancel := context.WithTimeout(ctx, w.timeout())
	defer cancel()
	names := map[string]bool{}
	for _, r := range routers {
		names[r] = true
	}
	users, err := parallel(ctx, w.Parallel, middlewares, func(ctx context.Context, m string) ([]string, error) {
		used, err := w.Client.UsedBy(ctx, m)
		if errors.Is(err, ErrNotFound) {
			return nil, nil
		}
		return used, err
	})
	if err != nil {
		return Update{Err: err}
	}
	for _, us := range users {
		for _, r := range us {
			names[r] = true
		}
	}
	list := make([]string, 0, len(names))
	for n := range names {
		list = append(list, n)
	}
	sort.Strings(list)
	type answer struct {
		r     Router
		found bool
	}
	answers, err := parallel(ctx, w.Parallel, list, func(ctx context.Context, n string) (answer, error) {
		r, err := w.Client.Router(ctx, n)
		if errors.Is(err, ErrNotFound) {
			return answer{}, nil
		}
		return answer{r: r, found: err == nil}, err
	})
	if err != nil {
		return Update{Err: err}
	}
	var u Update
	for i, a := range answers {
		if a.found {
			u.Routers = append(u.Routers, a.r)
		} else {
			u.Gone = append(u.Gone, list[i])
		}
	}
	if len(list) > 0 {
		// The engine's view now holds answers newer than the last
		// listing, so a listing equal to that one says something again.
		w.mu.Lock()
		w.listed = nil
		w.mu.Unlock()
	}
	return u
}

// parallel runs f over items with at most n in flight, keeping order; the
// first error wins.
func parallel[T any](ctx context.Context, n int, items []string, f func(context.Context, string) (T, error)) ([]T, error) {
	out := make([]T, len(items))
	errs := make([]error, len(items))
	sem := make(chan struct{}, n)
	var wg sync.WaitGroup
	for i, it := range items {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			out[i], errs[i] = f(ctx, it)
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return nil, err
		}
	}
	return out, nil
}

func resetTimer(t *time.Timer, d time.Duration) {
	if !t.Stop() {
		select {
		case <-t.C:
		default:
		}
	}
	t.Reset(d)
}
