//go:build unix

package interpreted_test

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/traefik/yaegi/interp"
)

// burstRouters is how many routers a benchmarked reload builds. At 10,000
// one round takes about a minute on two cores.
var burstRouters = flag.Int("burst-routers", 3000, "routers per reload in BenchmarkReloadBurst")

const (
	// burstPace stands for Traefik's own work between two New calls (at
	// 10,000 routers with Backend.AI's chain, about 1.7 ms a router). It is
	// a pause, not work, so that the process's CPU time is the plugin's and
	// the interpreter's alone, while the sender sees a reload as long as
	// Traefik's: it records a burst every burstMax (2 s) and sweeps every
	// 500 ms meanwhile. The pause comes every burstPaceEvery routers, well
	// under the sender's 20 ms quiet window, because waking from one costs
	// CPU too: some 0.1 to 0.3 ms in a virtual machine.
	burstPace      = 10 * time.Millisecond
	burstPaceEvery = 10
	// burstAfter is how long the process is watched after the push: the
	// sender's sweeps that follow a reload are its cost too, and work put
	// off until after the push must not pass for work saved.
	burstAfter = time.Second
)

// burstCompare names a directory holding another version of the plugin's
// source (say, git show of the commit before a change, file for file), run
// as a third variant of every round so that two versions are compared on
// the same machine at the same moment.
var burstCompare = flag.String("burst-compare", "", "directory of another version of the plugin's source, benchmarked as variant \"compare\"")

// BenchmarkReloadBurst is a reload under Yaegi as Traefik makes it: New for
// every router, one after another, then the sender recording them and
// pushing to a local sidecar. Each round runs the plugin and, as the
// baseline, the same plugin with a sender that drops what New queues (off,
// see senderOff), in rotating order, and charges the difference in the
// process's CPU time to the sender:
//
//   - cold: a fresh interpreter's first reload, pushed whole (a full push of
//     every router), as after Traefik starts;
//   - reload: the next reload of a plugin that knows them all, with one
//     router added (what made Traefik reload): old instances cancelled
//     first, as Traefik does, and a delta carrying the new router.
//
// Run it with a fixed count, each round is seconds long:
//
//	go test -run '^$' -bench ReloadBurst -benchtime 3x [-burst-routers 10000] [-burst-compare dir]
//
// Metrics, per router: off-burst and on-burst, the process's CPU while New
// is called; on-to-push, from the last New until the push that carries the
// last router arrives; on-after, the burstAfter that follows; sender, all of
// the plugin's CPU less the baseline's over the same span; settle-ms, the
// wall time from the last New to that push. With -burst-compare, the same
// for the other version (compare-…) and sender/compare-sender.
func BenchmarkReloadBurst(b *testing.B) {
	n := *burstRouters
	variants := []burstVariant{{name: "off", patch: senderOff, src: ".."}, {name: "on", sender: true, src: ".."}}
	if *burstCompare != "" {
		variants = append(variants, burstVariant{name: "compare", sender: true, src: *burstCompare})
	}
	for _, scenario := range []string{"cold", "reload"} {
		b.Run(fmt.Sprintf("%s-%d", scenario, n), func(b *testing.B) {
			sums := make([]burstRun, len(variants))
			b.ResetTimer()
			for round := 0; round < b.N; round++ {
				for k := range variants {
					v := (round + k) % len(variants) // rotate which goes first
					// One copy of the plugin at a time: the process's
					// CPU time is all that is measured, and another
					// copy's sender, sweeping its own routers, would
					// be charged to this one.
					b.StopTimer()
					p := newBurstPlugin(b, variants[v], n)
					if scenario == "reload" {
						p.burst(b, p.names) // the first load
						p.names = append(p.names, "bai_sd_added@etcd")
					}
					b.StartTimer()
					sums[v].add(p.burst(b, p.names))
					b.StopTimer()
					p.retire(b)
					b.StartTimer()
				}
			}
			b.StopTimer()
			per := func(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) / float64(b.N*n) }
			off := sums[0]
			b.ReportMetric(per(off.burst), "off-burst-µs/router")
			for v := 1; v < len(variants); v++ {
				on, name := sums[v], variants[v].name
				b.ReportMetric(per(on.burst), name+"-burst-µs/router")
				b.ReportMetric(per(on.toPush), name+"-to-push-µs/router")
				b.ReportMetric(per(on.after), name+"-after-µs/router")
				b.ReportMetric(per(on.total()-off.total()), name+"-sender-µs/router")
				b.ReportMetric(float64(on.total())/float64(off.total()), name+"/off-cpu")
				b.ReportMetric(float64(on.settle)/float64(time.Millisecond)/float64(b.N), name+"-settle-ms")
			}
			if len(variants) == 3 {
				b.ReportMetric(float64(sums[1].total()-off.total())/float64(sums[2].total()-off.total()), "sender/compare-sender")
			}
		})
	}
}

// burstVariant is one copy of the plugin a round runs.
type burstVariant struct {
	name   string
	src    string // the directory of its source
	patch  func(file, src string) string
	sender bool // whether it pushes: the benchmark waits for its push
}

// burstRun is one reload's process CPU time by span, and the wall time
// from its last New to its push.
type burstRun struct {
	burst, toPush, after, settle time.Duration
}

func (r *burstRun) add(o burstRun) {
	r.burst += o.burst
	r.toPush += o.toPush
	r.after += o.after
	r.settle += o.settle
}

func (r burstRun) total() time.Duration { return r.burst + r.toPush + r.after }

// processCPU is the process's user and system CPU time so far: the
// interpreter's goroutines, the collector and the sidecar's handler alike.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		panic(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// burstPlugin is one interpreted copy of the plugin, with its own sidecar
// and its routers' configurations as Traefik hands them over.
type burstPlugin struct {
	newFn, create reflect.Value
	side          *burstSidecar
	sender        bool
	names         []string
	cancel        context.CancelFunc
}

// senderOff starts, instead of the sender, one that drops what New queues:
// it polls as the sender does while a burst lasts (every burstQuiet, from
// the burst's first New until one finds nothing), so that the wakes, which
// cost CPU of their own, and the queue, which holds every configuration
// until it is taken, are the same in both, and only recording and pushing
// differ.
func senderOff(file, src string) string {
	if file != "sender.go" {
		return src
	}
	out := strings.Replace(src, "go r.run()", "go r.discard()", 1)
	if out == src {
		panic("sender.go no longer starts its sender with go r.run(): update senderOff")
	}
	return out + `
func (r *registry) discard() {
	for {
		<-r.wake
		for {
			time.Sleep(burstQuiet)
			r.mu.Lock()
			n := len(r.arrivals)
			r.arrivals = nil
			r.mu.Unlock()
			if n == 0 {
				break
			}
		}
	}
}
`
}

func newBurstPlugin(tb testing.TB, v burstVariant, n int) *burstPlugin {
	tb.Helper()
	// The sender's failures, if any, are not the benchmark's output.
	newFn, create := loadPluginFrom(tb, v.src, interp.Options{Stdout: io.Discard, Stderr: io.Discard}, v.patch)
	p := &burstPlugin{newFn: newFn, create: create, side: newBurstSidecar(tb), sender: v.sender}
	for i := 0; i < n; i++ {
		p.names = append(p.names, fmt.Sprintf("bai_sd_%08d-0000-4000-8000-000000000000@etcd", i))
	}
	return p
}

// call is Traefik building one router's middleware: CreateConfig, its keys
// decoded into it (as the coordinator writes them for an interactive
// circuit), then New.
func (p *burstPlugin) call(tb testing.TB, ctx context.Context, name string) {
	id := strings.TrimSuffix(strings.TrimPrefix(name, "bai_sd_"), "@etcd")
	cfg := p.create.Call(nil)[0]
	conf := map[string]any{
		"circuitid":       id,
		"workerauthority": "bench-worker",
		"sessionids":      []any{id + "-session"},
		"sidecarurl":      p.side.srv.URL,
	}
	if err := decodeAsTraefik(cfg, conf); err != nil {
		tb.Fatal(err)
	}
	out := p.newFn.Call([]reflect.Value{reflect.ValueOf(ctx), reflect.ValueOf(http.Handler(http.NotFoundHandler())), cfg, reflect.ValueOf(name)})
	if e := out[1].Interface(); e != nil {
		tb.Fatal(e)
	}
}

// burst is one reload: the previous generation cancelled, then New for
// every name, paced as Traefik's own work paces them. With a sender, it
// waits for the push that carries the last name.
func (p *burstPlugin) burst(tb testing.TB, names []string) burstRun {
	ctx, cancel := context.WithCancel(context.Background())
	if p.cancel != nil {
		p.cancel()
	}
	p.cancel = cancel
	if p.sender {
		p.side.expect(`"` + names[len(names)-1] + `"`)
	}
	c0 := processCPU()
	for i, name := range names {
		p.call(tb, ctx, name)
		if i%burstPaceEvery == burstPaceEvery-1 {
			time.Sleep(burstPace)
		}
	}
	c1, t1 := processCPU(), time.Now()
	c2, t2 := c1, t1
	if p.sender {
		m := p.side.wait(tb, 60*time.Second)
		c2, t2 = m.cpu, m.at
	}
	time.Sleep(burstAfter)
	c3 := processCPU()
	return burstRun{burst: c1 - c0, toPush: c2 - c1, after: c3 - c2, settle: t2.Sub(t1)}
}

// retire cancels the plugin's routers and, with a sender, waits for their
// removal to be pushed: until then the sender sweeps them, which would
// charge the next round. Afterwards it only ticks (every 500 ms) and sends
// heartbeats, at a cost that every later round bears alike.
func (p *burstPlugin) retire(tb testing.TB) {
	if p.sender {
		p.side.expect(`"removed"`)
	}
	p.cancel()
	if p.sender {
		p.side.wait(tb, 30*time.Second)
	}
}

// burstSidecar answers every push and notes the one that holds a marker:
// when it arrived and the process's CPU time then.
type burstSidecar struct {
	srv    *httptest.Server
	mu     sync.Mutex
	marker []byte
	seen   chan burstMark
}

type burstMark struct {
	at  time.Time
	cpu time.Duration
}

func newBurstSidecar(tb testing.TB) *burstSidecar {
	s := &burstSidecar{seen: make(chan burstMark, 1)}
	s.srv = httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		s.mu.Lock()
		hit := s.marker != nil && bytes.Contains(body, s.marker)
		if hit {
			s.marker = nil
		}
		s.mu.Unlock()
		if hit {
			s.seen <- burstMark{at: time.Now(), cpu: processCPU()}
		}
		rw.WriteHeader(http.StatusNoContent)
	}))
	tb.Cleanup(s.srv.Close)
	return s
}

func (s *burstSidecar) expect(marker string) {
	s.mu.Lock()
	s.marker = []byte(marker)
	s.mu.Unlock()
}

func (s *burstSidecar) wait(tb testing.TB, limit time.Duration) burstMark {
	tb.Helper()
	select {
	case m := <-s.seen:
		return m
	case <-time.After(limit):
		s.mu.Lock()
		defer s.mu.Unlock()
		tb.Fatalf("no push held %s within %v", s.marker, limit)
		return burstMark{}
	}
}
