// Command benchreport turns Go benchmark output (stdin) into BENCHMARKS.md:
// every figure beside the baseline measured in the same run and their ratio.
// A sub-benchmark named baseline=… is the baseline of its siblings.
package main

import (
	"bufio"
	"bytes"
	"flag"
	"fmt"
	"io"
	"os"
	"regexp"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"time"
)

type result struct {
	group, name string
	iters       int // the count after the name: iterations, or rounds where a line says so
	metrics     map[string]float64
	order       []string
}

var line = regexp.MustCompile(`^(Benchmark\S+?)(?:-\d+)?\s+(\d+)\s+(.*)$`)

// A benchmark's name and its figures can be split by a log line of the
// code under test: go test prints the name, the code logs to stderr, which
// go test interleaves, then the figures follow on a line of their own.
var (
	nameCut    = regexp.MustCompile(`^(Benchmark\S+?)(?:-\d+)?\s+\D`)
	figuresCut = regexp.MustCompile(`^\s+\d+\s+\S+ \S+`)
)

// higherIsBetter says which way a unit points.
func higherIsBetter(unit string) bool {
	return strings.HasSuffix(unit, "/s") || unit == "MB/s"
}

func main() {
	out := flag.String("o", "BENCHMARKS.md", "report file")
	command := flag.String("command", "make bench", "the command that reproduces the figures")
	goVersion := flag.String("go", runtime.Version(), "Go version")
	etcdVersion := flag.String("etcd", "", "etcd's version, as the first line of `etcd --version` prints it")
	traefikVersion := flag.String("traefik", "", "Traefik's version, as the Version line of `traefik version` gives it")
	flag.Parse()

	in, err := io.ReadAll(os.Stdin)
	if err != nil {
		fmt.Fprintln(os.Stderr, "benchreport:", err)
		os.Exit(1)
	}
	groups, groupOrder, cpu := parse(bytes.NewReader(in))
	// make bench records the versions in bench.out, so that make
	// bench-report names them too.
	if *etcdVersion == "" {
		*etcdVersion = recorded(in, "etcd-version: ")
	}
	if *traefikVersion == "" {
		*traefikVersion = recorded(in, "traefik-version: ")
	}
	if len(groupOrder) == 0 {
		fmt.Fprintln(os.Stderr, "benchreport: no benchmark lines on stdin")
		os.Exit(1)
	}

	var b strings.Builder
	fmt.Fprintf(&b, "# Benchmarks\n\nWritten by `%s` on %s. Machine: %s, %d cores; %s. Each figure stands beside the\n",
		*command, time.Now().UTC().Format("2006-01-02"), orUnknown(cpu), runtime.NumCPU(), versions(*goVersion, *etcdVersion, *traefikVersion))
	b.WriteString("baseline measured in the same run (`baseline=…`); the ratio is the figure over the baseline, oriented so that\n")
	b.WriteString("above 1 means traefik-sd is better (faster, more requests, fewer bytes or allocations). Absolute numbers are\nthis machine's, on a quiet moment or not; the ratios are what to compare between runs.\n")
	b.WriteString("Where the variants ran in several alternating rounds, a table gives each variant's median, its range (min–max)\nand the number of rounds.\n\n")
	// A run put together from more than one (a part run again) says so in
	// bench.out, and here.
	for _, n := range notes(in) {
		fmt.Fprintf(&b, "**Note.** %s\n\n", n)
	}
	writeTables(&b, groups, groupOrder)
	writeGoals(&b, runSet{groups: groups})
	if err := os.WriteFile(*out, []byte(b.String()), 0o644); err != nil {
		fmt.Fprintln(os.Stderr, "benchreport:", err)
		os.Exit(1)
	}
}

// writeTables writes one table per group: each variant's figures and, when
// the group has a baseline, their ratio to it. A few groups have tables of
// their own.
func writeTables(b *strings.Builder, groups map[string][]*result, groupOrder []string) {
	for _, g := range groupOrder {
		rs := groups[g]
		switch {
		case g == profileGroup:
			writeProfile(b, rs)
			continue
		case g == ceilingGroup:
			writeCeiling(b, rs)
			continue
		case g == noEtcdGroup:
			writeNoEtcd(b, rs)
			continue
		}
		fmt.Fprintf(b, "## %s\n\n", strings.TrimPrefix(g, "Benchmark"))
		if multiRound(rs) {
			writeRounds(b, rs)
			continue
		}
		var base *result
		for _, r := range rs {
			if strings.HasPrefix(r.name, "baseline=") {
				base = r
			}
		}
		units := unitsOf(rs)
		header(b, "variant", units, base != nil, "ratio to baseline")
		for _, r := range rs {
			fmt.Fprintf(b, "| %s |", variantName(r.name))
			for _, u := range units {
				fmt.Fprintf(b, " %s |", cell(r.metrics, u))
			}
			if base != nil {
				if r == base {
					b.WriteString(" 1 |")
				} else {
					fmt.Fprintf(b, " %s |", ratios(r.metrics, base.metrics, units))
				}
			}
			b.WriteString("\n")
		}
		b.WriteString("\n")
	}
}

// writeRounds is a group measured in several rounds: a row per variant with
// each unit's median and range, rather than a row per round.
func writeRounds(b *strings.Builder, rs []*result) {
	var names []string
	byName := map[string][]*result{}
	for _, r := range rs {
		if _, ok := byName[r.name]; !ok {
			names = append(names, r.name)
		}
		byName[r.name] = append(byName[r.name], r)
	}
	medians := func(runs []*result, units []string) map[string]float64 {
		m := map[string]float64{}
		for _, u := range units {
			var xs []float64
			for _, r := range runs {
				if v, ok := r.metrics[u]; ok {
					xs = append(xs, v)
				}
			}
			if len(xs) > 0 {
				m[u] = median(xs)
			}
		}
		return m
	}
	units := unitsOf(rs)
	var base map[string]float64
	for _, n := range names {
		if strings.HasPrefix(n, "baseline=") {
			base = medians(byName[n], units)
		}
	}
	header(b, "variant | rounds", units, base != nil, "ratio of medians to baseline")
	for _, n := range names {
		runs := byName[n]
		fmt.Fprintf(b, "| %s | %d |", variantName(n), len(runs))
		for _, u := range units {
			var xs []float64
			for _, r := range runs {
				if v, ok := r.metrics[u]; ok {
					xs = append(xs, v)
				}
			}
			switch {
			case len(xs) == 0:
				b.WriteString(" |")
			default:
				fmt.Fprintf(b, " %s |", medianSpread(xs, format))
			}
		}
		if base != nil {
			if strings.HasPrefix(n, "baseline=") {
				b.WriteString(" 1 |")
			} else {
				fmt.Fprintf(b, " %s |", ratios(medians(runs, units), base, units))
			}
		}
		b.WriteString("\n")
	}
	b.WriteString("\n")
}

// medianSpread is the median of xs and, when they differ, their range.
func medianSpread(xs []float64, show func(float64) string) string {
	lo, hi := spread(xs)
	if lo == hi {
		return show(lo)
	}
	return fmt.Sprintf("%s (%s–%s)", show(median(xs)), show(lo), show(hi))
}

// header writes a table's first two lines; first may hold more than one
// left-aligned column.
func header(b *strings.Builder, first string, units []string, ratio bool, ratioName string) {
	fmt.Fprintf(b, "| %s |", first)
	for _, u := range units {
		fmt.Fprintf(b, " %s |", u)
	}
	if ratio {
		fmt.Fprintf(b, " %s |", ratioName)
	}
	b.WriteString("\n|")
	for i := 0; i <= strings.Count(first, "|"); i++ {
		if i == 0 {
			b.WriteString("---|")
		} else {
			b.WriteString("---:|")
		}
	}
	b.WriteString(strings.Repeat("---:|", len(units)))
	if ratio {
		b.WriteString("---|")
	}
	b.WriteString("\n")
}

func variantName(name string) string {
	if name == "" {
		return "(whole)"
	}
	return name
}

// multiRound is whether some variant of the group has more than one line.
func multiRound(rs []*result) bool {
	seen := map[string]bool{}
	for _, r := range rs {
		if seen[r.name] {
			return true
		}
		seen[r.name] = true
	}
	return false
}

// versions names the Go, etcd and Traefik the figures were measured with.
func versions(goVersion, etcd, traefik string) string {
	etcd = strings.TrimSpace(etcd)
	// etcd --version's first line is "etcd Version: 3.6.16".
	if v, ok := strings.CutPrefix(etcd, "etcd Version:"); ok {
		etcd = strings.TrimSpace(v)
	}
	if etcd == "" {
		etcd = "version not given"
	}
	traefik = strings.TrimSpace(traefik)
	if traefik == "" {
		traefik = "version not given"
	}
	return fmt.Sprintf("%s, etcd %s, Traefik %s", goVersion, etcd, traefik)
}

// notes are bench.out's lines that start with "note: ", in order.
func notes(out []byte) []string {
	var ns []string
	for _, l := range strings.Split(string(out), "\n") {
		if n, ok := strings.CutPrefix(l, "note: "); ok && strings.TrimSpace(n) != "" {
			ns = append(ns, strings.TrimSpace(n))
		}
	}
	return ns
}

// recorded is the rest of the last line of out that starts with prefix.
func recorded(out []byte, prefix string) string {
	v := ""
	for _, l := range strings.Split(string(out), "\n") {
		if rest, ok := strings.CutPrefix(l, prefix); ok {
			v = strings.TrimSpace(rest)
		}
	}
	return v
}

// parse reads Go benchmark output: results by group (a benchmark's name up
// to its last '/'), the groups in order of appearance, and the CPU line.
func parse(in io.Reader) (groups map[string][]*result, groupOrder []string, cpu string) {
	groups = map[string][]*result{}
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	cut := ""
	for sc.Scan() {
		text := sc.Text()
		if strings.HasPrefix(text, "cpu: ") {
			cpu = strings.TrimSpace(strings.TrimPrefix(text, "cpu: "))
		}
		if c := nameCut.FindStringSubmatch(text); c != nil && !line.MatchString(text) {
			cut = c[1]
			continue
		}
		if cut != "" && figuresCut.MatchString(text) {
			text = cut + text
		}
		cut = ""
		m := line.FindStringSubmatch(text)
		if m == nil {
			continue
		}
		full := m[1]
		// Siblings share everything up to the last '/': a baseline is
		// compared only with the variants beside it.
		group, name := full, ""
		if i := strings.LastIndex(full, "/"); i >= 0 {
			group, name = full[:i], full[i+1:]
		}
		r := &result{group: group, name: name, metrics: map[string]float64{}}
		r.iters, _ = strconv.Atoi(m[2])
		f := strings.Fields(m[3])
		for i := 0; i+1 < len(f); i += 2 {
			v, err := strconv.ParseFloat(f[i], 64)
			if err != nil {
				continue
			}
			r.metrics[f[i+1]] = v
			r.order = append(r.order, f[i+1])
		}
		if _, ok := groups[group]; !ok {
			groupOrder = append(groupOrder, group)
		}
		groups[group] = append(groups[group], r)
	}
	return groups, groupOrder, cpu
}

func unitsOf(rs []*result) []string {
	seen := map[string]bool{}
	var units []string
	for _, r := range rs {
		for _, u := range r.order {
			if strings.HasPrefix(u, heapUnitPrefix) {
				continue // a table of its own, under the goals
			}
			if !seen[u] {
				seen[u] = true
				units = append(units, u)
			}
		}
	}
	return units
}

// ratios gives, for each unit both have, how many times better r is.
func ratios(r, base map[string]float64, units []string) string {
	var parts []string
	for _, u := range units {
		v, ok1 := r[u]
		w, ok2 := base[u]
		if !ok1 || !ok2 || v == 0 || w == 0 {
			continue
		}
		x := w / v
		if higherIsBetter(u) {
			x = v / w
		}
		parts = append(parts, fmt.Sprintf("%s ×%s", u, format(x)))
	}
	sort.Strings(parts)
	return strings.Join(parts, ", ")
}

func format(v float64) string {
	switch {
	case v >= 100:
		return strconv.FormatFloat(v, 'f', 0, 64)
	case v >= 10:
		return strings.TrimSuffix(strconv.FormatFloat(v, 'f', 1, 64), ".0")
	default:
		return strconv.FormatFloat(v, 'g', 3, 64)
	}
}

// heapUnitPrefix marks the re-list benchmark's live heap per target, by package.
const heapUnitPrefix = "heap-B/target:"

func orUnknown(s string) string {
	if s == "" {
		return "unknown CPU"
	}
	return s
}
