package dynamic

import (
	"fmt"
	"math/rand"
	"sort"
	"strings"
	"testing"
)

// A packed object must hold exactly what a map of its keys holds, in key
// order, through any sequence of puts and deletes: with its keys interned,
// and with a table too full to intern them.
func TestPackedObjectMatchesAMap(t *testing.T) {
	for _, full := range []bool{false, true} {
		keys := &subKeys{}
		if full {
			for i := 0; i < maxSubKeys; i++ {
				keys.add(fmt.Sprintf("other/%d", i))
			}
		}
		rng := rand.New(rand.NewSource(1))
		names := []string{"", "a", "b", "rule", "service", "loadBalancer/servers/0/url", "loadBalancer/servers/10/url", strings.Repeat("k", 200)}
		values := []string{"", "x", "http://10.0.0.1:8080", strings.Repeat("v", 300), "\x00\xff"}
		obj := &rawObject{}
		model := map[string]string{}
		for step := 0; step < 5000; step++ {
			k := names[rng.Intn(len(names))]
			if rng.Intn(3) == 0 {
				obj = obj.with(keys, k, "", true)
				delete(model, k)
			} else {
				v := values[rng.Intn(len(values))]
				obj = obj.with(keys, k, v, false)
				model[k] = v
			}
			if int(obj.n) != len(model) {
				t.Fatalf("full=%v step %d: %d keys, want %d", full, step, obj.n, len(model))
			}
			want := make([]string, 0, len(model))
			size := 0
			for k := range model {
				want = append(want, k)
				size += keys.entrySize(k, len(model[k]))
			}
			sort.Strings(want)
			i := 0
			for k, v := range obj.all(keys) {
				if i >= len(want) || k != want[i] || v != (stored{s: model[k]}) {
					t.Fatalf("full=%v step %d: key %d is %q=%q, want %q=%q", full, step, i, k, v.s, want[i], model[want[i]])
				}
				i++
			}
			if got, ok := obj.get(keys, k); ok != hasKey(model, k) || got != (stored{s: model[k]}) {
				t.Fatalf("full=%v step %d: get(%q) = %q, %v", full, step, k, got.s, ok)
			}
			if len(obj.packed) != size {
				t.Fatalf("full=%v step %d: packed in %d bytes, sized at %d", full, step, len(obj.packed), size)
			}
		}
		// Interned, the 200-byte key takes two bytes of its object;
		// past the table's bound, its text.
		long := (&rawObject{}).with(keys, strings.Repeat("k", 200), "", false)
		if interned := len(long.packed) < 10; interned == full || len(keys.names) != maxSubKeys && full {
			t.Fatalf("full=%v: a 200-byte key packed in %d bytes, %d keys interned", full, len(long.packed), len(keys.names))
		}
	}
}

func hasKey(m map[string]string, k string) bool { _, ok := m[k]; return ok }

type listing [][2]string

func (l listing) Len() int                  { return len(l) }
func (l listing) At(i int) (string, string) { return l[i][0], l[i][1] }

// Keys of one object that differ in case above its name sort apart, or
// together out of their own order; a re-list must still hold them all,
// and one unchanged listing must leave nothing to decode again.
func TestResetHoldsKeysWrittenInAnotherCase(t *testing.T) {
	l := listing{
		{"HTTP/routers/r/service", "s"},
		{"http/Routers/r/rule", "Host(`b`)"},
		{"http/middlewares/m/headers/x", "1"},
		{"http/routers/r/entryPoints/0", "web"},
		{"http/routers/r/entryPoints/1", "websecure"},
	}
	sort.Slice(l, func(i, j int) bool { return l[i][0] < l[j][0] })
	s := NewStore("traefik-sd")
	s.Reset(l)
	s.Commit()
	r := s.Routers["r"]
	if r == nil || r.Service != "s" || r.Rule != "Host(`b`)" || len(r.EntryPoints) != 2 {
		t.Fatalf("router = %+v", r)
	}
	s.Reset(l)
	if changed, _ := s.Commit(); len(changed) != 0 {
		t.Fatalf("an identical listing changed %v", changed)
	}
	s.Reset(l[1:])
	if changed, _ := s.Commit(); len(changed) != 1 || s.Routers["r"].Service != "" {
		t.Fatalf("a listing without a key changed %v, router %+v", changed, s.Routers["r"])
	}
}
