// Package servicediscovery writes the published targets into Backend.AI's
// ServiceDiscovery store, so that the Manager's existing
// GET /metrics/service_discovery serves them with no Prometheus change.
//
// Each target is one ServiceMetadata entry. The Manager reads exactly one
// backend, Redis by default (RedisStore) or etcd (EtcdStore); the Writer
// keeps either in step with the published set. One malformed or partial
// entry makes the Manager's whole endpoint fail, so every store writes an
// entry whole, atomically.
package servicediscovery

import (
	"crypto/sha1" //nolint:gosec // UUIDv5 is defined with SHA-1
	"encoding/hex"
	"fmt"
	"net"
	"strconv"
	"strings"

	"github.com/traefik-sd/traefik-sd/sidecar/targets"
)

// Groups written: traefik-sd's own. model-services belongs to the Manager,
// which deletes there whatever it did not write; the AppProxy coordinator
// and worker register themselves.
var Groups = map[string]bool{targets.GroupRoute: true, targets.GroupTraefik: true}

// idNamespace is the UUIDv5 namespace of traefik-sd's entry ids.
var idNamespace = [16]byte{0x6f, 0x2c, 0x1d, 0x4e, 0x8a, 0x37, 0x4b, 0x5f, 0x9e, 0x10, 0x2d, 0x3c, 0x4b, 0x5a, 0x69, 0x78}

// UUIDv5 is the name-based UUID (RFC 4122 §4.3) of name in traefik-sd's namespace.
func UUIDv5(name string) string {
	h := sha1.New() //nolint:gosec
	h.Write(idNamespace[:])
	h.Write([]byte(name))
	var u [16]byte
	copy(u[:], h.Sum(nil))
	u[6] = u[6]&0x0f | 0x50
	u[8] = u[8]&0x3f | 0x80
	x := hex.EncodeToString(u[:])
	return x[0:8] + "-" + x[8:12] + "-" + x[12:16] + "-" + x[16:20] + "-" + x[20:32]
}

// Endpoint is ServiceMetadata.endpoint.
type Endpoint struct {
	Address           string `json:"address"`
	Port              int    `json:"port"`
	Protocol          string `json:"protocol"`
	PrometheusAddress string `json:"prometheus_address"`
}

// Entry is one ServiceMetadata without its health_status, which is stamped
// when written.
type Entry struct {
	ID          string
	DisplayName string
	Group       string
	Version     string
	Endpoint    Endpoint
	// Labels become the target's labels in the Manager's answer, with
	// service_id, service_group, display_name and version added by it.
	// __metrics_path__ and __scheme__ are carried like any other:
	// Prometheus honours them from HTTP SD (checked end to end).
	Labels map[string]string
}

// Health is ServiceMetadata.health_status, epoch seconds.
type Health struct {
	RegistrationTime float64 `json:"registration_time"`
	LastHeartbeat    float64 `json:"last_heartbeat"`
}

// Record is an entry as written: with its health status.
type Record struct {
	Entry
	Health Health
}

// Equal tells whether two entries say the same.
func (e Entry) Equal(o Entry) bool {
	if e.ID != o.ID || e.DisplayName != o.DisplayName || e.Group != o.Group || e.Version != o.Version ||
		e.Endpoint != o.Endpoint || len(e.Labels) != len(o.Labels) {
		return false
	}
	for k, v := range e.Labels {
		if w, ok := o.Labels[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// EntryOf makes the entry of a target, or says why it cannot be one.
func EntryOf(t targets.Target, version string) (Entry, error) {
	group := t.Label("service_group")
	if !Groups[group] {
		return Entry{}, fmt.Errorf("group %q is not traefik-sd's", group)
	}
	host, port, err := net.SplitHostPort(t.Address)
	if err != nil {
		return Entry{}, fmt.Errorf("address %q: %w", t.Address, err)
	}
	p, err := strconv.Atoi(port)
	if err != nil || p < 1 || p > 65535 {
		return Entry{}, fmt.Errorf("address %q: port out of range", t.Address)
	}
	labels := make(map[string]string, len(t.Labels))
	for _, l := range t.Labels {
		if l.Name != "service_group" { // the Manager adds it from the entry's group
			labels[l.Name] = l.Value
		}
	}
	// The id names what the target is, so that every HA node writes a route
	// under the same id, and each node's own Traefik under its own.
	id := UUIDv5(strings.Join([]string{group, t.Address, t.Label("circuit_id"), t.Label("route_id"), t.Label("session_id"), t.Label("worker_node")}, "\n"))
	protocol := "http"
	if t.Label("__scheme__") == "https" {
		protocol = "https"
	}
	display := "traefik-sd " + group + " " + t.Address
	if c := t.Label("circuit_id"); c != "" {
		display = "circuit " + c + " " + t.Address
	}
	return Entry{
		ID: id, DisplayName: display, Group: group, Version: version,
		Endpoint: Endpoint{Address: host, Port: p, Protocol: protocol, PrometheusAddress: t.Address},
		Labels:   labels,
	}, nil
}
