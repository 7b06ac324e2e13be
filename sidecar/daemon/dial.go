package daemon

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"
	"github.com/traefik-sd/traefik-sd/sidecar/config"
	"github.com/traefik-sd/traefik-sd/sidecar/etcdconn"
	"github.com/traefik-sd/traefik-sd/sidecar/servicediscovery"
	clientv3 "go.etcd.io/etcd/client/v3"
)

func (d *Daemon) etcdClient() (*clientv3.Client, error) {
	c := d.cfg.Etcd
	return etcdconn.Dial("--etcd", c.Endpoints, c.Username, c.Password, c.TLS, time.Duration(c.DialTimeout), d.log)
}

// serviceDiscoveryStores connects to the Backend.AI stores configured;
// closing them is the caller's, after every writer has withdrawn.
func (d *Daemon) serviceDiscoveryStores() ([]servicediscovery.Store, func(), error) {
	var stores []servicediscovery.Store
	var closers []func()
	closeAll := func() {
		for _, c := range closers {
			c()
		}
	}
	if sd := d.cfg.BackendAI.Etcd; len(sd.Endpoints) > 0 {
		client, err := etcdconn.Dial("--backendai.etcd", sd.Endpoints, sd.Username, sd.Password, sd.TLS, time.Duration(d.cfg.Etcd.DialTimeout), d.log)
		if err != nil {
			return nil, closeAll, err
		}
		closers = append(closers, func() { client.Close() })
		stores = append(stores, &servicediscovery.EtcdStore{Client: client, Namespace: sd.Namespace,
			LeaseTTL: 3 * time.Duration(d.cfg.BackendAI.Heartbeat)})
	}
	if r := d.cfg.BackendAI.Redis; r.Enabled() {
		client, err := d.redisClient(r)
		if err != nil {
			closeAll()
			return nil, func() {}, err
		}
		closers = append(closers, func() { _ = client.Close() })
		stores = append(stores, &servicediscovery.RedisStore{Client: client})
	}
	return stores, closeAll, nil
}

// redisClient dials the Redis the Manager reads: the address given, or
// the master the Sentinels name, followed through failovers (go-redis asks
// the Sentinels again when they announce a new master or a connection
// breaks), as Backend.AI's ValkeySentinelClient does.
func (d *Daemon) redisClient(r config.SDRedis) (*redis.Client, error) {
	// The client's own log (a dial failing, say) goes through ours at
	// debug; each outcome that matters is logged by the writer.
	redis.SetLogger(redisLog{d.log})
	var tc *tls.Config
	if r.TLS != nil {
		var err error
		if tc, err = r.TLS.ClientConfig("--backendai.redis"); err != nil {
			return nil, err
		}
	}
	// Asked on every new connection to the master, so that a password
	// rotated on SIGHUP is used without a restart.
	credentials := func() (string, string) {
		pw := ""
		if p := d.redisPassword.Load(); p != nil {
			pw = *p
		}
		return r.Username, pw
	}
	dial := time.Duration(d.cfg.Etcd.DialTimeout)
	if len(r.Sentinel) == 0 {
		return redis.NewClient(&redis.Options{Addr: r.Address, DB: r.DB, CredentialsProvider: credentials,
			TLSConfig: tc, DialTimeout: dial, DisableIdentity: true,
			MaintNotificationsConfig: &maintnotifications.Config{Mode: maintnotifications.ModeDisabled}}), nil
	}
	// Sentinels take a plain password, fixed for the client's life (go-redis
	// has no provider for them); Backend.AI sends them no user name either.
	d.secretsMu.Lock()
	d.sentinelAuth = r.SentinelAuth()
	d.secretsMu.Unlock()
	return redis.NewFailoverClient(&redis.FailoverOptions{MasterName: r.ServiceName, SentinelAddrs: r.Sentinel,
		SentinelPassword: r.SentinelAuth(), DB: r.DB, CredentialsProvider: credentials,
		TLSConfig: tc, DialTimeout: dial, DisableIdentity: true}), nil
}

// redisLog carries go-redis's internal messages into the sidecar's log.
type redisLog struct{ log *slog.Logger }

func (l redisLog) Printf(_ context.Context, format string, v ...interface{}) {
	l.log.Debug("redis client", "message", fmt.Sprintf(format, v...))
}
