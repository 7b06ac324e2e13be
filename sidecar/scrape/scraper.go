package scrape

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"time"
)

// Scraper fetches Traefik's /metrics on an interval.
type Scraper struct {
	URL      string
	Interval time.Duration
	Client   *http.Client
	// MaxBytes bounds a body; a larger one is a failed scrape.
	MaxBytes int64

	parser *Parser
	buf    []byte
}

// Outcome is one scrape: its Result, or why it failed.
type Outcome struct {
	Result   Result
	Err      error
	Duration time.Duration
	At       time.Time
}

// Run scrapes until ctx is done, sending every outcome on out. A send never
// outlives ctx.
func (s *Scraper) Run(ctx context.Context, out chan<- Outcome) {
	if s.parser == nil {
		s.parser = NewParser()
	}
	ticker := time.NewTicker(s.Interval)
	defer ticker.Stop()
	for {
		o := s.Once(ctx)
		select {
		case out <- o:
		case <-ctx.Done():
			return
		}
		select {
		case <-ticker.C:
		case <-ctx.Done():
			return
		}
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
	body, err := s.fetch(ctx)
	if err != nil {
		return Outcome{Err: err, Duration: time.Since(start), At: start}
	}
	return Outcome{Result: s.parser.Parse(body), Duration: time.Since(start), At: start}
}

func (s *Scraper) fetch(ctx context.Context) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.URL, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "text/plain;version=0.0.4")
	resp, err := s.Client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s: %s", s.URL, resp.Status)
	}
	limit := s.MaxBytes
	if limit <= 0 {
		limit = 64 << 20
	}
	s.buf = s.buf[:0]
	for {
		if len(s.buf) == cap(s.buf) {
			s.buf = append(s.buf, 0)[:len(s.buf)]
		}
		n, err := resp.Body.Read(s.buf[len(s.buf):cap(s.buf)])
		s.buf = s.buf[:len(s.buf)+n]
		if int64(len(s.buf)) > limit {
			return nil, fmt.Errorf("%s: body larger than %d bytes", s.URL, limit)
		}
		if err == io.EOF {
			return s.buf, nil
		}
		if err != nil {
			return nil, err
		}
	}
}
