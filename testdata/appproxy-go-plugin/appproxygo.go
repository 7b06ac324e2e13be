// Package appproxygo stands in for Backend.AI's appproxy-traefik-plugin-go
// in the reload benchmark (e2e/cmd/bench): Traefik decodes the keys the
// coordinator writes for it into Config, as it would for the real plugin,
// and New does nothing, so the figure is what Traefik spends on one more
// Yaegi middleware per router, not what the real one does.
package appproxygo

import (
	"context"
	"net/http"
)

// Config holds the coordinator's keys: id, sessionids and lastusedmarkerpath
// (Traefik matches them to fields ignoring case).
type Config struct {
	ID                 string
	SessionIDs         []string
	LastUsedMarkerPath string
}

// CreateConfig returns an empty configuration.
func CreateConfig() *Config { return &Config{SessionIDs: []string{}} }

// New returns next.
func New(_ context.Context, next http.Handler, _ *Config, _ string) (http.Handler, error) {
	return next, nil
}
