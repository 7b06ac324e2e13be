package watch

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// Relist reads the prefix again, as after a lost watch, and hands what it
// read to emit: the keys changed since the watcher last knew the prefix,
// as one batch of changes (Since set), or else a whole listing in pages,
// as ListPages.
//
// etcd cannot say which keys a compacted watch missed, but a read with a
// minimum modification revision returns only the keys written since, with
// the count of every key of its range. A key deleted since is not in the
// answer, so each interval between two marks is counted against the keys
// handed out for it (the listing's, then the watch's creations and
// deletions), plus those the read shows created since: one that is short
// lost a key, and only a listing of it can say which, so the batch holds
// that interval's listing (Batch.Listed). A re-list after an outage of a
// large tree then costs etcd one read of its keys (the floor the re-list
// benchmark measures) and sends only what changed and the intervals that
// lost a key, not the tree.
func (w *Watcher) Relist(ctx context.Context, emit func(Batch) error) (int64, error) {
	if w.since != nil {
		b, held, err := w.changes(ctx)
		if err != nil {
			return 0, err
		}
		if b != nil {
			if err := emit(*b); err != nil {
				return 0, err
			}
			w.since, w.held = w.all(b.Revision), held
			return b.Revision, nil
		}
	}
	return w.ListPages(ctx, emit)
}

// changes reads what changed since w.since, with the counts of keys held
// once it is applied, or returns nil when the prefix must be listed whole:
// too much changed, more than half the intervals lost a key, or one did
// and the consumer cannot find its keys by their text (Findable).
func (w *Watcher) changes(ctx context.Context) (*Batch, []int, error) {
	timeout, limit := w.sizes()
	get := func(key string, opts ...clientv3.OpOption) (*clientv3.GetResponse, error) {
		lctx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		return w.Client.Get(lctx, key, opts...)
	}
	// Each span lies between two marks, and in one watched range, whose
	// watch knew it through its own revision.
	spans, watched := w.spans(w.marks), w.watched()
	in, since := make([]int, len(spans)), make([]int64, len(spans))
	read := make([]bool, len(w.held))
	for i, s := range spans {
		in[i] = w.between(s.key)
		read[in[i]] = true
		for r := range watched {
			if watched[r].key <= s.key && s.key < watched[r].end {
				since[i] = w.since[r]
			}
		}
	}
	// The revision to read at: etcd's latest, asked of the leader with a
	// read of one key (a role may grant only the spans).
	at, err := get(spans[0].key, clientv3.WithCountOnly())
	if err != nil {
		return nil, nil, err
	}
	rev := at.Header.Revision
	if now := w.historyNow(ctx); !w.history.continuedBy(now) || now.cluster != at.Header.ClusterId || rev < slices.Max(w.since) {
		// Another history (etcd restored from a snapshot, or another
		// cluster), or one that cannot be told: the keys written since
		// are not all its later ones.
		return nil, nil, nil
	}
	// The keys written since, a span's in one read, which also counts the
	// span's keys (etcd reads its index for that). Those created since
	// must account for every key more than were handed out; one deleted
	// and created again since counts as created, and fails the check as a
	// lost key would: its interval is listed, never missed. Two reads are
	// in flight, and an interval is checked once its spans are read: the
	// reading ends as soon as the prefix must be listed whole.
	type answer struct {
		resp *clientv3.GetResponse
		err  error
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	answers := make([]chan answer, len(spans))
	for i := range answers {
		answers[i] = make(chan answer, 1)
	}
	slots := make(chan struct{}, 2)
	go func() {
		for i, s := range spans {
			select {
			case slots <- struct{}{}:
			case <-ctx.Done():
				return
			}
			go func() {
				resp, err := get(s.key, clientv3.WithRange(s.end), clientv3.WithRev(rev), clientv3.WithSerializable(),
					clientv3.WithMinModRev(since[i]+1), clientv3.WithLimit(limit))
				answers[i] <- answer{resp, err}
				<-slots
			}()
		}
	}()
	p := w.prefix()
	now, created := make([]int, len(w.held)), make([]int, len(w.held))
	written := make([]Events, len(spans))
	lost, short := make([]bool, len(w.held)), 0
	whole := func() bool { return short > 0 && (w.unfindable || 2*short > len(w.held)) }
	// An interval that lost a key is listed as soon as that is known,
	// while the reading goes on.
	type listing struct {
		events Events
		err    error
	}
	listings := make([]chan listing, len(spans))
	list := func(i int) {
		listings[i] = make(chan listing, 1)
		go func() {
			events, err := w.listSpan(ctx, spans[i], rev, nil)
			listings[i] <- listing{events, err}
		}()
	}
	first := 0 // the first span of the interval being read
	for i := range spans {
		if i > 0 && in[i] != in[i-1] {
			first = i
		}
		a := <-answers[i]
		if a.err != nil {
			return nil, nil, a.err
		}
		if a.resp.More {
			// A page's worth changed in one span: a listing is as cheap.
			return nil, nil, nil
		}
		now[in[i]] += int(a.resp.Count)
		for _, kv := range a.resp.Kvs {
			if kv.CreateRevision > since[i] {
				created[in[i]]++
			}
			written[i] = append(written[i], Event{Key: string(kv.Key[len(p):]), Value: string(kv.Value)})
		}
		if j := in[i]; (i+1 == len(spans) || in[i+1] != j) && now[j] != w.held[j]+created[j] {
			lost[j], short = true, short+1
			if whole() {
				return nil, nil, nil
			}
			for k := first; k <= i; k++ {
				list(k)
			}
		}
	}
	for j, n := range now {
		if !read[j] && n != w.held[j]+created[j] {
			// An interval no span reads (its keys lie outside the ranges)
			// cannot be listed.
			return nil, nil, nil
		}
	}
	b := &Batch{Revision: rev, Since: slices.Min(w.since)}
	listed := make([]int, len(w.held))
	for i := range spans {
		j := in[i]
		if !lost[j] {
			b.Events = append(b.Events, written[i]...)
			w.noteFindable(written[i]...)
			continue
		}
		if i == 0 || in[i-1] != j {
			b.Listed = append(b.Listed, w.interval(j))
		}
		l := <-listings[i]
		if l.err != nil {
			return nil, nil, l.err
		}
		b.Events = append(b.Events, l.events...)
		w.noteFindable(l.events...)
		listed[j] += len(l.events)
	}
	for j := range lost {
		if lost[j] && listed[j] != now[j] {
			return nil, nil, fmt.Errorf("listing %s at revision %d: %d keys between two marks, where etcd counted %d", w.Prefix, rev, listed[j], now[j])
		}
	}
	if short > 0 && w.unfindable {
		// This re-list read the first key the consumer cannot find.
		return nil, nil, nil
	}
	b.Received = time.Now()
	return b, now, nil
}

// interval is the range between marks j-1 and j, below the prefix. Its
// keys outside the watched ranges were never handed out, so a listing of
// its spans is a listing of all it holds.
func (w *Watcher) interval(j int) KeyRange {
	p := w.prefix()
	var r KeyRange
	if j > 0 {
		r.Key = w.marks[j-1][len(p):]
	}
	if j < len(w.marks) {
		r.End = w.marks[j][len(p):]
	}
	return r
}

// listSpan appends every key of the span at rev to events. The values
// alias the pages read, which are never read into again (a consumer copies
// the values it keeps, as it does of a listing's pages); the keys are
// copied, as a consumer applies them as changes, which may keep a key's
// text as it is.
func (w *Watcher) listSpan(ctx context.Context, s span, rev int64, events Events) (Events, error) {
	p := w.prefix()
	_, err := w.readRange(ctx, s.key, s.end, rev, newPagePool(), func(pg *rangePage, _ int64) bool {
		for _, kv := range pg.kvs {
			events = append(events, Event{Key: string(kv.key[len(p):]), Value: alias(kv.value)})
		}
		return true
	})
	return events, err
}

// noteFindable notes a key handed out that the consumer cannot find by its
// text (Findable).
func (w *Watcher) noteFindable(events ...Event) {
	if w.Findable == nil || w.unfindable {
		return
	}
	for _, e := range events {
		if !w.Findable(e.Key) {
			w.unfindable = true
			return
		}
	}
}

// between is the index of the interval between marks that holds key:
// the number of marks at or below it.
func (w *Watcher) between(key string) int {
	return sort.Search(len(w.marks), func(j int) bool { return w.marks[j] > key })
}

// heldAfterListing counts a listing's keys between its marks: every
// apart by construction, the rest after the last.
func heldAfterListing(marks, listed, every int) []int {
	held := make([]int, marks+1)
	for i := range marks {
		held[i] = every
	}
	held[marks] = listed - marks*every
	return held
}

// noteEvent keeps the counts of held keys as a watch hands out an event: a
// created key adds one between its marks, a deleted one takes one away.
func (w *Watcher) noteEvent(ev *clientv3.Event) {
	if w.held == nil {
		return
	}
	switch {
	case ev.Type == clientv3.EventTypeDelete:
		w.held[w.between(string(ev.Kv.Key))]--
	case ev.IsCreate():
		w.held[w.between(string(ev.Kv.Key))]++
	}
}

// all is rev for every watched range.
func (w *Watcher) all(rev int64) []int64 {
	since := make([]int64, len(w.watched()))
	for r := range since {
		since[r] = rev
	}
	return since
}

// handedOut notes that watch r has handed out every event through rev.
func (w *Watcher) handedOut(r int, rev int64) {
	if w.since != nil {
		w.since[r] = max(w.since[r], rev)
	}
}

// history tells one etcd history from another. A read of the keys written
// since a revision trusts that every key etcd holds got there by the writes
// the watch followed. An etcd restored from a snapshot breaks that (and its
// revision may be bumped past the watch's, so that watchers re-list): it
// keeps its cluster's ID, and its raft term may be the same, but its raft
// log starts again, at an index about its members' count. In one history a
// member's index only grows, and its term too.
type history struct {
	cluster, term, index uint64
}

// historyNow asks the first endpoint's member where its history is; the
// zero history, which continues none, when it cannot answer.
func (w *Watcher) historyNow(ctx context.Context) history {
	eps := w.Client.Endpoints()
	if len(eps) == 0 {
		return history{}
	}
	timeout, _ := w.sizes()
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	st, err := w.Client.Status(ctx, eps[0])
	if err != nil || st.Header == nil {
		return history{}
	}
	return history{st.Header.ClusterId, st.Header.RaftTerm, st.RaftIndex}
}

// advance notes a later term of the same history, from a watch's answer.
func (hs *history) advance(h *pb.ResponseHeader) {
	if h != nil && h.ClusterId == hs.cluster {
		hs.term = max(hs.term, h.RaftTerm)
	}
}

// continuedBy says whether now is later in the same history.
func (hs history) continuedBy(now history) bool {
	return hs.cluster != 0 && now.cluster == hs.cluster && now.term >= hs.term && now.index >= hs.index
}
