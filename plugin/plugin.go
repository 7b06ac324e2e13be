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
	"time"
)

// New validates the configuration, registers this instance and hands back
// next unchanged. A bad configuration returns an error naming the field;
// Traefik then disables the router and logs it.
func New(ctx context.Context, next http.Handler, config *Config, name string) (http.Handler, error) {
	if config == nil {
		return nil, fmt.Errorf("traefik-sd %s: no configuration", name)
	}
	timing, err := config.check()
	if err != nil {
		return nil, fmt.Errorf("traefik-sd %s: %w", name, err)
	}
	cfg := config.normalizedCopy()
	liveSet.add(ctx, name, cfg, timing, time.Now())
	return next, nil
}

// normalizedCopy copies the lists and maps, which Traefik owns and may
// reuse, normalized. It allocates only for what is there: under the
// interpreter every allocation counts, and New runs per router per reload.
func (c *Config) normalizedCopy() *Config {
	out := &Config{}
	*out = *c
	// One assignment each: Yaegi v0.16 panics on a tuple assignment of nils to fields.
	out.SessionIDs = nil
	out.Routes = nil
	out.Labels = nil
	if len(c.SessionIDs) > 0 {
		out.SessionIDs = append([]string{}, c.SessionIDs...)
	}
	if len(c.Routes) > 0 {
		out.Routes = append([]Route{}, c.Routes...)
	}
	if len(c.Labels) > 0 {
		out.Labels = make(map[string]string, len(c.Labels))
		for k, v := range c.Labels {
			out.Labels[k] = v
		}
	}
	out.Normalize()
	return out
}
