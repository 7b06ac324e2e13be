package testbed

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"os"
	"path/filepath"
	"strconv"
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

func startRedis(tb T, dir, password string, tc *tls.Config, tlsArgs []string) *Redis {
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

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
