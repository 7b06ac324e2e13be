package config

import (
	"fmt"
	"io"
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/traefik/paerser/cli"
	"github.com/traefik/paerser/flag"
	"github.com/traefik/paerser/generator"
	"github.com/traefik/paerser/types"
)

// Option is one option as the help and the README list it.
type Option struct {
	Flag        string // without the leading --, e.g. server.readTimeout
	Env         string // e.g. TRAEFIK_SD_SERVER_READTIMEOUT
	Default     string // durations with their unit
	Description string
}

// Options lists every option, groups (such as a TLS block) left out for
// their own options, in paerser's order.
func Options() ([]Option, error) {
	all := Default()
	generator.Generate(all) // fills the optional groups (TLS), so that their options are listed
	flags, err := flag.Encode(all)
	if err != nil {
		return nil, err
	}
	var out []Option
	for _, f := range flags {
		path := strings.Split(f.Name, ".")
		field, ok := fieldAt(reflect.TypeOf(Configuration{}), path)
		if !ok || field.Type.Kind() == reflect.Struct || field.Type.Kind() == reflect.Pointer {
			continue
		}
		def := f.Default
		if field.Type == reflect.TypeOf(types.Duration(0)) {
			// paerser encodes a duration's default in seconds, without a unit.
			if secs, err := strconv.ParseFloat(def, 64); err == nil {
				def = time.Duration(secs * float64(time.Second)).String()
			}
		}
		out = append(out, Option{Flag: optionName(path), Env: EnvPrefix + strings.ToUpper(strings.ReplaceAll(f.Name, ".", "_")),
			Default: def, Description: f.Description})
	}
	return out, nil
}

// Flags is the command line that gives c from the defaults: every option
// whose value differs from Default's, as --option=value. Tests start the
// built binary with it, configured as they would run the daemon in process.
// It is for a configuration as given, before Complete derives from it.
func Flags(c *Configuration) ([]string, error) {
	defaults := map[string]string{}
	flats, err := flag.Encode(Default())
	if err != nil {
		return nil, err
	}
	for _, f := range flats {
		defaults[f.Name] = f.Default
	}
	if flats, err = flag.Encode(c); err != nil {
		return nil, err
	}
	var out []string
	for _, f := range flats {
		path := strings.Split(f.Name, ".")
		field := valueAt(reflect.ValueOf(c), path)
		if !field.IsValid() {
			return nil, fmt.Errorf("option %s: no field of the configuration", f.Name)
		}
		if k := field.Kind(); k == reflect.Struct || k == reflect.Pointer {
			continue // a group: its options follow it
		}
		if def, ok := defaults[f.Name]; ok && def == f.Default {
			continue
		}
		value := f.Default
		if d, ok := field.Interface().(types.Duration); ok {
			value = time.Duration(d).String() // paerser's encoding drops what is under a second
		}
		out = append(out, "--"+optionName(path)+"="+value)
	}
	return out, nil
}

// valueAt is the field a lower-case option path names, as paerser matches
// names (case-insensitively), in a configuration whose groups along the
// path are set (flag.Encode lists only those); invalid if there is none.
func valueAt(v reflect.Value, path []string) reflect.Value {
	for _, name := range path {
		if v = reflect.Indirect(v); v.Kind() != reflect.Struct {
			return reflect.Value{}
		}
		v = v.FieldByNameFunc(func(f string) bool { return strings.EqualFold(f, name) })
	}
	return v
}

// printHelp lists every option with its flag, its environment variable and
// its default, in the order the sources apply.
func printHelp(w io.Writer, cmd *cli.Command) error {
	options, err := Options()
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "%s - %s\n\n", cmd.Name, cmd.Description)
	fmt.Fprintf(w, "Usage: %s [--option=value ...]    %s --version\n\n", cmd.Name, cmd.Name)
	fmt.Fprintln(w, "Each option comes from, in order, each overriding the one before: the file given by --configFile (YAML")
	fmt.Fprintln(w, "or TOML, keys as below without --), the TRAEFIK_SD_* variable shown, the flag. Secrets have a …File")
	fmt.Fprintln(w, "variant read at start and on SIGHUP.")
	fmt.Fprintln(w)
	for _, o := range options {
		fmt.Fprintf(w, "  --%s  (%s, default %q)\n", o.Flag, o.Env, o.Default)
		if o.Description != "" {
			fmt.Fprintf(w, "        %s\n", o.Description)
		}
	}
	return nil
}
