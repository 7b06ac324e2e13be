package shrink

import (
	"runtime"
	"testing"
)

// A map that held 100,000 entries and now holds ten is copied, with its
// entries, and the room of the peak is given back; one that stays near its
// peak is kept as it is.
func TestAMapBelowAQuarterOfItsPeakIsCopied(t *testing.T) {
	peak := 0
	m := map[int]string{}
	for i := 0; i < 100000; i++ {
		m[i] = "x"
	}
	if got := Map(m, &peak); peak != 100000 || len(got) != 100000 {
		t.Fatalf("at its peak: peak %d, %d entries", peak, len(got))
	}
	for i := 10; i < 100000; i++ {
		delete(m, i)
	}
	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	m = Map(m, &peak)
	runtime.GC()
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	if len(m) != 10 || m[9] != "x" || peak != 10 {
		t.Fatalf("after shrinking: %d entries, peak %d", len(m), peak)
	}
	if freed := int64(before.HeapAlloc) - int64(after.HeapAlloc); freed < 1<<20 {
		t.Fatalf("shrinking gave back %d bytes of a 100,000-entry map", freed)
	}
	// Near its peak, the same map is kept.
	for i := 10; i < 30; i++ {
		m[i] = "y"
	}
	m2 := Map(m, &peak)
	m2[1] = "same map"
	if peak != 30 || m[1] != "same map" {
		t.Fatalf("a map at its peak was copied (peak %d)", peak)
	}
}
