package stack

import (
	"bufio"
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"github.com/traefik-sd/traefik-sd/internal/testbed"
	"golang.org/x/mod/module"
	modzip "golang.org/x/mod/zip"
)

// ModulePath is the plugin's module, as users name it in experimental.plugins.
const ModulePath = "github.com/traefik-sd/traefik-sd"

// RegistryHost is the host Traefik v3.6.12 downloads plugins from
// (pkg/plugins/manager.go: https://plugins.traefik.io/public/).
const RegistryHost = "plugins.traefik.io"

// PluginZip writes the module zip of this repository at version, as the Go
// module proxy serves it (golang.org/x/mod/zip: no vendor/, no nested
// modules such as plugin/interpreted). The files are those git tracks or
// would track (.gitignore'd builds and caches stay out), as a published
// version would have them.
func PluginZip(w io.Writer, version string) error {
	root := repoRoot()
	out, err := exec.Command("git", "-C", root, "ls-files", "-z", "--cached", "--others", "--exclude-standard").Output()
	if err != nil {
		return fmt.Errorf("listing the module's files with git: %w", err)
	}
	var files []modzip.File
	for _, name := range strings.Split(strings.TrimRight(string(out), "\x00"), "\x00") {
		if name == "" {
			continue
		}
		if _, err := os.Lstat(filepath.Join(root, name)); err != nil {
			continue // deleted in the work tree
		}
		files = append(files, zipFile{root: root, path: name})
	}
	return modzip.Create(w, module.Version{Path: ModulePath, Version: version}, files)
}

// zipFile is one file of the work tree, for modzip.Create.
type zipFile struct{ root, path string }

func (f zipFile) Path() string                 { return f.path }
func (f zipFile) Lstat() (os.FileInfo, error)  { return os.Lstat(filepath.Join(f.root, f.path)) }
func (f zipFile) Open() (io.ReadCloser, error) { return os.Open(filepath.Join(f.root, f.path)) }

// PluginRegistry stands in for Traefik's plugin registry on loopback. It is
// an HTTP proxy (Traefik reaches it through HTTPS_PROXY): a CONNECT to
// plugins.traefik.io:443 is answered with TLS under a certificate from a
// test CA (Traefik trusts it through SSL_CERT_FILE) and serves
// /public/download/<module>/<version> with the module zip. Every other
// CONNECT is refused, so nothing leaves the machine.
type PluginRegistry struct {
	ProxyURL string // for HTTPS_PROXY
	CAFile   string // for SSL_CERT_FILE
	Version  string
	Hash     string // sha256 of the zip, hex, as Traefik computes it

	zip       []byte
	tls       *tls.Config
	downloads atomic.Int64
}

// Downloads is how many times Traefik fetched the zip.
func (r *PluginRegistry) Downloads() int64 { return r.downloads.Load() }

// StartPluginRegistry builds the zip and serves it until the test ends.
func StartPluginRegistry(t testbed.T, dir, version string) *PluginRegistry {
	t.Helper()
	var zip bytes.Buffer
	testbed.Must(t, PluginZip(&zip, version), "the plugin's module zip")
	sum := sha256.Sum256(zip.Bytes())
	r := &PluginRegistry{Version: version, Hash: hex.EncodeToString(sum[:]), zip: zip.Bytes(), CAFile: filepath.Join(dir, "registry-ca.pem")}
	r.tls = registryTLS(t, r.CAFile)

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	testbed.Must(t, err, "registry proxy")
	srv := &http.Server{Handler: http.HandlerFunc(r.proxy), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	r.ProxyURL = "http://" + ln.Addr().String()
	return r
}

func (r *PluginRegistry) proxy(rw http.ResponseWriter, req *http.Request) {
	if req.Method != http.MethodConnect || req.Host != RegistryHost+":443" {
		http.Error(rw, "this proxy reaches only "+RegistryHost, http.StatusForbidden)
		return
	}
	hj, ok := rw.(http.Hijacker)
	if !ok {
		http.Error(rw, "no hijacking", http.StatusInternalServerError)
		return
	}
	conn, buf, err := hj.Hijack()
	if err != nil {
		return
	}
	_, _ = conn.Write([]byte("HTTP/1.1 200 Connection Established\r\n\r\n"))
	tconn := tls.Server(&bufferedConn{Conn: conn, r: buf.Reader}, r.tls)
	one := &oneConnListener{conn: tconn, done: make(chan struct{})}
	srv := &http.Server{Handler: http.HandlerFunc(r.registry), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(one) }()
}

// registry answers as plugins.traefik.io/public does.
func (r *PluginRegistry) registry(rw http.ResponseWriter, req *http.Request) {
	switch req.URL.Path {
	case "/public/download/" + ModulePath + "/" + r.Version:
		if req.Header.Get("X-Plugin-Hash") == r.Hash {
			rw.WriteHeader(http.StatusNotModified)
			return
		}
		r.downloads.Add(1)
		rw.Header().Set("Content-Type", "application/zip")
		_, _ = rw.Write(r.zip)
	case "/public/validate/" + ModulePath + "/" + r.Version:
		if req.Header.Get("X-Plugin-Hash") != r.Hash {
			http.Error(rw, "hash mismatch", http.StatusBadRequest)
		}
	default:
		http.NotFound(rw, req)
	}
}

// registryTLS makes a CA, writes it to caFile, and returns a server
// configuration with a certificate for the registry's host signed by it.
func registryTLS(t testbed.T, caFile string) *tls.Config {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	testbed.Must(t, err, "CA key")
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "traefik-sd test registry CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	testbed.Must(t, err, "CA")
	ca, _ := x509.ParseCertificate(caDER)
	testbed.Must(t, os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), 0o644), "CA file")
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	testbed.Must(t, err, "key")
	leaf := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: RegistryHost},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour), DNSNames: []string{RegistryHost},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, leaf, ca, &key.PublicKey, caKey)
	testbed.Must(t, err, "certificate")
	return &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}, MinVersion: tls.VersionTLS12}
}

// bufferedConn reads first what the proxy's reader already buffered.
type bufferedConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *bufferedConn) Read(p []byte) (int, error) { return c.r.Read(p) }

// oneConnListener hands http.Server one connection, then waits for Close.
type oneConnListener struct {
	conn net.Conn
	used atomic.Bool
	done chan struct{}
}

func (l *oneConnListener) Accept() (net.Conn, error) {
	if l.used.CompareAndSwap(false, true) {
		return l.conn, nil
	}
	<-l.done
	return nil, net.ErrClosed
}

func (l *oneConnListener) Close() error {
	select {
	case <-l.done:
	default:
		close(l.done)
	}
	return nil
}

func (l *oneConnListener) Addr() net.Addr { return l.conn.LocalAddr() }
