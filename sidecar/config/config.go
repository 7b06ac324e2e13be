// Package config is the sidecar's static configuration, decoded with
// paerser as Traefik decodes its own, from three sources that compose: a
// file (--configFile, YAML or TOML), then TRAEFIK_SD_* environment
// variables, then flags, each overriding the one before. Settings in
// args, secrets in the environment or in files, as Kubernetes has them.
package config

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/traefik-sd/traefik-sd/sidecar/publish"
	"github.com/traefik/paerser/cli"
	"github.com/traefik/paerser/types"
)

// EnvPrefix prefixes the environment variables, e.g. TRAEFIK_SD_WORKER_AUTHORITY.
const EnvPrefix = "TRAEFIK_SD_"

// Configuration is everything the sidecar can be told at start.
type Configuration struct {
	ConfigFile string    `description:"Configuration file (YAML or TOML), read first; TRAEFIK_SD_* variables override it, flags override both." json:"configFile,omitempty"`
	Address    string    `description:"Listen address of the HTTP API (targets, plugin pushes, metrics)." json:"address,omitempty"`
	Log        Log       `description:"The sidecar's own log." json:"log,omitempty"`
	Etcd       Etcd      `description:"The etcd cluster Traefik's etcd provider reads." json:"etcd,omitempty"`
	Worker     Worker    `description:"The AppProxy worker this sidecar serves." json:"worker,omitempty"`
	Traefik    Traefik   `description:"Traefik's own metrics." json:"traefik,omitempty"`
	Plugin     Plugin    `description:"The traefik-sd middleware plugin." json:"plugin,omitempty"`
	AppProxy   AppProxy  `description:"Static AppProxy targets." json:"appproxy,omitempty"`
	Routes     Routes    `description:"Which circuits' servers are published." json:"routes,omitempty"`
	Server     Server    `description:"Access to and limits of the HTTP API." json:"server,omitempty"`
	Limits     Limits    `description:"Bounds on what is published." json:"limits,omitempty"`
	BackendAI  BackendAI `description:"Backend.AI's own sources." json:"backendai,omitempty"`

	// etcdOff is set when --etcd.endpoints (or its variable) is given
	// empty: the sidecar then runs from the plugin's pushes alone.
	etcdOff bool
	// secretsRead: the …File options were read once; a re-read may
	// replace their values.
	secretsRead bool
}

// ListsServices tells whether Traefik's services are listed: without etcd
// they hold each router's servers, without /metrics their health, and with
// --routes.all the listing brings Traefik's TCP routers.
func (c *Configuration) ListsServices() bool {
	return c.Traefik.APIURL != "" && (c.PluginOnly() || c.Traefik.MetricsURL == "" || c.Routes.All)
}

// PluginOnly tells whether the sidecar runs without etcd.
func (c *Configuration) PluginOnly() bool { return len(c.Etcd.Endpoints) == 0 }

// AccessWarnings are what the sidecar says at start about access left
// open on a non-loopback --address: pushes without a token
// (--plugin.insecure), reads without credentials.
func (c *Configuration) AccessWarnings() []string {
	if c.Loopback() {
		return nil
	}
	var out []string
	if c.Plugin.Token == "" {
		out = append(out, "INSECURE: --plugin.insecure accepts pushes without a token on a non-loopback --address: "+
			"anyone who reaches it can change what Prometheus scrapes; set --plugin.tokenFile")
	}
	if c.Server.ReadToken == "" && c.Server.ReadUser == "" && c.Server.TLSClientCA == "" {
		out = append(out, "no read credentials on a non-loopback --address: the status page, /v1/targets, /metrics and /readyz "+
			"are open to anyone who reaches it; set --server.readTokenFile, or --server.readUser and --server.readPasswordFile")
	}
	return out
}

// Loopback tells whether --address is reachable from this host only: a
// loopback IP or localhost. An empty host (all interfaces) or any other
// name is not.
func (c *Configuration) Loopback() bool {
	host, _, err := net.SplitHostPort(c.Address)
	if err != nil {
		return false
	}
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// Log configures the sidecar's own log (on stderr).
type Log struct {
	Level  string `description:"Least severity logged: debug, info, warn or error." json:"level,omitempty"`
	Format string `description:"logfmt (key=value) or json, one record per line." json:"format,omitempty"`
}

// BackendAI configures what traefik-sd reads from Backend.AI itself.
type BackendAI struct {
	CoordinatorURL       string         `description:"AppProxy coordinator base URL; when set, route and session ids come from its GET /api/worker/{workerID}/circuits." json:"coordinatorURL,omitempty"`
	CoordinatorToken     string         `description:"The coordinator's API secret (X-BackendAI-Token)." json:"coordinatorToken,omitempty"`
	CoordinatorTokenFile string         `description:"File holding the coordinator's API secret (instead of coordinatorToken); read at start and on SIGHUP." json:"coordinatorTokenFile,omitempty"`
	WorkerID             string         `description:"This worker's id at the coordinator." json:"workerID,omitempty"`
	PollInterval         types.Duration `description:"How often the coordinator is asked (and soon after every etcd change)." json:"pollInterval,omitempty"`
	Etcd                 SDStore        `description:"Backend.AI's ServiceDiscovery store, etcd backend: when endpoints are set, every route and Traefik target is written there too." json:"etcd,omitempty"`
	Redis                SDRedis        `description:"Backend.AI's ServiceDiscovery store, Redis backend (Backend.AI's default): when address or sentinel is set, every route and Traefik target is written there too." json:"redis,omitempty"`
	Heartbeat            types.Duration `description:"How often ServiceDiscovery entries are rewritten whole with a fresh last_heartbeat (the Manager sweeps etcd entries after 300s; Redis entries expire after 180s)." json:"heartbeat,omitempty"`
}

// SDRedis is the Redis the Manager reads ServiceDiscovery entries from:
// that of Backend.AI's "live" role, which is redis.override-configs.live
// when the Manager's configuration has it, else redis itself (the override
// replaces the base whole; nothing is inherited). The options mirror
// Backend.AI's SingleRedisConfig, so that one target's values copy across.
type SDRedis struct {
	Address string `description:"host:port of Backend.AI's Redis: the live role's addr (redis.override-configs.live.addr when set, else redis.addr). Not with sentinel." json:"address,omitempty"`
	// Backend.AI reads addr or, in HA deployments, asks these Sentinels
	// for the master of serviceName: redis.sentinel and redis.service_name.
	Sentinel             []string `description:"Sentinel addresses (host:port, comma-separated) of the live role's Redis: redis.override-configs.live.sentinel when set, else redis.sentinel. Not with address; needs serviceName." json:"sentinel,omitempty"`
	ServiceName          string   `description:"The Sentinel master name (Backend.AI's service_name of the same config as sentinel); required with sentinel." json:"serviceName,omitempty"`
	Username             string   `description:"Redis ACL user, if any." json:"username,omitempty"`
	Password             string   `description:"Redis password (the live role's password)." json:"password,omitempty"`
	PasswordFile         string   `description:"File holding the Redis password (instead of password); read at start and on SIGHUP." json:"passwordFile,omitempty"`
	SentinelPassword     string   `description:"Password of the Sentinels (Backend.AI's sentinel_password); default: password, as Backend.AI falls back to it." json:"sentinelPassword,omitempty"`
	SentinelPasswordFile string   `description:"File holding the Sentinels' password (instead of sentinelPassword); read at start (a change applies from the next start)." json:"sentinelPasswordFile,omitempty"`
	DB                   int      `description:"Redis database number (Backend.AI uses 0 for service discovery)." json:"db,omitempty"`
	TLS                  *TLS     `description:"TLS to this Redis (and its Sentinels)." json:"tls,omitempty"`
}

// Enabled tells whether the Redis store is configured.
func (r *SDRedis) Enabled() bool { return r.Address != "" || len(r.Sentinel) > 0 }

// SentinelAuth is the password sent to the Sentinels: sentinelPassword, or
// the master's password when it is not given, as Backend.AI's
// ValkeySentinelClient and redis_helper fall back.
func (r *SDRedis) SentinelAuth() string {
	if r.SentinelPassword != "" {
		return r.SentinelPassword
	}
	return r.Password
}

// SDStore is the etcd holding Backend.AI's ServiceDiscovery entries.
type SDStore struct {
	Endpoints    []string `description:"etcd endpoints of Backend.AI (may differ from Traefik's)." json:"endpoints,omitempty"`
	Namespace    string   `description:"Backend.AI's etcd namespace (/sorna/<namespace>/...)." json:"namespace,omitempty"`
	Username     string   `description:"etcd user." json:"username,omitempty"`
	Password     string   `description:"etcd password." json:"password,omitempty"`
	PasswordFile string   `description:"File holding the etcd password (instead of password), read at start." json:"passwordFile,omitempty"`
	TLS          *TLS     `description:"TLS to this etcd." json:"tls,omitempty"`
}

// Limits bound the published set; what they leave out is counted in
// traefik_sd_targets_left_out{limit}.
type Limits struct {
	MaxTargets int `description:"Most route targets published (routers past it, in name order, are left out); 0 for no bound." json:"maxTargets,omitempty"`
	MaxLabels  int `description:"Most labels on one target (a target with more is left out); 0 for no bound." json:"maxLabels,omitempty"`
}

// Etcd configures the etcd client.
type Etcd struct {
	Endpoints []string `description:"etcd endpoints (host:port or URLs); given empty (--etcd.endpoints=), the sidecar runs without etcd, from the plugin's pushes and Traefik's API." json:"endpoints,omitempty"`
	RootKey   string   `description:"Traefik's etcd provider rootKey (default traefik/worker_<authority>)." json:"rootKey,omitempty"`
	// etcd refuses a read or a watch of a range its grants do not cover
	// whole, so a role without the coordinator's secrets needs these.
	Ranges         []string       `description:"Read only these parts of the root key, each as its own range and watch, for an etcd role that grants no more: key prefixes below it, such as http/routers/,http/services/,http/middlewares/bai_sd_,tcp/ (default: the whole root key)." json:"ranges,omitempty"`
	Username       string         `description:"etcd user." json:"username,omitempty"`
	Password       string         `description:"etcd password." json:"password,omitempty"`
	PasswordFile   string         `description:"File holding the etcd password (instead of password), read at start." json:"passwordFile,omitempty"`
	TLS            *TLS           `description:"TLS to etcd." json:"tls,omitempty"`
	DialTimeout    types.Duration `description:"Timeout to connect to etcd." json:"dialTimeout,omitempty"`
	RequestTimeout types.Duration `description:"Timeout of each etcd call (a listing included)." json:"requestTimeout,omitempty"`
	// A paused or partitioned etcd leaves a watch silent rather than broken.
	ProgressInterval types.Duration `description:"How often a quiet watch asks etcd for progress; three unanswered intervals mark it stale." json:"progressInterval,omitempty"`
}

// TLS is a client TLS configuration.
type TLS struct {
	CA                 string `description:"CA certificate file." json:"ca,omitempty"`
	Cert               string `description:"Client certificate file." json:"cert,omitempty"`
	Key                string `description:"Client key file." json:"key,omitempty"`
	InsecureSkipVerify bool   `description:"Do not verify the server certificate." json:"insecureSkipVerify,omitempty"`
}

// Worker identifies the AppProxy worker and this Traefik node.
type Worker struct {
	Authority string `description:"AppProxy worker authority; required with etcd or a ServiceDiscovery store (a plain Traefik has none)." json:"authority,omitempty"`
	Node      string `description:"This Traefik node's id; HA nodes share an authority (default: host name)." json:"node,omitempty"`
}

// Traefik says where Traefik's metrics are.
type Traefik struct {
	MetricsURL     string         `description:"URL the sidecar scrapes for server health, e.g. http://127.0.0.1:8080/metrics; unset (an OTLP-only Traefik), health comes from the serverStatus of Traefik's API." json:"metricsURL,omitempty"`
	APIURL         string         `description:"Base URL of Traefik's API (its traefik entry point), asked which routers Traefik serves (default: scheme and host of metricsURL)." json:"apiURL,omitempty"`
	APISweep       types.Duration `description:"How often every router is listed from Traefik's API; a change asks about the routers it touched at once." json:"apiSweep,omitempty"`
	Target         string         `description:"host:port Prometheus scrapes for Traefik (default: from metricsURL)." json:"target,omitempty"`
	ScrapeInterval types.Duration `description:"How often Traefik's metrics are read, and its services listed when they are needed (no etcd, no metricsURL, or TCP routers with routes.all)." json:"scrapeInterval,omitempty"`
	Provider       string         `description:"Name of Traefik's etcd provider in references (name@provider)." json:"provider,omitempty"`
	Auth           TraefikAuth    `description:"Credentials sent with every request to Traefik's API and /metrics, for a Traefik that serves them through a router with authentication." json:"auth,omitempty"`
	TLS            *TLS           `description:"TLS to Traefik's API and /metrics, for https URLs: the CA of Traefik's certificate, a client certificate if its entry point asks for one; read at start." json:"tls,omitempty"`
}

// TraefikAuth is what authenticates the sidecar to Traefik: a basic-auth
// user and password (Traefik's basicAuth middleware), or a bearer token
// (what a forwardAuth in front of the API checks). The same go to the API
// and to /metrics: one Traefik.
type TraefikAuth struct {
	Username     string `description:"Basic-auth user sent to Traefik's API and /metrics (with password; not with token)." json:"username,omitempty"`
	Password     string `description:"Basic-auth password sent to Traefik (with username)." json:"password,omitempty"`
	PasswordFile string `description:"File holding the basic-auth password sent to Traefik (instead of password); read at start and on SIGHUP." json:"passwordFile,omitempty"`
	Token        string `description:"Bearer token sent to Traefik's API and /metrics (Authorization: Bearer; not with username)." json:"token,omitempty"`
	TokenFile    string `description:"File holding the bearer token sent to Traefik (instead of token); read at start and on SIGHUP." json:"tokenFile,omitempty"`
}

// Plugin configures the push endpoint.
type Plugin struct {
	Name       string         `description:"The plugin's key in the middleware configuration (plugin/<name>/...)." json:"name,omitempty"`
	Token      string         `description:"Bearer token the plugin must send with pushes." json:"token,omitempty"`
	TokenFile  string         `description:"File holding the push token (instead of token); read at start and on SIGHUP." json:"tokenFile,omitempty"`
	StartGrace types.Duration `description:"After a start, how long /v1/targets answers 503 while waiting for the plugin's full set and Traefik's router list, before serving what it has." json:"startGrace,omitempty"`
	// A push says what Prometheus scrapes; on an address others reach, it
	// must carry a token unless the operator says otherwise, loudly.
	Insecure    bool `description:"Accept pushes without a token on a non-loopback --address (refused at start otherwise): anyone who reaches the address can then change what Prometheus scrapes." json:"insecure,omitempty"`
	MaxSessions int  `description:"Most Traefik processes pushing at once; a push from one more is refused (503) until one goes silent." json:"maxSessions,omitempty"`
}

// AppProxy holds the static AppProxy targets.
type AppProxy struct {
	WorkerTarget      string `description:"host:port of the AppProxy worker's /metrics." json:"workerTarget,omitempty"`
	CoordinatorTarget string `description:"host:port of the AppProxy coordinator's /metrics." json:"coordinatorTarget,omitempty"`
}

// Routes selects the published circuits.
type Routes struct {
	All bool `description:"Publish the servers of every HTTP circuit, not only those whose router has the traefik-sd middleware; without etcd, of every router Traefik's API lists." json:"all,omitempty"`
	// KeepDown: a down server stays a target, so that its scrape fails
	// (up == 0) instead of the target vanishing.
	// Meta: the __meta_traefik_* labels (Prometheus SD's convention).
	Meta     bool `description:"Label route targets with __meta_traefik_router_{provider,protocol,entrypoints,rule_hosts} and __meta_traefik_server_url (address for TCP), for relabelling; false saves about a third of each target's bytes." json:"meta,omitempty"`
	KeepDown bool `description:"Keep a server Traefik reports down as a target, labelled __meta_traefik_server_health=\"down\", instead of withdrawing it." json:"keepDown,omitempty"`
}

// Server configures the HTTP API.
type Server struct {
	ReadToken        string         `description:"Bearer token required to read targets, metrics and readiness." json:"readToken,omitempty"`
	ReadUser         string         `description:"Basic-auth user allowed to read (with readPassword)." json:"readUser,omitempty"`
	ReadPassword     string         `description:"Basic-auth password." json:"readPassword,omitempty"`
	ReadTokenFile    string         `description:"File holding the read token (instead of readToken); read at start and on SIGHUP." json:"readTokenFile,omitempty"`
	ReadPasswordFile string         `description:"File holding the basic-auth password (instead of readPassword); read at start and on SIGHUP." json:"readPasswordFile,omitempty"`
	TLSCert          string         `description:"Serve HTTPS with this certificate file (with tlsKey); read at start and on SIGHUP, when new connections get the new one." json:"tlsCert,omitempty"`
	TLSKey           string         `description:"Key file of tlsCert." json:"tlsKey,omitempty"`
	TLSClientCA      string         `description:"Require a client certificate signed by a CA in this PEM file on every HTTPS connection (with tlsCert); read at start and on SIGHUP, as tlsCert and tlsKey are." json:"tlsClientCA,omitempty"`
	MaxPushBytes     int            `description:"Largest plugin push body accepted." json:"maxPushBytes,omitempty"`
	KeepBodyUpTo     int            `description:"Largest /v1/targets JSON body kept between requests, in bytes; a larger one is rendered again for each request that asks for it plain (about a fifth of a second for 100 MB) instead of being held. 0 keeps none." json:"keepBodyUpTo,omitempty"`
	ReadTimeout      types.Duration `description:"Timeout to read a request." json:"readTimeout,omitempty"`
	WriteTimeout     types.Duration `description:"Timeout to write a response." json:"writeTimeout,omitempty"`
	MaxConns         int            `description:"Most concurrent connections." json:"maxConns,omitempty"`
	MaxConnsPerIP    int            `description:"Most concurrent connections from one client address; one more is refused at once (429 over HTTP); 0 for no bound." json:"maxConnsPerIP,omitempty"`
}

// Default returns the defaults every source overlays.
func Default() *Configuration {
	return &Configuration{
		Address: "127.0.0.1:9180",
		Log:     Log{Level: "info", Format: "logfmt"},
		Etcd: Etcd{
			Endpoints:        []string{"127.0.0.1:2379"},
			DialTimeout:      types.Duration(5 * time.Second),
			RequestTimeout:   types.Duration(10 * time.Second),
			ProgressInterval: types.Duration(5 * time.Second),
		},
		Traefik:   Traefik{ScrapeInterval: types.Duration(5 * time.Second), Provider: "etcd", APISweep: types.Duration(30 * time.Second)},
		Plugin:    Plugin{Name: "traefik-sd", StartGrace: types.Duration(10 * time.Second), MaxSessions: 64},
		Routes:    Routes{Meta: true},
		Limits:    Limits{MaxTargets: 200000, MaxLabels: 64},
		BackendAI: BackendAI{PollInterval: types.Duration(30 * time.Second), Heartbeat: types.Duration(60 * time.Second), Etcd: SDStore{Namespace: "local"}},
		Server: Server{
			MaxPushBytes: 32 << 20,
			KeepBodyUpTo: publish.DefaultKeepUpTo,
			ReadTimeout:  types.Duration(10 * time.Second),
			WriteTimeout: types.Duration(30 * time.Second),
			MaxConns:     1024,
			// A Traefik process, Prometheus or a person's browser needs
			// a few; one client may not take every --server.maxConns slot.
			MaxConnsPerIP: 128,
		},
	}
}

// Command returns the paerser command that loads into cfg and calls run.
func Command(cfg *Configuration, run func() error) *cli.Command {
	return &cli.Command{
		Name:           "traefik-sd",
		Description:    "traefik-sd publishes what Traefik routes (from its etcd configuration, its plugin and its metrics) as Prometheus HTTP SD targets.",
		Configuration:  cfg,
		Resources:      []cli.ResourceLoader{layeredLoader{}},
		CustomHelpFunc: printHelp,
		Run:            func([]string) error { return run() },
	}
}

// Complete fills derived defaults and checks every option; errors name it.
func (c *Configuration) Complete() error {
	// A plain Traefik without etcd has no AppProxy worker: the authority
	// names Backend.AI's keys (the etcd root key, ServiceDiscovery entries).
	etcd := !c.etcdOff && len(c.Etcd.Endpoints) > 0
	if strings.TrimSpace(c.Worker.Authority) == "" && (etcd || c.BackendAI.Redis.Enabled() || len(c.BackendAI.Etcd.Endpoints) > 0) {
		return errors.New("--worker.authority is required with etcd or a ServiceDiscovery store (the AppProxy worker's authority, e.g. worker-1)")
	}
	for name, v := range map[string]string{"--worker.authority": c.Worker.Authority, "--worker.node": c.Worker.Node} {
		if strings.ContainsAny(v, "/ \t\r\n") || strings.ContainsFunc(v, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
			return fmt.Errorf("%s %q: no spaces, slashes or control characters (it becomes part of etcd keys and labels)", name, v)
		}
	}
	if _, err := c.ReadSecrets(); err != nil {
		return err
	}
	if c.Worker.Node == "" {
		host, err := os.Hostname()
		if err != nil {
			return fmt.Errorf("--worker.node not given and no host name: %w", err)
		}
		c.Worker.Node = host
	}
	if c.Etcd.RootKey == "" {
		c.Etcd.RootKey = "traefik/worker_" + c.Worker.Authority
	}
	c.Etcd.RootKey = strings.TrimSuffix(c.Etcd.RootKey, "/")
	if err := checkRanges(c.Etcd.Ranges); err != nil {
		return err
	}
	for name, d := range map[string]types.Duration{
		"--etcd.dialTimeout": c.Etcd.DialTimeout, "--etcd.requestTimeout": c.Etcd.RequestTimeout,
		"--server.readTimeout": c.Server.ReadTimeout, "--server.writeTimeout": c.Server.WriteTimeout,
	} {
		if d <= 0 {
			return fmt.Errorf("%s %s: want a duration above 0, such as 10s (0 or less would mean no timeout)", name, time.Duration(d))
		}
	}
	for name, list := range map[string][]string{"--etcd.endpoints": c.Etcd.Endpoints, "--backendai.etcd.endpoints": c.BackendAI.Etcd.Endpoints} {
		if name == "--etcd.endpoints" && c.etcdOff {
			continue
		}
		for _, ep := range list {
			if err := checkEndpoint(ep); err != nil {
				return fmt.Errorf("%s: %q %v; want host:port or http(s)://host:port, comma-separated", name, ep, err)
			}
		}
	}
	if time.Duration(c.Etcd.ProgressInterval) < 100*time.Millisecond {
		return fmt.Errorf("--etcd.progressInterval %s: at least 100ms", time.Duration(c.Etcd.ProgressInterval))
	}
	if c.etcdOff {
		c.Etcd.Endpoints = nil
	}
	if _, _, err := net.SplitHostPort(c.Address); err != nil {
		return fmt.Errorf("--address %q: %w", c.Address, err)
	}
	if c.Plugin.Token == "" && !c.Plugin.Insecure && !c.Loopback() {
		return errors.New("--plugin.token or --plugin.tokenFile is required when --address is not a loopback address: " +
			"a push decides what Prometheus scrapes (or set --plugin.insecure to accept pushes from anyone who reaches the address)")
	}
	if c.Plugin.MaxSessions < 1 {
		return fmt.Errorf("--plugin.maxSessions %d: at least 1", c.Plugin.MaxSessions)
	}
	if c.Traefik.MetricsURL != "" {
		u, err := url.Parse(c.Traefik.MetricsURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("--traefik.metricsURL %q: not an http(s) URL", c.Traefik.MetricsURL)
		}
		if c.Traefik.Target == "" {
			c.Traefik.Target = u.Host
		}
		if c.Traefik.APIURL == "" {
			c.Traefik.APIURL = u.Scheme + "://" + u.Host
		}
	}
	if c.Traefik.APIURL != "" {
		u, err := url.Parse(c.Traefik.APIURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("--traefik.apiURL %q: not an http(s) URL", c.Traefik.APIURL)
		}
		c.Traefik.APIURL = strings.TrimSuffix(c.Traefik.APIURL, "/")
	}
	if err := c.completeTraefikAuth(); err != nil {
		return err
	}
	if time.Duration(c.Traefik.APISweep) < time.Second {
		return fmt.Errorf("--traefik.apiSweep %s: at least 1s", time.Duration(c.Traefik.APISweep))
	}
	if time.Duration(c.Plugin.StartGrace) < 0 {
		return fmt.Errorf("--plugin.startGrace %s: 0 or more", time.Duration(c.Plugin.StartGrace))
	}
	if c.PluginOnly() {
		if c.Traefik.APIURL == "" {
			return errors.New("--etcd.endpoints is empty (no etcd): --traefik.apiURL or --traefik.metricsURL is required, since Traefik's API then names the routers")
		}
	}
	for name, target := range map[string]string{
		"--traefik.target":             c.Traefik.Target,
		"--appproxy.workerTarget":      c.AppProxy.WorkerTarget,
		"--appproxy.coordinatorTarget": c.AppProxy.CoordinatorTarget,
	} {
		if target == "" {
			continue
		}
		if _, port, err := net.SplitHostPort(target); err != nil || port == "" {
			return fmt.Errorf("%s %q: want host:port", name, target)
		}
	}
	if time.Duration(c.Traefik.ScrapeInterval) < 100*time.Millisecond {
		return fmt.Errorf("--traefik.scrapeInterval %s: at least 100ms", time.Duration(c.Traefik.ScrapeInterval))
	}
	if c.Plugin.Name == "" || strings.Contains(c.Plugin.Name, "/") {
		return fmt.Errorf("--plugin.name %q: a plugin key without /", c.Plugin.Name)
	}
	if c.Traefik.Provider == "" {
		return errors.New("--traefik.provider: required")
	}
	if (c.Server.TLSCert == "") != (c.Server.TLSKey == "") {
		return errors.New("--server.tlsCert and --server.tlsKey go together")
	}
	if (c.Server.ReadUser == "") != (c.Server.ReadPassword == "") {
		return errors.New("--server.readUser and --server.readPassword go together")
	}
	if c.Server.MaxPushBytes < 1024 {
		return fmt.Errorf("--server.maxPushBytes %d: at least 1024", c.Server.MaxPushBytes)
	}
	if c.BackendAI.CoordinatorURL != "" {
		if u, err := url.Parse(c.BackendAI.CoordinatorURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("--backendai.coordinatorURL %q: not an http(s) URL", c.BackendAI.CoordinatorURL)
		}
		if c.BackendAI.WorkerID == "" {
			return errors.New("--backendai.workerID is required with --backendai.coordinatorURL")
		}
		if time.Duration(c.BackendAI.PollInterval) < time.Second {
			return fmt.Errorf("--backendai.pollInterval %s: at least 1s", time.Duration(c.BackendAI.PollInterval))
		}
	}
	if len(c.BackendAI.Etcd.Endpoints) > 0 {
		if c.BackendAI.Etcd.Namespace == "" || strings.Contains(c.BackendAI.Etcd.Namespace, "/") {
			return fmt.Errorf("--backendai.etcd.namespace %q: a name without /", c.BackendAI.Etcd.Namespace)
		}
		if hb := time.Duration(c.BackendAI.Heartbeat); hb < time.Second || hb > 100*time.Second {
			return fmt.Errorf("--backendai.heartbeat %s: from 1s to 100s, well inside the Manager's 300s sweep", hb)
		}
	}
	if err := c.completeRedis(); err != nil {
		return err
	}
	if c.Limits.MaxTargets < 0 || c.Limits.MaxLabels < 0 {
		return errors.New("--limits.maxTargets and --limits.maxLabels: 0 (no bound) or more")
	}
	if c.Server.KeepBodyUpTo < 0 {
		return fmt.Errorf("--server.keepBodyUpTo %d: 0 (keep none) or more", c.Server.KeepBodyUpTo)
	}
	if c.Server.MaxConns < 1 {
		return fmt.Errorf("--server.maxConns %d: at least 1", c.Server.MaxConns)
	}
	if c.Server.MaxConnsPerIP < 0 {
		return fmt.Errorf("--server.maxConnsPerIP %d: 0 (no bound) or more", c.Server.MaxConnsPerIP)
	}
	if c.Server.TLSClientCA != "" && c.Server.TLSCert == "" {
		return errors.New("--server.tlsClientCA needs --server.tlsCert and --server.tlsKey: client certificates are asked for over HTTPS only")
	}
	switch strings.ToLower(c.Log.Level) {
	case "debug", "info", "warn", "error":
	default:
		return fmt.Errorf("--log.level %q: want debug, info, warn or error", c.Log.Level)
	}
	switch c.Log.Format {
	case "logfmt", "json":
	default:
		return fmt.Errorf("--log.format %q: want logfmt or json", c.Log.Format)
	}
	if c.Etcd.TLS != nil && (c.Etcd.TLS.Cert == "") != (c.Etcd.TLS.Key == "") {
		return errors.New("--etcd.tls.cert and --etcd.tls.key go together")
	}
	return nil
}

// checkEndpoint accepts host:port or an http(s) URL with a host.
func checkEndpoint(ep string) error {
	if strings.Contains(ep, "://") {
		u, err := url.Parse(ep)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return errors.New("is not an http(s) URL")
		}
		return nil
	}
	if host, port, err := net.SplitHostPort(ep); err != nil || host == "" || port == "" {
		return errors.New("is not host:port")
	}
	return nil
}

// secrets are the options that have a …File variant: the file, when
// given, holds the value (a mounted Kubernetes Secret), and is read again
// on SIGHUP.
type secret struct {
	name  string  // the option, e.g. --plugin.token
	value *string // where its value goes
	file  string  // its …File option, if given
}

func (c *Configuration) secrets() []secret {
	return []secret{
		{"--plugin.token", &c.Plugin.Token, c.Plugin.TokenFile},
		{"--server.readToken", &c.Server.ReadToken, c.Server.ReadTokenFile},
		{"--server.readPassword", &c.Server.ReadPassword, c.Server.ReadPasswordFile},
		{"--etcd.password", &c.Etcd.Password, c.Etcd.PasswordFile},
		{"--backendai.etcd.password", &c.BackendAI.Etcd.Password, c.BackendAI.Etcd.PasswordFile},
		{"--backendai.redis.password", &c.BackendAI.Redis.Password, c.BackendAI.Redis.PasswordFile},
		{"--backendai.redis.sentinelPassword", &c.BackendAI.Redis.SentinelPassword, c.BackendAI.Redis.SentinelPasswordFile},
		{"--backendai.coordinatorToken", &c.BackendAI.CoordinatorToken, c.BackendAI.CoordinatorTokenFile},
		{"--traefik.auth.password", &c.Traefik.Auth.Password, c.Traefik.Auth.PasswordFile},
		{"--traefik.auth.token", &c.Traefik.Auth.Token, c.Traefik.Auth.TokenFile},
	}
}

// ReadSecrets reads every …File option into its value (at start, and again
// on SIGHUP); it names the secrets whose value changed. Either every file
// is read and applied, or none is.
func (c *Configuration) ReadSecrets() (changed []string, err error) {
	secrets := c.secrets()
	values := make([]string, len(secrets))
	for i, s := range secrets {
		values[i] = *s.value
		if s.file == "" {
			continue
		}
		if !c.secretsRead && *s.value != "" {
			return nil, fmt.Errorf("%s and %sFile: give one", s.name, s.name)
		}
		b, err := os.ReadFile(s.file)
		if err != nil {
			return nil, fmt.Errorf("%sFile: %w", s.name, err)
		}
		v := strings.TrimRight(string(b), "\r\n")
		if v == "" {
			return nil, fmt.Errorf("%sFile %s: empty", s.name, s.file)
		}
		values[i] = v
	}
	for i, s := range secrets {
		if *s.value != values[i] {
			changed = append(changed, s.name)
			*s.value = values[i]
		}
	}
	c.secretsRead = true
	return changed, nil
}

// completeTraefikAuth checks the credentials and TLS sent to Traefik; the
// password and token files were read with the other secrets.
func (c *Configuration) completeTraefikAuth() error {
	a, t := c.Traefik.Auth, c.Traefik.TLS
	basic, bearer := a.Username != "" || a.Password != "", a.Token != ""
	if !basic && !bearer && t == nil {
		return nil
	}
	if c.Traefik.APIURL == "" {
		return errors.New("--traefik.auth.* and --traefik.tls.*: set --traefik.apiURL or --traefik.metricsURL, to which they are sent")
	}
	switch {
	case basic && bearer:
		return errors.New("--traefik.auth.username (basic auth) and --traefik.auth.token (bearer): give one")
	case a.Password != "" && a.Username == "":
		return errors.New("--traefik.auth.password (or passwordFile) needs --traefik.auth.username")
	case a.Username != "" && a.Password == "":
		return errors.New("--traefik.auth.username needs --traefik.auth.password or --traefik.auth.passwordFile")
	case strings.Contains(a.Username, ":"):
		return errors.New("--traefik.auth.username: no colon (basic auth cannot carry one in the user)")
	}
	for name, v := range map[string]string{"--traefik.auth.username": a.Username, "--traefik.auth.password": a.Password, "--traefik.auth.token": a.Token} {
		if strings.ContainsFunc(v, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
			return fmt.Errorf("%s: no control characters or line breaks (it goes into a request header)", name)
		}
	}
	if basic || bearer {
		// Go's client sends a URL's userinfo as basic auth, which the
		// options would then overwrite: one place for the credentials.
		for name, raw := range map[string]string{"--traefik.apiURL": c.Traefik.APIURL, "--traefik.metricsURL": c.Traefik.MetricsURL} {
			if u, err := url.Parse(raw); err == nil && u.User != nil {
				return fmt.Errorf("%s has credentials in it, and --traefik.auth.* is set: give one", name)
			}
		}
	}
	if t != nil {
		if (t.Cert == "") != (t.Key == "") {
			return errors.New("--traefik.tls.cert and --traefik.tls.key go together")
		}
		if !strings.HasPrefix(c.Traefik.APIURL, "https:") && !strings.HasPrefix(c.Traefik.MetricsURL, "https:") {
			return errors.New("--traefik.tls.*: only used over https; neither --traefik.apiURL nor --traefik.metricsURL is an https URL")
		}
	}
	return nil
}

// completeRedis checks the Redis store's options; its password files
// were read with the other secrets.
func (c *Configuration) completeRedis() error {
	r := &c.BackendAI.Redis
	if !r.Enabled() {
		if r.Password != "" || r.PasswordFile != "" || r.SentinelPassword != "" || r.SentinelPasswordFile != "" ||
			r.ServiceName != "" || r.TLS != nil || r.DB != 0 || r.Username != "" {
			return errors.New("--backendai.redis.*: set --backendai.redis.address (host:port) or --backendai.redis.sentinel to use the Redis store")
		}
		return nil
	}
	if err := r.checkTarget(); err != nil {
		return err
	}
	if r.DB < 0 {
		return fmt.Errorf("--backendai.redis.db %d: 0 or more", r.DB)
	}
	if r.TLS != nil && (r.TLS.Cert == "") != (r.TLS.Key == "") {
		return errors.New("--backendai.redis.tls.cert and --backendai.redis.tls.key go together")
	}
	// Entries expire 180 s after their last write: three heartbeats.
	if hb := time.Duration(c.BackendAI.Heartbeat); hb < time.Second || hb > 60*time.Second {
		return fmt.Errorf("--backendai.heartbeat %s: from 1s to 60s with the Redis store, whose entries expire 180s after their last write", hb)
	}
	return nil
}

// checkTarget checks that the options name one Redis, as Backend.AI's
// RedisTarget does: an address, or Sentinels and the master's name.
func (r *SDRedis) checkTarget() error {
	if r.Address != "" && len(r.Sentinel) > 0 {
		return errors.New("--backendai.redis.address and --backendai.redis.sentinel: give one (Backend.AI ignores addr when sentinel is set; copy sentinel and service_name)")
	}
	if r.Address != "" {
		if host, port, err := net.SplitHostPort(r.Address); err != nil || host == "" || port == "" {
			return fmt.Errorf("--backendai.redis.address %q: want host:port", r.Address)
		}
		for name, v := range map[string]string{"--backendai.redis.serviceName": r.ServiceName,
			"--backendai.redis.sentinelPassword": r.SentinelPassword} {
			if v != "" {
				return fmt.Errorf("%s: only with --backendai.redis.sentinel", name)
			}
		}
		return nil
	}
	for _, addr := range r.Sentinel {
		if host, port, err := net.SplitHostPort(addr); err != nil || host == "" || port == "" {
			return fmt.Errorf("--backendai.redis.sentinel: %q is not host:port; want host:port, comma-separated", addr)
		}
	}
	if strings.TrimSpace(r.ServiceName) == "" {
		return errors.New("--backendai.redis.serviceName is required with --backendai.redis.sentinel (Backend.AI's service_name, the Sentinel master name)")
	}
	return nil
}

// ClientConfig is the client TLS configuration t describes; option is the
// flag prefix it came from (e.g. --etcd), named in every error.
func (t *TLS) ClientConfig(option string) (*tls.Config, error) {
	tc := &tls.Config{InsecureSkipVerify: t.InsecureSkipVerify} //nolint:gosec // an operator's explicit choice
	if t.CA != "" {
		pem, err := os.ReadFile(t.CA)
		if err != nil {
			return nil, fmt.Errorf("%s.tls.ca: %w", option, err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("%s.tls.ca %s: no certificate found", option, t.CA)
		}
		tc.RootCAs = pool
	}
	if t.Cert != "" {
		cert, err := tls.LoadX509KeyPair(t.Cert, t.Key)
		if err != nil {
			return nil, fmt.Errorf("%s.tls.cert/key: %w", option, err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	return tc, nil
}

// checkRanges refuses a range that is empty, starts with "/" or holds
// another: a key in two ranges would come twice.
func checkRanges(ranges []string) error {
	for i, r := range ranges {
		if r == "" || strings.HasPrefix(r, "/") {
			return fmt.Errorf("--etcd.ranges[%d] %q: want a key prefix below the root key, such as http/routers/", i, r)
		}
		for j, o := range ranges {
			if i != j && strings.HasPrefix(r, o) {
				return fmt.Errorf("--etcd.ranges[%d] %q: inside --etcd.ranges[%d] %q", i, r, j, o)
			}
		}
	}
	return nil
}
