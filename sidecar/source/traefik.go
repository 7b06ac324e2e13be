package source

import "time"

// Router statuses as Traefik reports them.
const (
	StatusEnabled  = "enabled"
	StatusWarning  = "warning"
	StatusDisabled = "disabled"
)

// Router is Traefik's view of one HTTP router. Names are qualified
// (name@provider), references too.
type Router struct {
	Name        string
	Status      string
	Errors      []string
	Service     string
	Middlewares []string
	// Rule and EntryPoints are as Traefik reports them, for the
	// __meta_traefik_* labels.
	Rule        string
	EntryPoints []string
}

// Served tells whether Traefik routes requests with it: a warning (for
// example a TLS option it could not apply) still serves.
func (r Router) Served() bool { return r.Status == StatusEnabled || r.Status == StatusWarning }

// Routers is what one round of questions found.
type Routers struct {
	// Sweep: Routers is every router Traefik serves; any other is gone.
	// Same: the listing is byte for byte the last one, and not decoded.
	Sweep bool
	Same  bool
	// Routers answered; Gone were asked about and Traefik does not hold them.
	Routers []Router
	Gone    []string
	// Err is set when Traefik could not be asked; nothing else is then.
	Err error
	At  time.Time
}

// Server statuses in a service's serverStatus.
const (
	ServerUp   = "UP"
	ServerDown = "DOWN"
)

// Service is one of Traefik's services as its API reports it: the servers it
// balances, or the services it sends to. Names are qualified (name@provider),
// the services it sends to too.
type Service struct {
	Name string
	// Servers are the load balancer's server URLs (HTTP) or addresses (TCP),
	// exactly as configured: serverStatus is keyed by them.
	Servers []string
	// Children are the services a weighted, failover or mirroring service
	// sends to; a mirroring service's mirrors are not among them (they get
	// copies, not answers).
	Children []string
	// Status is serverStatus: UP or DOWN by server. Traefik shows every
	// server UP when it (re)builds a service, until its next health check.
	Status map[string]string
	// HealthInterval is the load balancer's health-check interval (Traefik's
	// default, 30 s, when it checks without naming one); zero when it does
	// not check, and then no server is ever DOWN in Status.
	HealthInterval time.Duration
}

// Services is one read of Traefik's services (and, when asked, its TCP
// routers and services), whole: it replaces the last one.
type Services struct {
	// Same: every page is byte for byte the last listing's; nothing is decoded.
	Same bool
	// Services are HTTP services, sorted by name.
	Services []Service
	// TCPRouters and TCPServices are Traefik's TCP configuration, with
	// Poller.TCP.
	TCPRouters  []Router
	TCPServices []Service
	// Err is set when Traefik could not be asked; nothing else is then.
	Err error
	At  time.Time
}
