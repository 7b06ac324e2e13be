package targets

import (
	"hash/maphash"
	"sync"
)

// storedTarget is a target as the Builder keeps it between changes: the
// values of its labels, and a schema that every target labelled alike
// shares. A label was two strings; the names are the same dozen in nearly
// every target, and a few values (its group, the worker, the router's
// protocol, provider and entry points) the same in most, so the schema
// holds those and the target one string for each other label: about 200
// bytes less a route target (30,000 circuits: sidecar/targets 828 → 612 B). It is never written to
// once made, so a frozen set can render it later.
type storedTarget struct {
	address string
	schema  *schema
	values  []string
}

// schema is the labels of stored targets: each one's name, and its value
// where it is one of sharedValues.
type schema []schemaLabel

type schemaLabel struct {
	name, value string
	shared      bool
	at          int // where an own value is in the target's values
}

// sharedValues are the labels whose values few targets differ in: the
// schema holds their value. Any other value is the target's own.
var sharedValues = map[string]bool{
	"service_group":                     true,
	"worker_authority":                  true,
	"worker_node":                       true,
	"__meta_traefik_router_protocol":    true,
	"__meta_traefik_router_provider":    true,
	"__meta_traefik_router_entrypoints": true,
	"__meta_traefik_server_health":      true,
	"__metrics_path__":                  true,
	"__scheme__":                        true,
}

// label is the target's i-th label.
func (t *storedTarget) label(i int) (name, value string) {
	l := &(*t.schema)[i]
	if l.shared {
		return l.name, l.value
	}
	return l.name, t.values[l.at]
}

func (t *storedTarget) target() Target {
	return Target{Address: t.address, Labels: t.appendLabels(make([]Label, 0, len(*t.schema)))}
}

// appendLabels appends the target's labels to ls.
func (t *storedTarget) appendLabels(ls []Label) []Label {
	for i := range *t.schema {
		name, value := t.label(i)
		ls = append(ls, Label{Name: name, Value: value})
	}
	return ls
}

// schemas interns the schemas that stored targets share. Builders'
// workers intern side by side, so it locks; a schema seen before is found
// under the read lock without allocating.
type schemas struct {
	mu   sync.RWMutex
	seed maphash.Seed
	by   map[uint64][]*schema
	n    int
	// max is maxSchemas and alike is false, but in the tests: alike
	// makes every schema hash the same, as if each collided with another.
	max   int
	alike bool
}

// maxSchemas bounds the table, which never shrinks: past it, a target
// holds a schema of its own, so labels named differently in every circuit
// cost about what they did before schemas were shared.
const maxSchemas = 4096

func newSchemas() *schemas {
	return &schemas{seed: maphash.MakeSeed(), by: map[uint64][]*schema{}, max: maxSchemas}
}

// store makes the stored form of ts, which it does not keep.
func (x *schemas) store(ts []Target) []storedTarget {
	if len(ts) == 0 {
		return nil
	}
	out := make([]storedTarget, len(ts))
	for i, t := range ts {
		// The schema says which values are the target's own, and where.
		s := x.intern(t.Labels)
		values := make([]string, len(t.Labels)-s.shared())
		for j, l := range *s {
			if !l.shared {
				values[l.at] = t.Labels[j].Value
			}
		}
		out[i] = storedTarget{address: t.Address, schema: s, values: values}
	}
	return out
}

// shared is how many of s's labels hold their value in s.
func (s *schema) shared() int {
	n := 0
	for _, l := range *s {
		if l.shared {
			n++
		}
	}
	return n
}

// intern returns the shared schema of ls.
func (x *schemas) intern(ls []Label) *schema {
	var h maphash.Hash
	h.SetSeed(x.seed)
	for _, l := range ls {
		h.WriteString(l.Name)
		h.WriteByte(0)
		if sharedValues[l.Name] {
			h.WriteString(l.Value)
		}
		h.WriteByte(0)
	}
	key := h.Sum64()
	if x.alike {
		key = 0
	}
	x.mu.RLock()
	s := x.find(key, ls)
	x.mu.RUnlock()
	if s != nil {
		return s
	}
	own, at := make(schema, len(ls)), 0
	for i, l := range ls {
		// A name or value may be a slice of what was read from etcd: a
		// copy, so that the table does not keep that memory alive.
		own[i] = schemaLabel{name: clone(l.Name), shared: sharedValues[l.Name]}
		if own[i].shared {
			own[i].value = clone(l.Value)
		} else {
			own[i].at = at
			at++
		}
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	if s := x.find(key, ls); s != nil {
		return s
	}
	if x.n < x.max {
		x.by[key] = append(x.by[key], &own)
		x.n++
	}
	return &own
}

func (x *schemas) find(key uint64, ls []Label) *schema {
	for _, s := range x.by[key] {
		if s.fits(ls) {
			return s
		}
	}
	return nil
}

// fits tells whether ls are s's labels: the same names, and the same
// values where s holds them.
func (s *schema) fits(ls []Label) bool {
	if len(*s) != len(ls) {
		return false
	}
	for i, l := range ls {
		if (*s)[i].name != l.Name || ((*s)[i].shared && (*s)[i].value != l.Value) {
			return false
		}
	}
	return true
}

func clone(s string) string { return string(append([]byte(nil), s...)) }
