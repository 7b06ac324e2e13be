package routeinfo_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/traefik-sd/traefik-sd/internal/fixture"
	"github.com/traefik-sd/traefik-sd/sidecar/routeinfo"
)

func TestFetchFromACoordinatorShapedServer(t *testing.T) {
	body, err := os.ReadFile(fixture.Path("coordinator/circuits.json"))
	if err != nil {
		t.Fatal(err)
	}
	var gotPath, gotToken string
	srv := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, req *http.Request) {
		gotPath, gotToken = req.URL.Path, req.Header.Get("X-BackendAI-Token")
		if gotToken != "api-secret" {
			http.Error(rw, `{"error": "invalid token"}`, http.StatusUnauthorized)
			return
		}
		rw.Header().Set("Content-Type", "application/json")
		_, _ = rw.Write(body)
	}))
	defer srv.Close()
	c := &routeinfo.Client{URL: srv.URL, WorkerID: "5a2b3c4d-1111-4222-8333-444455556666", HTTP: &http.Client{Timeout: 5 * time.Second}}
	c.SetToken("api-secret")
	table, err := c.Fetch(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if gotPath != "/api/worker/5a2b3c4d-1111-4222-8333-444455556666/circuits" {
		t.Errorf("path %q", gotPath)
	}
	testCases := []struct {
		circuit, hostPort string
		want              routeinfo.IDs
	}{
		{"9f0c7f0e-8a1b-4c3d-8e5f-3f0f2a9e6c8e", "10.0.1.21:8000", routeinfo.IDs{SessionID: "4e5f8a9b-0c1d-4e2f-8a4b-5c6d7e8f9a0b", RouteID: "8d1e6f0a-3b2c-4e5f-8a9b-0c1d2e3f4a5b", EndpointID: "e0e1e2e3-aaaa-4bbb-8ccc-ddddeeeeffff", App: "llama-chat"}},
		// written with the aliases route-id and session-id
		{"9f0c7f0e-8a1b-4c3d-8e5f-3f0f2a9e6c8e", "10.0.1.22:8000", routeinfo.IDs{SessionID: "7a8b9c0d-1e2f-4a3b-8c5d-6e7f8a9b0c1d", RouteID: "2c3d4e5f-6a7b-4c8d-9e0f-1a2b3c4d5e6f", EndpointID: "e0e1e2e3-aaaa-4bbb-8ccc-ddddeeeeffff", App: "llama-chat"}},
		// interactive: route_id null, endpoint_id null
		{"6a1f3e5d-0b7c-4d8e-9a41-1c1e2f0a7c90", "10.0.1.10:8080", routeinfo.IDs{SessionID: "0b7c1c1e-2f0a-4d8e-9a41-6a1f3e5d7c90", App: "jupyter"}},
	}
	for _, tc := range testCases {
		got, ok := table.Lookup(tc.circuit, tc.hostPort)
		if !ok || got != tc.want {
			t.Errorf("%s %s: %+v %v", tc.circuit, tc.hostPort, got, ok)
		}
	}
	if _, ok := table.Lookup("9f0c7f0e-8a1b-4c3d-8e5f-3f0f2a9e6c8e", "10.0.1.23:8000"); ok {
		t.Error("an unknown route was found")
	}

	c.SetToken("wrong")
	if _, err := c.Fetch(context.Background()); err == nil || !strings.Contains(err.Error(), "401") {
		t.Errorf("a wrong token: %v", err)
	}
}

// TestDecodeSkipsRoutesItCannotJoin: the coordinator may answer a route
// with a null kernel_host; that route is named and skipped, and the other
// routes of the same answer, of the same circuit too, still count.
func TestDecodeSkipsRoutesItCannotJoin(t *testing.T) {
	body := `{"circuits": [
		{"id": "c1", "app": "a", "route_info": [
			{"route_id": "r0", "session_id": "s0", "kernel_host": null, "kernel_port": 8000},
			{"route_id": "r1", "session_id": "s1", "kernel_host": "10.0.0.1", "kernel_port": 8000},
			{"route_id": "r2", "session_id": "s2", "kernel_host": "", "kernel_port": 8000}]},
		{"id": "c2", "route_info": [{"route_id": "r3", "session_id": "s3", "kernel_host": "10.0.0.2", "kernel_port": 70000}]}]}`
	table, err := routeinfo.Decode([]byte(body))
	if err != nil {
		t.Fatal(err)
	}
	if ids, ok := table.Lookup("c1", "10.0.0.1:8000"); !ok || ids.RouteID != "r1" || ids.SessionID != "s1" {
		t.Errorf("the good route of the same circuit: %+v %v", ids, ok)
	}
	if table.Len() != 1 {
		t.Errorf("%d routes joined, want 1", table.Len())
	}
	want := []string{
		"circuit c1 route_info[0]: kernel_host is null",
		`circuit c1 route_info[2]: kernel_host is ""`,
		"circuit c2 route_info[0]: kernel_port 70000 out of range",
	}
	if got := table.Skipped(); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("skipped:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestDecodeRefusesWithTheField(t *testing.T) {
	for body, want := range map[string]string{
		`{"circuits": [{"route_info": []}]}`: "circuits[0].id",
		`{"error": "not found"}`:             "no circuits",
		`{"circuits": [{"id": "c", "route_info": [{"kernel_host": "h", "kernel_port": "80"}]}]}`: "cannot unmarshal",
		`not json`: "coordinator answer",
	} {
		if _, err := routeinfo.Decode([]byte(body)); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want %q", body, err, want)
		}
	}
}
