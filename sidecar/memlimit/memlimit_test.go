package memlimit_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/traefik-sd/traefik-sd/sidecar/memlimit"
)

// tree writes files under a temporary cgroup root: path -> content.
func tree(t *testing.T, files map[string]string) string {
	t.Helper()
	root := t.TempDir()
	for p, content := range files {
		name := filepath.Join(root, filepath.FromSlash(p))
		if err := os.MkdirAll(filepath.Dir(name), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(name, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

func TestLimitReadsTheSmallestLimitAboveTheProcess(t *testing.T) {
	for _, tc := range []struct {
		desc  string
		files map[string]string
		self  string
		want  int64
		from  string // the file's path below root
	}{
		{
			desc: "v2, the service's own limit",
			files: map[string]string{
				"system.slice/memory.max":                    "max\n",
				"system.slice/traefik-sd.service/memory.max": "536870912\n",
			},
			self: "0::/system.slice/traefik-sd.service\n",
			want: 536870912, from: "system.slice/traefik-sd.service/memory.max",
		},
		{
			desc: "v2, a smaller limit on the slice above bounds the service",
			files: map[string]string{
				"kubepods.slice/memory.max":           "268435456\n",
				"kubepods.slice/pod-a/memory.max":     "536870912\n",
				"kubepods.slice/pod-a/ctr/memory.max": "max\n",
			},
			self: "0::/kubepods.slice/pod-a/ctr\n",
			want: 268435456, from: "kubepods.slice/memory.max",
		},
		{
			desc:  "v2 in a container's cgroup namespace: its limit is at the root",
			files: map[string]string{"memory.max": "1073741824\n"},
			self:  "0::/\n",
			want:  1073741824, from: "memory.max",
		},
		{
			desc:  "v2 without any limit",
			files: map[string]string{"a/memory.max": "max\n"},
			self:  "0::/a\n",
		},
		{
			desc: "v1 memory controller on a hybrid host (v2 holds no memory controller)",
			files: map[string]string{
				"memory/memory.limit_in_bytes":         "9223372036854771712\n",
				"memory/job/memory.limit_in_bytes":     "9223372036854771712\n",
				"memory/job/tsd/memory.limit_in_bytes": "536870912\n",
				"unified/job/tsd/cgroup.procs":         "",
				"memory/other/memory.limit_in_bytes":   "1000\n",
			},
			self: "4:memory:/job/tsd\n1:cpu,cpuacct:/\n0::/\n",
			want: 536870912, from: "memory/job/tsd/memory.limit_in_bytes",
		},
		{
			desc:  "v1 mounted at the container's own cgroup: the path is not there, the root is ours",
			files: map[string]string{"memory/memory.limit_in_bytes": "268435456\n"},
			self:  "4:memory:/docker/abc\n0::/\n",
			want:  268435456, from: "memory/memory.limit_in_bytes",
		},
		{
			desc:  "v1 unlimited",
			files: map[string]string{"memory/memory.limit_in_bytes": "9223372036854771712\n"},
			self:  "4:memory:/\n",
		},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			root := tree(t, tc.files)
			got, from, err := memlimit.Limit(root, []byte(tc.self))
			if err != nil {
				t.Fatal(err)
			}
			wantFrom := ""
			if tc.from != "" {
				wantFrom = filepath.Join(root, filepath.FromSlash(tc.from))
			}
			if got != tc.want || from != wantFrom {
				t.Errorf("limit %d from %q, want %d from %q", got, from, tc.want, wantFrom)
			}
		})
	}
}

// A file that says something else than a limit, or a /proc/self/cgroup
// that is not one, is an error that names it: the sidecar then sets no
// limit rather than a wrong one.
func TestLimitRefusesWhatIsNotALimit(t *testing.T) {
	root := tree(t, map[string]string{"a/memory.max": "lots\n"})
	if _, _, err := memlimit.Limit(root, []byte("0::/a\n")); err == nil || !strings.Contains(err.Error(), filepath.Join(root, "a", "memory.max")) || !strings.Contains(err.Error(), `"lots"`) {
		t.Errorf("a limit of lots: %v", err)
	}
	if _, _, err := memlimit.Limit(root, []byte("garbage\n")); err == nil || !strings.Contains(err.Error(), "line 1") {
		t.Errorf("a garbage /proc/self/cgroup: %v", err)
	}
}
