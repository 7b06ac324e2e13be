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
	p := plugin.Push{Node: "traefik-0", Boot: "b1", Seq: seq, Full: full, ResyncSeconds: 30, Middlewares: []plugin.LiveMiddleware{}}
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
		{"unknown field", `{"node":"n","boot":"b","seq":1,"full":true,"resyncSeconds":30,"middlewares":[],"extra":1}`, `unknown field "extra"`},
		{"no node", `{"boot":"b","seq":1,"full":true,"resyncSeconds":30}`, "node: required"},
		{"zero seq", `{"node":"n","boot":"b","seq":0,"full":true,"resyncSeconds":30}`, "seq"},
		{"a middleware without name", `{"node":"n","boot":"b","seq":1,"full":true,"resyncSeconds":30,"middlewares":[{"config":{"circuitId":"c","metricsPath":"/metrics"}}]}`, "middlewares[0].name"},
		{"an invalid config", `{"node":"n","boot":"b","seq":1,"full":true,"resyncSeconds":30,"middlewares":[{"name":"m@etcd","config":{"circuitId":"c","metricsPath":"/metrics","labels":{"bad-name":"x"}}}]}`, "middlewares[0].config.labels.bad-name"},
		{"removals in a full push", `{"node":"n","boot":"b","seq":1,"full":true,"resyncSeconds":30,"removed":["x"]}`, "removed"},
		{"trailing data", `{"node":"n","boot":"b","seq":1,"full":true,"resyncSeconds":30} {}`, "trailing"},
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

func TestApplySequence(t *testing.T) {
	s := pluginsync.NewStore(nil)
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
	nodes := s.Nodes()
	if len(nodes) != 1 || strings.Join(nodes[0].Middlewares, ",") != "b,c" {
		t.Fatalf("nodes: %+v", nodes)
	}
	// A restarted Traefik (new boot) replaces its old state with a full push.
	restarted := push(true, 1, "z")
	restarted.Boot = "b2"
	if err := s.Apply(restarted, now); err != nil {
		t.Fatal(err)
	}
	if got := s.Nodes()[0].Middlewares; strings.Join(got, ",") != "z" {
		t.Fatalf("after restart: %v", got)
	}
	// Silent for three resync intervals: forgotten.
	if gone := s.Expire(now.Add(91 * time.Second)); len(gone) != 1 || len(s.Nodes()) != 0 {
		t.Fatalf("expire: %v, left %v", gone, s.Nodes())
	}
}

func TestEtcdToPushDelayIsMeasuredOnMatchingConfig(t *testing.T) {
	var delays []time.Duration
	s := pluginsync.NewStore(func(d time.Duration) { delays = append(delays, d) })
	at := time.Now()
	cfg := plugin.Config{CircuitID: "bai_sd_a@etcd", MetricsPath: "/metrics"}
	s.NoteEtcdChange("bai_sd_a", &plugin.Config{CircuitID: "other", MetricsPath: "/metrics"}, at)
	_ = s.Apply(push(true, 1, "bai_sd_a@etcd"), at.Add(time.Second))
	if len(delays) != 0 {
		t.Fatal("a push with the old config completed the measurement")
	}
	s.NoteEtcdChange("bai_sd_a", &cfg, at)
	_ = s.Apply(push(true, 2, "bai_sd_a@etcd"), at.Add(2*time.Second))
	if len(delays) != 1 || delays[0] != 2*time.Second {
		t.Fatalf("delays: %v", delays)
	}
}

func FuzzDecode(f *testing.F) {
	full, _ := json.Marshal(push(true, 1, "bai_sd_a@etcd", "bai_sd_b@etcd"))
	f.Add(full)
	f.Add([]byte(`{"node":"n","boot":"b","seq":2,"full":false,"resyncSeconds":30,"middlewares":[],"removed":["x"]}`))
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
		s := pluginsync.NewStore(nil)
		_ = s.Apply(p, time.Now())
	})
}
