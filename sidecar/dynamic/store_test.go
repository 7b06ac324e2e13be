package dynamic_test

import (
	"sort"
	"strings"
	"testing"

	"github.com/traefik-sd/traefik-sd/internal/fixture"
	"github.com/traefik-sd/traefik-sd/sidecar/dynamic"
)

const rootKey = "traefik/worker_worker-1"

func TestSplitKey(t *testing.T) {
	testCases := []struct {
		desc, key string
		want      dynamic.ObjectID
		sub       string
		ok        bool
	}{
		{"router key", "http/routers/bai_router_x/rule", dynamic.ObjectID{Kind: dynamic.Routers, Name: "bai_router_x"}, "rule", true},
		{"kind in upper case", "HTTP/Services/s/loadBalancer/servers/0/url", dynamic.ObjectID{Kind: dynamic.Services, Name: "s"}, "loadBalancer/servers/0/url", true},
		{"a TCP router", "tcp/routers/r/rule", dynamic.ObjectID{Kind: dynamic.TCPRouters, Name: "r"}, "rule", true},
		{"a TCP service", "TCP/services/s/loadBalancer/servers/0/address", dynamic.ObjectID{Kind: dynamic.TCPServices, Name: "s"}, "loadBalancer/servers/0/address", true},
		{"TCP middlewares are not read", "tcp/middlewares/m/ipAllowList/sourceRange/0", dynamic.ObjectID{}, "", false},
		{"udp is not read", "udp/routers/r/service", dynamic.ObjectID{}, "", false},
		{"object without keys", "http/routers/r", dynamic.ObjectID{}, "", false},
		{"other kinds", "http/serversTransports/t/x", dynamic.ObjectID{}, "", false},
	}
	for _, test := range testCases {
		t.Run(test.desc, func(t *testing.T) {
			id, sub, ok := dynamic.SplitKey(test.key)
			if id != test.want || sub != test.sub || ok != test.ok {
				t.Errorf("got %v %q %v", id, sub, ok)
			}
		})
	}
}

// TestTCPObjectsAsBackendAIWritesThem: a TCP circuit in port mode
// (testdata/coordinator/backendai-keys.json), and a bad address voids its
// service alone.
func TestTCPObjectsAsBackendAIWritesThem(t *testing.T) {
	s := dynamic.NewStore("traefik-sd")
	for k, v := range map[string]string{
		"tcp/routers/bai_router_ce8f/entrypoints/0":                    "portproxy_10223",
		"tcp/routers/bai_router_ce8f/rule":                             "ClientIP(`10.1.2.3/32`)",
		"tcp/routers/bai_router_ce8f/service":                          "bai_service_ce8f",
		"tcp/services/bai_service_ce8f/loadBalancer/servers/0/address": "10.0.1.12:2200",
		"tcp/services/bad/loadBalancer/servers/0/address":              "10.0.1.12",
	} {
		id, sub, ok := dynamic.SplitKey(k)
		if !ok {
			t.Fatalf("%s not read", k)
		}
		s.Put(id, sub, v)
	}
	_, errs := s.Commit()
	if len(errs) != 1 || !strings.Contains(errs[0].Error(), "tcp/services/bad") || !strings.Contains(errs[0].Error(), "address") {
		t.Fatalf("errors: %v", errs)
	}
	r := s.TCPRouters["bai_router_ce8f"]
	if r == nil || r.Service != "bai_service_ce8f" || len(r.EntryPoints) != 1 || r.EntryPoints[0] != "portproxy_10223" {
		t.Fatalf("router: %+v", r)
	}
	svc := s.TCPServices["bai_service_ce8f"]
	if svc == nil || svc.LoadBalancer == nil || len(svc.LoadBalancer.Servers) != 1 || svc.LoadBalancer.Servers[0].Address != "10.0.1.12:2200" {
		t.Fatalf("service: %+v", svc)
	}
	if len(s.Routers)+len(s.Services) != 0 {
		t.Fatal("a TCP object read as an HTTP one")
	}
}

func TestIdenticalRewriteChangesNothing(t *testing.T) {
	s, errs := fixture.Store(t, rootKey, "traefik-sd", "etcd/inference-two-routes.kv")
	if len(errs) != 0 {
		t.Fatal(errs)
	}
	for _, p := range fixture.KV(t, "etcd/inference-two-routes.kv") {
		id, sub, _ := dynamic.SplitKey(strings.TrimPrefix(p.Key, rootKey+"/"))
		s.Delete(id, sub)
	}
	for _, p := range fixture.KV(t, "etcd/inference-two-routes.kv") {
		id, sub, _ := dynamic.SplitKey(strings.TrimPrefix(p.Key, rootKey+"/"))
		s.Put(id, sub, p.Value)
	}
	if changed, _ := s.Commit(); len(changed) != 0 {
		t.Errorf("delete-then-put of the same keys changed %v", changed)
	}
}

func TestMiddlewareIdentities(t *testing.T) {
	s, _ := fixture.Store(t, rootKey, "traefik-sd", "etcd/interactive.kv")
	const id = "6a1f3e5d-0b7c-4d8e-9a41-1c1e2f0a7c90"
	sd := s.Middlewares["bai_sd_"+id].SD
	if sd == nil || sd.CircuitID != id || sd.MetricsPort != 9100 || sd.Labels["project"] != "vision" || sd.SidecarURL != "" {
		t.Errorf("traefik-sd config: %+v", sd)
	}
	goID := s.Middlewares["bai_appproxy_plugin_"+id+"_go"].AppProxy
	if goID == nil || goID.CircuitID != id || len(goID.SessionIDs) != 1 {
		t.Errorf("_go identity: %+v", goID)
	}
	wasm := s.Middlewares["bai_appproxy_plugin_"+id].AppProxy
	if wasm == nil || wasm.App != "jupyter" {
		t.Errorf("WASM identity: %+v", wasm)
	}
}

func TestResetDecodesOnlyWhatDiffers(t *testing.T) {
	s, _ := fixture.Store(t, rootKey, "traefik-sd", "etcd/interactive.kv", "etcd/inference-two-routes.kv")
	var listing listing
	for _, p := range fixture.KV(t, "etcd/interactive.kv") {
		listing = append(listing, [2]string{strings.TrimPrefix(p.Key, rootKey+"/"), p.Value})
	}
	sort.Slice(listing, func(i, j int) bool { return listing[i][0] < listing[j][0] })
	s.Reset(listing) // as after a re-list in which the inference circuit is gone
	changed, _ := s.Commit()
	for _, id := range changed {
		if !strings.Contains(id.Name, "9f0c7f0e") && id.Name != "CORSHeaders" {
			t.Errorf("%v changed though its keys did not", id)
		}
	}
	if len(s.Routers) != 1 {
		t.Errorf("routers after reset: %d", len(s.Routers))
	}
}

type listing [][2]string

func (l listing) Len() int                  { return len(l) }
func (l listing) At(i int) (string, string) { return l[i][0], l[i][1] }

func TestResetOfTheSameListingChangesNothing(t *testing.T) {
	var l listing
	for _, name := range []string{"etcd/interactive.kv", "etcd/inference-two-routes.kv", "etcd/mixed-case.kv"} {
		for _, p := range fixture.KV(t, name) {
			l = append(l, [2]string{strings.TrimPrefix(p.Key, rootKey+"/"), p.Value})
		}
	}
	sort.Slice(l, func(i, j int) bool { return l[i][0] < l[j][0] })
	s := dynamic.NewStore("traefik-sd")
	s.Reset(l)
	first, _ := s.Commit()
	if len(first) == 0 {
		t.Fatal("first listing decoded nothing")
	}
	s.Reset(l)
	if again, _ := s.Commit(); len(again) != 0 {
		t.Errorf("the same listing again changed %v", again)
	}
	// A listing without one key: only that object changes.
	var fewer listing
	for _, kv := range l {
		if !strings.HasSuffix(kv[0], "servers/1/url") || !strings.Contains(kv[0], "9f0c7f0e") {
			fewer = append(fewer, kv)
		}
	}
	s.Reset(fewer)
	changed, _ := s.Commit()
	if len(changed) != 1 || changed[0].Name != "bai_service_9f0c7f0e-8a1b-4c3d-8e5f-3f0f2a9e6c8e" {
		t.Errorf("changed %v", changed)
	}
	if n := len(s.Services["bai_service_9f0c7f0e-8a1b-4c3d-8e5f-3f0f2a9e6c8e"].LoadBalancer.Servers); n != 1 {
		t.Errorf("servers left: %d", n)
	}
}

func FuzzStore(f *testing.F) {
	for _, name := range []string{"etcd/interactive.kv", "etcd/malformed.kv"} {
		for _, p := range fixture.KV(f, name) {
			f.Add(strings.TrimPrefix(p.Key, rootKey+"/"), p.Value)
		}
	}
	f.Fuzz(func(t *testing.T, key, value string) {
		s := dynamic.NewStore("traefik-sd")
		id, sub, ok := dynamic.SplitKey(key)
		if !ok {
			return
		}
		s.Put(id, sub, value)
		s.Put(dynamic.ObjectID{Kind: id.Kind, Name: id.Name}, "service", "x") // a sibling key
		changed, errs := s.Commit()
		if len(errs) > 1 {
			t.Fatalf("one object gave %d errors", len(errs))
		}
		if len(errs) == 0 && len(changed) != 1 {
			t.Fatalf("a decodable object did not register: %v", changed)
		}
	})
}

// TestDecodeErrorsNameTheKeyNotTheValue: values under the root key may be
// secrets (a server URL with user:password@, a value written under the
// wrong key), and decode errors reach the log and the status page. Each
// error names its object and key and says what is wrong; none holds the
// value.
func TestDecodeErrorsNameTheKeyNotTheValue(t *testing.T) {
	const marker = "s3cr3t"
	testCases := []struct {
		desc    string
		key     string
		value   string
		wantErr string
	}{
		{"a server URL with a password and a port out of range", "http/services/s/loadBalancer/servers/0/url", "http://u:" + marker + "@10.0.0.1:70000/",
			"http/services/s: loadBalancer/servers/[0]/url: port out of range"},
		{"a server URL with a password that does not parse", "http/services/s/loadBalancer/servers/0/url", "http://u:" + marker + "@[::1",
			"http/services/s: loadBalancer/servers/[0]/url: not a URL"},
		{"a server URL with a bad scheme", "http/services/s/loadBalancer/servers/0/url", "ftp://u:" + marker + "@h/",
			"http/services/s: loadBalancer/servers/[0]/url: scheme must be"},
		{"metricsPort that is not a number", "http/middlewares/m/plugin/traefik-sd/metricsPort", marker,
			"http/middlewares/m: plugin/traefik-sd/metricsPort: not an integer"},
		{"metricsPort out of range", "http/middlewares/m/plugin/traefik-sd/metricsPort", "999999",
			"http/middlewares/m: plugin/traefik-sd/metricsPort: not a port"},
		{"metricsPath that is not a path", "http/middlewares/m/plugin/traefik-sd/metricsPath", marker,
			"http/middlewares/m: plugin/traefik-sd/metricsPath: must start with /"},
		{"a route URL with a password", "http/middlewares/m/plugin/traefik-sd/routes/0/url", "http://u:" + marker + "@h:0/",
			"http/middlewares/m: plugin/traefik-sd/routes[0].url: port out of range"},
		{"a sidecarUrl with userinfo", "http/middlewares/m/plugin/traefik-sd/sidecarUrl", "ftp://u:" + marker + "@127.0.0.1:9180",
			"http/middlewares/m: plugin/traefik-sd/sidecarURL: not an http(s) URL"},
		{"a removal delay", "http/middlewares/m/plugin/traefik-sd/removalDelay", marker,
			"http/middlewares/m: plugin/traefik-sd/removalDelay: not a duration"},
		{"a section written as a scalar", "http/middlewares/m/plugin/traefik-sd/labels", marker,
			"labels cannot be a standalone element"},
		{"circuit JSON that is not JSON", "http/middlewares/m/plugin/appproxy-traefik-plugin/circuit", `{"id":` + marker + `}`,
			"http/middlewares/m: plugin/appproxy-traefik-plugin/circuit: circuit JSON: not valid JSON"},
		{"circuit JSON with a wrong type", "http/middlewares/m/plugin/appproxy-traefik-plugin/circuit", `{"id":1` + strings.Repeat("1", 30) + `}`,
			"circuit JSON: id: a JSON number where string belongs"},
		{"a value that is not UTF-8", "http/routers/r/rule", marker + "\xff",
			"http/routers/r: rule: value is not valid UTF-8"},
	}
	for _, test := range testCases {
		t.Run(test.desc, func(t *testing.T) {
			s := dynamic.NewStore("traefik-sd")
			id, sub, ok := dynamic.SplitKey(test.key)
			if !ok {
				t.Fatalf("key %q", test.key)
			}
			if id.Kind == dynamic.Middlewares && strings.Contains(sub, "traefik-sd") {
				s.Put(id, "plugin/traefik-sd/circuitId", "c-1")
			}
			s.Put(id, sub, test.value)
			_, errs := s.Commit()
			if len(errs) != 1 {
				t.Fatalf("errors %v, want one", errs)
			}
			got := errs[0].Error()
			if !strings.Contains(got, test.wantErr) {
				t.Errorf("error %q, want it to hold %q", got, test.wantErr)
			}
			if strings.Contains(got, marker) || strings.Contains(got, test.value) || strings.Contains(got, "1111111111") {
				t.Errorf("error %q holds the value", got)
			}
		})
	}
}
