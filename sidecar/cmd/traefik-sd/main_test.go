package main

import (
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/traefik-sd/traefik-sd/sidecar/memlimit"
)

// The test binary plays traefik-sd when asked, so that the command line is
// tested as an operator runs it: exit status, stdout and stderr.
func TestMain(m *testing.M) {
	if os.Getenv("TESTMAIN_RUN") == "1" {
		os.Args = append([]string{"traefik-sd"}, strings.Fields(os.Getenv("TESTMAIN_ARGS"))...)
		os.Unsetenv("TESTMAIN_RUN")
		os.Unsetenv("TESTMAIN_ARGS")
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func run(t *testing.T, args string) (string, string, int) {
	t.Helper()
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), "TESTMAIN_RUN=1", "TESTMAIN_ARGS="+args)
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return stdout.String(), stderr.String(), code
}

// freeAddr is a loopback address nothing listens on.
func freeAddr(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// start starts cmd, the test binary playing a long-running sidecar, and
// returns what stops it with SIGTERM, showing its log if the test failed.
func start(t *testing.T, cmd *exec.Cmd) (stop func()) {
	t.Helper()
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	return func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("sidecar's log:\n%s", stderr.String())
		}
	}
}

func TestVersion(t *testing.T) {
	out, _, code := run(t, "--version")
	if code != 0 || !strings.HasPrefix(out, "traefik-sd ") || !strings.Contains(out, runtime.Version()) || !strings.Contains(out, "revision ") {
		t.Errorf("--version: %d %q", code, out)
	}
}

// TestABadOptionExitsWithItsName: exit status 1, one line naming the
// option, none of paerser's "command … error" wrapping.
func TestABadOptionExitsWithItsName(t *testing.T) {
	_, stderr, code := run(t, "--worker.authority=w --server.readTimeout=abc")
	if code != 1 || stderr != "traefik-sd: --server.readTimeout=\"abc\": want a duration such as 500ms, 10s or 1m\n" {
		t.Errorf("exit %d, stderr %q", code, stderr)
	}
}

// TestHelpShowsDurationsWithTheirUnit: paerser prints a duration default
// in seconds without a unit ("10"); the help says 10s.
func TestHelpShowsDurationsWithTheirUnit(t *testing.T) {
	out, _, code := run(t, "--help")
	for _, want := range []string{`--server.readTimeout  (TRAEFIK_SD_SERVER_READTIMEOUT, default "10s")`,
		`--log.format  (TRAEFIK_SD_LOG_FORMAT, default "logfmt")`, `--plugin.tokenFile`} {
		if !strings.Contains(out, want) {
			t.Errorf("--help lacks %s (exit %d)", want, code)
		}
	}
}

// TestSIGHUPRereadsTheSecretFiles: the push token is rotated in its file
// (a Secret updated by Kubernetes); after SIGHUP the running sidecar
// takes the new token and refuses the old one.
func TestSIGHUPRereadsTheSecretFiles(t *testing.T) {
	dir := t.TempDir()
	tokenFile := filepath.Join(dir, "push-token")
	if err := os.WriteFile(tokenFile, []byte("old\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	addr := freeAddr(t)
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), "TESTMAIN_RUN=1", "TESTMAIN_ARGS=--worker.authority=w --worker.node=n --etcd.endpoints= "+
		"--traefik.apiURL=http://127.0.0.1:1 --address="+addr+" --plugin.tokenFile="+tokenFile)
	defer start(t, cmd)()
	push := func(token string) int {
		req, _ := http.NewRequest(http.MethodPost, "http://"+addr+"/v1/plugin/sync", strings.NewReader("{}"))
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return 0
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	deadline := time.Now().Add(10 * time.Second)
	for push("old") == 0 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if code := push("new"); code != http.StatusUnauthorized {
		t.Fatalf("the new token before SIGHUP: %d, want 401", code)
	}
	if code := push("old"); code == http.StatusUnauthorized || code == 0 {
		t.Fatalf("the old token before SIGHUP: %d", code)
	}
	if err := os.WriteFile(tokenFile, []byte("new\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	for time.Now().Before(deadline.Add(10 * time.Second)) {
		if push("new") != http.StatusUnauthorized && push("old") == http.StatusUnauthorized {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Errorf("after SIGHUP: new token %d, old token %d", push("new"), push("old"))
}

// memoryCgroup makes a child of this process's memory cgroup limited to
// limit bytes, and returns the file a process writes its pid to, to join
// it. It skips the test where cgroups cannot be written (not root).
func memoryCgroup(t *testing.T, limit int64) (procs string) {
	t.Helper()
	self, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		t.Skip("no /proc/self/cgroup:", err)
	}
	var dir, limitFile string
	for _, line := range strings.Split(string(self), "\n") {
		parts := strings.SplitN(line, ":", 3)
		if len(parts) != 3 {
			continue
		}
		switch {
		case parts[0] == "0" && parts[1] == "" && dir == "":
			if c, err := os.ReadFile("/sys/fs/cgroup/cgroup.controllers"); err == nil && strings.Contains(string(c), "memory") {
				dir, limitFile = filepath.Join("/sys/fs/cgroup", parts[2]), "memory.max"
			}
		case strings.Contains(","+parts[1]+",", ",memory,"):
			dir, limitFile = filepath.Join("/sys/fs/cgroup/memory", parts[2]), "memory.limit_in_bytes"
		}
	}
	if dir == "" {
		t.Skip("no memory cgroup controller")
	}
	child := filepath.Join(dir, "traefik-sd-test-"+strconv.Itoa(os.Getpid()))
	if err := os.Mkdir(child, 0o755); err != nil {
		t.Skip("cannot make a memory cgroup here:", err)
	}
	t.Cleanup(func() {
		if err := os.Remove(child); err != nil {
			t.Errorf("removing the cgroup: %v", err)
		}
	})
	if err := os.WriteFile(filepath.Join(child, limitFile), []byte(strconv.FormatInt(limit, 10)), 0); err != nil {
		t.Fatal(err)
	}
	return filepath.Join(child, "cgroup.procs")
}

// gomemlimit starts the sidecar inside the cgroup with env added and
// returns its Go collector's go_gc_gomemlimit_bytes: the soft limit the
// runtime runs with.
func gomemlimit(t *testing.T, procs string, env ...string) float64 {
	t.Helper()
	addr := freeAddr(t)
	// The shell joins the cgroup, then becomes the sidecar: it reads its
	// limit from its first instruction on.
	cmd := exec.Command("/bin/sh", "-c", `echo $$ > "$1" && exec "$0"`, os.Args[0], procs)
	cmd.Env = plainSidecarEnv("GOMEMLIMIT", env, "--address="+addr)
	defer start(t, cmd)()
	return goMetric(t, addr, "go_gc_gomemlimit_bytes", func(float64) bool { return true })
}

// plainSidecarEnv is the environment of the test binary playing a sidecar
// without etcd, whose Traefik never answers, with more args: this test's,
// without the variable named drop, then env.
func plainSidecarEnv(drop string, env []string, args string) []string {
	var out []string
	for _, e := range os.Environ() {
		if !strings.HasPrefix(e, drop+"=") {
			out = append(out, e)
		}
	}
	out = append(out, env...)
	return append(out, "TESTMAIN_RUN=1", "TESTMAIN_ARGS=--worker.authority=w --worker.node=n --etcd.endpoints= "+
		"--traefik.apiURL=http://127.0.0.1:1 "+args)
}

// goMetric reads one of the sidecar's own metrics at addr until done
// accepts it, and returns the last value read; it fails the test if the
// metric is never on /metrics within 20 s.
func goMetric(t *testing.T, addr, name string, done func(float64) bool) float64 {
	t.Helper()
	last, seen := 0.0, false
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		resp, err := http.Get("http://" + addr + "/metrics")
		if err != nil {
			continue
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		for _, line := range strings.Split(string(body), "\n") {
			if v, ok := strings.CutPrefix(line, name+" "); ok {
				f, err := strconv.ParseFloat(v, 64)
				if err != nil {
					t.Fatalf("%s %q", name, v)
				}
				if last, seen = f, true; done(f) {
					return f
				}
			}
		}
	}
	if !seen {
		t.Fatalf("no %s on /metrics within 20s", name)
	}
	return last
}

// TestTheStartCollectsOftenUntilTheFirstSet: until its first set may be
// served the sidecar runs with GOGC at memlimit.StartGCPercent, and then
// with Go's default; a GOGC the operator set holds throughout.
func TestTheStartCollectsOftenUntilTheFirstSet(t *testing.T) {
	for _, tc := range []struct {
		grace string
		env   []string
		want  float64
	}{
		{grace: "1h", want: memlimit.StartGCPercent}, // not ready for an hour
		{grace: "0s", want: 100},                     // ready at once: the start is over
		{grace: "1h", env: []string{"GOGC=150"}, want: 150},
	} {
		addr := freeAddr(t)
		cmd := exec.Command(os.Args[0])
		cmd.Env = plainSidecarEnv("GOGC", tc.env, "--plugin.startGrace="+tc.grace+" --address="+addr)
		stop := start(t, cmd)
		got := goMetric(t, addr, "go_gc_gogc_percent", func(v float64) bool { return v == tc.want })
		stop()
		if got != tc.want {
			t.Errorf("--plugin.startGrace=%s %v: go_gc_gogc_percent %v, want %v", tc.grace, tc.env, got, tc.want)
		}
	}
}

// TestTheContainersMemoryLimitBecomesGoesSoftLimit: in a cgroup limited to
// 512 MiB the sidecar runs with GOMEMLIMIT at 90% of it; a GOMEMLIMIT the
// operator set is left as it is.
func TestTheContainersMemoryLimitBecomesGoesSoftLimit(t *testing.T) {
	const limit = 512 << 20
	procs := memoryCgroup(t, limit)
	if got, want := gomemlimit(t, procs), 483183820.0; got != want { // 90% of 512 MiB, in whole bytes
		t.Errorf("in a %d-byte cgroup: GOMEMLIMIT %.0f, want %.0f", int64(limit), got, want)
	}
	if got := gomemlimit(t, procs, "GOMEMLIMIT=100MiB"); got != 100<<20 {
		t.Errorf("with GOMEMLIMIT=100MiB: %.0f", got)
	}
}
