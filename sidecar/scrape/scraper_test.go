package scrape_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/traefik-sd/traefik-sd/sidecar/scrape"
)

// TestScraperRunFailsAWholeScrapeOverTheLimit runs the scraper as the
// daemon does: a body over MaxBytes fails that scrape whole (no half-read
// health: the servers read before the limit do not count, and neither do
// the unread ones), the next good body counts again, and Run stops with its
// context. Every wait is bounded, so a scraper that never fails, or never
// recovers, fails the test rather than hanging it.
func TestScraperRunFailsAWholeScrapeOverTheLimit(t *testing.T) {
	const limit = 1024
	var mu sync.Mutex
	body := "traefik_service_server_up{service=\"s@etcd\",url=\"http://10.0.0.1:80/\"} 0\n"
	srv := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, _ *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		_, _ = rw.Write([]byte(body))
	}))
	defer srv.Close()
	setBody := func(b string) {
		mu.Lock()
		body = b
		mu.Unlock()
	}
	s := &scrape.Scraper{URL: srv.URL, Interval: 50 * time.Millisecond, Client: srv.Client(), MaxBytes: limit}
	ctx, cancel := context.WithCancel(context.Background())
	out := make(chan scrape.Outcome)
	done := make(chan struct{})
	go func() { s.Run(ctx, out); close(done) }()
	defer cancel()

	next := func() scrape.Outcome {
		t.Helper()
		select {
		case o := <-out:
			return o
		case <-time.After(5 * time.Second):
			t.Fatal("no scrape within 5s")
			return scrape.Outcome{}
		}
	}
	// until returns the first outcome that ok accepts, within 5 s.
	until := func(what string, ok func(scrape.Outcome) bool) scrape.Outcome {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for {
			o := next()
			if ok(o) {
				return o
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: not within 5s; last outcome %+v", what, o)
			}
		}
	}
	if o := next(); o.Err != nil || !o.Result.Down("s@etcd", "http://10.0.0.1:80/") {
		t.Fatalf("first scrape: %+v", o)
	}

	// Samples first, every one a server down, then more than the limit:
	// the parser has read servers when it reaches the limit.
	var big strings.Builder
	for i := 0; big.Len() <= 2*limit; i++ {
		fmt.Fprintf(&big, "traefik_service_server_up{service=\"s@etcd\",url=\"http://10.0.1.%d:80/\"} 0\n", i)
	}
	setBody(big.String())
	// One scrape may have started before the change.
	o := until("a failed scrape of the oversized body", func(o scrape.Outcome) bool { return o.Err != nil })
	if !strings.Contains(o.Err.Error(), fmt.Sprint(limit)) {
		t.Errorf("an oversized body failed with %v; want the limit named", o.Err)
	}
	if o.Result.DownCount() != 0 || o.Result.Known != 0 || o.Result.Samples != 0 || o.Result.Down("s@etcd", "http://10.0.1.0:80/") {
		t.Errorf("an oversized body gave a result: %d down (%v), %d known, %d samples; want none", o.Result.DownCount(), o.Result.DownServers(), o.Result.Known, o.Result.Samples)
	}

	setBody("traefik_service_server_up{service=\"s@etcd\",url=\"http://10.0.0.1:80/\"} 1\n")
	o = until("a good scrape after the oversized one", func(o scrape.Outcome) bool { return o.Err == nil })
	if o.Result.Down("s@etcd", "http://10.0.0.1:80/") || o.Result.Known != 1 {
		t.Errorf("after a good body again: %+v, want the one server up", o.Result)
	}
	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not stop with its context")
	}
}
