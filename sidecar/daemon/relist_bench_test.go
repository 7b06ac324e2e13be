package daemon

import (
	"context"
	"io"
	"log/slog"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/traefik-sd/traefik-sd/internal/coordinator"
	"github.com/traefik-sd/traefik-sd/internal/testbed"
	"github.com/traefik-sd/traefik-sd/sidecar/config"
	"github.com/traefik-sd/traefik-sd/sidecar/watch"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// benchEnv is one etcd loaded with many circuits, shared by a benchmark's
// runs (the harness calls it more than once) and stopped by TestMain.
type benchEnv struct {
	testbed.Runner
	etcd   *testbed.Etcd
	client *clientv3.Client
}

var (
	relistOnce sync.Once
	relistEnv  *benchEnv
	relistErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if relistEnv != nil {
		relistEnv.Stop()
	}
	os.Exit(code)
}

// memDir is where etcd keeps data for benchmarks: memory if the machine
// has /dev/shm, so that loading millions of keys does not wait on fsync.
func memDir(tb testing.TB) string {
	if st, err := os.Stat("/dev/shm"); err == nil && st.IsDir() {
		d, err := os.MkdirTemp("/dev/shm", "traefik-sd-bench-")
		if err == nil {
			tb.Cleanup(func() { os.RemoveAll(d) })
			return d
		}
	}
	return tb.TempDir()
}

func rss() (current, peak int64) {
	b, _ := os.ReadFile("/proc/self/status")
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) >= 2 && (f[0] == "VmRSS:" || f[0] == "VmHWM:") {
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			if f[0] == "VmRSS:" {
				current = kb << 10
			} else {
				peak = kb << 10
			}
		}
	}
	return current, peak
}

var relistCircuits = benchCircuits()

// BenchmarkRelist100k measures a full re-list of 100,000 circuits (200,000
// route targets) as after a compaction: list the root key at one revision,
// compare it with what the sidecar holds, decode what differs, rebuild and
// publish. It also reports the cold first listing and the memory per target.
func BenchmarkRelist100k(b *testing.B) {
	relistOnce.Do(func() {
		relistEnv = &benchEnv{}
		dir, err := os.MkdirTemp("/dev/shm", "traefik-sd-bench-")
		if err != nil {
			dir, _ = os.MkdirTemp("", "traefik-sd-bench-")
		}
		relistEnv.Cleanup(func() { os.RemoveAll(dir) })
		relistEnv.etcd = testbed.StartEtcd(relistEnv, dir)
		relistEnv.client, relistErr = clientv3.New(clientv3.Config{Endpoints: []string{relistEnv.etcd.Endpoint}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
		if relistErr != nil {
			return
		}
		relistEnv.Cleanup(func() { relistEnv.client.Close() })
		circuits := make([]coordinator.Circuit, relistCircuits)
		for i := range circuits {
			circuits[i] = coordinator.SampleInference(i)
		}
		w := &coordinator.Writer{Client: relistEnv.client, Authority: "worker-1"}
		relistErr = w.BulkLoad(context.Background(), circuits)
	})
	if relistErr != nil {
		b.Fatal(relistErr)
	}
	ctx := context.Background()
	cfg := config.Default()
	cfg.Worker.Authority, cfg.Worker.Node = "worker-1", "bench"
	cfg.Etcd.Endpoints = []string{relistEnv.etcd.Endpoint}
	if err := cfg.Complete(); err != nil {
		b.Fatal(err)
	}
	w := &watch.Watcher{Client: relistEnv.client, Prefix: cfg.Etcd.RootKey, Timeout: time.Minute}

	runtime.GC()
	debug.FreeOSMemory()
	before, _ := rss()
	d := New(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	coldStart := time.Now()
	batch, err := w.List(ctx)
	if err != nil {
		b.Fatal(err)
	}
	keys := len(batch.Events)
	d.applyBatch(batch)
	d.commit(batch.Received)
	cold := time.Since(coldStart)
	batch = watch.Batch{}
	routes := d.pub.Current().Groups["appproxy-circuit-route"]
	if routes != 2*relistCircuits {
		b.Fatalf("published %d route targets, want %d", routes, 2*relistCircuits)
	}
	runtime.GC()
	debug.FreeOSMemory()
	after, _ := rss()

	// Compaction is etcd's work, not the re-list's: it runs before the timer.
	resp, err := relistEnv.client.Get(ctx, "x")
	if err != nil {
		b.Fatal(err)
	}
	if _, err := relistEnv.client.Compact(ctx, resp.Header.Revision, clientv3.WithCompactPhysical()); err != nil && !strings.Contains(err.Error(), "compacted") {
		b.Fatal(err)
	}
	var listing, applying, committing time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		t0 := time.Now()
		batch, err := w.List(ctx)
		if err != nil {
			b.Fatal(err)
		}
		t1 := time.Now()
		d.applyBatch(batch)
		t2 := time.Now()
		d.commit(batch.Received)
		listing += t1.Sub(t0)
		applying += t2.Sub(t1)
		committing += time.Since(t2)
	}
	b.StopTimer()
	b.ReportMetric(listing.Seconds()/float64(b.N), "list-s")
	b.ReportMetric(applying.Seconds()/float64(b.N), "compare-s")
	b.ReportMetric(committing.Seconds()/float64(b.N), "decode+publish-s")
	_, peak := rss()
	b.ReportMetric(cold.Seconds(), "cold-list-s")
	b.ReportMetric(float64(keys), "keys")
	b.ReportMetric(float64(after-before)/float64(routes), "rss-bytes/target")
	b.ReportMetric(float64(peak)/(1<<20), "peak-rss-MiB")
}

// benchCircuits is 100,000 unless TRAEFIK_SD_BENCH_CIRCUITS says otherwise
// (smaller runs, for profiling).
func benchCircuits() int {
	if n, err := strconv.Atoi(os.Getenv("TRAEFIK_SD_BENCH_CIRCUITS")); err == nil && n > 0 {
		return n
	}
	return 100000
}
