package main

import (
	"fmt"
	"math"
	"sort"
	"strings"
)

// runs finds a variant's value of one unit in every run of it, in order.
// variant "" is a benchmark without sub-benchmarks.
func (rs runSet) runs(group, variant, unit string) []float64 {
	var out []float64
	for _, r := range rs.groups[group] {
		if r.name == variant {
			if v, ok := r.metrics[unit]; ok {
				out = append(out, v)
			}
		}
	}
	return out
}

// rounds are the per-round figures the last run of a variant reported as
// <prefix><round><suffix>, rounds counted from 1, in order.
func (rs runSet) rounds(group, variant, prefix, suffix string) []float64 {
	var last *result
	for _, r := range rs.groups[group] {
		if r.name == variant {
			last = r
		}
	}
	var out []float64
	for i := 1; last != nil; i++ {
		v, ok := last.metrics[fmt.Sprintf("%s%d%s", prefix, i, suffix)]
		if !ok {
			break
		}
		out = append(out, v)
	}
	return out
}

// one is the value of a variant measured once (the last run if more).
func (rs runSet) one(group, variant, unit string) (float64, bool) {
	v := rs.runs(group, variant, unit)
	if len(v) == 0 {
		return 0, false
	}
	return v[len(v)-1], true
}

type runSet struct {
	groups map[string][]*result
}

// pair is two variants' values of one unit, ok only when both were measured.
func (rs runSet) pair(group, a, b, unit string) (x, y float64, ok bool) {
	x, okA := rs.one(group, a, unit)
	y, okB := rs.one(group, b, unit)
	return x, y, okA && okB
}

// verdict is one row of the goals table.
type verdict struct {
	what, baseline, goal, measured string
	// met is "met", "missed", "unsettled" (rounds that neither meet nor miss
	// the goal), "report" (no threshold) or "not measured".
	met string
	// settle says, beside an unsettled verdict, what would settle it.
	settle string
	// why explains a missed or unsettled goal from the same run's figures.
	why string
}

// goal reads the figures one goal needs and judges it. Each is written
// against the benchmark names and units make bench produces; a figure
// missing from the run makes the goal "not measured", never met.
type goal func(runSet) verdict

var goals = []goal{
	parseGoal, serveGoal, changeLatencyGoal, changeLatencyAtScale, relistGoal, relistDeletedGoal, relistWholeGoal, coldStartGoal, memoryGoal,
	noEtcdGoal(1000), noEtcdGoal(10000),
	// Traefik's part, through the real Traefik.
	backendAIReloadGoal, requestPathGoal, reloadGoal, loadReport(false), loadReport(true), newUnderYaegi,
}

func notMeasured(v verdict, what string) verdict {
	v.met, v.measured = "not measured", "no "+what+" in this run"
	return v
}

func metIf(ok bool) string {
	if ok {
		return "met"
	}
	return "missed"
}

func parseGoal(rs runSet) verdict {
	v := verdict{what: "parse a Traefik `/metrics` of 10,000 services", baseline: "expfmt's text parser",
		goal: "≥ 5× faster, ≥ 10× fewer allocations"}
	const g = "BenchmarkParseTraefikMetrics"
	bn, tn, ok1 := rs.pair(g, "baseline=expfmt", "traefik-sd", "ns/op")
	ba, ta, ok2 := rs.pair(g, "baseline=expfmt", "traefik-sd", "allocs/op")
	if !ok1 || !ok2 {
		return notMeasured(v, g)
	}
	speed, allocs := bn/tn, ba/math.Max(ta, 1)
	v.measured = fmt.Sprintf("%s× faster, %s× fewer allocations", format(speed), format(allocs))
	v.met = metIf(speed >= 5 && allocs >= 10)
	return v
}

func serveGoal(rs runSet) verdict {
	// Prometheus's HTTP SD asks with neither Accept-Encoding nor
	// If-None-Match (discovery/http sets only User-Agent, Accept and
	// X-Prometheus-Refresh-Interval-Seconds, and its client turns off Go's
	// transparent gzip): the identity body is what it gets, every refresh.
	v := verdict{what: "serve `/v1/targets`, 10,000 targets, loopback", baseline: "net/http + encoding/json per request",
		goal: "≥ 10× requests/s as Prometheus asks (uncompressed, no ETag)"}
	const g = "BenchmarkServeTargets"
	base, id, ok := rs.pair(g, "baseline=nethttp-json-per-request", "traefik-sd-200-identity", "req/s")
	if !ok {
		return notMeasured(v, g)
	}
	v.measured = fmt.Sprintf("200 identity: %s×", format(id/base))
	if gz, ok := rs.one(g, "traefik-sd-200-gzip", "req/s"); ok {
		v.measured += fmt.Sprintf("; for clients that ask, 200 gzip: %s×", format(gz/base))
	}
	if nm, ok := rs.one(g, "traefik-sd-304", "req/s"); ok {
		v.measured += fmt.Sprintf("; 304: %s×", format(nm/base))
	}
	v.met = metIf(id/base >= 10)
	return v
}

const changeGroup = "BenchmarkEtcdChangeToTargets"

func changeLatencyGoal(rs runSet) verdict { return changeLatencyRuns(rs, 10000) }

func changeLatencyAtScale(rs runSet) verdict { return changeLatencyRuns(rs, 100000) }

// changeLatencyRuns judges a change's p99 at one size in three runs: one
// run's tail can meet or miss a goal by where the collector's cycles fell.
func changeLatencyRuns(rs runSet, circuits int) verdict {
	v := verdict{what: fmt.Sprintf("etcd change → `/v1/targets`, %s circuits", thousands(circuits)), baseline: "none (absolute)",
		goal: "p99 ≤ 50 ms in three runs out of three"}
	variant := fmt.Sprintf("circuits=%d", circuits)
	p99 := rs.runs(changeGroup, variant, "p99-ms")
	p50 := rs.runs(changeGroup, variant, "p50-ms")
	if len(p99) == 0 {
		return notMeasured(v, changeGroup+"/"+variant)
	}
	v.measured = fmt.Sprintf("p99 %s ms; p50 %s ms (%s)", list(p99), list(p50), plural(len(p99), "run"))
	worst := 0.0
	for _, x := range p99 {
		worst = math.Max(worst, x)
	}
	v.met = metIf(len(p99) >= 3 && worst <= 50)
	switch {
	case worst > 50:
		v.why = fmt.Sprintf("The worst run's p99 was %s ms, %s× the goal.", format(worst), format(worst/50))
		if len(p50) > 0 {
			if m := median(p50); m > 50 {
				v.why += fmt.Sprintf(" The median change took %s ms: at this size every change costs more than the goal, not only the tail.", format(m))
			} else {
				v.why += fmt.Sprintf(" The median change took %s ms: the tail, not the typical change, misses.", format(m))
			}
		}
	case len(p99) < 3:
		v.why = fmt.Sprintf("Only %s made; the goal asks for three.", plural(len(p99), "run"))
	}
	return v
}

const relistGroup = "BenchmarkRelist100k"

// relistOverFloor is how far above etcd's own reading of the keys a re-list
// may take: what etcd needs is the one part traefik-sd cannot shorten.
const relistOverFloor = 1.3

// relistGoal judges the re-list after a compaction when nothing was deleted
// meanwhile: the watcher reads only the keys written since.
func relistGoal(rs runSet) verdict {
	v := verdict{what: "re-list of 100,000 circuits after a compaction, nothing deleted meanwhile (ten circuits rewritten), etcd's time included",
		baseline: "etcd reading the same keys and returning none (the floor)", goal: fmt.Sprintf("≤ %s× the floor", format(relistOverFloor))}
	ns, ok := rs.one(relistGroup, "", "ns/op")
	floor, ok2 := rs.one(relistGroup, "", "etcd-read-floor-s")
	list, _ := rs.one(relistGroup, "", "list-s")
	own, _ := rs.one(relistGroup, "", "compare+decode+build-s")
	// A re-list that changes nothing renders nothing (the daemon publishes
	// nothing); older runs rendered after each.
	render, rendered := rs.one(relistGroup, "", "render-s")
	if !ok || !ok2 || floor <= 0 {
		return notMeasured(v, relistGroup+" ns/op and etcd-read-floor-s")
	}
	total := ns / 1e9
	parts := fmt.Sprintf("listing %s s, own work %s s", format(list), format(own))
	work := "compare, decode, build"
	if rendered {
		parts += fmt.Sprintf(", render %s s", format(render))
		work += ", render"
	}
	why := func() string {
		return fmt.Sprintf("The goal leaves %s s beyond etcd's %s s. The listing alone spent %s s beyond it, reading the same "+
			"keys as the floor and sending them; traefik-sd's own work (%s) took %s s.",
			format((relistOverFloor-1)*floor), format(floor), format(list-floor), work, format(own+render))
	}
	// Each re-list followed by a reading of the floor: judged from the
	// pairs' ratios, as the floor alone varies from one reading to the next.
	relists, floors := rs.rounds(relistGroup, "", "relist-round", "-s"), rs.rounds(relistGroup, "", "floor-round", "-s")
	if len(relists) > 0 && len(floors) > 0 {
		c, err := compare(relists, floors)
		if err != nil {
			v.measured, v.met, v.settle = err.Error(), "unsettled", "every round must measure something"
			return v
		}
		v.measured = describe(c, "re-list", "floor", shown{1, "s"}) + "; means: " + parts
		j := c.judge(relistOverFloor, atMost)
		v.met, v.settle = j.met, j.settle
		if v.met != "met" {
			v.why = strings.TrimSpace(intervalWhy(c, relistOverFloor, atMost, "the re-list", "the floor", v.met) + " " + why())
		}
		return v
	}
	v.measured = fmt.Sprintf("%s s, %s× the floor of %s s (%s)", format(total), ratioText(total/floor), format(floor), parts)
	v.met = metIf(total <= relistOverFloor*floor)
	if v.met == "missed" {
		v.why = why()
	}
	return v
}

// relistWholeGoal judges a whole listing of the tree, what a re-list costs
// when most of it changed meanwhile, or etcd's history is another.
var relistWholeGoal = relistRoundsGoal(
	"re-list of 100,000 circuits, listed whole (most of the tree changed meanwhile, or etcd restored), etcd's time included",
	"relist-whole-round", "whole listing", "", "relist-whole:own-s",
	"A whole listing reads every key as the floor does, then sends them all and compares each with what is held.")

// relistDeletedGoal judges the re-list after a compaction when a circuit was
// deleted meanwhile: it lists the ranges between marks that lost a key.
var relistDeletedGoal = relistRoundsGoal(
	"re-list of 100,000 circuits after a compaction, a circuit deleted meanwhile, etcd's time included",
	"relist-deleted-round", "re-list", "relist-deleted-keys-read", "relist-deleted:own-s",
	"It reads every key as the floor does and sends what was written since, then lists each range between two marks (5,000 keys apart) "+
		"that lost a key (%s keys sent in all): a deletion leaves nothing else to find it by.")

// relistRoundsGoal judges a re-list timed in rounds (name<n>-s), each
// followed by a reading of the floor, from the pairs' ratios; why, said
// when the goal is not met, may quote the keys metric, and is followed by
// the mean of traefik-sd's own part (the own metric) when the run has it.
func relistRoundsGoal(what, name, label, keys, own, why string) func(runSet) verdict {
	return func(rs runSet) verdict {
		v := verdict{what: what, baseline: "etcd reading the same keys and returning none (the floor)",
			goal: fmt.Sprintf("≤ %s× the floor", format(relistOverFloor))}
		runs, floors := rs.rounds(relistGroup, "", name, "-s"), rs.rounds(relistGroup, "", "floor-round", "-s")
		if len(runs) == 0 || len(runs) != len(floors) {
			return notMeasured(v, relistGroup+" "+name+"<n>-s and floor-round<n>-s")
		}
		c, err := compare(runs, floors)
		if err != nil {
			v.measured, v.met, v.settle = err.Error(), "unsettled", "every round must measure something"
			return v
		}
		v.measured = describe(c, label, "floor", shown{1, "s"})
		j := c.judge(relistOverFloor, atMost)
		v.met, v.settle = j.met, j.settle
		if v.met != "met" {
			if keys != "" {
				n, _ := rs.one(relistGroup, "", keys)
				why = fmt.Sprintf(why, format(n))
			}
			v.why = intervalWhy(c, relistOverFloor, atMost, "the "+label, "the floor", v.met) + " " + why
			if x, ok := rs.one(relistGroup, "", own); ok {
				v.why += fmt.Sprintf(" Of each, traefik-sd's own work (applying what was sent, comparing, building) took %s s on average; the rest is the listing itself: etcd reading and sending, the watcher receiving.", format(x))
			}
		}
		return v
	}
}

// coldOverFloor: a cold start reads every key, as the floor does, and then
// builds everything once.
const coldOverFloor = 2

func coldStartGoal(rs runSet) verdict {
	v := verdict{what: "cold start: first listing of 100,000 circuits to the first body, etcd's time included",
		baseline: "etcd reading the same keys and returning none (the floor)", goal: fmt.Sprintf("≤ %s× the floor", format(coldOverFloor))}
	cold, ok := rs.one(relistGroup, "", "cold-list-s")
	floor, ok2 := rs.one(relistGroup, "", "etcd-read-floor-s")
	if !ok || !ok2 || floor <= 0 {
		return notMeasured(v, relistGroup+" cold-list-s and etcd-read-floor-s")
	}
	v.measured = fmt.Sprintf("%s s, %s× the floor of %s s", format(cold), ratioText(cold/floor), format(floor))
	v.met = metIf(cold <= coldOverFloor*floor)
	if v.met == "missed" {
		v.why = fmt.Sprintf("The goal allows %s s.", format(coldOverFloor*floor))
		if parts := coldParts(rs); parts != "" {
			v.why += " The cold start's parts: " + parts + "."
		} else if ns, ok := rs.one(relistGroup, "", "ns/op"); ok {
			v.why += fmt.Sprintf(" A re-list of the same keys, once the state is held, took %s s; the cold start's other %s s "+
				"is work only the first listing does (every key decoded, the plugin's full set applied, the first build and render), "+
				"which this run does not split further.", format(ns/1e9), format(cold-ns/1e9))
		}
	}
	return v
}

// coldParts names the cold start's parts the benchmark timed
// (cold-list:<part>-s), in its order, or "" when it timed none.
func coldParts(rs runSet) string {
	var parts []string
	for _, p := range []struct{ unit, what string }{
		{"cold-list:etcd-list-s", "listing etcd (the floor's read, sent and received)"},
		{"cold-list:decode+build-s", "decoding every object and building every router"},
		{"cold-list:plugin-set-s", "applying the plugin's full set (every router rebuilt as its middleware goes live)"},
		{"cold-list:render-s", "rendering the first body"},
	} {
		x, ok := rs.one(relistGroup, "", p.unit)
		if !ok {
			continue
		}
		part := fmt.Sprintf("%s %s s", p.what, format(x))
		if p.unit == "cold-list:decode+build-s" {
			part += pagesAndLast(rs)
		}
		parts = append(parts, part)
	}
	return strings.Join(parts, ", ")
}

// pagesAndLast splits the cold start's engine time between the listing's
// pages and its last page, or is "" when the run did not time them.
func pagesAndLast(rs runSet) string {
	pages, ok1 := rs.one(relistGroup, "", "cold-list:decode+build:pages-s")
	last, ok2 := rs.one(relistGroup, "", "cold-list:decode+build:last-page-s")
	if !ok1 || !ok2 {
		return ""
	}
	return fmt.Sprintf(" (%s s on the pages as etcd sent them, comparing and decoding ahead; %s s on the last, "+
		"committing those decodings and building every router)", format(pages), format(last))
}

// The re-list benchmark's RSS of the process holding the state, after a
// collection, and the highest RSS during the timed re-lists alone.
const (
	// heapUnusedUnit is the heap's room inside partly used spans at rest.
	heapUnusedUnit = "heap-unused-B/target"
	restRSSUnit    = "rest-rss-MiB"
	relistPeakRSS  = "relist-peak-rss-MiB"
	peakOverRest   = 1.5
)

func memoryGoal(rs runSet) verdict {
	v := verdict{what: "memory per published target, 100,000 circuits (200,000 targets)",
		baseline: "RSS of the same process before the circuits; for the peak, its RSS at rest holding them",
		goal:     fmt.Sprintf("≤ 2 KiB per target, and a re-list's peak RSS ≤ %s× the RSS at rest", format(peakOverRest))}
	per, ok := rs.one(relistGroup, "", "rss-bytes/target")
	if !ok {
		return notMeasured(v, relistGroup+" rss-bytes/target")
	}
	v.measured = fmt.Sprintf("%s KiB per target", format(per/1024))
	heap, heapOK := rs.one(relistGroup, "", "heap-B/target")
	unused, unusedOK := rs.one(relistGroup, "", heapUnusedUnit)
	switch {
	case heapOK && unusedOK:
		v.measured += fmt.Sprintf(" (live heap %s KiB, and %s KiB of room inside the heap's partly used spans)", format(heap/1024), format(unused/1024))
	case heapOK:
		v.measured += fmt.Sprintf(" (live heap %s KiB)", format(heap/1024))
	}
	// The plain body is held only up to --server.keepBodyUpTo; past it the
	// memory is saved by rendering it for each fetch, whose cost belongs
	// beside the figure.
	body, bodyOK := rs.one(relistGroup, "", "body-B/target")
	kept, keptOK := rs.one(relistGroup, "", "kept-body-B/target")
	fetch, fetchOK := rs.one(relistGroup, "", "plain-fetch-s")
	notKept := bodyOK && keptOK && fetchOK && kept == 0
	if notKept {
		v.measured += fmt.Sprintf(", the plain body (%s B per target) not held: each fetch renders it in %s s", format(body), format(fetch))
	}
	perMet := per <= 2048
	rest, ok1 := rs.one(relistGroup, "", restRSSUnit)
	peak, ok2 := rs.one(relistGroup, "", relistPeakRSS)
	peakKnown := ok1 && ok2 && rest > 0
	peakMet := false
	if peakKnown {
		peakMet = peak <= peakOverRest*rest
		v.measured += fmt.Sprintf("; re-list peak %s MiB, %s× the %s MiB at rest", format(peak), ratioText(peak/rest), format(rest))
	} else {
		// peak-rss-MiB is the process's high-water mark since it started,
		// setup included, so it is not the re-list's peak.
		v.measured += fmt.Sprintf("; re-list peak against rest: no %s and %s in this run", restRSSUnit, relistPeakRSS)
	}
	v.measured += coldPeaks(rs)
	switch {
	case !perMet || (peakKnown && !peakMet):
		v.met = "missed"
	case !peakKnown:
		v.met = "not measured"
	default:
		v.met = "met"
	}
	var why []string
	if !perMet {
		var parts []string
		for i, h := range heldBy(rs) {
			if i == 3 {
				break
			}
			parts = append(parts, fmt.Sprintf("%s %s B", h.name, format(h.bytes)))
		}
		why = append(why, fmt.Sprintf("The largest holders per target are %s (table below). The raw mirror of etcd's keys is "+
			"what lets one changed key re-decode one object, and the per-router targets are what make a change "+
			"cost one router instead of a rebuild; halving again means giving up one of the two.",
			strings.Join(parts, ", ")))
		if heapOK && unusedOK && heap > 0 {
			why = append(why, fmt.Sprintf("Beside the live heap, %s B per target (%s%% of it) is room inside partly used spans: "+
				"objects kept for the set were allocated among the listing's short-lived ones, which the collector freed around them, "+
				"and a span goes back to the system only when all of it is free.", format(unused), format(100*unused/heap)))
		}
		if gz, ok := rs.one(relistGroup, "", "gzip-B/target"); ok && bodyOK {
			if notKept {
				why = append(why, fmt.Sprintf("None of it is the plain body Prometheus fetches (its HTTP SD asks for no gzip): at %s B per target it is larger than --server.keepBodyUpTo keeps, and is rendered as it is sent; a client that asks for gzip has the sidecar hold %s B per target.", format(body), format(gz)))
			} else {
				why = append(why, fmt.Sprintf("Of that, the plain body Prometheus fetches (its HTTP SD asks for no gzip) is %s B per target; a client that asks for gzip has the sidecar hold %s B instead.", format(body), format(gz)))
			}
		}
	}
	if peakKnown && !peakMet {
		why = append(why, fmt.Sprintf("A re-list rose %s MiB above the %s MiB held at rest, where the goal allows %s MiB.", format(peak-rest), format(rest), format((peakOverRest-1)*rest)))
	}
	v.why = strings.Join(why, " ")
	return v
}

// The cold start's peaks: under Go's default collector, and under
// GOMEMLIMIT at 90% of a limit of twice the RSS at rest, with that
// cold start's time.
const (
	coldPeakRSS        = "cold-peak-rss-MiB"
	coldLimitMiB       = "cold-limit-MiB"
	coldLimitedPeakRSS = "cold-limited-peak-rss-MiB"
	coldLimitedS       = "cold-limited-s"
)

// coldPeaks says what a restarted sidecar reaches before it holds the set
// at rest: with the heap let double between collections it can pass a
// limit sized for the re-list's peak, and GOMEMLIMIT is what keeps it
// under one.
func coldPeaks(rs runSet) string {
	rest, ok1 := rs.one(relistGroup, "", restRSSUnit)
	peak, ok2 := rs.one(relistGroup, "", coldPeakRSS)
	if !ok1 || !ok2 || rest <= 0 {
		return ""
	}
	text := fmt.Sprintf("; a cold start's peak %s MiB, %s× the rest, under Go's default collector", format(peak), ratioText(peak/rest))
	limit, ok3 := rs.one(relistGroup, "", coldLimitMiB)
	limited, ok4 := rs.one(relistGroup, "", coldLimitedPeakRSS)
	took, ok5 := rs.one(relistGroup, "", coldLimitedS)
	plain, ok6 := rs.one(relistGroup, "", "cold-list-s")
	if !ok3 || !ok4 || !ok5 || !ok6 {
		return text
	}
	fits := "within"
	if limited > limit {
		fits = "over"
	}
	return text + fmt.Sprintf(", %s MiB with GOMEMLIMIT at 90%% of a %s MiB limit (%s it; the cold start took %s s against %s s)",
		format(limited), format(limit), fits, format(took), format(plain))
}

type holder struct {
	name  string
	bytes float64
}

// heldBy lists the re-list benchmark's heap-B/target:<package> figures,
// largest first.
func heldBy(rs runSet) []holder {
	var out []holder
	for _, r := range rs.groups[relistGroup] {
		for unit, v := range r.metrics {
			if name, ok := strings.CutPrefix(unit, heapUnitPrefix); ok {
				out = append(out, holder{name, v})
			}
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].bytes != out[j].bytes {
			return out[i].bytes > out[j].bytes
		}
		return out[i].name < out[j].name
	})
	return out
}

func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}

func list(xs []float64) string {
	parts := make([]string, len(xs))
	for i, x := range xs {
		parts[i] = format(x)
	}
	return strings.Join(parts, ", ")
}

// writeGoals appends the verdict table, each missed or unsettled goal's explanation,
// and the capacity of one sidecar derived from the same figures.
func writeGoals(b *strings.Builder, rs runSet) {
	b.WriteString("## Goals, judged from the figures above\n\n")
	b.WriteString("Each verdict is computed by `e2e/cmd/benchreport` from this run's figures; none is typed by hand. " +
		"A goal on a ratio of two variants measured in alternating rounds is judged on the 95% interval of the rounds' " +
		"paired ratios (Student's t on their logarithms): met when the whole interval is on the goal's side, missed " +
		"when it is wholly on the other, unsettled when it holds the goal.\n\n")
	b.WriteString("| what | baseline in the same run | goal | measured | verdict |\n|---|---|---|---|---|\n")
	var whys []verdict
	for _, g := range goals {
		v := g(rs)
		cell := v.met
		if v.settle != "" {
			cell += ": " + v.settle
		}
		fmt.Fprintf(b, "| %s | %s | %s | %s | %s |\n", v.what, v.baseline, v.goal, v.measured, cell)
		if v.why != "" {
			whys = append(whys, v)
		}
	}
	b.WriteString("\n")
	for _, v := range whys {
		fmt.Fprintf(b, "**%s: %s.** %s\n\n", strings.ToUpper(v.met[:1])+v.met[1:], v.what, v.why)
	}
	if hs := heldBy(rs); len(hs) > 0 {
		b.WriteString("### Where the bytes go (live heap per target at 100,000 circuits, by package)\n\n")
		b.WriteString("Charged to the first frame outside the standard library (`internal/heapuse`, from the runtime's sampled heap profile).\n\n")
		b.WriteString("| package | bytes per target |\n|---|---:|\n")
		for _, h := range hs {
			fmt.Fprintf(b, "| %s | %s |\n", h.name, format(h.bytes))
		}
		b.WriteString("\n")
	}
	writeCapacity(b, rs)
}

// writeCapacity states what one sidecar holds and what a fleet costs etcd,
// from the re-list and change-latency figures of this run.
func writeCapacity(b *strings.Builder, rs runSet) {
	circuits, ok1 := rs.one(relistGroup, "", "circuits")
	targets, ok2 := rs.one(relistGroup, "", "targets")
	per, ok3 := rs.one(relistGroup, "", "rss-bytes/target")
	// The re-list's own peak when the run has it; otherwise the process's
	// high-water mark, which can only be higher.
	peak, ok4 := rs.one(relistGroup, "", relistPeakRSS)
	peakIs := "A re-list's peak"
	if !ok4 {
		peak, ok4 = rs.one(relistGroup, "", "peak-rss-MiB")
		peakIs = "The benchmark process's highest RSS (its setup and first listing included)"
	}
	// A restart's peak under GOMEMLIMIT, as the README has pods run, when
	// it is the larger: a limit sized for a re-list alone would not hold it.
	if cold, ok := rs.one(relistGroup, "", coldLimitedPeakRSS); ok && ok4 && cold > peak {
		peak, peakIs = cold, "A cold start's peak (with GOMEMLIMIT at 90% of the limit)"
	}
	keys, ok5 := rs.one(relistGroup, "", "keys")
	floor, _ := rs.one(relistGroup, "", "etcd-read-floor-s")
	ns, _ := rs.one(relistGroup, "", "ns/op")
	if !(ok1 && ok2 && ok3 && ok4 && ok5) || circuits == 0 {
		return
	}
	b.WriteString("### Scaling out: one AppProxy worker, one sidecar\n\n")
	b.WriteString("Derived here from the figures above (the re-list benchmark's circuits have two routes each, as Backend.AI's inference circuits with two replicas):\n\n")
	perCircuit := per * targets / circuits
	fmt.Fprintf(b, "- **Memory.** Held: %s KiB per circuit, so %s circuits in 1 GiB at rest. %s was %s MiB at %s circuits, so **%s circuits** fit a 1 GiB limit with that peak included.\n",
		format(perCircuit/1024), format(math.Floor((1<<30)/perCircuit)), peakIs, format(peak), format(circuits), format(math.Floor(circuits*1024/peak)))
	p50 := rs.runs(changeGroup, "circuits=100000", "p50-ms")
	p50small := rs.runs(changeGroup, "circuits=10000", "p50-ms")
	if len(p50) > 0 && len(p50small) > 0 {
		fmt.Fprintf(b, "- **CPU.** From etcd's write to the new body, a change takes %s ms (median) at 10,000 circuits and %s ms at 100,000: the cost grows with the set (the sidecar runs as its own process; the stand-in Traefik, etcd and the benchmark share its two cores). The daemon applies changes on one loop, so at 100,000 circuits it keeps up with about %s changes per second taken one at a time (changes that arrive together are applied as one batch), leaving the other core to etcd, Traefik and the collector.\n",
			format(median(p50small)), format(median(p50)), format(math.Floor(1000/median(p50))))
	}
	wholeIn := ""
	if wholes := rs.rounds(relistGroup, "", "relist-whole-round", "-s"); len(wholes) > 0 {
		wholeIn = fmt.Sprintf(", and sends only what was written since unless a key was deleted meanwhile (%s s in all; a whole listing sends all %s keys, %s s)", format(ns/1e9), format(keys), format(median(wholes)))
	}
	fmt.Fprintf(b, "- **etcd, per worker.** One watch on the worker's own prefix (`traefik/worker_<authority>/`), no key written when the store is Redis, one lease when it is etcd. A re-list makes etcd read the worker's whole tree: %s keys for %s circuits (%s keys per circuit), %s s of etcd's time (the floor above)%s. A fleet of N workers costs etcd N watches and, only after a compaction outruns a watch, N such reads.\n",
		format(keys), format(circuits), format(keys/circuits), format(floor), wholeIn)
	b.WriteString("\n")
}
