// Package sdnotify tells systemd what the sidecar is doing, as sd_notify(3)
// does: one datagram to the unix socket named by $NOTIFY_SOCKET, which
// systemd sets for a Type=notify unit. Under anything else the variable is
// unset and nothing is sent.
package sdnotify

import (
	"fmt"
	"net"
	"os"
)

// Notify sends state, newline-separated assignments such as "READY=1" or
// "STATUS=…" (see sd_notify(3)), to $NOTIFY_SOCKET. It reports whether it
// sent them: false, with no error, when the variable is unset.
func Notify(state string) (bool, error) {
	name := os.Getenv("NOTIFY_SOCKET")
	if name == "" {
		return false, nil
	}
	// A path, or an abstract socket written "@name" (Go's net maps the @
	// to the leading NUL). systemd's vsock: addresses are not for a host unit.
	if name[0] != '/' && name[0] != '@' {
		return false, fmt.Errorf("NOTIFY_SOCKET=%q: not a unix socket path or abstract name", name)
	}
	conn, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: name, Net: "unixgram"})
	if err != nil {
		return false, fmt.Errorf("NOTIFY_SOCKET: %w", err)
	}
	defer conn.Close()
	if _, err := conn.Write([]byte(state)); err != nil {
		return false, fmt.Errorf("NOTIFY_SOCKET: %w", err)
	}
	return true, nil
}
