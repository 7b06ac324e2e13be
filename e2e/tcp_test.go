//go:build e2e

package e2e_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/traefik-sd/traefik-sd/e2e/stack"
	"github.com/traefik-sd/traefik-sd/internal/coordinator"
	"github.com/traefik-sd/traefik-sd/internal/testbed"
)

// TestTCPWorkerKeepsApplyingEtcdChanges: a worker with a TCP circuit and
// the coordinator patch's setting on. Traefik's TCP middlewares have no
// plugin, so the patch writes nothing for TCP circuits; the real Traefik
// serves the TCP circuit and keeps applying every later etcd change. The
// key the old instructions wrote for every circuit, a plugin under
// tcp/middlewares/, stops that: Traefik refuses the worker's whole
// configuration until it is gone. So this test would see the patch write
// one.
func TestTCPWorkerKeepsApplyingEtcdChanges(t *testing.T) {
	tcpPort := testbed.FreePort(t)
	s := stack.Start(t, stack.Options{Dir: t.TempDir(), Quiet: true, NoPrometheus: true, TCPPort: tcpPort})
	ctx := testbed.Context(t, 3*time.Minute)
	ssh := stack.StartContainer(t, "tcp-app", "5a4b3c2d-1e0f-4a9b-8c7d-6e5f4a3b2c1d", "")
	jupyter := stack.StartContainer(t, "jupyter", "0b7c1c1e-2f0a-4d8e-9a41-6a1f3e5d7c90", "")
	tcp := coordinator.Circuit{ID: "7c6b5a49-3827-4165-8f4e-3d2c1b0a9f8e", App: "ttyd", Mode: "interactive",
		Protocol: coordinator.TCP, FrontendMode: coordinator.PortMode, Port: tcpPort,
		Routes: []coordinator.Route{ssh.Route()}}
	httpCircuit := func(id, host string) coordinator.Circuit {
		return coordinator.Circuit{ID: id, App: "jupyter", Mode: "interactive", Hostname: host,
			Routes: []coordinator.Route{jupyter.Route()}}
	}
	first := httpCircuit("11111111-0000-4000-8000-00000000000a", "first.example")
	testbed.Must(t, s.Coord.Put(ctx, tcp, first), "a TCP and an HTTP circuit")
	for k := range s.Coord.Keys(tcp) {
		if strings.Contains(k, "/middlewares/") {
			t.Fatalf("the patched coordinator wrote a TCP middleware key: %s", k)
		}
	}

	// Traefik serves the TCP circuit: bytes through its entry point reach
	// the container.
	testbed.Eventually(t, 30*time.Second, "a request through the TCP circuit", func() (bool, string) {
		status, err := throughTCP(ctx, tcpPort)
		return err == nil && status == http.StatusOK, fmt.Sprint(status, err)
	})
	waitServed := func(c coordinator.Circuit, within time.Duration) error {
		name := "bai_router_" + c.ID + "@etcd"
		deadline := time.Now().Add(within)
		for {
			r, err := routerInTraefik(ctx, s, name)
			if err == nil && r.Status == "enabled" {
				return nil
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("%s not served within %v: %+v %v", name, within, r, err)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	testbed.Must(t, waitServed(first, 30*time.Second), "the first HTTP circuit")

	// A later change is applied.
	second := httpCircuit("11111111-0000-4000-8000-00000000000b", "second.example")
	testbed.Must(t, s.Coord.Put(ctx, second), "a second HTTP circuit")
	testbed.Must(t, waitServed(second, 30*time.Second), "a later change applied")

	// The control: the key a plugin middleware on a TCP circuit would
	// write. Traefik's etcd provider refuses the whole configuration and
	// applies no later change until it is gone.
	bad := s.Coord.RootKey() + "/tcp/middlewares/bai_sd_" + tcp.ID + "/plugin/traefik-sd/circuitid"
	_, err := s.Client.Put(ctx, bad, tcp.ID)
	testbed.Must(t, err, "a plugin key under tcp/middlewares")
	third := httpCircuit("11111111-0000-4000-8000-00000000000c", "third.example")
	testbed.Must(t, s.Coord.Put(ctx, third), "a third HTTP circuit")
	if err := waitServed(third, 10*time.Second); err == nil {
		t.Fatal("Traefik applied a change while a TCP middleware held a plugin: the control proves nothing")
	}
	_, err = s.Client.Delete(ctx, bad)
	testbed.Must(t, err, "removing it")
	testbed.Must(t, waitServed(third, 30*time.Second), "changes applied again once it is gone")
	if status, err := throughTCP(ctx, tcpPort); err != nil || status != http.StatusOK {
		t.Errorf("the TCP circuit after all that: %d %v", status, err)
	}
}

// throughTCP sends one HTTP request over Traefik's TCP entry point (the
// container behind the TCP circuit speaks HTTP) and returns its status.
func throughTCP(ctx context.Context, port int) (int, error) {
	d := net.Dialer{Timeout: 2 * time.Second}
	conn, err := d.DialContext(ctx, "tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(3 * time.Second))
	if _, err := io.WriteString(conn, "GET / HTTP/1.0\r\nHost: tcp.example\r\n\r\n"); err != nil {
		return 0, err
	}
	var proto string
	var status int
	if _, err := fmt.Fscan(conn, &proto, &status); err != nil {
		return 0, err
	}
	return status, nil
}
