package coordinator

import (
	"encoding/json"
	"net/http"
	"sync"
)

// API answers GET /api/worker/{worker_id}/circuits as the coordinator does
// (header X-BackendAI-Token), from the circuits it is given. Failing makes
// it answer 503, as a coordinator that is down behind a proxy would.
type API struct {
	Token    string
	WorkerID string

	mu       sync.Mutex
	circuits []Circuit
	failing  bool
	asked    int
}

// Set replaces the circuits the API answers with.
func (a *API) Set(circuits ...Circuit) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.circuits = append([]Circuit(nil), circuits...)
}

// Fail makes the API answer 503 (true) or normally (false).
func (a *API) Fail(failing bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.failing = failing
}

// Asked is how many answers were asked for.
func (a *API) Asked() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.asked
}

func (a *API) ServeHTTP(rw http.ResponseWriter, req *http.Request) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.asked++
	if req.URL.Path != "/api/worker/"+a.WorkerID+"/circuits" {
		http.Error(rw, `{"title": "not found"}`, http.StatusNotFound)
		return
	}
	if req.Header.Get("X-BackendAI-Token") != a.Token {
		http.Error(rw, `{"title": "invalid API token"}`, http.StatusUnauthorized)
		return
	}
	if a.failing {
		http.Error(rw, "service unavailable", http.StatusServiceUnavailable)
		return
	}
	out := make([]map[string]interface{}, 0, len(a.circuits))
	for _, c := range a.circuits {
		routes := make([]map[string]interface{}, 0, len(c.Routes))
		for _, r := range c.Routes {
			var routeID interface{}
			if r.RouteID != "" {
				routeID = r.RouteID
			}
			var host interface{} = r.Host
			if r.NullHost {
				host = nil
			}
			routes = append(routes, map[string]interface{}{
				"route_id": routeID, "session_id": r.SessionID, "session_name": "session-" + r.SessionID,
				"kernel_host": host, "kernel_port": r.Port, "protocol": "http", "traffic_ratio": 1.0,
			})
		}
		var endpoint interface{}
		if c.Mode == "inference" {
			endpoint = "e0e1e2e3-aaaa-4bbb-8ccc-" + c.ID[len(c.ID)-12:]
		}
		out = append(out, map[string]interface{}{
			"id": c.ID, "app": c.App, "protocol": "http", "worker": a.WorkerID, "app_mode": c.Mode,
			"frontend_mode": "wildcard", "port": nil, "subdomain": c.App, "open_to_public": false,
			"allowed_client_ips": nil, "user_id": nil, "endpoint_id": endpoint, "runtime_variant": nil,
			"session_ids": circuitSessionIDs(c), "route_info": routes,
			"created_at": "2026-11-24T10:00:00+00:00", "updated_at": "2026-11-24T10:00:00+00:00",
		})
	}
	rw.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(rw).Encode(map[string]interface{}{"circuits": out})
}
