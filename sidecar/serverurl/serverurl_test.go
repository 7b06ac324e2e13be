package serverurl_test

import (
	"net/url"
	"testing"

	"github.com/traefik-sd/traefik-sd/plugin"
	"github.com/traefik-sd/traefik-sd/sidecar/serverurl"
)

// FuzzPlainReadsAsURLParse holds Plain to url.Parse: where it answers, it
// gives url.Parse's scheme, host and port, and Accepted says yes only to
// what plugin.CheckServerURL accepts. Where it does not answer, nothing is
// checked: url.Parse reads those.
func FuzzPlainReadsAsURLParse(f *testing.F) {
	for _, s := range []string{
		"http://10.0.1.21:8000/", "http://10.0.1.21:8000", "https://h.example/metrics", "h2c://h:1",
		"http://h:0/", "http://h:65536/", "http://h:08000/", "http://h:/", "http://:80/", "http:///x",
		"HTTP://h/", "ftp://h/", "http://user:pw@h/", "http://[::1]:80/", "http://h/a%20b", "http://h/?q#f",
		"http://h\x7f/", "http:/h", "http://h:80:81/", "http://h-1.x_y/", "://h", "",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		scheme, host, port, ok := serverurl.Plain(raw)
		if ok {
			u, err := url.Parse(raw)
			if err != nil {
				t.Fatalf("Plain read %q, which url.Parse refuses: %v", raw, err)
			}
			if u.Scheme != scheme || u.Hostname() != host || u.Port() != port {
				t.Fatalf("Plain read %q as %q %q %q; url.Parse as %q %q %q", raw, scheme, host, port, u.Scheme, u.Hostname(), u.Port())
			}
		}
		if serverurl.Accepted(raw) {
			if err := plugin.CheckServerURL(raw); err != nil {
				t.Fatalf("Accepted %q, which CheckServerURL refuses: %v", raw, err)
			}
		}
	})
}

// The plain URLs Backend.AI writes are read without url.Parse, and
// accepted; others are left to it.
func TestThePlainFormIsRead(t *testing.T) {
	for raw, want := range map[string][3]string{
		"http://10.0.1.21:8000/":    {"http", "10.0.1.21", "8000"},
		"http://10.0.1.21:8000":     {"http", "10.0.1.21", "8000"},
		"https://h.example/metrics": {"https", "h.example", ""},
		"h2c://h:1":                 {"h2c", "h", "1"},
	} {
		scheme, host, port, ok := serverurl.Plain(raw)
		if !ok || [3]string{scheme, host, port} != want {
			t.Errorf("%q: %q %q %q %v, want %q", raw, scheme, host, port, ok, want)
		}
		if !serverurl.Accepted(raw) {
			t.Errorf("%q is not accepted", raw)
		}
	}
	for _, raw := range []string{"HTTP://h/", "http://user:pw@h/", "http://[::1]:80/", "http://h/a%20b", "http://h:/", "ftp://h/", "http://h:0/"} {
		if serverurl.Accepted(raw) {
			t.Errorf("%q is accepted without url.Parse", raw)
		}
	}
	if n := testing.AllocsPerRun(100, func() { serverurl.Plain("http://10.0.1.21:8000/") }); n != 0 {
		t.Errorf("Plain allocates %.0f times", n)
	}
}
