package source

import (
	"sort"
	"strings"
	"time"
)

// Health is what one scrape of Traefik's /metrics says.
type Health struct {
	// down holds serverKey(service, url) of the servers Traefik reports down.
	down map[string]bool
	// Known counts the servers Traefik reports at all (up or down).
	Known int
	// LastReloadSuccess and LastReloadFailure are Unix seconds; 0 if absent.
	LastReloadSuccess float64
	LastReloadFailure float64
	// Samples is the number of sample lines read; Broken those skipped as malformed.
	Samples int
	Broken  int
	// FirstError describes the first malformed line, with its line number.
	FirstError string
}

func serverKey(service, url string) string { return service + "\x00" + url }

// Down tells whether Traefik reports the server (its URL as configured,
// under the qualified name of the service holding it) down.
func (r *Health) Down(service, url string) bool { return r.down[serverKey(service, url)] }

// DownCount is how many servers Traefik reports down.
func (r *Health) DownCount() int { return len(r.down) }

// DownServers lists the servers reported down as "service url", sorted.
func (r *Health) DownServers() []string {
	out := make([]string, 0, len(r.down))
	for k := range r.down {
		out = append(out, strings.Replace(k, "\x00", " ", 1))
	}
	sort.Strings(out)
	return out
}

// DownServices lists the services with a server reported down, sorted.
func (r *Health) DownServices() []string { return (&Health{}).ChangedServices(r) }

// ChangedServices lists the services with a server down in one result but
// not the other, sorted.
func (r *Health) ChangedServices(prev *Health) []string {
	seen := map[string]bool{}
	var out []string
	note := func(key string) {
		service, _, _ := strings.Cut(key, "\x00")
		if !seen[service] {
			seen[service] = true
			out = append(out, service)
		}
	}
	for k := range prev.down {
		if !r.down[k] {
			note(k)
		}
	}
	for k := range r.down {
		if !prev.down[k] {
			note(k)
		}
	}
	sort.Strings(out)
	return out
}

// MarkDown records a server Traefik reports down, keyed service NUL url.
func (r *Health) MarkDown(key string) {
	if r.down == nil {
		r.down = map[string]bool{}
	}
	r.down[key] = true
}

// Scrape is one scrape: its Result, or why it failed.
type Scrape struct {
	Result   Health
	Err      error
	Duration time.Duration
	At       time.Time
}
