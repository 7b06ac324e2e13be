package coordinator

import (
	"encoding/json"
	"net/http"
	"strings"
	"sync"
)

// API answers GET /api/worker/{worker_id}/circuits as the coordinator's
// list_worker_circuits does (header X-BackendAI-Token): {"circuits": […]},
// each a SerializableCircuit, route_info included; and GET
// /api/circuit/{circuit_id} as get_circuit does (circuit_v2.py): one of
// them, or 404. It answers from Writer's
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
	askedOne int
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

// AskedOne is how many answers about one circuit were asked for.
func (a *API) AskedOne() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.askedOne
}

// circuit answers GET /api/circuit/{circuit_id} as get_circuit does: the
// circuit alone, or ObjectNotFound (404, a problem document) for a circuit
// it does not have. The caller holds a.mu.
func (a *API) circuit(rw http.ResponseWriter, id string) {
	w, c, ok := a.Writer, Circuit{}, false
	if w != nil {
		c, ok = w.Circuit(id)
	} else {
		w = &Writer{WorkerID: a.WorkerID}
		for _, x := range a.circuits {
			if x.ID == id {
				c, ok = x, true
			}
		}
	}
	rw.Header().Set("Content-Type", "application/json")
	if !ok {
		rw.Header().Set("Content-Type", "application/problem+json")
		rw.WriteHeader(http.StatusNotFound)
		_ = json.NewEncoder(rw).Encode(map[string]string{
			"type": "https://api.backend.ai/probs/object-not-found", "title": "E00002: No such object."})
		return
	}
	_, _ = rw.Write(w.CircuitJSON(c))
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
	id, one := strings.CutPrefix(req.URL.Path, "/api/circuit/")
	if !one && req.URL.Path != "/api/worker/"+a.WorkerID+"/circuits" {
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
	if one {
		a.askedOne++
		a.circuit(rw, id)
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
