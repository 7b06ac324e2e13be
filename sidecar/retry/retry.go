// Package retry is the one policy every source of the sidecar retries with:
// etcd's watch, Traefik's API and /metrics, the coordinator's API and the
// ServiceDiscovery stores. After a failure it waits Initial, doubling with
// each failure in a row up to Max; a success starts over. A source that
// polls on an interval anyway caps Max at its interval, so that a failure
// never delays its next attempt.
package retry

import "time"

// Defaults: quick enough that a restarted peer is noticed within a second,
// slow enough that a dead one costs a request every few seconds.
const (
	DefaultInitial = 250 * time.Millisecond
	DefaultMax     = 5 * time.Second
)

// Backoff counts failures in a row. The zero value uses the defaults. Not
// safe for concurrent use: each source's one goroutine owns its own.
type Backoff struct {
	Initial, Max time.Duration
	next         time.Duration
}

// Failed records a failure and returns how long to wait before the next attempt.
func (b *Backoff) Failed() time.Duration {
	initial, max := b.Initial, b.Max
	if initial <= 0 {
		initial = DefaultInitial
	}
	if max <= 0 {
		max = DefaultMax
	}
	if b.next < initial {
		b.next = initial
	}
	wait := min(b.next, max)
	b.next = min(2*b.next, max)
	return wait
}

// Succeeded starts over.
func (b *Backoff) Succeeded() { b.next = 0 }

// Capped is the policy for a source that polls every interval anyway.
func Capped(interval time.Duration) Backoff {
	return Backoff{Max: min(DefaultMax, interval)}
}
