// Package etcdconn dials etcd with the options the sidecar takes for each of
// its etcd clusters (Traefik's, Backend.AI's): endpoints, user and password,
// TLS with a CA and a client certificate. Errors name the option.
package etcdconn

import (
	"fmt"
	"log/slog"
	"time"

	"github.com/traefik-sd/traefik-sd/sidecar/config"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// Dial returns a client; option is the flag prefix the settings came from
// (e.g. --etcd), named in every error.
func Dial(option string, endpoints []string, user, password string, t *config.TLS, dial time.Duration, log *slog.Logger) (*clientv3.Client, error) {
	cc := clientv3.Config{
		Endpoints:            endpoints,
		DialTimeout:          dial,
		DialKeepAliveTime:    5 * time.Second,
		DialKeepAliveTimeout: 3 * time.Second,
		Username:             user,
		Password:             password,
		Logger:               ZapLogger(log, option),
	}
	if t != nil {
		tc, err := t.ClientConfig(option)
		if err != nil {
			return nil, err
		}
		cc.TLS = tc
	}
	client, err := clientv3.New(cc)
	if err != nil {
		return nil, fmt.Errorf("etcd client (%s): %w", option, err)
	}
	return client, nil
}
