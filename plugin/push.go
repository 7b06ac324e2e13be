package plugin

import "time"

// SyncPath is where the sidecar takes pushes.
const SyncPath = "/v1/plugin/sync"

// Push is the body of POST /v1/plugin/sync.
//
// A Traefik process is (Node, Boot). A full push replaces everything the
// sidecar knows of that process; a delta push upserts Middlewares and drops
// Removed, and is accepted only if its Seq follows the last accepted one of
// the same Boot. The sidecar answers 409 otherwise and the sender then sends
// a full push, so a lost or reordered delta can never leave a stale set. An
// empty delta is a heartbeat: a sidecar that restarted answers it with 409.
type Push struct {
	Node string `json:"node"`
	Boot string `json:"boot"`
	Seq  uint64 `json:"seq"`
	Full bool   `json:"full"`
	// ResyncSeconds is how often this sender re-sends its full set; the
	// sidecar forgets a process that stays silent for several intervals.
	ResyncSeconds int `json:"resyncSeconds"`
	// HeartbeatSeconds is how often this sender pushes at least an empty
	// delta; the sidecar takes a process silent for several of them as gone
	// (its Traefik no longer serves anything).
	HeartbeatSeconds int              `json:"heartbeatSeconds"`
	Middlewares      []LiveMiddleware `json:"middlewares"`
	Removed          []string         `json:"removed,omitempty"`
}

// LiveMiddleware is one middleware that has at least one live instance in
// Traefik. Name is as Traefik gives it: <middleware>@<provider>.
type LiveMiddleware struct {
	Name      string    `json:"name"`
	Instances int       `json:"instances"`
	Since     time.Time `json:"since"`
	Config    Config    `json:"config"`
}
