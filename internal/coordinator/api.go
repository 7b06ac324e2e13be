package coordinator

import (
	"encoding/json"
	"net/http"
	"sync"
)

// API answers GET /api/worker/{worker_id}/circuits as the coordinator's
// list_worker_circuits does (header X-BackendAI-Token): {"circuits": […]},
// each a SerializableCircuit, route_info included. It answers from Writer's
// circuits, as written to etcd, or from those given to Set when Writer is
// nil. Failing makes it answer 503, as a coordinator that is down behind a
// proxy would.
type API struct {
	Token    string
	WorkerID string
	Writer   *Writer

	mu       sync.Mutex
	circuits []Circuit
	failing  bool
	asked    int
}

// Set replaces the circuits the API answers with, when it has no Writer.
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
	w, circuits := a.Writer, a.circuits
	if w != nil {
		circuits = w.Circuits()
	} else {
		w = &Writer{WorkerID: a.WorkerID}
	}
	out := make([]json.RawMessage, 0, len(circuits))
	for _, c := range circuits {
		out = append(out, w.CircuitJSON(c))
	}
	rw.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(rw).Encode(map[string]interface{}{"circuits": out})
}
