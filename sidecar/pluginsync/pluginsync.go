// Package pluginsync takes the plugin's pushes: which traefik-sd middlewares
// each Traefik process has loaded, and since when. It also measures how long
// Traefik took to load a middleware after etcd changed it.
package pluginsync

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/traefik-sd/traefik-sd/plugin"
)

// ErrNeedFull answers a delta that does not follow the last accepted push of
// the same process; the plugin then sends its full set (409 on the wire).
var ErrNeedFull = errors.New("delta does not follow the last accepted push; send a full push")

// Limits on one push, beyond which it is refused.
const (
	MaxMiddlewares = 200000
	maxNameLen     = 1024
)

// Decode parses and checks a push body. Errors name the field that is wrong.
func Decode(body []byte) (plugin.Push, error) {
	var p plugin.Push
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&p); err != nil {
		return p, fmt.Errorf("push body: %w", err)
	}
	if dec.More() {
		return p, errors.New("push body: trailing data after the JSON object")
	}
	if p.Node == "" || len(p.Node) > maxNameLen {
		return p, errors.New("node: required, at most 1024 bytes")
	}
	if p.Boot == "" || len(p.Boot) > maxNameLen {
		return p, errors.New("boot: required, at most 1024 bytes")
	}
	if p.Seq == 0 {
		return p, errors.New("seq: must be positive")
	}
	if p.ResyncSeconds <= 0 {
		return p, errors.New("resyncSeconds: must be positive")
	}
	if len(p.Middlewares)+len(p.Removed) > MaxMiddlewares {
		return p, fmt.Errorf("middlewares: more than %d entries", MaxMiddlewares)
	}
	if p.Full && len(p.Removed) > 0 {
		return p, errors.New("removed: a full push lists only live middlewares")
	}
	for i := range p.Middlewares {
		m := &p.Middlewares[i]
		if m.Name == "" || len(m.Name) > maxNameLen {
			return p, fmt.Errorf("middlewares[%d].name: required, at most 1024 bytes", i)
		}
		cfg := m.Config
		cfg.SidecarURL, cfg.RemovalDelay, cfg.ResyncInterval = plugin.DefaultSidecarURL, plugin.DefaultRemovalDelay, plugin.DefaultResyncInterval
		if err := cfg.Validate(); err != nil {
			return p, fmt.Errorf("middlewares[%d].config.%w", i, err)
		}
		m.Config.Normalize()
	}
	for i, name := range p.Removed {
		if name == "" || len(name) > maxNameLen {
			return p, fmt.Errorf("removed[%d]: required, at most 1024 bytes", i)
		}
	}
	return p, nil
}

// Observer receives the measured delay from an etcd change of a middleware
// to the push that shows Traefik running that configuration.
type Observer func(delay time.Duration)

// Store is the live set per Traefik process. Safe for concurrent use.
type Store struct {
	mu      sync.Mutex
	nodes   map[string]*node
	pending map[string]pendingChange
	observe Observer
}

type node struct {
	boot        string
	seq         uint64
	lastSeen    time.Time
	resync      time.Duration
	middlewares map[string]plugin.LiveMiddleware
}

type pendingChange struct {
	config uint64 // hash of the configuration's JSON: one per middleware, kept small
	at     time.Time
}

func configHash(cfg interface{}) (uint64, bool) {
	b, err := json.Marshal(cfg)
	if err != nil {
		return 0, false
	}
	h := fnv.New64a()
	_, _ = h.Write(b)
	return h.Sum64(), true
}

// NewStore returns an empty store; observe may be nil.
func NewStore(observe Observer) *Store {
	return &Store{nodes: map[string]*node{}, pending: map[string]pendingChange{}, observe: observe}
}

// Apply takes a decoded push.
func (s *Store) Apply(p plugin.Push, now time.Time) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := s.nodes[p.Node]
	if !p.Full && (n == nil || n.boot != p.Boot || p.Seq != n.seq+1) {
		return ErrNeedFull
	}
	if p.Full {
		if n != nil && n.boot == p.Boot && p.Seq <= n.seq {
			return nil // a late duplicate of what was already applied
		}
		n = &node{middlewares: make(map[string]plugin.LiveMiddleware, len(p.Middlewares))}
		s.nodes[p.Node] = n
	}
	n.boot, n.seq, n.lastSeen = p.Boot, p.Seq, now
	n.resync = time.Duration(p.ResyncSeconds) * time.Second
	for _, m := range p.Middlewares {
		n.middlewares[m.Name] = m
		s.matchPending(m, now)
	}
	for _, name := range p.Removed {
		delete(n.middlewares, name)
	}
	return nil
}

// NoteEtcdChange records that etcd now holds cfg for the middleware named
// name (without @provider); the next push carrying the same configuration
// completes the measurement.
func (s *Store) NoteEtcdChange(name string, cfg *plugin.Config, at time.Time) {
	key, ok := configHash(cfg)
	if !ok {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.pending[name] = pendingChange{config: key, at: at}
}

func (s *Store) matchPending(m plugin.LiveMiddleware, now time.Time) {
	name, _, _ := strings.Cut(m.Name, "@")
	pc, ok := s.pending[name]
	if !ok {
		return
	}
	if key, ok := configHash(&m.Config); !ok || key != pc.config {
		return
	}
	delete(s.pending, name)
	if s.observe != nil {
		s.observe(now.Sub(pc.at))
	}
}

// Expire forgets processes silent for three of their resync intervals, and
// pending measurements older than ten minutes. It returns the forgotten nodes.
func (s *Store) Expire(now time.Time) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var gone []string
	for name, n := range s.nodes {
		if now.Sub(n.lastSeen) > 3*n.resync {
			delete(s.nodes, name)
			gone = append(gone, name)
		}
	}
	for name, pc := range s.pending {
		if now.Sub(pc.at) > 10*time.Minute {
			delete(s.pending, name)
		}
	}
	sort.Strings(gone)
	return gone
}

// NodeState is what one Traefik process runs.
type NodeState struct {
	Node        string
	Middlewares []string
	LastSeen    time.Time
}

// Nodes lists the known processes, sorted.
func (s *Store) Nodes() []NodeState {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]NodeState, 0, len(s.nodes))
	for name, n := range s.nodes {
		st := NodeState{Node: name, LastSeen: n.lastSeen}
		for m := range n.middlewares {
			st.Middlewares = append(st.Middlewares, m)
		}
		sort.Strings(st.Middlewares)
		out = append(out, st)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Node < out[j].Node })
	return out
}
