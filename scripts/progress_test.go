// Package scripts holds the shell scripts make runs; its tests check the
// parts of them that can be tried without building Traefik or etcd.
package scripts

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// line is one line of stderr and when it arrived.
type line struct {
	at   time.Duration
	text string
}

// run is a bash script sourcing progress.sh, started in a process group
// of its own (ended when the test ends), its stderr read line by line.
type run struct {
	cmd    *exec.Cmd
	start  time.Time
	stdout bytes.Buffer
	lines  chan line
	// stderrDone is closed at stderr's EOF: when nothing holds it open,
	// the ticker included.
	stderrDone chan struct{}
}

func startScript(t *testing.T, env []string, script string) *run {
	t.Helper()
	progress, err := filepath.Abs("progress.sh")
	if err != nil {
		t.Fatal(err)
	}
	r := &run{lines: make(chan line, 100), stderrDone: make(chan struct{})}
	r.cmd = exec.Command("bash", "-c", "set -euo pipefail\n. "+strconv.Quote(progress)+"\n"+script)
	r.cmd.Env = append(os.Environ(), env...)
	r.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	r.cmd.Stdout = &r.stdout
	stderr, err := r.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	r.start = time.Now()
	if err := r.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pgid := r.cmd.Process.Pid
	t.Cleanup(func() { _ = syscall.Kill(-pgid, syscall.SIGKILL) })
	go func() {
		defer close(r.stderrDone)
		defer close(r.lines)
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			r.lines <- line{time.Since(r.start), sc.Text()}
		}
	}()
	return r
}

// all reads every line until stderr's EOF.
func (r *run) all() []line {
	var out []line
	for l := range r.lines {
		out = append(out, l)
	}
	return out
}

func exitCode(err error) int {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode()
	}
	if err != nil {
		return -1
	}
	return 0
}

func show(lines []line) string {
	var b strings.Builder
	for _, l := range lines {
		fmt.Fprintf(&b, "  %6.1fs %s\n", l.at.Seconds(), l.text)
	}
	return b.String()
}

// TestProgressEvery30Seconds: a 65-second command under progress_run, with
// the default interval, is announced at once and then reported at 30 and
// 60 seconds (never more than 30 s apart, give or take the one-second
// poll); the script's stdout stays empty (the command's own stdout goes to
// stderr), the command's exit status is progress_run's, the caller's EXIT
// trap still runs once, and stderr closes as soon as the script ends: no
// ticker outlives it.
func TestProgressEvery30Seconds(t *testing.T) {
	t.Parallel()
	r := startScript(t, []string{"PROGRESS_EVERY="}, `
trap 'echo "caller trap ran" >&2' EXIT
progress_run fake "building something slow" "a minute" sh -c 'echo "the command on stdout"; sleep 65; exit 3'
echo "not reached: set -e stops on the command's status"
`)
	lines := r.all()
	err := r.cmd.Wait()
	elapsed := time.Since(r.start)
	if code := exitCode(err); code != 3 {
		t.Errorf("exit status %d (%v), want the command's 3", code, err)
	}
	if r.stdout.Len() != 0 {
		t.Errorf("stdout %q, want nothing: the Makefile reads the scripts' last line of stdout", r.stdout.String())
	}
	if elapsed > 75*time.Second {
		t.Errorf("the script and its stderr ended after %s, for a 65 s command", elapsed)
	}
	tick := regexp.MustCompile(`^fake: building something slow: (?:\d+s|\d+m\d\ds) so far \(usually a minute\)$`)
	var at []time.Duration
	var first, failed, trapped, commandOut bool
	for _, l := range lines {
		switch {
		case l.text == "fake: building something slow (usually a minute); a line every 30s until it is done":
			first = l.at < 5*time.Second
		case tick.MatchString(l.text):
			at = append(at, l.at)
		case strings.HasPrefix(l.text, "fake: building something slow: failed after 1m0") && strings.HasSuffix(l.text, "(exit status 3)"):
			failed = true
		case l.text == "caller trap ran":
			trapped = !trapped
		case l.text == "the command on stdout":
			commandOut = true
		}
	}
	if !first || !failed || !trapped || !commandOut {
		t.Errorf("announced at once %v, failure reported %v, caller's trap once %v, command's stdout on stderr %v; stderr:\n%s",
			first, failed, trapped, commandOut, show(lines))
	}
	if len(at) < 2 {
		t.Fatalf("%d progress lines in 65 s, want 2 at least; stderr:\n%s", len(at), show(lines))
	}
	prev := time.Duration(0)
	for _, a := range append(at, elapsed) {
		if a-prev > 32*time.Second {
			t.Errorf("%s without a line (from %.1fs to %.1fs); stderr:\n%s", a-prev, prev.Seconds(), a.Seconds(), show(lines))
		}
		prev = a
	}
}

// TestProgressCountsWhatGoBuildPrints: with PROGRESS_LOG, each line counts
// the modules downloaded and the packages compiled so far (go build -v
// prints one per package), and a failure shows the log without them.
func TestProgressCountsWhatGoBuildPrints(t *testing.T) {
	t.Parallel()
	log := filepath.Join(t.TempDir(), "build.log")
	r := startScript(t, []string{"PROGRESS_EVERY=1", "PROGRESS_LOG=" + log, "PROGRESS_TOTAL=9"}, `
progress_run fake "building" "seconds" sh -c '
  printf "go: downloading example.com/a v1.0.0\ngo: downloading example.com/b v1.2.0\nexample.com/a\nexample.com/b/c\n" >&2
  sleep 2.5
  echo "example.com/b/c/d.go:1:1: expected package" >&2
  exit 1'
`)
	lines := r.all()
	if code := exitCode(r.cmd.Wait()); code != 1 {
		t.Errorf("exit status %d, want 1", code)
	}
	var counted, errorShown, namesShown bool
	for _, l := range lines {
		counted = counted || strings.HasSuffix(l.text, "so far (usually seconds); 2 modules downloaded; 2 of about 9 packages compiled")
		errorShown = errorShown || l.text == "example.com/b/c/d.go:1:1: expected package"
		namesShown = namesShown || strings.HasPrefix(l.text, "example.com/a") || strings.HasPrefix(l.text, "go: downloading")
	}
	if !counted || !errorShown || namesShown {
		t.Errorf("counted %v, the error shown %v, package names or downloads shown %v; stderr:\n%s", counted, errorShown, namesShown, show(lines))
	}
	if r.stdout.Len() != 0 {
		t.Errorf("stdout %q, want nothing", r.stdout.String())
	}
}

// TestProgressTickerEndsWithTheScript: interrupted (^C reaches the whole
// process group) the ticker ends with the script; terminated alone (SIGTERM
// to the script, as timeout(1) sends it), the script runs its EXIT trap,
// which ends the ticker before the script is gone; killed outright (no trap
// runs), the ticker sees its parent gone and ends within a couple of
// seconds.
func TestProgressTickerEndsWithTheScript(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		signal func(pid int) error
		within time.Duration
	}{
		{"SIGINT to the process group", func(pid int) error { return syscall.Kill(-pid, syscall.SIGINT) }, 300 * time.Millisecond},
		{"SIGTERM to the script", func(pid int) error { return syscall.Kill(pid, syscall.SIGTERM) }, 300 * time.Millisecond},
		{"SIGKILL to the script", func(pid int) error { return syscall.Kill(pid, syscall.SIGKILL) }, 2500 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := startScript(t, nil, `progress_run fake "building" "forever" sleep 60`)
			select {
			case <-r.lines:
			case <-time.After(10 * time.Second):
				t.Fatal("no first line")
			}
			pid := r.cmd.Process.Pid
			// The ticker: the script's bash child that runs its "sleep 1".
			var ticker int
			for deadline := time.Now().Add(5 * time.Second); ticker == 0 && time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
				for _, c := range children(pid, "bash") {
					if len(children(c, "sleep")) > 0 {
						ticker = c
					}
				}
			}
			if ticker == 0 {
				t.Fatal("no ticker (a bash child of the script running sleep) found")
			}
			if err := tc.signal(pid); err != nil {
				t.Fatal(err)
			}
			go func() {
				for range r.lines {
				}
			}()
			_ = r.cmd.Wait() // returns when the script exits, not at stderr's EOF
			exited := time.Now()
			for alive(ticker) {
				if time.Since(exited) > tc.within {
					t.Fatalf("the ticker (pid %d) still runs %s after the script exited", ticker, tc.within)
				}
				time.Sleep(10 * time.Millisecond)
			}
		})
	}
}

// children are the pids of pid's children whose command is name.
func children(pid int, name string) []int {
	var out []int
	stats, _ := filepath.Glob("/proc/[0-9]*/stat")
	for _, path := range stats {
		comm, ppid, _, ok := procStat(path)
		if ok && ppid == pid && comm == name {
			n, _ := strconv.Atoi(filepath.Base(filepath.Dir(path)))
			out = append(out, n)
		}
	}
	return out
}

// alive: the process exists and is not a zombie (dead, not yet reaped).
func alive(pid int) bool {
	_, _, state, ok := procStat(fmt.Sprintf("/proc/%d/stat", pid))
	return ok && state != "Z" && state != "X"
}

// procStat reads a /proc/<pid>/stat: "pid (comm) state ppid ...".
func procStat(path string) (comm string, ppid int, state string, ok bool) {
	f, err := os.Open(path)
	if err != nil {
		return "", 0, "", false
	}
	defer f.Close()
	b, err := io.ReadAll(f)
	if err != nil {
		return "", 0, "", false
	}
	s := string(b)
	open, closing := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
	if open < 0 || closing < open {
		return "", 0, "", false
	}
	fields := strings.Fields(s[closing+1:])
	if len(fields) < 2 {
		return "", 0, "", false
	}
	ppid, err = strconv.Atoi(fields[1])
	return s[open+1 : closing], ppid, fields[0], err == nil
}
