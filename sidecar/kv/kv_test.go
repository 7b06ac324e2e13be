package kv_test

import (
	"fmt"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/traefik-sd/traefik-sd/sidecar/kv"
	"github.com/traefik/paerser/types"
)

type server struct{ URL string }

type loadBalancer struct {
	Servers     []server
	HealthCheck *struct{ Path string }
}

type service struct {
	LoadBalancer *loadBalancer
}

type router struct {
	Service     string
	Middlewares []string
	Priority    int
}

// typed has a field of each kind paerser parses, for the error tests.
type typed struct {
	Weights  []int
	Checks   []struct{ Enabled bool }
	Limits   map[string]float64
	Every    time.Duration
	Interval types.Duration
	Port     uint16
}

func TestDecode(t *testing.T) {
	testCases := []struct {
		desc    string
		pairs   []kv.Pair
		into    func() interface{}
		want    interface{}
		wantErr string
	}{
		{
			desc: "Backend.AI service with a health check; unknown keys pruned",
			pairs: []kv.Pair{
				{"loadBalancer/servers/0/url", "http://10.0.1.21:8000/"},
				{"loadBalancer/servers/1/url", "http://10.0.1.22:8000/"},
				{"loadBalancer/healthCheck/path", "/health"},
				{"loadBalancer/healthCheck/interval", "10s"},
				{"loadBalancer/passHostHeader", "true"},
			},
			into: func() interface{} { return &service{} },
			want: &service{LoadBalancer: &loadBalancer{
				Servers:     []server{{"http://10.0.1.21:8000/"}, {"http://10.0.1.22:8000/"}},
				HealthCheck: &struct{ Path string }{"/health"},
			}},
		},
		{
			desc: "keys match fields ignoring case, and merge",
			pairs: []kv.Pair{
				{"LoadBalancer/Servers/0/URL", "http://a/"},
				{"loadbalancer/servers/1/url", "http://b/"},
			},
			into: func() interface{} { return &service{} },
			want: &service{LoadBalancer: &loadBalancer{Servers: []server{{"http://a/"}, {"http://b/"}}}},
		},
		{
			desc: "scalar lists join in key text order, as Traefik does",
			pairs: []kv.Pair{
				{"middlewares/0", "a"}, {"middlewares/1", "b"}, {"middlewares/10", "k"}, {"middlewares/2", "c"},
				{"service", "s"}, {"priority", "42"}, {"tls", ""},
			},
			into: func() interface{} { return &router{} },
			want: &router{Service: "s", Middlewares: []string{"a", "b", "k", "c"}, Priority: 42},
		},
		{
			desc:    "a value of the wrong type: the key is named, never the value",
			pairs:   []kv.Pair{{"priority", "s3cr3t"}},
			into:    func() interface{} { return &router{} },
			wantErr: "priority: not an integer",
		},
		{
			desc:    "a value too large for its type",
			pairs:   []kv.Pair{{"Priority", "99999999999999999999"}},
			into:    func() interface{} { return &router{} },
			wantErr: "Priority: not an integer",
		},
		{
			desc:    "a list item of the wrong type",
			pairs:   []kv.Pair{{"weights/0", "1"}, {"weights/1", "s3cr3t"}},
			into:    func() interface{} { return &typed{} },
			wantErr: "weights: an item is not an integer",
		},
		{
			desc:    "a value deep in a list of sections",
			pairs:   []kv.Pair{{"checks/0/enabled", "false"}, {"checks/1/enabled", "s3cr3t"}},
			into:    func() interface{} { return &typed{} },
			wantErr: "checks/[1]/enabled: not true or false",
		},
		{
			desc:    "a map value",
			pairs:   []kv.Pair{{"limits/a", "1.5"}, {"limits/b", "s3cr3t"}},
			into:    func() interface{} { return &typed{} },
			wantErr: "limits/b: not a number",
		},
		{
			desc:    "a duration",
			pairs:   []kv.Pair{{"every", "s3cr3t"}},
			into:    func() interface{} { return &typed{} },
			wantErr: "every: not a duration",
		},
		{
			desc:  "durations as paerser reads them: seconds for its own type, or Go's notation",
			pairs: []kv.Pair{{"every", "2s"}, {"interval", "3"}, {"port", "8080"}},
			into:  func() interface{} { return &typed{} },
			want:  &typed{Every: 2 * time.Second, Interval: types.Duration(3 * time.Second), Port: 8080},
		},
		{
			desc:    "a section written as a scalar",
			pairs:   []kv.Pair{{"loadBalancer", "http://x/"}},
			into:    func() interface{} { return &service{} },
			wantErr: "cannot be a standalone element",
		},
		{
			desc:  "a section whose every key is unknown decodes to nothing",
			pairs: []kv.Pair{{"loadBalancer/sticky/cookie/name", "x"}},
			into:  func() interface{} { return &service{} },
			want:  &service{},
		},
		{
			desc:  "an absurd index is a list position, as Traefik reads it: one server, no huge slice",
			pairs: []kv.Pair{{"loadBalancer/servers/99999999999999999999/url", "http://x/"}},
			into:  func() interface{} { return &service{} },
			want:  &service{LoadBalancer: &loadBalancer{Servers: []server{{"http://x/"}}}},
		},
	}
	for _, test := range testCases {
		t.Run(test.desc, func(t *testing.T) {
			got := test.into()
			err := kv.Decode(test.pairs, got)
			if test.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), test.wantErr) {
					t.Fatalf("error %v, want one containing %q", err, test.wantErr)
				}
				// Values come from etcd and may be secrets: an error names
				// the key and says what is wrong, never the value.
				for _, p := range test.pairs {
					if len(p.Value) > 5 && strings.Contains(err.Error(), p.Value) {
						t.Errorf("error %q quotes the value %q", err, p.Value)
					}
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, test.want) {
				t.Errorf("got %+v, want %+v", got, test.want)
			}
		})
	}
}

// encodeService and encodeRouter write a decoded value back as Traefik's
// KV layout, for the fuzzer's oracle. Indexes are zero-padded: list items
// are read in key text order (as Traefik reads them), so "10" would come
// before "2".
func encodeService(s service) []kv.Pair {
	var out []kv.Pair
	if s.LoadBalancer == nil {
		return out
	}
	for i, srv := range s.LoadBalancer.Servers {
		out = append(out, kv.Pair{Key: "loadBalancer/servers/" + fmt.Sprintf("%06d", i) + "/url", Value: srv.URL})
	}
	if s.LoadBalancer.HealthCheck != nil {
		out = append(out, kv.Pair{Key: "loadBalancer/healthCheck/path", Value: s.LoadBalancer.HealthCheck.Path})
	}
	return out
}

func encodeRouter(r router) []kv.Pair {
	out := []kv.Pair{{Key: "service", Value: r.Service}, {Key: "priority", Value: strconv.Itoa(r.Priority)}}
	for i, m := range r.Middlewares {
		out = append(out, kv.Pair{Key: "middlewares/" + fmt.Sprintf("%06d", i), Value: m})
	}
	return out
}

// said lists the values the input gives one field, found by its key (names
// ignoring case, one trailing slash dropped, as Decode reads keys), for the
// fuzzer's oracle. A key another pair shadows (the same key, or one inside
// or around it) says nothing sure, so it is left out.
func said(pairs []kv.Pair, field *regexp.Regexp) []string {
	norm := func(k string) string { return strings.ToLower(strings.TrimSuffix(k, "/")) }
	var out []string
	for i, p := range pairs {
		key := norm(p.Key)
		if !field.MatchString(key) {
			continue
		}
		shadowed := false
		for j, q := range pairs {
			other := norm(q.Key)
			if j != i && (other == key || strings.HasPrefix(other, key+"/") || strings.HasPrefix(key, other+"/")) {
				shadowed = true
			}
		}
		if !shadowed {
			out = append(out, p.Value)
		}
	}
	return out
}

var (
	serverURLKey   = regexp.MustCompile(`^loadbalancer/servers/[0-9]+/url$`)
	healthPathKey  = regexp.MustCompile(`^loadbalancer/healthcheck/path$`)
	routerService  = regexp.MustCompile(`^service$`)
	routerPriority = regexp.MustCompile(`^priority$`)
)

// FuzzDecode: garbage gets an error, never a panic; and what is accepted
// means what it says: every value the input gives a field is that field's
// value, and written back in Traefik's layout and decoded again, it is the
// same value (so no key was dropped, half-read or misplaced).
func FuzzDecode(f *testing.F) {
	f.Add("loadBalancer/servers/0/url", "http://10.0.1.21:8000/", "loadBalancer/healthCheck/path", "/health")
	f.Add("loadBalancer", "x", "loadBalancer/servers/0", "y")
	f.Add("loadBalancer/servers/00/url", "a", "LOADBALANCER/SERVERS/0/URL", "b")
	f.Add("/", "", "//", "")
	f.Add("middlewares/0", "a", "middlewares/1", "b")
	f.Fuzz(func(t *testing.T, k1, v1, k2, v2 string) {
		pairs := []kv.Pair{{k1, v1}, {k2, v2}}
		var svc service
		if kv.Decode(pairs, &svc) == nil {
			// An empty section or list says nothing; nil and empty are the same.
			if lb := svc.LoadBalancer; lb != nil && len(lb.Servers) == 0 {
				lb.Servers = nil
				if lb.HealthCheck == nil {
					svc.LoadBalancer = nil
				}
			}
			lb := svc.LoadBalancer
			if lb == nil {
				lb = &loadBalancer{}
			}
			for _, url := range said(pairs, serverURLKey) {
				found := false
				for _, srv := range lb.Servers {
					found = found || srv.URL == url
				}
				if !found {
					t.Fatalf("%v decoded to %+v: the server URL %q is lost", pairs, lb, url)
				}
			}
			for _, path := range said(pairs, healthPathKey) {
				if lb.HealthCheck == nil || lb.HealthCheck.Path != path {
					t.Fatalf("%v decoded to %+v: the health check path %q is lost", pairs, lb, path)
				}
			}
			var again service
			if err := kv.Decode(encodeService(svc), &again); err != nil || !reflect.DeepEqual(svc, again) {
				t.Fatalf("service %+v written back decodes to %+v (%v)", svc, again, err)
			}
		}
		var r router
		if kv.Decode(pairs, &r) == nil {
			// An empty name references nothing (paerser trims list items,
			// and reads an empty list value as no list).
			var named []string
			for _, m := range r.Middlewares {
				if m != "" {
					named = append(named, m)
				}
			}
			r.Middlewares = named
			for _, v := range said(pairs, routerService) {
				if r.Service != v {
					t.Fatalf("%v decoded to %+v: the service %q is lost", pairs, r, v)
				}
			}
			for _, v := range said(pairs, routerPriority) {
				if n, err := strconv.ParseInt(v, 10, 64); err != nil || int64(r.Priority) != n {
					t.Fatalf("%v decoded to %+v: the priority %q is lost", pairs, r, v)
				}
			}
			var again router
			if err := kv.Decode(encodeRouter(r), &again); err != nil || !reflect.DeepEqual(r, again) {
				t.Fatalf("router %+v written back decodes to %+v (%v)", r, again, err)
			}
		}
	})
}

// TestATreesNodesAreNotOneAllocationEach: ToNode's nodes are short-lived,
// and one allocation each (136 bytes) shared the spans of what decoding
// keeps of that size; a cold start's collections left those spans partly
// used (BENCHMARKS.md's heap-unused figure). A tree with 180 more nodes
// must cost fewer than 180 more allocations (each node's children list
// is still its own).
func TestATreesNodesAreNotOneAllocationEach(t *testing.T) {
	pairs := func(n int) []kv.Pair {
		var ps []kv.Pair
		for i := 0; i < n; i++ {
			ps = append(ps, kv.Pair{Key: fmt.Sprintf("k%03d/sub/leaf", i), Value: "v"})
		}
		return ps
	}
	few, many := pairs(4), pairs(64)
	a := testing.AllocsPerRun(20, func() { kv.ToNode(few) })
	b := testing.AllocsPerRun(20, func() { kv.ToNode(many) })
	if nodes := 3 * (64 - 4); b-a >= float64(nodes) {
		t.Errorf("%d more nodes took %.0f more allocations (%.0f against %.0f)", nodes, b-a, b, a)
	}
}
