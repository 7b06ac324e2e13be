package traefikapi

import (
	"crypto/tls"
	"errors"
	"net/http"
	"sync/atomic"
	"time"
)

// Credentials authenticate the sidecar to Traefik: a basic-auth user and
// password, or a bearer token, or neither.
type Credentials struct {
	Username, Password string
	Token              string
}

// Auth is an http.RoundTripper that adds the current Credentials to every
// request it carries: to Traefik's API and to its /metrics alike, since
// both clients share it. SetCredentials swaps them for the next request
// (a secret file re-read on SIGHUP).
type Auth struct {
	// Base carries the requests; nil is http.DefaultTransport.
	Base  http.RoundTripper
	creds atomic.Pointer[Credentials]
}

// SetCredentials replaces the credentials sent from the next request on.
func (a *Auth) SetCredentials(c Credentials) { a.creds.Store(&c) }

// RoundTrip sends req with the credentials, on a copy: a RoundTripper must
// not change the request it is given.
func (a *Auth) RoundTrip(req *http.Request) (*http.Response, error) {
	base := a.Base
	if base == nil {
		base = http.DefaultTransport
	}
	c := a.creds.Load()
	if c == nil || (c.Token == "" && c.Username == "") {
		return base.RoundTrip(req)
	}
	req = req.Clone(req.Context())
	if c.Token != "" {
		req.Header.Set("Authorization", "Bearer "+c.Token)
	} else {
		req.SetBasicAuth(c.Username, c.Password)
	}
	return base.RoundTrip(req)
}

// NewAuth is an Auth over a transport of its own with TLS tc (nil: Go's
// defaults), sending no credentials until SetCredentials.
func NewAuth(tc *tls.Config) *Auth {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	if tc != nil {
		tr.TLSClientConfig = tc
	}
	return &Auth{Base: tr}
}

// Client is an HTTP client through a, with the given timeout (0: none; the
// caller's context bounds each request). It follows a redirect only to the
// same host and never from https to http, so that the credentials go
// nowhere else.
func (a *Auth) Client(timeout time.Duration) *http.Client {
	return &http.Client{Transport: a, Timeout: timeout, CheckRedirect: sameOrigin}
}

// errRedirect refuses a redirect that would carry the credentials elsewhere.
var errRedirect = errors.New("redirect to another host or from https to http refused: the credentials go to Traefik only")

func sameOrigin(req *http.Request, via []*http.Request) error {
	if len(via) >= 10 {
		return errors.New("stopped after 10 redirects")
	}
	first := via[0].URL
	if req.URL.Host != first.Host || (first.Scheme == "https" && req.URL.Scheme != "https") {
		return errRedirect
	}
	return nil
}
