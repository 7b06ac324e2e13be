package dynamic

import (
	"encoding/binary"
	"hash/maphash"
	"iter"
	"sort"
	"strings"
)

// rawObject is the keys of one object as etcd holds them, packed into one
// string sorted by key: for each key, its length, the key, the value's
// length and whether it is a digest (see stored), the value (lengths as
// uvarints). A tree of 100,000 circuits holds about 2 million keys; one
// string per object instead of a map and two strings per key is most of
// what makes that mirror affordable, and packing copies the bytes, so the
// etcd client's response buffers are not kept alive.
type rawObject struct {
	packed string
	n      int // keys
	gen    uint64
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
func (o *rawObject) all() iter.Seq2[string, stored] {
	return func(yield func(string, stored) bool) {
		for p := o.packed; len(p) > 0; {
			var k string
			var v stored
			k, p = cut(p)
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

// cut reads one length-prefixed string off the front of p.
func cut(p string) (s, rest string) {
	n, p := uvarint(p)
	return p[:n], p[n:]
}

// cutValue reads one value off the front of p: its length is shifted left
// by one, the low bit telling a digest.
func cutValue(p string) (v stored, rest string) {
	n, p := uvarint(p)
	l := n >> 1
	return stored{s: p[:l], digest: n&1 == 1}, p[l:]
}

// get returns a key's value.
func (o *rawObject) get(key string) (stored, bool) {
	for k, v := range o.all() {
		if k == key {
			return v, true
		}
	}
	return stored{}, false
}

// with returns the object with key set to v (deleted when del).
func (o *rawObject) with(key, v string, del bool) *rawObject {
	type pair struct {
		k string
		v stored
	}
	pairs := make([]pair, 0, o.n+1)
	for k, v := range o.all() {
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
	var p packer
	for _, kv := range pairs {
		p.add(kv.k, kv.v)
	}
	return p.object(o.gen)
}

// packer builds a rawObject from keys given in ascending order; a
// Builder's String does not copy what it built.
type packer struct {
	b strings.Builder
	n int
}

func (p *packer) uvarint(x uint64) {
	var buf [binary.MaxVarintLen64]byte
	p.b.Write(binary.AppendUvarint(buf[:0], x))
}

func (p *packer) add(key string, v stored) {
	p.uvarint(uint64(len(key)))
	p.b.WriteString(key)
	n := uint64(len(v.s)) << 1
	if v.digest {
		n |= 1
	}
	p.uvarint(n)
	p.b.WriteString(v.s)
	p.n++
}

// entrySize is the room add takes for key and a value of n bytes.
func entrySize(key string, n int) int {
	return uvarintLen(uint64(len(key))) + len(key) + uvarintLen(uint64(n)<<1|1) + n
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
	p.uvarint(uint64(len(key)))
	p.b.WriteString(key)
	p.uvarint(uint64(digestLen+len(projection))<<1 | 1)
	var d [digestLen]byte
	binary.LittleEndian.PutUint64(d[:], maphash.String(digestSeed, x))
	p.b.Write(d[:])
	p.b.WriteString(projection)
	p.n++
}

func (p *packer) object(gen uint64) *rawObject {
	return &rawObject{packed: p.String(), n: p.n, gen: gen}
}

// String is what was packed, in memory of its exact size: the mirror holds
// it for as long as the object lives.
func (p *packer) String() string {
	if p.b.Cap() > p.b.Len() {
		return strings.Clone(p.b.String())
	}
	return p.b.String()
}
