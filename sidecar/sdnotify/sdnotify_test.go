package sdnotify

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// listen is a unix datagram socket as systemd's notify socket is, at addr.
func listen(t *testing.T, addr string) *net.UnixConn {
	t.Helper()
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: addr, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

func receive(t *testing.T, conn *net.UnixConn) string {
	t.Helper()
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 4096)
	n, err := conn.Read(buf)
	if err != nil {
		t.Fatal(err)
	}
	return string(buf[:n])
}

// TestNotifySendsOneDatagram: to a socket path and to an abstract socket
// ("@name"), the state arrives as one datagram, as sent.
func TestNotifySendsOneDatagram(t *testing.T) {
	for what, addr := range map[string]string{
		"a path":   filepath.Join(t.TempDir(), "notify"),
		"abstract": fmt.Sprintf("@traefik-sd-test-%d-%d", os.Getpid(), time.Now().UnixNano()),
	} {
		t.Run(what, func(t *testing.T) {
			conn := listen(t, addr)
			t.Setenv("NOTIFY_SOCKET", addr)
			sent, err := Notify("READY=1\nSTATUS=serving")
			if !sent || err != nil {
				t.Fatalf("Notify: sent %v, %v", sent, err)
			}
			if got := receive(t, conn); got != "READY=1\nSTATUS=serving" {
				t.Errorf("received %q", got)
			}
		})
	}
}

// TestNotifyOutsideSystemd: no $NOTIFY_SOCKET, nothing sent and no error;
// one that names nothing or no unix socket is an error, not a panic.
func TestNotifyOutsideSystemd(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", "")
	if sent, err := Notify("READY=1"); sent || err != nil {
		t.Errorf("without NOTIFY_SOCKET: sent %v, %v", sent, err)
	}
	for _, bad := range []string{filepath.Join(t.TempDir(), "nothing"), "vsock:2:1234", "relative"} {
		t.Setenv("NOTIFY_SOCKET", bad)
		if sent, err := Notify("READY=1"); sent || err == nil {
			t.Errorf("NOTIFY_SOCKET=%s: sent %v, %v; want an error", bad, sent, err)
		}
	}
}
