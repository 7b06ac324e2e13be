package manager

import (
	"strings"
	"testing"
)

func goodHash() map[string]string {
	return map[string]string{
		"id":            `"6f2c1d4e-8a37-5b5f-9e10-2d3c4b5a6978"`,
		"display_name":  `"circuit c1 10.0.1.30:8000"`,
		"service_group": `"appproxy-circuit-route"`,
		"version":       `"traefik-sd"`,
		"endpoint":      `{"address":"10.0.1.30","port":8000,"protocol":"http","prometheus_address":"10.0.1.30:8000"}`,
		"health_status": `{"registration_time":1764072000.25,"last_heartbeat":1764072060.5}`,
		"labels":        `{"circuit_id":"c1"}`,
	}
}

const goodKey = "service_discovery.appproxy-circuit-route.6f2c1d4e-8a37-5b5f-9e10-2d3c4b5a6978"

// TestRedisEntriesAreValidatedStrictly: the reader the tests trust must
// refuse what Backend.AI's would, naming the field; otherwise a comparison
// with it proves nothing.
func TestRedisEntriesAreValidatedStrictly(t *testing.T) {
	s, err := decodeRedis(goodKey, goodHash())
	if err != nil || s.Endpoint.Port != 8000 || s.Labels["circuit_id"] != "c1" || s.LastHeartbeat != 1764072060.5 {
		t.Fatalf("a good entry: %+v %v", s, err)
	}
	for name, c := range map[string]struct{ field, value, want string }{
		"port as a string":        {"endpoint", `{"address":"a","port":"8000","protocol":"http","prometheus_address":"a:1"}`, "not a JSON number"},
		"port as a float":         {"endpoint", `{"address":"a","port":8000.5,"protocol":"http","prometheus_address":"a:1"}`, "not an integer"},
		"endpoint field missing":  {"endpoint", `{"address":"a","port":8000,"protocol":"http"}`, "prometheus_address missing"},
		"endpoint field unknown":  {"endpoint", `{"address":"a","port":8000,"protocol":"http","prometheus_address":"a:1","x":1}`, "x is not a known field"},
		"id not a JSON string":    {"id", `6f2c1d4e-8a37-5b5f-9e10-2d3c4b5a6978`, "not a JSON string"},
		"id not a UUID":           {"id", `"nope"`, "its service_group and id say"},
		"heartbeat a string":      {"health_status", `{"registration_time":"1","last_heartbeat":1}`, "not a JSON number"},
		"a label not a string":    {"labels", `{"circuit_id":1}`, "label circuit_id"},
		"labels not an object":    {"labels", `[]`, "not a JSON object"},
		"an unknown field":        {"extra", `"x"`, "not a field of ServiceMetadata"},
		"a field missing":         {"version", "", "missing"},
		"prometheus_address bare": {"endpoint", `{"address":"a","port":8000,"protocol":"http","prometheus_address":"a"}`, "prometheus_address"},
	} {
		h := goodHash()
		if c.value == "" {
			delete(h, c.field)
		} else {
			h[c.field] = c.value
		}
		if _, err := decodeRedis(goodKey, h); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want an error with %q", name, err, c.want)
		}
	}
}

func TestEtcdEntriesAreValidatedStrictly(t *testing.T) {
	leaves := func() map[string]string {
		return map[string]string{
			"id": "6f2c1d4e-8a37-5b5f-9e10-2d3c4b5a6978", "display_name": "d", "service_group": "traefik", "version": "v",
			"endpoint/address": "10.0.0.7", "endpoint/port": "8080", "endpoint/protocol": "http",
			"endpoint/prometheus_address": "10.0.0.7:8080", "health_status/registration_time": "1764072000.000000",
			"health_status/last_heartbeat": "1764072001.000000", "labels/worker_node": "n1",
		}
	}
	k := "traefik/6f2c1d4e-8a37-5b5f-9e10-2d3c4b5a6978"
	if s, err := decodeEtcd(k, leaves()); err != nil || s.Labels["worker_node"] != "n1" {
		t.Fatalf("a good entry: %+v %v", s, err)
	}
	for leaf, bad := range map[string]string{"endpoint/port": "http", "health_status/last_heartbeat": "soon", "labels/a/b": "x", "surplus": "x"} {
		l := leaves()
		l[leaf] = bad
		if _, err := decodeEtcd(k, l); err == nil || !strings.Contains(err.Error(), leaf) {
			t.Errorf("leaf %s = %q: %v", leaf, bad, err)
		}
	}
	l := leaves()
	delete(l, "endpoint/protocol")
	if _, err := decodeEtcd(k, l); err == nil || !strings.Contains(err.Error(), "missing") {
		t.Errorf("a missing leaf: %v", err)
	}
	if out := Render([]Service{{ID: "i", Group: "g", DisplayName: "d", Version: "v", Endpoint: Endpoint{PrometheusAddress: "h:1"},
		Labels: map[string]string{"a": "b"}}}); len(out) != 1 || out[0].Targets[0] != "h:1" || out[0].Labels["service_id"] != "i" ||
		out[0].Labels["a"] != "b" || out[0].Labels["service_group"] != "g" || out[0].Labels["display_name"] != "d" || out[0].Labels["version"] != "v" {
		t.Errorf("the Manager's answer: %+v", out)
	}
}
