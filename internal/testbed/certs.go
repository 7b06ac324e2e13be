package testbed

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"time"
)

// Certs are PEM files of a test CA, a server certificate for 127.0.0.1 and
// localhost, and a client certificate, all signed by the CA.
type Certs struct {
	CA, ServerCert, ServerKey, ClientCert, ClientKey string
}

// MutualTLS is a server's TLS configuration with the server certificate,
// requiring a client certificate the CA signed.
func (c Certs) MutualTLS(t T) *tls.Config {
	t.Helper()
	cert, err := tls.LoadX509KeyPair(c.ServerCert, c.ServerKey)
	Must(t, err, "server certificate")
	ca, err := os.ReadFile(c.CA)
	Must(t, err, "CA")
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca)
	return &tls.Config{Certificates: []tls.Certificate{cert}, ClientCAs: pool, ClientAuth: tls.RequireAndVerifyClientCert}
}

// GenerateCerts writes a fresh CA and its certificates into dir.
func GenerateCerts(t T, dir string) Certs {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	Must(t, err, "CA key")
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "traefik-sd test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	Must(t, err, "CA certificate")
	ca, err := x509.ParseCertificate(caDER)
	Must(t, err, "CA certificate")

	c := Certs{
		CA:         filepath.Join(dir, "ca.pem"),
		ServerCert: filepath.Join(dir, "server.pem"), ServerKey: filepath.Join(dir, "server-key.pem"),
		ClientCert: filepath.Join(dir, "client.pem"), ClientKey: filepath.Join(dir, "client-key.pem"),
	}
	writePEM(t, c.CA, "CERTIFICATE", caDER)
	issue := func(serial int64, name string, usage x509.ExtKeyUsage, certFile, keyFile string) {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		Must(t, err, "key")
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: name},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
			KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage},
			IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, DNSNames: []string{"localhost"},
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
		Must(t, err, "certificate %s", name)
		writePEM(t, certFile, "CERTIFICATE", der)
		keyDER, err := x509.MarshalECPrivateKey(key)
		Must(t, err, "key %s", name)
		writePEM(t, keyFile, "EC PRIVATE KEY", keyDER)
	}
	issue(2, "127.0.0.1", x509.ExtKeyUsageServerAuth, c.ServerCert, c.ServerKey)
	issue(3, "traefik-sd", x509.ExtKeyUsageClientAuth, c.ClientCert, c.ClientKey)
	return c
}

func writePEM(t T, path, kind string, der []byte) {
	Must(t, os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: kind, Bytes: der}), 0o600), "writing %s", path)
}

// StartEtcdTLS starts etcd serving clients over TLS only, requiring a
// client certificate signed by certs.CA. Endpoint is host:port.
func StartEtcdTLS(t T, dir string, certs Certs) *Etcd {
	t.Helper()
	client, peer := FreePort(t), FreePort(t)
	clientURL := "https://127.0.0.1:" + strconv.Itoa(client)
	peerURL := "http://127.0.0.1:" + strconv.Itoa(peer)
	p := Start(t, &Process{
		Name: "etcd-tls",
		Path: Binary(t, "ETCD_BIN", "etcd"),
		Args: etcdArgs(dir, "etcd-tls-data", clientURL, peerURL,
			"--cert-file", certs.ServerCert, "--key-file", certs.ServerKey,
			"--trusted-ca-file", certs.CA, "--client-cert-auth"),
		Log: filepath.Join(dir, "etcd-tls.log"),
	})
	// Ready when the TLS port accepts connections; the tests' clients then
	// wait on their own calls.
	deadline := time.Now().Add(30 * time.Second)
	for {
		conn, err := net.DialTimeout("tcp", "127.0.0.1:"+strconv.Itoa(client), time.Second)
		if err == nil {
			conn.Close()
			break
		}
		if time.Now().After(deadline) || !p.Running() {
			t.Fatalf("etcd with TLS did not start:\n%s", p.Tail())
		}
		time.Sleep(50 * time.Millisecond)
	}
	return &Etcd{Process: p, Endpoint: "127.0.0.1:" + strconv.Itoa(client)}
}
