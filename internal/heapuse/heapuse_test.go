package heapuse

import (
	"runtime"
	"testing"
)

var held [][]byte

func TestByPackageChargesTheHoldingPackage(t *testing.T) {
	old := runtime.MemProfileRate
	runtime.MemProfileRate = 4096
	defer func() { runtime.MemProfileRate = old }()
	const n, size = 2000, 8 << 10
	for i := 0; i < n; i++ {
		held = append(held, make([]byte, size))
	}
	defer func() { held = nil }()
	var mine int64
	for _, p := range ByPackage() {
		if p.Path == "github.com/traefik-sd/traefik-sd/internal/heapuse" {
			mine = p.Bytes
		}
	}
	// Sampling makes it approximate; 16 MB held must read as 16 MB give or take a tenth.
	if want := int64(n * size); mine < want*9/10 || mine > want*11/10 {
		t.Fatalf("charged %d bytes to this package, want about %d", mine, want)
	}
}

func TestPackageOf(t *testing.T) {
	for fn, want := range map[string]string{
		"github.com/a/b.(*T).M":       "github.com/a/b",
		"github.com/a/b.F.func1":      "github.com/a/b",
		"runtime.mallocgc":            "runtime",
		"go.etcd.io/etcd/client/v3.F": "go.etcd.io/etcd/client/v3",
		"main.main":                   "main",
	} {
		if got := packageOf(fn); got != want {
			t.Errorf("packageOf(%q) = %q, want %q", fn, got, want)
		}
	}
}
