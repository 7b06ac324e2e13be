package main

import (
	"errors"
	"fmt"
	"math"
	"sort"
)

// comparison is two variants measured in alternating rounds, round i of a
// paired with round i of b: whatever drifts during a run (a neighbour on the
// machine, a warming cache) weighs on both halves of a pair alike, so the
// pairs' ratios vary less than either variant does.
type comparison struct {
	a, b []float64 // the paired rounds, a[i] with b[i]
	// logs are ln(a[i]/b[i]): a ratio's logarithm is symmetric about 1,
	// so its mean and interval exponentiate back into a ratio interval.
	logs     []float64
	mean, sd float64
}

// compare pairs the rounds in order; rounds beyond the shorter side have no
// partner and are left out.
func compare(a, b []float64) (comparison, error) {
	n := min(len(a), len(b))
	c := comparison{a: a[:n], b: b[:n]}
	for i := 0; i < n; i++ {
		if a[i] <= 0 || b[i] <= 0 {
			return c, fmt.Errorf("round %d measured %s against %s, and a ratio needs both above zero", i+1, format(a[i]), format(b[i]))
		}
		c.logs = append(c.logs, math.Log(a[i]/b[i]))
	}
	c.mean, c.sd = meanSD(c.logs)
	return c, nil
}

func (c comparison) n() int { return len(c.logs) }

// meanSD is the mean and the sample standard deviation (n-1), which an
// interval from n draws needs; with one value the deviation is unknown (NaN).
func meanSD(xs []float64) (mean, sd float64) {
	if len(xs) == 0 {
		return math.NaN(), math.NaN()
	}
	for _, x := range xs {
		mean += x
	}
	mean /= float64(len(xs))
	if len(xs) < 2 {
		return mean, math.NaN()
	}
	var ss float64
	for _, x := range xs {
		ss += (x - mean) * (x - mean)
	}
	return mean, math.Sqrt(ss / float64(len(xs)-1))
}

// halfWidth is the 95% interval's half-width, in logs, from n pairs.
func halfWidth(sd float64, n int) float64 {
	return tQuantile(0.975, n-1) * sd / math.Sqrt(float64(n))
}

// logInterval is the 95% interval of the mean log ratio; ok is false below
// two pairs, where no spread can be estimated.
func (c comparison) logInterval() (lo, hi float64, ok bool) {
	if c.n() < 2 {
		return 0, 0, false
	}
	h := halfWidth(c.sd, c.n())
	return c.mean - h, c.mean + h, true
}

// interval is the 95% interval of the ratio a/b.
func (c comparison) interval() (lo, hi float64, ok bool) {
	l, h, ok := c.logInterval()
	return math.Exp(l), math.Exp(h), ok
}

// medianRatio is the median of the rounds' own ratios.
func (c comparison) medianRatio() float64 {
	r := make([]float64, len(c.logs))
	for i, l := range c.logs {
		r[i] = math.Exp(l)
	}
	return median(r)
}

// direction says which side of the goal is good.
type direction int

const (
	atMost  direction = iota // ratio ≤ goal
	atLeast                  // ratio ≥ goal
)

func (d direction) String() string {
	if d == atMost {
		return "≤"
	}
	return "≥"
}

// judgement is a goal judged from a comparison's interval.
type judgement struct {
	met    string // met, missed or unsettled
	settle string // for unsettled: what would settle it
}

// minPairs is the fewest pairs that give an interval.
const minPairs = 2

// judge: met when the whole 95% interval lies on the goal's side, missed when
// it lies wholly on the other, unsettled when it holds the goal.
func (c comparison) judge(goal float64, d direction) judgement {
	if c.n() < minPairs {
		return judgement{met: "unsettled", settle: fmt.Sprintf(
			"an interval needs at least %d rounds of each variant; this run has %d", minPairs, c.n())}
	}
	lo, hi, _ := c.logInterval()
	g := math.Log(goal)
	good, bad := hi <= g, lo > g
	if d == atLeast {
		good, bad = lo >= g, hi < g
	}
	switch {
	case good:
		return judgement{met: "met"}
	case bad:
		return judgement{met: "missed"}
	}
	more, err := roundsToSettle(c.sd, math.Abs(c.mean-g), c.n())
	if err != nil {
		return judgement{met: "unsettled", settle: err.Error()}
	}
	return judgement{met: "unsettled", settle: "about " + plural(more, "more round") + " each would settle it at this spread"}
}

// maxRounds bounds the search: a goal that needs more is, in practice, a tie.
const maxRounds = 100000

var errOnTheGoal = errors.New("the rounds' mean ratio is the goal itself; no number of rounds settles it")

// roundsToSettle is how many rounds beyond n, at the same spread and mean,
// shrink the interval's half-width below dist (the mean log ratio's distance
// to the goal's), the t quantile taken at that many rounds.
func roundsToSettle(sd, dist float64, n int) (int, error) {
	if dist == 0 || math.IsNaN(dist) {
		return 0, errOnTheGoal
	}
	settles := func(m int) bool { return halfWidth(sd, m) < dist }
	if n >= maxRounds || !settles(maxRounds) {
		return 0, fmt.Errorf("more than %d rounds of each would be needed: the ratio is as good as on the goal", maxRounds)
	}
	// The half-width falls as rounds are added (t and 1/√m both shrink), so
	// the first m that settles is found by bisection.
	lo, hi := n, maxRounds // settles(lo) is false, settles(hi) true
	for hi-lo > 1 {
		mid := (lo + hi) / 2
		if settles(mid) {
			hi = mid
		} else {
			lo = mid
		}
	}
	return hi - n, nil
}

// tQuantile is Student's t distribution's p-quantile (p > 0.5) with df
// degrees of freedom, by bisection on its exact distribution function.
func tQuantile(p float64, df int) float64 {
	lo, hi := 0.0, 1.0
	for studentCDF(hi, df) < p {
		lo, hi = hi, hi*2
	}
	for i := 0; i < 100 && hi-lo > 1e-12*hi; i++ {
		mid := (lo + hi) / 2
		if studentCDF(mid, df) < p {
			lo = mid
		} else {
			hi = mid
		}
	}
	return (lo + hi) / 2
}

// studentCDF is P(T ≤ t) for t ≥ 0.
func studentCDF(t float64, df int) float64 {
	v := float64(df)
	return 1 - 0.5*regIncBeta(v/(v+t*t), v/2, 0.5)
}

// regIncBeta is the regularized incomplete beta function I_x(a, b), by its
// continued fraction (Numerical Recipes, 6.4), which converges fast on the
// side of x < (a+1)/(a+b+2); the other side uses I_x(a,b) = 1 - I_{1-x}(b,a).
func regIncBeta(x, a, b float64) float64 {
	switch {
	case x <= 0:
		return 0
	case x >= 1:
		return 1
	}
	la, _ := math.Lgamma(a)
	lb, _ := math.Lgamma(b)
	lab, _ := math.Lgamma(a + b)
	front := math.Exp(lab - la - lb + a*math.Log(x) + b*math.Log1p(-x))
	if x < (a+1)/(a+b+2) {
		return front * betaCF(x, a, b) / a
	}
	return 1 - front*betaCF(1-x, b, a)/b
}

// betaCF evaluates the incomplete beta's continued fraction by Lentz's method.
func betaCF(x, a, b float64) float64 {
	const tiny, eps = 1e-300, 1e-15
	qab, qap, qam := a+b, a+1, a-1
	c, d := 1.0, 1-qab*x/qap
	if math.Abs(d) < tiny {
		d = tiny
	}
	d = 1 / d
	h := d
	for m := 1; m <= 300; m++ {
		fm := float64(m)
		m2 := 2 * fm
		aa := fm * (b - fm) * x / ((qam + m2) * (a + m2))
		d = 1 + aa*d
		if math.Abs(d) < tiny {
			d = tiny
		}
		c = 1 + aa/c
		if math.Abs(c) < tiny {
			c = tiny
		}
		d = 1 / d
		h *= d * c
		aa = -(a + fm) * (qab + fm) * x / ((a + m2) * (qap + m2))
		d = 1 + aa*d
		if math.Abs(d) < tiny {
			d = tiny
		}
		c = 1 + aa/c
		if math.Abs(c) < tiny {
			c = tiny
		}
		d = 1 / d
		del := d * c
		h *= del
		if math.Abs(del-1) < eps {
			break
		}
	}
	return h
}

func median(xs []float64) float64 {
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	switch n := len(s); {
	case n == 0:
		return math.NaN()
	case n%2 == 1:
		return s[n/2]
	default:
		return (s[n/2-1] + s[n/2]) / 2
	}
}

func spread(xs []float64) (lo, hi float64) {
	lo, hi = math.Inf(1), math.Inf(-1)
	for _, x := range xs {
		lo, hi = math.Min(lo, x), math.Max(hi, x)
	}
	return lo, hi
}
