package publish_test

import (
	"bytes"
	"compress/gzip"
	"testing"

	"github.com/traefik-sd/traefik-sd/sidecar/publish"
	"github.com/traefik-sd/traefik-sd/sidecar/targets"
)

func TestPublishKeepsRenderingWhenNothingChanged(t *testing.T) {
	p := publish.New()
	if got := string(p.Current().Body); got != "[]" {
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
	if err != nil || gz.String() != string(first.Body) {
		t.Errorf("gzip form does not hold the body: %v %q", err, gz.String())
	}
}
