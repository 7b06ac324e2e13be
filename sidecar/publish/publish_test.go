package publish_test

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"io"
	"testing"

	"github.com/traefik-sd/traefik-sd/sidecar/publish"
	"github.com/traefik-sd/traefik-sd/sidecar/targets"
)

func TestPublishKeepsRenderingWhenNothingChanged(t *testing.T) {
	p := publish.New()
	if got := string(p.Current().Body()); got != "[]" {
		t.Fatalf("a new publisher serves %q, want []", got)
	}
	body := func() []byte {
		return targets.AppendJSON(nil, []targets.Target{{Address: "a:1", Labels: []targets.Label{{Name: "service_group", Value: "traefik"}}}})
	}
	if !p.Publish(body(), map[string]int{"traefik": 1}) {
		t.Fatal("first set reported no change")
	}
	first := p.Current()
	if p.Publish(body(), map[string]int{"traefik": 1}) {
		t.Error("an equal set reported a change")
	}
	if p.Current() != first || first.Groups["traefik"] != 1 {
		t.Error("rendering replaced or miscounted")
	}
	var gz bytes.Buffer
	r, err := gzip.NewReader(bytes.NewReader(first.Gzipped()))
	if err == nil {
		_, err = gz.ReadFrom(r)
	}
	if err != nil || gz.String() != string(first.Body()) {
		t.Errorf("gzip form does not hold the body: %v %q", err, gz.String())
	}
}

// lazyBody counts its renderings.
type lazyBody struct {
	body    string
	renders int
}

func (l *lazyBody) Size() int { return len(l.body) }
func (l *lazyBody) AppendJSON(dst []byte) []byte {
	l.renders++
	return append(dst, l.body...)
}
func (l *lazyBody) WriteJSON(w io.Writer) error {
	l.renders++
	_, err := io.WriteString(w, l.body)
	return err
}

// A set published lazily is rendered once, only when asked for; its size is
// known before.
func TestLazyBodyIsRenderedOnDemandOnce(t *testing.T) {
	p := publish.New()
	l := &lazyBody{body: `[{"targets":["a:1"],"labels":{}}]`}
	if !p.SetLazy(sha256.Sum256([]byte(l.body)), func() publish.Lazy { return l }, map[string]int{}) {
		t.Fatal("a new digest was not published")
	}
	r := p.Current()
	if r.Size() != len(l.body) || l.renders != 0 {
		t.Fatalf("size %d, %d renders before any Body", r.Size(), l.renders)
	}
	for i := 0; i < 3; i++ {
		if got := string(r.Body()); got != l.body {
			t.Fatalf("body %s, want %s", got, l.body)
		}
	}
	if l.renders != 1 {
		t.Fatalf("rendered %d times", l.renders)
	}
	if p.SetLazy(sha256.Sum256([]byte(l.body)), func() publish.Lazy { t.Fatal("froze an unchanged digest"); return nil }, nil) {
		t.Fatal("the same digest was published again")
	}
}

// The gzip form is compressed as the body is rendered, and the plain body is
// not kept beside it: a client that asks for plain has it rendered again.
func TestGzipDoesNotKeepThePlainBody(t *testing.T) {
	p := publish.New()
	l := &lazyBody{body: `[{"targets":["a:1"],"labels":{"circuit_id":"c1"}}]`}
	p.SetLazy(sha256.Sum256([]byte(l.body)), func() publish.Lazy { return l }, map[string]int{})
	r := p.Current()
	for i := 0; i < 2; i++ {
		zr, err := gzip.NewReader(bytes.NewReader(r.Gzipped()))
		if err != nil {
			t.Fatal(err)
		}
		plain, err := io.ReadAll(zr)
		if err != nil || string(plain) != l.body {
			t.Fatalf("gzip form holds %q (%v), want %s", plain, err, l.body)
		}
	}
	if l.renders != 1 {
		t.Fatalf("rendered %d times for two gzip requests", l.renders)
	}
	if got := string(r.Body()); got != l.body || l.renders != 2 {
		t.Fatalf("plain body %s after %d renders: the gzip form kept a plain copy", got, l.renders)
	}
}

// A plain body larger than KeepUpTo is rendered for each request, a piece
// at a time, and never made whole or kept; one at most KeepUpTo is made
// once and kept for the requests that follow.
func TestALargePlainBodyIsRenderedPerRequestNotKept(t *testing.T) {
	body := `[{"targets":["a:1"],"labels":{"circuit_id":"c1"}}]`
	for _, tc := range []struct {
		keepUpTo int
		kept     bool
		renders  int
	}{
		{keepUpTo: len(body), kept: true, renders: 1},
		{keepUpTo: len(body) - 1, kept: false, renders: 3},
	} {
		p := publish.New()
		p.KeepUpTo = tc.keepUpTo
		l := &lazyBody{body: body}
		p.SetLazy(sha256.Sum256([]byte(body)), func() publish.Lazy { return l }, map[string]int{})
		r := p.Current()
		for i := 0; i < 3; i++ {
			kept := r.Kept()
			if (kept != nil) != tc.kept || (kept != nil && string(kept) != body) {
				t.Fatalf("KeepUpTo %d: Kept gives %q, want it kept: %v", tc.keepUpTo, kept, tc.kept)
			}
			var out bytes.Buffer
			if err := r.WriteBody(&out); err != nil || out.String() != body {
				t.Fatalf("KeepUpTo %d: WriteBody wrote %q (%v), want %s", tc.keepUpTo, out.String(), err, body)
			}
		}
		if l.renders != tc.renders {
			t.Errorf("KeepUpTo %d: rendered %d times for three requests, want %d", tc.keepUpTo, l.renders, tc.renders)
		}
	}
	if publish.New().KeepUpTo != publish.DefaultKeepUpTo {
		t.Error("a new publisher does not keep bodies up to DefaultKeepUpTo")
	}
}
