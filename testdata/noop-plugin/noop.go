// Package noop is the smallest Yaegi middleware plugin: the baseline for what
// any plugin costs Traefik (benchmarks only).
package noop

import (
	"context"
	"net/http"
)

// Config has one field so that Traefik has something to decode.
type Config struct{ CircuitID string }

// CreateConfig returns an empty configuration.
func CreateConfig() *Config { return &Config{} }

// New returns next.
func New(_ context.Context, next http.Handler, _ *Config, _ string) (http.Handler, error) {
	return next, nil
}
