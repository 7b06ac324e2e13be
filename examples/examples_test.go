// Package examples holds the configuration an operator copies; its tests
// check that what it says still holds.
package examples

import (
	"bytes"
	"errors"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/traefik-sd/traefik-sd/internal/testbed"
	"github.com/traefik-sd/traefik-sd/sidecar/config"
	"gopkg.in/yaml.v3"
)

type container struct {
	Name            string           `yaml:"name"`
	Args            []string         `yaml:"args"`
	Env             []map[string]any `yaml:"env"`
	LivenessProbe   map[string]any   `yaml:"livenessProbe"`
	ReadinessProbe  map[string]any   `yaml:"readinessProbe"`
	Resources       map[string]any   `yaml:"resources"`
	SecurityContext map[string]any   `yaml:"securityContext"`
	VolumeMounts    []map[string]any `yaml:"volumeMounts"`
	Extra           map[string]any   `yaml:",inline"`
}

type document struct {
	Kind string `yaml:"kind"`
	Spec struct {
		Template struct {
			Spec struct {
				Containers []container      `yaml:"containers"`
				Volumes    []map[string]any `yaml:"volumes"`
			} `yaml:"spec"`
		} `yaml:"template"`
		ClusterIP string `yaml:"clusterIP"`
	} `yaml:"spec"`
}

// TestKubernetesPodIsDeployable checks the pod an operator copies: every
// argument is an option of this sidecar; secrets come from files mounted
// from a Secret, not from the environment; probes use /healthz only, so
// that readiness never takes Traefik out of service; resources and a
// non-root read-only security context are set; a headless Service gives
// replicas their own names.
func TestKubernetesPodIsDeployable(t *testing.T) {
	raw, err := os.ReadFile("kubernetes.yaml")
	if err != nil {
		t.Fatal(err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(raw))
	var sidecar *container
	var volumes []map[string]any
	headless := false
	for {
		var d document
		if err := dec.Decode(&d); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		switch d.Kind {
		case "Deployment":
			volumes = d.Spec.Template.Spec.Volumes
			for i, c := range d.Spec.Template.Spec.Containers {
				if c.Name == "traefik-sd" {
					sidecar = &d.Spec.Template.Spec.Containers[i]
				}
			}
		case "Service":
			headless = d.Spec.ClusterIP == "None"
		}
	}
	if sidecar == nil {
		t.Fatal("no traefik-sd container in the Deployment")
	}
	if !headless {
		t.Error("no headless Service for per-replica names")
	}
	files := map[string]bool{}
	for _, a := range sidecar.Args {
		name, value, _ := strings.Cut(strings.TrimPrefix(a, "--"), "=")
		if !config.IsOption(name) {
			t.Errorf("argument %s is not an option of traefik-sd", a)
		}
		if strings.HasSuffix(strings.ToLower(name), "file") {
			files[value] = true
		}
		for _, secret := range []string{"token", "password"} {
			if strings.HasSuffix(strings.ToLower(name), secret) {
				t.Errorf("argument %s carries a secret in the pod spec; use its File variant", a)
			}
		}
	}
	if len(files) < 3 {
		t.Errorf("secrets from files: %v; want the push token, the Redis password and the coordinator token", files)
	}
	for _, e := range sidecar.Env {
		name, _ := e["name"].(string)
		if strings.HasPrefix(name, config.EnvPrefix) && (strings.Contains(name, "TOKEN") || strings.Contains(name, "PASSWORD")) {
			t.Errorf("secret %s in the environment; mount it as a file", name)
		}
	}
	secretVolume := false
	for _, v := range volumes {
		if _, ok := v["secret"]; ok {
			secretVolume = true
		}
	}
	if !secretVolume {
		t.Error("no volume from a Secret")
	}
	for probe, p := range map[string]map[string]any{"liveness": sidecar.LivenessProbe, "readiness": sidecar.ReadinessProbe} {
		get, _ := p["httpGet"].(map[string]any)
		if get["path"] != "/healthz" {
			t.Errorf("%s probe on %v, want /healthz", probe, get["path"])
		}
	}
	if _, ok := sidecar.Resources["requests"]; !ok {
		t.Error("no resource requests")
	}
	if _, ok := sidecar.Resources["limits"]; !ok {
		t.Error("no resource limits")
	}
	for key, want := range map[string]any{"runAsNonRoot": true, "readOnlyRootFilesystem": true, "allowPrivilegeEscalation": false} {
		if sidecar.SecurityContext[key] != want {
			t.Errorf("securityContext.%s = %v, want %v", key, sidecar.SecurityContext[key], want)
		}
	}

	kubectl, err := exec.LookPath("kubectl")
	if err != nil {
		t.Log("kubectl is not installed here: the manifest's structure was checked, not kubectl create --dry-run=client")
		return
	}
	out, err := exec.Command(kubectl, "create", "--dry-run=client", "-o", "name", "-f", "kubernetes.yaml").CombinedOutput()
	switch {
	case err != nil && strings.Contains(string(out), "connection refused"):
		// A client-side dry run still asks a cluster which kinds exist.
		t.Logf("kubectl is here but no cluster answers, so kubectl create --dry-run=client cannot run: %s", firstLine(out))
	case err != nil:
		t.Errorf("kubectl create --dry-run=client: %v\n%s", err, out)
	default:
		t.Logf("kubectl create --dry-run=client: %s", bytes.TrimSpace(out))
	}
}

func firstLine(b []byte) string {
	line, _, _ := strings.Cut(strings.TrimSpace(string(b)), "\n")
	return line
}

// TestREADMECitesTestsThatExist: every test or fuzz target the README
// cites as proof is a function in some _test.go file of this repository,
// so that a renamed or deleted test cannot leave a claim without its proof.
func TestREADMECitesTestsThatExist(t *testing.T) {
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	defined := map[string]bool{}
	err = filepath.WalkDir("..", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == "vendor" || strings.HasPrefix(d.Name(), ".")) && path != ".." {
			return filepath.SkipDir
		}
		if !strings.HasSuffix(path, "_test.go") {
			return nil
		}
		src, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for _, m := range funcName.FindAllSubmatch(src, -1) {
			defined[string(m[1])] = true
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	cited := 0
	for _, m := range citedName.FindAllSubmatch(readme, -1) {
		cited++
		if !defined[string(m[1])] {
			t.Errorf("the README cites %s, which no _test.go defines", m[1])
		}
	}
	if cited < 40 {
		t.Errorf("only %d tests cited: the pattern no longer finds them", cited)
	}
}

var (
	funcName  = regexp.MustCompile(`(?m)^func ((?:Test|Fuzz|Benchmark)[A-Za-z0-9_]*)\(`)
	citedName = regexp.MustCompile("`((?:Test|Fuzz|Benchmark)[A-Z][A-Za-z0-9_]*)`")
)

// TestAlertRules: examples/alerts.yml is valid (promtool check rules) and
// each alert fires on series that should fire it and stays silent on the
// ones that should not (promtool test rules alerts_test.yml).
func TestAlertRules(t *testing.T) {
	promtool := testbed.Binary(t, "PROMTOOL_BIN", "promtool")
	for _, args := range [][]string{{"check", "rules", "alerts.yml"}, {"test", "rules", "alerts_test.yml"}} {
		out, err := exec.Command(promtool, args...).CombinedOutput()
		if err != nil {
			t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
}
