// Package fanout runs the iterations of a loop on several goroutines, for
// the sidecar's few loops over every object at once (a first listing's
// decoding, a full build of the routers) that would leave a core idle.
package fanout

import (
	"sync"
	"sync/atomic"
)

// Each calls do(i) for every i in [0, n) on up to workers goroutines, the
// caller's among them, and returns when all are done. Iterations differ in
// cost, so goroutines take small chunks in turn rather than one fixed share
// each. worker is called once per goroutine for its do, so that state one
// goroutine writes (a buffer) is its own.
func Each(n, workers int, worker func() func(i int)) {
	chunk := max(1, n/(workers*8))
	var next atomic.Int64
	work := func() {
		do := worker()
		for {
			end := int(next.Add(int64(chunk)))
			start := end - chunk
			if start >= n {
				return
			}
			for i := start; i < min(end, n); i++ {
				do(i)
			}
		}
	}
	var wg sync.WaitGroup
	for w := 1; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			work()
		}()
	}
	work()
	wg.Wait()
}
