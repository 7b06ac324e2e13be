package traefikapi_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/traefik-sd/traefik-sd/sidecar/traefikapi"
)

// fakeAPI answers as Traefik v3.6's API handler does: /api/http/routers
// paged with per_page/page and X-Next-Page (1 after the last page),
// /api/http/routers/{name} and /api/http/middlewares/{name}, 404 otherwise.
type fakeAPI struct {
	mu       sync.Mutex
	routers  map[string]map[string]interface{}
	usedBy   map[string][]string
	requests []string
	fail     bool
}

func (f *fakeAPI) ServeHTTP(rw http.ResponseWriter, req *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.requests = append(f.requests, req.URL.RequestURI())
	if f.fail {
		http.Error(rw, "boom", http.StatusInternalServerError)
		return
	}
	path := req.URL.EscapedPath()
	switch {
	case path == "/api/http/routers":
		names := make([]string, 0, len(f.routers))
		for n := range f.routers {
			names = append(names, n)
		}
		sort.Strings(names)
		per, _ := strconv.Atoi(req.URL.Query().Get("per_page"))
		page, _ := strconv.Atoi(req.URL.Query().Get("page"))
		start, end := (page-1)*per, page*per
		if end > len(names) {
			end = len(names)
		}
		next := 1
		if page*per < len(names) {
			next = page + 1
		}
		rw.Header().Set("X-Next-Page", strconv.Itoa(next))
		var out []interface{}
		for _, n := range names[start:end] {
			out = append(out, f.routers[n])
		}
		_ = json.NewEncoder(rw).Encode(out)
	case strings.HasPrefix(path, "/api/http/routers/"):
		name, _ := url.PathUnescape(strings.TrimPrefix(path, "/api/http/routers/"))
		r, ok := f.routers[name]
		if !ok {
			http.Error(rw, `{"message":"router not found"}`, http.StatusNotFound)
			return
		}
		_ = json.NewEncoder(rw).Encode(r)
	case strings.HasPrefix(path, "/api/http/middlewares/"):
		name, _ := url.PathUnescape(strings.TrimPrefix(path, "/api/http/middlewares/"))
		used, ok := f.usedBy[name]
		if !ok {
			http.Error(rw, `{"message":"middleware not found"}`, http.StatusNotFound)
			return
		}
		_ = json.NewEncoder(rw).Encode(map[string]interface{}{"name": name, "usedBy": used})
	default:
		http.NotFound(rw, req)
	}
}

func (f *fakeAPI) set(name, status string, errs ...string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	local, provider, _ := strings.Cut(name, "@")
	f.routers[name] = map[string]interface{}{"name": name, "provider": provider, "status": status, "error": errs,
		"service": strings.Replace(local, "router", "service", 1), "middlewares": []string{"CORSHeaders", "auth@file"}}
}

func (f *fakeAPI) took() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := f.requests
	f.requests = nil
	return out
}

func newFake(t *testing.T) (*fakeAPI, *traefikapi.Client) {
	f := &fakeAPI{routers: map[string]map[string]interface{}{}, usedBy: map[string][]string{}}
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	return f, &traefikapi.Client{Base: srv.URL, HTTP: &http.Client{Timeout: 5 * time.Second}, PerPage: 2}
}

func TestClientReadsTraefiksAnswers(t *testing.T) {
	f, c := newFake(t)
	ctx := context.Background()
	f.set("bai_router_a@etcd", "enabled")
	f.set("bai_router_b@etcd", "disabled", "error while parsing rule Hots(`x`)")
	f.set("bai_router_c@etcd", "warning", "tls")
	f.set("api@internal", "enabled")
	f.set("with space@etcd", "enabled")

	r, err := c.Router(ctx, "bai_router_b@etcd")
	if err != nil || r.Served() || r.Errors[0] != "error while parsing rule Hots(`x`)" ||
		r.Service != "bai_service_b@etcd" || strings.Join(r.Middlewares, ",") != "CORSHeaders@etcd,auth@file" {
		t.Errorf("router b: %+v %v (references qualified with the router's provider)", r, err)
	}
	if r, err := c.Router(ctx, "with space@etcd"); err != nil || !r.Served() {
		t.Errorf("a name with a space: %+v %v", r, err)
	}
	if _, err := c.Router(ctx, "nope@etcd"); err != traefikapi.ErrNotFound {
		t.Errorf("a router Traefik does not hold: %v, want ErrNotFound", err)
	}

	all, err := c.Routers(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, r := range all {
		names = append(names, r.Name+"="+strconv.FormatBool(r.Served()))
	}
	if got := strings.Join(names, " "); got != "api@internal=true bai_router_a@etcd=true bai_router_b@etcd=false bai_router_c@etcd=true with space@etcd=true" {
		t.Errorf("listing over three pages of two: %s", got)
	}
	f.usedBy["bai_sd_a@etcd"] = []string{"bai_router_a@etcd"}
	if used, err := c.UsedBy(ctx, "bai_sd_a@etcd"); err != nil || strings.Join(used, ",") != "bai_router_a@etcd" {
		t.Errorf("usedBy: %v %v", used, err)
	}
}

func TestClientRefusesWhatItCannotTrust(t *testing.T) {
	testCases := []struct {
		desc, body, want string
	}{
		{desc: "unknown status", body: `{"name":"r@etcd","status":"maybe"}`, want: `status "maybe"`},
		{desc: "unqualified name", body: `{"name":"r","status":"enabled"}`, want: `name "r"`},
		{desc: "not JSON", body: `<html>`, want: "not valid JSON"},
	}
	for _, test := range testCases {
		t.Run(test.desc, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, _ *http.Request) { _, _ = rw.Write([]byte(test.body)) }))
			defer srv.Close()
			c := &traefikapi.Client{Base: srv.URL, HTTP: srv.Client()}
			if _, err := c.Router(context.Background(), "r@etcd"); err == nil || !strings.Contains(err.Error(), test.want) {
				t.Errorf("error %v, want one with %q", err, test.want)
			}
		})
	}
	// A listing with one bad router is refused whole: it replaces
	// everything known, so it must be complete.
	srv := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, _ *http.Request) {
		_, _ = rw.Write([]byte(`[{"name":"a@etcd","status":"enabled"},{"name":"b@etcd","status":""}]`))
	}))
	defer srv.Close()
	if _, err := (&traefikapi.Client{Base: srv.URL, HTTP: srv.Client()}).Routers(context.Background()); err == nil || !strings.Contains(err.Error(), "b@etcd") {
		t.Errorf("a listing with a bad router: %v", err)
	}
}

// TestTraefiksErrorsAreRedacted: Traefik repeats a middleware's error word
// for word, and that may quote its configuration; the sidecar logs these
// errors and shows them on its status page. What it keeps of them is
// redacted (a URL's userinfo, the value of a secret-named key) and bounded;
// what names the problem stays. An error answer's body is redacted too.
func TestTraefiksErrorsAreRedacted(t *testing.T) {
	const marker = "s3cr3t"
	answer := map[string]interface{}{
		"name": "r@etcd", "status": "disabled", "error": []string{
			"middleware \"auth@file\": forwardAuth: Get \"http://admin:" + marker + "@10.0.0.9/verify\": dial tcp: refused",
			`plugin: failed to create middleware: invalid config &{Token:` + marker + ` URL:http://x/}`,
			`plugin: {"apiKey":"` + marker + `","password":"` + marker + `"}`,
			strings.Repeat("long error ", 500),
		},
	}
	body, _ := json.Marshal(answer)
	r, err := traefikapi.DecodeRouter(body)
	if err != nil {
		t.Fatal(err)
	}
	joined := strings.Join(r.Errors, "\n")
	if strings.Contains(joined, marker) {
		t.Errorf("a secret survived in Traefik's errors:\n%s", joined)
	}
	for _, keep := range []string{`middleware "auth@file": forwardAuth`, "http://admin:xxxxx@10.0.0.9/verify", "Token:xxxxx URL:http://x/", `"apiKey":"xxxxx"`} {
		if !strings.Contains(joined, keep) {
			t.Errorf("the errors lost %q:\n%s", keep, joined)
		}
	}
	if n := len(r.Errors[3]); n > 1100 {
		t.Errorf("an error kept at %d bytes", n)
	}

	many := map[string]interface{}{"name": "r@etcd", "status": "disabled", "error": make([]string, 100)}
	body, _ = json.Marshal(many)
	if r, err := traefikapi.DecodeRouter(body); err != nil || len(r.Errors) > 9 || r.Errors[len(r.Errors)-1] != "(92 more)" {
		t.Errorf("100 errors kept as %d: %v (%v)", len(r.Errors), r.Errors[len(r.Errors)-1], err)
	}

	srv := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, _ *http.Request) {
		http.Error(rw, `{"message":"bad credentials: token=`+marker+`"}`, http.StatusInternalServerError)
	}))
	defer srv.Close()
	_, err = (&traefikapi.Client{Base: srv.URL, HTTP: srv.Client()}).Router(context.Background(), "r@etcd")
	if err == nil || strings.Contains(err.Error(), marker) || !strings.Contains(err.Error(), "500") {
		t.Errorf("an error answer: %v", err)
	}
}

// run starts a watcher and returns its updates.
func run(t *testing.T, w *traefikapi.Watcher) <-chan traefikapi.Update {
	ctx, cancel := context.WithCancel(context.Background())
	out := make(chan traefikapi.Update, 64)
	done := make(chan struct{})
	go func() { w.Run(ctx, out); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return out
}

func next(t *testing.T, out <-chan traefikapi.Update) traefikapi.Update {
	t.Helper()
	select {
	case u := <-out:
		return u
	case <-time.After(10 * time.Second):
		t.Fatal("no update within 10s")
		return traefikapi.Update{}
	}
}

func TestWatcherAsksWhatChangedThenRechecks(t *testing.T) {
	f, c := newFake(t)
	f.set("bai_router_a@etcd", "enabled")
	w := &traefikapi.Watcher{Client: c, SweepInterval: time.Hour}
	out := run(t, w)
	if u := next(t, out); !u.Sweep || len(u.Routers) != 1 {
		t.Fatalf("first update: %+v, want the start's listing", u)
	}
	f.took()

	// A push names a middleware: its users are asked about, then each router.
	f.usedBy["bai_sd_b@etcd"] = []string{"bai_router_b@etcd"}
	f.set("bai_router_b@etcd", "disabled", "bad rule")
	w.Ask([]string{"bai_router_gone@etcd"}, []string{"bai_sd_b@etcd"}, time.Now())
	u := next(t, out)
	if u.Sweep || u.Err != nil || len(u.Routers) != 1 || u.Routers[0].Name != "bai_router_b@etcd" || u.Routers[0].Served() ||
		strings.Join(u.Gone, ",") != "bai_router_gone@etcd" {
		t.Fatalf("asked round: %+v", u)
	}
	// Traefik finishes a reload: the recheck sees the new state.
	f.set("bai_router_b@etcd", "enabled")
	deadline := time.Now().Add(5 * time.Second)
	for {
		u = next(t, out)
		if len(u.Routers) == 1 && u.Routers[0].Served() {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the recheck never saw the router enabled")
		}
	}
	for _, r := range f.took() {
		if strings.HasPrefix(r, "/api/http/routers?") {
			t.Errorf("a few names were answered with a listing: %s", r)
		}
	}
}

func TestWatcherListsInsteadOfAskingAboutMany(t *testing.T) {
	f, c := newFake(t)
	w := &traefikapi.Watcher{Client: c, SweepInterval: time.Hour, SweepAbove: 3, MinSweepGap: 300 * time.Millisecond}
	out := run(t, w)
	next(t, out) // the start's listing
	start := time.Now()
	var many []string
	for i := 0; i < 10; i++ {
		name := fmt.Sprintf("bai_router_%d@etcd", i)
		f.set(name, "enabled")
		many = append(many, name)
	}
	w.Ask(many, nil, time.Now())
	u := next(t, out)
	if !u.Sweep || len(u.Routers) != 10 {
		t.Fatalf("ten names: %+v, want one listing", u)
	}
	if took := time.Since(start); took < 250*time.Millisecond {
		t.Errorf("listed again %v after the last listing; they are spaced by 300ms", took)
	}
	for _, r := range f.took() {
		if strings.HasPrefix(r, "/api/http/routers/") {
			t.Errorf("asked one by one: %s", r)
		}
	}
	// A reminder of a set too large to ask one by one waits for the periodic listing.
	w.Remind(many, time.Now())
	select {
	case u := <-out:
		if u.Sweep {
			// a recheck of the earlier Ask may list again; a reminder alone must not
			t.Logf("a recheck listed: %d routers", len(u.Routers))
		}
	case <-time.After(100 * time.Millisecond):
	}
}

func TestWatcherReportsAFailedRoundWhole(t *testing.T) {
	f, c := newFake(t)
	f.set("bai_router_a@etcd", "enabled")
	w := &traefikapi.Watcher{Client: c, SweepInterval: time.Hour}
	out := run(t, w)
	next(t, out)
	f.mu.Lock()
	f.fail = true
	f.mu.Unlock()
	w.Ask([]string{"bai_router_a@etcd"}, nil, time.Now())
	if u := next(t, out); u.Err == nil || len(u.Routers)+len(u.Gone) != 0 {
		t.Fatalf("a failed round: %+v, want only its error", u)
	}
}

func TestRemindDoesNotRestartAPendingSchedule(t *testing.T) {
	_, c := newFake(t)
	w := &traefikapi.Watcher{Client: c, SweepInterval: time.Hour, Rechecks: []time.Duration{0, 2 * time.Second}}
	out := run(t, w)
	next(t, out)
	w.Ask([]string{"bai_router_x@etcd"}, nil, time.Now())
	if u := next(t, out); strings.Join(u.Gone, ",") != "bai_router_x@etcd" {
		t.Fatalf("first question: %+v", u)
	}
	// Pending (its recheck is 2s away): a reminder does not ask it now.
	w.Remind([]string{"bai_router_x@etcd"}, time.Now())
	select {
	case u := <-out:
		t.Fatalf("a reminder restarted a pending schedule: %+v", u)
	case <-time.After(500 * time.Millisecond):
	}
	// A name with nothing pending is asked at once.
	w.Remind([]string{"bai_router_y@etcd"}, time.Now())
	if u := next(t, out); strings.Join(u.Gone, ",") != "bai_router_y@etcd" {
		t.Fatalf("a reminder of a new name: %+v", u)
	}
}

func TestAWatcherBehindAsksOnce(t *testing.T) {
	f, c := newFake(t)
	w := &traefikapi.Watcher{Client: c, SweepInterval: time.Hour}
	out := run(t, w)
	next(t, out)
	f.took()
	// Every step of its schedule is past: one question, not one per step.
	w.Ask([]string{"bai_router_late@etcd"}, nil, time.Now().Add(-time.Hour))
	next(t, out)
	select {
	case u := <-out:
		t.Fatalf("asked again: %+v", u)
	case <-time.After(300 * time.Millisecond):
	}
	if got := f.took(); len(got) != 1 {
		t.Errorf("requests: %v", got)
	}
}

func FuzzRouterAnswer(f *testing.F) {
	f.Add([]byte(`{"name":"bai_router_a@etcd","provider":"etcd","status":"enabled","service":"bai_service_a","middlewares":["x","y@file"]}`))
	f.Add([]byte(`{"name":"a@b@c","status":"disabled","error":["e"]}`))
	f.Add([]byte(`[]`))
	// Statuses Traefik does not use, and names without a provider: each
	// must be refused, so plain go test (the seeds alone) fails a decoder
	// that lets them through.
	f.Add([]byte(`{"name":"bai_router_a@etcd","provider":"etcd","status":"sleeping","service":"bai_service_a"}`))
	f.Add([]byte(`{"name":"bai_router_a@etcd","status":"Enabled"}`))
	f.Add([]byte(`{"name":"bai_router_a@etcd","status":""}`))
	f.Add([]byte(`{"name":"bai_router_a@etcd"}`))
	f.Add([]byte(`{"name":"bai_router_a","provider":"etcd","status":"enabled"}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		r, err := traefikapi.DecodeRouter(body)
		if err != nil {
			return
		}
		if !strings.Contains(r.Name, "@") || (r.Status != "enabled" && r.Status != "warning" && r.Status != "disabled") {
			t.Fatalf("accepted %+v", r)
		}
		for _, m := range append([]string{r.Service}, r.Middlewares...) {
			if m != "" && !strings.Contains(m, "@") {
				t.Fatalf("unqualified reference %q", m)
			}
		}
	})
}

func TestAnUnchangedListingIsNotDecodedAgain(t *testing.T) {
	f, c := newFake(t)
	f.set("bai_router_a@etcd", "enabled")
	w := &traefikapi.Watcher{Client: c, SweepInterval: 100 * time.Millisecond, MinSweepGap: time.Millisecond}
	out := run(t, w)
	if u := next(t, out); !u.Sweep || u.Same || len(u.Routers) != 1 {
		t.Fatalf("first listing: %+v", u)
	}
	if u := next(t, out); !u.Sweep || !u.Same || len(u.Routers) != 0 {
		t.Fatalf("an identical listing: %+v, want Same and nothing decoded", u)
	}
	f.set("bai_router_a@etcd", "disabled", "bad rule")
	if u := next(t, out); u.Same || len(u.Routers) != 1 || u.Routers[0].Served() {
		t.Fatalf("a changed listing: %+v", u)
	}
	// A per-name answer makes the next listing count again, equal or not.
	w.Ask([]string{"bai_router_a@etcd"}, nil, time.Now())
	for {
		u := next(t, out)
		if !u.Sweep {
			continue
		}
		if u.Same {
			t.Fatalf("a listing after a per-name answer was skipped: %+v", u)
		}
		break
	}
}

// TestASweepAllocatesItsPagesOnce: reading a listing of 32 pages of 128 KiB
// (100,000 routers are a hundred pages of about 500 KiB) keeps each page in
// a slice of its size and reads it through one buffer: io.ReadAll's growing
// slices allocated twice the listing.
func TestASweepAllocatesItsPagesOnce(t *testing.T) {
	const pages, size = 32, 128 << 10
	page := []byte("[" + strings.Repeat(" ", size-2) + "]")
	srv := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, req *http.Request) {
		n, _ := strconv.Atoi(req.URL.Query().Get("page"))
		next := n + 1
		if n == pages {
			next = 1
		}
		rw.Header().Set("X-Next-Page", strconv.Itoa(next))
		_, _ = rw.Write(page) // no Content-Length: Traefik's listings are chunked too
	}))
	t.Cleanup(srv.Close)
	c := &traefikapi.Client{Base: srv.URL, HTTP: &http.Client{Timeout: 5 * time.Second}}
	ctx := context.Background()
	if _, _, err := traefikapi.List(ctx, c, "/api/http/routers"); err != nil { // connections made
		t.Fatal(err)
	}
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	got, _, err := traefikapi.List(ctx, c, "/api/http/routers")
	runtime.ReadMemStats(&after)
	if err != nil || len(got) != pages {
		t.Fatalf("%d pages, %v", len(got), err)
	}
	listing := pages * size
	if n := after.TotalAlloc - before.TotalAlloc; n > uint64(listing)*3/2 {
		t.Errorf("reading %d bytes allocated %d", listing, n)
	}
}
