// Package traefikapi asks Traefik's own API which HTTP routers it serves:
// /api/http/routers/{name} answers "enabled", "warning" or "disabled" with
// the errors that disabled it. Traefik builds a router's middlewares, and so
// calls the plugin's New, before it parses the rule, so a plugin instance
// alone does not prove that Traefik serves the router; this answer does.
//
// The Watcher asks about the routers a change touched, again a few times as
// Traefik reloads, and sweeps the whole list on an interval (or when a change
// touches too many routers to ask one by one).
package traefikapi

import (
	"context"
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
)

// Router statuses as Traefik reports them.
const (
	StatusEnabled  = "enabled"
	StatusWarning  = "warning"
	StatusDisabled = "disabled"
)

// Router is Traefik's view of one HTTP router. Names are qualified
// (name@provider), references too.
type Router struct {
	Name        string
	Status      string
	Errors      []string
	Service     string
	Middlewares []string
}

// Served tells whether Traefik routes requests with it: a warning (for
// example a TLS option it could not apply) still serves.
func (r Router) Served() bool { return r.Status == StatusEnabled || r.Status == StatusWarning }

// Equal compares two answers.
func (r Router) Equal(o Router) bool {
	return r.Name == o.Name && r.Status == o.Status && r.Service == o.Service &&
		strings.Join(r.Errors, "\x00") == strings.Join(o.Errors, "\x00") &&
		strings.Join(r.Middlewares, "\x00") == strings.Join(o.Middlewares, "\x00")
}

// routerJSON is the part of Traefik's router representation read here.
type routerJSON struct {
	Name        string   `json:"name"`
	Provider    string   `json:"provider"`
	Status      string   `json:"status"`
	Error       []string `json:"error"`
	Service     string   `json:"service"`
	Middlewares []string `json:"middlewares"`
}

func (j routerJSON) router() (Router, error) {
	provider := j.Provider
	if _, p, ok := strings.Cut(j.Name, "@"); ok && provider == "" {
		provider = p
	}
	switch {
	case j.Name == "" || !strings.Contains(j.Name, "@"):
		return Router{}, fmt.Errorf("name %q: want name@provider", j.Name)
	case j.Status != StatusEnabled && j.Status != StatusWarning && j.Status != StatusDisabled:
		return Router{}, fmt.Errorf("router %s: status %q: want enabled, warning or disabled", j.Name, j.Status)
	}
	r := Router{Name: j.Name, Status: j.Status, Errors: j.Error, Service: Qualify(j.Service, provider)}
	for _, m := range j.Middlewares {
		r.Middlewares = append(r.Middlewares, Qualify(m, provider))
	}
	return r, nil
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
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimSuffix(c.Base, "/")+path, nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return nil, err
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
		return resp.Header, ErrNotFound
	case resp.StatusCode != http.StatusOK:
		msg, _ := io.ReadAll(io.LimitReader(body, 512))
		return nil, fmt.Errorf("GET %s: %s: %s", path, resp.Status, strings.TrimSpace(string(msg)))
	}
	raw, err := io.ReadAll(body)
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", path, err)
	}
	if int64(len(raw)) > limit {
		return nil, fmt.Errorf("GET %s: answer larger than %d bytes", path, limit)
	}
	if err := json.Unmarshal(raw, into); err != nil {
		return nil, fmt.Errorf("GET %s: %w", path, err)
	}
	return resp.Header, nil
}

// Router asks about one router by its qualified name.
func (c *Client) Router(ctx context.Context, name string) (Router, error) {
	var j routerJSON
	if _, err := c.get(ctx, "/api/http/routers/"+url.PathEscape(name), &j); err != nil {
		return Router{}, err
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
	perPage := c.PerPage
	if perPage <= 0 {
		perPage = 1000
	}
	var out []Router
	for page := 1; ; {
		var js []routerJSON
		h, err := c.get(ctx, "/api/http/routers?per_page="+strconv.Itoa(perPage)+"&page="+strconv.Itoa(page), &js)
		if err != nil {
			return nil, err
		}
		for _, j := range js {
			r, err := j.router()
			if err != nil {
				return nil, fmt.Errorf("GET /api/http/routers page %d: %w", page, err)
			}
			out = append(out, r)
		}
		// Traefik names the next page in X-Next-Page, and 1 after the last.
		next, err := strconv.Atoi(h.Get("X-Next-Page"))
		if err != nil || next <= page {
			break
		}
		page = next
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// Update is what one round of questions found.
type Update struct {
	// Sweep: Routers is every router Traefik serves; any other is gone.
	Sweep bool
	// Routers answered; Gone were asked about and Traefik does not hold them.
	Routers []Router
	Gone    []string
	// Err is set when Traefik could not be asked; nothing else is then.
	Err error
	At  time.Time
}

// Recheck is when a name asked about is asked again: Traefik throttles
// provider events (2 s by default) and then rebuilds every router, which at
// 10,000 routers takes seconds, so one question right after an etcd change
// would see the old state.
var Recheck = []time.Duration{0, 500 * time.Millisecond, 2 * time.Second, 5 * time.Second, 15 * time.Second}

// Watcher is the source: it sends an Update for every round of questions.
type Watcher struct {
	Client *Client
	// SweepInterval is how often every router is listed.
	SweepInterval time.Duration
	// SweepAbove: a round with more names than this lists everything instead.
	SweepAbove int
	// Parallel bounds the questions in flight.
	Parallel int

	mu     sync.Mutex
	due    map[string]*question
	poke   chan struct{}
	sweepN bool // a sweep was asked for
}

type question struct {
	middleware bool // ask which routers use it, then ask those
	step       int  // index into Recheck of the next time
	asked      time.Time
	at         time.Time
}

// Ask schedules questions about routers and middlewares (qualified names):
// now and again at Recheck. It never blocks.
func (w *Watcher) Ask(routers, middlewares []string, now time.Time) {
	if len(routers)+len(middlewares) == 0 {
		return
	}
	w.init()
	w.mu.Lock()
	for _, n := range routers {
		w.due[n] = &question{asked: now, at: now}
	}
	for _, n := range middlewares {
		w.due["\x00"+n] = &question{middleware: true, asked: now, at: now}
	}
	w.mu.Unlock()
	select {
	case w.poke <- struct{}{}:
	default:
	}
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
	if w.due == nil {
		w.due = map[string]*question{}
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
	if w.SweepAbove <= 0 {
		w.SweepAbove = 200
	}
	if w.Parallel <= 0 {
		w.Parallel = 8
	}
	nextSweep := time.Time{} // at once
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
		routers, middlewares, sweep := w.takeDue(now)
		sweep = sweep || !now.Before(nextSweep) || len(routers)+len(middlewares) > w.SweepAbove
		var u Update
		if sweep {
			u = w.sweep(ctx)
			if u.Err == nil {
				nextSweep = now.Add(w.SweepInterval)
			} else {
				// Traefik may be restarting: try again soon, not a whole interval later.
				nextSweep = now.Add(time.Second)
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

// takeDue returns the names whose time has come and moves each to its next
// recheck, or forgets it after the last.
func (w *Watcher) takeDue(now time.Time) (routers, middlewares []string, sweep bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	sweep, w.sweepN = w.sweepN, false
	for key, q := range w.due {
		if now.Before(q.at) {
			continue
		}
		if q.middleware {
			middlewares = append(middlewares, key[1:])
		} else {
			routers = append(routers, key)
		}
		q.step++
		if q.step >= len(Recheck) {
			delete(w.due, key)
			continue
		}
		q.at = q.asked.Add(Recheck[q.step])
	}
	sort.Strings(routers)
	sort.Strings(middlewares)
	return routers, middlewares, sweep
}

func (w *Watcher) nextWake(nextSweep, now time.Time) time.Duration {
	w.mu.Lock()
	defer w.mu.Unlock()
	wake := nextSweep.Sub(now)
	for _, q := range w.due {
		if d := q.at.Sub(now); d < wake {
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
	rs, err := w.Client.Routers(ctx)
	if err != nil {
		return Update{Err: err}
	}
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
