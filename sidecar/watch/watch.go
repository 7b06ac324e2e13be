// Package watch follows a key prefix in etcd: it lists the prefix at a
// revision, then watches from the next one. Any watch error (compaction
// included), a closed watch channel or a failed list ends in a fresh list
// after a backoff, so a consumer sees either the whole prefix or changes that
// follow it, never a half-applied state.
package watch

import (
	"context"
	"errors"
	"fmt"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// Event is one key change, with the key relative to the prefix.
type Event struct {
	Key     string
	Value   string
	Deleted bool
}

// Batch is what the consumer applies at once: a whole listing (Snapshot),
// or the events of one watch response (one etcd transaction or more).
type Batch struct {
	Snapshot bool
	Events   []Event
	Revision int64
	// Received is when the batch arrived from etcd.
	Received time.Time
}

// Status reports the watcher's state changes to its owner.
type Status struct {
	Connected bool
	Revision  int64
	Err       error
	Relist    bool // a re-list was needed (compaction, lost watch)
	Compacted bool
}

// Watcher lists and watches Prefix.
type Watcher struct {
	Client *clientv3.Client
	// Prefix is the root key, e.g. traefik/worker_worker-1; "/" is appended.
	Prefix string
	// Timeout bounds each list call.
	Timeout time.Duration
	// MaxBackoff caps the wait between failed attempts.
	MaxBackoff time.Duration
}

// Run follows the prefix until ctx is done. Every send also selects on ctx.
func (w *Watcher) Run(ctx context.Context, out chan<- Batch, status chan<- Status) {
	backoff := 100 * time.Millisecond
	maxBackoff := w.MaxBackoff
	if maxBackoff <= 0 {
		maxBackoff = 5 * time.Second
	}
	report := func(s Status) {
		select {
		case status <- s:
		case <-ctx.Done():
		}
	}
	for ctx.Err() == nil {
		rev, err := w.list(ctx, out)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			report(Status{Err: fmt.Errorf("listing %s: %w", w.Prefix, err)})
			sleep(ctx, backoff)
			if backoff *= 2; backoff > maxBackoff {
				backoff = maxBackoff
			}
			continue
		}
		backoff = 100 * time.Millisecond
		report(Status{Connected: true, Revision: rev})
		err = w.follow(ctx, rev, out, status)
		if ctx.Err() != nil {
			return
		}
		report(Status{Err: err, Relist: true, Compacted: errors.Is(err, errCompacted)})
		sleep(ctx, backoff)
	}
}

var errCompacted = errors.New("watch revision compacted")

func (w *Watcher) prefix() string { return w.Prefix + "/" }

func (w *Watcher) list(ctx context.Context, out chan<- Batch) (int64, error) {
	timeout := w.Timeout
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	lctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	resp, err := w.Client.Get(lctx, w.prefix(), clientv3.WithPrefix())
	if err != nil {
		return 0, err
	}
	b := Batch{Snapshot: true, Revision: resp.Header.Revision, Received: time.Now(), Events: make([]Event, 0, len(resp.Kvs))}
	p := w.prefix()
	for _, kv := range resp.Kvs {
		b.Events = append(b.Events, Event{Key: string(kv.Key[len(p):]), Value: string(kv.Value)})
	}
	select {
	case out <- b:
	case <-ctx.Done():
		return 0, ctx.Err()
	}
	return resp.Header.Revision, nil
}

// follow watches from rev+1 until the watch fails; it returns why.
func (w *Watcher) follow(ctx context.Context, rev int64, out chan<- Batch, status chan<- Status) error {
	wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	defer cancel()
	p := w.prefix()
	wch := w.Client.Watch(wctx, p, clientv3.WithPrefix(), clientv3.WithRev(rev+1), clientv3.WithProgressNotify())
	for resp := range wch {
		if resp.CompactRevision != 0 {
			return fmt.Errorf("%w at %d", errCompacted, resp.CompactRevision)
		}
		if err := resp.Err(); err != nil {
			return err
		}
		if resp.IsProgressNotify() {
			select {
			case status <- Status{Connected: true, Revision: resp.Header.Revision}:
			case <-ctx.Done():
				return ctx.Err()
			}
			continue
		}
		b := Batch{Revision: resp.Header.Revision, Received: time.Now(), Events: make([]Event, 0, len(resp.Events))}
		for _, ev := range resp.Events {
			e := Event{Key: string(ev.Kv.Key[len(p):]), Deleted: ev.Type == clientv3.EventTypeDelete}
			if !e.Deleted {
				e.Value = string(ev.Kv.Value)
			}
			b.Events = append(b.Events, e)
		}
		select {
		case out <- b:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return errors.New("watch channel closed")
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}
