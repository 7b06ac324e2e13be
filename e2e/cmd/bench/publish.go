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
// Servers are loopback addresses without a health check, and Prometheus is
// left out: nothing probes or scrapes them. The n circuits are in etcd
// before Traefik starts, as on a worker that restarts: Traefik's etcd
// provider re-lists the whole tree on every watch event, and bulk-loading
// 10,000 circuits while it runs leaves it seconds of re-listing per load
// transaction behind. A change not seen within waitLimit is counted as a
// timeout, and the rest of that scale is skipped.
func publishDelay(t testbed.T, dir string, n, rounds int) {
	const waitLimit = 2 * time.Minute
	work := filepath.Join(dir, "publish-"+strconv.Itoa(n))
	testbed.Must(t, os.MkdirAll(work, 0o755), "work dir")
	circuit := func(i int) coordinator.Circuit {
		c := coordinator.SampleInference(i)
		c.HealthCheckPath = ""
		for r := range c.Routes {
			c.Routes[r].Host = fmt.Sprintf("127.%d.%d.%d", 1+i>>16&127, i>>8&255, i&255)
			c.Routes[r].Port = 20000 + r
		}
		return c
	}
	present := make([]coordinator.Circuit, n)
	ctx := context.Background()
	start := time.Now()
	s := stack.Start(t, stack.Options{Dir: work, Quiet: true, NoPrometheus: true,
		BeforeTraefik: func(w *coordinator.Writer) error {
			for i := range present {
				present[i] = circuit(i)
			}
			return w.BulkLoad(ctx, present)
		}})
	defer func() {
		s.Sidecar.Stop()
		s.Traefik.Stop()
		s.Etcd.Stop()
	}()
	routeTargets := func() int {
		v, _ := strconv.Atoi(s.SidecarMetric(ctx, `traefik_sd_targets{service_group="appproxy-circuit-route"}`))
		return v
	}
	testbed.Eventually(t, 10*time.Minute, fmt.Sprintf("%d circuits published through Traefik", n), func() (bool, string) {
		got := routeTargets()
		return got == 2*n, strconv.Itoa(got)
	})
	t.Logf("publish: %d circuits loaded and published through Traefik in %v", n, time.Since(start))

	etag := func() string {
		resp, err := http.Head(s.SidecarURL + "/v1/targets")
		if err != nil {
			return ""
		}
		resp.Body.Close()
		return resp.Header.Get("ETag")
	}
	timeouts := 0
	waitFor := func(what string, done func() bool) time.Duration {
		written := time.Now()
		for !done() {
			if time.Since(written) > waitLimit {
				t.Logf("publish: %s not seen within %v at %d circuits", what, waitLimit, n)
				timeouts++
				return waitLimit
			}
			time.Sleep(2 * time.Millisecond)
		}
		return time.Since(written)
	}
	routerShown := func(id string) bool {
		resp, err := http.Get(s.TraefikAPI + "/api/http/routers/bai_router_" + id + "@etcd")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}
	var change, shown, create, remove []time.Duration
	for r := 0; r < rounds && timeouts == 0; r++ {
		c := present[(r*7919)%n]
		c.Routes = append([]coordinator.Route(nil), c.Routes...)
		c.Routes[0].Port = 21000 + r
		before := etag()
		testbed.Must(t, s.Coord.UpdateRoutes(ctx, c), "route change")
		change = append(change, waitFor("a route change", func() bool { return etag() != before }))

		fresh := circuit(n + r)
		testbed.Must(t, s.Coord.Put(ctx, fresh), "create")
		var inTraefik time.Duration
		written := time.Now()
		create = append(create, waitFor("a new circuit", func() bool {
			if inTraefik == 0 && routerShown(fresh.ID) {
				inTraefik = time.Since(written)
			}
			return routeTargets() == 2*n+2
		}))
		if inTraefik == 0 {
			inTraefik = create[len(create)-1]
		}
		shown = append(shown, inTraefik)
		testbed.Must(t, s.Coord.Delete(ctx, fresh.ID), "delete")
		remove = append(remove, waitFor("a deleted circuit", func() bool { return routeTargets() == 2*n }))
	}
	name := fmt.Sprintf("BenchmarkEtcdWriteToTargets/circuits=%d", n)
	report := func(variant string, ds []time.Duration) {
		sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
		fmt.Printf("%s/%s\t%d\t%.1f p50-ms\t%.1f max-ms\t%d timeouts\n", name, variant, len(ds),
			float64(ds[len(ds)/2].Microseconds())/1000, float64(ds[len(ds)-1].Microseconds())/1000, timeouts)
	}
	report("baseline=etcd-only-route-change", change)
	report("traefik-api-shows-router", shown)
	report("create-through-traefik", create)
	report("delete", remove)
}
