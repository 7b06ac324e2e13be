package daemon_test

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/traefik-sd/traefik-sd/internal/testbed"
)

// sidecarBinary is the sidecar built as `make build` builds it, or
// SIDECAR_BIN when set: a process of its own, measured from outside and
// without the race detector the tests' process may carry.
func sidecarBinary(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("SIDECAR_BIN"); p != "" {
		return p
	}
	out := filepath.Join(t.TempDir(), "traefik-sd")
	cmd := exec.Command("go", "build", "-trimpath", "-o", out, "./sidecar/cmd/traefik-sd")
	cmd.Dir = "../.."
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building the sidecar: %v\n%s", err, b)
	}
	return out
}

// sidecarProcess runs the sidecar binary, plugin-only beside a Traefik
// API that serves no router, on a loopback port, until the test ends.
type sidecarProcess struct {
	cmd  *exec.Cmd
	addr string
	log  string
}

func startSidecarProcess(t *testing.T, args ...string) *sidecarProcess {
	t.Helper()
	bin := sidecarBinary(t)
	api := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, req *http.Request) {
		if req.URL.Path == "/api/http/routers" {
			_, _ = io.WriteString(rw, "[]")
		}
	}))
	t.Cleanup(api.Close)
	p := &sidecarProcess{addr: "127.0.0.1:" + strconv.Itoa(testbed.FreePort(t)), log: filepath.Join(t.TempDir(), "sidecar.log")}
	logFile, err := os.Create(p.log)
	testbed.Must(t, err, "log file")
	defer logFile.Close()
	p.cmd = exec.Command(bin, append([]string{"--address=" + p.addr, "--etcd.endpoints=", "--traefik.apiURL=" + api.URL,
		"--worker.authority=worker-secure", "--worker.node=node-s", "--plugin.token=s3cret"}, args...)...)
	p.cmd.Stdout, p.cmd.Stderr = logFile, logFile
	testbed.Must(t, p.cmd.Start(), "starting the sidecar")
	t.Cleanup(func() {
		_ = p.cmd.Process.Kill()
		_ = p.cmd.Wait()
		if t.Failed() {
			b, _ := os.ReadFile(p.log)
			t.Logf("---- the sidecar's log ----\n%s", b)
		}
	})
	testbed.Eventually(t, 20*time.Second, "the sidecar listening", func() (bool, string) {
		c, err := net.Dial("tcp", p.addr)
		if err != nil {
			return false, err.Error()
		}
		c.Close()
		return true, ""
	})
	return p
}

// memory reads a field of the process's /proc status (VmRSS, VmHWM) in bytes.
func (p *sidecarProcess) memory(t *testing.T, field string) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.cmd.Process.Pid))
	testbed.Must(t, err, "the sidecar's /proc status")
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			testbed.Must(t, err, "%s", line)
			return kb << 10
		}
	}
	t.Fatalf("no %s in /proc/%d/status", field, p.cmd.Process.Pid)
	return 0
}

// TestLargeBodiesBeforeAuthLeaveMemoryAlone: 1,000 connections at once
// each announce a body of --server.maxPushBytes (32 MiB, the default) to
// /healthz and send 256 KiB of it. The built sidecar refuses each once its
// headers are in (a body is for an authorized push alone), so its peak
// resident memory stays under 100 MB; reading those bodies would take
// 250 MB and more. The bound per client address is lifted, so that the
// body limit alone is measured.
func TestLargeBodiesBeforeAuthLeaveMemoryAlone(t *testing.T) {
	const (
		conns     = 1000
		announced = 32 << 20
		sent      = 256 << 10
		limit     = 100 << 20
	)
	p := startSidecarProcess(t, "--server.maxConnsPerIP=0")
	before := p.memory(t, "VmRSS")

	chunk := make([]byte, 64<<10)
	header := "GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: " + strconv.Itoa(announced) + "\r\n\r\n"
	var connected atomic.Int64
	var sending, done sync.WaitGroup
	measured := make(chan struct{})
	start := time.Now()
	for range conns {
		sending.Add(1)
		done.Add(1)
		go func() {
			defer done.Done()
			c, err := net.DialTimeout("tcp", p.addr, 5*time.Second)
			if err != nil {
				sending.Done()
				return
			}
			defer c.Close()
			connected.Add(1)
			_ = c.SetDeadline(time.Now().Add(20 * time.Second))
			_, err = io.WriteString(c, header)
			for n := 0; err == nil && n < sent; n += len(chunk) {
				_, err = c.Write(chunk)
			}
			sending.Done()
			<-measured // held open until the memory is read
		}()
	}
	sending.Wait()
	time.Sleep(500 * time.Millisecond) // what the sockets still hold is read meanwhile
	peak, now := p.memory(t, "VmHWM"), p.memory(t, "VmRSS")
	close(measured)
	done.Wait()
	t.Logf("%d connections sent %d KiB each (of %d MiB announced) in %v; the sidecar's resident memory: %.1f MB before, %.1f MB after, peak %.1f MB",
		connected.Load(), sent>>10, announced>>20, time.Since(start).Round(time.Millisecond), float64(before)/1e6, float64(now)/1e6, float64(peak)/1e6)
	if connected.Load() != conns {
		t.Fatalf("%d of %d connections made", connected.Load(), conns)
	}
	if peak >= limit {
		t.Errorf("peak resident memory %.1f MB with %d connections sending bodies to /healthz; want under %d MB", float64(peak)/1e6, conns, limit>>20)
	}
	// Each was refused for its size, and the sidecar still serves.
	testbed.Eventually(t, 10*time.Second, "every body refused, counted", func() (bool, string) {
		code, body := get(t, http.DefaultClient, "http://"+p.addr+"/metrics", "")
		for _, line := range strings.Split(body, "\n") {
			if v, ok := strings.CutPrefix(line, `traefik_sd_http_request_errors_total{kind="too_large"} `); ok {
				return code == 200 && v == strconv.Itoa(conns), line
			}
		}
		return false, fmt.Sprintf("%d %.200s", code, body)
	})
}

// certsIn writes a fresh CA and its certificates into dir/name.
func certsIn(t *testing.T, dir, name string) testbed.Certs {
	d := filepath.Join(dir, name)
	testbed.Must(t, os.MkdirAll(d, 0o700), "certificate directory")
	return testbed.GenerateCerts(t, d)
}

func copyFile(t *testing.T, from, to string) {
	b, err := os.ReadFile(from)
	testbed.Must(t, err, "reading %s", from)
	// Written aside and renamed, as a Kubernetes Secret volume swaps files.
	testbed.Must(t, os.WriteFile(to+".new", b, 0o600), "writing %s", to)
	testbed.Must(t, os.Rename(to+".new", to), "renaming %s", to)
}

func certificateDER(t *testing.T, file string) []byte {
	b, err := os.ReadFile(file)
	testbed.Must(t, err, "reading %s", file)
	block, _ := pem.Decode(b)
	if block == nil {
		t.Fatalf("no PEM block in %s", file)
	}
	return block.Bytes
}

// TestTLSReloadedOnSIGHUPAndClientCertificatesRequired: the built sidecar
// serves HTTPS with --server.tlsClientCA; after its certificate files are
// replaced and it gets SIGHUP, a new connection sees the new certificate;
// a client without a certificate is refused, and the failed handshake
// counted.
func TestTLSReloadedOnSIGHUPAndClientCertificatesRequired(t *testing.T) {
	dir := t.TempDir()
	first, second := certsIn(t, dir, "first"), certsIn(t, dir, "second")
	certFile, keyFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	copyFile(t, first.ServerCert, certFile)
	copyFile(t, first.ServerKey, keyFile)
	p := startSidecarProcess(t, "--server.tlsCert="+certFile, "--server.tlsKey="+keyFile, "--server.tlsClientCA="+first.CA)

	roots := x509.NewCertPool()
	for _, ca := range []string{first.CA, second.CA} {
		b, err := os.ReadFile(ca)
		testbed.Must(t, err, "CA")
		roots.AppendCertsFromPEM(b)
	}
	clientCert, err := tls.LoadX509KeyPair(first.ClientCert, first.ClientKey)
	testbed.Must(t, err, "client certificate")
	withCert := &tls.Config{RootCAs: roots, Certificates: []tls.Certificate{clientCert}, MinVersion: tls.VersionTLS12}
	withoutCert := &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}

	served := func() []byte {
		c, err := tls.Dial("tcp", p.addr, withCert)
		testbed.Must(t, err, "TLS connection")
		defer c.Close()
		return c.ConnectionState().PeerCertificates[0].Raw
	}
	if string(served()) != string(certificateDER(t, first.ServerCert)) {
		t.Fatal("the sidecar does not serve the certificate it was started with")
	}
	copyFile(t, second.ServerCert, certFile)
	copyFile(t, second.ServerKey, keyFile)
	testbed.Must(t, p.cmd.Process.Signal(syscall.SIGHUP), "SIGHUP")
	testbed.Eventually(t, 5*time.Second, "a new connection sees the new certificate after SIGHUP", func() (bool, string) {
		return string(served()) == string(certificateDER(t, second.ServerCert)), "still the first certificate"
	})

	client := func(c *tls.Config) *http.Client {
		return &http.Client{Transport: &http.Transport{TLSClientConfig: c}, Timeout: 5 * time.Second}
	}
	if code, body := get(t, client(withoutCert), "https://"+p.addr+"/healthz", ""); code != 0 {
		t.Errorf("a client without a certificate was answered: %d %q", code, body)
	}
	code, body := get(t, client(withCert), "https://"+p.addr+"/metrics", "")
	if code != 200 {
		t.Fatalf("a client with its certificate: %d %q", code, body)
	}
	var handshakes string
	for line := range strings.Lines(body) {
		if v, ok := strings.CutPrefix(line, `traefik_sd_http_request_errors_total{kind="tls_handshake"} `); ok {
			handshakes = strings.TrimSpace(v)
		}
	}
	if handshakes != "1" {
		t.Errorf(`traefik_sd_http_request_errors_total{kind="tls_handshake"} %q, want 1 (the client without a certificate)`, handshakes)
	}
}
