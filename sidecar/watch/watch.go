// Package watch follows a key prefix in etcd: it lists the prefix at a
// revision, then watches from the next one. Any watch error (compaction
// included), a closed watch channel or a failed list ends in a fresh list
// after a backoff, so a consumer sees either the whole prefix or changes that
// follow it, never a half-applied state.
//
// With Ranges, only those parts of the prefix are read, each a range and a
// watch of its own, all at one revision: an etcd role can grant them and
// not the rest (etcd refuses a read or a watch of a range that its grants do
// not cover whole). One transaction's changes in two ranges then come as
// two batches of the same revision.
package watch

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/traefik-sd/traefik-sd/sidecar/retry"
	"github.com/traefik-sd/traefik-sd/sidecar/source"
)

// The messages of the etcd source (package source).
type (
	Event  = source.EtcdEvent
	Events = source.EtcdEvents
	Batch  = source.EtcdBatch
	Status = source.EtcdStatus
	Report = source.EtcdReport
	// KeyRange is a range of keys below the prefix (Batch.Listed).
	KeyRange = source.KeyRange
)

// Watcher lists and watches Prefix.
type Watcher struct {
	Client *clientv3.Client
	// Prefix is the root key, e.g. traefik/worker_worker-1; "/" is appended.
	Prefix string
	// Ranges, when set, are the only parts of the prefix read: key prefixes
	// below it, such as "http/routers/". They must not overlap.
	Ranges []string
	// Timeout bounds each list call.
	Timeout time.Duration
	// ProgressInterval is how often a quiet watch is asked for progress.
	ProgressInterval time.Duration
	// PageSize, SplitEvery and CountEvery override the listing sizes (tests).
	PageSize, SplitEvery, CountEvery int
	// Findable says whether the consumer can find a key it holds by the
	// key's text, which a re-list's listing of a range (Batch.Listed)
	// needs to tell what the range lost. Once a key that is not has been
	// handed out, a re-list after a deletion lists the prefix whole, until
	// a whole listing without one. Nil: every key is.
	Findable func(rel string) bool

	// splits are keys of the last listing, SplitEvery apart; listed is how
	// many keys it had. The next listing uses both (only Run and List,
	// called from one goroutine, touch them). marks are its keys
	// CountEvery apart, the finer ranges a re-list counts.
	splits, marks []string
	listed        int
	// since holds, for each watched range, the revision through which the
	// keys handed out are etcd's: the last listing's, then its watch's (nil:
	// none, or a listing failed half way). held[i] counts the keys handed out
	// between marks[i-1] and marks[i]. With both, Relist reads only what
	// changed.
	since   []int64
	held    []int
	history history
	// unfindable: a key Findable refuses was handed out since the last
	// whole listing began.
	unfindable bool
	// counted is the keys etcd counted for the listings' reads (tests).
	counted atomic.Int64
}

// Run follows the prefix until ctx is done. Every send also selects on ctx.
func (w *Watcher) Run(ctx context.Context, out chan<- Report) {
	var backoff retry.Backoff
	report := func(s Status) {
		select {
		case out <- Report{Status: &s}:
		case <-ctx.Done():
		}
	}
	for ctx.Err() == nil {
		rev, err := w.relist(ctx, out)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			report(Status{Err: fmt.Errorf("listing %s: %w", w.Prefix, err)})
			sleep(ctx, backoff.Failed())
			continue
		}
		backoff.Succeeded()
		report(Status{Connected: true, Revision: rev})
		err = w.follow(ctx, rev, out)
		if ctx.Err() != nil {
			return
		}
		report(Status{Err: err, Relist: true, Compacted: errors.Is(err, errCompacted)})
		sleep(ctx, backoff.Failed())
	}
}

var errCompacted = errors.New("watch revision compacted")

func (w *Watcher) prefix() string { return w.Prefix + "/" }

func (w *Watcher) relist(ctx context.Context, out chan<- Report) (int64, error) {
	return w.Relist(ctx, func(b Batch) error {
		select {
		case out <- Report{Batch: &b}:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	})
}

// Listing sizes. etcd answers every limited range request with the count
// of the whole range, which it walks in its index (3.4 also reads the rest
// of the range for the limit), so paging one range of n keys costs
// n²/(2·page) index steps: at 2 million keys in pages of 10,000, counting
// alone is most of the time. So each listing remembers a key every
// SplitEvery keys, and the next listing asks for the bounded ranges between
// them: each page then counts only its own range, and the cost is linear.
const (
	// PageSize bounds the keys of one response (about 6 MB of a Backend.AI
	// tree); a range between splits is rarely larger.
	PageSize = 50000
	// SplitEvery is how many keys a listing puts between two splits.
	SplitEvery = 50000
	// CountEvery is how many keys a listing puts between two marks (no
	// more than SplitEvery): a re-list reads what changed a range between
	// marks at a time, and lists whole each that lost a key. A Backend.AI
	// circuit's keys lie in three or four such ranges (its middlewares,
	// router and service); finer ranges cost a request each.
	CountEvery = 5000
)

// List reads the whole prefix at one revision and returns it as one batch.
func (w *Watcher) List(ctx context.Context) (Batch, error) {
	var whole Batch
	_, err := w.ListPages(ctx, func(b Batch) error {
		whole.Events = append(whole.Events, b.Events...)
		whole.Revision, whole.Received = b.Revision, b.Received
		return nil
	})
	if err != nil {
		return Batch{}, err
	}
	whole.Snapshot = true
	return whole, nil
}

// ListPages reads the whole prefix at one revision, a page at a time (as
// etcd's mirror syncer does), and hands each page to emit as a snapshot
// batch (More on all but the last, Part counting from 0), in key order, as
// it arrives: the consumer compares each page with what it holds, so a
// re-list of millions of keys holds a few pages, not the whole tree beside
// the state it replaces. Each page has its own timeout; an error from emit
// ends the listing. It returns the listing's revision.
func (w *Watcher) ListPages(ctx context.Context, emit func(Batch) error) (int64, error) {
	every := w.SplitEvery
	if every <= 0 {
		every = SplitEvery
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	p := w.prefix()
	spans := w.spans(w.splits)
	// A listing that fails half way leaves the consumer holding part of it.
	w.since, w.held = nil, nil
	w.unfindable = false
	// Which etcd history the listing reads, asked before it (see history).
	before := w.historyNow(ctx)
	pages := newPagePool()
	// Each span is read by a goroutine of its own into a short queue,
	// started as the one before it is emitted, so that etcd reads the next
	// range while this process compares the last; the queue bounds what
	// waits to a few pages.
	type page struct {
		*rangePage
		rev int64
		err error
	}
	read := func(s span, rev int64) <-chan page {
		ch := make(chan page, 1)
		go func() {
			defer close(ch)
			_, err := w.readRange(ctx, s.key, s.end, rev, pages, func(pg *rangePage, rev int64) bool {
				select {
				case ch <- page{rangePage: pg, rev: rev}:
					return true
				case <-ctx.Done():
					return false
				}
			})
			if err != nil {
				select {
				case ch <- page{err: err}:
				case <-ctx.Done():
				}
			}
		}()
		return ch
	}
	count := w.CountEvery
	if count <= 0 {
		count = CountEvery
	}
	count = min(count, every)
	var (
		rev           int64
		splits, marks []string
		listed        int
		part          int
		ready         *Batch // the last page read, emitted once the next says whether more follow
	)
	send := func(b *Batch) error {
		if b == nil {
			return nil
		}
		b.Part, part = part, part+1
		return emit(*b)
	}
	// The first span fixes the revision: the next starts once it is known.
	queues := make([]<-chan page, len(spans))
	queues[0] = read(spans[0], 0)
	for r := range spans {
		for pg := range queues[r] {
			if pg.err != nil {
				return 0, pg.err
			}
			if rev == 0 {
				rev = pg.rev
			}
			if r+1 < len(spans) && queues[r+1] == nil {
				queues[r+1] = read(spans[r+1], rev)
			}
			if cap(pg.events) < len(pg.kvs) {
				pg.events = make(Events, 0, len(pg.kvs))
			}
			for _, kv := range pg.kvs {
				if listed > 0 && listed%count == 0 {
					marks = append(marks, string(kv.key))
				}
				if listed > 0 && listed%every == 0 {
					splits = append(splits, string(kv.key))
				}
				listed++
				pg.events = append(pg.events, Event{Key: alias(kv.key[len(p):]), Value: alias(kv.value)})
			}
			w.noteFindable(pg.events...)
			b := &Batch{Snapshot: true, More: true, Revision: rev, Events: pg.events, Release: pages.release(pg.rangePage)}
			b.Received = time.Now()
			if err := send(ready); err != nil {
				return 0, err
			}
			ready = b
		}
		if r+1 < len(spans) && queues[r+1] == nil {
			// The span's reading ended without a page (ctx ended): a
			// channel still, as ranging over nil would block; the check
			// below ends the listing.
			queues[r+1] = read(spans[r+1], rev)
		}
		if ctx.Err() != nil {
			return 0, ctx.Err()
		}
	}
	if ready == nil {
		ready = &Batch{Snapshot: true, Revision: rev, Received: time.Now()}
	}
	ready.More = false
	if err := send(ready); err != nil {
		return 0, err
	}
	w.splits, w.marks, w.listed = splits, marks, listed
	w.since, w.held = w.all(rev), heldAfterListing(len(marks), listed, count)
	w.history = before
	return rev, nil
}

// span is a key range [key, end).
type span struct{ key, end string }

// watched are the ranges read and watched: the whole prefix, or each of
// Ranges, in key order.
func (w *Watcher) watched() []span {
	p := w.prefix()
	if len(w.Ranges) == 0 {
		return []span{{p, clientv3.GetPrefixRangeEnd(p)}}
	}
	out := make([]span, 0, len(w.Ranges))
	for _, r := range w.Ranges {
		out = append(out, span{p + r, clientv3.GetPrefixRangeEnd(p + r)})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].key < out[j].key })
	return out
}

// spans are the watched ranges cut at splits, keys of the last listing.
func (w *Watcher) spans(splits []string) []span {
	var out []span
	for _, s := range w.watched() {
		for len(splits) > 0 && splits[0] <= s.key {
			splits = splits[1:]
		}
		for len(splits) > 0 && splits[0] < s.end {
			out = append(out, span{s.key, splits[0]})
			s.key, splits = splits[0], splits[1:]
		}
		out = append(out, s)
	}
	return out
}

// readRange pages through one range [key, end) at rev (0: the latest, which
// it returns), each page with its own timeout, and hands each page to got
// (false stops the reading).
//
// etcd answers every limited read with the count of its whole range, which
// it walks: paging a range of n keys costs n²/(2·page) steps, most of a
// first listing's time at millions of keys (later listings read between
// the splits the last one remembered). So while much of a range is left,
// readRange cuts it in two at the middle of its keys' byte values and reads
// the lower half first: each read counts only its own part, whatever the
// keys are, and the pages still come in key order.
func (w *Watcher) readRange(ctx context.Context, key, end string, rev int64, pages *pagePool, got func(*rangePage, int64) bool) (int64, error) {
	timeout, page := w.sizes()
	// after holds the ends of the upper halves still to read, the nearest
	// last: when [key, end) is done, [end, after[len-1]) comes next.
	var after []string
	for {
		// Keys come in ascending key order without asking: etcd 3.4 reads
		// the whole rest of the range for any sort option.
		req := &pb.RangeRequest{Key: []byte(key), RangeEnd: []byte(end), Limit: page}
		if rev != 0 {
			// Pinned to a revision, a read is the same on any member that
			// has it (one that has not yet answers an error, and the
			// listing is retried): no round trip to the leader.
			req.Revision, req.Serializable = rev, true
		}
		lctx, cancel := context.WithTimeout(ctx, timeout)
		resp, err := readPage(lctx, w.Client, req, pages.get())
		cancel()
		if err != nil {
			return 0, err
		}
		w.counted.Add(resp.count)
		if rev == 0 {
			rev = resp.revision
		}
		// What the next read needs is taken before the page is given
		// away: its memory may be read into again once applied.
		more, have, count := resp.more && len(resp.kvs) > 0, int64(len(resp.kvs)), resp.count
		var first, last string
		if more {
			first, last = string(resp.kvs[0].key), string(resp.kvs[len(resp.kvs)-1].key)
		}
		if !got(resp, rev) {
			return rev, ctx.Err()
		}
		if more {
			// The next page starts just after the last key read.
			key = last + "\x00"
			if left := count - have; left > 2*page {
				if cut, ok := halfway(first, last, end, have, left); ok && key < cut {
					after, end = append(after, end), cut
				}
			}
			continue
		}
		if len(after) == 0 {
			return rev, nil
		}
		key, end, after = end, after[len(after)-1], after[:len(after)-1]
	}
}

// sizes are the timeout of one read and the keys of one page.
func (w *Watcher) sizes() (time.Duration, int64) {
	timeout, page := w.Timeout, int64(w.PageSize)
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	if page <= 0 {
		page = PageSize
	}
	return timeout, page
}

// halfway guesses the key below which half of the left keys of a range
// ending at end lie, from how far apart the page's read keys (have of
// them, first to last) are, as if the rest were as dense: in the eight bytes
// after the prefix the page's keys share, which is where they differ. A
// guess beyond that prefix's keys cuts at their end; a page that shows no
// spread falls back to the middle of last and end by byte value.
func halfway(first, last, end string, have, left int64) (string, bool) {
	c := 0
	for c < len(first) && c < len(last) && first[c] == last[c] {
		c++
	}
	block := first[:c]
	f, l := word(first, c), word(last, c)
	if l > f && have > 0 {
		guess := float64(l) + float64(l-f)*float64(left)/2/float64(have)
		var cut string
		switch {
		case strings.HasPrefix(end, block) && guess < float64(word(end, c)):
			cut = block + trimmed(uint64(guess))
		case !strings.HasPrefix(end, block) && guess < math.MaxUint64:
			cut = block + trimmed(uint64(guess))
		case !strings.HasPrefix(end, block):
			// Half the keys left are past the block's: cut at its end.
			cut = clientv3.GetPrefixRangeEnd(block)
		}
		if cut > last && cut < end {
			return cut, true
		}
	}
	return middle(last, end)
}

// word is the value of the eight bytes of s after its first c.
func word(s string, c int) uint64 {
	var buf [8]byte
	copy(buf[:], s[min(c, len(s)):])
	return binary.BigEndian.Uint64(buf[:])
}

// trimmed is w's eight bytes without the trailing zeros, which add nothing
// to a key's order.
func trimmed(w uint64) string {
	var buf [8]byte
	binary.BigEndian.PutUint64(buf[:], w)
	return strings.TrimRight(string(buf[:]), "\x00")
}

// middle is a key between a and b (a < b), halfway by the value of the
// eight bytes after their common prefix; ok is false when none is strictly
// between them at that precision (the range is then paged as it is).
func middle(a, b string) (string, bool) {
	c := 0
	for c < len(a) && c < len(b) && a[c] == b[c] {
		c++
	}
	x, y := word(a, c), word(b, c)
	if y <= x || y-x < 2 {
		return "", false
	}
	return a[:c] + trimmed(x+(y-x)/2), true
}

// follow watches from rev+1 until the watch fails; it returns why. A
// paused or partitioned etcd does not end a watch: it just goes quiet. So
// follow asks for a progress notification every ProgressInterval and reports
// the watch stale when nothing at all has come back for three of them.
func (w *Watcher) follow(ctx context.Context, rev int64, out chan<- Report) error {
	wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	p := w.prefix()
	// One watch per range, on one gRPC stream (one context), their
	// answers merged in the order they arrive.
	type answer struct {
		clientv3.WatchResponse
		closed bool
		watch  int
	}
	wch := make(chan answer)
	var wg sync.WaitGroup
	defer func() { cancel(); wg.Wait() }()
	for i, s := range w.watched() {
		rch := w.Client.Watch(wctx, s.key, clientv3.WithRange(s.end), clientv3.WithRev(rev+1), clientv3.WithProgressNotify())
		wg.Add(1)
		go func() {
			defer wg.Done()
			for resp := range rch {
				select {
				case wch <- answer{WatchResponse: resp, watch: i}:
				case <-wctx.Done():
					return
				}
			}
			// A closed watch ends them all: the listing starts again.
			select {
			case wch <- answer{closed: true}:
			case <-wctx.Done():
			}
		}()
	}
	interval := w.ProgressInterval
	if interval <= 0 {
		interval = 5 * time.Second
	}
	probe := time.NewTicker(interval)
	defer probe.Stop()
	lastHeard, stale := time.Now(), false
	send := func(st Status) error {
		select {
		case out <- Report{Status: &st}:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	for {
		var (
			resp clientv3.WatchResponse
			a    answer
		)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case now := <-probe.C:
			if !stale && now.Sub(lastHeard) > 3*interval {
				stale = true
				if err := send(Status{Stale: true, Err: fmt.Errorf("no answer from etcd for %v", now.Sub(lastHeard).Round(time.Second))}); err != nil {
					return err
				}
			}
			pctx, pcancel := context.WithTimeout(wctx, interval)
			_ = w.Client.RequestProgress(pctx) // the answer, if any, comes on the watch
			pcancel()
			continue
		case a = <-wch:
			if a.closed {
				return errors.New("watch channel closed")
			}
			resp = a.WatchResponse
		}
		lastHeard = time.Now()
		w.history.advance(resp.Header)
		if resp.CompactRevision != 0 {
			return fmt.Errorf("%w at %d", errCompacted, resp.CompactRevision)
		}
		if err := resp.Err(); err != nil {
			return err
		}
		if stale || resp.IsProgressNotify() {
			stale = false
			if err := send(Status{Connected: true, Revision: resp.Header.Revision}); err != nil {
				return err
			}
		}
		if resp.IsProgressNotify() {
			// Not taken as a revision handed out whole: an etcd without
			// the fix of its issue 15220 (backported to 3.4 and 3.5) could
			// send one ahead of events still to come. A quiet range needs
			// none: nothing in it was written since.
			continue
		}
		b := Batch{Revision: resp.Header.Revision, Received: lastHeard, Events: make(Events, 0, len(resp.Events))}
		for _, ev := range resp.Events {
			e := Event{Key: string(ev.Kv.Key[len(p):]), Deleted: ev.Type == clientv3.EventTypeDelete}
			if !e.Deleted {
				e.Value = string(ev.Kv.Value)
			}
			b.Events = append(b.Events, e)
			w.noteEvent(ev)
		}
		w.noteFindable(b.Events...)
		select {
		case out <- Report{Batch: &b}:
		case <-ctx.Done():
			// Not handed out: only a listing knows what the consumer holds.
			w.since, w.held = nil, nil
			return ctx.Err()
		}
		if n := len(resp.Events); n > 0 {
			// A revision's events come in one answer, in order.
			w.handedOut(a.watch, resp.Events[n-1].Kv.ModRevision)
		}
	}
}

// alias makes a string of a page's bytes, which nothing writes again,
// without copying them: a listing of millions of keys would otherwise copy
// each one twice. Every key and value of a page shares the page's buffer,
// so a consumer copies what it keeps (the store packs each object anew).
func alias(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	return unsafe.String(&b[0], len(b))
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}
