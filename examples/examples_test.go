// Package examples holds the configuration an operator copies; its tests
// check that what it says still holds.
package examples

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/traefik-sd/traefik-sd/internal/testbed"
	"github.com/traefik-sd/traefik-sd/sidecar/config"
	"github.com/traefik/paerser/cli"
	"gopkg.in/yaml.v3"
)

// The slice of Kubernetes' API that examples/kubernetes.yaml uses, decoded
// strictly: a field these types do not name fails the test, so a typo
// (readinessprobe, mountpath) cannot pass as an ignored key.
type (
	k8sMeta struct {
		Name   string            `yaml:"name"`
		Labels map[string]string `yaml:"labels"`
	}
	k8sHeader struct {
		APIVersion string `yaml:"apiVersion"`
		Kind       string `yaml:"kind"`
	}
	k8sDeployment struct {
		APIVersion string  `yaml:"apiVersion"`
		Kind       string  `yaml:"kind"`
		Metadata   k8sMeta `yaml:"metadata"`
		Spec       struct {
			Replicas int `yaml:"replicas"`
			Selector struct {
				MatchLabels map[string]string `yaml:"matchLabels"`
			} `yaml:"selector"`
			Template struct {
				Metadata k8sMeta `yaml:"metadata"`
				Spec     struct {
					InitContainers []k8sContainer `yaml:"initContainers"`
					Containers     []k8sContainer `yaml:"containers"`
					Volumes        []k8sVolume    `yaml:"volumes"`
				} `yaml:"spec"`
			} `yaml:"template"`
		} `yaml:"spec"`
	}
	k8sService struct {
		APIVersion string  `yaml:"apiVersion"`
		Kind       string  `yaml:"kind"`
		Metadata   k8sMeta `yaml:"metadata"`
		Spec       struct {
			ClusterIP string            `yaml:"clusterIP"`
			Selector  map[string]string `yaml:"selector"`
			Ports     []struct {
				Name       string `yaml:"name"`
				Port       int    `yaml:"port"`
				TargetPort string `yaml:"targetPort"`
			} `yaml:"ports"`
		} `yaml:"spec"`
	}
	k8sContainer struct {
		Name       string   `yaml:"name"`
		Image      string   `yaml:"image"`
		Command    []string `yaml:"command"`
		Args       []string `yaml:"args"`
		WorkingDir string   `yaml:"workingDir"`
		Env        []struct {
			Name      string `yaml:"name"`
			Value     string `yaml:"value"`
			ValueFrom *struct {
				FieldRef *struct {
					FieldPath string `yaml:"fieldPath"`
				} `yaml:"fieldRef"`
				ConfigMapKeyRef *k8sKeyRef `yaml:"configMapKeyRef"`
				SecretKeyRef    *k8sKeyRef `yaml:"secretKeyRef"`
			} `yaml:"valueFrom"`
		} `yaml:"env"`
		Ports []struct {
			Name          string `yaml:"name"`
			ContainerPort int    `yaml:"containerPort"`
		} `yaml:"ports"`
		LivenessProbe  *k8sProbe `yaml:"livenessProbe"`
		ReadinessProbe *k8sProbe `yaml:"readinessProbe"`
		Resources      struct {
			Requests map[string]string `yaml:"requests"`
			Limits   map[string]string `yaml:"limits"`
		} `yaml:"resources"`
		SecurityContext *struct {
			RunAsNonRoot             *bool `yaml:"runAsNonRoot"`
			RunAsUser                *int  `yaml:"runAsUser"`
			ReadOnlyRootFilesystem   *bool `yaml:"readOnlyRootFilesystem"`
			AllowPrivilegeEscalation *bool `yaml:"allowPrivilegeEscalation"`
			Capabilities             struct {
				Drop []string `yaml:"drop"`
			} `yaml:"capabilities"`
			SeccompProfile struct {
				Type string `yaml:"type"`
			} `yaml:"seccompProfile"`
		} `yaml:"securityContext"`
		VolumeMounts []struct {
			Name      string `yaml:"name"`
			MountPath string `yaml:"mountPath"`
			ReadOnly  bool   `yaml:"readOnly"`
		} `yaml:"volumeMounts"`
	}
	k8sKeyRef struct {
		Name string `yaml:"name"`
		Key  string `yaml:"key"`
	}
	k8sProbe struct {
		HTTPGet *struct {
			Path string `yaml:"path"`
			Port string `yaml:"port"`
		} `yaml:"httpGet"`
		PeriodSeconds int `yaml:"periodSeconds"`
	}
	k8sVolume struct {
		Name      string    `yaml:"name"`
		EmptyDir  *struct{} `yaml:"emptyDir"`
		ConfigMap *struct {
			Name string `yaml:"name"`
		} `yaml:"configMap"`
		Secret *struct {
			SecretName  string `yaml:"secretName"`
			DefaultMode *int   `yaml:"defaultMode"`
			Items       []struct {
				Key  string `yaml:"key"`
				Path string `yaml:"path"`
			} `yaml:"items"`
		} `yaml:"secret"`
	}
)

func octal(mode *int) string {
	if mode == nil {
		return "unset"
	}
	return fmt.Sprintf("%#o", *mode)
}

// strictDecode decodes one YAML document into v, refusing any field v's
// type does not name.
func strictDecode(doc *yaml.Node, v any) error {
	raw, err := yaml.Marshal(doc)
	if err != nil {
		return err
	}
	dec := yaml.NewDecoder(bytes.NewReader(raw))
	dec.KnownFields(true)
	return dec.Decode(v)
}

// TestKubernetesPodIsDeployable checks, offline, the pod an operator
// copies: the manifest decodes strictly into the Kubernetes fields it
// means; the traefik-sd container's arguments load with the sidecar's own
// loader (every one an option with a valid value) once Kubernetes has put
// in its $(VAR)s and the Secret's files; every secret comes from a file of a
// Secret volume, none from an argument or the environment; both probes are
// GETs of /healthz on the sidecar's port, so that readiness never takes
// Traefik out of service; resources and a non-root, read-only security
// context are set; a headless Service selects the pod and gives replicas
// their own names.
func TestKubernetesPodIsDeployable(t *testing.T) {
	raw, err := os.ReadFile("kubernetes.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var deployments []k8sDeployment
	var services []k8sService
	dec := yaml.NewDecoder(bytes.NewReader(raw))
	for {
		var doc yaml.Node
		if err := dec.Decode(&doc); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		var h k8sHeader
		if err := doc.Decode(&h); err != nil {
			t.Fatal(err)
		}
		switch h.APIVersion + " " + h.Kind {
		case "apps/v1 Deployment":
			var d k8sDeployment
			if err := strictDecode(&doc, &d); err != nil {
				t.Fatalf("the Deployment: %v", err)
			}
			deployments = append(deployments, d)
		case "v1 Service":
			var s k8sService
			if err := strictDecode(&doc, &s); err != nil {
				t.Fatalf("the Service: %v", err)
			}
			services = append(services, s)
		default:
			t.Fatalf("a document of kind %q %q, which this test does not check", h.APIVersion, h.Kind)
		}
	}
	if len(deployments) != 1 || len(services) != 1 {
		t.Fatalf("%d Deployments and %d Services, want one of each", len(deployments), len(services))
	}
	d, svc := deployments[0], services[0]
	pod := d.Spec.Template
	for k, v := range d.Spec.Selector.MatchLabels {
		if pod.Metadata.Labels[k] != v {
			t.Errorf("the Deployment's selector %s=%s does not match its pod's labels %v", k, v, pod.Metadata.Labels)
		}
	}
	var sidecar *k8sContainer
	for i, c := range pod.Spec.Containers {
		if c.Name == "traefik-sd" {
			sidecar = &pod.Spec.Containers[i]
		}
	}
	if sidecar == nil {
		t.Fatal("no traefik-sd container in the Deployment")
	}
	volumes := map[string]k8sVolume{}
	for _, v := range pod.Spec.Volumes {
		volumes[v.Name] = v
	}

	// Kubernetes expands $(VAR) from the container's env; an unknown one
	// would stay as it is.
	env := map[string]string{}
	for _, e := range sidecar.Env {
		if strings.HasPrefix(e.Name, config.EnvPrefix) && (strings.Contains(e.Name, "TOKEN") || strings.Contains(e.Name, "PASSWORD")) {
			t.Errorf("secret %s in the environment; mount it as a file", e.Name)
		}
		if e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil {
			t.Errorf("env %s comes from a Secret: secrets go in files", e.Name)
		}
		env[e.Name] = "value-of-" + strings.ToLower(e.Name)
	}
	env["POD_IP"] = "10.1.2.3" // an address where the sidecar's options want one
	// Where the Secret's files are in the container, and the files it holds.
	secretDir, secretFiles := "", map[string]bool{}
	for _, m := range sidecar.VolumeMounts {
		v, ok := volumes[m.Name]
		if !ok {
			t.Errorf("volume mount %s names no volume", m.Name)
			continue
		}
		if v.Secret == nil {
			continue
		}
		if mode := v.Secret.DefaultMode; !m.ReadOnly || mode == nil || *mode&0o077 != 0 {
			t.Errorf("the Secret volume %s: mounted read-only %v, defaultMode %s; want read-only and readable by its owner only", m.Name, m.ReadOnly, octal(mode))
		}
		secretDir = m.MountPath
		for _, it := range v.Secret.Items {
			secretFiles[it.Path] = true
		}
	}
	if secretDir == "" {
		t.Fatal("no Secret volume mounted in the traefik-sd container")
	}
	// Its files, as Kubernetes would write them, in a directory of the test.
	tmp := t.TempDir()
	for f := range secretFiles {
		if err := os.WriteFile(filepath.Join(tmp, f), []byte("from-the-secret-"+f+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	expand := regexp.MustCompile(`\$\(([A-Za-z_][A-Za-z0-9_]*)\)`)
	var args []string
	for _, a := range sidecar.Args {
		name, value, _ := strings.Cut(strings.TrimPrefix(a, "--"), "=")
		if !strings.HasPrefix(a, "--") || !config.IsOption(name) {
			t.Errorf("argument %s is not an option of traefik-sd", a)
		}
		for _, secret := range []string{"token", "password"} {
			if strings.HasSuffix(strings.ToLower(name), secret) {
				t.Errorf("argument %s carries a secret in the pod spec; use its File variant", a)
			}
		}
		if strings.HasSuffix(strings.ToLower(name), "file") {
			rel, err := filepath.Rel(secretDir, value)
			if err != nil || !secretFiles[rel] {
				t.Errorf("argument %s: not a file of the mounted Secret (%s: %v)", a, secretDir, secretFiles)
			}
			a = "--" + name + "=" + filepath.Join(tmp, rel)
		}
		a = expand.ReplaceAllStringFunc(a, func(ref string) string {
			v, ok := env[expand.FindStringSubmatch(ref)[1]]
			if !ok {
				t.Errorf("argument %s: %s is not in the container's env, so Kubernetes leaves it as it is", a, ref)
			}
			return v
		})
		args = append(args, a)
	}
	// The sidecar's own loader, as the container would run it.
	cfg, err := loadArgs(args)
	if err != nil {
		t.Fatalf("the traefik-sd container's arguments do not load: %v\n%s", err, strings.Join(args, "\n"))
	}
	for what, got := range map[string]string{
		"the push token": cfg.Plugin.Token, "the Redis password": cfg.BackendAI.Redis.Password,
		"the coordinator's token": cfg.BackendAI.CoordinatorToken, "the read token": cfg.Server.ReadToken,
	} {
		if !strings.HasPrefix(got, "from-the-secret-") {
			t.Errorf("%s is %q, not read from the Secret's file", what, got)
		}
	}
	// The pod's address is the cluster's: nothing may be open on it.
	if w := cfg.AccessWarnings(); cfg.Plugin.Insecure || len(w) > 0 {
		t.Errorf("the sidecar on %s leaves access open (insecure %v): %q", cfg.Address, cfg.Plugin.Insecure, w)
	}

	// Probes: /healthz on the port the sidecar listens on.
	_, listen, err := net.SplitHostPort(cfg.Address)
	if err != nil {
		t.Fatal(err)
	}
	ports := map[string]string{}
	for _, p := range sidecar.Ports {
		ports[p.Name] = strconv.Itoa(p.ContainerPort)
	}
	for probe, p := range map[string]*k8sProbe{"liveness": sidecar.LivenessProbe, "readiness": sidecar.ReadinessProbe} {
		switch {
		case p == nil || p.HTTPGet == nil:
			t.Errorf("no %s probe with httpGet", probe)
		case p.HTTPGet.Path != "/healthz":
			t.Errorf("%s probe on %s, want /healthz", probe, p.HTTPGet.Path)
		case ports[p.HTTPGet.Port] != listen && p.HTTPGet.Port != listen:
			t.Errorf("%s probe on port %s, but the sidecar listens on %s (ports %v)", probe, p.HTTPGet.Port, listen, ports)
		}
	}
	if sidecar.Resources.Requests["memory"] == "" || sidecar.Resources.Requests["cpu"] == "" || sidecar.Resources.Limits["memory"] == "" {
		t.Errorf("resources %+v: want cpu and memory requests and a memory limit", sidecar.Resources)
	}
	// Go's soft limit must sit under the container's, close enough that
	// the collector runs before the kernel's limit is met, and in a form
	// Go's runtime reads (GOMEMLIMIT=460MiB; Kubernetes writes 512Mi).
	limit, limitOK := byteCount(sidecar.Resources.Limits["memory"], map[string]int64{"Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30})
	soft, softOK := int64(0), false
	for _, e := range sidecar.Env {
		if e.Name == "GOMEMLIMIT" {
			soft, softOK = byteCount(e.Value, map[string]int64{"B": 1, "KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30})
		}
	}
	switch {
	case !limitOK || !softOK:
		t.Errorf("memory limit %q, GOMEMLIMIT %v: want both, in Kubernetes' and Go's units", sidecar.Resources.Limits["memory"], softOK)
	case soft >= limit || soft < limit*8/10:
		t.Errorf("GOMEMLIMIT is %d bytes, the memory limit %d: want 80%% to under 100%% of it", soft, limit)
	}
	sc := sidecar.SecurityContext
	switch {
	case sc == nil:
		t.Error("no securityContext")
	case sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot || sc.RunAsUser == nil || *sc.RunAsUser == 0:
		t.Errorf("securityContext: runAsNonRoot %v, runAsUser %v; want a non-root user", sc.RunAsNonRoot, sc.RunAsUser)
	case sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem:
		t.Error("securityContext.readOnlyRootFilesystem is not true")
	case sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation:
		t.Error("securityContext.allowPrivilegeEscalation is not false")
	case strings.Join(sc.Capabilities.Drop, ",") != "ALL":
		t.Errorf("securityContext.capabilities.drop %v, want [ALL]", sc.Capabilities.Drop)
	}

	// The headless Service: per-replica names, on the sidecar's port.
	if svc.Spec.ClusterIP != "None" {
		t.Errorf("the Service's clusterIP is %q: not headless, so replicas get no names of their own", svc.Spec.ClusterIP)
	}
	for k, v := range svc.Spec.Selector {
		if pod.Metadata.Labels[k] != v {
			t.Errorf("the Service selects %s=%s, which the pod's labels %v do not have", k, v, pod.Metadata.Labels)
		}
	}
	if len(svc.Spec.Selector) == 0 || len(svc.Spec.Ports) != 1 ||
		(ports[svc.Spec.Ports[0].TargetPort] != listen && svc.Spec.Ports[0].TargetPort != listen) {
		t.Errorf("the Service %+v: want it to select the pod and target the sidecar's port %s", svc.Spec, listen)
	}
}

// TestREADMECitesTestsThatExist: every test or fuzz target the README
// cites as proof is a function in the package it is cited under, so that a
// renamed, deleted or moved test cannot leave a claim without its proof.
// The README names a package, then its tests (`sidecar/engine` `TestA`,
// `TestB`; `e2e` `TestC`); a name counts under the last package named
// before it in the same table cell or paragraph, and one with no package
// there fails.
func TestREADMECitesTestsThatExist(t *testing.T) {
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	defined := map[string]map[string]bool{} // package directory -> names
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
		pkg := filepath.ToSlash(filepath.Dir(strings.TrimPrefix(path, "../")))
		if defined[pkg] == nil {
			defined[pkg] = map[string]bool{}
		}
		for _, m := range funcName.FindAllSubmatch(src, -1) {
			defined[pkg][string(m[1])] = true
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	cites := readmeCitations(string(readme), defined)
	underPackage := 0
	for _, c := range cites {
		if c.pkg == "" {
			t.Errorf("the README cites %s with no package before it in its table cell or paragraph: write `<package>` `%s`", c.name, c.name)
			continue
		}
		underPackage++
		if !defined[c.pkg][c.name] {
			var elsewhere []string
			for pkg, names := range defined {
				if names[c.name] {
					elsewhere = append(elsewhere, pkg)
				}
			}
			sort.Strings(elsewhere)
			t.Errorf("the README cites `%s` `%s`, which no _test.go of %s defines (defined in: %v)", c.pkg, c.name, c.pkg, elsewhere)
		}
	}
	if underPackage < 40 {
		t.Errorf("only %d tests cited under a package: the pattern no longer finds them", underPackage)
	}
}

type citation struct{ pkg, name string }

// readmeCitations lists the tests the README cites, each with the package
// named last before it in its table cell or paragraph ("" if none);
// packages are the directories holding tests.
func readmeCitations(readme string, packages map[string]map[string]bool) []citation {
	var cells []string
	var para []string
	flush := func() {
		if len(para) > 0 {
			cells = append(cells, strings.Join(para, "\n"))
			para = nil
		}
	}
	for _, line := range strings.Split(readme, "\n") {
		trimmed := strings.TrimSpace(line)
		switch {
		case trimmed == "":
			flush()
		case strings.HasPrefix(trimmed, "|"):
			flush()
			cells = append(cells, strings.Split(trimmed, "|")...)
		default:
			para = append(para, line)
		}
	}
	flush()
	var out []citation
	for _, cell := range cells {
		pkg := ""
		for _, m := range codeSpan.FindAllStringSubmatch(cell, -1) {
			span := m[1]
			if _, ok := packages[span]; ok {
				pkg = span
				continue
			}
			if citedName.MatchString(span) {
				out = append(out, citation{pkg: pkg, name: span})
			}
		}
	}
	return out
}

var (
	funcName  = regexp.MustCompile(`(?m)^func ((?:Test|Fuzz|Benchmark)[A-Za-z0-9_]*)\(`)
	codeSpan  = regexp.MustCompile("`([^`\n]+)`")
	citedName = regexp.MustCompile(`^(?:Test|Fuzz|Benchmark)[A-Z][A-Za-z0-9_]*$`)
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

// loadArgs loads a command line through the sidecar's own loader, as the
// binary would at start: every flag known, every value that makes sense.
func loadArgs(args []string) (*config.Configuration, error) {
	cfg := config.Default()
	var completeErr error
	cmd := config.Command(cfg, func() error { completeErr = cfg.Complete(); return nil })
	saved := os.Args
	os.Args = append([]string{"traefik-sd"}, args...)
	err := cli.Execute(cmd)
	os.Args = saved
	if err == nil {
		err = completeErr
	}
	return cfg, err
}

// TestREADMEPackageTableListsEveryPackage: every package with code of its
// own (this module's, tests aside) has a row in the README's package table,
// so that a newcomer finds each one's job there.
func TestREADMEPackageTableListsEveryPackage(t *testing.T) {
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	start := strings.Index(string(readme), "| package | job |")
	if start < 0 {
		t.Fatal("the README has no package table")
	}
	end := strings.Index(string(readme)[start:], "\n\n")
	table := string(readme)[start : start+end]
	err = filepath.WalkDir("..", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() || path == ".." {
			return nil
		}
		if d.Name() == "vendor" || d.Name() == "testdata" || strings.HasPrefix(d.Name(), ".") {
			return filepath.SkipDir
		}
		if _, err := os.Stat(filepath.Join(path, "go.mod")); err == nil {
			return filepath.SkipDir // another module (the plugin under Yaegi)
		}
		code, _ := filepath.Glob(filepath.Join(path, "*.go"))
		own := false
		for _, f := range code {
			own = own || !strings.HasSuffix(f, "_test.go")
		}
		pkg := filepath.ToSlash(strings.TrimPrefix(path, "../"))
		if own && pkg != "examples" && !strings.Contains(table, "`"+pkg+"`") {
			t.Errorf("the README's package table has no row for %s", pkg)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// byteCount reads a count of bytes with one of units' suffixes.
func byteCount(s string, units map[string]int64) (int64, bool) {
	for suffix, unit := range units {
		if n, err := strconv.ParseInt(strings.TrimSuffix(s, suffix), 10, 64); strings.HasSuffix(s, suffix) && err == nil && n > 0 {
			return n * unit, true
		}
	}
	return 0, false
}
