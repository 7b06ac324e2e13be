package packaging

import (
	"errors"
	"io"
	"os"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/traefik-sd/traefik-sd/sidecar/config"
	"github.com/traefik-sd/traefik-sd/sidecar/metrics"
	"gopkg.in/yaml.v3"
)

func readChangelog(t *testing.T) string {
	t.Helper()
	raw, err := os.ReadFile("../CHANGELOG.md")
	if err != nil {
		t.Fatal(err)
	}
	return string(raw)
}

var (
	versionHeading = regexp.MustCompile(`^## \[(\d+\.\d+\.\d+(?:-[0-9A-Za-z.-]+)?)\] - (\d{4}-\d{2}-\d{2})$`)
	linkDefinition = regexp.MustCompile(`(?m)^\[([^\]]+)\]: https://\S+$`)
	changeTypes    = []string{"Added", "Changed", "Deprecated", "Removed", "Fixed", "Security"}
)

// TestChangelogIsKeepAChangelog checks CHANGELOG.md's shape as Keep a
// Changelog 1.1.0 has it: the title, "## [Unreleased]" first, then
// "## [version] - YYYY-MM-DD" with dates going back and no version twice,
// under each only "### " sections of the six change types, each at most
// once and none empty, and a link definition for every version.
func TestChangelogIsKeepAChangelog(t *testing.T) {
	lines := strings.Split(readChangelog(t), "\n")
	if lines[0] != "# Changelog" {
		t.Errorf("first line %q, want # Changelog", lines[0])
	}
	links := map[string]bool{}
	for _, m := range linkDefinition.FindAllStringSubmatch(strings.Join(lines, "\n"), -1) {
		links[m[1]] = true
	}
	var versions []string
	var last time.Time
	var sections map[string]bool
	section, items := "", 0
	endSection := func(at int) {
		if section != "" && items == 0 {
			t.Errorf("line %d: section %q has no entry", at, section)
		}
		section, items = "", 0
	}
	for i, line := range lines {
		n := i + 1
		switch {
		case strings.HasPrefix(line, "## "):
			endSection(n)
			sections = map[string]bool{}
			if len(versions) == 0 {
				if line != "## [Unreleased]" {
					t.Errorf("line %d: the first version heading is %q, want ## [Unreleased]", n, line)
				}
				versions = append(versions, "Unreleased")
				continue
			}
			m := versionHeading.FindStringSubmatch(line)
			if m == nil {
				t.Errorf("line %d: %q is not ## [version] - YYYY-MM-DD", n, line)
				continue
			}
			date, err := time.Parse(time.DateOnly, m[2])
			if err != nil {
				t.Errorf("line %d: %v", n, err)
			}
			if !last.IsZero() && date.After(last) {
				t.Errorf("line %d: %s is later than the version above it", n, m[2])
			}
			last = date
			if slices.Contains(versions, m[1]) {
				t.Errorf("line %d: version %s twice", n, m[1])
			}
			versions = append(versions, m[1])
		case strings.HasPrefix(line, "### "):
			endSection(n)
			section = strings.TrimPrefix(line, "### ")
			if len(versions) == 0 {
				t.Errorf("line %d: %q before any version", n, line)
			} else if !slices.Contains(changeTypes, section) {
				t.Errorf("line %d: %q is not one of Keep a Changelog's types %v", n, section, changeTypes)
			} else if sections[section] {
				t.Errorf("line %d: %q twice under %s", n, section, versions[len(versions)-1])
			}
			sections[section] = true
		case strings.HasPrefix(line, "#") && i > 0:
			t.Errorf("line %d: heading %q: only #, ## and ### are used", n, line)
		case strings.HasPrefix(line, "- "):
			if section == "" {
				t.Errorf("line %d: an entry outside a ### section", n)
			}
			items++
		case strings.HasPrefix(line, "["):
			endSection(n)
		}
	}
	endSection(len(lines))
	if len(versions) < 2 {
		t.Errorf("versions %q: want Unreleased and the earlier states", versions)
	}
	for _, v := range versions {
		if !links[v] {
			t.Errorf("no link definition [%s]: https://…", v)
		}
	}
}

// TestChangelogNamesEveryOption checks that every option of the sidecar
// (the list --help prints and the README's options table must equal, see
// sidecar/config TestREADMEListsEveryOption) is named in CHANGELOG.md, in
// backquotes, whole: a new option without an entry fails here.
func TestChangelogNamesEveryOption(t *testing.T) {
	text := readChangelog(t)
	opts, err := config.Options()
	if err != nil {
		t.Fatal(err)
	}
	var missing []string
	for _, o := range opts {
		if !strings.Contains(text, "`--"+o.Flag+"`") {
			missing = append(missing, "--"+o.Flag)
		}
	}
	if len(opts) < 50 || len(missing) > 0 {
		t.Errorf("%d options; CHANGELOG.md does not name %q: say when each came (### Added) or changed", len(opts), missing)
	}
}

// TestChangelogNamesEveryMetric does the same for the sidecar's own
// metrics, as its registry has them.
func TestChangelogNamesEveryMetric(t *testing.T) {
	text := readChangelog(t)
	m := metrics.New()
	m.CountConnections(func() float64 { return 0 }, func() float64 { return 0 })
	families, err := m.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var names, missing []string
	for _, f := range families {
		if name := f.GetName(); strings.HasPrefix(name, "traefik_sd_") {
			names = append(names, name)
			if !strings.Contains(text, "`"+name+"`") && !strings.Contains(text, "`"+name+"{") {
				missing = append(missing, name)
			}
		}
	}
	sort.Strings(missing)
	if len(names) < 30 || len(missing) > 0 {
		t.Errorf("%d metrics; CHANGELOG.md does not name %q", len(names), missing)
	}
}

// TestKubernetesExampleRunsTheImageMakeBuilds checks that
// examples/kubernetes.yaml's traefik-sd container runs $(IMAGE):latest as
// the Makefile names it, and that no container runs a shell from that
// image, which has none.
func TestKubernetesExampleRunsTheImageMakeBuilds(t *testing.T) {
	mk, err := os.ReadFile("../Makefile")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^IMAGE\s*\?=\s*(\S+)\s*$`).FindSubmatch(mk)
	if m == nil {
		t.Fatal("the Makefile sets no IMAGE ?= <name>")
	}
	image := string(m[1]) + ":latest"
	raw, err := os.ReadFile("../examples/kubernetes.yaml")
	if err != nil {
		t.Fatal(err)
	}
	type container struct {
		Name    string   `yaml:"name"`
		Image   string   `yaml:"image"`
		Command []string `yaml:"command"`
	}
	var found int
	dec := yaml.NewDecoder(strings.NewReader(string(raw)))
	for {
		var doc struct {
			Kind string `yaml:"kind"`
			Spec struct {
				Template struct {
					Spec struct {
						InitContainers []container `yaml:"initContainers"`
						Containers     []container `yaml:"containers"`
					} `yaml:"spec"`
				} `yaml:"template"`
			} `yaml:"spec"`
		}
		if err := dec.Decode(&doc); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatalf("examples/kubernetes.yaml: %v", err)
		}
		for _, c := range append(doc.Spec.Template.Spec.InitContainers, doc.Spec.Template.Spec.Containers...) {
			if c.Name == "traefik-sd" {
				found++
				if c.Image != image {
					t.Errorf("the traefik-sd container runs %q, want %q (make image)", c.Image, image)
				}
			}
			if strings.Contains(c.Image, "traefik-sd") && len(c.Command) > 0 && slices.Contains([]string{"sh", "/bin/sh", "bash", "/bin/bash"}, c.Command[0]) {
				t.Errorf("container %s runs %q from %s, which has no shell", c.Name, c.Command[0], c.Image)
			}
		}
	}
	if found != 1 {
		t.Errorf("%d traefik-sd containers in examples/kubernetes.yaml, want 1", found)
	}
}
