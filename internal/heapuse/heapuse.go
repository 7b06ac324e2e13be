// Package heapuse attributes the live heap to the Go packages that hold it,
// from the runtime's own sampled memory profile, so that a benchmark can say
// where its bytes go without an external profiler.
package heapuse

import (
	"math"
	"runtime"
	"sort"
	"strings"
)

// Package is the live heap attributed to one package.
type Package struct {
	Path  string
	Bytes int64
}

// ByPackage returns the live heap by package, largest first. An allocation
// is charged to the first frame of its stack outside the standard library,
// so a map grown by the dynamic package counts as the dynamic package's and
// not as runtime's. The runtime samples one allocation per MemProfileRate
// bytes; each sample is scaled up as pprof does. Set runtime.MemProfileRate
// before the allocations to be measured.
func ByPackage() []Package {
	// The profile is as of the last completed cycle, which may be two old.
	runtime.GC()
	runtime.GC()
	var records []runtime.MemProfileRecord
	n, _ := runtime.MemProfile(nil, false)
	for {
		records = make([]runtime.MemProfileRecord, n+50)
		var ok bool
		if n, ok = runtime.MemProfile(records, false); ok {
			records = records[:n]
			break
		}
	}
	rate := float64(runtime.MemProfileRate)
	byPath := map[string]float64{}
	for _, r := range records {
		objects := r.InUseObjects()
		if objects == 0 {
			continue
		}
		bytes := float64(r.InUseBytes())
		if rate > 1 {
			size := bytes / float64(objects)
			bytes /= 1 - math.Exp(-size/rate)
		}
		byPath[owner(r.Stack())] += bytes
	}
	out := make([]Package, 0, len(byPath))
	for p, b := range byPath {
		out = append(out, Package{Path: p, Bytes: int64(b)})
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Bytes != out[j].Bytes {
			return out[i].Bytes > out[j].Bytes
		}
		return out[i].Path < out[j].Path
	})
	return out
}

// owner is the package of the first frame outside the standard library.
func owner(stack []uintptr) string {
	frames := runtime.CallersFrames(stack)
	first := ""
	for {
		f, more := frames.Next()
		p := packageOf(f.Function)
		if first == "" {
			first = p
		}
		if p != "" && strings.Contains(strings.SplitN(p, "/", 2)[0], ".") {
			return p
		}
		if !more {
			break
		}
	}
	if first == "" {
		return "(unknown)"
	}
	return first
}

// packageOf cuts a function name such as
// github.com/a/b.(*T).M or github.com/a/b.F.func1 to github.com/a/b.
func packageOf(fn string) string {
	slash := strings.LastIndexByte(fn, '/')
	dot := strings.IndexByte(fn[slash+1:], '.')
	if dot < 0 {
		return fn
	}
	return fn[:slash+1+dot]
}
