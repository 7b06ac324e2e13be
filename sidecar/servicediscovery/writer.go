package servicediscovery

import (
	"context"
	"fmt"
	"sort"
	"time"

	"github.com/traefik-sd/traefik-sd/sidecar/targets"

	"github.com/traefik-sd/traefik-sd/sidecar/retry"
)

// Write is one entry to write whole; Old is what this writer last wrote
// under the same id, if anything (a store may need it to drop what the new
// version no longer has).
type Write struct {
	Record
	Old *Entry
}

// Store is one ServiceDiscovery backend.
type Store interface {
	// Name names the backend in metrics and logs ("etcd", "redis").
	Name() string
	// Prepare runs before each sync; fresh says the store no longer holds
	// what was written (an etcd lease lost, another Redis server), so every
	// entry is written again and a Sweeper is swept again.
	Prepare(ctx context.Context) (fresh bool, err error)
	// Put writes entries, each one whole and atomically.
	Put(ctx context.Context, writes []Write) error
	// Delete removes entries at once.
	Delete(ctx context.Context, entries []Entry) error
	// Withdraw removes what this writer wrote, on a clean stop.
	Withdraw(ctx context.Context, entries []Entry)
}

// Sweeper is a store whose entries outlive their writer for a while (Redis
// keys live out their TTL): after a restart, entries the previous run wrote
// and the current set no longer has are removed once, at the first sync.
type Sweeper interface {
	// Sweep removes the entries of the groups for which stale says true.
	Sweep(ctx context.Context, groups []string, stale func(group, id string, labels map[string]string) bool) (removed int, err error)
}

// Writer keeps a store in step with the targets it is given. One
// goroutine owns it (Run).
type Writer struct {
	Store   Store
	Version string
	// Heartbeat is how often every entry is rewritten whole with a fresh
	// last_heartbeat: well inside the Manager's 300 s sweep (etcd) and the
	// 180 s TTL (Redis).
	Heartbeat time.Duration
	// Authority and Node say which entries are this sidecar's when a
	// Sweeper is swept: routes of this worker, and this node's Traefik.
	Authority, Node string
	// Timeout bounds each store call.
	Timeout time.Duration
	// Now is the clock (time.Now if nil).
	Now func() time.Time
	// OnError, OnSync, OnWritten, OnUnwritable and OnSwept report to the owner
	// (metrics, logs); each may be nil.
	OnError      func(err error)
	OnSync       func(entries int)
	OnWritten    func()
	OnUnwritable func(t targets.Target, err error)
	OnSwept      func(removed int)

	registered map[string]float64 // id -> registration_time
	written    map[string]Entry   // what the store holds of ours, by id
	want       map[string]Entry
	set        bool // SetTargets was called: want is a published set
	swept      bool
}

// Run writes until ctx is done, then withdraws what it wrote. updates
// delivers the latest published set, whose targets it makes as it takes it.
func (w *Writer) Run(ctx context.Context, updates <-chan *targets.Frozen) {
	w.registered, w.written, w.want = map[string]float64{}, map[string]Entry{}, map[string]Entry{}
	heartbeat := time.NewTicker(w.Heartbeat)
	defer heartbeat.Stop()
	again := time.NewTimer(time.Hour)
	again.Stop()
	defer again.Stop()
	var backoff retry.Backoff
	defer w.withdraw()
	for {
		select {
		case <-ctx.Done():
			return
		case set := <-updates:
			w.SetTargets(set.Targets())
		case <-heartbeat.C:
			w.written = map[string]Entry{} // rewrite every entry whole, with a fresh heartbeat
		case <-again.C:
		}
		err := w.Sync(ctx)
		switch {
		case err != nil && ctx.Err() != nil:
			return
		case err != nil:
			if w.OnError != nil {
				w.OnError(err)
			}
			again.Reset(backoff.Failed())
		default:
			backoff.Succeeded()
			if w.OnWritten != nil {
				w.OnWritten()
			}
		}
	}
}

// SetTargets sets the wanted entries from the published set.
func (w *Writer) SetTargets(ts []targets.Target) {
	want := make(map[string]Entry, len(ts))
	for _, t := range ts {
		if !Groups[t.Label("service_group")] {
			continue
		}
		e, err := EntryOf(t, w.Version)
		if err != nil {
			if w.OnUnwritable != nil {
				w.OnUnwritable(t, err)
			}
			continue
		}
		want[e.ID] = e
	}
	w.want, w.set = want, true
	if w.OnSync != nil {
		w.OnSync(len(want))
	}
}

func (w *Writer) now() float64 {
	now := time.Now
	if w.Now != nil {
		now = w.Now
	}
	return float64(now().UnixNano()) / 1e9
}

func (w *Writer) call(ctx context.Context) (context.Context, context.CancelFunc) {
	t := w.Timeout
	if t <= 0 {
		t = 10 * time.Second
	}
	return context.WithTimeout(ctx, t)
}

// Sync writes the entries that differ from what was written, whole, and
// deletes the ones no longer wanted.
func (w *Writer) Sync(ctx context.Context) error {
	if w.written == nil {
		w.registered, w.written = map[string]float64{}, map[string]Entry{}
	}
	cctx, cancel := w.call(ctx)
	defer cancel()
	fresh, err := w.Store.Prepare(cctx)
	if err != nil {
		return fmt.Errorf("%s store: %w", w.Store.Name(), err)
	}
	if fresh {
		// What was deleted may be back too (a delete the old Redis master
		// took and its successor never saw): the sweep finds it.
		w.written, w.swept = map[string]Entry{}, false
	}
	now := w.now()
	ids := make([]string, 0, len(w.want))
	for id := range w.want {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	var writes []Write
	for _, id := range ids {
		e := w.want[id]
		var old *Entry
		if o, ok := w.written[id]; ok {
			if o.Equal(e) {
				continue
			}
			old = &o
		}
		reg, ok := w.registered[id]
		if !ok {
			reg = now
			w.registered[id] = reg
		}
		writes = append(writes, Write{Record: Record{Entry: e, Health: Health{RegistrationTime: reg, LastHeartbeat: now}}, Old: old})
	}
	if len(writes) > 0 {
		if err := w.Store.Put(cctx, writes); err != nil {
			return fmt.Errorf("writing %d entries to the %s store: %w", len(writes), w.Store.Name(), err)
		}
		for _, wr := range writes {
			w.written[wr.ID] = wr.Entry
		}
	}
	var gone []Entry
	for id, e := range w.written {
		if _, ok := w.want[id]; !ok {
			gone = append(gone, e)
		}
	}
	if len(gone) > 0 {
		sort.Slice(gone, func(i, j int) bool { return gone[i].ID < gone[j].ID })
		if err := w.Store.Delete(cctx, gone); err != nil {
			return fmt.Errorf("deleting %d entries from the %s store: %w", len(gone), w.Store.Name(), err)
		}
		for _, e := range gone {
			delete(w.written, e.ID)
			delete(w.registered, e.ID)
		}
	}
	return w.sweep(cctx)
}

// sweep removes, once, the entries an earlier run of this sidecar left in
// a store whose entries outlive their writer: ours (this worker's routes,
// this node's Traefik) and no longer wanted.
func (w *Writer) sweep(ctx context.Context) error {
	s, ok := w.Store.(Sweeper)
	if !ok || w.swept || !w.set {
		return nil
	}
	groups := make([]string, 0, len(Groups))
	for g := range Groups {
		groups = append(groups, g)
	}
	sort.Strings(groups)
	removed, err := s.Sweep(ctx, groups, func(group, id string, labels map[string]string) bool {
		if _, wanted := w.want[id]; wanted || labels["worker_authority"] != w.Authority {
			return false
		}
		return group != targets.GroupTraefik || labels["worker_node"] == w.Node
	})
	if err != nil {
		return fmt.Errorf("sweeping what an earlier run left in the %s store: %w", w.Store.Name(), err)
	}
	w.swept = true
	if w.OnSwept != nil {
		w.OnSwept(removed)
	}
	return nil
}

func (w *Writer) withdraw() {
	entries := make([]Entry, 0, len(w.written))
	for _, e := range w.written {
		entries = append(entries, e)
	}
	sort.Slice(entries, func(i, j int) bool { return entries[i].ID < entries[j].ID })
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	w.Store.Withdraw(ctx, entries)
}
