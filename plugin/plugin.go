// Package plugin is traefik-sd's Traefik middleware: it tells the traefik-sd
// sidecar which circuits Traefik has actually loaded.
//
// Traefik interprets this package with Yaegi, so it uses the standard library
// only and avoids what Yaegi v0.16 lacks (generics-heavy helpers, min/max,
// Go 1.22 loop variables). Traefik calls New once per router using the
// middleware, again on every configuration reload, and cancels the ctx it gave
// when that configuration generation is dropped. New records the instance with
// its ctx in a process-wide registry; one background sender notices cancelled
// contexts, waits out a short removal delay so that a reload does not flap,
// and pushes batched changes to the sidecar.
//
// New returns next itself: the middleware adds no interpreted frame to the
// request path, so it costs nothing per request.
package plugin

import (
	"context"
	"fmt"
	"net/http"
)

// New validates the configuration, registers this instance and hands back
// next unchanged. A bad configuration returns an error naming the field;
// Traefik then disables the router and logs it.
//
// Nearly every call is a router Traefik rebuilds on a reload, with a valid
// configuration and the default intervals: that case runs here, in a
// function kept small, because Yaegi gives every call a frame with a slot
// allocated for each value its body could make, run or not. Everything
// else, errors included, is newChecked's.
func New(ctx context.Context, next http.Handler, config *Config, name string) (http.Handler, error) {
	if config != nil && config.RemovalDelay == DefaultRemovalDelay && config.ResyncInterval == DefaultResyncInterval && config.ok() {
		liveSet.arrive(arrival{ctx: ctx, name: name, cfg: config, timing: defaultTiming})
		return next, nil
	}
	return newChecked(ctx, next, config, name)
}

// newChecked is New for a configuration that is invalid (the error says
// which field) or that sets its own intervals (parsed here).
func newChecked(ctx context.Context, next http.Handler, config *Config, name string) (http.Handler, error) {
	if config == nil {
		return nil, fmt.Errorf("traefik-sd %s: no configuration", name)
	}
	timing, err := config.check()
	if err != nil {
		return nil, fmt.Errorf("traefik-sd %s: %w", name, err)
	}
	liveSet.arrive(arrival{ctx: ctx, name: name, cfg: config, timing: timing})
	return next, nil
}
