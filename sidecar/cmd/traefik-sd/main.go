// Command traefik-sd is the sidecar: it publishes what Traefik routes as
// Prometheus HTTP SD targets. See the README for its options.
package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/traefik-sd/traefik-sd/sidecar/config"
	"github.com/traefik-sd/traefik-sd/sidecar/daemon"
	"github.com/traefik/paerser/cli"
)

func main() {
	cfg := config.Default()
	cmd := config.Command(cfg, func() error {
		if err := cfg.Complete(); err != nil {
			return err
		}
		var level slog.Level
		_ = level.UnmarshalText([]byte(strings.ToLower(cfg.LogLevel)))
		log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		defer stop()
		return daemon.New(cfg, log).Run(ctx, nil)
	})
	if err := cli.Execute(cmd); err != nil {
		fmt.Fprintln(os.Stderr, "traefik-sd:", err)
		os.Exit(1)
	}
}
