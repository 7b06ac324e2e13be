package daemon_test

import (
	"bytes"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/traefik-sd/traefik-sd/internal/testbed"
)

// logGate holds whoever writes a log line holding word until opened: a
// line the loop logs holds the loop there.
type logGate struct {
	word    string
	held    chan struct{}
	release chan struct{}
	once    sync.Once
	closing sync.Once
}

func newLogGate(word string) *logGate {
	return &logGate{word: word, held: make(chan struct{}), release: make(chan struct{})}
}

func (g *logGate) Write(p []byte) (int, error) {
	if bytes.Contains(p, []byte(g.word)) {
		g.once.Do(func() { close(g.held) })
		<-g.release
	}
	return len(p), nil
}

func (g *logGate) open() { g.closing.Do(func() { close(g.release) }) }

// TestStatusPageAnswersWhileTheLoopIsHeld holds the loop in the middle of
// an etcd change (on the line it logs for a broken object) and asks for the
// status page: it answers within two seconds, with the state before the
// change, while a circuit created meanwhile is not published (the loop is
// held indeed). Opened, the loop publishes both and the page shows them.
func TestStatusPageAnswersWhileTheLoopIsHeld(t *testing.T) {
	gate := newLogGate("cannot be decoded")
	e := startEnvLogging(t, "worker-held", nil, gate)
	// Runs before the daemon's stop, which waits for the loop.
	t.Cleanup(gate.open)
	ctx := testbed.Context(t, 2*time.Minute)
	testbed.Must(t, e.coord.Put(ctx, interactive()), "create")
	testbed.Eventually(t, 30*time.Second, "the page shows the circuit", func() (bool, string) {
		_, page := get(t, http.DefaultClient, e.base+"/", "")
		return strings.Contains(page, interactive().ID), page
	})

	_, err := e.client.Put(ctx, "traefik/worker_worker-held/http/services/bai_service_held/loadBalancer/servers/0/url", "http://10.0.0.1:70000/")
	testbed.Must(t, err, "put a broken object")
	select {
	case <-gate.held:
	case <-time.After(30 * time.Second):
		t.Fatal("the loop never logged the broken object")
	}
	testbed.Must(t, e.coord.Put(ctx, inference()), "create while the loop is held")

	client := &http.Client{Timeout: 2 * time.Second}
	resp, err := client.Get(e.base + "/")
	if err != nil {
		t.Fatalf("the status page, with the loop held: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	page := string(body)
	if resp.StatusCode != http.StatusOK || !strings.Contains(page, interactive().ID) {
		t.Fatalf("the status page, with the loop held: %s\n%s", resp.Status, page)
	}
	if strings.Contains(page, "bai_service_held") {
		t.Errorf("the page shows a change the loop has not finished:\n%s", page)
	}
	if _, routes := e.routesNow(); strings.Contains(routes, inference().ID) {
		t.Fatalf("the loop was not held: a circuit created meanwhile is published:\n%s", routes)
	}

	gate.open()
	testbed.Eventually(t, 30*time.Second, "opened, the page shows the broken object and the new circuit", func() (bool, string) {
		_, page := get(t, http.DefaultClient, e.base+"/", "")
		return strings.Contains(page, "bai_service_held") && strings.Contains(page, inference().ID), page
	})
}
