// Command pluginzip writes the plugin's module zip as the Go module proxy
// serves it (and Traefik's plugin registry hands it to Traefik), and prints
// the sha256 that experimental.plugins.<name>.hash wants.
//
//	go run ./e2e/cmd/pluginzip -version v0.1.0 -o bin/traefik-sd-v0.1.0.zip
package main

import (
	"crypto/sha256"
	"encoding/hex"
	"flag"
	"fmt"
	"os"

	"github.com/traefik-sd/traefik-sd/e2e/stack"
	"golang.org/x/mod/semver"
)

func main() {
	version := flag.String("version", "v0.1.0", "module version (semver)")
	out := flag.String("o", "", "zip file to write (default bin/traefik-sd-<version>.zip)")
	flag.Parse()
	if !semver.IsValid(*version) {
		fmt.Fprintf(os.Stderr, "pluginzip: -version %q: want a semantic version such as v0.1.0\n", *version)
		os.Exit(2)
	}
	if *out == "" {
		*out = "bin/traefik-sd-" + *version + ".zip"
	}
	f, err := os.Create(*out)
	if err == nil {
		err = stack.PluginZip(f, *version)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "pluginzip:", err)
		os.Exit(1)
	}
	b, err := os.ReadFile(*out)
	if err != nil {
		fmt.Fprintln(os.Stderr, "pluginzip:", err)
		os.Exit(1)
	}
	sum := sha256.Sum256(b)
	fmt.Printf("%s\nmoduleName: %s\nversion: %s\nhash: %s\n", *out, stack.ModulePath, *version, hex.EncodeToString(sum[:]))
}
