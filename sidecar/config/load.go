package config

import (
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
	"github.com/traefik/paerser/cli"
	"github.com/traefik/paerser/flag"
	"github.com/traefik/paerser/parser"
	"github.com/traefik/paerser/types"
	"gopkg.in/yaml.v3"
)

// A setting is one option's value as one source gave it, under paerser's
// label key (traefik.<path>, lower case), with how to name it to a person.
type setting struct {
	key, value, named string
}

// layeredLoader reads the three sources in order, each overriding the one
// before: the file (--configFile, or TRAEFIK_SD_CONFIGFILE), then
// TRAEFIK_SD_* variables, then flags. Every value is checked where it was
// given, so an error names the flag, the variable or the file's key.
type layeredLoader struct {
	environ func() []string
}

func (l layeredLoader) Load(args []string, cmd *cli.Command) (bool, error) {
	cfg := cmd.Configuration.(*Configuration)
	environ := os.Environ
	if l.environ != nil {
		environ = l.environ
	}
	flags, err := flagSettings(args, cfg)
	if err != nil {
		return false, err
	}
	vars := envSettings(environ())
	path := ""
	for _, s := range append(append([]setting(nil), vars...), flags...) {
		if s.key == "traefik.configfile" {
			path = s.value
		}
	}
	var fromFile []setting
	if path != "" {
		if fromFile, err = fileSettings(path); err != nil {
			return false, err
		}
	}
	merged := map[string]setting{}
	for _, source := range [][]setting{fromFile, vars, flags} {
		for _, s := range source {
			merged[s.key] = s
		}
	}
	keys := make([]string, 0, len(merged))
	for k := range merged {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	labels := map[string]string{}
	for _, k := range keys {
		s := merged[k]
		if err := checkSetting(s); err != nil {
			return false, err
		}
		if k == "traefik.etcd.endpoints" && strings.TrimSpace(s.value) == "" {
			cfg.etcdOff = true // given empty: no etcd, which paerser would read as "keep the default"
			continue
		}
		labels[k] = s.value
	}
	if len(labels) == 0 {
		return true, nil
	}
	if err := parser.Decode(labels, cfg, parser.DefaultRootName); err != nil {
		return false, err
	}
	return true, nil
}

// checkSetting decodes one setting alone, so that its error names it and
// says what is accepted.
func checkSetting(s setting) error {
	path := strings.Split(strings.TrimPrefix(s.key, "traefik."), ".")
	field, ok := fieldAt(reflect.TypeOf(Configuration{}), path)
	if !ok {
		return fmt.Errorf("%s: not an option of traefik-sd (traefik-sd --help lists them)", s.named)
	}
	if field.Type.Kind() == reflect.Struct || (field.Type.Kind() == reflect.Pointer && field.Type.Elem().Kind() == reflect.Struct) {
		return fmt.Errorf("%s: a group of options, not one; give one of its options", s.named)
	}
	if err := parser.Decode(map[string]string{s.key: s.value}, Default(), parser.DefaultRootName); err != nil {
		return fmt.Errorf("%s=%q: want %s", s.named, s.value, accepted(field.Type))
	}
	return nil
}

// accepted says in words which values a field takes.
func accepted(t reflect.Type) string {
	switch {
	case t == reflect.TypeOf(types.Duration(0)):
		return "a duration such as 500ms, 10s or 1m"
	case t.Kind() == reflect.Bool:
		return "true or false"
	case t.Kind() == reflect.Int:
		return "a whole number"
	case t.Kind() == reflect.Slice:
		return "a comma-separated list"
	default:
		return "a string"
	}
}

// fieldAt finds the field a lower-case option path names, as paerser
// matches names: case-insensitively.
func fieldAt(t reflect.Type, path []string) (reflect.StructField, bool) {
	if t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t.Kind() != reflect.Struct || len(path) == 0 {
		return reflect.StructField{}, false
	}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if !f.IsExported() || !strings.EqualFold(f.Name, path[0]) {
			continue
		}
		if len(path) == 1 {
			return f, true
		}
		return fieldAt(f.Type, path[1:])
	}
	return reflect.StructField{}, false
}

// optionName is an option's path as the documentation writes it
// (server.readTimeout), from the json names of the fields.
func optionName(path []string) string {
	t := reflect.TypeOf(Configuration{})
	var out []string
	for _, p := range path {
		f, ok := fieldAt(t, []string{p})
		if !ok {
			return strings.Join(path, ".")
		}
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "" {
			name = p
		}
		out = append(out, name)
		t = f.Type
	}
	return strings.Join(out, ".")
}

func flagSettings(args []string, cfg *Configuration) ([]setting, error) {
	// "--version" and "--help" are the command's, not options.
	var rest []string
	for _, a := range args {
		switch strings.TrimLeft(a, "-") {
		case "version", "help", "h":
			continue
		}
		rest = append(rest, a)
	}
	values, err := flag.Parse(rest, cfg)
	if err != nil {
		return nil, fmt.Errorf("flags: %w", err)
	}
	out := make([]setting, 0, len(values))
	for k, v := range values {
		key := strings.ToLower(k)
		out = append(out, setting{key: key, value: v, named: "--" + optionName(strings.Split(strings.TrimPrefix(key, "traefik."), "."))})
	}
	return out, nil
}

// envSettings reads TRAEFIK_SD_* variables: TRAEFIK_SD_SERVER_READTIMEOUT
// is server.readTimeout. Every one must name an option.
func envSettings(environ []string) []setting {
	var out []setting
	for _, kv := range environ {
		name, value, _ := strings.Cut(kv, "=")
		rest, ok := strings.CutPrefix(name, EnvPrefix)
		if !ok {
			continue
		}
		path := strings.Split(strings.ToLower(rest), "_")
		out = append(out, setting{key: "traefik." + strings.Join(path, "."), value: value, named: name})
	}
	return out
}

// fileSettings flattens a YAML or TOML file into settings; every key must
// name an option.
func fileSettings(path string) ([]setting, error) {
	content, err := os.ReadFile(filepath.Clean(path))
	if err != nil {
		return nil, fmt.Errorf("--configFile: %w", err)
	}
	data := map[string]interface{}{}
	switch strings.ToLower(filepath.Ext(path)) {
	case ".toml":
		err = toml.Unmarshal(content, &data)
	case ".yml", ".yaml", ".json":
		err = yaml.Unmarshal(content, &data)
	default:
		return nil, fmt.Errorf("--configFile %s: want a .yml, .yaml, .json or .toml file", path)
	}
	if err != nil {
		return nil, fmt.Errorf("configuration file %s: %w", path, err)
	}
	var out []setting
	var walk func(prefix []string, v interface{}) error
	walk = func(prefix []string, v interface{}) error {
		named := fmt.Sprintf("configuration file %s: %s", path, strings.Join(prefix, "."))
		switch x := v.(type) {
		case map[string]interface{}:
			for k, child := range x {
				if err := walk(append(append([]string(nil), prefix...), k), child); err != nil {
					return err
				}
			}
			return nil
		case []interface{}:
			items := make([]string, 0, len(x))
			for i, item := range x {
				switch item.(type) {
				case map[string]interface{}, []interface{}:
					return fmt.Errorf("%s[%d]: want a list of values", named, i)
				}
				items = append(items, scalar(item))
			}
			out = append(out, setting{key: "traefik." + strings.ToLower(strings.Join(prefix, ".")), value: strings.Join(items, ","), named: named})
			return nil
		default:
			out = append(out, setting{key: "traefik." + strings.ToLower(strings.Join(prefix, ".")), value: scalar(x), named: named})
			return nil
		}
	}
	if err := walk(nil, data); err != nil {
		return nil, err
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("configuration file %s: no option in it", path)
	}
	return out, nil
}

func scalar(v interface{}) string {
	switch x := v.(type) {
	case nil:
		return ""
	case time.Duration:
		return x.String()
	default:
		return fmt.Sprint(x)
	}
}

// IsOption tells whether a flag name (without the leading --) is one of
// the sidecar's options, as the loader would accept it.
func IsOption(name string) bool {
	f, ok := fieldAt(reflect.TypeOf(Configuration{}), strings.Split(strings.ToLower(name), "."))
	return ok && f.Type.Kind() != reflect.Struct
}
