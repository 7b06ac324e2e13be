package testbed

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"
)

// Redis is a redis-server (Debian's) on a free loopback port, with nothing
// persisted: a restart starts empty, as a cache-only "live" Redis does.
type Redis struct {
	*Process
	Address string
	// Password and TLS are what a client needs, when the server was
	// started with them.
	Password string
	TLS      *tls.Config
}

// StartRedis starts redis-server with its working files in dir.
func StartRedis(tb T, dir string) *Redis {
	return startRedis(tb, dir, "", nil, nil)
}

// StartReplica starts redis-server as a replica of master (replicaof),
// with its working files in dir, and waits until its link to the master is up.
func StartReplica(tb T, dir string, master *Redis) *Redis {
	tb.Helper()
	host, port, err := net.SplitHostPort(master.Address)
	Must(tb, err, "the master's address")
	r := startRedis(tb, dir, "", nil, nil, "--replicaof", host, port)
	client := r.Client(tb)
	Eventually(tb, 30*time.Second, "the replica's link to its master is up", func() (bool, string) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		info, err := client.Info(ctx, "replication").Result()
		return err == nil && strings.Contains(info, "master_link_status:up"), info + errString(err)
	})
	return r
}

// StartRedisTLS starts redis-server serving TLS only, requiring a client
// certificate signed by certs.CA and the password.
func StartRedisTLS(tb T, dir string, certs Certs, password string) *Redis {
	pool := x509.NewCertPool()
	ca, err := os.ReadFile(certs.CA)
	Must(tb, err, "reading the CA")
	pool.AppendCertsFromPEM(ca)
	cert, err := tls.LoadX509KeyPair(certs.ClientCert, certs.ClientKey)
	Must(tb, err, "client certificate")
	return startRedis(tb, dir, password, &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12},
		[]string{"--tls-cert-file", certs.ServerCert, "--tls-key-file", certs.ServerKey, "--tls-ca-cert-file", certs.CA, "--tls-auth-clients", "yes"})
}

func startRedis(tb T, dir, password string, tc *tls.Config, tlsArgs []string, extra ...string) *Redis {
	tb.Helper()
	port := FreePort(tb)
	addr := "127.0.0.1:" + strconv.Itoa(port)
	args := []string{"--bind", "127.0.0.1", "--port", strconv.Itoa(port), "--save", "", "--appendonly", "no",
		"--dir", dir, "--daemonize", "no", "--protected-mode", "yes"}
	if tlsArgs != nil {
		args = append(append(args, "--port", "0", "--tls-port", strconv.Itoa(port)), tlsArgs...)
	}
	if password != "" {
		args = append(args, "--requirepass", password)
	}
	args = append(args, extra...)
	p := Start(tb, &Process{
		Name: "redis-server",
		Path: Binary(tb, "REDIS_BIN", "redis-server"),
		Args: args,
		Dir:  dir,
		Log:  filepath.Join(dir, "redis-"+strconv.Itoa(port)+".log"),
	})
	r := &Redis{Process: p, Address: addr, Password: password, TLS: tc}
	client := r.Client(tb)
	Eventually(tb, 30*time.Second, "redis-server answers PING", func() (bool, string) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		err := client.Ping(ctx).Err()
		return err == nil, errString(err)
	})
	return r
}

// Client is a client of this server, closed when the test ends.
func (r *Redis) Client(tb T) *redis.Client {
	c := redis.NewClient(&redis.Options{Addr: r.Address, Password: r.Password, TLSConfig: r.TLS, DisableIdentity: true,
		MaintNotificationsConfig: &maintnotifications.Config{Mode: maintnotifications.ModeDisabled}})
	tb.Cleanup(func() { _ = c.Close() })
	return c
}

// Sentinel is an HA Redis as Backend.AI's HA deployments have it: a
// master, one replica and a Sentinel (Debian's redis-sentinel) monitoring
// them under MasterName, each on a free loopback port.
type Sentinel struct {
	*Process        // the Sentinel
	Address         string
	MasterName      string
	Master, Replica *Redis // as started; a failover swaps their roles
	client          *redis.SentinelClient
}

// StartSentinel starts the master, its replica and the Sentinel, each with
// its own working directory under dir (a replica's synced RDB must not be
// loaded by the master), and waits until the Sentinel knows a healthy
// replica it could promote. The Sentinel fails over quickly: a master is
// down after 1s without an answer.
func StartSentinel(tb T, dir, masterName string) *Sentinel {
	tb.Helper()
	sub := func(name string) string {
		d := filepath.Join(dir, name)
		Must(tb, os.MkdirAll(d, 0o755), "creating %s", d)
		return d
	}
	master := StartRedis(tb, sub("master"))
	replica := StartReplica(tb, sub("replica"), master)
	sdir := sub("sentinel")
	port := FreePort(tb)
	host, masterPort, err := net.SplitHostPort(master.Address)
	Must(tb, err, "the master's address")
	// The Sentinel rewrites its configuration file as it learns the
	// topology, so the file is its own and writable.
	conf := filepath.Join(sdir, "sentinel.conf")
	Must(tb, os.WriteFile(conf, []byte(fmt.Sprintf(`bind 127.0.0.1
port %d
dir %s
sentinel monitor %s %s %s 1
sentinel down-after-milliseconds %s 1000
sentinel failover-timeout %s 5000
`, port, sdir, masterName, host, masterPort, masterName, masterName)), 0o600), "writing %s", conf)
	p := Start(tb, &Process{
		Name: "redis-sentinel",
		Path: Binary(tb, "REDIS_SENTINEL_BIN", "redis-sentinel"),
		Args: []string{conf},
		Dir:  sdir,
		Log:  filepath.Join(sdir, "sentinel.log"),
	})
	s := &Sentinel{Process: p, Address: "127.0.0.1:" + strconv.Itoa(port), MasterName: masterName, Master: master, Replica: replica}
	s.client = redis.NewSentinelClient(&redis.Options{Addr: s.Address, DisableIdentity: true,
		MaintNotificationsConfig: &maintnotifications.Config{Mode: maintnotifications.ModeDisabled}})
	tb.Cleanup(func() { _ = s.client.Close() })
	Eventually(tb, 30*time.Second, "the Sentinel knows a healthy replica", func() (bool, string) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		replicas, err := s.client.Replicas(ctx, masterName).Result()
		if err != nil {
			return false, err.Error()
		}
		for _, r := range replicas {
			if r["name"] == replica.Address && r["flags"] == "slave" && r["master-link-status"] == "ok" {
				return true, ""
			}
		}
		return false, fmt.Sprint(replicas)
	})
	return s
}

// MasterAddr is the master's host:port as the Sentinel names it now.
func (s *Sentinel) MasterAddr(ctx context.Context) (string, error) {
	hp, err := s.client.GetMasterAddrByName(ctx, s.MasterName).Result()
	if err != nil {
		return "", err
	}
	if len(hp) != 2 {
		return "", fmt.Errorf("SENTINEL GET-MASTER-ADDR-BY-NAME %s: %v", s.MasterName, hp)
	}
	return net.JoinHostPort(hp[0], hp[1]), nil
}

// Failover asks the Sentinel to fail over now (SENTINEL FAILOVER): it
// promotes the replica and turns the old master into its replica.
func (s *Sentinel) Failover(ctx context.Context) error {
	return s.client.Failover(ctx, s.MasterName).Err()
}

// Client is a client of whichever server is master, found through the
// Sentinel as Backend.AI's Manager finds it; closed when the test ends.
func (s *Sentinel) Client(tb T) *redis.Client {
	c := redis.NewFailoverClient(&redis.FailoverOptions{MasterName: s.MasterName, SentinelAddrs: []string{s.Address}, DisableIdentity: true})
	tb.Cleanup(func() { _ = c.Close() })
	return c
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
