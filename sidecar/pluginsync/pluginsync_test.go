package pluginsync_test

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/traefik-sd/traefik-sd/plugin"
	"github.com/traefik-sd/traefik-sd/sidecar/pluginsync"
)

func push(full bool, seq uint64, names ...string) plugin.Push {
	p := plugin.Push{Node: "traefik-0", Boot: "b1", Seq: seq, Full: full, ResyncSeconds: 30, HeartbeatSeconds: 2, Middlewares: []plugin.LiveMiddleware{}}
	for _, n := range names {
		p.Middlewares = append(p.Middlewares, plugin.LiveMiddleware{Name: n, Instances: 1, Config: plugin.Config{CircuitID: n, MetricsPath: "/metrics"}})
	}
	return p
}

func TestDecodeRefusesWithTheField(t *testing.T) {
	testCases := []struct {
		desc, body, wantErr string
	}{
		{"not JSON", `{"node":`, "push body"},
		{"unknown field", `{"node":"n","boot":"b","seq":1,"full":true,"resyncSeconds":30,"heartbeatSeconds":2,"middlewares":[],"extra":1}`, `unknown field "extra"`},
		{"no node", `{"boot":"b","seq":1,"full":true,"resyncSeconds":30,"heartbeatSeconds":2}`, "node: required"},
		{"zero seq", `{"node":"n","boot":"b","seq":0,"full":true,"resyncSeconds":30,"heartbeatSeconds":2}`, "seq"},
		{"a middleware without name", `{"node":"n","boot":"b","seq":1,"full":true,"resyncSeconds":30,"heartbeatSeconds":2,"middlewares":[{"config":{"circuitId":"c","metricsPath":"/metrics"}}]}`, "middlewares[0].name"},
		{"an invalid config", `{"node":"n","boot":"b","seq":1,"full":true,"resyncSeconds":30,"heartbeatSeconds":2,"middlewares":[{"name":"m@etcd","config":{"circuitId":"c","metricsPath":"/metrics","labels":{"bad-name":"x"}}}]}`, "middlewares[0].config.labels.bad-name"},
		{"removals in a full push", `{"node":"n","boot":"b","seq":1,"full":true,"resyncSeconds":30,"heartbeatSeconds":2,"removed":["x"]}`, "removed"},
		{"trailing data", `{"node":"n","boot":"b","seq":1,"full":true,"resyncSeconds":30,"heartbeatSeconds":2} {}`, "trailing"},
		{"no heartbeat", `{"node":"n","boot":"b","seq":1,"full":true,"resyncSeconds":30}`, "heartbeatSeconds: must be positive"},
		{"heartbeat 0", `{"node":"n","boot":"b","seq":1,"full":true,"resyncSeconds":30,"heartbeatSeconds":0}`, "heartbeatSeconds: must be positive"},
		{"a negative heartbeat", `{"node":"n","boot":"b","seq":1,"full":true,"resyncSeconds":30,"heartbeatSeconds":-1}`, "heartbeatSeconds: must be positive"},
	}
	for _, test := range testCases {
		t.Run(test.desc, func(t *testing.T) {
			_, err := pluginsync.Decode([]byte(test.body))
			if err == nil || !strings.Contains(err.Error(), test.wantErr) {
				t.Errorf("error %v, want one containing %q", err, test.wantErr)
			}
		})
	}
}

func TestDecodeAcceptsWhatThePluginSends(t *testing.T) {
	body, _ := json.Marshal(push(true, 1, "bai_sd_a@etcd"))
	p, err := pluginsync.Decode(body)
	if err != nil || len(p.Middlewares) != 1 {
		t.Fatalf("%v %+v", err, p)
	}
}

func names(u pluginsync.Update) string {
	var out []string
	for _, m := range u.Live {
		out = append(out, m.Name)
	}
	return strings.Join(out, ",") + " -" + strings.Join(u.Removed, ",")
}

func TestApplySequence(t *testing.T) {
	s := pluginsync.NewStore()
	now := time.Now()
	if err := s.Apply(push(false, 1, "a"), now); !errors.Is(err, pluginsync.ErrNeedFull) {
		t.Fatalf("a first delta must ask for a full push, got %v", err)
	}
	if err := s.Apply(push(true, 1, "a", "b"), now); err != nil {
		t.Fatal(err)
	}
	d := push(false, 2, "c")
	d.Removed = []string{"a"}
	if err := s.Apply(d, now); err != nil {
		t.Fatal(err)
	}
	if err := s.Apply(push(false, 4, "d"), now); !errors.Is(err, pluginsync.ErrNeedFull) {
		t.Fatalf("a gap in seq must ask for a full push, got %v", err)
	}
	select {
	case <-s.Ready():
	default:
		t.Fatal("accepted pushes did not signal")
	}
	updates := s.Drain()
	if len(updates) != 2 || !updates[0].Full || !updates[0].NewBoot || names(updates[0]) != "a,b -" ||
		updates[1].Full || updates[1].NewBoot || names(updates[1]) != "c -a" {
		t.Fatalf("updates: %+v", updates)
	}
	// A restarted Traefik (new boot) replaces its old state with a full
	// push, once the old process has missed two heartbeats (2 s each).
	restarted := push(true, 1, "z")
	restarted.Boot = "b2"
	if err := s.Apply(restarted, now.Add(4*time.Second)); !errors.Is(err, pluginsync.ErrNodeHeld) {
		t.Fatalf("a new boot while the old one is alive: %v, want ErrNodeHeld", err)
	}
	restartedAt := now.Add(4*time.Second + time.Millisecond)
	if err := s.Apply(restarted, restartedAt); err != nil {
		t.Fatal(err)
	}
	if u := s.Drain(); len(u) != 1 || !u[0].Full || !u[0].NewBoot || names(u[0]) != "z -" || !u[0].Since.Equal(restartedAt) {
		t.Fatalf("after restart: %+v", u)
	}
	// Silent for five heartbeats: forgotten, as an update that empties its set.
	if gone := s.Expire(restartedAt.Add(10 * time.Second)); len(gone) != 0 {
		t.Fatalf("expired early: %+v", gone)
	}
	if gone := s.Expire(restartedAt.Add(10*time.Second + time.Millisecond)); len(gone) != 1 || !gone[0].Full || len(gone[0].Live) != 0 || s.Nodes() != 0 {
		t.Fatalf("expire: %+v, left %d", gone, s.Nodes())
	}
}

func TestHeartbeatKeepsAliveAndRevealsARestartedSidecar(t *testing.T) {
	now := time.Now()
	beat := func(seq uint64) plugin.Push {
		p := push(false, seq)
		p.HeartbeatSeconds = 2
		return p
	}
	// A sidecar that restarted does not know the process: 409, so the
	// plugin sends its full set within one heartbeat.
	fresh := pluginsync.NewStore()
	if err := fresh.Apply(beat(7), now); !errors.Is(err, pluginsync.ErrNeedFull) {
		t.Fatalf("a heartbeat to a sidecar that lost the set: %v, want ErrNeedFull", err)
	}

	s := pluginsync.NewStore()
	full := push(true, 1, "a")
	full.HeartbeatSeconds = 2
	if err := s.Apply(full, now); err != nil {
		t.Fatal(err)
	}
	s.Drain()
	for i := uint64(2); i <= 6; i++ {
		if err := s.Apply(beat(i), now.Add(time.Duration(i)*2*time.Second)); err != nil {
			t.Fatalf("heartbeat %d: %v", i, err)
		}
	}
	if u := s.Drain(); len(u) != 0 {
		t.Fatalf("heartbeats changed nothing, yet queued %+v", u)
	}
	last := now.Add(12 * time.Second)
	if gone := s.Expire(last.Add(9 * time.Second)); len(gone) != 0 {
		t.Fatal("expired within five heartbeats of the last one")
	}
	if gone := s.Expire(last.Add(11 * time.Second)); len(gone) != 1 {
		t.Fatal("not expired after five missed heartbeats")
	}
}

func FuzzDecode(f *testing.F) {
	full, _ := json.Marshal(push(true, 1, "bai_sd_a@etcd", "bai_sd_b@etcd"))
	f.Add(full)
	f.Add([]byte(`{"node":"n","boot":"b","seq":2,"full":false,"resyncSeconds":30,"heartbeatSeconds":2,"middlewares":[],"removed":["x"]}`))
	f.Add([]byte(`[]`))
	f.Add([]byte(`{"middlewares":[{"config":{"routes":[{"url":"http://[::1"}]}}]}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		p, err := pluginsync.Decode(body)
		if err != nil {
			return
		}
		if p.Node == "" || p.Seq == 0 {
			t.Fatalf("accepted an incomplete push: %+v", p)
		}
		s := pluginsync.NewStore()
		_ = s.Apply(p, time.Now())
	})
}

// The plugin pushes lists in the order Traefik decoded them (sorting them
// in New would be paid per router per reload, under the interpreter); a
// push is normalized here, so that order never reaches the targets.
func TestSyncNormalizesPushedLists(t *testing.T) {
	p := push(true, 1, "bai_sd_a@etcd")
	p.Middlewares[0].Config.SessionIDs = []string{"s-2", " s-10 ", ""}
	p.Middlewares[0].Config.Routes = []plugin.Route{{URL: "http://10.0.1.22:8000/"}, {URL: "http://10.0.1.21:8000/", RouteID: "r-1"}}
	body, _ := json.Marshal(p)
	got, err := pluginsync.Decode(body)
	if err != nil {
		t.Fatal(err)
	}
	cfg := got.Middlewares[0].Config
	if strings.Join(cfg.SessionIDs, ",") != "s-10,s-2" || cfg.Routes[0].RouteID != "r-1" || cfg.Routes[1].URL != "http://10.0.1.22:8000/" {
		t.Fatalf("decoded lists: sessions %q, routes %+v", cfg.SessionIDs, cfg.Routes)
	}
}

// TestDecodeErrorsNeverQuoteAValue: a refused push is answered and logged
// with its error, so the error names the field and says what is wrong,
// never the value: a route URL's password, a token mistyped into a field, a
// number's literal, a time, an unknown field's name beyond a bound.
func TestDecodeErrorsNeverQuoteAValue(t *testing.T) {
	const marker = "s3cr3t"
	head := `{"node":"n","boot":"b","seq":1,"full":true,"resyncSeconds":30,"heartbeatSeconds":2,"middlewares":[`
	mw := func(config string) string {
		return head + `{"name":"m@etcd","since":"2024-01-01T00:00:00Z","config":{"circuitId":"c","metricsPath":"/metrics",` + config + `}}]}`
	}
	testCases := []struct {
		desc, body, wantErr string
	}{
		{"a route URL with a password", mw(`"routes":[{"url":"http://u:` + marker + `@10.0.0.1:70000/"}]`), "middlewares[0].config.routes[0].url: port out of range"},
		{"a route URL that does not parse", mw(`"routes":[{"url":"http://u:` + marker + `@[::1"}]`), "middlewares[0].config.routes[0].url: not a URL"},
		{"a metricsPort that is a string", mw(`"metricsPort":"` + marker + `"`), "middlewares.config.metricsPort: a JSON string where int belongs"},
		{"a metricsPort too large for an int", mw(`"metricsPort":1` + strings.Repeat("0", 40)), "middlewares.config.metricsPort: a JSON number where int belongs"},
		{"a metrics path that is not a path", mw(`"metricsPath":"` + marker + `"`), "middlewares[0].config.metricsPath: must start with /"},
		{"a time that is not one", head + `{"name":"m@etcd","since":"` + marker + `","config":{"circuitId":"c"}}]}`, "push body: not valid JSON"},
		{"not JSON", head + marker + `]}`, "push body: not valid JSON (at byte"},
		{"an unknown field with a long name", `{"node":"n","` + marker + strings.Repeat("x", 1000) + `":1}`, `push body: unknown field "s3cr3t`},
	}
	for _, test := range testCases {
		t.Run(test.desc, func(t *testing.T) {
			_, err := pluginsync.Decode([]byte(test.body))
			if err == nil || !strings.Contains(err.Error(), test.wantErr) {
				t.Fatalf("error %v, want one containing %q", err, test.wantErr)
			}
			msg := err.Error()
			if test.desc == "an unknown field with a long name" {
				// A field's name is a key, not a value; it is named, bounded.
				if len(msg) > 120 {
					t.Errorf("error of %d bytes: %q", len(msg), msg)
				}
				return
			}
			if strings.Contains(msg, marker) || strings.Contains(msg, "0000000000") {
				t.Errorf("error %q quotes the value", msg)
			}
		})
	}
}
