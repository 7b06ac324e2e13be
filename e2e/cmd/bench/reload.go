package main

import (
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/BurntSushi/toml"

	"github.com/traefik-sd/traefik-sd/internal/coordinator"
	"github.com/traefik-sd/traefik-sd/internal/testbed"
)

// reloadVariant is one way of configuring the routers: config renders n
// routers and extra more (the reload adds one).
type reloadVariant struct {
	name   string
	config func(extra int) string
}

// reload measures, per variant, how long Traefik takes from an empty
// configuration to serving n routers (Load), then to serving one router more
// with every router rebuilt (Reload): New runs again for each middleware.
//
// Each measurement has a Traefik of its own, started fresh. A Traefik that
// has built one variant's routers keeps their garbage, Yaegi's and the WASM
// runtimes' memory until its collector and finalizers catch up, and the
// next variant would pay for it; a fresh one measures every variant from
// the same state, which is also what a worker restarting with n circuits
// does. The order of the variants turns by one each round, so no variant
// always runs first (cold page cache, CPU frequency) or last, and every
// round prints its lines as it ends.
func reload(t testbed.T, dir, backend, sidecar string, n, rounds int, profile bool, profileDir string) {
	plain := func(plugin string) func(int) string {
		return func(extra int) string { return renderTOML(t, routersTree(n+extra, plugin, backend, sidecar)) }
	}
	chain := func(sd bool) func(int) string {
		return func(extra int) string { return renderTOML(t, chainTree(t, n+extra, backend, sidecar, sd)) }
	}
	variants := []reloadVariant{
		{"baseline=without-plugin", plain("")},
		{"noop-yaegi-plugin", plain("noop")},
		{"with-plugin", plain("traefik-sd")},
		{"backendai-chain", chain(false)},
		{"backendai-chain+traefik-sd", chain(true)},
	}
	// Rendered once: 10,000 circuits of the chain are tens of megabytes of
	// configuration, and rendering them between measurements would only
	// load the machine while Traefik starts.
	configs := map[string][2]string{}
	for _, v := range variants {
		configs[v.name] = [2]string{v.config(0), v.config(1)}
	}
	longest := map[string]time.Duration{}
	for round := 0; round < rounds; round++ {
		for k := range variants {
			v := variants[(round+k)%len(variants)]
			tr := startTraefik(t, dir, fmt.Sprintf("reload-%d-%s", round, v.name), false)
			start := time.Now()
			tr.writeDynamic(t, configs[v.name][0])
			waitServed(t, tr, fmt.Sprintf("c%d.example", n-1), 5*time.Minute)
			first := time.Since(start)
			start = time.Now()
			tr.writeDynamic(t, configs[v.name][1])
			waitServed(t, tr, fmt.Sprintf("c%d.example", n), 5*time.Minute)
			again := time.Since(start)
			tr.checkLog(t, "reload "+v.name)
			tr.stop()
			fmt.Printf("BenchmarkTraefikLoad%dRouters/%s\t1\t%d ns/op\n", n, v.name, first.Nanoseconds())
			fmt.Printf("BenchmarkTraefikReload%dRouters/%s\t1\t%d ns/op\n", n, v.name, again.Nanoseconds())
			longest[v.name] = max(longest[v.name], again)
		}
	}
	if !profile {
		return
	}
	// Each goal's variant and its baseline (with-plugin against the no-op
	// plugin, the chain with traefik-sd against without), so that the
	// report can say part by part where the added CPU goes.
	for _, v := range variants {
		if v.name != "baseline=without-plugin" {
			profileReload(t, dir, v.name, configs[v.name], n, longest[v.name], profileDir)
		}
	}
}

// renderTOML writes a dynamic configuration for Traefik's file provider in
// TOML. In YAML the format would cost more than what is measured: Traefik
// decodes YAML with gopkg.in/yaml.v3, which checks every mapping for
// duplicate keys pair by pair, and http.middlewares of 10,000 Backend.AI
// circuits has 40,000 keys. In a reload of backendai-chain+traefik-sd at
// 10,000 routers from YAML, that decoding was 42% of Traefik's CPU samples,
// and it grows with the square of the middlewares a variant adds; a tree of
// that shape decodes in 16.5 s from YAML and in 2.5 s from TOML, whose
// decoder is linear. Backend.AI's etcd provider has neither cost.
func renderTOML(t testbed.T, tree map[string]any) string {
	var b strings.Builder
	testbed.Must(t, toml.NewEncoder(&b).Encode(tree), "dynamic configuration")
	return b.String()
}

// routersTree is n plain routers, each with its own service and, with
// plugin, its own middleware of that plugin.
func routersTree(n int, plugin string, backend, sidecar string) map[string]any {
	routers, services, middlewares := map[string]any{}, map[string]any{}, map[string]any{}
	for i := 0; i < n; i++ {
		r := map[string]any{"rule": fmt.Sprintf("Host(`c%d.example`)", i), "service": fmt.Sprintf("s%d", i)}
		services[fmt.Sprintf("s%d", i)] = map[string]any{"loadBalancer": map[string]any{"servers": []any{map[string]any{"url": backend}}}}
		if plugin != "" {
			r["middlewares"] = []any{fmt.Sprintf("sd%d", i)}
			cfg := map[string]any{"circuitId": fmt.Sprintf("c%d", i)}
			if plugin == "traefik-sd" {
				cfg["sidecarURL"] = sidecar
			}
			middlewares[fmt.Sprintf("sd%d", i)] = map[string]any{"plugin": map[string]any{plugin: cfg}}
		}
		routers[fmt.Sprintf("r%d", i)] = r
	}
	conf := map[string]any{"routers": routers, "services": services}
	if plugin != "" {
		conf["middlewares"] = middlewares
	}
	return map[string]any{"http": conf}
}

// chainTree is what Backend.AI's coordinator writes for n interactive HTTP
// circuits, key for key (coordinator.Writer, with the traefik-sd patch's
// setting when sd): each router's chain is CORSHeaders,
// bai_ipallowlist_<id>, bai_appproxy_plugin_<id> (WASM),
// bai_appproxy_plugin_<id>_go (Yaegi) and, with sd, bai_sd_<id>. The
// coordinator writes etcd keys; here they go to the file provider as the
// same tree, so that the figures differ from the other variants only by the
// chain, not by Traefik's etcd provider (which re-lists the whole tree on
// every change).
func chainTree(t testbed.T, n int, backend, sidecar string, sd bool) map[string]any {
	u, err := url.Parse(backend)
	testbed.Must(t, err, "backend URL")
	host, portText, err := net.SplitHostPort(u.Host)
	testbed.Must(t, err, "backend URL")
	port, err := strconv.Atoi(portText)
	testbed.Must(t, err, "backend port")
	w := &coordinator.Writer{Authority: "bench-worker"}
	if sd {
		w.SD = &coordinator.TraefikSD{SidecarURL: sidecar}
	}
	root := w.RootKey() + "/"
	tree := map[string]any{}
	for i := 0; i < n; i++ {
		// Interactive, so that sessionids lists the session as Backend.AI
		// writes it (an inference circuit's is empty, and writes no key).
		// No health check: 10,000 of them would probe the backend during
		// the measurement, as no variant without the chain does.
		c := coordinator.Circuit{
			ID: fmt.Sprintf("%08d-0000-4000-8000-000000000000", i), App: "jupyter", Mode: "interactive",
			Hostname: fmt.Sprintf("c%d.example", i),
			Routes: []coordinator.Route{{
				SessionID: fmt.Sprintf("%08d-0000-4000-8000-0000000000a0", i), Host: host, Port: port,
			}},
			// The loopback range lets the benchmark's own requests through.
			AllowedClientIPs: []string{"10.0.0.0/8", "192.168.0.0/16", "127.0.0.0/8"},
		}
		for k, v := range w.Keys(c) {
			rel, ok := strings.CutPrefix(k, root)
			if !ok {
				t.Fatalf("coordinator key %q is outside %q", k, root)
			}
			insertKey(t, tree, strings.Split(rel, "/"), v)
		}
	}
	return kvLists(tree).(map[string]any)
}

// insertKey puts one etcd key (its path segments, each percent-encoded as
// the coordinator quotes them) into tree.
func insertKey(t testbed.T, tree map[string]any, path []string, value string) {
	for i, seg := range path {
		name, err := url.PathUnescape(seg)
		testbed.Must(t, err, "coordinator key segment %q", seg)
		if i == len(path)-1 {
			tree[name] = value
			return
		}
		next, ok := tree[name].(map[string]any)
		if !ok {
			next = map[string]any{}
			tree[name] = next
		}
		tree = next
	}
}

// kvLists turns the maps whose keys are 0, 1, … into lists, as Traefik's KV
// providers read them (entrypoints/0, servers/0/url, sessionids/0, …).
func kvLists(v any) any {
	m, ok := v.(map[string]any)
	if !ok {
		return v
	}
	list := make([]any, len(m))
	for k, x := range m {
		i, err := strconv.Atoi(k)
		if err != nil || i < 0 || i >= len(m) || strconv.Itoa(i) != k {
			list = nil
			break
		}
		list[i] = kvLists(x)
	}
	if list != nil && len(m) > 0 {
		return list
	}
	out := make(map[string]any, len(m))
	for k, x := range m {
		out[k] = kvLists(x)
	}
	return out
}

// appProxyLocalPlugins declares the stand-ins for Backend.AI's two plugins
// under the names its coordinator writes, as lines of Traefik's static
// experimental.localPlugins.
const appProxyLocalPlugins = `    appproxy-traefik-plugin:
      moduleName: example.com/appproxy-wasm
    appproxy-traefik-plugin-go:
      moduleName: example.com/appproxygo
`

// installAppProxyPlugins adds the stand-ins for Backend.AI's plugins, which
// are not available outside Backend.AI.
//
// The WASM one is an http-wasm guest that Traefik runs as it runs the real
// one (Traefik compiles the module once, then per middleware reads the file,
// makes a wazero runtime, instantiates WASI and the guest, and hands it the
// configuration as JSON), with a guest that does nothing: what Traefik spends
// per WASM middleware, not what the real guest spends. It is assembled here
// (noopHTTPWasmGuest) rather than compiled with Go: a Go guest (GOOS=wasip1,
// //go:wasmexport, -buildmode=c-shared so that the instance outlives its
// initialization) is a 1.8 MB module declaring 32 pages (2 MiB) of memory,
// and Traefik runs Go's runtime initialization in every instance: 10,000
// routers would declare 20 GiB of guest memory, and the figure would be Go's
// WASM runtime's rather than Traefik's.
//
// The Yaegi one (testdata/appproxy-go-plugin) takes the coordinator's keys
// into a Config and returns next.
func installAppProxyPlugins(t testbed.T, dir string) {
	wasmDir := filepath.Join(dir, "plugins-local", "src", "example.com", "appproxy-wasm")
	testbed.Must(t, os.MkdirAll(wasmDir, 0o755), "WASM stand-in")
	testbed.Must(t, os.WriteFile(filepath.Join(wasmDir, ".traefik.yml"), []byte("displayName: appproxy stand-in (WASM)\ntype: middleware\nruntime: wasm\nwasmPath: plugin.wasm\nsummary: does nothing\ntestData: {}\n"), 0o644), "WASM stand-in manifest")
	testbed.Must(t, os.WriteFile(filepath.Join(wasmDir, "plugin.wasm"), noopHTTPWasmGuest(), 0o644), "WASM stand-in module")

	installYaegiPlugin(t, dir, "appproxygo", "appproxy-go-plugin", "appproxygo.go")
}

// noopHTTPWasmGuest is the smallest module http-wasm's host accepts (it
// checks these three exports and their signatures): one page of memory,
// handle_request returning 1 (go on to the next handler, request context 0)
// and an empty handle_response. It imports nothing, so it never reads its
// configuration; the host still marshals and hands it over.
func noopHTTPWasmGuest() []byte {
	const (
		typeFunc     = 0x60
		i32, i64     = 0x7f, 0x7e
		exportFunc   = 0x00
		exportMemory = 0x02
		opI64Const   = 0x42
		opEnd        = 0x0b
	)
	leb := func(b []byte, v int) []byte {
		for {
			c := byte(v & 0x7f)
			v >>= 7
			if v == 0 {
				return append(b, c)
			}
			b = append(b, c|0x80)
		}
	}
	vec := func(items ...[]byte) []byte {
		out := leb(nil, len(items))
		for _, it := range items {
			out = append(out, it...)
		}
		return out
	}
	section := func(id byte, content []byte) []byte {
		return append(leb([]byte{id}, len(content)), content...)
	}
	name := func(s string) []byte { return append(leb(nil, len(s)), s...) }
	body := func(code ...byte) []byte {
		b := append([]byte{0}, code...) // no locals
		return append(leb(nil, len(b)), b...)
	}
	m := []byte{0x00, 'a', 's', 'm', 0x01, 0x00, 0x00, 0x00}
	m = append(m, section(1, vec( // types
		[]byte{typeFunc, 0, 1, i64},      // () -> i64
		[]byte{typeFunc, 2, i32, i32, 0}, // (i32, i32) -> ()
	))...)
	m = append(m, section(3, vec([]byte{0}, []byte{1}))...) // functions: their types
	m = append(m, section(5, vec([]byte{0x00, 0x01}))...)   // memory: 1 page, no maximum
	m = append(m, section(7, vec(                           // exports
		append(name("memory"), exportMemory, 0),
		append(name("handle_request"), exportFunc, 0),
		append(name("handle_response"), exportFunc, 1),
	))...)
	m = append(m, section(10, vec( // code
		body(opI64Const, 1, opEnd),
		body(opEnd),
	))...)
	return m
}
