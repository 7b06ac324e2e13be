// Package interpreted_test runs the plugin the way Traefik does: its source,
// interpreted by Yaegi (the version Traefik v3 ships) with only the standard
// library's symbols. The plugin's own tests run here a second time,
// interpreted, so anything Yaegi cannot handle fails here and not in Traefik.
package interpreted_test

import (
	"bytes"
	"context"
	"go/parser"
	"go/token"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mitchellh/mapstructure"
	"github.com/traefik-sd/traefik-sd/sidecar/kv"
	"github.com/traefik/yaegi/interp"
	"github.com/traefik/yaegi/stdlib"
)

const (
	pluginImport = "github.com/traefik-sd/traefik-sd/plugin"
	// suiteImport holds the plugin's external tests. Yaegi sees an import
	// cycle when plugin_test sits beside the package it imports, so the
	// tests get a directory of their own.
	suiteImport = "pluginsuite"
)

// newInterpreter lays the plugin's source out in a GOPATH, as Traefik's
// plugins-local directory does, and returns an interpreter that can import it.
func newInterpreter(tb testing.TB, withTests bool) *interp.Interpreter {
	tb.Helper()
	return newInterpreterWith(tb, withTests, interp.Options{})
}

// newInterpreterWith is newInterpreter with the options Traefik may give
// (its Stdout and Stderr); GoPath is set here.
func newInterpreterWith(tb testing.TB, withTests bool, opts interp.Options) *interp.Interpreter {
	tb.Helper()
	return newInterpreterFrom(tb, "..", withTests, opts, nil)
}

// newInterpreterFrom is newInterpreterWith with the plugin's source read
// from srcDir, each file passed through patch (by base name) when it is not
// nil: a benchmark compares the plugin with a variant of itself or with
// another version.
func newInterpreterFrom(tb testing.TB, srcDir string, withTests bool, opts interp.Options, patch func(file, src string) string) *interp.Interpreter {
	tb.Helper()
	gopath := tb.TempDir()
	pkgDir := filepath.Join(gopath, "src", filepath.FromSlash(pluginImport))
	suiteDir := filepath.Join(gopath, "src", suiteImport)
	for _, dir := range []string{pkgDir, suiteDir} {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			tb.Fatal(err)
		}
	}
	files, err := filepath.Glob(filepath.Join(srcDir, "*.go"))
	if err != nil || len(files) == 0 {
		tb.Fatalf("plugin source not found: %v", err)
	}
	for _, f := range files {
		dst := pkgDir
		if strings.HasSuffix(f, "_test.go") {
			if !withTests {
				continue
			}
			dst = suiteDir
		}
		src, err := os.ReadFile(f)
		if err != nil {
			tb.Fatal(err)
		}
		// An internal test (package plugin) holds unexported functions
		// to one another, compiled (FuzzOkAgreesWithCheck); the suite
		// runs the external tests, which use the plugin as Traefik does.
		if dst == suiteDir {
			clause, err := parser.ParseFile(token.NewFileSet(), f, src, parser.PackageClauseOnly)
			if err != nil {
				tb.Fatal(err)
			}
			if clause.Name.Name == "plugin" {
				continue
			}
		}
		if patch != nil {
			src = []byte(patch(filepath.Base(f), string(src)))
		}
		if err := os.WriteFile(filepath.Join(dst, filepath.Base(f)), src, 0o644); err != nil {
			tb.Fatal(err)
		}
	}
	opts.GoPath = gopath
	i := interp.New(opts)
	if err := i.Use(stdlib.Symbols); err != nil {
		tb.Fatal(err)
	}
	return i
}

func TestPluginTestsUnderYaegi(t *testing.T) {
	i := newInterpreter(t, true)
	if err := i.EvalTest(suiteImport); err != nil {
		t.Fatalf("yaegi could not load the plugin with its tests: %v", err)
	}
	syms := i.Symbols(suiteImport)[suiteImport]
	var names []string
	for name := range syms {
		if _, ok := syms[name].Interface().(func(*testing.T)); ok && strings.HasPrefix(name, "Test") {
			names = append(names, name)
		}
	}
	sort.Strings(names)
	if len(names) < 5 {
		t.Fatalf("found only %d plugin tests under yaegi: %v", len(names), names)
	}
	for _, name := range names {
		t.Run(name, syms[name].Interface().(func(*testing.T)))
	}
}

// interpretedNew loads the plugin as Traefik does and returns its New and a
// filled config, called through reflection as Traefik's middleware builder does.
func interpretedNew(tb testing.TB, sidecarURL string) func(ctx context.Context, next http.Handler, name string) (http.Handler, error) {
	return interpretedNewWith(tb, sidecarURL, interp.Options{})
}

// interpretedNewWith is interpretedNew with the interpreter's options.
func interpretedNewWith(tb testing.TB, sidecarURL string, opts interp.Options) func(ctx context.Context, next http.Handler, name string) (http.Handler, error) {
	fnNew, fnCreate := loadPlugin(tb, opts)
	return func(ctx context.Context, next http.Handler, name string) (http.Handler, error) {
		cfg := fnCreate.Call(nil)[0]
		cfg.Elem().FieldByName("CircuitID").SetString("c-bench")
		cfg.Elem().FieldByName("SidecarURL").SetString(sidecarURL)
		out := fnNew.Call([]reflect.Value{reflect.ValueOf(ctx), reflect.ValueOf(next), cfg, reflect.ValueOf(name)})
		if e := out[1].Interface(); e != nil {
			return nil, e.(error)
		}
		return out[0].Interface().(http.Handler), nil
	}
}

func TestInterpretedNewReturnsNativeNext(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, _ *http.Request) { rw.WriteHeader(http.StatusNoContent) }))
	defer srv.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	newFn := interpretedNew(t, srv.URL)
	called := 0
	next := http.HandlerFunc(func(http.ResponseWriter, *http.Request) { called++ })
	h, err := newFn(ctx, next, "bai_sd_c@etcd")
	if err != nil {
		t.Fatal(err)
	}
	h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, "/", nil))
	if called != 1 {
		t.Fatalf("next called %d times", called)
	}
	// The handler Traefik gets back is next itself, so no interpreted code
	// runs per request.
	if reflect.ValueOf(h).Pointer() != reflect.ValueOf(next).Pointer() {
		t.Errorf("New returned %T, not next", h)
	}
}

// lockedBuffer is an io.Writer the plugin's sender goroutine may write to
// while the test reads it.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestOnlyFailuresReachTraefiksErrorLog interprets the plugin with the
// writers Traefik v3.6.12 gives it (pkg/plugins/middlewareyaegi.go,
// newInterpreter: Stdout is Traefik's log at debug level, Stderr at error
// level), makes a push fail and then succeed, and checks where each message
// lands: the failure on Stderr, the recovery on Stdout, so that a sidecar
// restart is not reported as an error in Traefik's log.
func TestOnlyFailuresReachTraefiksErrorLog(t *testing.T) {
	var down atomic.Bool
	down.Store(true)
	srv := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, _ *http.Request) {
		if down.Load() {
			http.Error(rw, "sidecar restarting", http.StatusServiceUnavailable)
			return
		}
		rw.WriteHeader(http.StatusNoContent)
	}))
	defer srv.Close()
	debugLog, errorLog := &lockedBuffer{}, &lockedBuffer{}
	newFn := interpretedNewWith(t, srv.URL, interp.Options{Stdout: debugLog, Stderr: errorLog})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if _, err := newFn(ctx, http.NotFoundHandler(), "bai_sd_log@etcd"); err != nil {
		t.Fatal(err)
	}
	waitUntil := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s; Stdout (debug) %q, Stderr (error) %q", what, debugLog.String(), errorLog.String())
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	failure := "push to " + srv.URL + " failed"
	recovery := "pushes to " + srv.URL + " delivered again"
	waitUntil("the failure logged", func() bool {
		return strings.Contains(debugLog.String()+errorLog.String(), failure)
	})
	down.Store(false)
	waitUntil("the recovery logged", func() bool {
		return strings.Contains(debugLog.String()+errorLog.String(), recovery)
	})
	stdout, stderr := debugLog.String(), errorLog.String()
	if !strings.Contains(stderr, failure) || !strings.Contains(stderr, "503") {
		t.Errorf("the failure is not on Stderr (Traefik's error level): Stderr %q", stderr)
	}
	if strings.Contains(stdout, failure) {
		t.Errorf("the failure is on Stdout (Traefik's debug level): Stdout %q", stdout)
	}
	if !strings.Contains(stdout, recovery) {
		t.Errorf("the recovery is not on Stdout (Traefik's debug level): Stdout %q", stdout)
	}
	if strings.Contains(stderr, recovery) {
		t.Errorf("the recovery is on Stderr, which Traefik logs as an error: Stderr %q", stderr)
	}
	// Traefik's writers log one entry per Write: one line each.
	for _, out := range []string{stdout, stderr} {
		if n := strings.Count(out, "\n"); n != 1 {
			t.Errorf("want one line, got %d: %q", n, out)
		}
	}
}

// interpretedNewFields loads the plugin as interpretedNewWith does; the New
// it returns sets the config's string fields named in fields.
func interpretedNewFields(tb testing.TB, opts interp.Options) func(ctx context.Context, name string, fields map[string]string) error {
	fnNew, fnCreate := loadPlugin(tb, opts)
	return func(ctx context.Context, name string, fields map[string]string) error {
		cfg := fnCreate.Call(nil)[0]
		for field, value := range fields {
			cfg.Elem().FieldByName(field).SetString(value)
		}
		out := fnNew.Call([]reflect.Value{reflect.ValueOf(ctx), reflect.ValueOf(http.NotFoundHandler()), cfg, reflect.ValueOf(name)})
		if e := out[1].Interface(); e != nil {
			return e.(error)
		}
		return nil
	}
}

// TestATokenMismatchIsLoggedOnceOnStderr interprets the plugin with
// Traefik's writers: two middlewares name one sidecar, the second without
// the first one's token. Every push carries the first token; the mismatch
// is a misconfiguration, so it is logged on Stderr (Traefik's error level),
// once however often Traefik reloads, with no token in it.
func TestATokenMismatchIsLoggedOnceOnStderr(t *testing.T) {
	var mu sync.Mutex
	auths := map[string]int{}
	srv := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, req *http.Request) {
		mu.Lock()
		auths[req.Header.Get("Authorization")]++
		mu.Unlock()
		rw.WriteHeader(http.StatusNoContent)
	}))
	defer srv.Close()
	debugLog, errorLog := &lockedBuffer{}, &lockedBuffer{}
	newFn := interpretedNewFields(t, interp.Options{Stdout: debugLog, Stderr: errorLog})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := newFn(ctx, "bai_sd_first@etcd", map[string]string{"CircuitID": "c-1", "SidecarURL": srv.URL, "Token": "s3cr3t-token"}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond) // recorded and pushed first
	for reload := 0; reload < 3; reload++ {
		if err := newFn(ctx, "bai_sd_second@etcd", map[string]string{"CircuitID": "c-2", "SidecarURL": srv.URL, "WorkerAuthority": strconv.Itoa(reload)}); err != nil {
			t.Fatal(err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(errorLog.String(), "bai_sd_second@etcd") && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	stdout, stderr := debugLog.String(), errorLog.String()
	if n := strings.Count(stderr, "bai_sd_second@etcd"); n != 1 {
		t.Errorf("the mismatch is on Stderr (Traefik's error level) %d times, want once: Stderr %q", n, stderr)
	}
	if strings.Contains(stdout, "bai_sd_second@etcd") {
		t.Errorf("the mismatch is on Stdout (Traefik's debug level): %q", stdout)
	}
	if strings.Contains(stdout+stderr, "s3cr3t") {
		t.Errorf("a token reached the log: Stdout %q, Stderr %q", stdout, stderr)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(auths) != 1 || auths["Bearer s3cr3t-token"] == 0 {
		t.Errorf("Authorization headers pushed: %v; want only the first recorded token", auths)
	}
}

// wrapperSource is the conventional shape of a pass-through plugin
// (plugindemo's): a struct whose ServeHTTP calls next. It is the baseline
// that shows what returning next saves under Yaegi.
const wrapperSource = `package wrapper

import "net/http"

type passThrough struct{ next http.Handler }

func (p *passThrough) ServeHTTP(rw http.ResponseWriter, req *http.Request) { p.next.ServeHTTP(rw, req) }

func Wrap(next http.Handler) http.Handler { return &passThrough{next: next} }
`

func BenchmarkServeHTTP(b *testing.B) {
	srv := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, _ *http.Request) { rw.WriteHeader(http.StatusNoContent) }))
	defer srv.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	next := http.HandlerFunc(func(rw http.ResponseWriter, _ *http.Request) { rw.WriteHeader(http.StatusOK) })
	req := httptest.NewRequest(http.MethodGet, "/v1/chat", nil)
	rw := httptest.NewRecorder()

	h, err := interpretedNew(b, srv.URL)(ctx, next, "bai_sd_bench@etcd")
	if err != nil {
		b.Fatal(err)
	}
	i := interp.New(interp.Options{})
	if err := i.Use(stdlib.Symbols); err != nil {
		b.Fatal(err)
	}
	if _, err := i.Eval(wrapperSource); err != nil {
		b.Fatal(err)
	}
	wrap, err := i.Eval("wrapper.Wrap")
	if err != nil {
		b.Fatal(err)
	}
	wrapped := wrap.Call([]reflect.Value{reflect.ValueOf(http.Handler(next))})[0].Interface().(http.Handler)

	for _, bc := range []struct {
		name string
		h    http.Handler
	}{
		{"baseline=next-direct", next},
		{"traefik-sd-plugin-under-yaegi", h},
		{"conventional-wrapper-under-yaegi", wrapped},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for n := 0; n < b.N; n++ {
				bc.h.ServeHTTP(rw, req)
			}
		})
	}
}

// BenchmarkNew is New under Yaegi, as Traefik calls it once per router on
// every reload: a fresh config each time, filled through reflection.
//
// The baseline is the smallest plugin there is (testdata/noop-plugin),
// called the same way: what any Yaegi plugin costs per router.
func BenchmarkNew(b *testing.B) {
	srv := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, _ *http.Request) { rw.WriteHeader(http.StatusNoContent) }))
	defer srv.Close()
	next := http.HandlerFunc(func(http.ResponseWriter, *http.Request) {})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	noop := interp.New(interp.Options{})
	if err := noop.Use(stdlib.Symbols); err != nil {
		b.Fatal(err)
	}
	src, err := os.ReadFile(filepath.Join("..", "..", "testdata", "noop-plugin", "noop.go"))
	if err != nil {
		b.Fatal(err)
	}
	if _, err := noop.Eval(string(src)); err != nil {
		b.Fatal(err)
	}
	noopCreate, _ := noop.Eval("noop.CreateConfig")
	noopNew, _ := noop.Eval("noop.New")
	b.Run("baseline=noop-plugin", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			cfg := noopCreate.Call(nil)[0]
			cfg.Elem().FieldByName("CircuitID").SetString("c-bench")
			out := noopNew.Call([]reflect.Value{reflect.ValueOf(ctx), reflect.ValueOf(http.Handler(next)), cfg, reflect.ValueOf("bai_sd_x@etcd")})
			if out[0].IsNil() {
				b.Fatal("no handler")
			}
		}
	})
	newFn := interpretedNew(b, srv.URL)
	b.Run("traefik-sd", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			if _, err := newFn(ctx, next, "bai_sd_"+strconv.Itoa(i%10000)+"@etcd"); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// TestConfigDecodedAsTraefikDecodesIt gives the interpreted plugin its
// configuration the way Traefik v3.6.12 does (pkg/plugins/middlewareyaegi.go,
// createConfig): the middleware's etcd keys decoded by paerser into
// Traefik's PluginConf (a map[string]any of strings, lists and maps), then
// mapstructure with WeaklyTypedInput and a comma StringToSlice hook into
// the value the interpreted CreateConfig returned. Lists, labels and a
// port given as the string "9100" must all arrive, under Yaegi.
func TestConfigDecodedAsTraefikDecodesIt(t *testing.T) {
	// The keys the coordinator writes for a traefik-sd middleware (see the
	// README's coordinator change), relative to the middleware.
	pairs := []kv.Pair{
		{Key: "plugin/traefik-sd/circuitid", Value: "c-decode"},
		{Key: "plugin/traefik-sd/workerauthority", Value: "worker-1"},
		{Key: "plugin/traefik-sd/sidecarurl", Value: "http://127.0.0.1:9180"},
		{Key: "plugin/traefik-sd/metricsport", Value: "9100"},
		{Key: "plugin/traefik-sd/metricspath", Value: "/custom/metrics"},
		{Key: "plugin/traefik-sd/labels/team", Value: "ml"},
		{Key: "plugin/traefik-sd/labels/tier", Value: "gold"},
		{Key: "plugin/traefik-sd/sessionids/0", Value: "s-1"},
		{Key: "plugin/traefik-sd/sessionids/1", Value: "s-2"},
		{Key: "plugin/traefik-sd/routes/0/url", Value: "http://10.0.0.1:8000/"},
		{Key: "plugin/traefik-sd/routes/0/sessionid", Value: "s-1"},
		{Key: "plugin/traefik-sd/routes/0/routeid", Value: "r-1"},
		{Key: "plugin/traefik-sd/routes/1/url", Value: "http://10.0.0.2:8000/"},
		{Key: "plugin/traefik-sd/routes/1/sessionid", Value: "s-2"},
		{Key: "plugin/traefik-sd/routes/1/routeid", Value: "r-2"},
	}
	// Traefik's dynamic.Middleware.Plugin: map[string]PluginConf, PluginConf map[string]any.
	var mw struct {
		Plugin map[string]map[string]any
	}
	if err := kv.Decode(pairs, &mw); err != nil {
		t.Fatal(err)
	}
	conf := mw.Plugin["traefik-sd"]
	if conf == nil {
		t.Fatalf("no traefik-sd plugin configuration decoded: %+v", mw.Plugin)
	}
	t.Logf("PluginConf as Traefik hands it over: %#v", conf)

	fnCreate, fnNew := interpretedPlugin(t, pluginImport)
	vConfig := fnCreate.Call(nil)[0]
	if err := decodeAsTraefik(vConfig, conf); err != nil {
		t.Fatalf("Traefik's decoding of the configuration fails under Yaegi: %v", err)
	}
	cfg := vConfig.Elem()
	if got := cfg.FieldByName("MetricsPort").Int(); got != 9100 {
		t.Errorf("metricsPort = %d, want 9100 (given as the string %q)", got, "9100")
	}
	if got := cfg.FieldByName("MetricsPath").String(); got != "/custom/metrics" {
		t.Errorf("metricsPath = %q", got)
	}
	labels := cfg.FieldByName("Labels")
	if labels.Len() != 2 || labels.MapIndex(reflect.ValueOf("team")).String() != "ml" {
		t.Errorf("labels = %v", labels)
	}
	routes := cfg.FieldByName("Routes")
	if routes.Len() != 2 {
		t.Fatalf("routes: %d decoded, want 2", routes.Len())
	}
	var urls, sessions []string
	for j := 0; j < routes.Len(); j++ {
		urls = append(urls, routes.Index(j).FieldByName("URL").String())
		sessions = append(sessions, routes.Index(j).FieldByName("SessionID").String()+"/"+routes.Index(j).FieldByName("RouteID").String())
	}
	sort.Strings(urls)
	sort.Strings(sessions)
	if strings.Join(urls, " ") != "http://10.0.0.1:8000/ http://10.0.0.2:8000/" || strings.Join(sessions, " ") != "s-1/r-1 s-2/r-2" {
		t.Errorf("routes: %v %v", urls, sessions)
	}
	if got := cfg.FieldByName("SessionIDs"); got.Len() != 2 {
		t.Errorf("sessionIds: %v", got)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	out := fnNew.Call([]reflect.Value{reflect.ValueOf(ctx), reflect.ValueOf(http.Handler(http.NotFoundHandler())), vConfig, reflect.ValueOf("bai_sd_c-decode@etcd")})
	if e := out[1].Interface(); e != nil {
		t.Errorf("New refuses the configuration Traefik decoded: %v", e)
	}
}

// interpretedPlugin imports the plugin under Yaegi, as Traefik does, and
// returns its CreateConfig and New.
func interpretedPlugin(t *testing.T, importPath string) (create, newFn reflect.Value) {
	t.Helper()
	i := newInterpreter(t, false)
	if _, err := i.Eval(`import "` + importPath + `"`); err != nil {
		t.Fatal(err)
	}
	create, err := i.Eval("plugin.CreateConfig")
	if err != nil {
		t.Fatal(err)
	}
	newFn, err = i.Eval("plugin.New")
	if err != nil {
		t.Fatal(err)
	}
	return create, newFn
}

// decodeAsTraefik decodes a plugin configuration map into the value the
// interpreted CreateConfig returned, with the options Traefik v3.6.12 uses
// (pkg/plugins/middlewareyaegi.go, createConfig).
func decodeAsTraefik(vConfig reflect.Value, conf map[string]any) error {
	decoder, err := mapstructure.NewDecoder(&mapstructure.DecoderConfig{
		DecodeHook:       mapstructure.StringToSliceHookFunc(","),
		WeaklyTypedInput: true,
		Result:           vConfig.Interface(),
	})
	if err != nil {
		return err
	}
	return decoder.Decode(conf)
}

// loadPlugin interprets the plugin as Traefik does and returns its New and
// CreateConfig.
func loadPlugin(tb testing.TB, opts interp.Options) (fnNew, fnCreate reflect.Value) {
	tb.Helper()
	return loadPluginFrom(tb, "..", opts, nil)
}

// loadPluginFrom is loadPlugin with the source as newInterpreterFrom takes it.
func loadPluginFrom(tb testing.TB, srcDir string, opts interp.Options, patch func(file, src string) string) (fnNew, fnCreate reflect.Value) {
	tb.Helper()
	i := newInterpreterFrom(tb, srcDir, false, opts, patch)
	if _, err := i.Eval(`import "` + pluginImport + `"`); err != nil {
		tb.Fatalf("yaegi could not import the plugin: %v", err)
	}
	fnNew, err := i.Eval("plugin.New")
	if err != nil {
		tb.Fatal(err)
	}
	fnCreate, err = i.Eval("plugin.CreateConfig")
	if err != nil {
		tb.Fatal(err)
	}
	return fnNew, fnCreate
}
