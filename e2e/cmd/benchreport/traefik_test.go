package main

import (
	"fmt"
	"strings"
	"testing"
)

// alternating is e2e/cmd/bench's output: a line per round, the variants in
// turn; values[v][i] is variant v's round i.
func alternating(group, unit string, variants []string, values map[string][]float64) string {
	var b strings.Builder
	for i := range values[variants[0]] {
		for _, v := range variants {
			fmt.Fprintf(&b, "%s/%s\t1\t%.0f %s\n", group, v, values[v][i], unit)
		}
	}
	return b.String()
}

// scaled is base's rounds times each round's ratio.
func scaled(base []float64, ratios ...float64) []float64 {
	out := make([]float64, len(base))
	for i := range base {
		out[i] = base[i] * ratios[i]
	}
	return out
}

// The reload rounds drift (a busy moment in round 3), both variants alike.
var reloadBase = []float64{5e9, 5.2e9, 6.1e9, 5.1e9, 5e9}

// Traefik's CPU samples during one reload, by part.
const profile = `BenchmarkTraefikReloadProfile/backendai-chain	1	2000 samples	30 config-build-%	20 yaegi-%	10 gc-%
BenchmarkTraefikReloadProfile/backendai-chain+traefik-sd	1	2600 samples	25 config-build-%	35 yaegi-%	12 gc-%	5 plugin-new-%	40 other-%
`

func backendAIRounds(ratios ...float64) string {
	// 2000 routers: the count comes from the group's name, not a constant.
	return alternating("BenchmarkTraefikReload2000Routers", "ns/op",
		[]string{backendAI, backendAIWith},
		map[string][]float64{backendAI: reloadBase, backendAIWith: scaled(reloadBase, ratios...)})
}

func TestBackendAIReloadIsJudgedOnItsInterval(t *testing.T) {
	for _, tc := range []struct {
		name   string
		ratios []float64
		want   string
	}{
		{"under 1.10", []float64{1.05, 1.06, 1.04, 1.05, 1.06}, "met"},
		{"over 1.10", []float64{1.20, 1.21, 1.19, 1.22, 1.20}, "missed"},
		{"across 1.10", []float64{1.02, 1.18, 1.05, 1.15, 1.10}, "unsettled"},
	} {
		v := find(t, judge(t, backendAIRounds(tc.ratios...)+profile), "Traefik reload of a Backend.AI-shaped worker, 2,000 routers")
		if v.met != tc.want {
			t.Errorf("%s: %+v, want %s", tc.name, v, tc.want)
			continue
		}
		if !strings.Contains(v.measured, "95% interval") || !strings.Contains(v.measured, "5 rounds") ||
			!strings.Contains(v.measured, "backendai-chain 5.1 s (5–6.1 s)") {
			t.Errorf("%s: measured %q", tc.name, v.measured)
		}
		if tc.want == "met" {
			if v.why != "" {
				t.Errorf("%s: a met goal explained: %q", tc.name, v.why)
			}
			continue
		}
		// The largest shares, largest first, beside the same parts without traefik-sd.
		if !strings.Contains(v.why, "yaegi 35% (backendai-chain: 20%), config-build 25% (backendai-chain: 30%), gc 12% (backendai-chain: 10%); no part claims 40%") {
			t.Errorf("%s: why does not cite the profile: %q", tc.name, v.why)
		}
		// And where the samples it adds went, in samples, not shares.
		if !strings.Contains(v.why, "Its profile holds 600 samples more than backendai-chain's (2600 against 2000); the parts that grew most: yaegi (+510), plugin-new (+130), gc (+112).") {
			t.Errorf("%s: why does not say where the added samples went: %q", tc.name, v.why)
		}
	}
	v := find(t, judge(t, backendAIRounds(1.20, 1.21, 1.19, 1.22, 1.20)), "Traefik reload of a Backend.AI")
	if !strings.Contains(v.why, "no BenchmarkTraefikReloadProfile row for backendai-chain+traefik-sd") {
		t.Errorf("a missed goal without a profile: %q", v.why)
	}
	v = find(t, judge(t, backendAIRounds(1.02, 1.18, 1.05, 1.15, 1.10)), "Traefik reload of a Backend.AI")
	if !strings.Contains(v.settle, "more rounds each would settle it") || !strings.Contains(v.why, "holds 1.1") {
		t.Errorf("unsettled without what would settle it: %+v", v)
	}
}

func TestRequestPathIsJudgedOnItsInterval(t *testing.T) {
	base := []float64{5600, 5700, 5500, 5650, 5600, 5580, 5620, 5700, 5400, 5600}
	rounds := func(ratios ...float64) string {
		return strings.ReplaceAll(alternating("BenchmarkTraefikRouter", "req/s", []string{noPlugin, withPlugin},
			map[string][]float64{noPlugin: base, withPlugin: scaled(base, ratios...)}), "\t1\t", "\t1\t100000 ns/op\t")
	}
	for _, tc := range []struct {
		ratios []float64
		want   string
	}{
		{[]float64{0.99, 0.98, 1.0, 0.99, 0.985, 0.99, 0.995, 0.98, 0.99, 0.985}, "met"},
		{[]float64{0.93, 0.94, 0.92, 0.93, 0.935, 0.94, 0.93, 0.925, 0.93, 0.94}, "missed"},
		{[]float64{0.93, 1.0, 0.95, 0.99, 0.96, 0.98, 0.97, 1.01, 0.94, 0.97}, "unsettled"},
	} {
		v := find(t, judge(t, rounds(tc.ratios...)), "the plugin on the request path")
		if v.met != tc.want || !strings.Contains(v.measured, "10 rounds") {
			t.Errorf("%v: %+v, want %s", tc.ratios, v, tc.want)
		}
		if tc.want == "missed" && !strings.Contains(v.why, "lies wholly below 0.97") {
			t.Errorf("missed: why %q", v.why)
		}
		if strings.Contains(v.why, "average that out") {
			t.Errorf("the verdict still leans on prose: %q", v.why)
		}
	}
}

func TestReloadAgainstTheNoopPlugin(t *testing.T) {
	lines := alternating("BenchmarkTraefikReload10000Routers", "ns/op", []string{noPlugin, noopPlugin, withPlugin},
		map[string][]float64{
			noPlugin:   scaled(reloadBase, 0.65, 0.64, 0.66, 0.66, 0.65),
			noopPlugin: reloadBase,
			withPlugin: scaled(reloadBase, 1.14, 1.12, 1.13, 1.15, 1.13),
		})
	v := find(t, judge(t, lines), "Traefik reload, 10,000 routers with the plugin")
	if v.met != "met" || !strings.Contains(v.measured, "ratio median 1.130") || !strings.Contains(v.measured, "without any plugin 3.33 s") {
		t.Errorf("%+v", v)
	}
	lines = strings.Replace(lines, "BenchmarkTraefikReload10000Routers/with-plugin\t1\t5700000000", "BenchmarkTraefikReload10000Routers/with-plugin\t1\t7700000000", 1)
	if v := find(t, judge(t, lines), "Traefik reload, 10,000"); v.met != "unsettled" {
		t.Errorf("one round at 1.5×: %+v", v)
	}
}

func TestLoadsAreReportedWithTheirIntervals(t *testing.T) {
	lines := alternating("BenchmarkTraefikLoad10000Routers", "ns/op", []string{noopPlugin, withPlugin, backendAI, backendAIWith},
		map[string][]float64{
			noopPlugin: reloadBase, withPlugin: scaled(reloadBase, 1.4, 1.5, 1.45, 1.45, 1.4),
			backendAI: reloadBase, backendAIWith: scaled(reloadBase, 1.1, 1.1, 1.1, 1.1, 1.1),
		})
	vs := judge(t, lines)
	v := find(t, vs, "Traefik's first load of 10,000 routers with the plugin")
	if v.met != "report" || !strings.Contains(v.measured, "ratio median 1.450, 95% interval 1.389–1.492, 5 rounds") {
		t.Errorf("%+v", v)
	}
	v = find(t, vs, "Traefik's first load of a Backend.AI-shaped worker, 10,000 routers")
	if v.met != "report" || !strings.Contains(v.measured, "95% interval 1.100–1.100") {
		t.Errorf("%+v", v)
	}
}

func TestTheProfileTableHasAColumnPerPart(t *testing.T) {
	groups, order, _ := parse(strings.NewReader(profile))
	var b strings.Builder
	writeTables(&b, groups, order)
	for _, want := range []string{
		"## Where Traefik's reload time goes",
		"| variant | samples | config-build % | yaegi % | gc % | plugin-new % | other % |",
		"| backendai-chain | 2000 | 30 | 20 | 10 |  |  |",
		"| backendai-chain+traefik-sd | 2600 | 25 | 35 | 12 | 5 | 40 |",
	} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("lacks %q:\n%s", want, b.String())
		}
	}
}

func ceilingLine(n int, api float64, timeouts int) string {
	return fmt.Sprintf("BenchmarkTraefikCeiling/circuits=%d\t1\t%.0f api-ms\t%.0f published-ms\t40 etcd-list-ms\t3 watch-events\t%d timeouts\n",
		n, api, api+100, timeouts)
}

func TestTraefiksCeiling(t *testing.T) {
	for _, tc := range []struct {
		lines, want string
	}{
		{ceilingLine(1000, 800, 0) + ceilingLine(2000, 2500, 0) + ceilingLine(5000, 9900, 0) + ceilingLine(10000, 30000, 0),
			"new router within 10 s: **5,000**; the smallest at which it did not: **10,000**."},
		// A timed-out round is not seen within the limit, whatever the median.
		{ceilingLine(1000, 800, 0) + ceilingLine(2000, 4000, 1) + ceilingLine(5000, 120000, 3),
			"within 10 s: **1,000**; the smallest at which it did not: **2,000**."},
		{ceilingLine(1000, 800, 0) + ceilingLine(10000, 9000, 0),
			"within 10 s: **10,000**; the smallest at which it did not: beyond the largest measured (10,000)."},
		{ceilingLine(1000, 12000, 0),
			"At none of the sizes run did Traefik's API show a new router within 10 s; the smallest at which it did not: **1,000**."},
		// A size predicted past the wait has etcd's figures only: neither side.
		{ceilingLine(1000, 800, 0) + ceilingLine(2000, 9000, 0) + "BenchmarkTraefikCeiling/circuits=10000\t1\t200 etcd-list-ms\t10 watch-events\n",
			"within 10 s: **2,000**; the smallest at which it did not: beyond the largest measured (2,000). " +
				"Not run through Traefik, as the smaller sizes predicted them past the wait: 10,000 (etcd's figures only)."},
	} {
		groups, order, _ := parse(strings.NewReader(tc.lines))
		var b strings.Builder
		writeTables(&b, groups, order)
		if !strings.Contains(b.String(), tc.want) {
			t.Errorf("lacks %q:\n%s", tc.want, b.String())
		}
	}
	groups, order, _ := parse(strings.NewReader(ceilingLine(5000, 120000, 3) + "BenchmarkTraefikCeiling/circuits=10000\t1\t200 etcd-list-ms\t10 watch-events\n"))
	var b strings.Builder
	writeTables(&b, groups, order)
	for _, want := range []string{
		"| circuits | api-ms | published-ms | etcd-list-ms | watch-events | timeouts |",
		"| 5,000 | ≥ 120000 | 120100 | 40 | 3 | 3 |",
		"| 10,000 | not run |  | 200 | 10 |  |",
	} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("lacks %q:\n%s", want, b.String())
		}
	}
}

func TestRoundsAreOneRowPerVariant(t *testing.T) {
	lines := alternating("BenchmarkTraefikReload10000Routers", "ns/op", []string{noPlugin, withPlugin},
		map[string][]float64{noPlugin: {4e9, 5e9, 6e9}, withPlugin: {8e9, 9e9, 10e9}}) +
		"BenchmarkNew/baseline=noop-plugin-2\t3000\t6000 ns/op\nBenchmarkNew/traefik-sd-2\t3000\t57000 ns/op\n"
	groups, order, _ := parse(strings.NewReader(lines))
	var b strings.Builder
	writeTables(&b, groups, order)
	for _, want := range []string{
		"| variant | rounds | ns/op | ratio of medians to baseline |",
		"| baseline=without-plugin | 3 | 5000000000 (4000000000–6000000000) | 1 |",
		"| with-plugin | 3 | 9000000000 (8000000000–10000000000) | ns/op ×0.556 |",
		// A group measured once keeps its row per line.
		"| variant | ns/op | ratio to baseline |\n|---|---:|---|\n| baseline=noop-plugin | 6000 | 1 |\n| traefik-sd | 57000 | ns/op ×0.105 |",
	} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("lacks %q:\n%s", want, b.String())
		}
	}
}

func TestTheHeaderNamesTheVersions(t *testing.T) {
	if got := versions("go1.26.8", "etcd Version: 3.6.16", "v3.6.12"); got != "go1.26.8, etcd 3.6.16, Traefik v3.6.12" {
		t.Errorf("%q", got)
	}
	if got := versions("go1.26.8", "", ""); got != "go1.26.8, etcd version not given, Traefik version not given" {
		t.Errorf("%q", got)
	}
}
