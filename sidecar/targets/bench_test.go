package targets_test

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/traefik-sd/traefik-sd/internal/coordinator"
	"github.com/traefik-sd/traefik-sd/sidecar/dynamic"
	"github.com/traefik-sd/traefik-sd/sidecar/targets"
)

// circuitStore decodes n inference circuits of two routes each, written as
// the coordinator writes them, with the traefik-sd middleware.
func circuitStore(tb testing.TB, n int) *dynamic.Store {
	w := &coordinator.Writer{Authority: "worker-1", SD: &coordinator.TraefikSD{}}
	s := dynamic.NewStore("traefik-sd")
	for i := 0; i < n; i++ {
		c := coordinator.SampleInference(i)
		for k, v := range w.Keys(c) {
			if id, sub, ok := dynamic.SplitKey(strings.TrimPrefix(k, rootKey+"/")); ok {
				s.Put(id, sub, v)
			}
		}
	}
	if _, errs := s.Commit(); len(errs) > 0 {
		tb.Fatal(errs[0])
	}
	return s
}

// BenchmarkBuildAndRender is the work done once per change at 10,000
// circuits (20,000 route targets): build the set, render it, against the
// baseline of encoding/json rendering the same groups.
func BenchmarkBuildAndRender(b *testing.B) {
	store := circuitStore(b, 10000)
	opts := options()
	b.Run("build", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			if ts := targets.Build(opts, targets.Inputs{Store: store}); len(ts) != 20001 {
				b.Fatal(len(ts))
			}
		}
	})
	ts := targets.Build(opts, targets.Inputs{Store: store})
	b.Run("render/baseline=encoding-json", func(b *testing.B) {
		type group struct {
			Targets []string          `json:"targets"`
			Labels  map[string]string `json:"labels"`
		}
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			groups := make([]group, len(ts))
			for j, t := range ts {
				labels := make(map[string]string, len(t.Labels))
				for _, l := range t.Labels {
					labels[l.Name] = l.Value
				}
				groups[j] = group{Targets: []string{t.Address}, Labels: labels}
			}
			if _, err := json.Marshal(groups); err != nil {
				b.Fatal(err)
			}
		}
	})
	// One circuit's routes change among 10,000: what the daemon does per
	// change (rebuild, digest, count, freeze); the body is rendered when a
	// client asks for it, measured as render/traefik-sd.
	b.Run("incremental-change", func(b *testing.B) {
		builder := targets.NewBuilder(opts)
		builder.Update(targets.Inputs{Store: store}, targets.Changes{All: true})
		svc := dynamic.ObjectID{Kind: dynamic.Services, Name: "bai_service_00004242-0000-4000-8000-000000000000"}
		b.ReportAllocs()
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			store.Services[svc.Name].LoadBalancer.Servers[0].URL = fmt.Sprintf("http://10.99.%d.%d:8000/", i>>8&255, i&255)
			builder.Update(targets.Inputs{Store: store}, targets.Changes{Objects: []dynamic.ObjectID{svc}})
			_, _ = builder.Digest(), builder.Groups()
			if builder.Freeze().Size() == 0 {
				b.Fatal("empty set")
			}
		}
	})
	b.Run("render/traefik-sd", func(b *testing.B) {
		b.ReportAllocs()
		var buf []byte
		for i := 0; i < b.N; i++ {
			buf = targets.AppendJSON(buf[:0], ts)
		}
		b.SetBytes(int64(len(buf)))
	})
}
