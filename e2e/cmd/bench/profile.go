package main

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/traefik-sd/traefik-sd/internal/testbed"
)

// profileCategories split Traefik's CPU samples during a reload: a sample
// goes to the first category listed with a function on its stack. The
// plugin categories lie under router building and not under one another, so
// each is its functions' cumulative share, and router-build-other-% is
// CreateRouters' cumulative share less theirs. The names are those of
// Traefik v3.6.12 (pkg/plugins, pkg/server, cmd/traefik); a name ending in
// * matches as a prefix. Samples in no category are printed as other-%:
// the entry point answering the benchmark's own probes, the runtime.
var profileCategories = []struct {
	unit  string
	funcs []string
}{
	// Per WASM middleware: read the .wasm file, a wazero runtime, the
	// compiled module from the cache, WASI and one guest instance, the
	// configuration marshalled to JSON (middlewarewasm.go).
	{"wasm-new-%", []string{
		"github.com/traefik/traefik/v3/pkg/plugins.wasmMiddlewareBuilder.newHandler",
		"github.com/traefik/traefik/v3/pkg/plugins.(*wasmMiddlewareBuilder).buildMiddleware",
	}},
	// Per Yaegi middleware: the interpreted CreateConfig, then mapstructure
	// decoding the configuration into it (middlewareyaegi.go).
	{"yaegi-config-%", []string{"github.com/traefik/traefik/v3/pkg/plugins.yaegiMiddlewareBuilder.createConfig"}},
	// Per Yaegi middleware: the interpreted New.
	{"yaegi-new-%", []string{"github.com/traefik/traefik/v3/pkg/plugins.yaegiMiddlewareBuilder.newHandler"}},
	// Everything else of building the routers from the runtime configuration:
	// services, the other middlewares, rules, TCP and UDP routers
	// (routerfactory.go).
	{"router-build-other-%", []string{"github.com/traefik/traefik/v3/pkg/server.(*RouterFactory).CreateRouters"}},
	// The configuration before router building: the file provider reading
	// and decoding it, the watcher merging it and running the other
	// listeners (runtime.NewConfig, TLS, metrics).
	{"config-other-%", []string{
		"github.com/traefik/traefik/v3/pkg/provider/file.*",
		"github.com/traefik/traefik/v3/pkg/server.(*ConfigurationWatcher).*",
		"main.setupServer.switchRouter.*",
	}},
	// Interpreted code outside New and CreateConfig: the plugins' own
	// goroutines (traefik-sd's sender and its pushes).
	{"yaegi-other-%", []string{"github.com/traefik/yaegi/*"}},
	// Finalizers: among them those closing the WASM middlewares (and their
	// wazero runtimes) of the configuration the reload replaced.
	{"finalizers-%", []string{"runtime.runfinq"}},
	// The collector's own goroutines; assists stay with the code that
	// allocated.
	{"gc-%", []string{"runtime.gcBgMarkWorker", "runtime.bgsweep", "runtime.bgscavenge"}},
}

// profileReload profiles Traefik over one reload of variant (configs: n
// routers, then n+1), after the timed rounds, in a Traefik of its own with
// api.debug, and prints the shares of its CPU samples by category. Shares,
// not times: api.debug also records every blocking event, which slows that
// Traefik down. longest is the variant's longest timed reload, from which
// the profile's length is chosen: it must hold the reload, slowed down, and
// what follows it (the collection of the replaced configuration,
// traefik-sd's removal delay of 2 s and its push).
func profileReload(t testbed.T, dir, variant string, configs [2]string, n int, longest time.Duration, keep string) {
	window := 3*longest + 10*time.Second
	if longest == 0 {
		window = 2 * time.Minute
	}
	seconds := int(math.Ceil(window.Seconds()))
	tr := startTraefik(t, dir, "profile-"+variant, true)
	defer tr.stop()
	tr.writeDynamic(t, configs[0])
	waitServed(t, tr, fmt.Sprintf("c%d.example", n-1), 5*time.Minute)
	// The load's own aftermath (traefik-sd's first push) is not the reload's.
	time.Sleep(3 * time.Second)

	type result struct {
		body []byte
		err  error
	}
	got := make(chan result, 1)
	go func() {
		client := &http.Client{Timeout: time.Duration(seconds)*time.Second + time.Minute}
		resp, err := client.Get(fmt.Sprintf("%s/debug/pprof/profile?seconds=%d", tr.api, seconds))
		if err != nil {
			got <- result{err: err}
			return
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		if err == nil && resp.StatusCode != http.StatusOK {
			err = fmt.Errorf("%s: %s", resp.Status, bytes.TrimSpace(body))
		}
		got <- result{body, err}
	}()
	// The profile starts when Traefik handles the request; the reload must
	// not start before.
	time.Sleep(500 * time.Millisecond)
	start := time.Now()
	tr.writeDynamic(t, configs[1])
	waitServed(t, tr, fmt.Sprintf("c%d.example", n), 5*time.Minute)
	took := time.Since(start)
	res := <-got
	if res.err != nil {
		t.Fatalf("profile of %s: %v\n%s", variant, res.err, tr.proc.Tail())
	}
	if took+500*time.Millisecond > time.Duration(seconds)*time.Second {
		t.Fatalf("profile of %s: the reload took %v, longer than the %ds profile", variant, took, seconds)
	}
	tr.checkLog(t, "profile "+variant)
	path := filepath.Join(dir, "profile-"+variant+".pprof")
	if keep != "" {
		testbed.Must(t, os.MkdirAll(keep, 0o755), "profile directory")
		path = filepath.Join(keep, "reload-"+strconv.Itoa(n)+"-"+variant+".pprof")
	}
	testbed.Must(t, os.WriteFile(path, res.body, 0o644), "profile")
	t.Logf("profile: %s reloaded in %v under a %ds CPU profile (%s)", variant, took.Round(time.Millisecond), seconds, path)

	total, counts := profileShares(t, path)
	if total == 0 {
		t.Fatalf("profile of %s holds no samples", variant)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "BenchmarkTraefikReloadProfile/%s\t1\t%d samples", variant, total)
	rest := total
	for _, c := range profileCategories {
		fmt.Fprintf(&b, "\t%.1f %s", 100*float64(counts[c.unit])/float64(total), c.unit)
		rest -= counts[c.unit]
	}
	fmt.Fprintf(&b, "\t%.1f other-%%\n", 100*float64(rest)/float64(total))
	fmt.Print(b.String())
}

// profileShares counts a CPU profile's samples, in all and per category,
// with go tool pprof -traces: it prints each sample's whole stack, inlined
// frames included, so that each sample goes to one category, where the
// cumulative -top view would count a sample under every function it holds.
func profileShares(t testbed.T, path string) (int, map[string]int) {
	goTool, err := exec.LookPath("go")
	if err != nil {
		if root := os.Getenv("GOROOT"); root != "" {
			goTool, err = filepath.Join(root, "bin", "go"), nil
		}
	}
	if err != nil {
		t.Fatalf("profile: no go command to run go tool pprof with: %v", err)
	}
	var stderr bytes.Buffer
	cmd := exec.Command(goTool, "tool", "pprof", "-traces", "-sample_index=samples", path)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go tool pprof -traces %s: %v\n%s", path, err, stderr.String())
	}
	total, counts, err := parseTraces(out)
	if err != nil {
		t.Fatalf("go tool pprof -traces %s: %v", path, err)
	}
	return total, counts
}

var (
	traceFirst = regexp.MustCompile(`^\s*(\d+)\s{3}(\S.*)$`)
	traceFrame = regexp.MustCompile(`^\s{4,}(\S.*)$`)
	traceLabel = regexp.MustCompile(`^\s*\S+:\s\s`)
)

// parseTraces reads go tool pprof -traces output: blocks between lines of
// dashes, each a sample's labels (key:  values), then its count beside the
// innermost frame and the callers below it.
func parseTraces(out []byte) (int, map[string]int, error) {
	total := 0
	counts := map[string]int{}
	var value int
	var frames []string
	flush := func() {
		if value > 0 {
			total += value
			if unit := categorize(frames); unit != "" {
				counts[unit] += value
			}
		}
		value, frames = 0, nil
	}
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	blocks := 0
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "-----------+"):
			flush()
			blocks++
		case blocks == 0 || strings.TrimSpace(line) == "":
		case value == 0:
			if m := traceFirst.FindStringSubmatch(line); m != nil {
				v, err := strconv.Atoi(m[1])
				if err != nil {
					return 0, nil, fmt.Errorf("sample count in %q: %v", line, err)
				}
				value, frames = v, []string{frameName(m[2])}
			} else if !traceLabel.MatchString(line) {
				return 0, nil, fmt.Errorf("unexpected line %q", line)
			}
		default:
			m := traceFrame.FindStringSubmatch(line)
			if m == nil {
				return 0, nil, fmt.Errorf("unexpected frame line %q", line)
			}
			frames = append(frames, frameName(m[1]))
		}
	}
	flush()
	if blocks == 0 {
		return 0, nil, fmt.Errorf("no samples in the output:\n%s", out)
	}
	return total, counts, sc.Err()
}

func frameName(s string) string { return strings.TrimSuffix(strings.TrimSpace(s), " (inline)") }

// categorize is the first category with a function on the stack, "" for none.
func categorize(frames []string) string {
	for _, c := range profileCategories {
		for _, f := range c.funcs {
			prefix, isPrefix := strings.CutSuffix(f, "*")
			for _, frame := range frames {
				if frame == f || isPrefix && strings.HasPrefix(frame, prefix) {
					return c.unit
				}
			}
		}
	}
	return ""
}
