// Package version says which build this is: the module version and VCS
// revision Go stamps into the binary, unless `make build` sets them.
package version

import (
	"runtime"
	"runtime/debug"
)

// Set at link time by `make build` (-ldflags -X); empty otherwise.
var (
	Version  string
	Revision string
)

// Info is this build's version, VCS revision and Go version.
func Info() (version, revision, goVersion string) {
	version, revision = Version, Revision
	if bi, ok := debug.ReadBuildInfo(); ok {
		if version == "" {
			version = bi.Main.Version
		}
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" && revision == "" {
				revision = s.Value
			}
		}
	}
	if version == "" {
		version = "(devel)"
	}
	if revision == "" {
		revision = "unknown"
	}
	return version, revision, runtime.Version()
}

// String is the one line `traefik-sd --version` prints.
func String() string {
	v, r, g := Info()
	return "traefik-sd " + v + " (revision " + r + ", " + g + ")"
}
