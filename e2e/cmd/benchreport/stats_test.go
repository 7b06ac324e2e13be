package main

import (
	"math"
	"strconv"
	"strings"
	"testing"
)

func near(got, want, tol float64) bool { return math.Abs(got-want) <= tol }

func TestTQuantileMatchesPublishedTables(t *testing.T) {
	// Student's t, two-sided 95% (the 0.975 quantile), from the usual tables.
	for df, want := range map[int]float64{
		1: 12.7062047, 2: 4.30265273, 3: 3.18244631, 4: 2.77644511, 9: 2.26215716,
		10: 2.22813885, 30: 2.04227246, 1000: 1.96233908,
	} {
		if got := tQuantile(0.975, df); !near(got, want, 1e-6) {
			t.Errorf("t(0.975, %d) = %.8f, want %.8f", df, got, want)
		}
	}
}

// rounds builds two variants' rounds whose pairs have the given log ratios.
func rounds(logs ...float64) (a, b []float64) {
	for i, l := range logs {
		base := 100 + 10*float64(i) // the rounds drift; the ratios do not care
		a, b = append(a, base*math.Exp(l)), append(b, base)
	}
	return a, b
}

func TestIntervalByHand(t *testing.T) {
	// Logs 0.1, 0.2, 0.3: mean 0.2, sample sd 0.1, n 3, t(0.975, 2) 4.302653;
	// half-width 4.302653 × 0.1 / √3 = 0.248414, so exp(0.2 ∓ 0.248414).
	c, err := compare(rounds(0.1, 0.2, 0.3))
	if err != nil {
		t.Fatal(err)
	}
	if !near(c.mean, 0.2, 1e-12) || !near(c.sd, 0.1, 1e-12) {
		t.Errorf("mean %v, sd %v", c.mean, c.sd)
	}
	lo, hi, ok := c.interval()
	if !ok || !near(lo, 0.952739, 1e-6) || !near(hi, 1.565826, 1e-6) {
		t.Errorf("interval %v–%v (%v), want 0.952739–1.565826", lo, hi, ok)
	}
	if !near(c.medianRatio(), math.Exp(0.2), 1e-12) {
		t.Errorf("median ratio %v", c.medianRatio())
	}
}

func TestUnpairedRoundsAndZeroesAreNotCompared(t *testing.T) {
	c, err := compare([]float64{2, 4, 8}, []float64{1, 2})
	if err != nil || c.n() != 2 || len(c.a) != 2 || !near(c.mean, math.Log(2), 1e-12) {
		t.Errorf("%+v %v", c, err)
	}
	if _, err := compare([]float64{1, 0}, []float64{1, 1}); err == nil || !strings.Contains(err.Error(), "round 2") {
		t.Errorf("a zero round compared: %v", err)
	}
}

func TestJudgeOnTheWholeInterval(t *testing.T) {
	for _, tc := range []struct {
		name string
		logs []float64
		goal float64
		d    direction
		want string
	}{
		{"≤: interval wholly under", logRatios(1.10, 1.12, 1.09, 1.11, 1.10), 1.2, atMost, "met"},
		{"≤: interval wholly over", logRatios(1.30, 1.32, 1.29, 1.31, 1.30), 1.2, atMost, "missed"},
		{"≤: interval holds the goal", logRatios(1.10, 1.30, 1.15, 1.25, 1.20), 1.2, atMost, "unsettled"},
		// Mean 1.17, under the goal, but the interval (1.106–1.238) reaches over it.
		{"≤: mean under, interval over", logRatios(1.10, 1.24, 1.12, 1.22, 1.17), 1.2, atMost, "unsettled"},
		{"≥: interval wholly over", logRatios(0.99, 1.00, 0.98, 1.01, 0.99), 0.97, atLeast, "met"},
		{"≥: interval wholly under", logRatios(0.90, 0.91, 0.92, 0.90, 0.91), 0.97, atLeast, "missed"},
		{"≥: interval holds the goal", logRatios(0.93, 1.01, 0.96, 0.99, 0.97), 0.97, atLeast, "unsettled"},
		// Two rounds: t(0.975, 1) is 12.7, not z's 1.96; with z the interval,
		// 0.980–1.000, would meet 0.97.
		{"two rounds need t", logRatios(0.985, 0.995), 0.97, atLeast, "unsettled"},
	} {
		c, err := compare(rounds(tc.logs...))
		if err != nil {
			t.Fatal(err)
		}
		if j := c.judge(tc.goal, tc.d); j.met != tc.want {
			lo, hi, _ := c.interval()
			t.Errorf("%s: %s (interval %.4f–%.4f), want %s", tc.name, j.met, lo, hi, tc.want)
		} else if tc.want == "unsettled" && !strings.Contains(j.settle, " more round") {
			t.Errorf("%s: settle %q", tc.name, j.settle)
		}
	}
}

func logRatios(rs ...float64) []float64 {
	out := make([]float64, len(rs))
	for i, r := range rs {
		out[i] = math.Log(r)
	}
	return out
}

func TestFewerThanTwoRoundsAreUnsettled(t *testing.T) {
	// Far under the goal, but one round has no spread to judge it by.
	c, _ := compare(rounds(math.Log(0.5)))
	j := c.judge(1.2, atMost)
	if j.met != "unsettled" || !strings.Contains(j.settle, "at least 2 rounds") || !strings.Contains(j.settle, "has 1") {
		t.Errorf("%+v", j)
	}
}

// withMeanSD is n log ratios of exactly this mean and sample sd.
func withMeanSD(n int, mean, sd float64) []float64 {
	xs := make([]float64, n)
	for i := range xs {
		xs[i] = float64(i)
	}
	m, s := meanSD(xs)
	for i := range xs {
		xs[i] = mean + sd*(xs[i]-m)/s
	}
	return xs
}

func TestRoundsToSettleAreWhatSettlesIt(t *testing.T) {
	const goal, mean, sd, n = 1.2, 0.15, 0.08, 5 // exp(0.15) = 1.16, under the goal
	c, _ := compare(rounds(withMeanSD(n, mean, sd)...))
	j := c.judge(goal, atMost)
	if j.met != "unsettled" {
		t.Fatalf("%+v", j)
	}
	more, err := roundsToSettle(sd, math.Log(goal)-mean, n)
	if err != nil || more < 1 {
		t.Fatalf("%d %v", more, err)
	}
	if !strings.Contains(j.settle, "about "+itoa(more)+" more rounds each") {
		t.Errorf("settle %q, want %d more", j.settle, more)
	}
	// The same mean and spread over that many rounds settle it; one fewer does not.
	for _, tc := range []struct {
		n    int
		want string
	}{{n + more, "met"}, {n + more - 1, "unsettled"}} {
		c, _ := compare(rounds(withMeanSD(tc.n, mean, sd)...))
		if got := c.judge(goal, atMost).met; got != tc.want {
			t.Errorf("%d rounds: %s, want %s", tc.n, got, tc.want)
		}
	}
	// A t interval is wider than z's, so it needs at least z's count.
	z := math.Pow(1.959964*sd/(math.Log(goal)-mean), 2)
	if float64(n+more) < z {
		t.Errorf("%d rounds in all, fewer than the %.1f a normal interval needs", n+more, z)
	}
	wider, _ := roundsToSettle(2*sd, math.Log(goal)-mean, n)
	closer, _ := roundsToSettle(sd, (math.Log(goal)-mean)/2, n)
	if wider <= more || closer <= more {
		t.Errorf("twice the spread: %d more, half the distance: %d more, against %d", wider, closer, more)
	}
	if _, err := roundsToSettle(sd, 0, n); err == nil {
		t.Error("a mean on the goal settles")
	}
}

func itoa(n int) string { return strconv.Itoa(n) }

func TestMedianAndSpread(t *testing.T) {
	if m := median([]float64{4, 1, 3, 2}); m != 2.5 {
		t.Errorf("median of an even count: %v", m)
	}
	if m := median([]float64{5, 1, 3}); m != 3 {
		t.Errorf("median of an odd count: %v", m)
	}
	if lo, hi := spread([]float64{3, 1, 2}); lo != 1 || hi != 3 {
		t.Errorf("spread %v–%v", lo, hi)
	}
}
