// Command benchreport turns Go benchmark output (stdin) into BENCHMARKS.md:
// every figure beside the baseline measured in the same run and their ratio.
// A sub-benchmark named baseline=… is the baseline of its siblings.
package main

import (
	"bufio"
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
	run         int // 0 for the first run of this name, 1 for the second…
	metrics     map[string]float64
	order       []string
}

var line = regexp.MustCompile(`^(Benchmark\S+?)(?:-\d+)?\s+\d+\s+(.*)$`)

// higherIsBetter says which way a unit points.
func higherIsBetter(unit string) bool {
	return strings.HasSuffix(unit, "/s") || unit == "MB/s"
}

func main() {
	out := flag.String("o", "BENCHMARKS.md", "report file")
	command := flag.String("command", "make bench", "the command that reproduces the figures")
	goVersion := flag.String("go", runtime.Version(), "Go version")
	flag.Parse()

	groups, groupOrder, cpu := parse(os.Stdin)
	if len(groupOrder) == 0 {
		fmt.Fprintln(os.Stderr, "benchreport: no benchmark lines on stdin")
		os.Exit(1)
	}

	var b strings.Builder
	fmt.Fprintf(&b, "# Benchmarks\n\nWritten by `%s` on %s. Machine: %s, %d cores; %s. Each figure stands beside the\n",
		*command, time.Now().UTC().Format("2006-01-02"), orUnknown(cpu), runtime.NumCPU(), *goVersion)
	b.WriteString("baseline measured in the same run (`baseline=…`); the ratio is the figure over the baseline, oriented so that\n")
	b.WriteString("above 1 means traefik-sd is better (faster, more requests, fewer bytes or allocations). Absolute numbers are\nthis machine's, on a quiet moment or not; the ratios are what to compare between runs.\n\n")
	writeTables(&b, groups, groupOrder)
	writeGoals(&b, runSet{groups: groups})
	if err := os.WriteFile(*out, []byte(b.String()), 0o644); err != nil {
		fmt.Fprintln(os.Stderr, "benchreport:", err)
		os.Exit(1)
	}
}

// writeTables writes one table per group: each variant's figures and, when
// the group has a baseline, their ratio to it.
func writeTables(b *strings.Builder, groups map[string][]*result, groupOrder []string) {
	for _, g := range groupOrder {
		rs := groups[g]
		fmt.Fprintf(b, "## %s\n\n", strings.TrimPrefix(g, "Benchmark"))
		var base *result
		for _, r := range rs {
			if strings.HasPrefix(r.name, "baseline=") {
				base = r
			}
		}
		units := unitsOf(rs)
		b.WriteString("| variant |")
		for _, u := range units {
			fmt.Fprintf(b, " %s |", u)
		}
		if base != nil {
			b.WriteString(" ratio to baseline |")
		}
		b.WriteString("\n|---|")
		for range units {
			b.WriteString("---:|")
		}
		if base != nil {
			b.WriteString("---|")
		}
		b.WriteString("\n")
		for _, r := range rs {
			name := r.name
			if name == "" {
				name = "(whole)"
			}
			if r.run > 0 || repeated(rs, r.name) {
				name += fmt.Sprintf(" (run %d)", r.run+1)
			}
			fmt.Fprintf(b, "| %s |", name)
			for _, u := range units {
				if v, ok := r.metrics[u]; ok {
					fmt.Fprintf(b, " %s |", format(v))
				} else {
					b.WriteString(" |")
				}
			}
			if base != nil {
				if r == base {
					b.WriteString(" 1 |")
				} else {
					fmt.Fprintf(b, " %s |", ratios(r, base, units))
				}
			}
			b.WriteString("\n")
		}
		b.WriteString("\n")
	}
}

// parse reads Go benchmark output: results by group (a benchmark's name up
// to its last '/'), the groups in order of appearance, and the CPU line.
func parse(in io.Reader) (groups map[string][]*result, groupOrder []string, cpu string) {
	groups = map[string][]*result{}
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		text := sc.Text()
		if strings.HasPrefix(text, "cpu: ") {
			cpu = strings.TrimSpace(strings.TrimPrefix(text, "cpu: "))
		}
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
		for _, earlier := range groups[group] {
			if earlier.name == name {
				r.run++
			}
		}
		f := strings.Fields(m[2])
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
func ratios(r, base *result, units []string) string {
	var parts []string
	for _, u := range units {
		v, ok1 := r.metrics[u]
		w, ok2 := base.metrics[u]
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

func repeated(rs []*result, name string) bool {
	n := 0
	for _, r := range rs {
		if r.name == name {
			n++
		}
	}
	return n > 1
}

func orUnknown(s string) string {
	if s == "" {
		return "unknown CPU"
	}
	return s
}
