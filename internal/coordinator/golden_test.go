package coordinator_test

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"

	"github.com/traefik-sd/traefik-sd/internal/coordinator"
)

// testdata/coordinator/backendai-keys.json is what Backend.AI's own code
// writes (integrations/backend.ai/golden/backendai_keys.py runs the
// coordinator's real methods, unpatched and patched). These tests hold the
// stand-in to it, key for key and batch for batch.

const goldenPath = "../../testdata/coordinator/backendai-keys.json"

type goldenFile struct {
	BaseCommit string           `json:"base_commit"`
	MaxTxnOps  int              `json:"max_txn_ops"`
	Scenarios  []goldenScenario `json:"scenarios"`
}

type goldenScenario struct {
	Name             string            `json:"name"`
	Inputs           goldenInputs      `json:"inputs"`
	Unpatched        map[string]string `json:"unpatched"`
	PatchedOff       map[string]string `json:"patched_off"`
	PatchedOn        map[string]string `json:"patched_on"`
	BatchesUnpatched [][]string        `json:"batches_unpatched"`
	BatchesOff       [][]string        `json:"batches_off"`
	BatchesOn        [][]string        `json:"batches_on"`
	TxnPutsUnpatched []int             `json:"txn_puts_unpatched"`
	TxnPutsOff       []int             `json:"txn_puts_off"`
	TxnPutsOn        []int             `json:"txn_puts_on"`
}

type goldenInputs struct {
	Namespace string `json:"namespace"`
	Worker    struct {
		ID                 string  `json:"id"`
		Authority          string  `json:"authority"`
		Hostname           string  `json:"hostname"`
		WildcardDomain     *string `json:"wildcard_domain"`
		TLSListen          bool    `json:"tls_listen"`
		LastUsedMarkerPath *string `json:"traefik_last_used_marker_path"`
	} `json:"worker"`
	Secrets struct {
		JWTSecret        string `json:"jwt_secret"`
		PermitHashSecret string `json:"permit_hash_secret"`
	} `json:"secrets"`
	ClientIPStrategy *struct {
		Depth       *int     `json:"depth"`
		ExcludedIPs []string `json:"excluded_ips"`
	} `json:"client_ip_strategy"`
	TraefikSD struct {
		Enabled     bool    `json:"enabled"`
		PluginName  string  `json:"plugin_name"`
		SidecarURL  *string `json:"sidecar_url"`
		MetricsPort *int    `json:"metrics_port"`
		MetricsPath *string `json:"metrics_path"`
	} `json:"traefik_sd"`
	CreatedAt string          `json:"created_at"`
	Circuits  []goldenCircuit `json:"circuits"`
}

type goldenCircuit struct {
	ID               string  `json:"id"`
	App              string  `json:"app"`
	Protocol         string  `json:"protocol"`
	AppMode          string  `json:"app_mode"`
	FrontendMode     string  `json:"frontend_mode"`
	Port             *int    `json:"port"`
	Subdomain        *string `json:"subdomain"`
	AllowedClientIPs *string `json:"allowed_client_ips"`
	EndpointID       *string `json:"endpoint_id"`
	HealthCheck      *struct {
		Path        string `json:"path"`
		Interval    int    `json:"interval"`
		MaxWaitTime int    `json:"max_wait_time"`
	} `json:"health_check"`
	Routes []struct {
		RouteID     *string `json:"route_id"`
		SessionID   string  `json:"session_id"`
		SessionName string  `json:"session_name"`
		KernelHost  *string `json:"kernel_host"`
		KernelPort  int     `json:"kernel_port"`
	} `json:"routes"`
}

func loadGolden(t *testing.T) goldenFile {
	t.Helper()
	raw, err := os.ReadFile(filepath.FromSlash(goldenPath))
	if err != nil {
		t.Fatalf("golden keys: %v (regenerate: see integrations/backend.ai/README.md, \"Golden keys\")", err)
	}
	var g goldenFile
	if err := json.Unmarshal(raw, &g); err != nil {
		t.Fatalf("golden keys: %v", err)
	}
	if len(g.Scenarios) == 0 {
		t.Fatal("golden keys: no scenarios")
	}
	return g
}

func deref[T any](p *T) T {
	var zero T
	if p == nil {
		return zero
	}
	return *p
}

// writer is the stand-in configured as the scenario's coordinator and
// worker; sd selects the traefik-sd setting (nil: off).
func (in goldenInputs) writer(sd bool) *coordinator.Writer {
	w := &coordinator.Writer{
		Namespace: in.Namespace, Authority: in.Worker.Authority, WorkerID: in.Worker.ID,
		TLSListen: in.Worker.TLSListen, Hostname: in.Worker.Hostname, WildcardDomain: deref(in.Worker.WildcardDomain),
		JWTSecret: in.Secrets.JWTSecret, PermitHashSecret: in.Secrets.PermitHashSecret,
	}
	if in.Worker.LastUsedMarkerPath == nil {
		w.LastUsedMarkerPathNull = true
	} else {
		w.LastUsedMarkerPath = *in.Worker.LastUsedMarkerPath
	}
	if s := in.ClientIPStrategy; s != nil {
		w.IPStrategyDepth = deref(s.Depth)
		w.IPStrategyExcludedIPs = s.ExcludedIPs
	}
	if sd {
		w.SD = &coordinator.TraefikSD{
			PluginName: in.TraefikSD.PluginName, SidecarURL: deref(in.TraefikSD.SidecarURL),
			MetricsPort: deref(in.TraefikSD.MetricsPort), MetricsPath: deref(in.TraefikSD.MetricsPath),
		}
	}
	return w
}

// circuits are the scenario's circuits as the stand-in takes them; the
// Host() rule is left for the stand-in to derive from the worker.
func (in goldenInputs) circuits(t *testing.T) []coordinator.Circuit {
	t.Helper()
	if in.CreatedAt != "2026-11-24T10:00:00+00:00" {
		t.Fatalf("created_at %s: the stand-in writes 2026-11-24T10:00:00Z", in.CreatedAt)
	}
	var out []coordinator.Circuit
	for _, gc := range in.Circuits {
		c := coordinator.Circuit{
			ID: gc.ID, App: gc.App, Mode: gc.AppMode, Protocol: gc.Protocol, FrontendMode: gc.FrontendMode,
			Port: deref(gc.Port), Subdomain: deref(gc.Subdomain),
		}
		if gc.AllowedClientIPs != nil {
			c.AllowedClientIPs = strings.Split(*gc.AllowedClientIPs, ",")
		}
		if hc := gc.HealthCheck; hc != nil {
			c.HealthCheckPath = hc.Path
			c.HealthInterval = fmt.Sprintf("%ds", hc.Interval)
			c.HealthTimeout = fmt.Sprintf("%ds", hc.MaxWaitTime)
		}
		if gc.EndpointID != nil && *gc.EndpointID != coordinator.EndpointID(c) {
			t.Fatalf("circuit %s: endpoint_id %s is not the stand-in's %s", gc.ID, *gc.EndpointID, coordinator.EndpointID(c))
		}
		for _, gr := range gc.Routes {
			if gr.SessionName != "session-"+gr.SessionID {
				t.Fatalf("circuit %s: session_name %q is not the stand-in's session-<id>", gc.ID, gr.SessionName)
			}
			r := coordinator.Route{RouteID: deref(gr.RouteID), SessionID: gr.SessionID, Port: gr.KernelPort}
			if gr.KernelHost == nil {
				r.NullHost = true
			} else {
				r.Host = *gr.KernelHost
			}
			c.Routes = append(c.Routes, r)
		}
		out = append(out, c)
	}
	return out
}

// keys are the stand-in's keys for all the circuits, merged as one start-up
// writes them.
func keys(w *coordinator.Writer, cs []coordinator.Circuit) map[string]string {
	kv := map[string]string{}
	for _, c := range cs {
		for k, v := range w.Keys(c) {
			kv[k] = v
		}
	}
	return kv
}

// diff describes how got differs from want: missing, extra and different keys.
func diff(want, got map[string]string) string {
	var missing, extra, changed []string
	for k, v := range want {
		g, ok := got[k]
		switch {
		case !ok:
			missing = append(missing, fmt.Sprintf("  - %s = %s", k, v))
		case g != v:
			changed = append(changed, fmt.Sprintf("  ~ %s\n      backend.ai: %s\n      stand-in:   %s", k, v, g))
		}
	}
	for k, v := range got {
		if _, ok := want[k]; !ok {
			extra = append(extra, fmt.Sprintf("  + %s = %s", k, v))
		}
	}
	if len(missing)+len(extra)+len(changed) == 0 {
		return ""
	}
	sort.Strings(missing)
	sort.Strings(extra)
	sort.Strings(changed)
	var b strings.Builder
	fmt.Fprintf(&b, "%d keys from Backend.AI, %d from the stand-in\n", len(want), len(got))
	if len(missing) > 0 {
		fmt.Fprintf(&b, "missing from the stand-in (%d):\n%s\n", len(missing), strings.Join(missing, "\n"))
	}
	if len(extra) > 0 {
		fmt.Fprintf(&b, "extra in the stand-in (%d):\n%s\n", len(extra), strings.Join(extra, "\n"))
	}
	if len(changed) > 0 {
		fmt.Fprintf(&b, "different values (%d):\n%s\n", len(changed), strings.Join(changed, "\n"))
	}
	return b.String()
}

func TestGoldenKeys(t *testing.T) {
	g := loadGolden(t)
	for _, sc := range g.Scenarios {
		t.Run(sc.Name, func(t *testing.T) {
			cs := sc.Inputs.circuits(t)
			if d := diff(sc.Unpatched, keys(sc.Inputs.writer(false), cs)); d != "" {
				t.Errorf("setting off: the stand-in is not Backend.AI at %s:\n%s", g.BaseCommit, d)
			}
			if !sc.Inputs.TraefikSD.Enabled {
				t.Fatal("the scenario's traefik_sd setting is not enabled")
			}
			if d := diff(sc.PatchedOn, keys(sc.Inputs.writer(true), cs)); d != "" {
				t.Errorf("setting on: the stand-in is not the patched Backend.AI:\n%s", d)
			}
		})
	}
}

// With the setting off, the patch changes nothing Backend.AI writes.
func TestGoldenPatchOffChangesNothing(t *testing.T) {
	for _, sc := range loadGolden(t).Scenarios {
		if d := diff(sc.Unpatched, sc.PatchedOff); d != "" {
			t.Errorf("%s: the patched coordinator with the setting off is not the unpatched one:\n%s", sc.Name, d)
		}
		if !reflect.DeepEqual(sc.BatchesUnpatched, sc.BatchesOff) || !reflect.DeepEqual(sc.TxnPutsUnpatched, sc.TxnPutsOff) {
			t.Errorf("%s: start-up batches %v (%v puts) with the setting off, %v (%v puts) unpatched",
				sc.Name, sc.BatchesOff, sc.TxnPutsOff, sc.BatchesUnpatched, sc.TxnPutsUnpatched)
		}
	}
}

// TCP circuits are written alike with the setting on and off, in Backend.AI
// and in the stand-in.
func TestGoldenTCPUnchangedBySetting(t *testing.T) {
	tcp := func(kv map[string]string, authority string) map[string]string {
		out := map[string]string{}
		for k, v := range kv {
			if strings.Contains(k, "/worker_"+authority+"/tcp/") {
				out[k] = v
			}
		}
		return out
	}
	seen := 0
	for _, sc := range loadGolden(t).Scenarios {
		a := sc.Inputs.Worker.Authority
		on, off := tcp(sc.PatchedOn, a), tcp(sc.PatchedOff, a)
		if d := diff(off, on); d != "" {
			t.Errorf("%s: Backend.AI's TCP keys change with the setting:\n%s", sc.Name, d)
		}
		for _, c := range sc.Inputs.circuits(t) {
			if c.Protocol != coordinator.TCP {
				continue
			}
			seen++
			if d := diff(sc.Inputs.writer(false).Keys(c), sc.Inputs.writer(true).Keys(c)); d != "" {
				t.Errorf("%s: the stand-in's TCP keys of %s change with the setting:\n%s", sc.Name, c.ID, d)
			}
		}
	}
	if seen == 0 {
		t.Fatal("no TCP circuit in the golden scenarios")
	}
}

// The stand-in's start-up batches, and each one's puts, are Backend.AI's.
func TestGoldenStartUpBatches(t *testing.T) {
	g := loadGolden(t)
	if g.MaxTxnOps != coordinator.MaxTxnOps {
		t.Errorf("Backend.AI's _ETCD_MAX_TXN_OPS is %d, the stand-in's MaxTxnOps %d", g.MaxTxnOps, coordinator.MaxTxnOps)
	}
	for _, sc := range g.Scenarios {
		cs := sc.Inputs.circuits(t)
		for _, mode := range []struct {
			name    string
			sd      bool
			batches [][]string
			puts    []int
		}{{"off", false, sc.BatchesOff, sc.TxnPutsOff}, {"on", true, sc.BatchesOn, sc.TxnPutsOn}} {
			w := sc.Inputs.writer(mode.sd)
			if got := w.Batches(cs); !reflect.DeepEqual(got, mode.batches) {
				t.Errorf("%s, setting %s: the stand-in batches\n  %v\nBackend.AI\n  %v", sc.Name, mode.name, got, mode.batches)
			}
			if got := w.BatchPuts(cs); !reflect.DeepEqual(got, mode.puts) {
				t.Errorf("%s, setting %s: the stand-in puts %v per transaction, Backend.AI %v", sc.Name, mode.name, got, mode.puts)
			}
		}
	}
}
