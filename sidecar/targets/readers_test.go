package targets

import (
	"fmt"
	"slices"
	"sort"
	"testing"
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
