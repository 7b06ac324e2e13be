package targets

import (
	"iter"
	"slices"
)

// chunkLen is how many routers one chunk of a routerList holds. A change
// after a freeze copies the chunks' index (24 bytes a chunk) and one chunk
// (24 bytes a router): near the square root of 100,000 routers both stay a
// few kilobytes.
const chunkLen = 256

// routerList is each router's targets in the published order, in chunks
// of the same length, so that a frozen set can share them and a change
// after a freeze copies the one chunk it writes and not the whole list.
// At 100,000 routers the whole list is 2.4 MB: copied at every change
// that followed a freeze, it made the collector run every few hundred
// changes, each run a tail of tens of milliseconds on the change it met.
type routerList struct {
	chunks [][][]storedTarget
	n      int // routers listed: the first n of the chunks
}

// newRouterList makes a list of n routers with no targets yet.
func newRouterList(n, chunk int) routerList {
	l := routerList{chunks: make([][][]storedTarget, (n+chunk-1)/chunk), n: n}
	for c := range l.chunks {
		l.chunks[c] = make([][]storedTarget, min(chunk, n-c*chunk))
	}
	return l
}

// prefix is the list of the first k routers, sharing l's chunks.
func (l routerList) prefix(k int) routerList { return routerList{chunks: l.chunks, n: min(k, l.n)} }

// all yields each router's targets in order.
func (l routerList) all() iter.Seq[[]storedTarget] {
	return func(yield func([]storedTarget) bool) {
		left := l.n
		for _, chunk := range l.chunks {
			for _, ts := range chunk[:min(len(chunk), left)] {
				if !yield(ts) {
					return
				}
			}
			if left -= len(chunk); left <= 0 {
				return
			}
		}
	}
}

// ownedList is the builder's list and which of its chunks no frozen set
// shares, so that it writes those in place and copies the others first.
type ownedList struct {
	routerList
	chunk  int
	owned  []bool
	shared bool // a frozen set holds the chunks' index itself
}

// reset makes a list of n routers, every chunk owned.
func (o *ownedList) reset(n int) {
	o.routerList = newRouterList(n, o.chunk)
	o.owned = make([]bool, len(o.chunks))
	for c := range o.owned {
		o.owned[c] = true
	}
	o.shared = false
}

// set stores router i's targets, copying its chunk first if a frozen set
// shares it.
func (o *ownedList) set(i int, ts []storedTarget) {
	if o.shared {
		o.chunks = slices.Clone(o.chunks)
		clear(o.owned)
		o.shared = false
	}
	c := i / o.chunk
	if !o.owned[c] {
		o.chunks[c] = slices.Clone(o.chunks[c])
		o.owned[c] = true
	}
	o.chunks[c][i%o.chunk] = ts
}

// share is the list for a frozen set: from now on, each chunk is copied
// before it is written.
func (o *ownedList) share() routerList {
	o.shared = true
	return o.routerList
}
