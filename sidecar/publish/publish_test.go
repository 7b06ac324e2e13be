package publish_test

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
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

// A set published in pieces is joined only when asked for, and then is the
// same JSON as one rendered whole; its size is known before.
func TestPiecesAreJoinedOnDemand(t *testing.T) {
	p := publish.New()
	pieces := [][]byte{[]byte(`{"targets":["a:1"],"labels":{}}`), []byte(`{"targets":["b:1"],"labels":{}},{"targets":["c:1"],"labels":{}}`)}
	want := `[` + string(pieces[0]) + `,` + string(pieces[1]) + `]`
	if !p.SetPieces(sha256.Sum256([]byte(want)), func(dst [][]byte) [][]byte { return append(dst, pieces...) }, map[string]int{}) {
		t.Fatal("a new digest was not published")
	}
	r := p.Current()
	if r.Size() != len(want) {
		t.Fatalf("size %d before joining, want %d", r.Size(), len(want))
	}
	if got := string(r.Body()); got != want {
		t.Fatalf("joined body %s, want %s", got, want)
	}
	if p.SetPieces(sha256.Sum256([]byte(want)), func([][]byte) [][]byte { t.Fatal("pieces asked for an unchanged digest"); return nil }, nil) {
		t.Fatal("the same digest was published again")
	}
	empty := publish.New()
	empty.SetPieces(sha256.Sum256([]byte("[]x")), func(dst [][]byte) [][]byte { return dst }, nil)
	if got := string(empty.Current().Body()); got != "[]" || empty.Current().Size() != 2 {
		t.Fatalf("no pieces: %q", got)
	}
}
