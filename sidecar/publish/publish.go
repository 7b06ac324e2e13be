// Package publish holds the body the server hands out: the HTTP SD JSON of
// the current target set, its ETag, and its gzip form made on first demand.
package publish

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"sync"
	"sync/atomic"
)

// Rendered is one immutable rendering of the target set.
type Rendered struct {
	ETag   string // quoted, as in the header
	Groups map[string]int

	// The body, rendered on first demand. lazy is kept: the gzip form is
	// made from it, and the plain body only when a client asks for it, or
	// for every such request when it is larger than keepUpTo.
	size     int
	keepUpTo int
	bodyOnce sync.Once
	body     []byte
	lazy     Lazy

	gzipOnce sync.Once
	gzipped  []byte
}

// Lazy is a body rendered on first demand, whose size is known before.
type Lazy interface {
	Size() int
	// AppendJSON appends the body to dst, for the plain body.
	AppendJSON(dst []byte) []byte
	// WriteJSON writes the body to w a piece at a time, so that it can be
	// compressed without a whole plain copy of it.
	WriteJSON(w io.Writer) error
}

// Body is the HTTP SD JSON. A set published lazily is rendered on the first
// request that asks for it: at 10,000 circuits a body is 10 MB, and making
// one for every change (most of which no client ever fetches, as Prometheus
// asks every 30 s or so) was most of what the collector had to clean up,
// and so of the change latency's tail.
func (r *Rendered) Body() []byte {
	r.bodyOnce.Do(func() {
		r.body = r.lazy.AppendJSON(make([]byte, 0, r.size))
	})
	return r.body
}

// Size is the length of Body, known without making it.
func (r *Rendered) Size() int { return r.size }

// DefaultKeepUpTo is the largest plain body a rendering keeps once made,
// about 30,000 targets. A larger one is rendered again for each request
// that asks for it: at 200,000 targets it is 109 MB, more than everything
// else the sidecar holds for those targets, and Prometheus's HTTP SD asks
// for it about once a minute, while rendering it took 0.18 s (make bench).
const DefaultKeepUpTo = 16 << 20

// Kept is Body when the body is small enough to keep (made on the first
// request, kept for the next), or nil: WriteBody then renders it for the
// request.
func (r *Rendered) Kept() []byte {
	if r.size > r.keepUpTo {
		return nil
	}
	return r.Body()
}

// WriteBody writes Body to w: the kept body, or one larger than keepUpTo
// rendered a piece at a time, without making it whole.
func (r *Rendered) WriteBody(w io.Writer) error {
	if r.size <= r.keepUpTo {
		_, err := w.Write(r.Body())
		return err
	}
	return r.lazy.WriteJSON(w)
}

// Gzipped is Body compressed, made on the first request that asks for it:
// compressing megabytes on every change would dominate the change latency.
// It is compressed as it is rendered and the plain body is not made: at
// 200,000 targets the plain body is 109 MB and its gzip form 4 MB, so a
// client that asks only for gzip should not have the sidecar hold both.
// (Prometheus's HTTP SD asks for the plain body: see Kept.)
func (r *Rendered) Gzipped() []byte {
	r.gzipOnce.Do(func() {
		var gz bytes.Buffer
		w, _ := gzip.NewWriterLevel(&gz, gzip.BestSpeed)
		_ = r.lazy.WriteJSON(w) // writing to memory cannot fail
		_ = w.Close()
		r.gzipped = bytes.Clone(gz.Bytes()) // without the buffer's slack
	})
	return r.gzipped
}

// Publisher holds the current rendering. Reads are lock-free.
type Publisher struct {
	current atomic.Pointer[Rendered]
	// KeepUpTo is the largest plain body a rendering keeps (Kept), for the
	// renderings published after it is set; New sets DefaultKeepUpTo.
	KeepUpTo int
}

// New returns a publisher of the empty set.
func New() *Publisher {
	p := &Publisher{KeepUpTo: DefaultKeepUpTo}
	p.Publish([]byte("[]"), map[string]int{})
	return p
}

// Current returns the rendering to serve.
func (p *Publisher) Current() *Rendered { return p.current.Load() }

// Publish publishes body, identified by its own digest; it returns false,
// and keeps the old rendering, when the body is byte-identical.
func (p *Publisher) Publish(body []byte, groups map[string]int) bool {
	return p.SetLazy(sha256.Sum256(body), func() Lazy { return whole(body) }, groups)
}

// whole is a body already rendered.
type whole []byte

func (w whole) Size() int                    { return len(w) }
func (w whole) AppendJSON(dst []byte) []byte { return append(dst, w...) }
func (w whole) WriteJSON(out io.Writer) error {
	_, err := out.Write(w)
	return err
}

// Changed tells whether a body with this digest differs from the current one.
func (p *Publisher) Changed(digest [sha256.Size]byte) bool {
	cur := p.current.Load()
	return cur == nil || cur.ETag != etag(digest)
}

// SetLazy publishes the body that freeze's value renders on first demand,
// identified by digest (which must change whenever the body does): when the
// digest is the current one, nothing is frozen or compared. What it renders
// must never change. Only one goroutine may call it.
func (p *Publisher) SetLazy(digest [sha256.Size]byte, freeze func() Lazy, groups map[string]int) bool {
	if !p.Changed(digest) {
		return false
	}
	l := freeze()
	p.current.Store(&Rendered{lazy: l, size: l.Size(), keepUpTo: p.KeepUpTo, ETag: etag(digest), Groups: groups})
	return true
}

func etag(digest [sha256.Size]byte) string { return `"` + hex.EncodeToString(digest[:16]) + `"` }
