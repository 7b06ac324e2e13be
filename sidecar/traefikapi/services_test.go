package traefikapi_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/traefik-sd/traefik-sd/sidecar/traefikapi"
)

// servicesV36 is /api/http/services as Traefik v3.6.12 wrote it for a file
// provider configuration (checked against the running Traefik): a load
// balancer with a health check and one server DOWN, one without a check
// (serverStatus all UP), a weighted service with unqualified children, a
// failover and a mirroring service, and a service no router uses (no
// serverStatus).
const servicesV36 = `[
{"loadBalancer":{"servers":[{"url":"http://127.0.0.1:8001"},{"url":"http://127.0.0.1:8002"}],"healthCheck":{"path":"/health","interval":"1s","timeout":"500ms"},"passHostHeader":true,"responseForwarding":{"flushInterval":"100ms"}},"status":"enabled","usedBy":["r1@file"],"serverStatus":{"http://127.0.0.1:8001":"UP","http://127.0.0.1:8002":"DOWN"},"name":"s1@file","provider":"file","type":"loadbalancer"},
{"loadBalancer":{"servers":[{"url":"http://127.0.0.1:8003"}],"healthCheck":{"path":"/health"},"passHostHeader":true},"status":"enabled","usedBy":["r2@file"],"serverStatus":{"http://127.0.0.1:8003":"UP"},"name":"s2@file","provider":"file","type":"loadbalancer"},
{"loadBalancer":{"servers":[{"url":"http://127.0.0.1:8004"}],"passHostHeader":true},"status":"enabled","name":"unused@file","provider":"file","type":"loadbalancer"},
{"weighted":{"services":[{"name":"s1","weight":3},{"name":"s2@file","weight":1}]},"status":"enabled","usedBy":["r3@file"],"name":"w@file","provider":"file","type":"weighted"},
{"failover":{"service":"s1","fallback":"s2"},"status":"enabled","name":"f@file","provider":"file","type":"failover"},
{"mirroring":{"service":"s1","mirrors":[{"name":"s2","percent":10}]},"status":"enabled","name":"m@file","provider":"file","type":"mirroring"}
]`

func TestServicesAreReadAsTraefikWritesThem(t *testing.T) {
	got, err := traefikapi.DecodeServices([]byte(servicesV36))
	if err != nil {
		t.Fatal(err)
	}
	want := []traefikapi.Service{
		{Name: "s1@file", Servers: []string{"http://127.0.0.1:8001", "http://127.0.0.1:8002"}, HealthInterval: time.Second,
			Status: map[string]string{"http://127.0.0.1:8001": "UP", "http://127.0.0.1:8002": "DOWN"}},
		// A health check without an interval is checked every 30 s (Traefik's default).
		{Name: "s2@file", Servers: []string{"http://127.0.0.1:8003"}, HealthInterval: 30 * time.Second,
			Status: map[string]string{"http://127.0.0.1:8003": "UP"}},
		{Name: "unused@file", Servers: []string{"http://127.0.0.1:8004"}},
		{Name: "w@file", Children: []string{"s1@file", "s2@file"}},
		{Name: "f@file", Children: []string{"s1@file", "s2@file"}},
		// A mirror gets copies, not answers: only the main service counts.
		{Name: "m@file", Children: []string{"s1@file"}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got  %+v\nwant %+v", got, want)
	}
}

// TestServicesOfTraefik37ReadTheSame: v3.7.13 adds a service's own
// middlewares, failover.errors and nginxUpstreamHashBy (README, "Traefik
// versions"); what the sidecar reads is unchanged.
func TestServicesOfTraefik37ReadTheSame(t *testing.T) {
	v37 := strings.NewReplacer(`"passHostHeader":true,"responseForwarding"`, `"passHostHeader":true,"nginxUpstreamHashBy":"$remote_addr","responseForwarding"`,
		`"failover":{"service":"s1","fallback":"s2"}`, `"failover":{"service":"s1","fallback":"s2","errors":{"status":["500-599"],"maxRequestBodyBytes":-1}}`,
		`"status":"enabled","usedBy":["r1@file"]`, `"middlewares":["retry@file"],"status":"enabled","usedBy":["r1@file"]`).Replace(servicesV36)
	if v37 == servicesV36 {
		t.Fatal("the stand-in did not change")
	}
	v36, err := traefikapi.DecodeServices([]byte(servicesV36))
	if err != nil {
		t.Fatal(err)
	}
	got, err := traefikapi.DecodeServices([]byte(v37))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, v36) {
		t.Fatalf("v3.7.13 reads\n%+v\nv3.6.12 reads\n%+v", got, v36)
	}
}

func TestServicesTheSidecarCannotTrustAreRefused(t *testing.T) {
	for desc, body := range map[string]string{
		"unqualified name": `[{"name":"s1","loadBalancer":{"servers":[{"url":"http://a"}]}}]`,
		"unknown status":   `[{"name":"s1@file","serverStatus":{"http://a":"MAYBE"}}]`,
		"not a list":       `{"name":"s1@file"}`,
		"bad interval":     `[{"name":"s1@file","loadBalancer":{"healthCheck":{"interval":"soon"}}}]`,
	} {
		if _, err := traefikapi.DecodeServices([]byte(body)); err == nil {
			t.Errorf("%s: accepted %s", desc, body)
		}
	}
}

// TestThePollerListsEveryPageAndSkipsAnUnchangedListing: a listing spans
// pages (X-Next-Page), and one byte for byte the last is not decoded again.
func TestThePollerListsEveryPageAndSkipsAnUnchangedListing(t *testing.T) {
	var generation, requests atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, req *http.Request) {
		requests.Add(1)
		if req.URL.Path != "/api/http/services" {
			http.NotFound(rw, req)
			return
		}
		page, _ := strconv.Atoi(req.URL.Query().Get("page"))
		next := page + 1
		if page == 3 {
			next = 1
		}
		rw.Header().Set("X-Next-Page", strconv.Itoa(next))
		fmt.Fprintf(rw, `[{"name":"s%d@file","loadBalancer":{"servers":[{"url":"http://10.0.0.%d:%d"}]}}]`, page, page, 80+generation.Load())
	}))
	defer srv.Close()
	p := traefikapi.NewPoller(&traefikapi.Client{Base: srv.URL, HTTP: srv.Client(), PerPage: 1}, time.Hour, true, false)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out := make(chan traefikapi.Listing)
	go p.Run(ctx, out)
	first := <-out
	if first.Err != nil || first.Same || len(first.Services) != 3 || first.Services[2].Servers[0] != "http://10.0.0.3:80" {
		t.Fatalf("first listing: %+v", first)
	}
	p.Kick()
	if again := <-out; again.Err != nil || !again.Same || again.Services != nil {
		t.Fatalf("an unchanged listing: %+v", again)
	}
	generation.Store(1)
	p.Kick()
	if moved := <-out; moved.Same || len(moved.Services) != 3 || moved.Services[0].Servers[0] != "http://10.0.0.1:81" {
		t.Fatalf("a changed listing: %+v", moved)
	}
	if n := requests.Load(); n != 9 {
		t.Errorf("%d requests for three listings of three pages", n)
	}
}
