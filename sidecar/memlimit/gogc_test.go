package memlimit_test

import (
	"runtime/debug"
	"testing"

	"github.com/traefik-sd/traefik-sd/sidecar/memlimit"
)

func gcPercent() int {
	p := debug.SetGCPercent(-1)
	debug.SetGCPercent(p)
	return p
}

// TestDenseStartCollectsOftenUntilDone: GOGC is StartGCPercent until done,
// then what it was; done twice restores once; an operator's GOGC is left.
func TestDenseStartCollectsOftenUntilDone(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(150))
	done := memlimit.DenseStart(func(string) string { return "" })
	if got := gcPercent(); got != memlimit.StartGCPercent {
		t.Fatalf("during the start GOGC is %d, want %d", got, memlimit.StartGCPercent)
	}
	done()
	if got := gcPercent(); got != 150 {
		t.Fatalf("after the start GOGC is %d, want 150 as before", got)
	}
	debug.SetGCPercent(120)
	done()
	if got := gcPercent(); got != 120 {
		t.Fatalf("a second done set GOGC to %d", got)
	}
	memlimit.DenseStart(func(k string) string {
		if k == "GOGC" {
			return "120"
		}
		return ""
	})
	if got := gcPercent(); got != 120 {
		t.Fatalf("with GOGC=120 set by the operator, GOGC is %d", got)
	}
}
