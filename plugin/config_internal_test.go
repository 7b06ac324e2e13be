package plugin

import (
	"strings"
	"testing"
)

// FuzzOkAgreesWithCheck holds New's quick yes or no (ok, serverURLOK) to
// the checks that explain a refusal (checkFields, CheckServerURL): a
// configuration New lets through unchecked must be one checkFields
// accepts, and one it sends on to checkFields must be one that refuses it.
// The seeds cross every field's rule on each side.
func FuzzOkAgreesWithCheck(f *testing.F) {
	f.Add("c-1", "worker-1", "s-1", "http://10.0.0.1:8080/", "s-1", "r-1", "/metrics", 0, "team", "ml", "http://127.0.0.1:9180")
	f.Add("", "", "", "", "", "", "/metrics", 0, "", "", "http://127.0.0.1:9180")
	f.Add(" ", "worker-1", "", "", "", "", "/metrics", 0, "", "", "http://127.0.0.1:9180")
	f.Add(" ", "", "s-1", "", "", "", "/metrics", 0, "", "", "http://127.0.0.1:9180")
	f.Add("\xff", "", "", "", "", "", "/metrics", 0, "", "", "http://127.0.0.1:9180")
	f.Add("c", "\xe2\x82", "", "", "", "", "/metrics", 0, "", "", "http://127.0.0.1:9180")
	f.Add("c", "", "\xff", "", "", "", "/metrics", 0, "", "", "http://127.0.0.1:9180")
	f.Add("c", "", "", "h2c://h:1", "\xff", "", "/m", 65535, "", "", "https://sd")
	f.Add("c", "", "", "http://h:0/", "", "", "/m", 0, "", "", "http://sd")
	f.Add("c", "", "", "http://h:65536/", "", "", "/m", 0, "", "", "http://sd")
	f.Add("c", "", "", "http://h:x/", "", "", "/m", 0, "", "", "http://sd")
	f.Add("c", "", "", "ftp://h/", "", "", "/m", 0, "", "", "http://sd")
	f.Add("c", "", "", "http:///x", "", "", "/m", 0, "", "", "http://sd")
	f.Add("c", "", "", "http://[::1", "", "", "/m", 0, "", "", "http://sd")
	f.Add("c", "", "", "http://h/", "", "\xff", "/m", 0, "", "", "http://sd")
	f.Add("c", "", "", "", "", "", "metrics", 0, "", "", "http://sd")
	f.Add("c", "", "", "", "", "", "", 0, "", "", "http://sd")
	f.Add("c", "", "", "", "", "", "/m", -1, "", "", "http://sd")
	f.Add("c", "", "", "", "", "", "/m", 65536, "", "", "http://sd")
	f.Add("c", "", "", "", "", "", "/m", 0, "team-name", "x", "http://sd")
	f.Add("c", "", "", "", "", "", "/m", 0, "__x", "x", "http://sd")
	f.Add("c", "", "", "", "", "", "/m", 0, "circuit_id", "x", "http://sd")
	f.Add("c", "", "", "", "", "", "/m", 0, "team", "\xff", "http://sd")
	f.Add("c", "", "", "", "", "", "/m", 0, "", "", "127.0.0.1:9180")
	f.Add("c", "", "", "", "", "", "/m", 0, "", "", "ftp://sd")
	f.Add("c", "", "", "", "", "", "/m", 0, "", "", "http://")
	f.Fuzz(func(t *testing.T, circuit, worker, session, routeURL, routeSession, routeID, path string, port int, label, value, sidecar string) {
		c := CreateConfig()
		c.CircuitID, c.WorkerAuthority, c.MetricsPath, c.MetricsPort, c.SidecarURL = circuit, worker, path, port, sidecar
		if session != "" {
			c.SessionIDs = strings.Split(session, ",")
		}
		if routeURL != "" || routeSession != "" || routeID != "" {
			c.Routes = []Route{{URL: "http://10.0.0.1:80/"}, {URL: routeURL, SessionID: routeSession, RouteID: routeID}}
		}
		if label != "" {
			c.Labels[label] = value
		}
		err := c.checkFields()
		if c.ok() != (err == nil) {
			t.Fatalf("ok says %v, checkFields says %v, for %+v", c.ok(), err, c)
		}
		if serverURLOK(routeURL) != (CheckServerURL(routeURL) == nil) {
			t.Fatalf("serverURLOK says %v, CheckServerURL %v, for %q", serverURLOK(routeURL), CheckServerURL(routeURL), routeURL)
		}
	})
}

// TestTheDefaultSidecarURLIsOneTheParseAccepts: sidecarURLOK takes the
// default without parsing it, which is right only while the parse would
// take it too.
func TestTheDefaultSidecarURLIsOneTheParseAccepts(t *testing.T) {
	if !parsedSidecarURLOK(DefaultSidecarURL) {
		t.Errorf("the default sidecar URL %q is one the parse refuses", DefaultSidecarURL)
	}
	if !sidecarURLOK(DefaultSidecarURL) || sidecarURLOK("127.0.0.1:9180") || sidecarURLOK("") {
		t.Error("sidecarURLOK does not answer as the parse does")
	}
}
