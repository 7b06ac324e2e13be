package plugin

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/url"
	"os"
	"reflect"
	"sort"
	"sync"
	"time"
)

const (
	// batchWindow lets a reload's burst of New calls (all routers, within
	// milliseconds) go out as one push.
	batchWindow = 100 * time.Millisecond
	// maxTick bounds how long a cancelled ctx can go unnoticed.
	maxTick      = 500 * time.Millisecond
	minTick      = 10 * time.Millisecond
	firstBackoff = 250 * time.Millisecond
	maxBackoff   = 10 * time.Second
	pushTimeout  = 10 * time.Second
	// burstQuiet is how long New must have gone uncalled before the sender
	// records a burst; burstMax bounds how long a burst that never pauses
	// (a Traefik reloading without end) is left unrecorded.
	burstQuiet = 20 * time.Millisecond
	burstMax   = 2 * time.Second
	// heartbeatEvery is how often an idle sender sends an empty delta. The
	// sidecar answers 409 to a delta from a process it does not know, so a
	// restarted sidecar gets the full set within one heartbeat instead of
	// one resync interval; it also tells the sidecar this Traefik is alive.
	heartbeatEvery = 2 * time.Second
	// removalHold bounds, in removal delays, how long New calls that keep
	// coming hold back a removal (see sweep).
	removalHold = 30
)

// liveSet is the process-wide registry. Traefik keeps one Yaegi interpreter
// per plugin for the life of the process, so this outlives every reload.
var liveSet = newRegistry()

type registry struct {
	mu      sync.Mutex
	dests   map[string]*destination
	wake    chan struct{}
	running bool // the sender goroutine was started
	// arrivals are the New calls the sender has not recorded yet.
	arrivals []arrival
	// lastNew is when the newest recorded New was called.
	lastNew time.Time
	// nextSweep and sweepEvery schedule the sweep for cancelled instances.
	nextSweep  time.Time
	sweepEvery time.Duration
	// minRemoval is the shortest removal delay recorded (0: none), which
	// sets sweepEvery. Only a full walk raises it again, so a middleware
	// gone since can only make the sweep come sooner.
	minRemoval time.Duration
	// watched holds one context for each cancellation signal (Done channel)
	// an instance was recorded with. Traefik gives every router of one
	// configuration the same signal (its contexts are values over one
	// cancellable context), so this is a handful of entries however many
	// routers there are, and while none has fired no instance can have
	// been cancelled. lastDone, if not nil, is in watched.
	watched  map[<-chan struct{}]context.Context
	lastDone <-chan struct{}
	// empty are the middlewares the last walk left without a live instance,
	// waiting out their removal delay. emptyFrom and emptyDelay are the
	// earliest emptySince and the shortest removal delay among them: until
	// those have passed, none of them can be due.
	empty      []emptyMiddleware
	emptyFrom  time.Time
	emptyDelay time.Duration
	node       string
	boot       string
	client     *http.Client
}

// destination is one sidecar (URL and token) and what it has been told.
// Every middleware pointing at it is tracked here.
//
// One token per destination: the token is the one recorded first for the
// URL, that is, the token of tokenFrom, the middleware recorded first and
// still live. Another middleware naming the same URL with another token (or
// none) does not change it; the mismatch is logged once, as a failure. Only
// tokenFrom's own configuration can change the token (the operator rotating
// it), and when tokenFrom is gone the oldest remaining middleware's token
// takes over. Otherwise one middleware without a token (or with a wrong
// one) would strip the token from every push to that sidecar.
type destination struct {
	url string
	// shown is url with its userinfo redacted, for the log.
	shown        string
	token        string
	tokenFrom    string // the middleware whose token this is
	checkToken   bool   // a recorded token differs: compare once the burst is recorded
	mismatchLog  bool   // the mismatch was logged
	resync       time.Duration
	middlewares  map[string]*liveMiddleware
	pending      map[string]bool // names changed since the last delivered push
	pendingSince time.Time
	needFull     bool
	seq          uint64
	nextResync   time.Time
	nextBeat     time.Time
	retryAt      time.Time
	backoff      time.Duration
	failing      bool
	emptySince   time.Time
}

type liveMiddleware struct {
	name         string
	cfg          *Config // replaced whole, never changed in place
	instances    []context.Context
	since        time.Time
	emptySince   time.Time
	removalDelay time.Duration
}

func newRegistry() *registry {
	node, err := os.Hostname()
	if err != nil || node == "" {
		node = "unknown"
	}
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		// Uniqueness per process is all Boot needs; the clock gives that too.
		return &registry{dests: map[string]*destination{}, wake: make(chan struct{}, 1), node: node,
			boot: fmt.Sprintf("t%x", time.Now().UnixNano()), client: &http.Client{Timeout: pushTimeout}}
	}
	return &registry{
		dests:  map[string]*destination{},
		wake:   make(chan struct{}, 1),
		node:   node,
		boot:   hex.EncodeToString(b[:]),
		client: &http.Client{Timeout: pushTimeout},
	}
}

// emptyMiddleware is a middleware without a live instance, and where it is.
type emptyMiddleware struct {
	d *destination
	m *liveMiddleware
}

// arrival is one New call, recorded as is: New must cost a reload as
// little as it can under the interpreter, so the sender does the rest.
type arrival struct {
	ctx    context.Context
	name   string
	cfg    *Config
	timing timing
	at     time.Time
}

// arrive queues one New call for the sender and wakes it. It never blocks
// on the network or on the sender's work.
func (r *registry) arrive(a arrival) {
	r.mu.Lock()
	// Stamped under the lock, arrivals are in time order: the sender takes
	// the last one's time for the newest without comparing them all.
	a.at = time.Now()
	r.arrivals = append(r.arrivals, a)
	first := len(r.arrivals) == 1
	r.mu.Unlock()
	// Only the first call of a burst wakes the sender: it then waits for
	// the burst to end by itself. The waking is a function of its own, as
	// New is (see New): its statements run once a burst, their slots would
	// be allocated on every call.
	if first {
		r.wakeSender()
	}
}

// wakeSender starts the sender goroutine if it is not running yet, and
// wakes it.
func (r *registry) wakeSender() {
	r.mu.Lock()
	start := !r.running
	r.running = true
	r.mu.Unlock()
	if start {
		go r.run()
	}
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// recordAll applies a burst of arrivals. Most of a reload's are routers
// Traefik rebuilt with the configuration they had; for those only the
// instance is new, and recording it takes a few interpreted statements
// where record takes dozens: every statement is paid per router per
// reload. The caller holds r.mu.
func (r *registry) recordAll(arrivals []arrival) {
	var d *destination
	url := ""
	for i := range arrivals {
		a := &arrivals[i]
		if d == nil || a.cfg.SidecarURL != url {
			url = a.cfg.SidecarURL
			d = r.dests[url]
		}
		var m *liveMiddleware
		if d != nil {
			m = d.middlewares[a.name]
			// DeepEqual is one native call where the interpreted equal
			// costs ten times more; equal still decides what DeepEqual
			// calls different (a nil list against an empty one).
			if m != nil && (reflect.DeepEqual(m.cfg, a.cfg) || m.cfg.equal(a.cfg)) {
				// Its token, intervals and destination are those
				// already recorded, and a middleware with an instance
				// keeps its destination from emptying.
				m.instances = append(m.instances, a.ctx)
				m.emptySince = time.Time{}
				done := a.ctx.Done()
				if done != r.lastDone {
					r.watch(a.ctx, done)
				}
				continue
			}
		}
		d = r.record(a, d, m)
	}
}

// record applies an arrival whose middleware is new or whose configuration
// changed, and returns its destination. d and m are the arrival's
// destination and middleware, nil if there is none yet. Traefik makes a new
// configuration for every New and never touches it again, so a shallow copy
// is enough; it is not normalized here (the sidecar does that with every
// push). The caller holds r.mu.
func (r *registry) record(a *arrival, d *destination, m *liveMiddleware) *destination {
	cfg := new(Config)
	*cfg = *a.cfg
	name, now := a.name, a.at
	removal, resync := a.timing.removal, a.timing.resync
	// One destination per sidecar URL: the sidecar knows this process by
	// (node, boot), so two senders to one URL would overwrite each other.
	if d == nil {
		d = &destination{
			url:         cfg.SidecarURL,
			shown:       redactURL(cfg.SidecarURL),
			token:       cfg.Token,
			tokenFrom:   name,
			resync:      resync,
			middlewares: map[string]*liveMiddleware{},
			pending:     map[string]bool{},
			needFull:    true,
		}
		r.dests[cfg.SidecarURL] = d
	}
	if d.tokenFrom == "" {
		// Every middleware had gone; this one is now the first recorded.
		d.tokenFrom = name
		d.token = cfg.Token
	}
	if cfg.Token != d.token {
		// The first recorded token stands; only its own middleware can
		// change it (a rotation), and whether the others then agree is
		// known only once the whole burst is recorded.
		if name == d.tokenFrom {
			d.token = cfg.Token
		}
		d.checkToken = true
	}
	d.emptySince = time.Time{}
	// The shortest interval any middleware asks for wins, so none waits longer than it wants.
	if resync < d.resync {
		d.resync = resync
	}
	if m == nil {
		m = &liveMiddleware{name: name, since: now}
		d.middlewares[name] = m
	}
	m.cfg = cfg
	d.markPending(name, now)
	m.removalDelay = removal
	if r.minRemoval == 0 || removal < r.minRemoval {
		r.minRemoval = removal
	}
	m.emptySince = time.Time{}
	// Cancelled instances are left to the sweep, which prunes them all at
	// once when their signal fires.
	m.instances = append(m.instances, a.ctx)
	done := a.ctx.Done()
	if done != r.lastDone {
		r.watch(a.ctx, done)
	}
	return d
}

// watch notes the cancellation signal of a recorded instance. Arrivals
// come in runs that share one, so the caller compares it with lastDone
// first and the map is seldom consulted.
func (r *registry) watch(ctx context.Context, done <-chan struct{}) {
	r.lastDone = done
	if done == nil {
		return // never cancelled
	}
	if r.watched == nil {
		r.watched = map[<-chan struct{}]context.Context{}
	}
	if _, ok := r.watched[done]; !ok {
		r.watched[done] = ctx
	}
}

// signalled drops the cancellation signals that have fired from watched
// and reports whether there were any.
func (r *registry) signalled() bool {
	fired := false
	for done, ctx := range r.watched {
		if ctx.Err() != nil {
			delete(r.watched, done)
			fired = true
		}
	}
	if fired {
		// lastDone may be gone from watched: an instance recorded later
		// with that signal must be watched again, or never be pruned.
		r.lastDone = nil
	}
	return fired
}

// anySignalled is signalled without forgetting: the sweep must still see
// the signal to prune.
func (r *registry) anySignalled() bool {
	for _, ctx := range r.watched {
		if ctx.Err() != nil {
			return true
		}
	}
	return false
}

func (d *destination) markPending(name string, now time.Time) {
	if len(d.pending) == 0 {
		d.pendingSince = now
	}
	d.pending[name] = true
}

func pruneDone(ctxs []context.Context) []context.Context {
	live := ctxs[:0]
	for _, c := range ctxs {
		if c.Err() == nil {
			live = append(live, c)
		}
	}
	for i := len(live); i < len(ctxs); i++ {
		ctxs[i] = nil
	}
	return live
}

// run is the one sender goroutine. It lives as long as the process, as the
// interpreter does, and must never die: a panic here would take Traefik down.
func (r *registry) run() {
	timer := time.NewTimer(minTick)
	for {
		select {
		case <-r.wake:
		case <-timer.C:
		}
		next := r.stepSafely(time.Now())
		if !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
		timer.Reset(next)
	}
}

func (r *registry) stepSafely(now time.Time) (next time.Duration) {
	defer func() {
		if p := recover(); p != nil {
			logFailure("sender recovered from panic: %v", p)
			next = maxTick
		}
	}()
	return r.step(now)
}

// outgoing is a push prepared under the lock and encoded and sent without
// it, so that New never waits on encoding thousands of middlewares.
type outgoing struct {
	dest  *destination
	push  Push
	url   string
	token string
}

// step sends what is due and says when to look again. It sweeps for
// cancelled instances only on its own schedule: a reload calls New for every
// router, each call wakes the sender, and sweeping every instance on every
// wake would cost the square of the router count.
func (r *registry) step(now time.Time) time.Duration {
	var sends []outgoing

	r.mu.Lock()
	if n := len(r.arrivals); n > 0 {
		// A reload calls New for every router within moments: recording
		// them meanwhile would take the interpreter's time on the other
		// core from the reload itself. Wait for the burst to end (or
		// grow old), then record it at once.
		if last := r.arrivals[n-1].at; now.Sub(last) < burstQuiet && now.Sub(r.arrivals[0].at) < burstMax {
			r.mu.Unlock()
			return burstQuiet
		}
		r.lastNew = r.arrivals[n-1].at
		r.recordAll(r.arrivals)
		// Dropped whole rather than cleared one by one: the next burst
		// grows a new one natively.
		r.arrivals = nil
	}
	if !now.Before(r.nextSweep) {
		r.sweepEvery = r.sweep(now)
		r.nextSweep = now.Add(r.sweepEvery)
	}
	for _, d := range r.dests {
		if d.checkToken {
			d.checkToken = false
			d.checkTokens()
		}
	}
	tick := r.nextSweep.Sub(now)
	for _, d := range r.dests {
		if r.dropIfAbandoned(d, now) {
			continue
		}
		out, ok, wait := r.prepare(d, now)
		if ok {
			sends = append(sends, out)
		}
		if wait > 0 && wait < tick {
			tick = wait
		}
	}
	r.mu.Unlock()

	for _, out := range sends {
		if r.deliver(out, now) {
			tick = minTick
		}
	}
	if tick < minTick {
		tick = minTick
	}
	return tick
}

// sweep drops cancelled instances and reports middlewares whose last
// instance has been gone for their removal delay. It returns how soon to
// sweep again: a quarter of the shortest removal delay, within bounds.
//
// It walks every instance only when a cancellation signal has fired since
// it last looked; otherwise no instance can have been cancelled, and only
// the middlewares already empty can be due, once the bounds allow. At
// 10,000 routers a walk costs the interpreter tens of milliseconds, and
// the sweep runs every 500 ms, idle or not, through a reload that lasts
// twenty seconds.
func (r *registry) sweep(now time.Time) time.Duration {
	if r.signalled() {
		r.walkAll(now)
	} else if len(r.empty) > 0 && r.mayRemove(now) {
		r.walkEmpty(now)
	}
	every := maxTick
	if r.minRemoval > 0 && r.minRemoval/4 < every {
		every = r.minRemoval / 4
	}
	if every < minTick {
		every = minTick
	}
	return every
}

// walkAll prunes every middleware's cancelled instances and collects those
// left without one.
func (r *registry) walkAll(now time.Time) {
	r.empty = nil
	r.minRemoval = 0
	// The bounds of empty, kept as it fills: those found empty now are
	// the latest. (Plain statements, no tuples: Yaegi v0.16 mis-assigns
	// some, and wrong bounds would go unseen, costing only walks.)
	from := now
	var delay time.Duration
	for _, d := range r.dests {
		for _, m := range d.middlewares {
			m.instances = pruneDone(m.instances)
			if len(m.instances) == 0 {
				if m.emptySince.IsZero() {
					// Found empty just now: not due before its
					// removal delay, which is never zero.
					m.emptySince = now
				} else if r.expire(d, m, now) {
					continue
				} else if m.emptySince.Before(from) {
					from = m.emptySince
				}
				if delay == 0 || m.removalDelay < delay {
					delay = m.removalDelay
				}
				r.empty = append(r.empty, emptyMiddleware{d: d, m: m})
			}
			if r.minRemoval == 0 || m.removalDelay < r.minRemoval {
				r.minRemoval = m.removalDelay
			}
		}
	}
	r.emptyFrom = from
	r.emptyDelay = delay
}

// walkEmpty goes over the middlewares the last walk left empty: those
// recorded again since are live, the others may be due.
func (r *registry) walkEmpty(now time.Time) {
	kept := r.empty[:0]
	for _, e := range r.empty {
		if len(e.m.instances) == 0 && !r.expire(e.d, e.m, now) {
			kept = append(kept, e)
		}
	}
	for i := len(kept); i < len(r.empty); i++ {
		r.empty[i] = emptyMiddleware{}
	}
	r.empty = kept
	for i, e := range r.empty {
		if i == 0 || e.m.emptySince.Before(r.emptyFrom) {
			r.emptyFrom = e.m.emptySince
		}
		if i == 0 || e.m.removalDelay < r.emptyDelay {
			r.emptyDelay = e.m.removalDelay
		}
	}
}

// mayRemove tells whether a middleware of empty may be due: expire's
// conditions for one emptied at emptyFrom with a delay of emptyDelay, which
// none of them can meet sooner.
func (r *registry) mayRemove(now time.Time) bool {
	empty := now.Sub(r.emptyFrom)
	return empty >= r.emptyDelay && (now.Sub(r.lastNew) >= r.emptyDelay || empty >= removalHold*r.emptyDelay)
}

// expire removes m, which has no live instance, once that has lasted its
// removal delay, and reports whether it did.
func (r *registry) expire(d *destination, m *liveMiddleware, now time.Time) bool {
	if m.emptySince.IsZero() {
		m.emptySince = now
	}
	// Traefik cancels every old instance before it builds the first new
	// one; at 10,000 routers the rebuild outlasts the delay, and a
	// middleware it has not reached yet is not gone. While New keeps being
	// called, a removal waits, though not without end for a Traefik that
	// never stops reloading.
	empty := now.Sub(m.emptySince)
	quiet := now.Sub(r.lastNew) >= m.removalDelay || empty >= removalHold*m.removalDelay
	if empty < m.removalDelay || !quiet {
		return false
	}
	delete(d.middlewares, m.name)
	d.markPending(m.name, now)
	if m.name == d.tokenFrom {
		d.tokenFromOldest()
	}
	return true
}

// dropIfAbandoned forgets a destination that has had no middleware for a
// whole resync interval and has been told so, or cannot be told: the
// sidecar forgets a silent process by itself, so retrying forever to a
// sidecar nobody points at would only leak.
func (r *registry) dropIfAbandoned(d *destination, now time.Time) bool {
	if len(d.middlewares) > 0 {
		return false
	}
	if d.emptySince.IsZero() {
		d.emptySince = now
		return false
	}
	delivered := !d.needFull && len(d.pending) == 0
	if now.Sub(d.emptySince) < d.resync || (!delivered && !d.failing) {
		return false
	}
	delete(r.dests, d.url)
	return true
}

// prepare builds the push due for d, if any, and marks what it carries as in
// flight. Otherwise it may say how long until one is due.
func (r *registry) prepare(d *destination, now time.Time) (outgoing, bool, time.Duration) {
	if now.Before(d.retryAt) {
		return outgoing{}, false, d.retryAt.Sub(now)
	}
	// A burst of New calls (a reload) is still arriving: send it whole.
	if len(d.pending) > 0 {
		if wait := batchWindow - now.Sub(d.pendingSince); wait > 0 {
			return outgoing{}, false, wait
		}
	}
	resyncDue := !now.Before(d.nextResync)
	beatDue := !now.Before(d.nextBeat)
	if !d.needFull && !resyncDue && !beatDue && len(d.pending) == 0 {
		wait := d.nextResync.Sub(now)
		if beat := d.nextBeat.Sub(now); beat < wait {
			wait = beat
		}
		return outgoing{}, false, wait
	}
	full := d.needFull || resyncDue
	d.seq++
	push := Push{
		Node:             r.node,
		Boot:             r.boot,
		Seq:              d.seq,
		Full:             full,
		ResyncSeconds:    atLeastOneSecond(d.resync),
		HeartbeatSeconds: atLeastOneSecond(d.heartbeat()),
	}
	// Pushes list middlewares by name. The names are sorted natively: a
	// sort.Slice on the push would call an interpreted comparison some
	// n log n times, which at 3,000 routers cost more than all the rest of
	// a full push.
	var names []string
	if full {
		names = make([]string, 0, len(d.middlewares))
		for name := range d.middlewares {
			names = append(names, name)
		}
	} else {
		for name := range d.pending {
			if _, ok := d.middlewares[name]; ok {
				names = append(names, name)
			} else {
				push.Removed = append(push.Removed, name)
			}
		}
		sort.Strings(push.Removed)
	}
	sort.Strings(names)
	// The sweep prunes cancelled instances only on its schedule; a push
	// counts none of those cancelled since.
	stale := len(names) > 0 && r.anySignalled()
	push.Middlewares = make([]LiveMiddleware, 0, len(names))
	for _, name := range names {
		m := d.middlewares[name]
		if stale {
			m.instances = pruneDone(m.instances)
		}
		push.Middlewares = append(push.Middlewares, m.live())
	}
	// What is in flight is no longer pending; if it is not delivered, the
	// next push is a full one and carries it again.
	d.pending = map[string]bool{}
	d.needFull = false
	if full {
		d.nextResync = now.Add(d.resync)
	}
	// Any push proves this process alive; the next heartbeat counts from it.
	d.nextBeat = now.Add(d.heartbeat())
	return outgoing{dest: d, push: push, url: d.url, token: d.token}, true, 0
}

// tokenFromOldest hands the token to the oldest live middleware (by first
// sighting, then name) once the one it came from is gone.
func (d *destination) tokenFromOldest() {
	var oldest *liveMiddleware
	for _, m := range d.middlewares {
		if oldest == nil || m.since.Before(oldest.since) || (m.since.Equal(oldest.since) && m.name < oldest.name) {
			oldest = m
		}
	}
	if oldest == nil {
		d.tokenFrom = "" // the next middleware recorded sets it
		return
	}
	d.tokenFrom = oldest.name
	if oldest.cfg.Token != d.token {
		d.token = oldest.cfg.Token
		d.checkToken = true
	}
}

// checkTokens logs, once per destination, a middleware whose token is not
// the destination's. It names the middlewares, never a token.
func (d *destination) checkTokens() {
	if d.mismatchLog {
		return
	}
	odd := ""
	for name, m := range d.middlewares {
		if m.cfg.Token != d.token && (odd == "" || name < odd) {
			odd = name
		}
	}
	if odd == "" {
		return
	}
	d.mismatchLog = true
	logFailure("middleware %s names sidecar %s with a token other than %s's, the first recorded for it; every push there uses %s's (one token per sidecar URL)",
		odd, d.shown, d.tokenFrom, d.tokenFrom)
}

// heartbeat is heartbeatEvery, or the resync interval when that is shorter.
func (d *destination) heartbeat() time.Duration {
	if d.resync < heartbeatEvery {
		return d.resync
	}
	return heartbeatEvery
}

func atLeastOneSecond(d time.Duration) int {
	if s := int(d / time.Second); s > 1 {
		return s
	}
	return 1
}

func (m *liveMiddleware) live() LiveMiddleware {
	return LiveMiddleware{Name: m.name, Instances: len(m.instances), Since: m.since, Config: *m.cfg}
}

// deliver sends one push and records the outcome. It reports whether the
// sender should step again at once: a delta refused with 409 means the
// sidecar lost track of this process, and the full set must follow now,
// not after a backoff or the next sweep (up to maxTick away).
func (r *registry) deliver(out outgoing, now time.Time) (again bool) {
	err := r.post(out)
	r.mu.Lock()
	defer r.mu.Unlock()
	d := out.dest
	if err == nil {
		if d.failing {
			logRoutine("pushes to %s delivered again", d.shown)
		}
		d.failing = false
		d.backoff = 0
		d.retryAt = time.Time{}
		return false
	}
	d.needFull = true
	if err == errNeedFull && !out.push.Full {
		return true // the sidecar lost track of us; resend everything at once
	}
	// A full push refused with 409 is not the sidecar's protocol: answering
	// it at once again would spin, so it backs off as any failure does.
	d.backoff *= 2
	if d.backoff == 0 {
		d.backoff = firstBackoff
	}
	if d.backoff > maxBackoff {
		d.backoff = maxBackoff
	}
	d.retryAt = now.Add(d.backoff)
	if !d.failing {
		logFailure("push to %s failed, retrying with backoff: %v", d.shown, err)
	}
	d.failing = true
	return false
}

// Traefik v3.6.12 interprets the plugin with Stdout set to its log at debug
// level and Stderr to its log at error level (pkg/plugins/middlewareyaegi.go).
// Yaegi sends fmt.Print* to the one and the log package to the other; it does
// not redirect os.Stdout and os.Stderr (Traefik's writers are not files and
// YAEGI_SPECIAL_STDIO is unset; interp/use.go, fixStdlib), so a
// log.Logger on those would bypass Traefik's log. Routine news and recoveries
// (a sidecar restart is not an error) therefore go through fmt, and only a
// failure through log. Compiled, they are the process's stdout and stderr.
func logRoutine(format string, args ...interface{}) {
	fmt.Printf("traefik-sd plugin: "+format+"\n", args...)
}

func logFailure(format string, args ...interface{}) {
	log.Printf("traefik-sd plugin: "+format, args...)
}

var errNeedFull = errors.New("sidecar asked for a full push")

// redactURL is raw for the log: a password in it becomes xxxxx, a user
// without one (a token) becomes xxxxx. net/http's own errors already hide
// the password (as ***).
func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(a sidecar URL that does not parse)"
	}
	if u.User == nil {
		return raw
	}
	if _, ok := u.User.Password(); ok {
		return u.Redacted()
	}
	u.User = url.User("xxxxx")
	return u.String()
}

func (r *registry) post(out outgoing) error {
	// Configurations are replaced whole, never changed in place, so the
	// snapshot taken under the lock can be encoded without it.
	body, err := json.Marshal(out.push)
	if err != nil {
		return fmt.Errorf("encoding push: %v", err)
	}
	req, err := http.NewRequest(http.MethodPost, out.url+SyncPath, bytes.NewReader(body))
	if err != nil {
		return errors.New("the sidecar URL does not make a request") // its error would quote the URL
	}
	req.Header.Set("Content-Type", "application/json")
	if out.token != "" {
		req.Header.Set("Authorization", "Bearer "+out.token)
	}
	resp, err := r.client.Do(req)
	if err != nil {
		return err
	}
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	resp.Body.Close()
	switch {
	case resp.StatusCode == http.StatusConflict:
		return errNeedFull
	case resp.StatusCode/100 != 2:
		return fmt.Errorf("%s: %s", resp.Status, bytes.TrimSpace(msg))
	}
	return nil
}
