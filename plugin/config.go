package plugin

import (
	"errors"
	"fmt"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// Defaults for Config; CreateConfig returns them and Traefik overlays the keys it finds.
const (
	DefaultMetricsPath  = "/metrics"
	DefaultSidecarURL   = "http://127.0.0.1:9180"
	DefaultRemovalDelay = "2s"
	// DefaultResyncInterval is a safety net only: a heartbeat every 2s
	// reveals a restarted sidecar, and the sequence check any lost push.
	// At 10,000 routers a full set is megabytes to encode and decode.
	DefaultResyncInterval = "5m"
)

// The defaults parsed, once per process. (One value per call: Yaegi v0.16
// mis-types a package variable declared from a function's two results.)
var (
	defaultRemovalDelay   = mustDuration(DefaultRemovalDelay)
	defaultResyncInterval = mustDuration(DefaultResyncInterval)
	defaultTiming         = timing{removal: defaultRemovalDelay, resync: defaultResyncInterval}
)

func mustDuration(s string) time.Duration {
	d, err := time.ParseDuration(s)
	if err != nil {
		panic(err)
	}
	return d
}

// Route is one backend of a circuit, with the ids Backend.AI knows it by.
// URL must equal the server URL written under the circuit's service, so that
// the sidecar can join the two.
type Route struct {
	URL       string `json:"url"`
	SessionID string `json:"sessionId,omitempty"`
	RouteID   string `json:"routeId,omitempty"`
}

// Config is the middleware configuration, decoded by Traefik from the etcd keys
// under .../middlewares/<name>/plugin/<plugin key>/. Traefik matches keys to
// fields ignoring case, so the coordinator may write them in lower case.
type Config struct {
	// CircuitID is the AppProxy circuit this router serves; a plain
	// Traefik's routers have none.
	CircuitID string `json:"circuitId"`
	// WorkerAuthority is the AppProxy worker's authority (worker_<authority>).
	WorkerAuthority string `json:"workerAuthority,omitempty"`
	// SessionIDs are the circuit's sessions; interactive circuits have one.
	SessionIDs []string `json:"sessionIds,omitempty"`
	// Routes label each server with its session and route ids.
	Routes []Route `json:"routes,omitempty"`
	// MetricsPath is the path Prometheus scrapes on each server.
	MetricsPath string `json:"metricsPath,omitempty"`
	// MetricsPort is the port Prometheus scrapes; 0 means the server URL's own port.
	MetricsPort int `json:"metricsPort,omitempty"`
	// Labels are extra target labels; names must be valid Prometheus label names.
	Labels map[string]string `json:"labels,omitempty"`
	// SidecarURL is where the plugin pushes the routers Traefik has loaded.
	SidecarURL string `json:"-"`
	// Token, when set, is sent as a bearer token with every push.
	Token string `json:"-"`
	// RemovalDelay is how long a middleware may have no live instance before
	// it is reported gone; it rides out a configuration reload.
	RemovalDelay string `json:"-"`
	// ResyncInterval is how often the whole live set is re-sent anyway; a
	// restarted sidecar learns it from the next heartbeat's 409 first.
	ResyncInterval string `json:"-"`
}

// CreateConfig returns the defaults. Traefik calls it before decoding the keys.
func CreateConfig() *Config {
	return &Config{
		SessionIDs:     []string{},
		Routes:         []Route{},
		MetricsPath:    DefaultMetricsPath,
		Labels:         map[string]string{},
		SidecarURL:     DefaultSidecarURL,
		RemovalDelay:   DefaultRemovalDelay,
		ResyncInterval: DefaultResyncInterval,
	}
}

// reservedLabels are the labels the sidecar writes itself, and job and
// instance, which Prometheus sets (the scrape job, the target's address);
// an extra label may not override them, or the join between routing and
// container metrics would break, and a target could pass itself off as
// another job's. The sidecar reads this same list (IsReservedLabel), so the
// two cannot drift.
var reservedLabels = map[string]bool{
	"job":              true,
	"instance":         true,
	"circuit_id":       true,
	"session_id":       true,
	"route_id":         true,
	"endpoint_id":      true,
	"worker_authority": true,
	"worker_node":      true,
	"service_group":    true,
	"traefik_router":   true,
	"traefik_service":  true,
	"app":              true,
}

// IsReservedLabel tells whether the sidecar writes this label itself.
func IsReservedLabel(name string) bool { return reservedLabels[name] }

// Validate reports the first invalid field, named as in the configuration,
// and what is wrong with it, never its value.
func (c *Config) Validate() error {
	_, err := c.check()
	return err
}

// timing is the parsed removalDelay and resyncInterval.
type timing struct {
	removal, resync time.Duration
}

// check validates and returns the parsed durations, so that New parses them once.
func (c *Config) check() (timing, error) {
	var t timing
	err := c.checkFields()
	if err != nil {
		return t, err
	}
	// Nearly every middleware keeps the defaults: a string comparison is
	// one interpreted step where parsing is a call out of the interpreter.
	// (Plain statements only: Yaegi v0.16 mis-assigns a tuple to a field in
	// an if's init statement.)
	t.removal = defaultRemovalDelay
	if c.RemovalDelay != DefaultRemovalDelay {
		d, err := parsePositiveDuration(c.RemovalDelay)
		if err != nil {
			return t, fmt.Errorf("removalDelay: %w", err)
		}
		t.removal = d
	}
	t.resync = defaultResyncInterval
	if c.ResyncInterval != DefaultResyncInterval {
		d, err := parsePositiveDuration(c.ResyncInterval)
		if err != nil {
			return t, fmt.Errorf("resyncInterval: %w", err)
		}
		t.resync = d
	}
	return t, nil
}

func (c *Config) checkFields() error {
	// A plain Traefik's router names no circuit; a Backend.AI middleware
	// that names its worker or sessions and not its circuit is half written.
	if strings.TrimSpace(c.CircuitID) == "" && (c.WorkerAuthority != "" || len(c.SessionIDs) > 0) {
		return errors.New("circuitId: required with workerAuthority or sessionIds")
	}
	if !utf8.ValidString(c.CircuitID) {
		return errors.New("circuitId: not valid UTF-8")
	}
	if !utf8.ValidString(c.WorkerAuthority) {
		return errors.New("workerAuthority: not valid UTF-8")
	}
	for i, id := range c.SessionIDs {
		if !utf8.ValidString(id) {
			return fmt.Errorf("sessionIds[%d]: not valid UTF-8", i)
		}
	}
	for i, r := range c.Routes {
		if err := CheckServerURL(r.URL); err != nil {
			return fmt.Errorf("routes[%d].url: %w", i, err)
		}
		if !utf8.ValidString(r.SessionID) || !utf8.ValidString(r.RouteID) {
			return fmt.Errorf("routes[%d]: ids must be valid UTF-8", i)
		}
	}
	if !strings.HasPrefix(c.MetricsPath, "/") {
		return errors.New("metricsPath: must start with /")
	}
	if c.MetricsPort < 0 || c.MetricsPort > 65535 {
		return errors.New("metricsPort: not a port (0 to 65535, 0 = the server's own)")
	}
	for name, value := range c.Labels {
		if !IsLabelName(name) {
			return fmt.Errorf("labels.%s: not a Prometheus label name ([a-zA-Z_][a-zA-Z0-9_]*, no __ prefix)", clipKey(name))
		}
		if reservedLabels[name] {
			return fmt.Errorf("labels.%s: reserved, set by traefik-sd", name)
		}
		if !utf8.ValidString(value) {
			return fmt.Errorf("labels.%s: value is not valid UTF-8", name)
		}
	}
	if !sidecarURLOK(c.SidecarURL) {
		return errors.New("sidecarURL: not an http(s) URL with a host")
	}
	return nil
}

// ok says whether checkFields would accept c, in a function small enough
// for New to call on every router of every reload. Under Yaegi a call
// costs an allocation for every value slot of the function called, run or
// not: New calling check and checkFields, which build an error for each
// field, allocated 267 times a call; through ok, 188. ok builds no error,
// and leaves each list to a helper called only when the list has entries. When it says no, checkFields says why;
// FuzzOkAgreesWithCheck holds the two to the same answer.
func (c *Config) ok() bool {
	if !utf8.ValidString(c.CircuitID) || !utf8.ValidString(c.WorkerAuthority) {
		return false
	}
	if (c.WorkerAuthority != "" || len(c.SessionIDs) > 0) && strings.TrimSpace(c.CircuitID) == "" {
		return false
	}
	if len(c.SessionIDs) > 0 && !validIDs(c.SessionIDs) {
		return false
	}
	if len(c.Routes) > 0 && !validRoutes(c.Routes) {
		return false
	}
	if c.MetricsPath != DefaultMetricsPath && !strings.HasPrefix(c.MetricsPath, "/") {
		return false
	}
	if c.MetricsPort < 0 || c.MetricsPort > 65535 {
		return false
	}
	if len(c.Labels) > 0 && !validLabels(c.Labels) {
		return false
	}
	return sidecarURLOK(c.SidecarURL)
}

func validIDs(ids []string) bool {
	for _, id := range ids {
		if !utf8.ValidString(id) {
			return false
		}
	}
	return true
}

func validRoutes(routes []Route) bool {
	for i := range routes {
		if !serverURLOK(routes[i].URL) || !utf8.ValidString(routes[i].SessionID) || !utf8.ValidString(routes[i].RouteID) {
			return false
		}
	}
	return true
}

func validLabels(labels map[string]string) bool {
	for name, value := range labels {
		if !IsLabelName(name) || reservedLabels[name] || !utf8.ValidString(value) {
			return false
		}
	}
	return true
}

// sidecarURLOK takes the default, which nearly every configuration keeps,
// without a parse: the sidecar checks every configuration it decodes from
// etcd, and each parse left a URL among what a cold start keeps. Any other
// is parsed on every call, not cached: under Yaegi a lock and a map lookup
// cost more native calls than the one url.Parse they would save.
func sidecarURLOK(raw string) bool {
	return raw == DefaultSidecarURL || parsedSidecarURLOK(raw)
}

func parsedSidecarURLOK(raw string) bool {
	u, err := url.Parse(raw)
	return err == nil && (u.Scheme == "http" || u.Scheme == "https") && u.Host != ""
}

// serverURLOK says whether CheckServerURL accepts raw, without building
// its error (see ok).
func serverURLOK(raw string) bool {
	u, err := url.Parse(raw)
	if err != nil || u.Scheme != "http" && u.Scheme != "https" && u.Scheme != "h2c" || u.Hostname() == "" {
		return false
	}
	p := u.Port()
	if p == "" {
		return true
	}
	n, err := strconv.Atoi(p)
	return err == nil && n >= 1 && n <= 65535
}

// clipKey bounds a key named in an error: keys are names, not secrets,
// but one is as long as its writer made it.
func clipKey(name string) string {
	if len(name) > 64 {
		return name[:64] + "…"
	}
	return name
}

// equal compares two normalized configurations. New runs for every router
// on every reload, under an interpreter: a field-by-field comparison is far
// cheaper there than encoding both.
func (c *Config) equal(o *Config) bool {
	if c.CircuitID != o.CircuitID || c.WorkerAuthority != o.WorkerAuthority || c.MetricsPath != o.MetricsPath ||
		c.MetricsPort != o.MetricsPort || c.SidecarURL != o.SidecarURL || c.Token != o.Token ||
		c.RemovalDelay != o.RemovalDelay || c.ResyncInterval != o.ResyncInterval ||
		len(c.SessionIDs) != len(o.SessionIDs) || len(c.Routes) != len(o.Routes) || len(c.Labels) != len(o.Labels) {
		return false
	}
	for i := range c.SessionIDs {
		if c.SessionIDs[i] != o.SessionIDs[i] {
			return false
		}
	}
	for i := range c.Routes {
		if c.Routes[i] != o.Routes[i] {
			return false
		}
	}
	for k, v := range c.Labels {
		if w, ok := o.Labels[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// Described is the configuration as the sidecar keeps it, whether etcd
// holds it or a push reports it: what describes targets, normalized,
// without the plugin's own settings (where and how it pushes), so that the
// two compare equal.
func (c Config) Described() Config {
	c.SidecarURL, c.Token, c.RemovalDelay, c.ResyncInterval = "", "", "", ""
	c.Normalize()
	return c
}

// Normalize sorts the lists so that two configs with the same content compare
// equal: Traefik's KV decoding delivers lists in key text order (0, 1, 10, 2…).
func (c *Config) Normalize() {
	if len(c.SessionIDs) == 0 && len(c.Routes) < 2 {
		return
	}
	ids := make([]string, 0, len(c.SessionIDs))
	for _, id := range c.SessionIDs {
		id = strings.TrimSpace(id)
		if id != "" {
			ids = append(ids, id)
		}
	}
	if !sort.StringsAreSorted(ids) {
		sort.Strings(ids)
	}
	c.SessionIDs = ids
	if len(c.Routes) > 1 && !routesSorted(c.Routes) {
		sort.Slice(c.Routes, func(i, j int) bool { return c.Routes[i].URL < c.Routes[j].URL })
	}
}

func routesSorted(rs []Route) bool {
	for i := 1; i < len(rs); i++ {
		if rs[i].URL < rs[i-1].URL {
			return false
		}
	}
	return true
}

// IsLabelName tells whether name is a label name Prometheus keeps after
// relabeling: [a-zA-Z_][a-zA-Z0-9_]* without the reserved __ prefix.
func IsLabelName(name string) bool {
	if name == "" || strings.HasPrefix(name, "__") {
		return false
	}
	for i := 0; i < len(name); i++ {
		b := name[i]
		if b == '_' || (b >= 'a' && b <= 'z') || (b >= 'A' && b <= 'Z') || (i > 0 && b >= '0' && b <= '9') {
			continue
		}
		return false
	}
	return true
}

// CheckServerURL refuses a server URL that Traefik could not dial either.
// The plugin checks its routes with it and the sidecar the servers it reads
// from etcd, so both accept exactly the same URLs.
//
// Its errors, like every error of Validate, say what is wrong and never
// quote the value: a URL may carry user:password@, and the errors reach
// Traefik's log and API and the sidecar's log and status page.
func CheckServerURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return errors.New("not a URL")
	}
	if u.Scheme != "http" && u.Scheme != "https" && u.Scheme != "h2c" {
		return errors.New("scheme must be http, https or h2c")
	}
	if u.Hostname() == "" {
		return errors.New("no host")
	}
	if p := u.Port(); p != "" {
		n, err := strconv.Atoi(p)
		if err != nil || n < 1 || n > 65535 {
			return errors.New("port out of range (1 to 65535)")
		}
	}
	return nil
}

func parsePositiveDuration(s string) (time.Duration, error) {
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, errors.New("not a duration such as 2s or 5m")
	}
	if d <= 0 {
		return 0, errors.New("must be positive")
	}
	return d, nil
}
