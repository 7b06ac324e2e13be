package daemon

import (
	"net/http"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/traefik-sd/traefik-sd/sidecar/server"
	"github.com/traefik-sd/traefik-sd/sidecar/traefikapi"
)

// secrets is what a re-read of the secret files (SIGHUP) changes besides
// what the server and the clients hold.
type secrets struct {
	// redisPassword is read by each new connection to Redis.
	redisPassword atomic.Pointer[string]
	secretsMu     sync.Mutex
	// sentinelAuth is the password the Sentinels were dialled with, kept
	// to warn when a re-read changes it (it applies from the next start).
	sentinelAuth string
}

// applySecrets hands the configured secrets to what checks or sends them.
func (d *Daemon) applySecrets() {
	d.server.SetCredentials(server.Credentials{PushToken: d.cfg.Plugin.Token, ReadToken: d.cfg.Server.ReadToken,
		ReadUser: d.cfg.Server.ReadUser, ReadPassword: d.cfg.Server.ReadPassword})
	if d.coord != nil {
		d.coord.Client.SetToken(d.cfg.BackendAI.CoordinatorToken)
	}
	pw := d.cfg.BackendAI.Redis.Password
	d.redisPassword.Store(&pw)
	d.setTraefikCredentials()
}

// setTraefikCredentials hands --traefik.auth.* to the transport every
// request to Traefik goes through.
func (d *Daemon) setTraefikCredentials() {
	a := d.cfg.Traefik.Auth
	d.traefikAuth.SetCredentials(traefikapi.Credentials{Username: a.Username, Password: a.Password, Token: a.Token})
}

// traefikTLS reads --traefik.tls.* into that transport, before any request.
func (d *Daemon) traefikTLS() error {
	if d.cfg.Traefik.TLS == nil {
		return nil
	}
	tc, err := d.cfg.Traefik.TLS.ClientConfig("--traefik")
	if err != nil {
		return err
	}
	d.traefikAuth.Base.(*http.Transport).TLSClientConfig = tc
	return nil
}

// ReloadSecrets re-reads every …File secret (on SIGHUP) and uses the new
// values from the next request or connection on: the push and read
// credentials, the coordinator's token, the Redis password and what is sent
// to Traefik's API and /metrics (--traefik.auth.*); and the
// server's TLS certificate, key and client CA, served from the next
// handshake on (a file that does not read keeps the ones in use). etcd's
// passwords are taken at the next start (its client keeps its session), and
// so is the Sentinels' (go-redis dials them with a fixed password).
func (d *Daemon) ReloadSecrets() {
	d.secretsMu.Lock()
	defer d.secretsMu.Unlock()
	if s := d.cfg.Server; d.server != nil && s.TLSCert != "" {
		if err := d.server.LoadTLS(s.TLSCert, s.TLSKey, s.TLSClientCA); err != nil {
			d.log.Warn("re-reading the TLS certificate failed; the one in use stays", "error", err)
		} else {
			d.log.Info("TLS certificate re-read; new connections get it", "cert", s.TLSCert, "clientCA", s.TLSClientCA)
		}
	}
	changed, err := d.cfg.ReadSecrets()
	if err != nil {
		d.log.Warn("re-reading the secret files failed; the secrets in use stay", "error", err)
		return
	}
	if d.server != nil {
		d.applySecrets()
	}
	for _, name := range changed {
		if strings.HasSuffix(name, "etcd.password") {
			d.log.Warn("a changed etcd password is used from the next start", "option", name)
		}
	}
	if r := d.cfg.BackendAI.Redis; d.server != nil && len(r.Sentinel) > 0 && r.SentinelAuth() != d.sentinelAuth {
		d.log.Warn("a changed Sentinel password is used from the next start (without sentinelPassword, the Redis password stands for it)",
			"option", "--backendai.redis.sentinelPassword")
	}
	d.log.Info("secret files re-read", "changed", strings.Join(changed, ","))
}
