//go:build e2e

package e2e_test

import (
	"context"
	"fmt"
	"math/rand"
	"net/http"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/traefik-sd/traefik-sd/e2e/stack"
	"github.com/traefik-sd/traefik-sd/internal/coordinator"
	"github.com/traefik-sd/traefik-sd/internal/testbed"
)

// churn plays the coordinator at a high rate and keeps the model of what
// etcd must hold. A write whose outcome is unknown (it failed while etcd
// was down or paused, and may still have been applied) makes its circuits
// uncertain until the next reconcile writes them again, as the
// coordinator's own 30 s reconcile does.
type churn struct {
	mu        sync.Mutex
	rng       *rand.Rand
	live      map[string]coordinator.Circuit
	uncertain map[string]bool
	deletedAt map[string]time.Time
	next      int
	changes   int
	failures  int
	coord     *coordinator.Writer
	sidecar   string
}

func (c *churn) circuit(i int) coordinator.Circuit {
	id := fmt.Sprintf("c4a05000-0000-4000-8000-%012d", i)
	routes := 1 + c.rng.Intn(3)
	cc := coordinator.Circuit{ID: id, App: "app", Mode: "inference", Hostname: id + ".example"}
	for r := 0; r < routes; r++ {
		cc.Routes = append(cc.Routes, coordinator.Route{
			RouteID: fmt.Sprintf("%s-r%d", id[len(id)-6:], c.rng.Intn(100)), SessionID: fmt.Sprintf("s-%d-%d", i, r),
			Host: fmt.Sprintf("127.200.%d.%d", i%250, r*80+c.rng.Intn(80)), Port: 8000 + i/250, // loopback: Prometheus scrapes what is published
		})
	}
	return cc
}

// step makes one change; it returns whether etcd took it.
func (c *churn) step(ctx context.Context) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	opCtx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	ids := make([]string, 0, len(c.live))
	for id := range c.live {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	var err error
	var touched []string
	switch op := c.rng.Intn(10); {
	case op < 4 || len(ids) < 20: // create one to five circuits in one transaction
		var batch []coordinator.Circuit
		for n := 1 + c.rng.Intn(5); n > 0 && len(c.live)+len(batch) < 200; n-- {
			batch = append(batch, c.circuit(c.next))
			c.next++
		}
		if len(batch) == 0 {
			return true
		}
		if err = c.coord.Put(opCtx, batch...); err == nil {
			for _, cc := range batch {
				c.live[cc.ID] = cc
			}
		}
		for _, cc := range batch {
			touched = append(touched, cc.ID)
		}
	case op < 7: // change one circuit's routes
		id := ids[c.rng.Intn(len(ids))]
		var i int
		fmt.Sscanf(id[len(id)-12:], "%d", &i)
		cc := c.circuit(i)
		if err = c.coord.UpdateRoutes(opCtx, cc); err == nil {
			c.live[id] = cc
		}
		touched = []string{id}
	default: // delete one to three
		n := 1 + c.rng.Intn(3)
		for _, k := range c.rng.Perm(len(ids))[:n] {
			touched = append(touched, ids[k])
		}
		if err = c.coord.Delete(opCtx, touched...); err == nil {
			now := time.Now()
			for _, id := range touched {
				delete(c.live, id)
				c.deletedAt[id] = now
			}
		}
	}
	if err != nil {
		c.failures++
		for _, id := range touched {
			c.uncertain[id] = true
		}
		return false
	}
	c.changes++
	return true
}

// reconcile writes the uncertain circuits as the model has them.
func (c *churn) reconcile(ctx context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	for id := range c.uncertain {
		var err error
		if cc, ok := c.live[id]; ok {
			err = c.coord.Put(ctx, cc)
		} else {
			err = c.coord.Delete(ctx, id)
		}
		if err != nil {
			return err
		}
		delete(c.uncertain, id)
	}
	return nil
}

func (c *churn) want() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var ls []string
	for _, cc := range c.live {
		seen := map[string]bool{}
		for _, r := range cc.Routes {
			l := routeLine(fmt.Sprintf("%s:%d", r.Host, r.Port), cc.ID, r.SessionID, r.RouteID)
			if !seen[l] {
				seen[l] = true
				ls = append(ls, l)
			}
		}
	}
	return lines(ls)
}

func TestChurnUnderFaults(t *testing.T) {
	started := time.Now()
	s := stack.Start(t, stack.Options{Dir: t.TempDir(), ScrapeInterval: 5 * time.Second, Quiet: true, EtcdProxy: true})
	ctx := testbed.Context(t, 10*time.Minute)
	c := &churn{rng: rand.New(rand.NewSource(42)), live: map[string]coordinator.Circuit{}, uncertain: map[string]bool{},
		deletedAt: map[string]time.Time{}, coord: s.Coord, sidecar: s.SidecarURL}

	// The coordinator, at a high rate, until told to stop.
	var running sync.Mutex // held while churn is paused
	stopChurn := make(chan struct{})
	churnDone := make(chan struct{})
	go func() {
		defer close(churnDone)
		for {
			select {
			case <-stopChurn:
				return
			default:
			}
			running.Lock()
			ok := c.step(ctx)
			running.Unlock()
			if !ok {
				time.Sleep(200 * time.Millisecond) // etcd is down: do not spin
			} else {
				time.Sleep(10 * time.Millisecond)
			}
		}
	}()

	// How long a deleted circuit stays published.
	var longest time.Duration
	var longestMu sync.Mutex
	stopWatch := make(chan struct{})
	watchDone := make(chan struct{})
	go func() {
		defer close(watchDone)
		for {
			select {
			case <-stopWatch:
				return
			case <-time.After(100 * time.Millisecond):
			}
			groups, err := s.SidecarTargets(ctx)
			if err != nil {
				continue
			}
			present := map[string]bool{}
			for _, g := range groups {
				present[g.Labels["circuit_id"]] = true
			}
			now := time.Now()
			c.mu.Lock()
			for id, at := range c.deletedAt {
				if !present[id] {
					longestMu.Lock()
					if d := now.Sub(at); d > longest {
						longest = d
					}
					longestMu.Unlock()
					delete(c.deletedAt, id)
				}
			}
			c.mu.Unlock()
		}
	}()

	converge := func(what string) time.Duration {
		running.Lock()
		defer running.Unlock()
		testbed.Must(t, c.reconcile(ctx), "reconcile after %s", what)
		want := c.want()
		return testbed.Eventually(t, 60*time.Second, "converged after "+what, func() (bool, string) {
			got, err := sidecarRoutes(ctx, s)
			if err != nil {
				return false, err.Error()
			}
			if got == want {
				return true, ""
			}
			return false, fmt.Sprintf("%d targets, want %d", strings.Count(got, "\n")+1, strings.Count(want, "\n")+1)
		})
	}

	faults := []struct {
		name   string
		inject func()
	}{
		{"sidecar killed (SIGKILL)", func() {
			s.Sidecar.Restart(t, true)
			testbed.WaitHTTP(t, s.Sidecar, s.SidecarURL+"/readyz", http.StatusOK, 60*time.Second)
			// Ready means the plugin re-sent its set whole to the new
			// process (its heartbeat got 409), long before any resync.
			if full := s.SidecarMetric(ctx, `traefik_sd_plugin_pushes_total{result="full"}`); full == "" || full == "0" {
				t.Errorf("the restarted sidecar is ready without a full push from the plugin: %q", full)
			}
		}},
		{"the sidecar cut off from etcd while it compacts past the watch", func() {
			s.EtcdProxy.Cut()
			testbed.Eventually(t, 30*time.Second, "the cut noticed", func() (bool, string) {
				m := s.SidecarMetric(ctx, "traefik_sd_etcd_watch_up")
				return m == "0", m
			})
			time.Sleep(2 * time.Second) // the coordinator churns on meanwhile: deletes the sidecar cannot see
			resp, err := s.Client.Get(ctx, "x")
			testbed.Must(t, err, "revision")
			_, err = s.Client.Compact(ctx, resp.Header.Revision)
			testbed.Must(t, err, "compact")
			s.EtcdProxy.Restore()
			testbed.Eventually(t, 60*time.Second, "a re-list after the compaction", func() (bool, string) {
				m := s.SidecarMetric(ctx, `traefik_sd_etcd_relists_total{reason="compacted"}`)
				return m != "" && m != "0", m
			})
		}},
		{"Traefik restarted", func() {
			s.Traefik.Restart(t, false)
			testbed.WaitHTTP(t, s.Traefik, s.TraefikAPI+"/ping", http.StatusOK, 60*time.Second)
		}},
		{"etcd killed (SIGKILL)", func() {
			s.Etcd.Restart(t, true)
			testbed.WaitHTTP(t, s.Etcd.Process, "http://"+s.Etcd.Endpoint+"/health", http.StatusOK, 60*time.Second)
		}},
		{"etcd paused (SIGSTOP) past the client timeouts", func() {
			s.Etcd.Signal(syscall.SIGSTOP)
			stale := testbed.Eventually(t, 30*time.Second, "staleness reported while etcd is paused", func() (bool, string) {
				m := s.SidecarMetric(ctx, "traefik_sd_etcd_watch_up")
				return m == "0", m
			})
			// From here to the end of the pause the last good set is served, unchanged.
			first, err1 := sidecarRoutes(ctx, s)
			time.Sleep(8 * time.Second)
			last, err2 := sidecarRoutes(ctx, s)
			if err1 != nil || err2 != nil || first == "" || first != last {
				t.Errorf("the sidecar did not keep serving its last set while etcd was paused (%v, %v; %d then %d targets)",
					err1, err2, strings.Count(first, "\n")+1, strings.Count(last, "\n")+1)
			}
			s.Etcd.Signal(syscall.SIGCONT)
			t.Logf("etcd paused: staleness reported after %v", stale)
			testbed.Eventually(t, 60*time.Second, "watch up after SIGCONT", func() (bool, string) {
				m := s.SidecarMetric(ctx, "traefik_sd_etcd_watch_up")
				return m == "1", m
			})
		}},
	}
	time.Sleep(10 * time.Second)
	for _, f := range faults {
		f.inject()
		took := converge(f.name)
		t.Logf("fault %q: converged %v after recovery, %d changes so far", f.name, took, c.changes)
		time.Sleep(10 * time.Second) // churn on
	}
	close(stopChurn)
	<-churnDone
	converge("the last change")
	got, _ := sidecarRoutes(ctx, s)
	equal := got == c.want()
	time.Sleep(300 * time.Millisecond)
	close(stopWatch)
	<-watchDone
	longestMu.Lock()
	defer longestMu.Unlock()
	yes := map[bool]string{true: "yes", false: "no"}
	t.Logf("CHURN faults injected: %d, changes made: %d (failed while a part was down: %d), circuits live at the end: %d, "+
		"final set equal: %s, longest a deleted circuit stayed published: %v, whole run %v",
		len(faults), c.changes, c.failures, len(c.live), yes[equal], longest.Round(time.Millisecond), time.Since(started).Round(time.Second))
	if !equal {
		t.Errorf("final set differs from what etcd must hold")
	}
	if c.changes < 1000 {
		t.Errorf("only %d changes: the churn did not run at a high rate", c.changes)
	}
	// A deleted circuit stays published at most for the longest window in
	// which the coordinator can write etcd and the sidecar cannot read it
	// (the cut: until the cut is noticed, three silent progress intervals
	// of 1 s, then 2 s more), plus one re-list. A paused or killed etcd
	// takes no deletes, and a killed sidecar answers nothing.
	if bound := 15 * time.Second; longest > bound {
		t.Errorf("a deleted circuit stayed published for %v, over the %v bound", longest, bound)
	}
	// What Prometheus discovered is the same final set.
	want := c.want()
	testbed.Eventually(t, 60*time.Second, "Prometheus has the final set", func() (bool, string) {
		got, _ := promRoutes(ctx, s, false)
		return got == want, fmt.Sprintf("%d targets in Prometheus, want %d", strings.Count(got, "\n")+1, strings.Count(want, "\n")+1)
	})
}
