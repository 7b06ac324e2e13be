package main

import (
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"strings"
)

// The router count is e2e/cmd/bench's -routers flag, so these groups are
// found by their shape rather than by one name.
var (
	loadGroupRE   = regexp.MustCompile(`^BenchmarkTraefikLoad(\d+)Routers$`)
	reloadGroupRE = regexp.MustCompile(`^BenchmarkTraefikReload(\d+)Routers$`)
)

// routerGroup is the group re matches, with its router count; of several,
// the largest count, so that the verdict does not depend on map order.
func (rs runSet) routerGroup(re *regexp.Regexp) (group string, routers int, ok bool) {
	for g := range rs.groups {
		if m := re.FindStringSubmatch(g); m != nil {
			n, err := strconv.Atoi(m[1])
			if err == nil && (!ok || n > routers) {
				group, routers, ok = g, n, true
			}
		}
	}
	return group, routers, ok
}

// The Traefik variants e2e/cmd/bench measures in alternating rounds.
const (
	noPlugin      = "baseline=without-plugin"
	noopPlugin    = "noop-yaegi-plugin"
	withPlugin    = "with-plugin"
	backendAI     = "backendai-chain"
	backendAIWith = "backendai-chain+traefik-sd"
)

// shown is how a unit's values read in prose: scaled, then named.
type shown struct {
	per  float64 // of the measured unit in one shown
	unit string
}

var (
	seconds = shown{1e9, "s"} // from ns/op
	reqPerS = shown{1, "req/s"}
)

func (s shown) one(v float64) string { return format(v/s.per) + " " + s.unit }

// rounds is the rounds' median and, when they differ, their range.
func (s shown) rounds(xs []float64) string {
	lo, hi := spread(xs)
	if lo == hi {
		return s.one(lo)
	}
	return fmt.Sprintf("%s (%s–%s %s)", s.one(median(xs)), format(lo/s.per), format(hi/s.per), s.unit)
}

// ratioText keeps three decimals, as a ratio near its goal needs them.
func ratioText(x float64) string { return strconv.FormatFloat(x, 'f', 3, 64) }

// ratioRow compares variant a with b over their alternating rounds of unit
// and fills v's measured column; with goal > 0 it also judges a/b against
// it, otherwise the row is a report. ok is false when either variant has no
// rounds (v is then "not measured").
func (rs runSet) ratioRow(v verdict, group, a, b, unit string, show shown,
	goal float64, d direction) (verdict, comparison, bool) {
	xa, xb := rs.runs(group, a, unit), rs.runs(group, b, unit)
	if len(xa) == 0 || len(xb) == 0 {
		return notMeasured(v, fmt.Sprintf("%s/%s and /%s", group, a, b)), comparison{}, false
	}
	c, err := compare(xa, xb)
	if err != nil {
		v.measured, v.met, v.settle = err.Error(), "unsettled", "every round must measure something"
		return v, c, false
	}
	v.measured = describe(c, a, b, show)
	if extra := len(xa) + len(xb) - 2*c.n(); extra > 0 {
		v.measured += fmt.Sprintf("; %d unpaired rounds left out", extra)
	}
	if goal <= 0 {
		v.met = "report"
		return v, c, true
	}
	j := c.judge(goal, d)
	v.met, v.settle = j.met, j.settle
	return v, c, true
}

// describe is the measured column of a comparison: the ratio's median over
// the rounds and its 95% interval, then each variant's median and spread.
func describe(c comparison, a, b string, show shown) string {
	var s string
	if lo, hi, ok := c.interval(); ok {
		s = fmt.Sprintf("ratio median %s, 95%% interval %s–%s, %d rounds", ratioText(c.medianRatio()), ratioText(lo), ratioText(hi), c.n())
	} else {
		s = fmt.Sprintf("ratio %s, %s (no interval)", ratioText(c.medianRatio()), plural(c.n(), "round"))
	}
	for _, side := range []struct {
		name string
		xs   []float64
	}{{a, c.a}, {b, c.b}} {
		s += fmt.Sprintf("; %s %s", side.name, show.rounds(side.xs))
	}
	return s
}

// intervalWhy says where the interval lies against the goal.
func intervalWhy(c comparison, goal float64, d direction, a, b, met string) string {
	lo, hi, ok := c.interval()
	if !ok {
		return ""
	}
	where := "holds " + format(goal)
	if met == "missed" {
		where = "lies wholly above " + format(goal)
		if d == atLeast {
			where = "lies wholly below " + format(goal)
		}
	}
	return fmt.Sprintf("Over %d alternating rounds the 95%% interval of %s over %s, %s–%s, %s.", c.n(), a, b, ratioText(lo), ratioText(hi), where)
}

func thousands(n int) string {
	s := strconv.Itoa(n)
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}

// backendAIReloadGoal is the Traefik part's first question: does a worker
// shaped as Backend.AI's, its own middleware chain on every router, reload
// much slower once traefik-sd is in the chain?
func backendAIReloadGoal(rs runSet) verdict {
	const goal = 1.10
	v := verdict{what: "Traefik reload of a Backend.AI-shaped worker with traefik-sd", baseline: "the same worker and middleware chain without traefik-sd",
		goal: "≤ 1.10× its reload time"}
	g, n, ok := rs.routerGroup(reloadGroupRE)
	if !ok {
		return notMeasured(v, "BenchmarkTraefikReload<N>Routers")
	}
	v.what = fmt.Sprintf("Traefik reload of a Backend.AI-shaped worker, %s routers, with traefik-sd", thousands(n))
	v, c, ok := rs.ratioRow(v, g, backendAIWith, backendAI, "ns/op", seconds, goal, atMost)
	if ok && (v.met == "missed" || v.met == "unsettled") {
		v.why = strings.TrimSpace(intervalWhy(c, goal, atMost, backendAIWith, backendAI, v.met) + " " + profileWhy(rs, backendAIWith, backendAI))
	}
	return v
}

func requestPathGoal(rs runSet) verdict {
	const goal = 0.97
	v := verdict{what: "the plugin on the request path: one router through the real Traefik",
		baseline: "the same router without the plugin", goal: "≥ " + format(goal) + " of the requests/s"}
	const g = "BenchmarkTraefikRouter"
	v, c, ok := rs.ratioRow(v, g, withPlugin, noPlugin, "req/s", reqPerS, goal, atLeast)
	if ok && v.met == "missed" {
		v.why = intervalWhy(c, goal, atLeast, withPlugin, noPlugin, v.met)
		base, ours, ok := rs.pair("BenchmarkServeHTTP", "baseline=next-direct", "traefik-sd-plugin-under-yaegi", "ns/op")
		if ok {
			v.why += fmt.Sprintf(" The plugin's handler alone, under Yaegi, costs %s ns a request against %s ns calling next directly (ServeHTTP above).",
				format(ours), format(base))
		}
	}
	return v
}

func reloadGoal(rs runSet) verdict {
	const goal = 1.2
	v := verdict{what: "Traefik reload with the plugin", baseline: "the same reload with a no-op Yaegi plugin",
		goal: "≤ " + format(goal) + "× the no-op plugin's"}
	g, n, ok := rs.routerGroup(reloadGroupRE)
	if !ok {
		return notMeasured(v, "BenchmarkTraefikReload<N>Routers")
	}
	v.what = fmt.Sprintf("Traefik reload, %s routers with the plugin", thousands(n))
	v, c, ok := rs.ratioRow(v, g, withPlugin, noopPlugin, "ns/op", seconds, goal, atMost)
	if none := rs.runs(g, noPlugin, "ns/op"); ok && len(none) > 0 {
		v.measured += fmt.Sprintf("; without any plugin %s", seconds.one(median(none)))
	}
	if ok && (v.met == "missed" || v.met == "unsettled") {
		v.why = intervalWhy(c, goal, atMost, withPlugin, noopPlugin, v.met)
		if v.met == "missed" {
			if cn, err := compare(rs.runs(g, noopPlugin, "ns/op"), rs.runs(g, noPlugin, "ns/op")); err == nil && cn.n() > 0 {
				v.why += fmt.Sprintf(" Traefik itself charges every Yaegi middleware an interpreted CreateConfig, decode and New: "+
					"the no-op plugin's reload is already %s× the one without any (median of the rounds). What differs from "+
					"the no-op plugin is traefik-sd's larger configuration to create and decode, its New (the last row), and "+
					"its sender recording them and pushing the set to the sidecar on the same cores.", ratioText(cn.medianRatio()))
			}
		}
		if len(rs.shares(withPlugin)) > 0 {
			v.why = strings.TrimSpace(v.why + " " + profileWhy(rs, withPlugin, noopPlugin))
		}
	}
	return v
}

// loadReport reports Traefik's first load of the routers (no reload), for
// the plugin against the no-op plugin or, with backendAIShaped, for the
// Backend.AI-shaped worker with traefik-sd against without.
func loadReport(backendAIShaped bool) goal {
	return func(rs runSet) verdict {
		a, b := withPlugin, noopPlugin
		what := "Traefik's first load of %s routers with the plugin"
		v := verdict{baseline: "the same load with a no-op Yaegi plugin", goal: "report"}
		if backendAIShaped {
			a, b = backendAIWith, backendAI
			what = "Traefik's first load of a Backend.AI-shaped worker, %s routers, with traefik-sd"
			v.baseline = "the same worker and middleware chain without traefik-sd"
		}
		g, n, ok := rs.routerGroup(loadGroupRE)
		v.what = fmt.Sprintf(what, thousands(n))
		if !ok {
			v.what = fmt.Sprintf(what, "N")
			return notMeasured(v, "BenchmarkTraefikLoad<N>Routers")
		}
		v, _, _ = rs.ratioRow(v, g, a, b, "ns/op", seconds, 0, atMost)
		return v
	}
}

func newUnderYaegi(rs runSet) verdict {
	v := verdict{what: "one `New` under Yaegi, as Traefik calls it", baseline: "a no-op plugin's New", goal: "report"}
	const g = "BenchmarkNew"
	noop, ours, ok := rs.pair(g, "baseline=noop-plugin", "traefik-sd", "ns/op")
	if !ok {
		return notMeasured(v, g)
	}
	v.measured = fmt.Sprintf("%s µs vs %s µs", format(ours/1000), format(noop/1000))
	v.met = "report"
	return v
}

// The reload profile: for each variant, the share of Traefik's CPU samples
// during one reload that each part took, as units named <part>-%.
const (
	profileGroup = "BenchmarkTraefikReloadProfile"
	shareSuffix  = "-%"
)

type share struct {
	part string
	pct  float64
}

// shares is a variant's profile, largest share first (its last run if more).
func (rs runSet) shares(variant string) []share {
	last := rs.last(profileGroup, variant)
	if last == nil {
		return nil
	}
	var out []share
	for _, u := range last.order {
		if part, ok := strings.CutSuffix(u, shareSuffix); ok {
			out = append(out, share{part, last.metrics[u]})
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].pct > out[j].pct })
	return out
}

// profileWhy cites the largest shares of variant's reload beside the same
// parts of the baseline's, from the profile table.
func profileWhy(rs runSet, variant, baseline string) string {
	ours := rs.shares(variant)
	if len(ours) == 0 {
		return fmt.Sprintf("This run has no %s row for %s, so where its reload time goes is not measured.", profileGroup, variant)
	}
	theirs := map[string]float64{}
	for _, s := range rs.shares(baseline) {
		theirs[s.part] = s.pct
	}
	var parts []string
	other := -1.0
	for _, s := range ours {
		// "other" is the samples no part claims: a residue, not a part.
		if s.part == "other" {
			other = s.pct
			continue
		}
		if len(parts) == 3 {
			continue
		}
		p := fmt.Sprintf("%s %s%%", s.part, format(s.pct))
		if t, ok := theirs[s.part]; ok {
			p += fmt.Sprintf(" (%s: %s%%)", baseline, format(t))
		}
		parts = append(parts, p)
	}
	why := fmt.Sprintf("Of %s's reload, the largest shares of Traefik's CPU samples are %s", variant, strings.Join(parts, ", "))
	if other >= 0 {
		why += fmt.Sprintf("; no part claims %s%%", format(other))
	}
	why += " (\"Where Traefik's reload time goes\")."
	if more := sampleGap(rs, variant, baseline); more != "" {
		why += " " + more
	}
	return why
}

// sampleGap says where variant's profile holds more samples than the
// baseline's, part by part: shares alone cannot, as the two totals differ.
// Both profiles run as long as the reload needs, so the gap in samples is
// the CPU the variant adds.
func sampleGap(rs runSet, variant, baseline string) string {
	a, b := rs.last(profileGroup, variant), rs.last(profileGroup, baseline)
	if a == nil || b == nil || a.metrics["samples"] <= 0 || b.metrics["samples"] <= 0 {
		return ""
	}
	ta, tb := a.metrics["samples"], b.metrics["samples"]
	if ta <= tb {
		return ""
	}
	theirs := map[string]float64{}
	for _, s := range rs.shares(baseline) {
		theirs[s.part] = s.pct * tb / 100
	}
	type gap struct {
		part string
		n    float64
	}
	var gaps []gap
	for _, s := range rs.shares(variant) {
		if s.part == "other" {
			continue
		}
		if d := s.pct*ta/100 - theirs[s.part]; d >= 0.5 {
			gaps = append(gaps, gap{s.part, d})
		}
	}
	if len(gaps) == 0 {
		return ""
	}
	sort.SliceStable(gaps, func(i, j int) bool { return gaps[i].n > gaps[j].n })
	var parts []string
	for i, g := range gaps {
		if i == 3 {
			break
		}
		parts = append(parts, fmt.Sprintf("%s (+%.0f)", g.part, g.n))
	}
	return fmt.Sprintf("Its profile holds %.0f samples more than %s's (%.0f against %.0f); the parts that grew most: %s.",
		ta-tb, baseline, ta, tb, strings.Join(parts, ", "))
}

// writeProfile is the profile group's table: a column per part.
func writeProfile(b *strings.Builder, rs []*result) {
	b.WriteString("## Where Traefik's reload time goes\n\n")
	b.WriteString("Shares of Traefik's CPU samples during one reload (`" + strings.TrimPrefix(profileGroup, "Benchmark") + "`), by part.\n\n")
	var variants, parts []string
	last := map[string]*result{}
	seen := map[string]bool{}
	for _, r := range rs {
		if _, ok := last[r.name]; !ok {
			variants = append(variants, r.name)
		}
		last[r.name] = r
		for _, u := range r.order {
			if p, ok := strings.CutSuffix(u, shareSuffix); ok && !seen[p] {
				seen[p] = true
				parts = append(parts, p)
			}
		}
	}
	b.WriteString("| variant | samples |")
	for _, p := range parts {
		fmt.Fprintf(b, " %s %% |", p)
	}
	b.WriteString("\n|---|---:|" + strings.Repeat("---:|", len(parts)) + "\n")
	for _, name := range variants {
		r := last[name]
		fmt.Fprintf(b, "| %s | %s |", name, cell(r.metrics, "samples"))
		for _, p := range parts {
			fmt.Fprintf(b, " %s |", cell(r.metrics, p+shareSuffix))
		}
		b.WriteString("\n")
	}
	b.WriteString("\n")
}

func cell(m map[string]float64, unit string) string {
	if v, ok := m[unit]; ok {
		return format(v)
	}
	return ""
}

// Traefik's ceiling: how long its API takes to show one new router while it
// serves N circuits from etcd.
const (
	ceilingGroup  = "BenchmarkTraefikCeiling"
	ceilingLimitS = 10
)

type ceilingRow struct {
	circuits int
	r        *result
}

// ran is whether the size went through Traefik: e2e/cmd/bench skips a size
// the smaller ones predict past its wait, and prints etcd's figures alone.
func (c ceilingRow) ran() bool {
	_, ok := c.r.metrics["api-ms"]
	return ok
}

// within is whether the API showed the new router within the limit: the
// median over the rounds at most the limit and no round timed out (a timed
// out round's value is the wait, not a time it was seen).
func (c ceilingRow) within() bool {
	return c.ran() && c.r.metrics["timeouts"] == 0 && c.r.metrics["api-ms"] <= ceilingLimitS*1000
}

func ceilingRows(rs []*result) []ceilingRow {
	byN := map[int]*result{}
	for _, r := range rs {
		n, err := strconv.Atoi(strings.TrimPrefix(r.name, "circuits="))
		if err == nil && strings.HasPrefix(r.name, "circuits=") {
			byN[n] = r // the last line of a size stands
		}
	}
	var out []ceilingRow
	for n, r := range byN {
		out = append(out, ceilingRow{n, r})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].circuits < out[j].circuits })
	return out
}

// ceiling says, from the sizes run through Traefik, the largest at which its
// API showed a new router within the limit and the smallest at which it did
// not; a size not run is neither.
func ceiling(rows []ceilingRow) string {
	largest, smallest, largestRun := -1, -1, -1
	var notRun []string
	for _, c := range rows {
		switch {
		case !c.ran():
			notRun = append(notRun, thousands(c.circuits))
			continue
		case c.within():
			largest = c.circuits
		case smallest < 0:
			smallest = c.circuits
		}
		largestRun = c.circuits
	}
	if largestRun < 0 {
		return "No size was run through Traefik."
	}
	var s string
	if largest < 0 {
		s = fmt.Sprintf("At none of the sizes run did Traefik's API show a new router within %d s", ceilingLimitS)
	} else {
		s = fmt.Sprintf("The largest circuit count at which Traefik's API showed a new router within %d s: **%s**", ceilingLimitS, thousands(largest))
	}
	if smallest < 0 {
		s += fmt.Sprintf("; the smallest at which it did not: beyond the largest measured (%s).", thousands(largestRun))
	} else {
		s += fmt.Sprintf("; the smallest at which it did not: **%s**.", thousands(smallest))
	}
	if largest > smallest && smallest >= 0 {
		s += " The sizes do not fall on one side each: a larger count met the limit that a smaller one missed."
	}
	if len(notRun) > 0 {
		s += fmt.Sprintf(" Not run through Traefik, as the smaller sizes predicted them past the wait: %s (etcd's figures only).", strings.Join(notRun, ", "))
	}
	return s
}

func writeCeiling(b *strings.Builder, rs []*result) {
	rows := ceilingRows(rs)
	if len(rows) == 0 {
		return
	}
	b.WriteString("## Traefik's ceiling: one new router while it serves N circuits from etcd\n\n")
	b.WriteString("Medians over the rounds of each size. A round that timed out counts its wait limit as its time (≥).\n\n")
	units := unitsOf(rs)
	header(b, "circuits", units, false, "")
	for _, c := range rows {
		fmt.Fprintf(b, "| %s |", thousands(c.circuits))
		for _, u := range units {
			v := cell(c.r.metrics, u)
			switch {
			case u == "api-ms" && !c.ran():
				v = "not run"
			case u == "api-ms" && c.r.metrics["timeouts"] > 0:
				v = "≥ " + v
			}
			fmt.Fprintf(b, " %s |", v)
		}
		b.WriteString("\n")
	}
	b.WriteString("\n" + ceiling(rows) + "\n\n")
}

// Without etcd: the sidecar follows Traefik's API alone.
const noEtcdGroup = "BenchmarkNoEtcdChangeToTargets"

func noEtcdGoal(routers int) goal {
	return func(rs runSet) verdict {
		v := verdict{what: fmt.Sprintf("change → `/v1/targets` without etcd, from Traefik's API, %s routers", thousands(routers)),
			baseline: "none (absolute)", goal: "report"}
		r := rs.last(noEtcdGroup, fmt.Sprintf("routers=%d", routers))
		if r == nil {
			return notMeasured(v, fmt.Sprintf("%s/routers=%d", noEtcdGroup, routers))
		}
		m := r.metrics
		v.measured = fmt.Sprintf("p50 %s ms, p99 %s ms over %d rounds; Traefik's API answered in %s ms (p50); "+
			"the sidecar asked it %s times/s at rest and %s during a reload, reading %s bytes a change",
			cell(m, "p50-ms"), cell(m, "p99-ms"), r.iters, cell(m, "traefik-api-p50-ms"),
			cell(m, "api-req/s-rest"), cell(m, "api-req/s-reload"), cell(m, "api-bytes/change"))
		v.met = "report"
		return v
	}
}

func writeNoEtcd(b *strings.Builder, rs []*result) {
	b.WriteString("## " + strings.TrimPrefix(noEtcdGroup, "Benchmark") + "\n\n")
	b.WriteString("Without etcd, the sidecar follows Traefik's API alone.\n\n")
	units := unitsOf(rs)
	b.WriteString("| variant | rounds |")
	for _, u := range units {
		fmt.Fprintf(b, " %s |", u)
	}
	b.WriteString("\n|---|---:|" + strings.Repeat("---:|", len(units)) + "\n")
	for _, r := range rs {
		fmt.Fprintf(b, "| %s | %d |", r.name, r.iters)
		for _, u := range units {
			fmt.Fprintf(b, " %s |", cell(r.metrics, u))
		}
		b.WriteString("\n")
	}
	b.WriteString("\n")
}

// last is a variant's last line in a group.
func (rs runSet) last(group, variant string) *result {
	var out *result
	for _, r := range rs.groups[group] {
		if r.name == variant {
			out = r
		}
	}
	return out
}
