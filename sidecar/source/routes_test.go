package source_test

import (
	"fmt"
	"slices"
	"testing"

	"github.com/traefik-sd/traefik-sd/sidecar/source"
)

func table(circuits map[string][]string) *source.RouteTable {
	t := source.NewRouteTable()
	for c, hostPorts := range circuits {
		for i, hp := range hostPorts {
			t.Add(c, hp, source.RouteIDs{SessionID: fmt.Sprintf("s-%s-%d", c, i)})
			t.AddServer(c, "http://"+hp+"/")
		}
	}
	return t
}

// An answer about a few circuits replaces their part alone: the rest of the
// table stays, a circuit the coordinator no longer has is dropped, and only
// what differs is reported changed.
func TestPatchReplacesTheCircuitsAskedAbout(t *testing.T) {
	cur := table(map[string][]string{"a": {"10.0.0.1:80"}, "b": {"10.0.0.2:80"}, "c": {"10.0.0.3:80"}})
	part := table(map[string][]string{"a": {"10.0.0.1:80"}, "b": {"10.0.0.2:81", "10.0.0.4:80"}})
	changed := cur.Patch(part, []string{"a", "b", "c", "d"})
	if want := []string{"b", "c"}; !slices.Equal(changed, want) {
		t.Fatalf("changed %v, want %v", changed, want)
	}
	want := table(map[string][]string{"a": {"10.0.0.1:80"}, "b": {"10.0.0.2:81", "10.0.0.4:80"}})
	if !cur.Equal(want) || cur.Len() != 3 {
		t.Fatalf("patched table differs from the one it should be (%d routes): %v", cur.Len(), want.ChangedCircuits(cur))
	}
	if _, ok := cur.Lookup("b", "10.0.0.2:80"); ok {
		t.Fatal("b's old route is still known")
	}
	if ids, ok := cur.Lookup("b", "10.0.0.4:80"); !ok || ids.SessionID != "s-b-1" {
		t.Fatalf("b's new route: %+v %v", ids, ok)
	}
	if again := cur.Patch(part, []string{"a", "b"}); len(again) != 0 {
		t.Fatalf("the same answer again changed %v", again)
	}
}

// Tables that differ only in a circuit's servers (a second route to the same
// kernel, say) are not equal: without etcd the servers come from here.
func TestServersAloneMakeADifference(t *testing.T) {
	a, b := table(map[string][]string{"a": {"10.0.0.1:80"}}), table(map[string][]string{"a": {"10.0.0.1:80"}})
	b.AddServer("a", "http://10.0.0.1:80/")
	if a.Equal(b) || !slices.Equal(b.ChangedCircuits(a), []string{"a"}) {
		t.Fatalf("equal %v, changed %v", a.Equal(b), b.ChangedCircuits(a))
	}
	var none *source.RouteTable
	if !none.Equal(source.NewRouteTable()) || len(source.NewRouteTable().ChangedCircuits(nil)) != 0 {
		t.Fatal("an empty table differs from none")
	}
}
