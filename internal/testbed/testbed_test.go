package testbed

import (
	"net"
	"strconv"
	"testing"
)

// FreePort's ports are below the kernel's ephemeral range, where no
// outgoing connection takes them meanwhile, bindable, and never given twice.
func TestFreePortIsOutsideTheEphemeralRange(t *testing.T) {
	lo := ephemeralLow()
	seen := map[int]bool{}
	for range 50 {
		p := FreePort(t)
		if p >= lo || p < 1024 {
			t.Fatalf("port %d is not below the ephemeral range starting at %d", p, lo)
		}
		if seen[p] {
			t.Fatalf("port %d given twice", p)
		}
		seen[p] = true
		ln, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p))
		if err != nil {
			t.Fatalf("port %d cannot be bound: %v", p, err)
		}
		ln.Close()
	}
}
