package daemon_test

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"runtime/pprof"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/traefik-sd/traefik-sd/internal/coordinator"
	"github.com/traefik-sd/traefik-sd/internal/testbed"
	"github.com/traefik-sd/traefik-sd/sidecar/config"
	"github.com/traefik/paerser/types"
)

// BenchmarkEtcdChangeToTargets measures, with 10,000 or 100,000 circuits
// present, the time from the coordinator's route-change transaction
// returning to a new body on /v1/targets (polled with If-None-Match), over
// b.N changes, and reports the p50 and p99. Run one size per process: each
// keeps its environment for every run of that size.
func BenchmarkEtcdChangeToTargets(b *testing.B) {
	for _, n := range []int{10000, 100000} {
		b.Run(fmt.Sprintf("circuits=%d", n), func(b *testing.B) { changeToTargets(b, n) })
	}
}

func changeToTargets(b *testing.B, n int) {
	e, circuits := latencyEnv(b, n)
	ctx := context.Background()
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
	if f := os.Getenv("BENCH_CPU_PROFILE"); f != "" {
		// The changes alone: -cpuprofile would be mostly the setup's load.
		out, err := os.Create(f)
		testbed.Must(b, err, "cpu profile")
		testbed.Must(b, pprof.StartCPUProfile(out), "cpu profile")
		defer func() { pprof.StopCPUProfile(); out.Close() }()
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		// Numbered across runs: the environment outlives each run, and a
		// change equal to one already made would publish nothing.
		k := latency.changes
		latency.changes++
		c := circuits[(k*7919)%len(circuits)]
		c.Routes = append([]coordinator.Route(nil), c.Routes...)
		c.Routes[0].Port = 9000 + k%1000
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

// latency is the environment of one size, built once for every run of the
// benchmark (the harness calls it with b.N = 1 first): two at once would
// double the heap the collector walks, and the tail with it.
var latency struct {
	once     sync.Once
	size     int
	runner   testbed.Runner
	env      *env
	circuits []coordinator.Circuit
	changes  int
}

func latencyEnv(b *testing.B, size int) (*env, []coordinator.Circuit) {
	latency.once.Do(func() {
		latency.size = size
		dir, err := os.MkdirTemp("/dev/shm", "traefik-sd-bench-")
		if err != nil {
			dir, _ = os.MkdirTemp("", "traefik-sd-bench-")
		}
		r := &latency.runner
		r.Cleanup(func() { os.RemoveAll(dir) })
		// The sidecar is a process of its own. In the tests' process its
		// collector walked the stand-ins' heap as well (Traefik's routers,
		// the coordinator's circuits: 1.5 to 4 GB at 100,000 circuits,
		// five seconds a cycle), and whether one such cycle fell within
		// the changes decided the p99: 2.5 ms in one run, 274 in the next.
		e := startEnvProcess(r, "worker-1", func(cfg *config.Configuration) {
			// A full push of 100,000 middlewares is about 50 MB, over the
			// default limit; and the stand-in's /metrics of 100,000
			// services takes longer than its usual 100 ms interval to make.
			if size > 10000 {
				cfg.Server.MaxPushBytes = size * 2 << 10
				cfg.Traefik.ScrapeInterval = types.Duration(10 * time.Second)
				// The coordinator's whole list, asked every second in the
				// tests, is tens of megabytes here: the default interval,
				// as a worker of this size runs it.
				cfg.BackendAI.PollInterval = config.Default().BackendAI.PollInterval
			}
		}, dir)
		// Reading 100,000 circuits (2 million keys) at once takes seconds.
		e.traefik.mu.Lock()
		e.traefik.readFor = time.Duration(size/10000) * 10 * time.Second
		e.traefik.mu.Unlock()
		ctx := context.Background()
		circuits := make([]coordinator.Circuit, size)
		for i := range circuits {
			circuits[i] = coordinator.SampleInference(i)
		}
		testbed.Must(r, e.coord.BulkLoad(ctx, circuits), "load")
		testbed.Eventually(r, time.Duration(size/10000)*2*time.Minute, fmt.Sprint(size, " circuits published"), func() (bool, string) {
			status, got := e.routesNow()
			n := 0
			if got != "" {
				n = len(strings.Split(got, "\n"))
			}
			return status == http.StatusOK && n == 2*size, fmt.Sprint(status, " ", n)
		})
		// Route changes touch services only: Traefik's routers and the
		// plugin's set stay as they are, so the stand-in stops reloading
		// and the figure is the sidecar's own path (make bench measures
		// Traefik's reload apart).
		e.traefik.freeze()
		latency.env, latency.circuits = e, circuits
	})
	if latency.env == nil {
		b.Fatal("the benchmark's environment did not start")
	}
	if latency.size != size {
		b.Skipf("this process holds %d circuits; run each size on its own (-bench 'EtcdChangeToTargets/circuits=%d$')", latency.size, size)
	}
	return latency.env, latency.circuits
}

// TestMain stops the benchmark's shared environment, if one was started.
func TestMain(m *testing.M) {
	code := m.Run()
	latency.runner.Stop()
	os.Exit(code)
}
