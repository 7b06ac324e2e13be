package retry_test

import (
	"testing"
	"time"

	"github.com/traefik-sd/traefik-sd/sidecar/retry"
)

func TestWaitsDoubleUpToTheCapAndStartOverOnSuccess(t *testing.T) {
	var b retry.Backoff
	want := []time.Duration{250 * time.Millisecond, 500 * time.Millisecond, time.Second, 2 * time.Second, 4 * time.Second, 5 * time.Second, 5 * time.Second}
	for i, w := range want {
		if got := b.Failed(); got != w {
			t.Fatalf("failure %d: wait %s, want %s", i+1, got, w)
		}
	}
	b.Succeeded()
	if got := b.Failed(); got != 250*time.Millisecond {
		t.Fatalf("after a success: wait %s, want 250ms", got)
	}
	// A source polling every second never waits longer than its interval.
	c := retry.Capped(time.Second)
	for i := 0; i < 5; i++ {
		c.Failed()
	}
	if got := c.Failed(); got != time.Second {
		t.Fatalf("capped at its 1s interval: wait %s", got)
	}
}
