package metrics_test

import (
	"runtime"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/traefik-sd/traefik-sd/sidecar/metrics"
)

// TestBuildInfoAndCountersAtZero: the build is a series; every labelled
// counter exists at 0 for its known label values before its first event,
// and counters end in _total while gauges do not.
func TestBuildInfoAndCountersAtZero(t *testing.T) {
	m := metrics.New()
	families, err := m.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, f := range families {
		name := f.GetName()
		for _, s := range f.GetMetric() {
			var labels []string
			for _, l := range s.GetLabel() {
				labels = append(labels, l.GetName()+"="+l.GetValue())
			}
			seen[name+"{"+strings.Join(labels, ",")+"}"] = true
		}
		if strings.HasPrefix(name, "traefik_sd_") {
			isCounter := f.GetType().String() == "COUNTER"
			if isCounter != strings.HasSuffix(name, "_total") {
				t.Errorf("%s is a %s: counters, and only counters, end in _total", name, f.GetType())
			}
		}
	}
	for _, want := range []string{
		"traefik_sd_plugin_pushes_total{result=too_large}", "traefik_sd_plugin_pushes_total{result=unauthorized}",
		"traefik_sd_etcd_relists_total{reason=compacted}", "traefik_sd_http_request_errors_total{kind=timeout}",
		"traefik_sd_traefik_api_answers_total{result=error}", "traefik_sd_coordinator_polls_total{result=error}",
		"traefik_sd_targets_left_out{limit=targets}",
	} {
		if !seen[want] {
			t.Errorf("%s is absent before its first event", want)
		}
	}
	found := false
	for k := range seen {
		if strings.HasPrefix(k, "traefik_sd_build_info{") && strings.Contains(k, "goversion="+runtime.Version()) {
			found = true
		}
	}
	if !found {
		t.Error("no traefik_sd_build_info with this Go version")
	}
	if v := testutil.ToFloat64(m.Pushes.WithLabelValues("malformed")); v != 0 {
		t.Errorf("a fresh counter at %v", v)
	}
}
