package server_test

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/traefik-sd/traefik-sd/sidecar/metrics"
	"github.com/traefik-sd/traefik-sd/sidecar/pluginsync"
	"github.com/traefik-sd/traefik-sd/sidecar/publish"
	"github.com/traefik-sd/traefik-sd/sidecar/server"
	"github.com/traefik-sd/traefik-sd/sidecar/targets"
	"github.com/valyala/fasthttp"
)

func routeTargets(n int) []targets.Target {
	ts := make([]targets.Target, n)
	for i := range ts {
		ts[i] = targets.Target{Address: fmt.Sprintf("10.%d.%d.%d:8000", i>>16&255, i>>8&255, i&255), Labels: []targets.Label{
			{Name: "circuit_id", Value: fmt.Sprintf("%08d-0000-4000-8000-000000000000", i/2)},
			{Name: "route_id", Value: fmt.Sprintf("%08d-1111-4000-8000-000000000000", i)},
			{Name: "service_group", Value: targets.GroupRoute},
			{Name: "session_id", Value: fmt.Sprintf("%08d-2222-4000-8000-000000000000", i)},
			{Name: "traefik_router", Value: fmt.Sprintf("bai_router_%08d-0000-4000-8000-000000000000@etcd", i/2)},
			{Name: "traefik_service", Value: fmt.Sprintf("bai_service_%08d-0000-4000-8000-000000000000@etcd", i/2)},
			{Name: "worker_authority", Value: "worker-1"},
		}}
	}
	return ts
}

// load sends requests from 4 keep-alive clients for b.N requests in all,
// reading and discarding each body, and reports requests per second.
// Prometheus's HTTP SD sends neither Accept-Encoding nor If-None-Match, so
// the request without header is its request.
func load(b *testing.B, url string, header map[string]string, wantStatus int) {
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 8, DisableCompression: true}}
	defer client.CloseIdleConnections()
	var failures atomic.Int64
	b.SetParallelism(2) // 2 × GOMAXPROCS(2) = 4 clients
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			req, _ := http.NewRequest(http.MethodGet, url, nil)
			for k, v := range header {
				req.Header.Set(k, v)
			}
			resp, err := client.Do(req)
			if err != nil {
				failures.Add(1)
				continue
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != wantStatus {
				failures.Add(1)
			}
		}
	})
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "req/s")
	if f := failures.Load(); f > 0 {
		b.Fatalf("%d requests failed", f)
	}
}

// BenchmarkServeTargets serves 10,000 route targets over loopback: the
// sidecar (rendered once, ETag, gzip) against the baseline, a plain
// net/http server that renders with encoding/json on every request.
func BenchmarkServeTargets(b *testing.B) {
	ts := routeTargets(10000)

	b.Run("baseline=nethttp-json-per-request", func(b *testing.B) {
		type group struct {
			Targets []string          `json:"targets"`
			Labels  map[string]string `json:"labels"`
		}
		ln, _ := net.Listen("tcp", "127.0.0.1:0")
		srv := &http.Server{Handler: http.HandlerFunc(func(rw http.ResponseWriter, _ *http.Request) {
			groups := make([]group, len(ts))
			for i, t := range ts {
				labels := make(map[string]string, len(t.Labels))
				for _, l := range t.Labels {
					labels[l.Name] = l.Value
				}
				groups[i] = group{Targets: []string{t.Address}, Labels: labels}
			}
			rw.Header().Set("Content-Type", "application/json")
			_ = json.NewEncoder(rw).Encode(groups)
		})}
		go func() { _ = srv.Serve(ln) }()
		defer srv.Close()
		load(b, "http://"+ln.Addr().String()+"/v1/targets", nil, 200)
	})

	pub := publish.New()
	pub.Publish(targets.AppendJSON(nil, ts), nil)
	s := &server.Server{Publisher: pub, Plugins: pluginsync.NewStore(), Metrics: metrics.New(),
		Log: slog.New(slog.NewTextHandler(io.Discard, nil)), Ready: func() bool { return true }}
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	fs := &fasthttp.Server{Handler: s.Handler()}
	go func() { _ = fs.Serve(ln) }()
	defer func() { _ = fs.Shutdown() }()
	url := "http://" + ln.Addr().String() + "/v1/targets"
	etag := pub.Current().ETag
	b.Run("traefik-sd-200-gzip", func(b *testing.B) {
		load(b, url, map[string]string{"Accept-Encoding": "gzip"}, 200)
	})
	b.Run("traefik-sd-200-identity", func(b *testing.B) {
		load(b, url, nil, 200)
	})
	b.Run("traefik-sd-304", func(b *testing.B) {
		load(b, url, map[string]string{"Accept-Encoding": "gzip", "If-None-Match": etag}, 304)
	})
}
