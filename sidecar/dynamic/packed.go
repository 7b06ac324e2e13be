package dynamic

import (
	"encoding/binary"
	"iter"
	"sort"
)

// rawObject is the keys of one object as etcd holds them, packed into one
// string sorted by key: for each key, its length, the key, the value's
// length, the value (lengths as uvarints). A tree of 100,000 circuits holds
// about 2 million keys; one string per object instead of a map and two
// strings per key is most of what makes that mirror affordable, and packing
// copies the bytes, so the etcd client's response buffers are not kept alive.
type rawObject struct {
	packed string
	n      int // keys
	gen    uint64
}

// all yields the object's keys and values in key order, without allocating.
func (o *rawObject) all() iter.Seq2[string, string] {
	return func(yield func(string, string) bool) {
		for p := o.packed; len(p) > 0; {
			var k, v string
			k, p = cut(p)
			v, p = cut(p)
			if !yield(k, v) {
				return
			}
		}
	}
}

// cut reads one length-prefixed string off the front of p.
func cut(p string) (s, rest string) {
	var n uint64
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
	p = p[i+1:]
	return p[:n], p[n:]
}

// get returns a key's value.
func (o *rawObject) get(key string) (string, bool) {
	for k, v := range o.all() {
		if k == key {
			return v, true
		}
	}
	return "", false
}

// with returns the object with key set to value (deleted when del).
func (o *rawObject) with(key, value string, del bool) *rawObject {
	type pair struct{ k, v string }
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
		pairs[i] = pair{key, value}
	}
	var p packer
	for _, kv := range pairs {
		p.add(kv.k, kv.v)
	}
	return p.object(o.gen)
}

// packer builds a rawObject from keys given in ascending order.
type packer struct {
	b []byte
	n int
}

func (p *packer) add(key, value string) {
	p.b = binary.AppendUvarint(p.b, uint64(len(key)))
	p.b = append(p.b, key...)
	p.b = binary.AppendUvarint(p.b, uint64(len(value)))
	p.b = append(p.b, value...)
	p.n++
}

func (p *packer) object(gen uint64) *rawObject {
	return &rawObject{packed: string(p.b), n: p.n, gen: gen}
}
