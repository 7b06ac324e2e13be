// Package etcdconn dials etcd with the options the sidecar takes for each of
// its etcd clusters (Traefik's, Backend.AI's): endpoints, user and password,
// TLS with a CA and a client certificate. Errors name the option.
package etcdconn

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"time"

	"github.com/traefik-sd/traefik-sd/sidecar/config"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// Dial returns a client; option is the flag prefix the settings came from
// (e.g. --etcd), named in every error.
func Dial(option string, endpoints []string, user, password string, t *config.TLS, dial time.Duration) (*clientv3.Client, error) {
	cc := clientv3.Config{
		Endpoints:            endpoints,
		DialTimeout:          dial,
		DialKeepAliveTime:    5 * time.Second,
		DialKeepAliveTimeout: 3 * time.Second,
		Username:             user,
		Password:             password,
		Logger:               zap.NewNop(),
	}
	if t != nil {
		tc := &tls.Config{InsecureSkipVerify: t.InsecureSkipVerify} //nolint:gosec // an operator's explicit choice
		if t.CA != "" {
			pem, err := os.ReadFile(t.CA)
			if err != nil {
				return nil, fmt.Errorf("%s.tls.ca: %w", option, err)
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("%s.tls.ca: no certificate found", option)
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
		cc.TLS = tc
	}
	client, err := clientv3.New(cc)
	if err != nil {
		return nil, fmt.Errorf("etcd client (%s): %w", option, err)
	}
	return client, nil
}
