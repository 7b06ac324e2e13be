//go:build release

package packaging

import (
	"archive/zip"
	"crypto/sha256"
	"debug/elf"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/mod/module"
	"gopkg.in/yaml.v3"
)

// TestDist runs make dist into a directory of its own and checks that it
// holds exactly the release artifacts, named after git describe: the
// static linux/amd64 binary (its --version says that version), the static
// linux/arm64 one (an aarch64 ELF), the plugin's module zip under the
// module version (the tag, or Go's pseudo-version of the commit) with its
// experimental.plugins entry carrying the zip's hash, and SHA256SUMS, which
// names every other file once and which sha256sum -c accepts.
func TestDist(t *testing.T) {
	root := repo(t)
	version, revision := describe(t, root)
	moduleVersion := version
	if !semverTag.MatchString(version) {
		when := strings.TrimSpace(run(t, root, time.Minute, "git", "show", "-s", "--format=%ct", "HEAD"))
		sec, err := strconv.ParseInt(when, 10, 64)
		if err != nil {
			t.Fatal(err)
		}
		moduleVersion = module.PseudoVersion("", "", time.Unix(sec, 0), revision[:12])
		if strings.HasSuffix(version, "-dirty") {
			moduleVersion += "-dirty"
		}
	}

	dist := filepath.Join(t.TempDir(), "dist")
	start := time.Now()
	run(t, root, 10*time.Minute, "make", "--no-print-directory", "dist", "DIST="+dist)
	t.Logf("make dist: %s", time.Since(start).Round(time.Millisecond))

	amd64 := "traefik-sd-" + version + "-linux-amd64"
	arm64 := "traefik-sd-" + version + "-linux-arm64"
	zipName := "traefik-sd-plugin-" + moduleVersion + ".zip"
	entry := "traefik-sd-plugin-" + moduleVersion + ".yml"
	want := []string{amd64, arm64, zipName, entry, "SHA256SUMS"}
	sort.Strings(want)
	entries, err := os.ReadDir(dist)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range entries {
		got = append(got, e.Name())
	}
	if !slices.Equal(got, want) {
		t.Fatalf("make dist wrote %q, want exactly %q", got, want)
	}

	// SHA256SUMS: every other file once, with its sum; sha256sum agrees.
	sums, err := os.ReadFile(filepath.Join(dist, "SHA256SUMS"))
	if err != nil {
		t.Fatal(err)
	}
	listed := map[string]string{}
	for _, line := range strings.Split(strings.TrimSuffix(string(sums), "\n"), "\n") {
		sum, name, ok := strings.Cut(line, "  ")
		if !ok || len(sum) != 64 {
			t.Errorf("SHA256SUMS: line %q is not <sha256>  <file>", line)
			continue
		}
		if _, dup := listed[name]; dup {
			t.Errorf("SHA256SUMS lists %s twice", name)
		}
		listed[name] = sum
	}
	for _, name := range want {
		if name == "SHA256SUMS" {
			continue
		}
		if _, ok := listed[name]; !ok {
			t.Errorf("SHA256SUMS does not list %s", name)
		} else if sum := fileSHA256(t, filepath.Join(dist, name)); listed[name] != sum {
			t.Errorf("SHA256SUMS: %s has sha256 %s, listed %s", name, sum, listed[name])
		}
		delete(listed, name)
	}
	for name := range listed {
		t.Errorf("SHA256SUMS lists %s, which make dist did not write", name)
	}
	check := exec.Command("sha256sum", "--check", "--strict", "SHA256SUMS")
	check.Dir = dist
	if out, err := check.CombinedOutput(); err != nil {
		t.Errorf("sha256sum --check SHA256SUMS: %v\n%s", err, out)
	}

	// The binaries: static, for their architecture, stamped.
	checkStaticELF(t, filepath.Join(dist, amd64), elf.EM_X86_64)
	checkStaticELF(t, filepath.Join(dist, arm64), elf.EM_AARCH64)
	if runtime.GOARCH == "amd64" {
		out, err := exec.Command(filepath.Join(dist, amd64), "--version").CombinedOutput()
		if want := "traefik-sd " + version + " (revision " + revision; err != nil || !strings.HasPrefix(string(out), want) {
			t.Errorf("%s --version: %v %q, want it to begin %q", amd64, err, out, want)
		}
	}

	// The module zip, as the Go module proxy serves it, and its entry.
	z, err := zip.OpenReader(filepath.Join(dist, zipName))
	if err != nil {
		t.Fatal(err)
	}
	defer z.Close()
	prefix := "github.com/traefik-sd/traefik-sd@" + moduleVersion + "/"
	have := map[string]bool{}
	for _, f := range z.File {
		if !strings.HasPrefix(f.Name, prefix) {
			t.Errorf("%s holds %s, outside %s", zipName, f.Name, prefix)
		}
		have[strings.TrimPrefix(f.Name, prefix)] = true
	}
	for _, f := range []string{"go.mod", ".traefik.yml", "plugin/plugin.go"} {
		if !have[f] {
			t.Errorf("%s lacks %s, which Traefik loads", zipName, f)
		}
	}
	raw, err := os.ReadFile(filepath.Join(dist, entry))
	if err != nil {
		t.Fatal(err)
	}
	var static struct {
		Experimental struct {
			Plugins map[string]struct {
				ModuleName string `yaml:"moduleName"`
				Version    string `yaml:"version"`
				Hash       string `yaml:"hash"`
			} `yaml:"plugins"`
		} `yaml:"experimental"`
	}
	if err := yaml.Unmarshal(raw, &static); err != nil {
		t.Fatalf("%s: %v", entry, err)
	}
	p, ok := static.Experimental.Plugins["traefik-sd"]
	if !ok || p.ModuleName != "github.com/traefik-sd/traefik-sd" || p.Version != moduleVersion || p.Hash != fileSHA256(t, filepath.Join(dist, zipName)) {
		t.Errorf("%s: experimental.plugins.traefik-sd = %+v (present %v), want the module at %s with the zip's sha256", entry, p, ok, moduleVersion)
	}
}

func fileSHA256(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}
