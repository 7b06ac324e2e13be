package dynamic

import (
	"strings"
	"testing"

	"github.com/traefik-sd/traefik-sd/sidecar/source"
)

// FuzzMayHoldObjectIsMayHold: telling whether a range may hold an object's
// keys without writing its key answers as mayHold on the key written out,
// and compareJoined as strings.Compare.
func FuzzMayHoldObjectIsMayHold(f *testing.F) {
	for _, seed := range [][4]string{
		{"http/routers/", "bai_router_c1", "http/routers/bai_router_c1/rule", "http/routers/bai_router_c2/"},
		{"http/routers/", "bai_router_c1", "http/routers/bai_router_c1", ""},
		{"http/routers/", "a", "http/routers/a/", "http/routers/a0"},
		{"http/services/", "s", "http/routers/x", "http/services/s"},
		{"tcp/routers/", "r", "", "tcp/routers/r/"},
		{"http/middlewares/", "m", "http/middlewares/m.", "http/middlewares/m/x"},
	} {
		f.Add(seed[0], seed[1], seed[2], seed[3])
	}
	f.Fuzz(func(t *testing.T, kind, name, key, end string) {
		joined := kind + name + "/"
		for _, s := range []string{key, end, joined, joined[:len(joined)-1], kind} {
			if got, want := compareJoined(kind, name, s), strings.Compare(joined, s); got != want {
				t.Fatalf("compareJoined(%q, %q, %q) = %d, strings.Compare says %d", kind, name, s, got, want)
			}
		}
		r := source.KeyRange{Key: key, End: end}
		if got, want := mayHoldObject(r, kind, name), mayHold(r, joined); got != want {
			t.Fatalf("mayHoldObject(%+v, %q, %q) = %v, mayHold on %q says %v", r, kind, name, got, joined, want)
		}
	})
}
