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
	// after this revision: changes, not a listing. Where a key was deleted
	// meanwhile, the re-list listed the ranges that lost it: Events hold
	// every key of each of Listed, and a held key in one of them that
	// Events lack was deleted.
	Since  int64
	Listed []KeyRange
	// Received is when the batch arrived from etcd.
	Received time.Time
	// Release, when set (a listing's page), gives the page's memory back to
	// the watcher, which reads a later page into it: call it once the
	// batch is applied, and keep nothing of its Events past it (a kept key
	// reads as zeros). Not calling it costs only memory.
	Release func()
}

// KeyRange is the keys from Key up to End, excluded, below the root key;
// an empty End is the root key's end.
type KeyRange struct{ Key, End string }

// Holds says whether key lies in the range.
func (r KeyRange) Holds(key string) bool {
	return key >= r.Key && (r.End == "" || key < r.End)
}

// EtcdEvents are a batch's changes; a snapshot's are sorted by key, and so
// are a re-list's.
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
