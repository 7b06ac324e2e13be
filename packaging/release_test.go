//go:build release

package packaging

import (
	"bytes"
	"context"
	"debug/elf"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// repo is the repository's root, where make runs.
func repo(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	return root
}

// run runs a command in dir, bounded by limit, and returns its stdout; a
// failure shows stderr.
func run(t *testing.T, dir string, limit time.Duration, name string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s %s (after %s): %v\n%s%s", name, strings.Join(args, " "), time.Since(start).Round(time.Millisecond), err, stdout.String(), stderr.String())
	}
	return stdout.String()
}

// describe is the version make stamps: git describe, as the Makefile asks it.
func describe(t *testing.T, root string) (version, revision string) {
	t.Helper()
	version = strings.TrimSpace(run(t, root, time.Minute, "git", "describe", "--tags", "--always", "--dirty"))
	revision = strings.TrimSpace(run(t, root, time.Minute, "git", "rev-parse", "HEAD"))
	return version, revision
}

// semverTag is a version git describe gives from a semantic-version tag.
var semverTag = regexp.MustCompile(`^v(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)(-[0-9A-Za-z.-]+)?$`)

// checkStaticELF opens an executable and checks that it is a 64-bit ELF
// for machine with no program interpreter: a static binary, which runs
// without a libc beside it.
func checkStaticELF(t *testing.T, path string, machine elf.Machine) {
	t.Helper()
	f, err := elf.Open(path)
	if err != nil {
		t.Fatalf("%s: not an ELF file: %v", path, err)
	}
	defer f.Close()
	if f.Class != elf.ELFCLASS64 || f.Machine != machine || f.Type != elf.ET_EXEC {
		t.Errorf("%s: %v %v %v, want ELFCLASS64 %v ET_EXEC", filepath.Base(path), f.Class, f.Machine, f.Type, machine)
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Errorf("%s: has a program interpreter (dynamically linked), want a static binary", filepath.Base(path))
		}
	}
}

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("needs root: buildah's vfs storage, and running the image's entrypoint chrooted as its user")
	}
}
