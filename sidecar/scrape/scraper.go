package scrape

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/traefik-sd/traefik-sd/sidecar/redact"

	"github.com/traefik-sd/traefik-sd/sidecar/retry"
	"github.com/traefik-sd/traefik-sd/sidecar/source"
)

// Scraper fetches Traefik's /metrics on an interval.
type Scraper struct {
	URL      string
	Interval time.Duration
	Client   *http.Client
	// MaxBytes bounds a body; a larger one is a failed scrape.
	MaxBytes int64

	parser *Parser
}

// Result and Outcome are the messages of the /metrics source (package source).
type (
	Result  = source.Health
	Outcome = source.Scrape
)

// Run scrapes until ctx is done, sending every outcome on out. A send never
// outlives ctx.
func (s *Scraper) Run(ctx context.Context, out chan<- Outcome) {
	if s.parser == nil {
		s.parser = NewParser()
	}
	backoff := retry.Capped(s.Interval)
	next := time.NewTimer(0)
	defer next.Stop()
	for {
		select {
		case <-next.C:
		case <-ctx.Done():
			return
		}
		start := time.Now()
		o := s.Once(ctx)
		wait := s.Interval - time.Since(start)
		if o.Err != nil {
			wait = backoff.Failed()
		} else {
			backoff.Succeeded()
		}
		select {
		case out <- o:
		case <-ctx.Done():
			return
		}
		next.Reset(max(wait, 0))
	}
}

// Once scrapes one time.
func (s *Scraper) Once(ctx context.Context) Outcome {
	if s.parser == nil {
		s.parser = NewParser()
	}
	start := time.Now()
	ctx, cancel := context.WithTimeout(ctx, s.Interval)
	defer cancel()
	res, err := s.fetch(ctx)
	if err != nil {
		return Outcome{Err: err, Duration: time.Since(start), At: start}
	}
	return Outcome{Result: res, Duration: time.Since(start), At: start}
}

func (s *Scraper) fetch(ctx context.Context) (Result, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.URL, nil)
	if err != nil {
		return Result{}, err
	}
	req.Header.Set("Accept", "text/plain;version=0.0.4")
	resp, err := s.Client.Do(req)
	if err != nil {
		return Result{}, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		// A 401 or 403 is Traefik refusing the credentials (--traefik.auth.*).
		return Result{}, fmt.Errorf("%s: %s", redact.URL(s.URL), resp.Status)
	}
	limit := s.MaxBytes
	if limit <= 0 {
		limit = 256 << 20
	}
	res, err := s.parser.ParseReader(resp.Body, limit)
	if err != nil {
		// A half-read body would mark every unread server as healthy.
		return Result{}, fmt.Errorf("%s: %w", redact.URL(s.URL), err)
	}
	return res, nil
}
