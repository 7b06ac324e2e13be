package traefikapi_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/traefik-sd/traefik-sd/internal/testbed"
	"github.com/traefik-sd/traefik-sd/sidecar/config"
	"github.com/traefik-sd/traefik-sd/sidecar/scrape"
	"github.com/traefik-sd/traefik-sd/sidecar/traefikapi"
)

// guardedTraefik answers Traefik's router listing and /metrics only to a
// request whose check passes, 401 otherwise, as Traefik's basicAuth (or a
// forwardAuth) middleware in front of api@internal and prometheus@internal.
func guardedTraefik(check func(*http.Request) bool) http.Handler {
	return http.HandlerFunc(func(rw http.ResponseWriter, req *http.Request) {
		if !check(req) {
			rw.Header().Set("WWW-Authenticate", `Basic realm="traefik"`)
			http.Error(rw, "401 Unauthorized", http.StatusUnauthorized)
			return
		}
		switch {
		case strings.HasPrefix(req.URL.Path, "/api/http/routers"):
			_, _ = rw.Write([]byte(`[{"name":"r@etcd","provider":"etcd","status":"enabled","service":"s"}]`))
		case req.URL.Path == "/metrics":
			_, _ = rw.Write([]byte("traefik_service_server_up{service=\"s@etcd\",url=\"http://10.0.0.1:80/\"} 0\n"))
		default:
			http.NotFound(rw, req)
		}
	})
}

// askBoth reads the router listing and /metrics through auth, as the
// daemon's two clients do; it returns each one's error.
func askBoth(t *testing.T, base string, auth *traefikapi.Auth) (apiErr, scrapeErr error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c := &traefikapi.Client{Base: base, HTTP: auth.Client(5 * time.Second)}
	rs, apiErr := c.Routers(ctx)
	if apiErr == nil && (len(rs) != 1 || rs[0].Name != "r@etcd") {
		t.Errorf("routers: %+v", rs)
	}
	s := &scrape.Scraper{URL: base + "/metrics", Interval: 5 * time.Second, Client: auth.Client(0)}
	o := s.Once(ctx)
	if o.Err == nil && o.Result.DownCount() != 1 {
		t.Errorf("scrape: %d servers down, want 1", o.Result.DownCount())
	}
	return apiErr, o.Err
}

// TestCredentialsGoWithEveryRequestToTraefik: basic auth, a bearer token
// and a client certificate each reach Traefik on the API's requests and on
// /metrics alike; without them Traefik's 401 (or its handshake failure) is
// the error of both; credentials swapped while in use apply from the next
// request.
func TestCredentialsGoWithEveryRequestToTraefik(t *testing.T) {
	t.Run("basic", func(t *testing.T) {
		want := atomic.Pointer[string]{}
		pw := "pw-1"
		want.Store(&pw)
		srv := httptest.NewServer(guardedTraefik(func(req *http.Request) bool {
			u, p, ok := req.BasicAuth()
			return ok && u == "sd" && p == *want.Load()
		}))
		defer srv.Close()
		auth := traefikapi.NewAuth(nil)
		apiErr, scrapeErr := askBoth(t, srv.URL, auth)
		for _, err := range []error{apiErr, scrapeErr} {
			if err == nil || !strings.Contains(err.Error(), "401") {
				t.Errorf("without credentials: %v, want a 401", err)
			}
		}
		auth.SetCredentials(traefikapi.Credentials{Username: "sd", Password: "pw-1"})
		if apiErr, scrapeErr := askBoth(t, srv.URL, auth); apiErr != nil || scrapeErr != nil {
			t.Fatalf("with the credentials: API %v, /metrics %v", apiErr, scrapeErr)
		}
		// Rotated: Traefik takes the new password, and so does the next request.
		pw2 := "pw-2"
		want.Store(&pw2)
		auth.SetCredentials(traefikapi.Credentials{Username: "sd", Password: "pw-2"})
		if apiErr, scrapeErr := askBoth(t, srv.URL, auth); apiErr != nil || scrapeErr != nil {
			t.Fatalf("after the swap: API %v, /metrics %v", apiErr, scrapeErr)
		}
	})
	t.Run("bearer", func(t *testing.T) {
		srv := httptest.NewServer(guardedTraefik(func(req *http.Request) bool {
			return req.Header.Get("Authorization") == "Bearer tok-1"
		}))
		defer srv.Close()
		auth := traefikapi.NewAuth(nil)
		auth.SetCredentials(traefikapi.Credentials{Token: "tok-1"})
		if apiErr, scrapeErr := askBoth(t, srv.URL, auth); apiErr != nil || scrapeErr != nil {
			t.Fatalf("with the token: API %v, /metrics %v", apiErr, scrapeErr)
		}
		auth.SetCredentials(traefikapi.Credentials{Token: "tok-2"})
		apiErr, scrapeErr := askBoth(t, srv.URL, auth)
		for _, err := range []error{apiErr, scrapeErr} {
			if err == nil || !strings.Contains(err.Error(), "401") {
				t.Errorf("with a token Traefik does not take: %v, want a 401", err)
			}
		}
	})
	t.Run("client certificate", func(t *testing.T) {
		certs := testbed.GenerateCerts(t, t.TempDir())
		srv := httptest.NewUnstartedServer(guardedTraefik(func(req *http.Request) bool { return true }))
		srv.TLS = certs.MutualTLS(t)
		srv.StartTLS()
		defer srv.Close()

		// The options' own loader, as --traefik.tls.* give it.
		withCert, err := (&config.TLS{CA: certs.CA, Cert: certs.ClientCert, Key: certs.ClientKey}).ClientConfig("--traefik")
		testbed.Must(t, err, "client TLS")
		if apiErr, scrapeErr := askBoth(t, srv.URL, traefikapi.NewAuth(withCert)); apiErr != nil || scrapeErr != nil {
			t.Fatalf("with the client certificate: API %v, /metrics %v", apiErr, scrapeErr)
		}
		caOnly, err := (&config.TLS{CA: certs.CA}).ClientConfig("--traefik")
		testbed.Must(t, err, "CA only")
		apiErr, scrapeErr := askBoth(t, srv.URL, traefikapi.NewAuth(caOnly))
		if apiErr == nil || scrapeErr == nil {
			t.Errorf("without a client certificate: API %v, /metrics %v; want both refused", apiErr, scrapeErr)
		}
		apiErr, scrapeErr = askBoth(t, srv.URL, traefikapi.NewAuth(nil))
		for _, err := range []error{apiErr, scrapeErr} {
			if err == nil || !strings.Contains(err.Error(), "certificate") {
				t.Errorf("without the CA: %v, want Traefik's certificate refused", err)
			}
		}
	})
}

// TestCredentialsGoNowhereElse: a redirect to another host is refused
// before any request reaches it, so the credentials stay with Traefik; a
// redirect on the same host is followed with them.
func TestCredentialsGoNowhereElse(t *testing.T) {
	var leaked atomic.Int32
	other := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, req *http.Request) {
		if req.Header.Get("Authorization") != "" {
			leaked.Add(1)
		}
		_, _ = rw.Write([]byte("[]"))
	}))
	defer other.Close()
	srv := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, req *http.Request) {
		if u, p, ok := req.BasicAuth(); !ok || u != "sd" || p != "pw" {
			http.Error(rw, "401 Unauthorized", http.StatusUnauthorized)
			return
		}
		switch req.URL.Path {
		case "/elsewhere/metrics":
			http.Redirect(rw, req, other.URL+"/metrics", http.StatusFound)
		case "/moved/metrics":
			http.Redirect(rw, req, "/metrics", http.StatusMovedPermanently)
		case "/metrics":
			_, _ = rw.Write([]byte("traefik_config_reloads_total 1\n"))
		}
	}))
	defer srv.Close()
	auth := traefikapi.NewAuth(nil)
	auth.SetCredentials(traefikapi.Credentials{Username: "sd", Password: "pw"})
	ctx := context.Background()
	o := (&scrape.Scraper{URL: srv.URL + "/elsewhere/metrics", Interval: 5 * time.Second, Client: auth.Client(0)}).Once(ctx)
	if o.Err == nil || !strings.Contains(o.Err.Error(), "redirect to another host") {
		t.Errorf("a redirect to another host: %v, want it refused", o.Err)
	}
	if n := leaked.Load(); n != 0 {
		t.Errorf("the other host got the credentials %d times", n)
	}
	if o := (&scrape.Scraper{URL: srv.URL + "/moved/metrics", Interval: 5 * time.Second, Client: auth.Client(0)}).Once(ctx); o.Err != nil {
		t.Errorf("a redirect on the same host: %v", o.Err)
	}
}
