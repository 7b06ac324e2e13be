// Package memlimit finds the memory limit of the cgroup the sidecar runs
// in, so that Go's collector can be told of it. By default Go lets the heap
// double between collections whatever a container's limit, and a restarted
// sidecar builds its whole state at once: at 100,000 circuits its peak was
// over twice the memory it holds at rest, where a re-list's is 1.2 times.
// With a soft limit (GOMEMLIMIT) under the container's, it collects sooner
// as it nears it instead of being killed.
package memlimit

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
)

// Share is the part of the container's limit given to Go as its soft
// limit: what Go does not count (the binary's pages, the kernel's per
// process memory) must fit in the rest.
const Share = 0.9

// unlimited is what cgroup v1 reports for no limit, or more: a page-rounded
// maximum int64.
const unlimited = 1 << 62

// Limit is the smallest memory limit set on the cgroup this process is in
// or on any cgroup above it, in bytes, and the file it was read from; 0 and
// "" when none is set. root is where the cgroup file systems are mounted
// (/sys/fs/cgroup), self the content of /proc/self/cgroup. It reads cgroup
// v2's memory.max, or v1's memory.limit_in_bytes when the memory controller
// is on a v1 hierarchy.
func Limit(root string, self []byte) (int64, string, error) {
	v2, v1, err := paths(self)
	if err != nil {
		return 0, "", err
	}
	if v1 != "" {
		// A v1 hierarchy is mounted at root/memory; inside a container it
		// is often mounted at the container's own cgroup, where the path
		// /proc/self/cgroup names does not exist: its root is then ours.
		dir := filepath.Join(root, "memory")
		if _, err := os.Stat(filepath.Join(dir, v1)); err == nil {
			return smallest(dir, v1, "memory.limit_in_bytes")
		}
		return smallest(dir, "/", "memory.limit_in_bytes")
	}
	if v2 != "" {
		return smallest(root, v2, "memory.max")
	}
	return 0, "", nil
}

// paths reads the cgroup of the v2 hierarchy and of the v1 memory
// controller from /proc/self/cgroup's lines, id:controllers:path.
func paths(self []byte) (v2, v1 string, err error) {
	sc := bufio.NewScanner(bytes.NewReader(self))
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		if line == "" {
			continue
		}
		parts := strings.SplitN(line, ":", 3)
		if len(parts) != 3 || !strings.HasPrefix(parts[2], "/") {
			return "", "", fmt.Errorf("/proc/self/cgroup line %d: want id:controllers:/path, got %q", n, line)
		}
		switch {
		case parts[0] == "0" && parts[1] == "":
			v2 = parts[2]
		case hasController(parts[1], "memory"):
			v1 = parts[2]
		}
	}
	return v2, v1, sc.Err()
}

func hasController(list, name string) bool {
	for _, c := range strings.Split(list, ",") {
		if c == name {
			return true
		}
	}
	return false
}

// smallest walks from cgroup up to the hierarchy's root, reading file in
// each directory that has it: a limit set on a parent (a systemd slice, a
// pod) bounds its children too.
func smallest(dir, cgroup, file string) (int64, string, error) {
	var limit int64
	var from string
	for p := path.Clean(cgroup); ; p = path.Dir(p) {
		name := filepath.Join(dir, filepath.FromSlash(p), file)
		b, err := os.ReadFile(name)
		switch {
		case errors.Is(err, os.ErrNotExist):
			// The root cgroup has no limit file.
		case err != nil:
			return 0, "", err
		default:
			v, err := parse(b)
			if err != nil {
				return 0, "", fmt.Errorf("%s: %w", name, err)
			}
			if v > 0 && (limit == 0 || v < limit) {
				limit, from = v, name
			}
		}
		if p == "/" {
			return limit, from, nil
		}
	}
}

// parse reads a limit: a number of bytes, or "max" (v2) or a number past
// unlimited (v1) for none, which is 0.
func parse(b []byte) (int64, error) {
	s := strings.TrimSpace(string(b))
	if s == "max" {
		return 0, nil
	}
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil || v < 0 {
		return 0, fmt.Errorf("want a number of bytes or max, got %q", s)
	}
	if v >= unlimited {
		return 0, nil
	}
	return v, nil
}
