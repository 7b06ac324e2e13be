package scrape_test

import (
	"bytes"
	"fmt"
	"testing"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/traefik-sd/traefik-sd/sidecar/scrape"
)

// traefikMetrics generates a /metrics body shaped like Traefik v3.6's with
// router and service labels: per service its request counters, duration
// histogram and one server_up line, every tenth server down.
func traefikMetrics(services int) []byte {
	var b bytes.Buffer
	b.WriteString("# HELP traefik_config_last_reload_success Last config reload success\n# TYPE traefik_config_last_reload_success gauge\ntraefik_config_last_reload_success 1.795587414e+09\n")
	b.WriteString("# HELP traefik_service_server_up service server is up, described by gauge value of 0 or 1.\n# TYPE traefik_service_server_up gauge\n")
	for i := 0; i < services; i++ {
		up := 1
		if i%10 == 0 {
			up = 0
		}
		fmt.Fprintf(&b, "traefik_service_server_up{service=\"bai_service_%08d-0000-4000-8000-000000000000@etcd\",url=\"http://10.%d.%d.%d:8000/\"} %d\n", i, i>>16&255, i>>8&255, i&255, up)
	}
	b.WriteString("# HELP traefik_service_requests_total How many HTTP requests processed on a service, partitioned by status code, protocol, and method.\n# TYPE traefik_service_requests_total counter\n")
	for i := 0; i < services; i++ {
		fmt.Fprintf(&b, "traefik_service_requests_total{code=\"200\",method=\"POST\",protocol=\"http\",service=\"bai_service_%08d-0000-4000-8000-000000000000@etcd\"} %d\n", i, i*7)
	}
	b.WriteString("# HELP traefik_service_request_duration_seconds How long it took to process the request on a service, partitioned by status code, protocol, and method.\n# TYPE traefik_service_request_duration_seconds histogram\n")
	for i := 0; i < services; i++ {
		for _, le := range []string{"0.1", "0.3", "1.2", "5", "+Inf"} {
			fmt.Fprintf(&b, "traefik_service_request_duration_seconds_bucket{code=\"200\",method=\"POST\",protocol=\"http\",service=\"bai_service_%08d-0000-4000-8000-000000000000@etcd\",le=%q} %d\n", i, le, i)
		}
		fmt.Fprintf(&b, "traefik_service_request_duration_seconds_sum{code=\"200\",method=\"POST\",protocol=\"http\",service=\"bai_service_%08d-0000-4000-8000-000000000000@etcd\"} 12.5\n", i)
		fmt.Fprintf(&b, "traefik_service_request_duration_seconds_count{code=\"200\",method=\"POST\",protocol=\"http\",service=\"bai_service_%08d-0000-4000-8000-000000000000@etcd\"} %d\n", i, i)
	}
	return b.Bytes()
}

func TestGeneratedBodyParses(t *testing.T) {
	body := traefikMetrics(1000)
	res := scrape.NewParser().Parse(body)
	if res.Broken != 0 || res.Known != 1000 || res.DownCount() != 100 {
		t.Fatalf("broken %d (%s), known %d, down %d", res.Broken, res.FirstError, res.Known, res.DownCount())
	}
	// The baseline must agree on what it reads, or the comparison is void.
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	down := 0
	for _, m := range families["traefik_service_server_up"].GetMetric() {
		if m.GetGauge().GetValue() < 1 {
			down++
		}
	}
	if down != res.DownCount() {
		t.Fatalf("expfmt sees %d down, traefik-sd %d", down, res.DownCount())
	}
}

// BenchmarkParseTraefikMetrics compares the parser with the baseline,
// expfmt's text parser, on the same 10,000-service body.
func BenchmarkParseTraefikMetrics(b *testing.B) {
	body := traefikMetrics(10000)
	b.Run("baseline=expfmt", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(len(body)))
		for i := 0; i < b.N; i++ {
			parser := expfmt.NewTextParser(model.UTF8Validation)
			if _, err := parser.TextToMetricFamilies(bytes.NewReader(body)); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("traefik-sd", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(len(body)))
		p := scrape.NewParser()
		for i := 0; i < b.N; i++ {
			if res := p.Parse(body); res.Known != 10000 {
				b.Fatal(res.Known)
			}
		}
	})
	// What the scraper runs: the same body read through a fixed buffer.
	b.Run("traefik-sd-streaming", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(len(body)))
		p := scrape.NewParser()
		r := bytes.NewReader(body)
		for i := 0; i < b.N; i++ {
			r.Reset(body)
			if res, err := p.ParseReader(r, 0); err != nil || res.Known != 10000 {
				b.Fatal(res.Known, err)
			}
		}
	})
}
