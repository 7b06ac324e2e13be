package targets_test

import (
	"encoding/json"
	"testing"

	"github.com/traefik-sd/traefik-sd/sidecar/targets"
)

func TestAppendJSONMatchesEncodingJSON(t *testing.T) {
	values := []string{"plain", `quote " and \ backslash`, "ctl \x01\n\t\r", "<html>&", "ünïcödé ✓", "bad \xff utf8", "line\u2028sep"}
	for _, v := range values {
		got := targets.AppendJSON(nil, []targets.Target{{Address: v, Labels: []targets.Label{{Name: "k", Value: v}}}})
		type group struct {
			Targets []string          `json:"targets"`
			Labels  map[string]string `json:"labels"`
		}
		want, _ := json.Marshal([]group{{Targets: []string{v}, Labels: map[string]string{"k": v}}})
		if string(got) != string(want) {
			t.Errorf("%q:\ngot  %s\nwant %s", v, got, want)
		}
	}
	if got := targets.AppendJSON(nil, nil); string(got) != "[]" {
		t.Errorf("empty set: %s", got)
	}
}
