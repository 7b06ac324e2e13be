package main

import (
	"strings"
	"testing"
)

// out is benchmark output as make bench produces it, with the figures each
// case needs; the goals read only what is there.
const out = `cpu: Test CPU
BenchmarkParseTraefikMetrics/baseline=expfmt-2	10	300000000 ns/op	40 MB/s	100000000 B/op	4000000 allocs/op
BenchmarkParseTraefikMetrics/traefik-sd-2	10	12000000 ns/op	1000 MB/s	900000 B/op	1000 allocs/op
BenchmarkEtcdChangeToTargets/circuits=10000-2	1000	20000000 ns/op	8.1 p50-ms	41 p99-ms
BenchmarkEtcdChangeToTargets/circuits=10000-2	1000	20000000 ns/op	8.3 p50-ms	%s p99-ms
BenchmarkEtcdChangeToTargets/circuits=10000-2	1000	20000000 ns/op	8.2 p50-ms	44 p99-ms
BenchmarkRelist100k-2	2	6000000000 ns/op	3.5 etcd-read-floor-s	5.5 list-s	0.4 compare+decode+build-s	0.1 render-s	2300002 keys	100000 circuits	200000 targets	4700 rss-bytes/target	3000 peak-rss-MiB	3800 heap-B/target	1800 heap-B/target:sidecar/targets	1500 heap-B/target:sidecar/dynamic
`

func judge(t *testing.T, text string) map[string]verdict {
	t.Helper()
	groups, _, _ := parse(strings.NewReader(text))
	got := map[string]verdict{}
	for _, g := range goals {
		v := g(runSet{groups: groups})
		got[v.what] = v
	}
	return got
}

func find(t *testing.T, vs map[string]verdict, prefix string) verdict {
	t.Helper()
	for what, v := range vs {
		if strings.HasPrefix(what, prefix) {
			return v
		}
	}
	t.Fatalf("no goal %q", prefix)
	return verdict{}
}

func TestGoalsAreJudgedFromTheFigures(t *testing.T) {
	vs := judge(t, strings.Replace(out, "%s", "43", 1))
	if v := find(t, vs, "parse"); v.met != "met" || !strings.Contains(v.measured, "25× faster") {
		t.Errorf("parse: %+v", v)
	}
	if v := find(t, vs, "etcd change → `/v1/targets`, 10,000"); v.met != "met" || v.measured != "p99 41, 43, 44 ms; p50 8.1, 8.3, 8.2 ms (3 runs)" {
		t.Errorf("change latency: %+v", v)
	}
	v := find(t, vs, "full re-list")
	if v.met != "missed" || !strings.Contains(v.why, "3.5 s") || !strings.Contains(v.why, "goal is below what etcd itself needs") {
		t.Errorf("re-list: %+v", v)
	}
	if v := find(t, vs, "memory"); v.met != "missed" || !strings.Contains(v.why, "sidecar/targets 1800 B, sidecar/dynamic 1500 B") {
		t.Errorf("memory: %+v", v)
	}
	// Figures this output lacks are never judged met.
	for _, prefix := range []string{"serve", "the plugin on the request path", "Traefik reload", "one `New`", "etcd change → `/v1/targets`, 100,000"} {
		if v := find(t, vs, prefix); v.met != "not measured" {
			t.Errorf("%s: %+v", prefix, v)
		}
	}
}

func TestOneRunOverTheLimitMissesTheLatencyGoal(t *testing.T) {
	vs := judge(t, strings.Replace(out, "%s", "50.5", 1))
	if v := find(t, vs, "etcd change → `/v1/targets`, 10,000"); v.met != "missed" || !strings.Contains(v.why, "50.5 ms") {
		t.Errorf("%+v", v)
	}
	two := strings.Replace(strings.Replace(out, "%s", "43", 1), "BenchmarkEtcdChangeToTargets/circuits=10000-2	1000	20000000 ns/op	8.2 p50-ms	44 p99-ms\n", "", 1)
	if v := find(t, judge(t, two), "etcd change → `/v1/targets`, 10,000"); v.met != "missed" || !strings.Contains(v.why, "Only 2 runs") {
		t.Errorf("two runs: %+v", v)
	}
}

func TestTheReportNamesRepeatedRunsAndCapacity(t *testing.T) {
	groups, order, _ := parse(strings.NewReader(strings.Replace(out, "%s", "43", 1)))
	var b strings.Builder
	writeTables(&b, groups, order)
	writeGoals(&b, runSet{groups: groups})
	text := b.String()
	for _, want := range []string{
		"| circuits=10000 (run 3) |",
		"| sidecar/targets | 1800 |",
		"**34133 circuits** fit a 1 GiB limit",
		"23 keys per circuit",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("report lacks %q:\n%s", want, text)
		}
	}
	if strings.Contains(text, "heap-B/target:sidecar") {
		t.Error("per-package heap figures leaked into the tables as columns")
	}
}

func TestRatioGoalsReadBothSides(t *testing.T) {
	vs := judge(t, `BenchmarkServeTargets/baseline=nethttp-json-per-request-2	100	14000000 ns/op	70 req/s
BenchmarkServeTargets/traefik-sd-200-gzip-2	100	120000 ns/op	8000 req/s
BenchmarkServeTargets/traefik-sd-200-identity-2	100	1400000 ns/op	700 req/s
BenchmarkTraefikRouter/baseline=without-plugin	1	130000 ns/op	7700 req/s
BenchmarkTraefikRouter/with-plugin	1	135000 ns/op	7400 req/s
BenchmarkTraefikReload10000Routers/baseline=without-plugin	1	2000000000 ns/op
BenchmarkTraefikReload10000Routers/noop-yaegi-plugin	1	3500000000 ns/op
BenchmarkTraefikReload10000Routers/with-plugin	1	4000000000 ns/op
BenchmarkNew/baseline=noop-plugin-2	3000	6000 ns/op
BenchmarkNew/traefik-sd-2	3000	57000 ns/op
`)
	for prefix, want := range map[string]string{
		"serve":                          "met",    // 114×
		"the plugin on the request path": "missed", // 0.961
		"Traefik reload":                 "met",    // 1.14×
		"one `New`":                      "report",
	} {
		if v := find(t, vs, prefix); v.met != want {
			t.Errorf("%s: %+v, want %s", prefix, v, want)
		}
	}
	if v := find(t, vs, "the plugin on the request path"); !strings.Contains(v.why, "returns `next` itself") {
		t.Errorf("request path missed without its explanation: %+v", v)
	}
	if v := find(t, vs, "Traefik reload"); v.measured != "1.14× (4 s vs 3.5 s; without any plugin 2 s)" {
		t.Errorf("reload measured as %q", v.measured)
	}
}
