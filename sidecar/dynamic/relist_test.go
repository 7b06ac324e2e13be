package dynamic_test

import (
	"reflect"
	"sort"
	"strings"
	"testing"

	"github.com/traefik-sd/traefik-sd/internal/fixture"
	"github.com/traefik-sd/traefik-sd/sidecar/dynamic"
)

// paged applies l as a listing cut into pages of size keys.
func paged(s *dynamic.Store, l listing, size int) {
	s.BeginReset()
	for i := 0; i < len(l); i += size {
		s.ResetPage(l[i:min(i+size, len(l))])
	}
	s.EndReset()
}

func sameStore(t *testing.T, what string, got, want *dynamic.Store) {
	t.Helper()
	if !reflect.DeepEqual(got.Routers, want.Routers) || !reflect.DeepEqual(got.Services, want.Services) ||
		!reflect.DeepEqual(got.Middlewares, want.Middlewares) || !reflect.DeepEqual(got.TCPRouters, want.TCPRouters) ||
		!reflect.DeepEqual(got.TCPServices, want.TCPServices) || got.Len() != want.Len() || len(got.Errors) != len(want.Errors) {
		t.Fatalf("%s: the paged store differs from the whole listing's (%d objects, want %d)", what, got.Len(), want.Len())
	}
}

// A listing that comes in pages, cut anywhere (inside an object's keys too),
// ends in the same store as the whole listing at once; an unchanged listing
// in pages changes nothing; a listing abandoned half way and listed again
// ends where the whole listing does.
func TestAPagedListingIsTheWholeListing(t *testing.T) {
	var all listing
	for _, name := range []string{"etcd/interactive.kv", "etcd/inference-two-routes.kv", "etcd/mixed-case.kv"} {
		for _, p := range fixture.KV(t, name) {
			all = append(all, [2]string{strings.TrimPrefix(p.Key, rootKey+"/"), p.Value})
		}
	}
	sort.Slice(all, func(i, j int) bool { return all[i][0] < all[j][0] })
	// Before: the listing without its last third and with one changed value.
	var before listing
	for i, kv := range all[:2*len(all)/3] {
		if i == 5 {
			kv[1] += "-old"
		}
		before = append(before, kv)
	}
	for size := 1; size <= len(all)+1; size++ {
		want := dynamic.NewStore("traefik-sd")
		want.Reset(before)
		want.Commit()
		want.Reset(all)
		wantChanged, _ := want.Commit()

		got := dynamic.NewStore("traefik-sd")
		paged(got, before, size)
		got.Commit()
		paged(got, all, size)
		changed, _ := got.Commit()
		if !reflect.DeepEqual(changed, wantChanged) {
			t.Fatalf("pages of %d: changed %v, want %v", size, changed, wantChanged)
		}
		sameStore(t, "pages of "+string(rune('0'+size%10)), got, want)

		// Only objects whose keys differ in case above their names are
		// decoded again (they come as two runs), paged or not.
		want.Reset(all)
		paged(got, all, size)
		if n, w := got.Dirty(), want.Dirty(); n != w {
			t.Fatalf("pages of %d: the same listing again left %d objects to decode, the whole listing %d", size, n, w)
		}
		want.Commit()

		// etcd fails after the first page; the listing starts over. (The
		// objects in two runs are still to decode from the listing above:
		// a listing after an abandoned one adds none.)
		got.BeginReset()
		got.ResetPage(before[:min(size, len(before))])
		dirty := got.Dirty()
		paged(got, all, size)
		if n := got.Dirty(); n > dirty {
			t.Fatalf("pages of %d: after an abandoned page, the listing left %d objects to decode, the abandoned page %d", size, n, dirty)
		}
		if again, _ := got.Commit(); len(again) != 0 {
			t.Fatalf("pages of %d: an abandoned page changed %v", size, again)
		}
		sameStore(t, "after an abandoned listing", got, want)
	}
}
