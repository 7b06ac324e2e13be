package scrape_test

import (
	"context"
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
// health, which would mark every unread server up), the next good body
// counts again, and Run stops with its context.
func TestScraperRunFailsAWholeScrapeOverTheLimit(t *testing.T) {
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
	s := &scrape.Scraper{URL: srv.URL, Interval: 50 * time.Millisecond, Client: srv.Client(), MaxBytes: 1024}
	ctx, cancel := context.WithCancel(context.Background())
	out := make(chan scrape.Outcome)
	done := make(chan struct{})
	go func() { s.Run(ctx, out); close(done) }()

	next := func() scrape.Outcome {
		select {
		case o := <-out:
			return o
		case <-time.After(5 * time.Second):
			t.Fatal("no scrape within 5s")
			return scrape.Outcome{}
		}
	}
	if o := next(); o.Err != nil || !o.Result.Down("s@etcd", "http://10.0.0.1:80/") {
		t.Fatalf("first scrape: %+v", o)
	}
	setBody(strings.Repeat("# padding that makes the body too large\n", 100))
	o := next()
	for o.Err == nil { // one scrape may have started before the change
		o = next()
	}
	if !strings.Contains(o.Err.Error(), "1024") || o.Result.Down("s@etcd", "http://10.0.0.1:80/") {
		t.Errorf("an oversized body: %v, result %+v; want a failed scrape naming the limit and no result", o.Err, o.Result)
	}
	setBody("traefik_service_server_up{service=\"s@etcd\",url=\"http://10.0.0.1:80/\"} 1\n")
	for o = next(); o.Err != nil; o = next() {
	}
	if o.Result.Down("s@etcd", "http://10.0.0.1:80/") {
		t.Errorf("after a good body again: still down")
	}
	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Error("Run did not stop with its context")
	}
}
