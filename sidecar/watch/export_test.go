package watch

// Counted is how many keys etcd counted for this watcher's reads so far.
func (w *Watcher) Counted() int64 { return w.counted.Load() }

var Middle = middle
