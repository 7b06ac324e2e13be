package fanout

import (
	"sync"
	"testing"
)

// Every iteration runs once, on no more goroutines than asked, each with a
// do of its own, whatever n and the worker count.
func TestEachRunsEveryIterationOnce(t *testing.T) {
	for _, n := range []int{0, 1, 7, 64, 1000} {
		for _, workers := range []int{1, 2, 3, 8} {
			runs := make([]int, n)
			var mu sync.Mutex
			made := 0
			Each(n, workers, func() func(int) {
				mu.Lock()
				made++
				mu.Unlock()
				return func(i int) { runs[i]++ }
			})
			for i, r := range runs {
				if r != 1 {
					t.Fatalf("n=%d workers=%d: iteration %d ran %d times", n, workers, i, r)
				}
			}
			if made < 1 || made > workers {
				t.Fatalf("n=%d workers=%d: %d goroutines", n, workers, made)
			}
		}
	}
}
