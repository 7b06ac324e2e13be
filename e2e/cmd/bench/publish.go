package main

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"time"

	"github.com/traefik-sd/traefik-sd/e2e/stack"
	"github.com/traefik-sd/traefik-sd/internal/coordinator"
	"github.com/traefik-sd/traefik-sd/internal/testbed"
)

// publishDelay measures, with n circuits present, how long a change written
// to etcd takes to reach /v1/targets through the real Traefik:
//
//   - baseline=etcd-only-route-change: a route change (the service's
//     servers), which Traefik's view does not gate, so it is etcd -> watch ->
//     engine -> body;
//   - traefik-api-shows-router: the same new circuit, until Traefik's own
//     API reports its router (Traefik's throttle and reload, which no
//     sidecar can beat);
//   - create: a new circuit, published once Traefik has reloaded, its
//     plugin pushed the middleware and its API reported the router enabled;
//   - delete: the coordinator's prefix deletes, withdrawn as soon as etcd
//     shows the router gone.
//
// A change not seen within two minutes is counted as a timeout, and the
// rest of that scale is skipped.
func publishDelay(t testbed.T, dir string, n, rounds int) {
	b := startPublishBench(t, filepath.Join(dir, "publish-"+strconv.Itoa(n)), n, 2*time.Minute, nil)
	defer b.stop()
	ctx := context.Background()
	var change, shown, create, remove []time.Duration
	for r := 0; r < rounds && b.timeouts == 0; r++ {
		c := b.present[(r*7919)%n]
		c.Routes = append([]coordinator.Route(nil), c.Routes...)
		c.Routes[0].Port = 21000 + r
		before := b.etag()
		testbed.Must(t, b.s.Coord.UpdateRoutes(ctx, c), "route change")
		change = append(change, b.waitFor("a route change", func() bool { return b.etag() != before }))

		fresh := benchCircuit(n + r)
		inTraefik, published := b.create(fresh)
		shown = append(shown, inTraefik)
		create = append(create, published)
		remove = append(remove, b.remove(fresh.ID))
	}
	name := fmt.Sprintf("BenchmarkEtcdWriteToTargets/circuits=%d", n)
	report := func(variant string, ds []time.Duration) {
		sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
		fmt.Printf("%s/%s\t%d\t%.1f p50-ms\t%.1f max-ms\t%d timeouts\n", name, variant, len(ds),
			millis(ds[len(ds)/2]), millis(ds[len(ds)-1]), b.timeouts)
	}
	report("baseline=etcd-only-route-change", change)
	report("traefik-api-shows-router", shown)
	report("create-through-traefik", create)
	report("delete", remove)
}

// publishBench is the whole stack (etcd, Traefik with its etcd provider and
// the plugin, the sidecar) with n circuits that were in etcd before Traefik
// started, as on a worker that restarts: Traefik's etcd provider re-lists
// the whole tree on every watch response (ceiling.go), and bulk-loading
// 10,000 circuits while it runs leaves it seconds of re-listing per load
// transaction behind. Servers are loopback addresses without a health
// check, and Prometheus is left out: nothing probes or scrapes them.
type publishBench struct {
	t       testbed.T
	s       *stack.Stack
	present []coordinator.Circuit
	// circuits is how many circuits etcd holds, which the sidecar should be
	// publishing once Traefik follows.
	circuits int
	limit    time.Duration
	timeouts int
}

// benchCircuit is the i-th circuit of the etcd-to-targets benchmarks.
func benchCircuit(i int) coordinator.Circuit {
	c := coordinator.SampleInference(i)
	c.HealthCheckPath = ""
	for r := range c.Routes {
		c.Routes[r].Host = fmt.Sprintf("127.%d.%d.%d", 1+i>>16&127, i>>8&255, i&255)
		c.Routes[r].Port = 20000 + r
	}
	return c
}

// startPublishBench loads n circuits, runs loaded (if not nil) while etcd
// holds them and nothing else runs yet, starts Traefik and the sidecar, and
// waits until all n are published. A wait that passes limit is a timeout.
func startPublishBench(t testbed.T, work string, n int, limit time.Duration, loaded func(w *coordinator.Writer) error) *publishBench {
	testbed.Must(t, os.MkdirAll(work, 0o755), "work dir")
	b := &publishBench{t: t, present: make([]coordinator.Circuit, n), circuits: n, limit: limit}
	ctx := context.Background()
	start := time.Now()
	b.s = stack.Start(t, stack.Options{Dir: work, Quiet: true, NoPrometheus: true,
		BeforeTraefik: func(w *coordinator.Writer) error {
			for i := range b.present {
				b.present[i] = benchCircuit(i)
			}
			if err := w.BulkLoad(ctx, b.present); err != nil {
				return err
			}
			if loaded != nil {
				return loaded(w)
			}
			return nil
		}})
	testbed.Eventually(t, 10*time.Minute, fmt.Sprintf("%d circuits published through Traefik", n), func() (bool, string) {
		got := b.routeTargets()
		return got == 2*n, strconv.Itoa(got)
	})
	t.Logf("publish: %d circuits loaded and published through Traefik in %v", n, time.Since(start))
	return b
}

func (b *publishBench) stop() {
	b.s.Sidecar.Stop()
	b.s.Traefik.Stop()
	b.s.Etcd.Stop()
}

func (b *publishBench) routeTargets() int {
	v, _ := strconv.Atoi(b.s.SidecarMetric(context.Background(), `traefik_sd_targets{service_group="appproxy-circuit-route"}`))
	return v
}

func (b *publishBench) etag() string {
	resp, err := http.Head(b.s.SidecarURL + "/v1/targets")
	if err != nil {
		return ""
	}
	resp.Body.Close()
	return resp.Header.Get("ETag")
}

func (b *publishBench) routerShown(id string) bool {
	resp, err := http.Get(b.s.TraefikAPI + "/api/http/routers/bai_router_" + id + "@etcd")
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// waitFor polls done from now on. The pause between polls grows with the
// wait (2 ms, up to 50 ms, a fiftieth of the time waited): figures of
// milliseconds keep their precision, and a wait of seconds does not take a
// share of the two cores Traefik is re-listing on.
func (b *publishBench) waitFor(what string, done func() bool) time.Duration {
	written := time.Now()
	for !done() {
		waited := time.Since(written)
		if waited > b.limit {
			b.t.Logf("publish: %s not seen within %v at %d circuits", what, b.limit, len(b.present))
			b.timeouts++
			return b.limit
		}
		time.Sleep(min(max(2*time.Millisecond, waited/50), 50*time.Millisecond))
	}
	return time.Since(written)
}

// create writes c, a new circuit, as the coordinator does, and returns how
// long until Traefik's API showed its router and until the sidecar
// published its targets (both the limit if it timed out).
func (b *publishBench) create(c coordinator.Circuit) (shown, published time.Duration) {
	testbed.Must(b.t, b.s.Coord.Put(context.Background(), c), "create")
	want := 2 * (b.circuits + 1)
	written := time.Now()
	published = b.waitFor("a new circuit", func() bool {
		if shown == 0 && b.routerShown(c.ID) {
			shown = time.Since(written)
		}
		return b.routeTargets() == want
	})
	if shown == 0 {
		shown = published
	}
	b.circuits++
	return shown, published
}

// remove deletes a circuit as the coordinator does and returns how long
// until the sidecar withdrew its targets.
func (b *publishBench) remove(id string) time.Duration {
	testbed.Must(b.t, b.s.Coord.Delete(context.Background(), id), "delete")
	b.circuits--
	want := 2 * b.circuits
	return b.waitFor("a deleted circuit", func() bool { return b.routeTargets() == want })
}

func millis(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
