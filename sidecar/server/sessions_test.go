package server_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/traefik-sd/traefik-sd/plugin"
	"github.com/traefik-sd/traefik-sd/sidecar/server"
)

// TestPushesThatWouldTakeANodeOrASessionAreRefusedAndCounted: a full push
// under a live node's name from another boot is 403 (not 409, which would
// ask the plugin for the full push it just sent), a new node over
// --plugin.maxSessions is 503; each is counted by its result.
func TestPushesThatWouldTakeANodeOrASessionAreRefusedAndCounted(t *testing.T) {
	h := newHarness(t, func(s *server.Server) { s.Plugins.SetMaxSessions(1) })
	full := func(node, boot string) []byte {
		b, _ := json.Marshal(plugin.Push{Node: node, Boot: boot, Seq: 1, Full: true, ResyncSeconds: 30, HeartbeatSeconds: 2,
			Middlewares: []plugin.LiveMiddleware{}})
		return b
	}
	for _, c := range []struct {
		desc   string
		body   []byte
		want   int
		inBody string
	}{
		{"the first process", full("n", "b1"), http.StatusNoContent, ""},
		{"another boot under its live name", full("n", "b2"), http.StatusForbidden, "held by another process"},
		{"another node over the cap", full("m", "b1"), http.StatusServiceUnavailable, "--plugin.maxSessions"},
	} {
		resp, body := h.do(t, http.MethodPost, plugin.SyncPath, c.body, nil)
		if resp.StatusCode != c.want || !strings.Contains(string(body), c.inBody) {
			t.Errorf("%s: %s %q, want %d with %q", c.desc, resp.Status, body, c.want, c.inBody)
		}
	}
	if ss := h.srv.Plugins.Sessions(); len(ss) != 1 || ss[0].Node != "n" || ss[0].Boot != "b1" {
		t.Errorf("sessions %+v, want only the first process's", ss)
	}
	_, metrics := h.do(t, http.MethodGet, "/metrics", nil, nil)
	for _, want := range []string{`traefik_sd_plugin_pushes_total{result="node_held"} 1`,
		`traefik_sd_plugin_pushes_total{result="too_many_sessions"} 1`, `traefik_sd_plugin_pushes_total{result="full"} 1`} {
		if !strings.Contains(string(metrics), want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}
