package dynamic

import (
	"encoding/json"
	"fmt"
	"reflect"
	"sort"
	"strings"
	"testing"
	"unsafe"

	"github.com/traefik-sd/traefik-sd/internal/coordinator"
)

// circuitListing is one circuit as Backend.AI's coordinator writes it, with
// traefik-sd's middleware, relative to the root key and sorted.
func circuitListing(t testing.TB, edit func(key, value string) string) listing {
	w := &coordinator.Writer{Authority: "worker-1", SD: &coordinator.TraefikSD{}}
	root := w.RootKey() + "/"
	var l listing
	for k, v := range w.Keys(coordinator.SampleInference(7)) {
		k = strings.TrimPrefix(k, root)
		if edit != nil {
			v = edit(k, v)
		}
		l = append(l, [2]string{k, v})
	}
	sort.Slice(l, func(i, j int) bool { return l[i][0] < l[j][0] })
	return l
}

func packedSize(s *Store) int {
	n := 0
	for _, obj := range s.raw {
		n += len(obj.packed)
	}
	return n
}

// The mirror keeps what decoding reads, and only a digest of the rest:
// AppProxy's secrets and the kilobyte of circuit JSON of which three
// fields are read are not held, the object decodes the same from what is
// kept, and a re-list or a watch event still tells a changed value from an
// unchanged one, read or not.
func TestTheMirrorKeepsWhatDecodingReads(t *testing.T) {
	l := circuitListing(t, nil)
	s := NewStore("traefik-sd")
	full := 0
	for _, kv := range l {
		full += len(kv[0]) + len(kv[1])
	}
	s.Reset(l)
	if _, errs := s.Commit(); len(errs) != 0 {
		t.Fatal(errs)
	}
	before := map[string]Middleware{}
	for name, m := range s.Middlewares {
		before[name] = *m
	}
	for id, obj := range s.raw {
		for _, secret := range []string{"7b3e0f1c9d2a4e8f", "f0e1d2c3b4a5968778695a4b3c2d1e0f", "kernel_host", "10.0.0.14\","} {
			if strings.Contains(obj.packed, secret) {
				t.Errorf("%s keeps %q", id, secret)
			}
		}
	}
	if kept := packedSize(s); kept*2 > full {
		t.Errorf("the mirror keeps %d bytes of the circuit's %d", kept, full)
	}
	// What is kept decodes the same.
	for id, obj := range s.raw {
		if id.Kind != Middlewares {
			continue
		}
		m, slim, err := s.decodeMiddleware(obj)
		first := before[id.Name]
		if err != nil || slim != "" || !reflect.DeepEqual(*m, first) {
			t.Errorf("%s decodes again to %s (slimmed again: %v), error %v; first %s", id, describe(m), slim != "", err, describe(&first))
		}
	}

	// The same listing: nothing to decode again.
	s.Reset(l)
	if n := s.Dirty(); n != 0 {
		t.Errorf("an unchanged listing leaves %d objects to decode", n)
	}
	// A secret and a circuit field traefik-sd does not read change: the
	// objects are decoded again, and nothing that is read changed.
	edited := circuitListing(t, func(k, v string) string {
		switch {
		case strings.HasSuffix(k, "/jwt_secret"):
			return "rotated"
		case strings.HasSuffix(k, "/circuit"):
			return strings.Replace(v, "10.0.0.14", "10.0.0.99", 1)
		}
		return v
	})
	s.Reset(edited)
	if n := s.Dirty(); n != 1 {
		t.Errorf("a listing with a rotated secret and a moved kernel leaves %d objects to decode, want 1", n)
	}
	if changed, errs := s.Commit(); len(changed)+len(errs) != 0 {
		t.Errorf("what traefik-sd reads did not change, yet %v changed (%v)", changed, errs)
	}
	// A circuit field that is read changes.
	renamed := circuitListing(t, func(k, v string) string {
		if strings.HasSuffix(k, "/circuit") {
			return strings.Replace(v, `"app":"llama-chat"`, `"app":"llama-chat-2"`, 1)
		}
		return v
	})
	s.Reset(renamed)
	changed, _ := s.Commit()
	if len(changed) != 1 || s.Middlewares[changed[0].Name].AppProxy.App != "llama-chat-2" {
		t.Errorf("a renamed app changed %v", changed)
	}

	// A watch event rewriting a digested value unchanged changes nothing;
	// with a new value, its object is decoded again.
	for _, kv := range renamed {
		if !strings.HasSuffix(kv[0], "/permit_hash_secret") {
			continue
		}
		id, sub, _ := SplitKey(kv[0])
		s.Put(id, sub, kv[1])
		if n := s.Dirty(); n != 0 {
			t.Errorf("an unchanged secret leaves %d objects to decode", n)
		}
		s.Put(id, sub, "another")
		if n := s.Dirty(); n != 1 {
			t.Errorf("a changed secret leaves %d objects to decode, want 1", n)
		}
	}
}

// FuzzSlimDecodesTheSame: for any middleware key and value beside those a
// real circuit writes, the object slimmed to what decoding read decodes to
// exactly what the whole object did, and each value written is still
// recognised as the one kept; the oracle is the decoding of the whole.
func FuzzSlimDecodesTheSame(f *testing.F) {
	f.Add("plugin/appproxy-traefik-plugin/circuit", `{"id":"c","app":"a","session_ids":["s2"," s1",""],"x":"`+strings.Repeat("y", 100)+`"}`)
	f.Add("plugin/APPPROXY-traefik-plugin/Circuit", `{"ID":"c2","App":"b"}`)
	f.Add("plugin/traefik-sd/labels/team", "ml-platform-and-a-long-team-name")
	f.Add("plugin/appproxy-traefik-plugin-go/sessionids/0", "00000007-0000-4000-8000-0000000000a0")
	f.Add("headers/customRequestHeaders/X-Long", strings.Repeat("h", 40))
	f.Add("plugin/appproxy-traefik-plugin/circuit", `{"id":1}`)
	f.Add("plugin/appproxy-traefik-plugin/circuit", `{"id":"a\"b\\c\u0001\n","app":"\u00e9<>&\u2028","session_ids":["x",""],"pad":"`+strings.Repeat("p", 64)+`"}`)
	f.Fuzz(func(t *testing.T, sub, v string) {
		if sub == "" {
			return
		}
		s := NewStore("traefik-sd")
		id := ObjectID{Kind: Middlewares, Name: "bai_appproxy_plugin_00000007-0000-4000-8000-000000000000"}
		for _, kv := range circuitListing(t, nil) {
			if oid, ksub, ok := SplitKey(kv[0]); ok && oid == id {
				s.Put(id, ksub, kv[1])
			}
		}
		s.Put(id, sub, v)
		obj := s.raw[id]
		m, packed, err := s.decodeMiddleware(obj)
		if err != nil || packed == "" {
			return
		}
		if len(packed) >= len(obj.packed) {
			t.Fatalf("slimmed to %d bytes from %d", len(packed), len(obj.packed))
		}
		slim := &rawObject{packed: packed, n: obj.n}
		again, slimAgain, err := s.decodeMiddleware(slim)
		if err != nil || !reflect.DeepEqual(m, again) {
			t.Fatalf("the whole decodes to %s, the slimmed to %s (error %v)", describe(m), describe(again), err)
		}
		if slimAgain != "" {
			t.Fatalf("a slimmed object slims again")
		}
		if slim.n != obj.n || !sameKeys(&s.keys, obj, slim) {
			t.Fatalf("slimming lost a key")
		}
	})
}

func describe(m *Middleware) string {
	if m == nil {
		return "nil"
	}
	s := fmt.Sprintf("SD %+v", m.SD)
	if m.AppProxy != nil {
		s += fmt.Sprintf(", AppProxy %+v", *m.AppProxy)
	}
	return s
}

// sameKeys tells whether slim keeps each of obj's keys, and each value of
// obj is the one slim keeps.
func sameKeys(t *subKeys, obj, slim *rawObject) bool {
	type kv struct {
		k string
		v stored
	}
	var kept []kv
	for k, v := range slim.all(t) {
		kept = append(kept, kv{k, v})
	}
	i := 0
	for k, v := range obj.all(t) {
		if i >= len(kept) || kept[i].k != k || !kept[i].v.is(v.s) {
			return false
		}
		i++
	}
	return i == len(kept)
}

// A router's lists decode to the mirror's own text of their values, not to
// slices of a joined copy that the router would keep alive beside it; a
// list whose values the decoder does not give back as written (spaces
// trimmed) decodes as written to the decoder.
func TestARoutersListsShareTheMirrorsText(t *testing.T) {
	s := NewStore("traefik-sd")
	id := ObjectID{Kind: Routers, Name: "r"}
	for k, v := range map[string]string{
		"rule": "Host(`h`)", "service": "svc",
		"middlewares/0": "CORSHeaders", "middlewares/1": "bai_sd_c1", "middlewares/2": "bai_appproxy_plugin_c1_go",
		"entryPoints/0": " web ", "entryPoints/1": "websecure",
	} {
		s.Put(id, k, v)
	}
	if _, errs := s.Commit(); len(errs) != 0 {
		t.Fatal(errs)
	}
	r := s.Routers["r"]
	if want := []string{"CORSHeaders", "bai_sd_c1", "bai_appproxy_plugin_c1_go"}; !reflect.DeepEqual(r.Middlewares, want) {
		t.Fatalf("middlewares %q, want %q", r.Middlewares, want)
	}
	if want := []string{"web", "websecure"}; !reflect.DeepEqual(r.EntryPoints, want) {
		t.Fatalf("entry points %q, want %q", r.EntryPoints, want)
	}
	packed := s.raw[id].packed
	for _, m := range append(r.Middlewares, r.EntryPoints[1]) {
		if !within(packed, m) {
			t.Errorf("%q is not the mirror's text", m)
		}
	}
}

// within tells whether v's bytes lie inside text's.
func within(text, v string) bool {
	start := uintptr(unsafe.Pointer(unsafe.StringData(text)))
	p := uintptr(unsafe.Pointer(unsafe.StringData(v)))
	return p >= start && p+uintptr(len(v)) <= start+uintptr(len(text))
}

// A circuit's identity read from its JSON is the mirror's own text (the
// projection it keeps), not a copy held beside it; a value the JSON
// and the projection escape has no equal text there, and stays the
// decoded copy.
func TestACircuitsIdentityIsTheMirrorsText(t *testing.T) {
	for _, app := range []string{"llama-chat", `a"b`} {
		l := circuitListing(t, func(k, v string) string {
			if !strings.HasSuffix(k, "/"+circuitKey) {
				return v
			}
			var c map[string]any
			if err := json.Unmarshal([]byte(v), &c); err != nil {
				t.Fatal(err)
			}
			c["app"], c["session_ids"] = app, []string{"sess-2", "sess-1"}
			b, err := json.Marshal(c)
			if err != nil {
				t.Fatal(err)
			}
			return string(b)
		})
		s := NewStore("traefik-sd")
		s.Reset(l)
		if _, errs := s.Commit(); len(errs) != 0 {
			t.Fatal(errs)
		}
		seen := false
		for name, m := range s.Middlewares {
			a := m.AppProxy
			if a == nil || a.App == "" {
				continue
			}
			seen = true
			want := AppProxyIdentity{CircuitID: "00000007-0000-4000-8000-000000000000", App: app, SessionIDs: []string{"sess-1", "sess-2"}}
			if !reflect.DeepEqual(*a, want) {
				t.Fatalf("%s: %+v, want %+v", name, *a, want)
			}
			packed := s.raw[ObjectID{Kind: Middlewares, Name: name}].packed
			for _, v := range append([]string{a.CircuitID, a.App}, a.SessionIDs...) {
				if in := within(packed, v); in != (v != `a"b`) {
					t.Errorf("%s: %q in the mirror's text: %v", name, v, in)
				}
			}
		}
		if !seen {
			t.Fatal("no middleware read the circuit JSON")
		}
	}
}
