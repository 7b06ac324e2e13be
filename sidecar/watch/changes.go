package watch

import (
	"context"
	"slices"
	"sort"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// Relist reads the prefix again, as after a lost watch, and hands what it
// read to emit: the keys changed since the watcher last knew the prefix,
// as one batch of changes (Since set), when that is all that changed, or
// else a whole listing in pages, as ListPages.
//
// etcd cannot say which keys a compacted watch missed, but a read with a
// minimum modification revision returns only the keys written since, with
// the count of every key of its range. A key deleted since is not in the
// answer, so each interval between two splits is counted against the keys
// handed out for it (the listing's, then the watch's creations and
// deletions), plus those the read shows created since: one that is short
// lost a key, and only a listing can say which. A re-list after an outage
// of a large tree then costs etcd one read of its keys (the floor the
// re-list benchmark measures) and sends only what changed, not the tree.
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
// once it is applied, or returns nil when a key was deleted since (or too
// much changed) and the prefix must be listed whole.
func (w *Watcher) changes(ctx context.Context) (*Batch, []int, error) {
	timeout, limit := w.sizes()
	get := func(key string, opts ...clientv3.OpOption) (*clientv3.GetResponse, error) {
		lctx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		return w.Client.Get(lctx, key, opts...)
	}
	// Each span lies between two splits, and in one watched range, whose
	// watch knew it through its own revision.
	spans, watched := w.spans(), w.watched()
	in, since := make([]int, len(spans)), make([]int64, len(spans))
	for i, s := range spans {
		in[i] = w.between(s.key)
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
	// lost key would: listed whole, never missed. Two reads are in flight,
	// and an interval is checked once its spans are read: a lost key ends
	// the reading there.
	type read struct {
		resp *clientv3.GetResponse
		err  error
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	reads := make([]chan read, len(spans))
	for i := range reads {
		reads[i] = make(chan read, 1)
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
				reads[i] <- read{resp, err}
				<-slots
			}()
		}
	}()
	p := w.prefix()
	now, created := make([]int, len(w.held)), make([]int, len(w.held))
	b := &Batch{Revision: rev, Since: slices.Min(w.since)}
	for i := range spans {
		r := <-reads[i]
		if r.err != nil {
			return nil, nil, r.err
		}
		if r.resp.More {
			// A page's worth changed in one span: a listing is as cheap.
			return nil, nil, nil
		}
		now[in[i]] += int(r.resp.Count)
		for _, kv := range r.resp.Kvs {
			if kv.CreateRevision > since[i] {
				created[in[i]]++
			}
			b.Events = append(b.Events, Event{Key: string(kv.Key[len(p):]), Value: string(kv.Value)})
		}
		if j := in[i]; (i+1 == len(spans) || in[i+1] != j) && now[j] != w.held[j]+created[j] {
			return nil, nil, nil
		}
	}
	for j, n := range now {
		// An interval no span reads (its keys lie outside the ranges).
		if n != w.held[j]+created[j] {
			return nil, nil, nil
		}
	}
	b.Received = time.Now()
	return b, now, nil
}

// between is the index of the interval between splits that holds key:
// the number of splits at or below it.
func (w *Watcher) between(key string) int {
	return sort.Search(len(w.splits), func(j int) bool { return w.splits[j] > key })
}

// heldAfterListing counts a listing's keys between its splits: every
// apart by construction, the rest after the last.
func heldAfterListing(splits, listed, every int) []int {
	held := make([]int, splits+1)
	for i := range splits {
		held[i] = every
	}
	held[splits] = listed - splits*every
	return held
}

// noteEvent keeps the counts of held keys as a watch hands out an event: a
// created key adds one between its splits, a deleted one takes one away.
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
