package engine_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/traefik-sd/traefik-sd/plugin"
	"github.com/traefik-sd/traefik-sd/sidecar/engine"
	"github.com/traefik-sd/traefik-sd/sidecar/pluginsync"
	"github.com/traefik-sd/traefik-sd/sidecar/targets"
	"github.com/traefik-sd/traefik-sd/sidecar/traefikapi"
)

// routeTargets renders the route targets whole: address and every label.
func routeTargets(e *engine.Engine) string {
	var out string
	for _, t := range e.Targets() {
		if t.Label("service_group") == targets.GroupRoute {
			out += fmt.Sprintln(t.Address, t.Labels)
		}
	}
	return out
}

// TestAPushUnderAnotherNodeCannotMoveATarget is the probe of issue 24,
// through the sidecar's own push path (pluginsync's Decode and Store, then
// the engine) in plugin-only mode, where a push's configuration names a
// circuit's servers: a process pushing as node "!" (first by name) for a
// router Traefik serves cannot change its published address or labels,
// since the configuration of the oldest session counts; a push under the
// real node's name with another boot is refused while that node is alive.
func TestAPushUnderAnotherNodeCannotMoveATarget(t *testing.T) {
	e := newEngine(t, options(false), t0)
	c := circuit("c1", true)
	e.Routers(traefikapi.Update{Sweep: true, Routers: []traefikapi.Router{router(c, traefikapi.StatusEnabled)}})
	store := pluginsync.NewStore()
	send := func(p plugin.Push, at time.Time) error {
		t.Helper()
		body, err := json.Marshal(p)
		if err != nil {
			t.Fatal(err)
		}
		decoded, err := pluginsync.Decode(body)
		if err != nil {
			return err
		}
		if err := store.Apply(decoded, at); err != nil {
			return err
		}
		e.Pushes(store.Drain())
		return nil
	}
	real := live("traefik-0", true, t0, c).Live
	if err := send(plugin.Push{Node: "traefik-0", Boot: "real", Seq: 1, Full: true, ResyncSeconds: 300, HeartbeatSeconds: 2, Middlewares: real}, t0); err != nil {
		t.Fatal(err)
	}
	if !e.Ready(t0) || routes(e) != both(c) {
		t.Fatalf("the real process's set is not published:\n%s", routes(e))
	}
	want := routeTargets(e)

	spoofed := live("!", true, t0, c).Live
	spoofed[0].Config.Routes = []plugin.Route{{URL: "http://169.254.169.254:80/"}}
	spoofed[0].Config.MetricsPath = "/latest/meta-data/iam"
	spoofed[0].Config.Labels = map[string]string{"team": "spoofed"}
	at := t0
	for seq := uint64(1); seq <= 5; seq++ {
		at = at.Add(time.Second)
		// The real process keeps heartbeating; the stranger pushes its
		// full set under a name of its own and, resync of 3e9 seconds
		// (clamped), stays as long as it likes.
		if err := send(plugin.Push{Node: "traefik-0", Boot: "real", Seq: seq + 1, HeartbeatSeconds: 2, ResyncSeconds: 300, Middlewares: []plugin.LiveMiddleware{}}, at); err != nil {
			t.Fatalf("the real process's heartbeat: %v", err)
		}
		if err := send(plugin.Push{Node: "!", Boot: "stranger", Seq: seq, Full: true, ResyncSeconds: 3e9, HeartbeatSeconds: 60, Middlewares: spoofed}, at); err != nil {
			t.Fatalf("the stranger's push under its own name: %v", err)
		}
		// Under the real node's name, with another boot: refused.
		if err := send(plugin.Push{Node: "traefik-0", Boot: "stranger", Seq: seq, Full: true, ResyncSeconds: 300, HeartbeatSeconds: 2, Middlewares: spoofed}, at); !errors.Is(err, pluginsync.ErrNodeHeld) {
			t.Fatalf("a full push under the live node's name from another boot: %v, want ErrNodeHeld", err)
		}
		if got := routeTargets(e); got != want {
			t.Fatalf("after the stranger's pushes (%d), the targets changed:\n%s\nwant\n%s", seq, got, want)
		}
	}
	// A label Prometheus sets is refused outright.
	spoofed[0].Config.Labels = map[string]string{"job": "spoofed"}
	if err := send(plugin.Push{Node: "!", Boot: "stranger", Seq: 6, Full: true, ResyncSeconds: 300, HeartbeatSeconds: 2, Middlewares: spoofed}, at); err == nil {
		t.Error("a push setting the job label was accepted")
	}
}
