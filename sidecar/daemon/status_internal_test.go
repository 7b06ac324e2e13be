package daemon

import (
	"io"
	"log/slog"
	"reflect"
	"testing"

	"github.com/traefik-sd/traefik-sd/sidecar/config"
)

// TestThePageListsTheEnginesTargetsExactly: made from the frozen set, the
// page's targets are the engine's, labels in order, whatever characters
// they hold.
func TestThePageListsTheEnginesTargetsExactly(t *testing.T) {
	cfg := config.Default()
	cfg.Worker.Authority = `w<1>&"2"` + "\u2028\\é"
	cfg.Worker.Node = "node\n\ta"
	cfg.Traefik.Target = "10.0.0.1:8080"
	cfg.Traefik.MetricsURL = "https://10.0.0.1:8080/metrics/x"
	cfg.AppProxy.WorkerTarget = "10.0.0.2:6020"
	cfg.AppProxy.CoordinatorTarget = "10.0.0.3:10200"
	d := New(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	want := d.engine.Targets()
	got := d.engine.Freeze().Targets()
	if len(want) != 3 || !reflect.DeepEqual(got, want) {
		t.Errorf("read back:\n%q\nthe engine's:\n%q", got, want)
	}
}
