package source

import "time"

// EtcdEvent is one key change, with the key relative to the prefix.
type EtcdEvent struct {
	Key     string
	Value   string
	Deleted bool
}

// EtcdBatch is what the consumer applies at once: a page of a whole listing
// (Snapshot), or the events of one watch response (one etcd transaction or
// more). A listing comes as pages in key order, Part 0 first, More on every
// page but the last; none of it counts until the last is in, and a Part 0
// starts the listing over (the one before it failed half way).
type EtcdBatch struct {
	Snapshot bool
	More     bool
	Part     int
	Events   EtcdEvents
	Revision int64
	// Since, when set, marks a re-list that read only the keys written
	// after this revision (nothing was deleted since): changes, not a
	// listing.
	Since int64
	// Received is when the batch arrived from etcd.
	Received time.Time
	// Release, when set (a listing's page), gives the page's memory back to
	// the watcher, which reads a later page into it: call it once the
	// batch is applied, and keep nothing of its Events past it (a kept key
	// reads as zeros). Not calling it costs only memory.
	Release func()
}

// EtcdEvents are a batch's changes; a snapshot's are sorted by key.
type EtcdEvents []EtcdEvent

// Len and At make a snapshot a dynamic.Listing.
func (e EtcdEvents) Len() int { return len(e) }

// At returns the i-th key and value.
func (e EtcdEvents) At(i int) (key, value string) { return e[i].Key, e[i].Value }

// EtcdStatus reports the watcher's state changes to its owner.
type EtcdStatus struct {
	Connected bool
	// Stale: the watch is established but etcd has not answered for a while.
	Stale     bool
	Revision  int64
	Err       error
	Relist    bool // a re-list was needed (compaction, lost watch)
	Compacted bool
}

// EtcdReport is what the watcher sends: a Batch to apply, or a Status change.
// Exactly one is set.
type EtcdReport struct {
	Batch  *EtcdBatch
	Status *EtcdStatus
}
