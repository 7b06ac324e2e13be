package dynamic_test

import (
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/traefik-sd/traefik-sd/sidecar/dynamic"
)

// BenchmarkCommitCold decodes a first listing of Backend.AI circuits, as
// the coordinator writes them, serially and in parallel, alternating
// rounds so that both see the same machine. serial/parallel is the
// speedup; the parallel rounds decode in parallel at every size (no
// threshold), so the small sizes show where goroutines start to pay.
// ns/op counts both rounds and the listings' Reset.
func BenchmarkCommitCold(b *testing.B) {
	workers := runtime.GOMAXPROCS(0)
	for _, circuits := range []int{2, 8, 32, 128, 2000, 20000} {
		b.Run(fmt.Sprintf("circuits=%d", circuits), func(b *testing.B) {
			l := sampleKeys(circuits)
			b.ResetTimer()
			var serial, parallel time.Duration
			objects := 0
			for i := 0; i < b.N; i++ {
				for round := 0; round < 2; round++ {
					s := dynamic.NewStore("traefik-sd")
					s.Reset(l)
					objects = s.Dirty()
					inParallel := (i+round)%2 == 1
					start := time.Now()
					if inParallel {
						s.CommitWith(workers, 0)
					} else {
						s.CommitWith(1, 0)
					}
					if took := time.Since(start); inParallel {
						parallel += took
					} else {
						serial += took
					}
				}
			}
			b.ReportMetric(float64(objects), "objects")
			b.ReportMetric(float64(workers), "workers")
			b.ReportMetric(float64(serial.Microseconds())/float64(b.N), "serial-µs")
			b.ReportMetric(float64(parallel.Microseconds())/float64(b.N), "parallel-µs")
			b.ReportMetric(serial.Seconds()/parallel.Seconds(), "serial/parallel")
		})
	}
}
