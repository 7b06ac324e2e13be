package traefikapi

import (
	"bytes"
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/traefik-sd/traefik-sd/sidecar/redact"
	"github.com/traefik/paerser/types"

	"github.com/traefik-sd/traefik-sd/sidecar/retry"
)

// serviceJSON is the part of Traefik's service representation read here.
type serviceJSON struct {
	Name         string            `json:"name"`
	Provider     string            `json:"provider"`
	ServerStatus map[string]string `json:"serverStatus"`
	LoadBalancer *struct {
		Servers []struct {
			URL     string `json:"url"`
			Address string `json:"address"`
		} `json:"servers"`
		HealthCheck *struct {
			Interval *types.Duration `json:"interval"`
		} `json:"healthCheck"`
	} `json:"loadBalancer"`
	Weighted *struct {
		Services []struct {
			Name string `json:"name"`
		} `json:"services"`
	} `json:"weighted"`
	Failover *struct {
		Service  string `json:"service"`
		Fallback string `json:"fallback"`
	} `json:"failover"`
	Mirroring *struct {
		Service string `json:"service"`
	} `json:"mirroring"`
}

// defaultHealthInterval is Traefik's, for a health check that names none.
const defaultHealthInterval = 30 * time.Second

func (j serviceJSON) service() (Service, error) {
	provider := j.Provider
	if _, p, ok := strings.Cut(j.Name, "@"); ok && provider == "" {
		provider = p
	}
	if j.Name == "" || !strings.Contains(j.Name, "@") {
		return Service{}, fmt.Errorf("service name %q: want name@provider", redact.Text(redact.Cut(j.Name, 128)))
	}
	s := Service{Name: j.Name}
	for url, st := range j.ServerStatus {
		if st != ServerUp && st != ServerDown {
			return Service{}, fmt.Errorf("service %s: serverStatus %q: want UP or DOWN", redact.Cut(j.Name, 256), redact.Cut(st, 64))
		}
		if s.Status == nil {
			s.Status = make(map[string]string, len(j.ServerStatus))
		}
		s.Status[url] = st
	}
	child := func(ref string) {
		if ref != "" {
			s.Children = append(s.Children, Qualify(ref, provider))
		}
	}
	switch {
	case j.LoadBalancer != nil:
		for _, srv := range j.LoadBalancer.Servers {
			if srv.URL != "" {
				s.Servers = append(s.Servers, srv.URL)
			} else if srv.Address != "" {
				s.Servers = append(s.Servers, srv.Address)
			}
		}
		if hc := j.LoadBalancer.HealthCheck; hc != nil {
			s.HealthInterval = defaultHealthInterval
			if hc.Interval != nil && *hc.Interval > 0 {
				s.HealthInterval = time.Duration(*hc.Interval)
			}
		}
	case j.Weighted != nil:
		for _, w := range j.Weighted.Services {
			child(w.Name)
		}
	case j.Failover != nil:
		child(j.Failover.Service)
		child(j.Failover.Fallback)
	case j.Mirroring != nil:
		child(j.Mirroring.Service)
	}
	return s, nil
}

// DecodeServices reads one page of a service listing as Traefik's API writes it.
func DecodeServices(page []byte) ([]Service, error) {
	return decodePages([][]byte{page}, "services", serviceJSON.service)
}

// Poller is the source of Traefik's services: without etcd they say which
// servers each router sends to, and without /metrics which are down. It
// lists every Interval, and at once when kicked (a router whose service it
// does not know yet).
type Poller struct {
	Client   *Client
	Interval time.Duration
	// HTTP lists /api/http/services; TCP, /api/tcp/routers and /api/tcp/services.
	HTTP, TCP bool
	kick      chan struct{}
}

// NewPoller returns a poller ready to be kicked.
func NewPoller(c *Client, interval time.Duration, http, tcp bool) *Poller {
	return &Poller{Client: c, Interval: interval, HTTP: http, TCP: tcp, kick: make(chan struct{}, 1)}
}

// Kick asks for a listing soon; it never blocks.
func (p *Poller) Kick() {
	select {
	case p.kick <- struct{}{}:
	default:
	}
}

// Run lists until ctx is done. A failed listing is sent as such and tried
// again on the next interval: the last good listing stands meanwhile.
func (p *Poller) Run(ctx context.Context, out chan<- Listing) {
	var last []byte
	backoff := retry.Capped(p.Interval)
	wait := time.NewTimer(p.Interval)
	defer wait.Stop()
	for {
		start := time.Now()
		l, digest := p.list(ctx, last)
		next := p.Interval - time.Since(start)
		if l.Err == nil {
			last = digest
			backoff.Succeeded()
		} else {
			next = backoff.Failed()
		}
		l.At = time.Now()
		select {
		case out <- l:
		case <-ctx.Done():
			return
		}
		if !wait.Stop() {
			select {
			case <-wait.C:
			default:
			}
		}
		wait.Reset(max(next, 0))
		select {
		case <-ctx.Done():
			return
		case <-wait.C:
		case <-p.kick:
		}
	}
}

// list reads every listing; unless their pages together hash to unchanged,
// it decodes them.
func (p *Poller) list(ctx context.Context, unchanged []byte) (Listing, []byte) {
	timeout := 10 * time.Second
	if p.Client.HTTP != nil && p.Client.HTTP.Timeout > 0 {
		timeout = p.Client.HTTP.Timeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	paths := []string{"/api/http/services", "/api/tcp/routers", "/api/tcp/services"}
	all := make([][][]byte, len(paths))
	var digest []byte
	for i, path := range paths {
		if (i == 0 && !p.HTTP) || (i > 0 && !p.TCP) {
			continue
		}
		pages, d, err := p.Client.list(ctx, path)
		if err != nil {
			return Listing{Err: err}, nil
		}
		all[i] = pages
		digest = append(digest, d...)
	}
	if unchanged != nil && bytes.Equal(digest, unchanged) {
		return Listing{Same: true}, digest
	}
	var l Listing
	var err error
	if l.Services, err = decodePages(all[0], paths[0], serviceJSON.service); err != nil {
		return Listing{Err: err}, nil
	}
	if p.TCP {
		if l.TCPRouters, err = decodePages(all[1], paths[1], routerJSON.router); err != nil {
			return Listing{Err: err}, nil
		}
		if l.TCPServices, err = decodePages(all[2], paths[2], serviceJSON.service); err != nil {
			return Listing{Err: err}, nil
		}
	}
	for _, ss := range [][]Service{l.Services, l.TCPServices} {
		sort.Slice(ss, func(i, j int) bool { return ss[i].Name < ss[j].Name })
	}
	sort.Slice(l.TCPRouters, func(i, j int) bool { return l.TCPRouters[i].Name < l.TCPRouters[j].Name })
	return l, digest
}
