// Package dynamic holds the slice of Traefik's dynamic HTTP configuration that
// traefik-sd reads (routers, services with their servers, and the middlewares
// that identify a circuit), and keeps it decoded as etcd changes it: one
// router, service or middleware at a time, so that one bad value voids only
// its own object.
package dynamic

import "github.com/traefik-sd/traefik-sd/plugin"

// Router is an HTTP router: which service it sends to, through which middlewares.
type Router struct {
	Rule        string
	Service     string
	Middlewares []string
	EntryPoints []string
}

// Service is an HTTP service. Exactly one of its kinds is set.
type Service struct {
	LoadBalancer *LoadBalancer
	Weighted     *Weighted
	Failover     *Failover
	Mirroring    *Mirroring
}

// LoadBalancer is a service with servers, the kind Backend.AI writes.
type LoadBalancer struct {
	Servers     []Server
	HealthCheck *HealthCheck
}

// Server is one backend: an HTTP server's URL or a TCP server's address.
// Traefik reports its health under exactly this string.
type Server struct {
	URL     string
	Address string
}

// HealthCheck tells that Traefik checks the servers, so their health is known.
type HealthCheck struct {
	Path     string
	Interval string
}

// Weighted spreads requests over other services.
type Weighted struct {
	Services []WeightedService
}

// WeightedService is one service of a weighted service.
type WeightedService struct {
	Name string
}

// Failover sends to Service, or to Fallback when Service is down.
type Failover struct {
	Service  string
	Fallback string
}

// Mirroring serves from Service; mirrors get copies, not answers, so their
// servers are not the circuit's.
type Mirroring struct {
	Service string
}

// Middleware is what traefik-sd reads of a middleware: its own plugin
// configuration, or the identity Backend.AI's own middlewares carry.
type Middleware struct {
	// SD is the traefik-sd plugin configuration, validated and normalized.
	SD *plugin.Config
	// AppProxy is the identity in Backend.AI's appproxy plugin middlewares.
	AppProxy *AppProxyIdentity
}

// AppProxyIdentity is read from bai_appproxy_plugin_<id>_go
// (plugin/appproxy-traefik-plugin-go/{id, sessionids}) and from the WASM
// middleware's circuit JSON (plugin/appproxy-traefik-plugin/circuit).
type AppProxyIdentity struct {
	CircuitID  string
	SessionIDs []string
	App        string
}
