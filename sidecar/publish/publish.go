// Package publish renders the target set as Prometheus HTTP SD JSON once per
// change and holds the rendered body, its ETag and its gzip form for the
// server to hand out as they are.
package publish

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"sync"
	"sync/atomic"
	"unicode/utf8"

	"github.com/traefik-sd/traefik-sd/sidecar/targets"
)

// Rendered is one immutable rendering of the target set.
type Rendered struct {
	Body   []byte
	ETag   string // quoted, as in the header
	Groups map[string]int

	gzipOnce sync.Once
	gzipped  []byte
}

// Gzipped is Body compressed, made on the first request that asks for it:
// compressing megabytes on every change would dominate the change latency.
func (r *Rendered) Gzipped() []byte {
	r.gzipOnce.Do(func() {
		var gz bytes.Buffer
		w, _ := gzip.NewWriterLevel(&gz, gzip.BestSpeed)
		_, _ = w.Write(r.Body)
		_ = w.Close()
		r.gzipped = gz.Bytes()
	})
	return r.gzipped
}

// Publisher holds the current rendering. Reads are lock-free.
type Publisher struct {
	current atomic.Pointer[Rendered]
	buf     []byte
}

// New returns a publisher of the empty set.
func New() *Publisher {
	p := &Publisher{}
	p.Set(nil)
	return p
}

// Current returns the rendering to serve.
func (p *Publisher) Current() *Rendered { return p.current.Load() }

// Set renders ts; it returns false, and keeps the old rendering, when the
// body is byte-identical. Only one goroutine may call Set or SetDigested.
func (p *Publisher) Set(ts []targets.Target) bool {
	p.buf = AppendJSON(p.buf[:0], ts)
	if cur := p.current.Load(); cur != nil && bytes.Equal(cur.Body, p.buf) {
		return false
	}
	groups := map[string]int{}
	for _, t := range ts {
		groups[t.Label("service_group")]++
	}
	body := p.buf
	return p.SetDigested(sha256.Sum256(body), func(dst []byte) []byte { return append(dst, body...) }, groups)
}

// Changed tells whether a body with this digest differs from the current one.
func (p *Publisher) Changed(digest [sha256.Size]byte) bool {
	cur := p.current.Load()
	return cur == nil || cur.ETag != etag(digest)
}

// SetDigested publishes the body that render appends, identified by digest
// (which must change whenever the body does): when the digest is the
// current one, nothing is rendered or compared.
func (p *Publisher) SetDigested(digest [sha256.Size]byte, render func(dst []byte) []byte, groups map[string]int) bool {
	if !p.Changed(digest) {
		return false
	}
	p.current.Store(&Rendered{Body: render(nil), ETag: etag(digest), Groups: groups})
	return true
}

func etag(digest [sha256.Size]byte) string { return `"` + hex.EncodeToString(digest[:16]) + `"` }

// AppendJSON appends the HTTP SD body: [{"targets":["a"],"labels":{…}},…],
// one group per target, in the order given (Build sorts), "[]" when empty.
func AppendJSON(b []byte, ts []targets.Target) []byte {
	b = append(b, '[')
	for i, t := range ts {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"targets":[`...)
		b = appendString(b, t.Address)
		b = append(b, `],"labels":{`...)
		for j, l := range t.Labels {
			if j > 0 {
				b = append(b, ',')
			}
			b = appendString(b, l.Name)
			b = append(b, ':')
			b = appendString(b, l.Value)
		}
		b = append(b, "}}"...)
	}
	return append(b, ']')
}

const hexDigits = "0123456789abcdef"

// appendString appends s as a JSON string, escaping as encoding/json does
// (HTML-safe, invalid UTF-8 replaced).
func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xF])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
