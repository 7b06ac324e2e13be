// Package source holds what the sidecar's sources send, and nothing else:
// etcd's listings and changes, a scrape of Traefik's /metrics, Traefik's
// routers and services, the plugin's pushes and the coordinator's routes.
// Each source is a Run(ctx, chan<- its message); the engine reads the
// messages as plain values and never calls a source, and no source knows the
// engine. Like Prometheus's targetgroup, it is the one vocabulary both sides
// share, so it imports nothing of the sidecar: only the plugin's own types,
// the push's wire contract.
//
// Every message tells whether its source failed the same way (Failure), so
// that one helper logs and counts each source's loss and return.
package source

import "time"

// Reported is what every message says of its source: whether this attempt
// failed (nil: it answered) and when.
type Reported interface {
	Failure() error
	When() time.Time
}

// EtcdReports are the reports the etcd source sent in one burst: applied
// at once, so that a burst of changes renders once.
type EtcdReports []EtcdReport

// Batches are the burst's batches, in order.
func (r EtcdReports) Batches() []EtcdBatch {
	var out []EtcdBatch
	for _, x := range r {
		if x.Batch != nil {
			out = append(out, *x.Batch)
		}
	}
	return out
}

// PushBatch are the plugin's pushes accepted since the last were taken, in order.
type PushBatch []Pushes

// Failure and When make each message Reported. A burst of etcd reports
// fails as its last status does; a push that is refused is answered to its
// sender, never sent on.
func (r EtcdReports) Failure() error {
	for i := len(r) - 1; i >= 0; i-- {
		if st := r[i].Status; st != nil {
			if st.Connected {
				return nil
			}
			if st.Err != nil {
				return st.Err
			}
			return errStale
		}
	}
	return nil
}
func (r EtcdReports) When() time.Time {
	if b := r.Batches(); len(b) > 0 {
		return b[len(b)-1].Received
	}
	return time.Time{}
}
func (s Scrape) Failure() error    { return s.Err }
func (s Scrape) When() time.Time   { return s.At }
func (r Routers) Failure() error   { return r.Err }
func (r Routers) When() time.Time  { return r.At }
func (s Services) Failure() error  { return s.Err }
func (s Services) When() time.Time { return s.At }
func (r Routes) Failure() error    { return r.Err }
func (r Routes) When() time.Time   { return r.Asked }
func (p PushBatch) Failure() error { return nil }
func (p PushBatch) When() time.Time {
	if len(p) > 0 {
		return p[len(p)-1].Received
	}
	return time.Time{}
}

type staleError struct{}

func (staleError) Error() string { return "etcd has not answered for three progress intervals" }

var errStale error = staleError{}
