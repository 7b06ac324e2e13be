package kv_test

import (
	"reflect"
	"strings"
	"testing"

	"github.com/traefik-sd/traefik-sd/sidecar/kv"
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
			desc:    "a value of the wrong type names itself",
			pairs:   []kv.Pair{{"priority", "high"}},
			into:    func() interface{} { return &router{} },
			wantErr: `parsing "high"`,
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

func FuzzDecode(f *testing.F) {
	f.Add("loadBalancer/servers/0/url", "http://10.0.1.21:8000/", "loadBalancer/healthCheck/path", "/health")
	f.Add("loadBalancer", "x", "loadBalancer/servers/0", "y")
	f.Add("loadBalancer/servers/00/url", "a", "LOADBALANCER/SERVERS/0/URL", "b")
	f.Add("/", "", "//", "")
	f.Fuzz(func(t *testing.T, k1, v1, k2, v2 string) {
		var svc service
		// Must not panic; an error is a fine answer to garbage.
		_ = kv.Decode([]kv.Pair{{k1, v1}, {k2, v2}}, &svc)
		var r router
		_ = kv.Decode([]kv.Pair{{k1, v1}, {k2, v2}}, &r)
	})
}
