package source

import (
	"time"

	"github.com/traefik-sd/traefik-sd/plugin"
)

// Pushes is what one accepted push, or a process gone silent, changes.
type Pushes struct {
	Node string
	// Full replaces everything known of Node with Live; otherwise Live is
	// upserted and Removed dropped.
	Full    bool
	Live    []plugin.LiveMiddleware
	Removed []string
	// NewBoot: the first push of this process (a Traefik that started or
	// restarted, or a sidecar that did), so everything it serves may differ.
	NewBoot bool
	// Since is when this process's session began: its boot's first
	// accepted full push. Where processes disagree about a middleware, the
	// oldest session's configuration counts.
	Since time.Time
	// Received is when the push arrived.
	Received time.Time
}
