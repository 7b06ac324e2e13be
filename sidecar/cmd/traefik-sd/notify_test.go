package main

import (
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// notifySocket is a unix datagram socket as systemd's notify socket is.
func notifySocket(t *testing.T) (string, *net.UnixConn) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "notify")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return path, conn
}

// datagram is the next one on conn, or "" after wait.
func datagram(conn *net.UnixConn, wait time.Duration) string {
	_ = conn.SetReadDeadline(time.Now().Add(wait))
	buf := make([]byte, 4096)
	n, err := conn.Read(buf)
	if err != nil {
		return ""
	}
	return string(buf[:n])
}

// sidecarUnderSystemd starts the sidecar as a Type=notify unit runs it:
// NOTIFY_SOCKET set, plugin-only (no etcd), on address.
func sidecarUnderSystemd(t *testing.T, socket, address string) (*exec.Cmd, *strings.Builder) {
	t.Helper()
	token := filepath.Join(t.TempDir(), "push-token")
	if err := os.WriteFile(token, []byte("t\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), "NOTIFY_SOCKET="+socket, "TESTMAIN_RUN=1", "TESTMAIN_ARGS=--worker.authority=w --worker.node=n --etcd.endpoints= "+
		"--traefik.apiURL=http://127.0.0.1:1 --address="+address+" --plugin.tokenFile="+token)
	stderr := &strings.Builder{}
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("sidecar's log:\n%s", stderr.String())
		}
	})
	return cmd, stderr
}

// TestSystemdIsToldReadyOnceItListens: under a Type=notify unit
// (examples/traefik-sd.service) the sidecar sends READY=1, with its address
// as the unit's status, once its API listens: /healthz answers the moment
// the datagram arrives, without a retry. On SIGTERM it sends STOPPING=1 and
// exits 0.
func TestSystemdIsToldReadyOnceItListens(t *testing.T) {
	socket, conn := notifySocket(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	cmd, _ := sidecarUnderSystemd(t, socket, addr)
	got := datagram(conn, 20*time.Second)
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Get("http://" + addr + "/healthz")
	if err != nil {
		t.Fatalf("/healthz when %q arrived: %v", got, err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("/healthz when READY=1 arrived: %d", resp.StatusCode)
	}
	if want := "READY=1\nSTATUS=serving on " + addr; got != want {
		t.Errorf("systemd was told %q, want %q", got, want)
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if got := datagram(conn, 10*time.Second); got != "STOPPING=1" {
		t.Errorf("on SIGTERM systemd was told %q, want STOPPING=1", got)
	}
	if err := cmd.Wait(); err != nil {
		t.Errorf("after SIGTERM: %v", err)
	}
}

// TestSystemdIsNotToldReadyWhenItCannotListen: with its address taken, the
// sidecar exits 1 naming --address, and systemd is never told READY=1 (the
// unit fails and Restart=on-failure tries again).
func TestSystemdIsNotToldReadyWhenItCannotListen(t *testing.T) {
	socket, conn := notifySocket(t)
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	cmd, stderr := sidecarUnderSystemd(t, socket, taken.Addr().String())
	err = cmd.Wait()
	if code := cmd.ProcessState.ExitCode(); code != 1 || !strings.Contains(stderr.String(), "--address") {
		t.Errorf("exit %d (%v), stderr %q; want 1 naming --address", code, err, stderr.String())
	}
	if got := datagram(conn, 100*time.Millisecond); got != "" {
		t.Errorf("systemd was told %q by a sidecar that never listened", got)
	}
}
