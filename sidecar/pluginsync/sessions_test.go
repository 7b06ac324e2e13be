package pluginsync_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/traefik-sd/traefik-sd/plugin"
	"github.com/traefik-sd/traefik-sd/sidecar/pluginsync"
)

// TestANodeIsBoundToItsBootUntilItGoesSilent: while a Traefik process
// heartbeats, a full push under its node name from another boot is refused
// and changes nothing; once it has missed two heartbeats, a new boot (a
// restarted Traefik) takes the name over.
func TestANodeIsBoundToItsBootUntilItGoesSilent(t *testing.T) {
	now := time.Now()
	s := pluginsync.NewStore()
	if err := s.Apply(push(true, 1, "a"), now); err != nil {
		t.Fatal(err)
	}
	s.Drain()
	stranger := push(true, 1, "evil")
	stranger.Boot = "other"
	at := now
	for seq := uint64(2); seq < 50; seq++ {
		at = at.Add(2 * time.Second)
		if err := s.Apply(push(false, seq), at); err != nil {
			t.Fatalf("heartbeat %d: %v", seq, err)
		}
		if err := s.Apply(stranger, at.Add(time.Second)); !errors.Is(err, pluginsync.ErrNodeHeld) {
			t.Fatalf("a new boot under a live node: %v, want ErrNodeHeld", err)
		}
		delta := push(false, seq+1, "evil")
		delta.Boot = "other"
		if err := s.Apply(delta, at.Add(time.Second)); !errors.Is(err, pluginsync.ErrNeedFull) {
			t.Fatalf("a delta from a boot the sidecar does not hold: %v, want ErrNeedFull", err)
		}
	}
	if u := s.Drain(); len(u) != 0 {
		t.Fatalf("refused pushes queued updates: %+v", u)
	}
	if ss := s.Sessions(); len(ss) != 1 || ss[0].Boot != "b1" {
		t.Fatalf("sessions %+v, want the live process's", ss)
	}
	// The process stops: two heartbeats later the name is free.
	if err := s.Apply(stranger, at.Add(4*time.Second)); !errors.Is(err, pluginsync.ErrNodeHeld) {
		t.Fatalf("within two heartbeats of the last: %v, want ErrNodeHeld", err)
	}
	if err := s.Apply(stranger, at.Add(4*time.Second+time.Millisecond)); err != nil {
		t.Fatalf("after two missed heartbeats: %v", err)
	}
	if u := s.Drain(); len(u) != 1 || !u[0].NewBoot || names(u[0]) != "evil -" {
		t.Fatalf("the new boot's full set: %+v", u)
	}
	// And it is now the new boot's: the old one's late pushes are refused.
	if err := s.Apply(push(false, 50), at.Add(5*time.Second)); !errors.Is(err, pluginsync.ErrNeedFull) {
		t.Fatalf("the old boot's delta: %v, want ErrNeedFull", err)
	}
	if err := s.Apply(push(true, 51, "a"), at.Add(5*time.Second)); !errors.Is(err, pluginsync.ErrNodeHeld) {
		t.Fatalf("the old boot's full push: %v, want ErrNodeHeld", err)
	}
}

// TestARestartedTraefikTakesOverBeforeItsSetIsWithdrawn: the plugin
// answers a refused full push with its backoff (plugin/sender.go:
// firstBackoff 250 ms, doubling, at most 10 s); however soon after the old
// process's last heartbeat the new one first pushes, its full set is
// accepted before the old process counts as gone (five heartbeats), so the
// set never lacks what both serve.
func TestARestartedTraefikTakesOverBeforeItsSetIsWithdrawn(t *testing.T) {
	const firstBackoff, maxBackoff = 250 * time.Millisecond, 10 * time.Second
	for _, heartbeat := range []int{1, 2} {
		// A first push after five heartbeats finds the old set withdrawn
		// already: Traefik was down that long.
		for delay := time.Duration(0); delay < 5*time.Duration(heartbeat)*time.Second; delay += 50 * time.Millisecond {
			s := pluginsync.NewStore()
			last := time.Unix(1e9, 0)
			old := push(true, 1, "a")
			old.HeartbeatSeconds = heartbeat
			if err := s.Apply(old, last); err != nil {
				t.Fatal(err)
			}
			restarted := push(true, 1, "a")
			restarted.Boot, restarted.HeartbeatSeconds = "b2", heartbeat
			at, backoff := last.Add(delay), time.Duration(0)
			for {
				if gone := s.Expire(at); len(gone) > 0 {
					t.Fatalf("heartbeat %ds, first push %v after the old process's last: its set was withdrawn at %v, before the new boot was accepted",
						heartbeat, delay, at.Sub(last))
				}
				err := s.Apply(restarted, at)
				if err == nil {
					break
				}
				if !errors.Is(err, pluginsync.ErrNodeHeld) {
					t.Fatal(err)
				}
				backoff = min(max(2*backoff, firstBackoff), maxBackoff)
				at = at.Add(backoff)
			}
		}
	}
}

// TestPushIntervalsAreClamped: heartbeat and resync are clamped, so a push
// cannot keep a silent process's set for ever (resyncSeconds 3e9 kept it
// until the sidecar restarted); a heartbeat of 0 is refused.
func TestPushIntervalsAreClamped(t *testing.T) {
	body := `{"node":"n","boot":"b","seq":1,"full":true,"resyncSeconds":3000000000,"heartbeatSeconds":1000000000,"middlewares":[]}`
	p, err := pluginsync.Decode([]byte(body))
	if err != nil {
		t.Fatal(err)
	}
	if p.ResyncSeconds != pluginsync.MaxResyncSeconds || p.HeartbeatSeconds != pluginsync.MaxHeartbeatSeconds {
		t.Fatalf("resync %d, heartbeat %d; want them clamped to %d and %d", p.ResyncSeconds, p.HeartbeatSeconds,
			pluginsync.MaxResyncSeconds, pluginsync.MaxHeartbeatSeconds)
	}
	s := pluginsync.NewStore()
	now := time.Now()
	if err := s.Apply(p, now); err != nil {
		t.Fatal(err)
	}
	if gone := s.Expire(now.Add(5 * pluginsync.MaxHeartbeatSeconds * time.Second)); len(gone) != 0 {
		t.Fatal("gone within five of the longest heartbeats")
	}
	if gone := s.Expire(now.Add(5*pluginsync.MaxHeartbeatSeconds*time.Second + time.Millisecond)); len(gone) != 1 {
		t.Fatal("a silent process outlived five of the longest heartbeats")
	}
	for _, hb := range []string{`"heartbeatSeconds":0,`, ``, `"heartbeatSeconds":-2,`} {
		body := `{"node":"n","boot":"b","seq":1,"full":true,"resyncSeconds":30,` + hb + `"middlewares":[]}`
		if _, err := pluginsync.Decode([]byte(body)); err == nil {
			t.Errorf("accepted %s", body)
		}
	}
}

// TestPushSessionsAreCapped: 100,000 pushes, each under a node name of its
// own, from one client: the sessions stop at the cap, the rest are refused
// with ErrTooManySessions, and memory stays bounded. The processes already
// in keep pushing; once one goes silent, a new one gets its place.
func TestPushSessionsAreCapped(t *testing.T) {
	const pushes = 100000
	s := pluginsync.NewStore()
	now := time.Now()
	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	started := time.Now()
	refused := 0
	for i := 0; i < pushes; i++ {
		p := plugin.Push{Node: fmt.Sprintf("node-%06d", i), Boot: "b", Seq: 1, Full: true, ResyncSeconds: 300, HeartbeatSeconds: 2,
			Middlewares: []plugin.LiveMiddleware{{Name: "m@etcd", Instances: 1, Config: plugin.Config{CircuitID: "c", MetricsPath: "/metrics"}}}}
		body, _ := json.Marshal(p)
		decoded, err := pluginsync.Decode(body)
		if err != nil {
			t.Fatal(err)
		}
		switch err := s.Apply(decoded, now); {
		case errors.Is(err, pluginsync.ErrTooManySessions):
			refused++
		case err != nil:
			t.Fatal(err)
		}
		if i%1000 == 0 {
			s.Drain() // as the daemon's loop does
		}
	}
	s.Drain()
	elapsed := time.Since(started)
	runtime.GC()
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	grew := int64(after.HeapAlloc) - int64(before.HeapAlloc)
	t.Logf("%d pushes in %v; %d sessions, %d refused; heap grew %d bytes", pushes, elapsed, s.Nodes(), refused, grew)
	if s.Nodes() != pluginsync.DefaultMaxSessions || refused != pushes-pluginsync.DefaultMaxSessions || len(s.Sessions()) != pluginsync.DefaultMaxSessions {
		t.Fatalf("%d sessions, %d refused; want %d and %d", s.Nodes(), refused, pluginsync.DefaultMaxSessions, pushes-pluginsync.DefaultMaxSessions)
	}
	if grew > 1<<20 {
		t.Errorf("the heap grew by %d bytes for %d sessions", grew, s.Nodes())
	}
	if elapsed > 30*time.Second {
		t.Errorf("100,000 pushes took %v", elapsed)
	}
	// A process in keeps pushing at the cap.
	in := plugin.Push{Node: "node-000000", Boot: "b", Seq: 2, HeartbeatSeconds: 2, ResyncSeconds: 300}
	if err := s.Apply(in, now.Add(time.Second)); err != nil {
		t.Fatalf("a heartbeat of a process in, at the cap: %v", err)
	}
	// The others go silent; their places are free again.
	if gone := s.Expire(now.Add(10*time.Second + time.Millisecond)); len(gone) != pluginsync.DefaultMaxSessions-1 {
		t.Fatalf("%d expired, want %d", len(gone), pluginsync.DefaultMaxSessions-1)
	}
	if err := s.Apply(plugin.Push{Node: "late", Boot: "b", Seq: 1, Full: true, HeartbeatSeconds: 2, ResyncSeconds: 300}, now.Add(11*time.Second)); err != nil {
		t.Fatalf("a new process under the cap: %v", err)
	}
	// A lower cap, set by --plugin.maxSessions.
	s = pluginsync.NewStore()
	s.SetMaxSessions(2)
	for i, want := range []error{nil, nil, pluginsync.ErrTooManySessions} {
		if err := s.Apply(plugin.Push{Node: fmt.Sprint(i), Boot: "b", Seq: 1, Full: true, HeartbeatSeconds: 2, ResyncSeconds: 300}, now); !errors.Is(err, want) && err != want {
			t.Errorf("push %d over a cap of 2: %v, want %v", i, err, want)
		}
	}
}
