package traefikapi_test

// Stand-ins for Traefik v3.7.13's API, which cannot be built here: the
// router answers below are written field for field from v3.7.13's
// pkg/api/handler_http.go (routerRepresentation), pkg/config/runtime
// (RouterInfo, unchanged since v3.6.12) and pkg/config/dynamic/http_config.go
// (Router, which gained an embedded, empty ext.Router and
// observability.metadata), and its pager from pkg/api/criterion.go
// (unchanged since v3.6.12). See the README's "Traefik versions".

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/traefik-sd/traefik-sd/sidecar/traefikapi"
)

// compatV36Router is /api/http/routers/{name} as v3.6.12 writes a
// Backend.AI router (testdata/etcd/interactive.kv) that has no error.
const compatV36Router = `{
	"entryPoints": ["domainproxy"],
	"middlewares": ["CORSHeaders", "bai_appproxy_plugin_6a1f3e5d", "bai_sd_6a1f3e5d@etcd"],
	"service": "bai_service_6a1f3e5d",
	"rule": "Host(` + "`jupyter-6a1f3e5d.example.proxy.backend.ai`" + `)",
	"tls": {"options": "default"},
	"observability": {"accessLogs": true, "metrics": true, "tracing": true, "traceVerbosity": "minimal"},
	"status": "enabled",
	"using": ["domainproxy"],
	"name": "bai_router_6a1f3e5d@etcd",
	"provider": "etcd",
	"priorityStr": "0"
}`

// compatV37Router is the same router as v3.7.13 may write it: the one new
// key a router can carry is observability.metadata (set by the Kubernetes
// Ingress and Ingress NGINX providers; the embedded ext.Router has no
// fields, RouterTLSConfig's new ResolvedOptions and ConflictingOptions are
// json:"-").
const compatV37Router = `{
	"entryPoints": ["domainproxy"],
	"middlewares": ["CORSHeaders", "bai_appproxy_plugin_6a1f3e5d", "bai_sd_6a1f3e5d@etcd"],
	"service": "bai_service_6a1f3e5d",
	"rule": "Host(` + "`jupyter-6a1f3e5d.example.proxy.backend.ai`" + `)",
	"tls": {"options": "default"},
	"observability": {"accessLogs": true, "metrics": true, "tracing": true, "traceVerbosity": "minimal",
		"metadata": {"ingress": {"namespace": "bai", "ingressName": "jupyter", "serviceName": "jupyter", "servicePort": "8080"}}},
	"status": "enabled",
	"using": ["domainproxy"],
	"name": "bai_router_6a1f3e5d@etcd",
	"provider": "etcd",
	"priorityStr": "0"
}`

// TestTraefik37RouterReadsAsV36 feeds DecodeRouter a router as v3.7.13
// writes it and asserts that the sidecar reads exactly what it reads of
// v3.6.12's answer.
func TestTraefik37RouterReadsAsV36(t *testing.T) {
	v36, err := traefikapi.DecodeRouter([]byte(compatV36Router))
	if err != nil {
		t.Fatalf("v3.6.12 answer: %v", err)
	}
	v37, err := traefikapi.DecodeRouter([]byte(compatV37Router))
	if err != nil {
		t.Fatalf("v3.7.13 answer: %v", err)
	}
	if !reflect.DeepEqual(v36, v37) {
		t.Errorf("v3.7.13 answer reads differently:\n v3.6.12 %+v\n v3.7.13 %+v", v36, v37)
	}
	want := "bai_router_6a1f3e5d@etcd enabled served=true service=bai_service_6a1f3e5d@etcd " +
		"middlewares=CORSHeaders@etcd,bai_appproxy_plugin_6a1f3e5d@etcd,bai_sd_6a1f3e5d@etcd errors=0"
	if got := compatSummary(v37); got != want {
		t.Errorf("v3.7.13 answer:\n got %s\nwant %s", got, want)
	}
}

// TestTraefik37ConflictedTLSCopy: v3.7.13's resolveHTTPTLSOptions
// (pkg/server/aggregator.go) takes a TLS router off every entry point where
// another router serves the same host with other TLS options (or where its
// rule names no host and its options are not "default") and serves a copy
// named "<entryPoint>-conflicted-<name>@<provider>" there instead: default
// options and a warning, or disabled with core.strictTLSOptions. The
// original name is gone from the API when no entry point is left to it.
// The copy decodes; its name is not the etcd router's, so the sidecar
// cannot match it to the circuit (v3.6.12 kept the name, with a warning).
func TestTraefik37ConflictedTLSCopy(t *testing.T) {
	for _, c := range []struct {
		status, err string
		want        string
	}{
		{"warning", "router's TLSOptions configuration is conflicting with other routers on the same entrypoint and host, default TLS options will be used instead",
			"domainproxy-conflicted-bai_router_6a1f3e5d@etcd warning served=true service=bai_service_6a1f3e5d@etcd " +
				"middlewares=CORSHeaders@etcd,bai_appproxy_plugin_6a1f3e5d@etcd,bai_sd_6a1f3e5d@etcd errors=1"},
		{"disabled", "router's TLSOptions configuration is conflicting with other routers on the same entrypoint and host",
			"domainproxy-conflicted-bai_router_6a1f3e5d@etcd disabled served=false service=bai_service_6a1f3e5d@etcd " +
				"middlewares=CORSHeaders@etcd,bai_appproxy_plugin_6a1f3e5d@etcd,bai_sd_6a1f3e5d@etcd errors=1"},
	} {
		var m map[string]interface{}
		if err := json.Unmarshal([]byte(compatV37Router), &m); err != nil {
			t.Fatal(err)
		}
		m["name"] = "domainproxy-conflicted-bai_router_6a1f3e5d@etcd"
		m["tls"] = map[string]interface{}{"options": "strict"}
		m["status"] = c.status
		m["error"] = []string{c.err}
		body, _ := json.Marshal(m)
		r, err := traefikapi.DecodeRouter(body)
		if err != nil {
			t.Fatalf("%s copy: %v", c.status, err)
		}
		if got := compatSummary(r); got != c.want {
			t.Errorf("%s copy:\n got %s\nwant %s", c.status, got, c.want)
		}
		if r.Name == "bai_router_6a1f3e5d@etcd" {
			t.Errorf("%s copy reads under the etcd router's name", c.status)
		}
	}
}

// TestTraefik37RouterListingPages lists v3.7.13-shaped routers through a
// stand-in of its pager: per_page and page, X-Next-Page naming the next
// page and 1 after the last (pkg/api/criterion.go, pagination).
func TestTraefik37RouterListingPages(t *testing.T) {
	var routers []map[string]interface{}
	for _, n := range []string{"a", "b", "c", "d", "e"} {
		var m map[string]interface{}
		if err := json.Unmarshal([]byte(compatV37Router), &m); err != nil {
			t.Fatal(err)
		}
		m["name"] = "bai_router_" + n + "@etcd"
		routers = append(routers, m)
	}
	var asked []string
	srv := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, req *http.Request) {
		asked = append(asked, req.URL.RequestURI())
		if req.URL.Path != "/api/http/routers" {
			http.NotFound(rw, req)
			return
		}
		q, _ := url.ParseQuery(req.URL.RawQuery)
		per, _ := strconv.Atoi(q.Get("per_page"))
		page, _ := strconv.Atoi(q.Get("page"))
		start, end := (page-1)*per, page*per
		if end > len(routers) {
			end = len(routers)
		}
		next := 1
		if end < len(routers) {
			next = page + 1
		}
		rw.Header().Set("X-Next-Page", strconv.Itoa(next))
		_ = json.NewEncoder(rw).Encode(routers[start:end])
	}))
	defer srv.Close()
	c := &traefikapi.Client{Base: srv.URL, HTTP: &http.Client{Timeout: 5 * time.Second}, PerPage: 2}
	rs, err := c.Routers(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, r := range rs {
		names = append(names, r.Name+"="+strconv.FormatBool(r.Served()))
	}
	if got, want := strings.Join(names, " "), "bai_router_a@etcd=true bai_router_b@etcd=true bai_router_c@etcd=true bai_router_d@etcd=true bai_router_e@etcd=true"; got != want {
		t.Errorf("listing:\n got %s\nwant %s", got, want)
	}
	if got, want := strings.Join(asked, " "), "/api/http/routers?per_page=2&page=1 /api/http/routers?per_page=2&page=2 /api/http/routers?per_page=2&page=3"; got != want {
		t.Errorf("pages asked:\n got %s\nwant %s", got, want)
	}
}

func compatSummary(r traefikapi.Router) string {
	return r.Name + " " + r.Status + " served=" + strconv.FormatBool(r.Served()) + " service=" + r.Service +
		" middlewares=" + strings.Join(r.Middlewares, ",") + " errors=" + strconv.Itoa(len(r.Errors))
}
