package dynamic

import (
	"fmt"
	"strings"
	"testing"
)

// A decoder that panics on a worker's goroutine costs its object, as it
// does on the serial path, and not the process.
func TestParallelDecoderPanicCostsOneObject(t *testing.T) {
	s := NewStore("traefik-sd")
	for i := 0; i < 2*parallelMin; i++ {
		s.Put(ObjectID{Kind: Routers, Name: fmt.Sprintf("r%04d", i)}, "service", "s")
	}
	// A length prefix that overruns its object: reading its keys panics
	// inside the decoder.
	bad := ObjectID{Kind: Routers, Name: "r0300"}
	s.raw[bad] = &rawObject{packed: "\x05ab", n: 1}
	changed, errs := s.commit(4, parallelMin)
	if len(errs) != 1 || !strings.Contains(errs[0].Error(), "http/routers/r0300: decoder panicked") {
		t.Fatalf("errors %v", errs)
	}
	if len(changed) != 2*parallelMin-1 || len(s.Routers) != 2*parallelMin-1 || s.Routers[bad.Name] != nil {
		t.Fatalf("%d changed, %d routers", len(changed), len(s.Routers))
	}
}
