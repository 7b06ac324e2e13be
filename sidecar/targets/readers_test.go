package targets

import (
	"fmt"
	"math/rand"
	"slices"
	"sort"
	"testing"

	"github.com/traefik-sd/traefik-sd/sidecar/dynamic"
)

// An input read by many routers moves its readers from the slice to a map;
// both must answer the same, and an emptied set must say so.
func TestReaderSetAcrossItsTwoForms(t *testing.T) {
	rs := &readerSet{}
	var names []string
	for i := 0; i < 3*fewReaders; i++ {
		names = append(names, fmt.Sprintf("r%02d@etcd", i))
	}
	for n := 1; n <= len(names); n++ {
		rs.add(names[n-1])
		rs.add(names[n-1]) // twice is once
		var got []string
		rs.each(func(r string) { got = append(got, r) })
		sort.Strings(got)
		if !slices.Equal(got, names[:n]) {
			t.Fatalf("after %d adds the set is %v", n, got)
		}
	}
	for i, name := range names {
		if empty := rs.remove(name); empty != (i == len(names)-1) {
			t.Fatalf("removing %s (%d of %d) said empty=%v", name, i+1, len(names), empty)
		}
	}
}

// The index answers as a map of sets would, whichever of its two maps an
// input's readers are in, through any order of adds and removes; an input
// with one reader takes no set.
func TestReaderIndexAnswersAsAMapOfSets(t *testing.T) {
	x := newReaderIndex()
	model := map[dynamic.ObjectID]map[string]bool{}
	rng := rand.New(rand.NewSource(3))
	ids := []dynamic.ObjectID{{Kind: dynamic.Middlewares, Name: "CORSHeaders"}, {Kind: dynamic.Services, Name: "s1"}, {Kind: dynamic.Middlewares, Name: "m1"}}
	for step := 0; step < 20000; step++ {
		id := ids[rng.Intn(len(ids))]
		name := fmt.Sprintf("r%d@etcd", rng.Intn(2+rng.Intn(3*fewReaders)))
		if rng.Intn(2) == 0 {
			x.add(id, name)
			if model[id] == nil {
				model[id] = map[string]bool{}
			}
			model[id][name] = true
		} else {
			x.remove(id, name)
			delete(model[id], name)
		}
		for _, id := range ids {
			var got, want []string
			x.each(id, func(r string) { got = append(got, r) })
			for r := range model[id] {
				want = append(want, r)
			}
			sort.Strings(got)
			sort.Strings(want)
			if !slices.Equal(got, want) {
				t.Fatalf("step %d: %v is read by %v, want %v", step, id, got, want)
			}
		}
	}
	x = newReaderIndex()
	for i := 0; i < 100; i++ {
		x.add(dynamic.ObjectID{Kind: dynamic.Services, Name: fmt.Sprint(i)}, fmt.Sprintf("r%d@etcd", i))
	}
	if len(x.one) != 100 || len(x.many) != 0 {
		t.Fatalf("100 inputs of one reader each: %d in one, %d sets", len(x.one), len(x.many))
	}
}
