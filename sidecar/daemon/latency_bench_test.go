package daemon_test

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"sort"
	"testing"
	"time"

	"github.com/traefik-sd/traefik-sd/internal/coordinator"
	"github.com/traefik-sd/traefik-sd/internal/testbed"
)

// BenchmarkEtcdChangeToTargets measures, with 10,000 circuits present, the
// time from the coordinator's route-change transaction returning to a new
// body on /v1/targets (polled with If-None-Match), over b.N changes, and
// reports the p50 and p99.
func BenchmarkEtcdChangeToTargets(b *testing.B) {
	dir, err := os.MkdirTemp("/dev/shm", "traefik-sd-bench-")
	if err != nil {
		dir = b.TempDir()
	}
	b.Cleanup(func() { os.RemoveAll(dir) })
	e := startEnvIn(b, dir, "worker-1")
	ctx := context.Background()
	circuits := make([]coordinator.Circuit, 10000)
	for i := range circuits {
		circuits[i] = coordinator.SampleInference(i)
	}
	testbed.Must(b, e.coord.BulkLoad(ctx, circuits), "load")
	testbed.Eventually(b, 120*time.Second, "10,000 circuits published", func() (bool, string) {
		groups, _, _ := e.targets(b)
		return len(groups) == 20002, fmt.Sprint(len(groups))
	})
	// Route changes touch services only: Traefik's routers and the plugin's
	// set stay as they are, so the stand-in stops reloading and the figure
	// is the sidecar's own path (make bench measures Traefik's reload apart).
	e.traefik.freeze()
	client := &http.Client{}
	etagNow := func() string {
		resp, err := client.Head(e.base + "/v1/targets")
		if err != nil {
			b.Fatal(err)
		}
		resp.Body.Close()
		return resp.Header.Get("ETag")
	}
	delays := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		c := circuits[(i*7919)%len(circuits)]
		c.Routes = append([]coordinator.Route(nil), c.Routes...)
		c.Routes[0].Port = 9000 + i%1000
		before := etagNow()
		testbed.Must(b, e.coord.UpdateRoutes(ctx, c), "update")
		written := time.Now()
		for etagNow() == before {
			if time.Since(written) > 10*time.Second {
				b.Fatalf("change %d not published within 10s", i)
			}
		}
		delays = append(delays, time.Since(written))
	}
	b.StopTimer()
	sort.Slice(delays, func(i, j int) bool { return delays[i] < delays[j] })
	b.ReportMetric(float64(delays[len(delays)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(delays[len(delays)*99/100].Microseconds())/1000, "p99-ms")
}
