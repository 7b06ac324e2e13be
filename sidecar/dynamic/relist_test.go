package dynamic_test

import (
	"fmt"
	"reflect"
	"slices"
	"sort"
	"strings"
	"testing"
	"unsafe"

	"github.com/traefik-sd/traefik-sd/internal/fixture"
	"github.com/traefik-sd/traefik-sd/sidecar/dynamic"
	"github.com/traefik-sd/traefik-sd/sidecar/source"
)

// fixtureListing is three circuits' keys (one of them with keys in
// another case), sorted as a listing holds them; or the named fixtures'.
func fixtureListing(t *testing.T, names ...string) listing {
	if len(names) == 0 {
		names = []string{"etcd/interactive.kv", "etcd/inference-two-routes.kv", "etcd/mixed-case.kv"}
	}
	var all listing
	for _, name := range names {
		for _, p := range fixture.KV(t, name) {
			all = append(all, [2]string{strings.TrimPrefix(p.Key, rootKey+"/"), p.Value})
		}
	}
	sort.Slice(all, func(i, j int) bool { return all[i][0] < all[j][0] })
	return all
}

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
		t.Fatalf("%s: the store differs from the whole listing's (%d objects, want %d)", what, got.Len(), want.Len())
	}
}

// A listing that comes in pages, cut anywhere (inside an object's keys too),
// ends in the same store as the whole listing at once; an unchanged listing
// in pages changes nothing; a listing abandoned half way and listed again
// ends where the whole listing does.
func TestAPagedListingIsTheWholeListing(t *testing.T) {
	all := fixtureListing(t)
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

// poisoned is a page whose keys and values are slices of one buffer, as a
// page read raw from etcd is, overwritten once the page is applied, as the
// watcher reuses it for the next page.
type poisoned struct {
	buf  []byte
	keys [][4]int // rel start, end, value start, end
}

func newPoisoned(l listing) *poisoned {
	p := &poisoned{}
	for _, kv := range l {
		a := len(p.buf)
		p.buf = append(p.buf, kv[0]...)
		b := len(p.buf)
		p.buf = append(p.buf, kv[1]...)
		p.keys = append(p.keys, [4]int{a, b, b, len(p.buf)})
	}
	return p
}

func (p *poisoned) Len() int { return len(p.keys) }

func (p *poisoned) At(i int) (string, string) {
	k := p.keys[i]
	return alias(p.buf[k[0]:k[1]]), alias(p.buf[k[2]:k[3]])
}

func (p *poisoned) poison() {
	for i := range p.buf {
		p.buf[i] = '~'
	}
}

func alias(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	return unsafe.String(&b[0], len(b))
}

// A store keeps nothing of a page once ResetPage returns, so that the
// watcher can read the next page into the same memory: not a held key, not
// a name as a map key, not a value. Every page here is overwritten as soon
// as it is applied, and the store still ends as the same listing given in
// pages it may keep.
func TestAStoreKeepsNothingOfAPage(t *testing.T) {
	all := fixtureListing(t)
	var before listing
	for i, kv := range all[:2*len(all)/3] {
		if i == 5 || i == 9 {
			kv[1] += "-old"
		}
		before = append(before, kv)
	}
	for size := 1; size <= len(all)+1; size++ {
		want := dynamic.NewStore("traefik-sd")
		paged(want, before, size)
		want.Commit()
		paged(want, all, size)
		want.Commit()

		got := dynamic.NewStore("traefik-sd")
		for _, l := range []listing{before, all, all} {
			got.BeginReset()
			for i := 0; i < len(l); i += size {
				p := newPoisoned(l[i:min(i+size, len(l))])
				got.ResetPage(p)
				p.poison()
			}
			got.EndReset()
			got.Commit()
		}
		sameStore(t, fmt.Sprintf("pages of %d, each overwritten once applied", size), got, want)
	}
}

// A listing keeps exactly the keys a watch event's Put keeps: beside an
// object's own keys it may hold its prefix alone (http/routers/<name>/, a
// key with nothing below the object), the object's name without the
// slash, and its keys in another case. The run of one object's keys is
// found by its first key's prefix; that shortcut must not take in the keys
// SplitKey refuses.
func TestAListingKeepsTheKeysAPutKeeps(t *testing.T) {
	all := fixtureListing(t)
	var odd listing
	for _, kv := range all {
		_, sub, ok := dynamic.SplitKey(kv[0])
		if !ok || sub != "rule" {
			continue
		}
		prefix := kv[0][:len(kv[0])-len(sub)]
		odd = append(odd,
			[2]string{prefix, "nothing below the object"},
			[2]string{strings.TrimSuffix(prefix, "/"), "no slash after the name"},
			[2]string{prefix + "priority", "7"},
			[2]string{strings.Replace(prefix, "http/", "HTTP/", 1) + "entryPoints/0", "web"},
		)
	}
	listed := append(append(listing{}, all...), odd...)
	sort.Slice(listed, func(i, j int) bool { return listed[i][0] < listed[j][0] })

	want := dynamic.NewStore("traefik-sd")
	for _, kv := range listed {
		if id, sub, ok := dynamic.SplitKey(kv[0]); ok {
			want.Put(id, sub, kv[1])
		}
	}
	want.Commit()
	for size := 1; size <= len(listed); size += 7 {
		got := dynamic.NewStore("traefik-sd")
		paged(got, listed, size)
		got.Commit()
		sameStore(t, fmt.Sprintf("pages of %d", size), got, want)
	}
}

// A re-list that lists one range of the tree (the keys between two
// splits, after a deletion there) deletes what the range lacks and keeps
// every key outside it: for every range between two keys of a listing,
// with a third of its keys deleted and one value outside it changed, the
// store ends where a whole listing of the tree as it is now ends.
func TestAListedRangeDeletesWhatItLacks(t *testing.T) {
	all := fixtureListing(t, "etcd/interactive.kv", "etcd/inference-two-routes.kv", "etcd/tcp.kv")
	for _, kv := range all {
		if !dynamic.Findable(kv[0]) {
			t.Fatalf("the fixture's %s is not findable", kv[0])
		}
	}
	for i := range len(all) {
		for j := i + 1; j <= len(all); j++ {
			lo, hi := "", ""
			if i > 0 {
				lo = all[i][0]
			}
			if j < len(all) {
				hi = all[j][0]
			}
			var now, ranged listing
			for k, kv := range all {
				if k >= i && k < j && (k-i)%3 == 0 {
					continue // deleted
				}
				if k == (j+1)%len(all) && (k < i || k >= j) {
					kv[1] += "-changed"
				}
				now = append(now, kv)
				if k >= i && k < j {
					ranged = append(ranged, kv)
				}
			}
			want := dynamic.NewStore("traefik-sd")
			want.Reset(now)
			want.Commit()
			// The range whole, and cut in two at a key (one object's keys
			// may lie on both sides).
			cuts := [][]source.KeyRange{{{Key: lo, End: hi}}}
			if m := (i + j) / 2; m > i {
				cuts = append(cuts, []source.KeyRange{{Key: lo, End: all[m][0]}, {Key: all[m][0], End: hi}})
			}
			for _, ranges := range cuts {
				got := dynamic.NewStore("traefik-sd")
				got.Reset(all)
				got.Commit()
				got.DeleteUnlisted(ranged, ranges)
				for _, kv := range now {
					if id, sub, ok := dynamic.SplitKey(kv[0]); ok {
						got.Put(id, sub, kv[1])
					}
				}
				got.Commit()
				sameStore(t, fmt.Sprintf("ranges %q", ranges), got, want)
				if g, w := got.Keys(), want.Keys(); !slices.Equal(g, w) {
					t.Fatalf("ranges %q: the store holds the keys\n%s\nwant\n%s", ranges, strings.Join(g, "\n"), strings.Join(w, "\n"))
				}
			}
		}
	}
}

func TestFindable(t *testing.T) {
	for key, want := range map[string]bool{
		"http/routers/r/rule":                        true,
		"http/middlewares/m/plugin/traefik-sd/x":     true,
		"tcp/services/s/loadBalancer/servers/0/addr": true,
		"http/Routers/r/rule":                        false,
		"HTTP/routers/r/rule":                        false,
		"Tcp/services/s/weighted":                    false,
		"http/serversTransports/t/x":                 true, // not read
		"udp/routers/r/service":                      true, // not read
		"http/routers/r":                             true, // not read
	} {
		if got := dynamic.Findable(key); got != want {
			t.Errorf("Findable(%q) = %v, want %v", key, got, want)
		}
	}
}
