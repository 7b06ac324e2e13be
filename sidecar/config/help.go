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

// OptionRows are every option's flag name (without --) and variable.
func OptionRows() [][2]string {
	all := Default()
	generator.Generate(all)
	flags, _ := flag.Encode(all)
	var out [][2]string
	for _, f := range flags {
		path := strings.Split(f.Name, ".")
		field, ok := fieldAt(reflect.TypeOf(Configuration{}), path)
		if !ok || field.Type.Kind() == reflect.Struct || field.Type.Kind() == reflect.Pointer {
			continue
		}
		out = append(out, [2]string{optionName(path), EnvPrefix + strings.ToUpper(strings.ReplaceAll(f.Name, ".", "_"))})
	}
	return out
}

// printHelp lists every option with its flag, its environment variable and
// its default (durations with their unit), in the order the sources apply.
func printHelp(w io.Writer, cmd *cli.Command) error {
	all := Default()
	generator.Generate(all) // fills the optional groups (TLS), so that their options are listed
	flags, err := flag.Encode(all)
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "%s - %s\n\n", cmd.Name, cmd.Description)
	fmt.Fprintf(w, "Usage: %s [--option=value ...]    %s --version\n\n", cmd.Name, cmd.Name)
	fmt.Fprintln(w, "Each option comes from, in order, each overriding the one before: the file given by --configFile (YAML")
	fmt.Fprintln(w, "or TOML, keys as below without --), the TRAEFIK_SD_* variable shown, the flag. Secrets have a …File")
	fmt.Fprintln(w, "variant read at start and on SIGHUP.")
	fmt.Fprintln(w)
	for _, f := range flags {
		path := strings.Split(f.Name, ".")
		field, ok := fieldAt(reflect.TypeOf(Configuration{}), path)
		if !ok || field.Type.Kind() == reflect.Struct || field.Type.Kind() == reflect.Pointer {
			continue // a group: its options follow
		}
		def := f.Default
		if field.Type == reflect.TypeOf(types.Duration(0)) {
			if secs, err := strconv.ParseFloat(def, 64); err == nil {
				def = time.Duration(secs * float64(time.Second)).String()
			}
		}
		env := EnvPrefix + strings.ToUpper(strings.ReplaceAll(f.Name, ".", "_"))
		fmt.Fprintf(w, "  --%s  (%s, default %q)\n", optionName(path), env, def)
		if f.Description != "" {
			fmt.Fprintf(w, "        %s\n", f.Description)
		}
	}
	return nil
}
