package dynamic

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"reflect"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/traefik-sd/traefik-sd/internal/fanout"
	"github.com/traefik-sd/traefik-sd/plugin"
	"github.com/traefik-sd/traefik-sd/sidecar/kv"
	"github.com/traefik-sd/traefik-sd/sidecar/redact"
	"github.com/traefik-sd/traefik-sd/sidecar/serverurl"
)

// Kind is the kind of a configuration object. It is a number and not its
// name: an ObjectID keys the mirror, and each router's list of what it
// read holds them, about seven a circuit; with a kind of one byte instead
// of a string of sixteen, an ObjectID is 24 bytes instead of 32.
type Kind uint8

// The kinds traefik-sd decodes: HTTP routers, services and middlewares, and
// TCP routers and services (Traefik has no TCP plugin middleware). Other
// kinds and protocols are ignored. They are numbered in the order of their
// names, the order Commit returns objects in.
const (
	Middlewares Kind = iota + 1
	Routers
	Services
	TCPRouters
	TCPServices
)

// OtherKinds is the first kind a package may give to inputs of its own
// that it keys beside objects (the targets' readers' index does).
const OtherKinds Kind = 64

func (k Kind) String() string {
	switch k {
	case Middlewares:
		return "middlewares"
	case Routers:
		return "routers"
	case Services:
		return "services"
	case TCPRouters:
		return "tcp/routers"
	case TCPServices:
		return "tcp/services"
	}
	return "kind(" + strconv.Itoa(int(k)) + ")"
}

// Backend.AI's plugin keys (BACKENDAI.md).
const (
	appProxyGoPlugin   = "appproxy-traefik-plugin-go"
	appProxyWASMPlugin = "appproxy-traefik-plugin"
	// circuitKey is the WASM middleware's circuit JSON.
	circuitKey = "plugin/" + appProxyWASMPlugin + "/circuit"
)

// ObjectID names one router, service or middleware.
type ObjectID struct {
	Kind Kind
	Name string
}

func (id ObjectID) String() string { return kindPrefix(id.Kind) + id.Name }

// Store is the decoded HTTP configuration below one root key. It is not safe
// for concurrent use: one goroutine (the etcd watcher's consumer) owns it.
type Store struct {
	pluginName string
	raw        map[ObjectID]*rawObject
	gen        uint32 // listing generation, for Reset
	dirty      map[ObjectID]bool
	// held is the last object's keys of a listing's page, kept until the
	// next page says whether more of its keys follow (see ResetPage).
	held []heldKey
	// fresh are the objects a listing's pages changed since the last
	// decoding ahead; ahead holds those decodings, each with the raw object
	// it was made from, until Commit (see decodeAhead).
	fresh    []ObjectID
	ahead    map[ObjectID]aheadDecoding
	aheadMin int // the fewest fresh objects decoded ahead; 0 is parallelMin
	keys     subKeys

	Routers     map[string]*Router
	Services    map[string]*Service
	Middlewares map[string]*Middleware
	TCPRouters  map[string]*Router
	TCPServices map[string]*Service
	// Errors holds the objects that could not be decoded, with the reason.
	Errors map[ObjectID]error
}

// NewStore makes an empty store. pluginName is traefik-sd's plugin key in
// the middleware configuration (plugin/<pluginName>/...).
func NewStore(pluginName string) *Store {
	return &Store{
		pluginName:  pluginName,
		raw:         map[ObjectID]*rawObject{},
		dirty:       map[ObjectID]bool{},
		Routers:     map[string]*Router{},
		Services:    map[string]*Service{},
		Middlewares: map[string]*Middleware{},
		TCPRouters:  map[string]*Router{},
		TCPServices: map[string]*Service{},
		Errors:      map[ObjectID]error{},
	}
}

// SplitKey finds the object a key (relative to the root key) belongs to, and
// the key below it. ok is false for keys traefik-sd does not read. It does
// not allocate: it runs for every key of every listing.
func SplitKey(rel string) (id ObjectID, sub string, ok bool) {
	i := strings.IndexByte(rel, '/')
	if i < 0 {
		return ObjectID{}, "", false
	}
	tcp := false
	switch p := rel[:i]; {
	case strings.EqualFold(p, "http"):
	case strings.EqualFold(p, "tcp"):
		tcp = true
	default:
		return ObjectID{}, "", false
	}
	rest := rel[i+1:]
	j := strings.IndexByte(rest, '/')
	if j < 0 {
		return ObjectID{}, "", false
	}
	var kind Kind
	switch k := rest[:j]; {
	case strings.EqualFold(k, "routers"):
		kind = Routers
		if tcp {
			kind = TCPRouters
		}
	case strings.EqualFold(k, "services"):
		kind = Services
		if tcp {
			kind = TCPServices
		}
	case strings.EqualFold(k, "middlewares") && !tcp:
		kind = Middlewares
	default:
		return ObjectID{}, "", false
	}
	rest = rest[j+1:]
	k := strings.IndexByte(rest, '/')
	if k <= 0 || k == len(rest)-1 {
		return ObjectID{}, "", false
	}
	return ObjectID{Kind: kind, Name: rest[:k]}, rest[k+1:], true
}

// Put records a key's value; the object is decoded again at the next Commit.
func (s *Store) Put(id ObjectID, sub, value string) {
	obj := s.raw[id]
	if obj == nil {
		id = own(id)
		obj = &rawObject{gen: s.gen}
	} else if old, ok := obj.get(&s.keys, sub); ok && old.is(value) {
		return
	}
	s.raw[id] = obj.with(&s.keys, sub, value, false)
	s.dirty[id] = true
}

// Delete removes a key.
func (s *Store) Delete(id ObjectID, sub string) {
	obj := s.raw[id]
	if obj == nil {
		return
	}
	if _, ok := obj.get(&s.keys, sub); !ok {
		return
	}
	if obj = obj.with(&s.keys, sub, "", true); obj.n == 0 {
		delete(s.raw, id)
	} else {
		s.raw[id] = obj
	}
	s.dirty[id] = true
}

// Commit decodes the objects changed since the last Commit. It returns the
// objects whose decoded content changed (an identical rewrite changes nothing)
// and the decoding errors found now, each naming its object; both are in
// ObjectID order.
func (s *Store) Commit() (changed []ObjectID, errs []error) {
	return s.commit(runtime.GOMAXPROCS(0), parallelMin)
}

// parallelMin is the fewest changed objects decoded in parallel. A watch
// event changes a handful (a coordinator transaction of five circuits,
// about thirty), a listing hundreds of thousands, where the serial decode
// was most of a cold start. On two cores (BenchmarkCommitCold) parallel
// loses at 13 objects and breaks even near 45; below 256 a serial commit
// takes under about 3 ms, so the most goroutines could save there is a
// millisecond, paid for with a core taken from Traefik beside us.
const parallelMin = 256

// decoded is one object's decoding, made by a worker and applied in order;
// slim, when not empty, is the object's keys packed anew with what it did
// not read kept as digests.
type decoded struct {
	value interface{}
	err   error
	slim  string
}

// aheadDecoding is an object decoded while a listing's pages came.
type aheadDecoding struct {
	raw *rawObject
	decoded
}

// commit decodes with up to workers goroutines once at least threshold objects
// changed; a worker count of 1 is the serial path the tests compare with.
// An object decoded ahead is not decoded again unless it changed since.
func (s *Store) commit(workers, threshold int) (changed []ObjectID, errs []error) {
	ahead := s.ahead
	s.ahead, s.fresh = nil, nil
	if len(ahead) == 0 && (workers < 2 || len(s.dirty) < threshold) {
		// The ids of a small commit stay on the stack: a watch event's
		// commit allocates no more than its decoding.
		var buf [16]ObjectID
		return s.applyAll(s.dirtyIDs(buf[:0]), nil)
	}
	ids := s.dirtyIDs(make([]ObjectID, 0, len(s.dirty)))
	results := make([]decoded, len(ids))
	var rest []ObjectID
	var at []int
	for i, id := range ids {
		// The same raw object decodes the same: a decoding made ahead
		// holds while the object has not been written since.
		if a, ok := ahead[id]; ok && a.raw == s.raw[id] {
			results[i] = a.decoded
			continue
		}
		rest, at = append(rest, id), append(at, i)
	}
	if workers < 2 || len(rest) < threshold {
		workers = 1
	}
	for j, d := range s.decodeAll(rest, workers) {
		results[at[j]] = d
	}
	return s.applyAll(ids, results)
}

// decodeAhead decodes the objects a listing's pages changed so far, once
// there are enough of them for the workers: on a cold start, every object,
// a page at a time, and Commit at the last page only applies them. The
// listing's consumer decodes while the watcher reads the next page, so the
// decoding overlaps the wait for etcd. Nothing is applied: the decoded
// configuration stays the last one until Commit.
func (s *Store) decodeAhead(workers int) {
	least := s.aheadMin
	if least <= 0 {
		least = parallelMin
	}
	if len(s.fresh) < least {
		return
	}
	ids := s.fresh
	raws := make([]*rawObject, len(ids))
	for i, id := range ids {
		raws[i] = s.raw[id]
	}
	if s.ahead == nil {
		s.ahead = make(map[ObjectID]aheadDecoding, len(ids))
	}
	for i, d := range s.decodeAll(ids, workers) {
		s.ahead[ids[i]] = aheadDecoding{raw: raws[i], decoded: d}
	}
	s.fresh = ids[:0]
}

// dirtyIDs appends the changed objects to ids, in ObjectID order: the
// order of the changes and errors Commit returns, whatever the map's.
func (s *Store) dirtyIDs(ids []ObjectID) []ObjectID {
	for id := range s.dirty {
		ids = append(ids, id)
	}
	slices.SortFunc(ids, compareIDs)
	return ids
}

// applyAll stores the decodings of ids in order, decoding each in turn when
// results is nil, and ends the commit.
func (s *Store) applyAll(ids []ObjectID, results []decoded) (changed []ObjectID, errs []error) {
	for i, id := range ids {
		var d decoded
		if results != nil {
			d = results[i]
		} else {
			d = s.decodeOne(id)
		}
		if d.slim != "" {
			// It decodes the same. The object is the one decoded: a
			// decoding made ahead is used only while it is (commit).
			s.raw[id].packed = d.slim
		}
		if s.apply(id, d.value, d.err) {
			changed = append(changed, id)
		}
		if err := s.Errors[id]; err != nil {
			errs = append(errs, err)
		}
	}
	s.dirty = map[ObjectID]bool{}
	return changed, errs
}

// decodeAll decodes ids concurrently into a slice in the same order. The
// ids come sorted by kind, and kinds differ in cost (a middleware is a
// plugin configuration, a router four strings), so workers take small
// chunks in turn rather than one fixed share each. Nothing writes s.raw
// while they read it: the store's one owner is waiting here.
func (s *Store) decodeAll(ids []ObjectID, workers int) []decoded {
	results := make([]decoded, len(ids))
	fanout.Each(len(ids), workers, func() func(int) {
		return func(i int) { results[i] = s.decodeOne(ids[i]) }
	})
	return results
}

func compareIDs(a, b ObjectID) int {
	if c := cmp.Compare(a.Kind, b.Kind); c != 0 {
		return c
	}
	return strings.Compare(a.Name, b.Name)
}

// Len is the number of objects with keys, decoded or not.
func (s *Store) Len() int { return len(s.raw) }

// decodeOne decodes one object as its keys are now; an object without keys
// decodes to nil. It reads the store and writes nothing, so that workers
// can run it side by side; a decoder panic is recovered in decodeObject, on
// the worker's own goroutine.
func (s *Store) decodeOne(id ObjectID) decoded {
	obj := s.raw[id]
	if obj == nil || obj.n == 0 {
		return decoded{}
	}
	value, slim, err := s.decodeObject(id, obj)
	if err != nil {
		return decoded{err: &kv.Error{Key: id.String(), Err: err}}
	}
	return decoded{value: value, slim: slim}
}

// apply stores one object's decoding and reports whether its decoded form
// changed.
func (s *Store) apply(id ObjectID, value interface{}, err error) bool {
	delete(s.Errors, id)
	if err != nil {
		s.Errors[id] = err
		value = nil
	}
	switch id.Kind {
	case Routers:
		return setIfChanged(s.Routers, id.Name, value)
	case Services:
		return setIfChanged(s.Services, id.Name, value)
	case TCPRouters:
		return setIfChanged(s.TCPRouters, id.Name, value)
	case TCPServices:
		return setIfChanged(s.TCPServices, id.Name, value)
	default:
		return setIfChanged(s.Middlewares, id.Name, value)
	}
}

func setIfChanged[T any](m map[string]*T, name string, value interface{}) bool {
	old, had := m[name]
	if value == nil {
		delete(m, name)
		return had
	}
	v := value.(*T)
	if had && reflect.DeepEqual(old, v) {
		return false
	}
	m[name] = v
	return true
}

func (s *Store) pairsOf(obj *rawObject, prefix string) []kv.Pair {
	pairs := make([]kv.Pair, 0, obj.n)
	for k, v := range obj.all(&s.keys) {
		if prefix != "" {
			if !hasPrefixFold(k, prefix) {
				continue
			}
			k = k[len(prefix):]
		}
		pairs = append(pairs, kv.Pair{Key: k, Value: v.text()})
	}
	return pairs
}

func (s *Store) decodeObject(id ObjectID, obj *rawObject) (value interface{}, slim string, err error) {
	// A decoder panic on some odd input must cost one object, not the
	// process. Its message might quote the input, as decoders' do.
	defer func() {
		if p := recover(); p != nil {
			value, slim, err = nil, "", fmt.Errorf("decoder panicked: %s", redact.Quoted(fmt.Sprint(p)))
		}
	}()
	for k, v := range obj.all(&s.keys) {
		if !utf8.ValidString(v.text()) {
			return nil, "", fmt.Errorf("%s: value is not valid UTF-8", k)
		}
	}
	switch id.Kind {
	case Routers, TCPRouters:
		r := &Router{}
		pairs := s.pairsOf(obj, "")
		if err := kv.Decode(pairs, r); err != nil {
			return nil, "", err
		}
		shareList(r.Middlewares, pairs, "middlewares")
		shareList(r.EntryPoints, pairs, "entrypoints")
		return r, "", nil
	case Services:
		svc := &Service{}
		if err := kv.Decode(s.pairsOf(obj, ""), svc); err != nil {
			return nil, "", err
		}
		if svc.LoadBalancer != nil {
			for i, srv := range svc.LoadBalancer.Servers {
				if serverurl.Accepted(srv.URL) {
					continue
				}
				if err := plugin.CheckServerURL(srv.URL); err != nil {
					return nil, "", fmt.Errorf("loadBalancer/servers/[%d]/url: %w", i, err)
				}
			}
		}
		return svc, "", nil
	case TCPServices:
		svc := &Service{}
		if err := kv.Decode(s.pairsOf(obj, ""), svc); err != nil {
			return nil, "", err
		}
		if svc.LoadBalancer != nil {
			for i, srv := range svc.LoadBalancer.Servers {
				if err := checkAddress(srv.Address); err != nil {
					return nil, "", fmt.Errorf("loadBalancer/servers/[%d]/address: %w", i, err)
				}
			}
		}
		return svc, "", nil
	default:
		return s.decodeMiddleware(obj)
	}
}

// decodeMiddleware reads only the plugin sections traefik-sd understands;
// any other middleware decodes to an empty, harmless value. It also returns
// the object's keys packed anew with what it did not read kept as digests,
// and the circuit JSON as a digest and the fields read from it; "" when
// that would keep as much.
func (s *Store) decodeMiddleware(obj *rawObject) (*Middleware, string, error) {
	m := &Middleware{}
	sdPrefix, goPrefix := "plugin/"+s.pluginName+"/", "plugin/"+appProxyGoPlugin+"/"
	if pairs := s.pairsOf(obj, sdPrefix); len(pairs) > 0 {
		cfg := plugin.CreateConfig()
		if err := kv.Decode(pairs, cfg); err != nil {
			return nil, "", fmt.Errorf("plugin/%s/%w", s.pluginName, err)
		}
		if err := cfg.Validate(); err != nil {
			return nil, "", fmt.Errorf("plugin/%s/%w", s.pluginName, err)
		}
		// In place: a copy would leave the decoded one as garbage the size
		// of the kept one, among them in a cold start's spans.
		*cfg = cfg.Described()
		m.SD = cfg
	}
	if pairs := s.pairsOf(obj, goPrefix); len(pairs) > 0 {
		var goCfg struct {
			ID         string
			SessionIDs []string
		}
		if err := kv.Decode(pairs, &goCfg); err != nil {
			return nil, "", fmt.Errorf("plugin/%s/%w", appProxyGoPlugin, err)
		}
		m.AppProxy = &AppProxyIdentity{CircuitID: goCfg.ID, SessionIDs: nonEmpty(goCfg.SessionIDs)}
	}
	// The slimmed keys are packed only when they keep less, which a first
	// pass tells with their exact size: one allocation, on a cold start
	// once per circuit.
	size, whole := 0, len(obj.packed)
	var projections []string
	for k, v := range obj.all(&s.keys) {
		if !strings.EqualFold(k, circuitKey) {
			if s.digests(k, v, sdPrefix, goPrefix) {
				size += s.keys.entrySize(k, digestLen)
			} else {
				size += s.keys.entrySize(k, len(v.s))
			}
			continue
		}
		var circuit circuitFields
		if err := json.Unmarshal([]byte(v.text()), &circuit); err != nil {
			return nil, "", fmt.Errorf("%s: circuit JSON: %s", k, redact.JSONError(err))
		}
		if m.AppProxy == nil {
			m.AppProxy = &AppProxyIdentity{}
		}
		if m.AppProxy.CircuitID == "" {
			m.AppProxy.CircuitID = circuit.ID
		}
		if len(m.AppProxy.SessionIDs) == 0 {
			m.AppProxy.SessionIDs = nonEmpty(circuit.SessionIDs)
		}
		m.AppProxy.App = circuit.App
		// What is read of it, as JSON that reads the same; "" keeps it whole.
		projection := ""
		if !v.digest {
			if p := circuit.appendJSON(nil); digestLen+len(p) < len(v.s) {
				projection = string(p)
			}
		}
		if projection != "" {
			size += s.keys.entrySize(k, digestLen+len(projection))
		} else {
			size += s.keys.entrySize(k, len(v.s))
		}
		projections = append(projections, projection)
	}
	text, slim := obj.packed, ""
	if size < whole {
		slim = s.slim(obj, size, projections, sdPrefix, goPrefix)
		text = slim
	}
	if a := m.AppProxy; a != nil {
		// Decoded from the circuit JSON, they are copies of bytes the
		// mirror keeps (in its projection): 64 bytes a circuit, in a size
		// class the decoding's garbage shares. From the Go plugin's keys,
		// they are the old packing's text, which they would keep alive.
		a.CircuitID, a.App = sameText(text, a.CircuitID), sameText(text, a.App)
		for i, id := range a.SessionIDs {
			a.SessionIDs[i] = sameText(text, id)
		}
	}
	return m, slim, nil
}

// sameText returns s as a run of text that equals it, where text has one.
func sameText(text, s string) string {
	if s == "" {
		return s
	}
	if i := strings.Index(text, s); i >= 0 {
		return text[i : i+len(s)]
	}
	return s
}

// slim packs obj's keys in size bytes, as decodeMiddleware's first pass
// sized them: the circuit JSON as its digest and projection (in key order;
// "" keeps one whole), every other value it does not read as a digest.
func (s *Store) slim(obj *rawObject, size int, projections []string, sdPrefix, goPrefix string) string {
	// Run by decoding workers: it only looks keys up.
	slim := packer{keys: &s.keys}
	slim.b.Grow(size)
	for k, v := range obj.all(&s.keys) {
		switch {
		case strings.EqualFold(k, circuitKey):
			if projections[0] != "" {
				slim.addDigest(k, v.s, projections[0])
			} else {
				slim.add(k, v)
			}
			projections = projections[1:]
		case s.digests(k, v, sdPrefix, goPrefix):
			slim.addDigest(k, v.s, "")
		default:
			slim.add(k, v)
		}
	}
	return slim.String()
}

// digests tells whether a middleware's value is one decoding does not read
// and a digest would keep in less room.
func (s *Store) digests(k string, v stored, sdPrefix, goPrefix string) bool {
	return !v.digest && len(v.s) > digestLen && !hasPrefixFold(k, sdPrefix) && !hasPrefixFold(k, goPrefix)
}

// circuitFields are the fields traefik-sd reads of the circuit JSON.
type circuitFields struct {
	ID         string   `json:"id"`
	App        string   `json:"app"`
	SessionIDs []string `json:"session_ids"`
}

// appendJSON appends the fields as JSON that decodes to them again, as
// encoding/json's Marshal would but without reflection (a cold start makes
// one per circuit). The strings are valid UTF-8: decoding made them.
func (c circuitFields) appendJSON(b []byte) []byte {
	b = append(b, `{"id":`...)
	b = appendJSONString(b, c.ID)
	b = append(b, `,"app":`...)
	b = appendJSONString(b, c.App)
	b = append(b, `,"session_ids":`...)
	if c.SessionIDs == nil {
		b = append(b, "null"...)
	} else {
		b = append(b, '[')
		for i, id := range c.SessionIDs {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendJSONString(b, id)
		}
		b = append(b, ']')
	}
	return append(b, '}')
}

func appendJSONString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '"' || c == '\\':
			b = append(b, '\\', c)
		case c < 0x20:
			b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
		default:
			b = append(b, c)
		}
	}
	return append(b, '"')
}

// hasPrefixFold is strings.HasPrefix ignoring case, with a key below the
// prefix, as pairsOf selects a plugin's keys.
func hasPrefixFold(k, prefix string) bool {
	return len(k) > len(prefix) && strings.EqualFold(k[:len(prefix)], prefix)
}

// checkAddress accepts a TCP server's host:port, as Traefik dials it.
func checkAddress(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil || host == "" {
		return errors.New("want host:port")
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return errors.New("port out of range")
	}
	return nil
}

// shareList points each element of a decoded list at the value of the key
// it came from (name/0, name/1, … in the order kv.ToNode lists them), where
// they are equal. The decoder splits a list that kv.ToNode joined into one
// string, so each element was a slice of that copy, kept alive beside the
// mirror's own text of the same values: about 90 bytes a circuit for a
// router's middlewares.
func shareList(list []string, pairs []kv.Pair, name string) {
	i := 0
	for _, p := range pairs {
		base, index, ok := strings.Cut(p.Key, "/")
		if !ok || !strings.EqualFold(base, name) || !kv.IsIndex(index) {
			continue
		}
		if i < len(list) && list[i] == p.Value {
			list[i] = p.Value
		}
		i++
	}
}

func nonEmpty(ids []string) []string {
	var out []string
	for _, id := range ids {
		if id = strings.TrimSpace(id); id != "" {
			out = append(out, id)
		}
	}
	sort.Strings(out)
	return out
}
