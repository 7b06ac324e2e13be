// Package pluginsync takes the plugin's pushes. It keeps each Traefik
// process's session (boot, sequence, last contact) so that it can answer a
// push at once, accepted or 409, and hands what the accepted pushes say to the
// daemon's loop as plain Updates, in the order they were accepted.
package pluginsync

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/traefik-sd/traefik-sd/plugin"
	"github.com/traefik-sd/traefik-sd/sidecar/redact"
	"github.com/traefik-sd/traefik-sd/sidecar/source"
)

// ErrNeedFull answers a delta that does not follow the last accepted push of
// the same process; the plugin then sends its full set (409 on the wire).
var ErrNeedFull = errors.New("delta does not follow the last accepted push; send a full push")

// ErrNodeHeld answers a full push under a new boot while the process that
// holds the node name is alive (403 on the wire): a node is bound to its boot
// until that process has missed heartbeatsToYield heartbeats. A restarted
// Traefik's old process is silent, so its new boot takes over within seconds;
// another process claiming a live node's name never does.
var ErrNodeHeld = errors.New("node: held by another process (boot) that is still pushing; accepted once it has been silent for two heartbeats")

// ErrTooManySessions answers a push from a node the sidecar does not know
// while the sessions are at their cap (503 on the wire).
var ErrTooManySessions = errors.New("node: too many Traefik processes push to this sidecar (--plugin.maxSessions); accepted once one goes silent")

// Limits on one push, beyond which it is refused.
const (
	MaxMiddlewares = 200000
	maxNameLen     = 1024
)

// The intervals a push announces are clamped to these ranges: they decide
// how long the sidecar keeps a silent process's set (five heartbeats), so an
// absurd value must not keep it for ever. The plugin sends a heartbeat of 1
// or 2 seconds and its resyncInterval (5 minutes by default).
const (
	MaxHeartbeatSeconds = 60
	MaxResyncSeconds    = 24 * 60 * 60
)

// DefaultMaxSessions is the default cap on live push sessions: one per
// Traefik process pushing to this sidecar (one, or a few with a shared
// sidecar URL).
const DefaultMaxSessions = 64

// Decode parses and checks a push body. Errors name the field that is wrong.
func Decode(body []byte) (plugin.Push, error) {
	var p plugin.Push
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&p); err != nil {
		// encoding/json's message may quote the value (a number's
		// literal, a time); errors name the field, never a value.
		return p, errors.New("push body: " + redact.JSONError(err))
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
	if p.HeartbeatSeconds <= 0 {
		return p, errors.New("heartbeatSeconds: must be positive (a process that promises no heartbeat cannot be told alive)")
	}
	p.ResyncSeconds = min(p.ResyncSeconds, MaxResyncSeconds)
	p.HeartbeatSeconds = min(p.HeartbeatSeconds, MaxHeartbeatSeconds)
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
		// A push carries no plugin settings (where and how it pushes):
		// check the rest as New does.
		cfg := m.Config
		cfg.SidecarURL, cfg.RemovalDelay, cfg.ResyncInterval = plugin.DefaultSidecarURL, plugin.DefaultRemovalDelay, plugin.DefaultResyncInterval
		if err := cfg.Validate(); err != nil {
			return p, fmt.Errorf("middlewares[%d].config.%w", i, err)
		}
		m.Config = m.Config.Described()
	}
	for i, name := range p.Removed {
		if name == "" || len(name) > maxNameLen {
			return p, fmt.Errorf("removed[%d]: required, at most 1024 bytes", i)
		}
	}
	return p, nil
}

// Update is the message of the plugin's pushes (package source).
type Update = source.Pushes

// Store keeps the sessions of the Traefik processes that push. Safe for
// concurrent use: the HTTP handlers apply pushes, the loop drains updates.
type Store struct {
	mu       sync.Mutex
	sessions map[string]*session
	queue    []Update
	notify   chan struct{}
	// maxSessions caps the sessions: a push from a new node over it is
	// refused, so that pushes under made-up names cannot grow memory, the
	// status page and every rebuild without bound.
	maxSessions int
}

type session struct {
	boot     string
	seq      uint64
	started  time.Time
	lastSeen time.Time
	// heartbeat is how often the process promised to push at least once.
	heartbeat time.Duration
}

// heartbeatsMissed is how many heartbeats a process may miss before it is
// taken as gone. A Traefik restart (same node, new boot) takes a few seconds
// and must not withdraw what it serves before and after.
const heartbeatsMissed = 5

// heartbeatsToYield is how many heartbeats the process holding a node name
// must miss before a new boot may take the name over: fewer than
// heartbeatsMissed, so that a restarted Traefik's new boot (whose full
// push, refused meanwhile, is retried with a backoff from 250 ms doubling)
// replaces the old one before the old one's set is withdrawn.
const heartbeatsToYield = 2

// NewStore returns an empty store with DefaultMaxSessions.
func NewStore() *Store {
	return &Store{sessions: map[string]*session{}, notify: make(chan struct{}, 1), maxSessions: DefaultMaxSessions}
}

// SetMaxSessions sets the cap on sessions (at least 1). Sessions over a
// lowered cap stay until they go silent.
func (s *Store) SetMaxSessions(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.maxSessions = max(n, 1)
}

// Apply takes a decoded push. It returns ErrNeedFull for a delta that does
// not follow the last accepted push of the same process.
func (s *Store) Apply(p plugin.Push, now time.Time) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := s.sessions[p.Node]
	if !p.Full && (n == nil || n.boot != p.Boot || p.Seq != n.seq+1) {
		return ErrNeedFull
	}
	newBoot := false
	if p.Full {
		if n != nil && n.boot == p.Boot && p.Seq <= n.seq {
			return nil // a late duplicate of what was already applied
		}
		switch {
		case n == nil && len(s.sessions) >= s.maxSessions:
			return ErrTooManySessions
		case n != nil && n.boot != p.Boot && now.Sub(n.lastSeen) <= heartbeatsToYield*n.heartbeat:
			return ErrNodeHeld
		}
		newBoot = n == nil || n.boot != p.Boot
		started := now
		if !newBoot {
			started = n.started
		}
		n = &session{started: started}
		s.sessions[p.Node] = n
	}
	n.boot, n.seq, n.lastSeen = p.Boot, p.Seq, now
	n.heartbeat = time.Duration(min(max(p.HeartbeatSeconds, 1), MaxHeartbeatSeconds)) * time.Second
	if !p.Full && len(p.Middlewares) == 0 && len(p.Removed) == 0 {
		return nil // a heartbeat: the process is alive and its set unchanged
	}
	s.queue = append(s.queue, Update{Node: p.Node, Full: p.Full, Live: p.Middlewares, Removed: p.Removed, NewBoot: newBoot, Since: n.started, Received: now})
	select {
	case s.notify <- struct{}{}:
	default:
	}
	return nil
}

// Ready is signalled when updates are waiting.
func (s *Store) Ready() <-chan struct{} { return s.notify }

// Drain returns the waiting updates, oldest first.
func (s *Store) Drain() []Update {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := s.queue
	s.queue = nil
	return out
}

// Expire forgets processes silent for longer than they promised to be, and
// returns an update for each that empties its set, with the names sorted.
func (s *Store) Expire(now time.Time) []Update {
	s.mu.Lock()
	defer s.mu.Unlock()
	var gone []string
	for name, n := range s.sessions {
		if now.Sub(n.lastSeen) > heartbeatsMissed*n.heartbeat {
			delete(s.sessions, name)
			gone = append(gone, name)
		}
	}
	sort.Strings(gone)
	out := make([]Update, 0, len(gone))
	for _, name := range gone {
		out = append(out, Update{Node: name, Full: true, Received: now})
	}
	return out
}

// Nodes counts the processes whose sessions are current.
func (s *Store) Nodes() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.sessions)
}

// Session is one Traefik process whose plugin pushes, for the status page.
type Session struct {
	Node, Boot string
	LastSeen   time.Time
}

// Sessions lists the current sessions, by node.
func (s *Store) Sessions() []Session {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Session, 0, len(s.sessions))
	for node, n := range s.sessions {
		out = append(out, Session{Node: node, Boot: n.boot, LastSeen: n.lastSeen})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Node < out[j].Node })
	return out
}

// Run hands the loop the accepted pushes until ctx is done: each time some
// are queued, all of them, in the order they were accepted.
func (s *Store) Run(ctx context.Context, out chan<- source.PushBatch) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.Ready():
		}
		updates := s.Drain()
		if len(updates) == 0 {
			continue
		}
		select {
		case out <- updates:
		case <-ctx.Done():
			return
		}
	}
}
