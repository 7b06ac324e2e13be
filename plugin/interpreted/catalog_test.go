package interpreted_test

import (
	"bufio"
	"context"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// manifest is .traefik.yml as Traefik's plugin catalog reads it.
type manifest struct {
	DisplayName   string         `yaml:"displayName"`
	Type          string         `yaml:"type"`
	Import        string         `yaml:"import"`
	Summary       string         `yaml:"summary"`
	IconPath      string         `yaml:"iconPath"`
	BasePkg       string         `yaml:"basePkg"`
	TestData      map[string]any `yaml:"testData"`
	Compatibility string         `yaml:"compatibility"`
}

// TestTheModuleMeetsTheCatalogsRules applies the rules Traefik's plugin
// catalog analyser (traefik/piceus) checks before it lists a plugin: a
// complete manifest whose icon exists; an import under the module path; a
// go.mod that requires neither Yaegi nor Traefik (this test's own module is
// nested, so it is not part of the plugin's); and New, under Yaegi, accepts
// the manifest's testData decoded as Traefik decodes a configuration.
func TestTheModuleMeetsTheCatalogsRules(t *testing.T) {
	root := filepath.Join("..", "..")
	raw, err := os.ReadFile(filepath.Join(root, ".traefik.yml"))
	if err != nil {
		t.Fatal(err)
	}
	var m manifest
	if err := yaml.Unmarshal(raw, &m); err != nil {
		t.Fatalf(".traefik.yml: %v", err)
	}
	if m.DisplayName == "" || m.Summary == "" || m.Type != "middleware" || len(m.TestData) == 0 {
		t.Errorf(".traefik.yml lacks displayName, summary, type: middleware or testData: %+v", m)
	}
	if m.IconPath == "" {
		t.Error(".traefik.yml has no iconPath")
	} else if st, err := os.Stat(filepath.Join(root, m.IconPath)); err != nil || st.Size() == 0 {
		t.Errorf("iconPath %s: %v", m.IconPath, err)
	}

	module, requires := readGoMod(t, filepath.Join(root, "go.mod"))
	if !strings.HasPrefix(m.Import, module+"/") && m.Import != module {
		t.Errorf("import %q is not under the module path %q", m.Import, module)
	}
	if st, err := os.Stat(filepath.Join(root, strings.TrimPrefix(m.Import, module+"/"))); err != nil || !st.IsDir() {
		t.Errorf("import %q is not a directory of the module: %v", m.Import, err)
	}
	for _, r := range requires {
		if strings.HasPrefix(r, "github.com/traefik/yaegi") || strings.HasPrefix(r, "github.com/traefik/traefik") {
			t.Errorf("the plugin's go.mod requires %s, which the catalog refuses", r)
		}
	}

	// New(ctx, next, *Config, name) (http.Handler, error) under Yaegi, fed
	// the testData as Traefik feeds a configuration.
	fnCreate, fnNew := interpretedPlugin(t, m.Import)
	if typ := fnNew.Type(); typ.NumIn() != 4 || typ.NumOut() != 2 || typ.Out(0) != reflect.TypeOf((*http.Handler)(nil)).Elem() {
		t.Fatalf("New's signature %v is not Traefik's New(ctx, next, *Config, name) (http.Handler, error)", typ)
	}
	vConfig := fnCreate.Call(nil)[0]
	if err := decodeAsTraefik(vConfig, m.TestData); err != nil {
		t.Fatalf("testData does not decode into the plugin's Config: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	out := fnNew.Call([]reflect.Value{reflect.ValueOf(ctx), reflect.ValueOf(http.Handler(http.NotFoundHandler())), vConfig, reflect.ValueOf("catalog-test")})
	if e := out[1].Interface(); e != nil {
		t.Errorf("New refuses the manifest's testData: %v", e)
	}
}

// readGoMod returns a go.mod's module path and the modules it requires.
func readGoMod(t *testing.T, path string) (string, []string) {
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var module string
	var requires []string
	inBlock := false
	s := bufio.NewScanner(f)
	for s.Scan() {
		line := strings.TrimSpace(s.Text())
		switch {
		case strings.HasPrefix(line, "module "):
			module = strings.TrimSpace(strings.TrimPrefix(line, "module "))
		case line == "require (":
			inBlock = true
		case inBlock && line == ")":
			inBlock = false
		case inBlock && line != "" && !strings.HasPrefix(line, "//"):
			requires = append(requires, strings.Fields(line)[0])
		case strings.HasPrefix(line, "require "):
			requires = append(requires, strings.Fields(line)[1])
		}
	}
	if module == "" {
		t.Fatalf("%s has no module line", path)
	}
	return module, requires
}
