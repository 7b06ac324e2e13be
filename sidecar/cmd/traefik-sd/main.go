// Command traefik-sd is the sidecar: it publishes what Traefik routes as
// Prometheus HTTP SD targets. See the README for its options.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"syscall"

	"github.com/traefik-sd/traefik-sd/sidecar/config"
	"github.com/traefik-sd/traefik-sd/sidecar/daemon"
	"github.com/traefik-sd/traefik-sd/sidecar/memlimit"
	"github.com/traefik-sd/traefik-sd/sidecar/sdnotify"
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
		if os.Getenv("GOMEMLIMIT") == "" {
			setMemoryLimit(log, "/sys/fs/cgroup")
		}
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		defer stop()
		d := daemon.New(cfg, log)
		// Until the first set is built, collect often: what the start
		// keeps then fills the room its garbage leaves (memlimit.StartGCPercent).
		d.OnFirstSet(memlimit.DenseStart(os.Getenv))
		hup := make(chan os.Signal, 1)
		signal.Notify(hup, syscall.SIGHUP)
		defer signal.Stop(hup)
		go func() {
			for range hup {
				d.ReloadSecrets()
			}
		}()
		// Under systemd (Type=notify, examples/traefik-sd.service) the
		// start completes at READY=1: once the API listens, when "traefik-sd
		// started" is logged, and not once /readyz is ready, which waits for
		// etcd and Traefik (a unit ordered after this one, or etcd down,
		// must not hold the start until it times out).
		started := make(chan net.Addr, 1)
		go func() {
			select {
			case addr := <-started:
				notify(log, "READY=1\nSTATUS=serving on "+addr.String())
			case <-ctx.Done():
				return
			}
			<-ctx.Done()
			notify(log, "STOPPING=1")
		}()
		return d.Run(ctx, started)
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

// setMemoryLimit gives Go's collector a soft limit at memlimit.Share of
// the container's memory limit, when GOMEMLIMIT does not set one: without
// it a restart's peak, twice the memory held at rest, can pass a limit
// that the memory at rest and a re-list fit in.
func setMemoryLimit(log *slog.Logger, root string) {
	self, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return // no cgroups to read a limit from
	}
	limit, from, err := memlimit.Limit(root, self)
	if err != nil {
		log.Warn("the container's memory limit was not read; set GOMEMLIMIT to about 90% of it", "error", err)
		return
	}
	if limit == 0 {
		return
	}
	soft := int64(float64(limit) * memlimit.Share)
	debug.SetMemoryLimit(soft)
	log.Info("Go's soft memory limit set from the container's", "limit", from, "bytes", limit, "GOMEMLIMIT", soft)
}

// notify tells systemd the state, when it runs the sidecar as a
// Type=notify unit; elsewhere it does nothing.
func notify(log *slog.Logger, state string) {
	if _, err := sdnotify.Notify(state); err != nil {
		log.Warn("telling systemd the state failed", "state", strings.ReplaceAll(state, "\n", " "), "error", err)
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
