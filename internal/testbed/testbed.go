// Package testbed starts the real programs the tests run against (etcd,
// Traefik, Prometheus, the sidecar) on loopback ports chosen free at run
// time, and stops them: every process is killed with its process group when
// the test ends, and every wait is bounded.
package testbed

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// T is what the test bed needs of a test; *testing.T and *testing.B have it,
// and so does the demo's runner.
type T interface {
	Helper()
	Errorf(format string, args ...interface{})
	Fatalf(format string, args ...interface{})
	Logf(format string, args ...interface{})
	Cleanup(func())
	Failed() bool
}

// Runner is a T for programs (the demo, the benchmarks): cleanups run in
// reverse order on Stop, and a fatal error cleans up and exits.
type Runner struct {
	cleanups []func()
	failed   bool
}

func (r *Runner) Helper() {}
func (r *Runner) Logf(format string, args ...interface{}) {
	fmt.Fprintf(os.Stderr, format+"\n", args...)
}
func (r *Runner) Cleanup(f func()) { r.cleanups = append(r.cleanups, f) }
func (r *Runner) Failed() bool     { return r.failed }

// Errorf reports and marks the run failed.
func (r *Runner) Errorf(format string, args ...interface{}) {
	r.failed = true
	fmt.Fprintf(os.Stderr, format+"\n", args...)
}

// Fatalf reports, stops everything started and exits.
func (r *Runner) Fatalf(format string, args ...interface{}) {
	r.failed = true
	fmt.Fprintf(os.Stderr, format+"\n", args...)
	r.Stop()
	os.Exit(1)
}

// Stop runs the cleanups, last registered first.
func (r *Runner) Stop() {
	for i := len(r.cleanups) - 1; i >= 0; i-- {
		r.cleanups[i]()
	}
	r.cleanups = nil
}

// FreePort returns a loopback port nobody listens on right now.
func FreePort(tb T) int {
	tb.Helper()
	// A port the kernel hands out for ":0" is in its ephemeral range, the
	// range it also takes local ports of outgoing connections from: once
	// closed here, it can be some client's before the program we start
	// binds it ("bind: address already in use", seen in make test). So
	// the port comes from below that range, which the kernel never hands
	// out by itself, and never twice from one process.
	lo := ephemeralLow()
	const floor = 10000
	if lo-floor >= 1000 {
		freePorts.Lock()
		defer freePorts.Unlock()
		for range 200 {
			p := floor + rand.IntN(lo-floor)
			if freePorts.given[p] {
				continue
			}
			ln, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p))
			if err != nil {
				continue
			}
			ln.Close()
			freePorts.given[p] = true
			return p
		}
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatalf("no free port: %v", err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// freePorts are the ports FreePort gave out in this process.
var freePorts = struct {
	sync.Mutex
	given map[int]bool
}{given: map[int]bool{}}

// ephemeralLow is the first port of the kernel's ephemeral range (32768
// when it cannot be read).
func ephemeralLow() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 32768
	}
	f := strings.Fields(string(b))
	if len(f) < 1 {
		return 32768
	}
	lo, err := strconv.Atoi(f[0])
	if err != nil {
		return 32768
	}
	return lo
}

// Binary finds a program: the environment variable env if set, else PATH.
// A missing program fails the test: the Makefile installs them.
func Binary(tb T, env, name string) string {
	tb.Helper()
	if p := os.Getenv(env); p != "" {
		return p
	}
	p, err := exec.LookPath(name)
	if err != nil {
		tb.Fatalf("%s not found (set %s or run `make deps`): %v", name, env, err)
	}
	return p
}

// Process is one started program.
type Process struct {
	Name string
	Path string
	Args []string
	Dir  string
	Env  []string
	Log  string // file receiving stdout and stderr

	cmd  *exec.Cmd
	done chan struct{}
}

// Start runs the process in its own process group and registers its stop
// with tb.Cleanup.
func Start(tb T, p *Process) *Process {
	tb.Helper()
	if err := p.start(); err != nil {
		tb.Fatalf("starting %s: %v", p.Name, err)
	}
	tb.Cleanup(func() {
		p.Stop()
		if tb.Failed() {
			tb.Logf("---- end of %s's log (%s) ----\n%s", p.Name, p.Log, p.Tail())
		}
	})
	return p
}

func (p *Process) start() error {
	f, err := os.OpenFile(p.Log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	cmd := exec.Command(p.Path, p.Args...)
	cmd.Dir = p.Dir
	cmd.Env = append(os.Environ(), p.Env...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		f.Close()
		return err
	}
	p.cmd = cmd
	p.done = make(chan struct{})
	go func() {
		_ = cmd.Wait()
		f.Close()
		close(p.done)
	}()
	return nil
}

// Running tells whether the process has not exited.
func (p *Process) Running() bool {
	if p.cmd == nil {
		return false
	}
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// Signal sends sig to the process group.
func (p *Process) Signal(sig syscall.Signal) {
	if p.cmd != nil && p.cmd.Process != nil {
		_ = syscall.Kill(-p.cmd.Process.Pid, sig)
	}
}

// Stop ends the process: SIGTERM, then SIGKILL after five seconds.
func (p *Process) Stop() {
	if !p.Running() {
		return
	}
	p.Signal(syscall.SIGCONT)
	p.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(5 * time.Second):
		p.Signal(syscall.SIGKILL)
		<-p.done
	}
}

// Kill ends the process at once with SIGKILL, as a crash would.
func (p *Process) Kill() {
	if !p.Running() {
		return
	}
	p.Signal(syscall.SIGKILL)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
	}
}

// Restart stops (or kills) the process and starts it again with the same arguments.
func (p *Process) Restart(tb T, kill bool) {
	tb.Helper()
	if kill {
		p.Kill()
	} else {
		p.Stop()
	}
	if err := p.start(); err != nil {
		tb.Fatalf("restarting %s: %v", p.Name, err)
	}
}

// Tail returns the end of the process log, for failure messages.
func (p *Process) Tail() string {
	b, _ := os.ReadFile(p.Log)
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(b)
}

// WaitHTTP waits until url answers with want (0: any status), or fails tb.
func WaitHTTP(tb T, p *Process, url string, want int, timeout time.Duration) {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	client := &http.Client{Timeout: time.Second}
	var last string
	for time.Now().Before(deadline) {
		if p != nil && !p.Running() {
			tb.Fatalf("%s exited while waiting for %s:\n%s", p.Name, url, p.Tail())
		}
		resp, err := client.Get(url)
		if err == nil {
			resp.Body.Close()
			if want == 0 || resp.StatusCode == want {
				return
			}
			last = resp.Status
		} else {
			last = err.Error()
		}
		time.Sleep(50 * time.Millisecond)
	}
	name := "service"
	tail := ""
	if p != nil {
		name, tail = p.Name, p.Tail()
	}
	tb.Fatalf("%s did not answer %s within %v (last: %s)\n%s", name, url, timeout, last, tail)
}

// Etcd is a one-member etcd server.
type Etcd struct {
	*Process
	Endpoint string
}

// StartEtcd starts etcd (Debian's etcd-server) with a fresh data directory.
func StartEtcd(tb T, dir string) *Etcd {
	tb.Helper()
	client, peer := FreePort(tb), FreePort(tb)
	clientURL := "http://127.0.0.1:" + strconv.Itoa(client)
	peerURL := "http://127.0.0.1:" + strconv.Itoa(peer)
	p := Start(tb, &Process{
		Name: "etcd",
		Path: Binary(tb, "ETCD_BIN", "etcd"),
		Args: etcdArgs(dir, "etcd-data", clientURL, peerURL),
		Env:  []string{"ETCD_UNSUPPORTED_ARCH=" + goarch()},
		Log:  filepath.Join(dir, "etcd.log"),
	})
	WaitHTTP(tb, p, clientURL+"/health", http.StatusOK, 30*time.Second)
	return &Etcd{Process: p, Endpoint: "127.0.0.1:" + strconv.Itoa(client)}
}

func goarch() string {
	out, err := exec.Command("uname", "-m").Output()
	if err != nil {
		return ""
	}
	switch strings.TrimSpace(string(out)) {
	case "aarch64":
		return "arm64"
	default:
		return ""
	}
}

// Eventually polls cond every 25ms until it is true or timeout passes,
// then fails tb with what cond last said.
func Eventually(tb T, timeout time.Duration, what string, cond func() (bool, string)) time.Duration {
	tb.Helper()
	start := time.Now()
	var last string
	for {
		ok, msg := cond()
		if ok {
			return time.Since(start)
		}
		last = msg
		if time.Since(start) > timeout {
			tb.Fatalf("%s: not within %v; last: %s", what, timeout, last)
		}
		time.Sleep(25 * time.Millisecond)
	}
}

// Context returns a context bounded by d, cancelled when the test ends.
func Context(tb T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	tb.Cleanup(cancel)
	return ctx
}

// Must fails tb on err.
func Must(tb T, err error, what string, args ...interface{}) {
	tb.Helper()
	if err != nil {
		tb.Fatalf("%s: %v", fmt.Sprintf(what, args...), err)
	}
}

// Metric fetches a /metrics page and returns the value of one series, given
// as its full text before the value (name and labels), or "" if absent or
// unreachable.
func Metric(ctx context.Context, metricsURL, series string) string {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, metricsURL, nil)
	if err != nil {
		return ""
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return ""
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, series+" "); ok {
			return v
		}
	}
	return ""
}

// etcdArgs are the flags of a one-member etcd with its data in dir.
func etcdArgs(dir, dataName, clientURL, peerURL string, extra ...string) []string {
	return append([]string{
		"--name", "default",
		"--data-dir", filepath.Join(dir, dataName),
		"--listen-client-urls", clientURL, "--advertise-client-urls", clientURL,
		"--listen-peer-urls", peerURL, "--initial-advertise-peer-urls", peerURL,
		"--initial-cluster", "default=" + peerURL,
		"--log-level", "warn",
	}, extra...)
}
