package dynamic

import (
	"encoding/binary"
	"hash/maphash"
	"iter"
	"sort"
	"strings"
)

// rawObject is the keys of one object as etcd holds them, packed into one
// string sorted by key: for each key, its length and text or its index in
// the store's subKeys (the low bit tells which), the value's length and
// whether it is a digest (see stored), the value (lengths and indexes as
// uvarints). A tree of 100,000 circuits holds about 2 million keys; one
// string per object instead of a map and two strings per key is most of
// what makes that mirror affordable, and packing copies the bytes, so the
// etcd client's response buffers are not kept alive.
type rawObject struct {
	packed string
	// Both fit 32 bits (an object's keys, and listings: one a second
	// would wrap in 136 years), which makes an object 24 bytes, not 32.
	n   uint32 // keys
	gen uint32
}

// stored is one key's value as the mirror keeps it. A value no decoding
// reads is kept as a digest: the mirror only has to notice that it changed
// (a re-list compares, a watch event may rewrite it unchanged). Backend.AI's
// WASM plugin's circuit JSON, a kilobyte of which traefik-sd reads three
// fields, is kept as a digest followed by those fields (its projection).
// That was half the mirror, and its secrets (jwt_secret,
// permit_hash_secret) are not kept at all.
type stored struct {
	s      string // the value, or its digest and projection
	digest bool
}

const digestLen = 8

// subKeys interns the keys below objects (middlewares/0, rule,
// loadBalancer/servers/0/url, plugin/…/circuit): a tree's objects share a
// few dozen, which as text in every object were about 550 bytes a circuit,
// two fifths of the mirror. Only the store's owner adds to it, never while
// decoding workers read it; a packer that workers run only looks keys up.
type subKeys struct {
	index map[string]uint32
	names []string
}

// maxSubKeys bounds the table, which never shrinks: past it, keys are
// packed as text, so a tree whose every object has keys of its own costs
// what it did before there was a table.
const maxSubKeys = 4096

// add interns k, unless the table is full.
func (t *subKeys) add(k string) (uint32, bool) {
	if i, ok := t.index[k]; ok {
		return i, true
	}
	if len(t.names) >= maxSubKeys {
		return 0, false
	}
	if t.index == nil {
		t.index = map[string]uint32{}
	}
	k = strings.Clone(k) // a listing's memory is read into again
	i := uint32(len(t.names))
	t.names = append(t.names, k)
	t.index[k] = i
	return i, true
}

// keySize is the room a key takes packed, interned or not.
func (t *subKeys) keySize(k string) int {
	if i, ok := t.index[k]; ok {
		return uvarintLen(uint64(i)<<1 | 1)
	}
	return uvarintLen(uint64(len(k))<<1) + len(k)
}

// digestSeed is this process's: a digest cannot be aimed at from outside.
var digestSeed = maphash.MakeSeed()

// text is what decoding reads: the value, or a digest's projection.
func (v stored) text() string {
	if v.digest {
		return v.s[digestLen:]
	}
	return v.s
}

// is tells whether the value kept is x (by its digest, if kept as one).
func (v stored) is(x string) bool {
	if !v.digest {
		return v.s == x
	}
	d := maphash.String(digestSeed, x)
	for i := 0; i < digestLen; i++ {
		if v.s[i] != byte(d>>(8*i)) {
			return false
		}
	}
	return true
}

// all yields the object's keys and values in key order, without allocating.
func (o *rawObject) all(t *subKeys) iter.Seq2[string, stored] {
	return func(yield func(string, stored) bool) {
		for p := o.packed; len(p) > 0; {
			var k string
			var v stored
			k, p = cutKey(p, t)
			v, p = cutValue(p)
			if !yield(k, v) {
				return
			}
		}
	}
}

// uvarint reads one uvarint off the front of p.
func uvarint(p string) (n uint64, rest string) {
	var shift uint
	i := 0
	for ; i < len(p); i++ {
		c := p[i]
		n |= uint64(c&0x7f) << shift
		if c < 0x80 {
			break
		}
		shift += 7
	}
	return n, p[i+1:]
}

// cutKey reads one key off the front of p: its length shifted left by one
// and its text, or its index in t shifted left by one with the low bit set.
func cutKey(p string, t *subKeys) (k, rest string) {
	n, p := uvarint(p)
	if n&1 == 1 {
		return t.names[n>>1], p
	}
	l := n >> 1
	return p[:l], p[l:]
}

// cutValue reads one value off the front of p: its length is shifted left
// by one, the low bit telling a digest.
func cutValue(p string) (v stored, rest string) {
	n, p := uvarint(p)
	l := n >> 1
	return stored{s: p[:l], digest: n&1 == 1}, p[l:]
}

// get returns a key's value.
func (o *rawObject) get(t *subKeys, key string) (stored, bool) {
	for k, v := range o.all(t) {
		if k == key {
			return v, true
		}
	}
	return stored{}, false
}

// with returns the object with key set to v (deleted when del), interning
// its keys in t.
func (o *rawObject) with(t *subKeys, key, v string, del bool) *rawObject {
	type pair struct {
		k string
		v stored
	}
	pairs := make([]pair, 0, o.n+1)
	for k, v := range o.all(t) {
		if k != key {
			pairs = append(pairs, pair{k, v})
		}
	}
	if !del {
		i := sort.Search(len(pairs), func(i int) bool { return pairs[i].k >= key })
		pairs = append(pairs, pair{})
		copy(pairs[i+1:], pairs[i:])
		pairs[i] = pair{key, stored{s: v}}
	}
	p := packer{keys: t, intern: true}
	for _, kv := range pairs {
		p.add(kv.k, kv.v)
	}
	return p.object(o.gen)
}

// packer builds a rawObject from keys given in ascending order; a
// Builder's String does not copy what it built. It packs keys by their
// index in keys where they have one, adding those without when intern is
// set (only the store's owner may).
type packer struct {
	b      strings.Builder
	n      int
	keys   *subKeys
	intern bool
}

func (p *packer) key(k string) {
	i, ok := p.keys.index[k]
	if !ok && p.intern {
		i, ok = p.keys.add(k)
	}
	if ok {
		p.uvarint(uint64(i)<<1 | 1)
		return
	}
	p.uvarint(uint64(len(k)) << 1)
	p.b.WriteString(k)
}

func (p *packer) uvarint(x uint64) {
	var buf [binary.MaxVarintLen64]byte
	p.b.Write(binary.AppendUvarint(buf[:0], x))
}

func (p *packer) add(key string, v stored) {
	p.key(key)
	n := uint64(len(v.s)) << 1
	if v.digest {
		n |= 1
	}
	p.uvarint(n)
	p.b.WriteString(v.s)
	p.n++
}

// entrySize is the room add takes for key and a value of n bytes.
func (t *subKeys) entrySize(key string, n int) int {
	return t.keySize(key) + uvarintLen(uint64(n)<<1|1) + n
}

func uvarintLen(x uint64) int {
	n := 1
	for ; x >= 0x80; x >>= 7 {
		n++
	}
	return n
}

// addDigest adds key with x kept as its digest followed by projection.
func (p *packer) addDigest(key, x, projection string) {
	p.key(key)
	p.uvarint(uint64(digestLen+len(projection))<<1 | 1)
	var d [digestLen]byte
	binary.LittleEndian.PutUint64(d[:], maphash.String(digestSeed, x))
	p.b.Write(d[:])
	p.b.WriteString(projection)
	p.n++
}

func (p *packer) object(gen uint32) *rawObject {
	return &rawObject{packed: p.String(), n: uint32(p.n), gen: gen}
}

// String is what was packed, in memory of its exact size: the mirror holds
// it for as long as the object lives.
func (p *packer) String() string {
	if p.b.Cap() > p.b.Len() {
		return strings.Clone(p.b.String())
	}
	return p.b.String()
}
