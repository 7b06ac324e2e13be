package dynamic

import (
	"runtime"
	"slices"
	"sort"
	"strings"

	"github.com/traefik-sd/traefik-sd/sidecar/source"
)

// Listing is a listing of the root key, or one page of it, sorted by key,
// so that the keys of one object come together.
type Listing interface {
	Len() int
	At(i int) (rel, value string)
}

// Reset replaces every key with a whole listing, as after a re-list.
func (s *Store) Reset(l Listing) {
	s.BeginReset()
	s.ResetPage(l)
	s.EndReset()
}

// BeginReset starts a re-list that comes in pages: ResetPage for each, in
// key order, then EndReset. Nothing is decoded until Commit, so the decoded
// configuration stays the last one until the whole listing is in: a page
// costs only the memory of its keys, not a second copy of the tree. A
// listing abandoned half way (etcd failed) is forgotten by the next
// BeginReset: what it compared stays, what it did not see is not deleted.
func (s *Store) BeginReset() {
	s.gen++
	s.held = nil
}

// ResetPage compares one page of the listing with the objects held, in
// place: an unchanged object costs no allocation and is not decoded again.
// The page's last object may go on in the next page, so its keys are held
// until then.
func (s *Store) ResetPage(l Listing) {
	s.resetRuns(joined{s.held, l}, false)
	s.decodeAhead(runtime.GOMAXPROCS(0))
}

// EndReset applies the listing's last object and deletes every object the
// listing did not have.
func (s *Store) EndReset() {
	s.resetRuns(joined{s.held, nil}, true)
	s.held = nil
	for id, obj := range s.raw {
		if obj.gen != s.gen {
			delete(s.raw, id)
			s.dirty[id] = true
		}
	}
}

// resetRuns walks a listing object by object. Unless last, the final run is
// not applied but held for the next page.
func (s *Store) resetRuns(l Listing, last bool) {
	n := l.Len()
	var final keyRun
	for i := 0; i < n; {
		rel, _ := l.At(i)
		id, sub, ok := SplitKey(rel)
		if !ok {
			i++
			continue
		}
		// The run of keys of this object.
		r := keyRun{id: id, prefix: rel[:len(rel)-len(sub)], i: i, j: i + 1}
		for ; r.j < n; r.j++ {
			k, _ := l.At(r.j)
			if _, ok := r.sub(k); !ok {
				break
			}
		}
		if r.j == n && !last {
			final = r
			break
		}
		s.resetRun(l, r)
		i = r.j
	}
	held := make([]heldKey, 0, final.j-final.i)
	for k := final.i; k < final.j; k++ {
		r, v := l.At(k)
		held = append(held, heldKey{strings.Clone(r), strings.Clone(v)})
	}
	s.held = held
}

// keyRun is the listing's keys i..j, all of object id; prefix is the
// first one's text up to its key below the object.
type keyRun struct {
	id     ObjectID
	prefix string
	i, j   int
}

// sub is key's key below the run's object, if key belongs to it. A key
// that starts with the run's prefix does, which spares SplitKey for
// nearly every key of a listing; only an object's keys written in another
// case (http/Routers/…) need it.
func (r keyRun) sub(key string) (string, bool) {
	if len(key) > len(r.prefix) && key[:len(r.prefix)] == r.prefix {
		return key[len(r.prefix):], true
	}
	id, sub, ok := SplitKey(key)
	return sub, ok && id == r.id
}

// resetRun applies one run of the listing.
func (s *Store) resetRun(l Listing, r keyRun) {
	id := r.id
	obj := s.raw[id]
	if obj == nil || obj.gen != s.gen {
		// First run of this object in the listing.
		if obj == nil || !s.sameRun(obj, l, r) {
			id = own(id)
			s.raw[id] = s.packRun(l, r)
			s.dirty[id] = true
			s.fresh = append(s.fresh, id)
		} else {
			obj.gen = s.gen
		}
		return
	}
	// A key written in another case makes a second run: it merges.
	for k := r.i; k < r.j; k++ {
		key, v := l.At(k)
		sb, _ := r.sub(key)
		obj = obj.with(&s.keys, sb, v, false)
	}
	id = own(id)
	s.raw[id] = obj
	s.dirty[id] = true
	s.fresh = append(s.fresh, id)
}

// heldKey is one key of a page's last object, copied: the watcher reads
// its next page into the memory of this one.
type heldKey struct{ rel, value string }

// joined is the keys held from the last page followed by a new page.
type joined struct {
	held []heldKey
	page Listing
}

func (j joined) Len() int {
	if j.page == nil {
		return len(j.held)
	}
	return len(j.held) + j.page.Len()
}

func (j joined) At(i int) (string, string) {
	if i < len(j.held) {
		return j.held[i].rel, j.held[i].value
	}
	return j.page.At(i - len(j.held))
}

// own copies a name taken from a listing's key before it is a map key (a
// map's assignment stores the key given, even over an equal one): the
// listing's memory is the watcher's again once the page is applied.
func own(id ObjectID) ObjectID {
	id.Name = strings.Clone(id.Name)
	return id
}

// sameRun says whether the listing's run is exactly the object's keys, in
// the same order.
func (s *Store) sameRun(obj *rawObject, l Listing, r keyRun) bool {
	if int(obj.n) != r.j-r.i {
		return false
	}
	k := r.i
	for key, value := range obj.all(&s.keys) {
		lk, v := l.At(k)
		sb, _ := r.sub(lk)
		if sb != key || !value.is(v) {
			return false
		}
		k++
	}
	return true
}

// packRun packs the listing's run of one object. Its keys come in key
// order unless the object's keys differ in case above its name.
func (s *Store) packRun(l Listing, r keyRun) *rawObject {
	p := packer{keys: &s.keys, intern: true}
	sorted := true
	prev := ""
	for k := r.i; k < r.j; k++ {
		key, v := l.At(k)
		sb, _ := r.sub(key)
		if k > r.i && sb <= prev {
			sorted = false
			break
		}
		prev = sb
		p.add(sb, stored{s: v})
	}
	if sorted {
		return p.object(s.gen)
	}
	obj := &rawObject{gen: s.gen}
	for k := r.i; k < r.j; k++ {
		key, v := l.At(k)
		sb, _ := r.sub(key)
		obj = obj.with(&s.keys, sb, v, false)
	}
	return obj
}

// Findable says whether the store finds a key by its text: a key it does
// not read, or one whose object is named as ObjectID.String names it. A
// key written in another case (http/Routers/…, which Traefik reads too) is
// held under its object, and its own text is not kept.
func Findable(rel string) bool {
	id, sub, ok := SplitKey(rel)
	if !ok {
		return true
	}
	return rel[:len(rel)-len(sub)-len(id.Name)-1] == kindPrefix(id.Kind)
}

// kindPrefix is the text before an object's name in its keys, as
// ObjectID.String writes it.
func kindPrefix(k Kind) string {
	switch k {
	case Routers:
		return "http/routers/"
	case Services:
		return "http/services/"
	case Middlewares:
		return "http/middlewares/"
	case TCPRouters:
		return "tcp/routers/"
	default:
		return "tcp/services/"
	}
}

// DeleteUnlisted deletes the keys held in the ranges that l, every key of
// those ranges as etcd holds them now, sorted, lacks: a re-list that listed
// parts of the tree, as a deletion leaves nothing else to read. A held
// key's text is rebuilt from its object, so each key put must have been
// Findable. One pass over the objects serves every range: most are told
// apart by their kind's prefix alone.
func (s *Store) DeleteUnlisted(l Listing, ranges []source.KeyRange) {
	if len(ranges) == 0 {
		return
	}
	// The ranges that may hold each kind's keys, found once: for most
	// kinds there are none, and the objects of those cost a lookup.
	byKind := map[Kind][]source.KeyRange{}
	for _, k := range []Kind{Routers, Services, Middlewares, TCPRouters, TCPServices} {
		for _, r := range ranges {
			if mayHold(r, kindPrefix(k)) {
				byKind[k] = append(byKind[k], r)
			}
		}
	}
	type held struct {
		id  ObjectID
		sub string
	}
	var gone []held
	var text []byte
	for id, obj := range s.raw {
		rs := byKind[id.Kind]
		if len(rs) == 0 {
			continue
		}
		kind := kindPrefix(id.Kind)
		// Told apart without writing the object's key: at 30,000 circuits
		// writing it for every object of a kind was 0.15 s of the 0.18 s a
		// re-list after a deletion spent on its own work.
		if !slices.ContainsFunc(rs, func(r source.KeyRange) bool { return mayHoldObject(r, kind, id.Name) }) {
			continue
		}
		text = append(append(append(text[:0], kind...), id.Name...), '/')
		p := len(text)
		for sub := range obj.all(&s.keys) {
			text = append(text[:p], sub...)
			if !slices.ContainsFunc(rs, func(r source.KeyRange) bool { return r.Holds(string(text)) }) {
				continue
			}
			i := sort.Search(l.Len(), func(i int) bool {
				k, _ := l.At(i)
				return k >= string(text)
			})
			if i < l.Len() {
				if k, _ := l.At(i); k == string(text) {
					continue
				}
			}
			gone = append(gone, held{id, sub})
		}
	}
	for _, g := range gone {
		s.Delete(g.id, g.sub)
	}
}

// mayHoldObject is mayHold(r, kind+name+"/"), without writing that key.
func mayHoldObject(r source.KeyRange, kind, name string) bool {
	if compareJoined(kind, name, r.Key) < 0 && !hasJoinedPrefix(r.Key, kind, name) {
		return false
	}
	return r.End == "" || compareJoined(kind, name, r.End) < 0
}

// compareJoined compares kind+name+"/" with s, as strings.Compare would.
func compareJoined(kind, name, s string) int {
	for _, p := range [...]string{kind, name, "/"} {
		n := min(len(p), len(s))
		if c := strings.Compare(p[:n], s[:n]); c != 0 {
			return c
		}
		if n < len(p) {
			return 1 // s is a proper prefix of the joined key
		}
		s = s[n:]
	}
	if s != "" {
		return -1
	}
	return 0
}

// hasJoinedPrefix says whether s begins with kind+name+"/".
func hasJoinedPrefix(s, kind, name string) bool {
	rest, ok := strings.CutPrefix(s, kind)
	if ok {
		rest, ok = strings.CutPrefix(rest, name)
	}
	return ok && strings.HasPrefix(rest, "/")
}

// mayHold says whether r may hold a key that begins with prefix.
func mayHold(r source.KeyRange, prefix string) bool {
	if prefix < r.Key && !strings.HasPrefix(r.Key, prefix) {
		return false // every such key is below r
	}
	return r.End == "" || prefix < r.End
}
