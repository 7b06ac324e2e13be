// Command traefik-sd is the sidecar: it publishes what Traefik routes as
// Prometheus HTTP SD targets. See the README for its options.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/traefik-sd/traefik-sd/sidecar/config"
	"github.com/traefik-sd/traefik-sd/sidecar/daemon"
	"github.com/traefik-sd/traefik-sd/sidecar/version"
	"github.com/traefik/paerser/cli"
)

func main() {
	for _, a := range os.Args[1:] {
		if a == "--version" || a == "-version" {
			fmt.Println(version.String())
			return
		}
	}
	cfg := config.Default()
	cmd := config.Command(cfg, func() error {
		if err := cfg.Complete(); err != nil {
			return err
		}
		log := NewLogger(os.Stderr, cfg.Log)
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		defer stop()
		d := daemon.New(cfg, log)
		hup := make(chan os.Signal, 1)
		signal.Notify(hup, syscall.SIGHUP)
		defer signal.Stop(hup)
		go func() {
			for range hup {
				d.ReloadSecrets()
			}
		}()
		return d.Run(ctx, nil)
	})
	if err := cli.Execute(cmd); err != nil {
		// paerser wraps every error in "command <name> error: …"; the
		// message under it names the option already.
		if inner := errors.Unwrap(err); inner != nil {
			err = inner
		}
		fmt.Fprintln(os.Stderr, "traefik-sd:", err)
		os.Exit(1)
	}
}

// NewLogger is the sidecar's log on w, in the configured format and level.
func NewLogger(w io.Writer, c config.Log) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(strings.ToLower(c.Level)))
	opts := &slog.HandlerOptions{Level: level}
	if c.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}
