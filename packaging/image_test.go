//go:build release

package packaging

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"debug/elf"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The image's user and where its source is said to be.
const (
	imageUID    = 65532
	imageSource = "https://github.com/traefik-sd/traefik-sd"
)

// buildah as make image runs it.
var buildah = []string{"buildah", "--storage-driver", "vfs"}

// ociImage is what an OCI image layout holds of one image.
type ociImage struct {
	Architecture string `json:"architecture"`
	OS           string `json:"os"`
	Config       struct {
		User       string            `json:"User"`
		Entrypoint []string          `json:"Entrypoint"`
		Cmd        []string          `json:"Cmd"`
		Labels     map[string]string `json:"Labels"`
	} `json:"config"`
}

type ociDescriptor struct {
	MediaType string `json:"mediaType"`
	Digest    string `json:"digest"`
}

// TestImage runs make image under a name of its own, exports the image as
// an OCI layout (what a registry would get), and checks it as a runtime
// would use it: the config's user, entrypoint and labels; the layers,
// unpacked into a root file system, hold the static binary, CA certificates
// and passwd, and nothing else (no shell); the entrypoint, run from that
// root (chroot) as the image's user, prints the version the image is
// labelled with and answers /healthz. Containers cannot run on these
// machines (crun cannot set the rlimits, cgroups are hybrid), so the
// runtime's part is played by chroot and setuid. The images it built are
// removed at the end.
func TestImage(t *testing.T) {
	requireRoot(t)
	root := repo(t)
	if _, err := exec.LookPath(buildah[0]); err != nil {
		t.Fatalf("%v: make deps installs buildah", err)
	}
	version, revision := describe(t, root)
	name := fmt.Sprintf("localhost/traefik-sd-imagetest-%d", os.Getpid())
	t.Cleanup(func() {
		// Both tags name one image: removing them removes it.
		out, err := exec.Command(buildah[0], append(buildah[1:], "rmi", name+":"+version, name+":latest")...).CombinedOutput()
		if err != nil && !t.Failed() { // after a failed make image there may be none
			t.Errorf("removing the test's image: %v\n%s", err, out)
		}
	})
	start := time.Now()
	run(t, root, 10*time.Minute, "make", "--no-print-directory", "image", "IMAGE="+name)
	t.Logf("make image: %s", time.Since(start).Round(time.Millisecond))

	ids := map[string]bool{}
	for _, tag := range []string{version, "latest"} {
		ids[strings.TrimSpace(run(t, root, time.Minute, buildah[0], append(buildah[1:], "inspect", "--type", "image", "--format", "{{.FromImageID}}", name+":"+tag)...))] = true
	}
	if len(ids) != 1 {
		t.Errorf("%s:%s and %s:latest are different images: %v", name, version, name, ids)
	}

	dir := t.TempDir()
	layout := filepath.Join(dir, "oci")
	run(t, root, 2*time.Minute, buildah[0], append(buildah[1:], "push", "--quiet", name+":"+version, "oci:"+layout)...)
	img, layers := readLayout(t, layout)

	if img.OS != "linux" || img.Architecture != runtime.GOARCH {
		t.Errorf("image for %s/%s, want linux/%s", img.OS, img.Architecture, runtime.GOARCH)
	}
	if want := fmt.Sprintf("%d:%d", imageUID, imageUID); img.Config.User != want {
		t.Errorf("the image's user is %q, want %q", img.Config.User, want)
	}
	if !slices.Equal(img.Config.Entrypoint, []string{"/traefik-sd"}) || len(img.Config.Cmd) != 0 {
		t.Errorf("entrypoint %q, cmd %q; want [/traefik-sd] and no cmd", img.Config.Entrypoint, img.Config.Cmd)
	}
	for label, want := range map[string]string{
		"org.opencontainers.image.version":  version,
		"org.opencontainers.image.revision": revision,
		"org.opencontainers.image.source":   imageSource,
	} {
		if got, ok := img.Config.Labels[label]; !ok || got != want {
			t.Errorf("label %s = %q (set %v), want %q", label, got, ok, want)
		}
	}

	rootfs := filepath.Join(dir, "rootfs")
	if err := os.Mkdir(rootfs, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, l := range layers {
		unpackLayer(t, blobPath(layout, l), rootfs)
	}
	checkRootFS(t, rootfs)
	checkStaticELF(t, filepath.Join(rootfs, "traefik-sd"), elfMachine[runtime.GOARCH])
	if t.Failed() {
		t.FailNow()
	}

	entry := img.Config.Entrypoint
	out, err := asImageUser(rootfs, entry[0], append(entry[1:], "--version")...).CombinedOutput()
	if want := "traefik-sd " + version + " (revision " + revision; err != nil || !strings.HasPrefix(string(out), want) {
		t.Errorf("%s --version from the image's root as %d: %v\n%s\nwant it to begin %q", entry[0], imageUID, err, out, want)
	}
	checkHealthz(t, rootfs, entry)
}

// blobPath is where an OCI layout keeps the blob d names: blobs/<alg>/<hex>.
func blobPath(layout string, d ociDescriptor) string {
	alg, hex, _ := strings.Cut(d.Digest, ":")
	return filepath.Join(layout, "blobs", alg, hex)
}

var elfMachine = map[string]elf.Machine{"amd64": elf.EM_X86_64, "arm64": elf.EM_AARCH64}

// readLayout reads an OCI image layout holding one image: its config and
// its layers, bottom first.
func readLayout(t *testing.T, layout string) (ociImage, []ociDescriptor) {
	t.Helper()
	read := func(path string, v any) {
		t.Helper()
		raw, err := os.ReadFile(path)
		if err == nil {
			err = json.Unmarshal(raw, v)
		}
		if err != nil {
			t.Fatalf("the exported image: %v", err)
		}
	}
	blob := func(d ociDescriptor, v any) { t.Helper(); read(blobPath(layout, d), v) }
	var index struct {
		Manifests []ociDescriptor `json:"manifests"`
	}
	read(filepath.Join(layout, "index.json"), &index)
	if len(index.Manifests) != 1 {
		t.Fatalf("the layout's index lists %d manifests, want 1", len(index.Manifests))
	}
	var manifest struct {
		Config ociDescriptor   `json:"config"`
		Layers []ociDescriptor `json:"layers"`
	}
	blob(index.Manifests[0], &manifest)
	var img ociImage
	blob(manifest.Config, &img)
	if len(manifest.Layers) == 0 {
		t.Fatal("the image has no layer")
	}
	return img, manifest.Layers
}

// unpackLayer applies one layer tar (gzip-compressed or not) to rootfs,
// whiteouts included, refusing any path that leaves it.
func unpackLayer(t *testing.T, path, rootfs string) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	br := bufio.NewReader(f)
	var r io.Reader = br
	if magic, _ := br.Peek(2); bytes.Equal(magic, []byte{0x1f, 0x8b}) {
		gz, err := gzip.NewReader(br)
		if err != nil {
			t.Fatal(err)
		}
		r = gz
	}
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return
		}
		if err != nil {
			t.Fatalf("layer %s: %v", filepath.Base(path), err)
		}
		name := filepath.Clean("/" + h.Name)
		if strings.Contains(h.Name, "..") {
			t.Fatalf("layer entry %q leaves the root", h.Name)
		}
		target := filepath.Join(rootfs, name)
		base := filepath.Base(name)
		if base == ".wh..wh..opq" {
			entries, _ := os.ReadDir(filepath.Dir(target))
			for _, e := range entries {
				_ = os.RemoveAll(filepath.Join(filepath.Dir(target), e.Name()))
			}
			continue
		}
		if strings.HasPrefix(base, ".wh.") {
			_ = os.RemoveAll(filepath.Join(filepath.Dir(target), strings.TrimPrefix(base, ".wh.")))
			continue
		}
		mode := fs.FileMode(h.Mode) & fs.ModePerm
		switch h.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(target, mode); err == nil {
				err = os.Chmod(target, mode)
			}
		case tar.TypeReg:
			_ = os.MkdirAll(filepath.Dir(target), 0o755)
			var w *os.File
			if w, err = os.OpenFile(target, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, mode); err == nil {
				_, err = io.Copy(w, tr)
				if cerr := w.Close(); err == nil {
					err = cerr
				}
				if err == nil {
					err = os.Chmod(target, mode)
				}
			}
		case tar.TypeSymlink:
			_ = os.MkdirAll(filepath.Dir(target), 0o755)
			err = os.Symlink(h.Linkname, target)
		case tar.TypeLink:
			err = os.Link(filepath.Join(rootfs, filepath.Clean("/"+h.Linkname)), target)
		default:
			err = fmt.Errorf("entry type %q not expected in this image", h.Typeflag)
		}
		if err != nil {
			t.Fatalf("unpacking %s: %v", h.Name, err)
		}
		if err := os.Lchown(target, h.Uid, h.Gid); err != nil {
			t.Fatalf("unpacking %s: %v", h.Name, err)
		}
	}
}

// checkRootFS checks the image's files: exactly the binary, the CA bundle,
// passwd and group (so no shell and nothing else to run), the user named in
// passwd, nothing writable by it.
func checkRootFS(t *testing.T, rootfs string) {
	t.Helper()
	var files []string
	err := filepath.WalkDir(rootfs, func(path string, d fs.DirEntry, err error) error {
		if err != nil || path == rootfs {
			return err
		}
		rel, _ := filepath.Rel(rootfs, path)
		info, err := os.Lstat(path)
		if err != nil {
			return err
		}
		st := info.Sys().(*syscall.Stat_t)
		if st.Uid == imageUID || info.Mode().Perm()&0o002 != 0 {
			t.Errorf("/%s is writable by the image's user (owner %d, mode %v)", rel, st.Uid, info.Mode())
		}
		if !d.IsDir() {
			files = append(files, "/"+rel)
			if info.Mode()&0o111 != 0 && rel != "traefik-sd" {
				t.Errorf("/%s is executable (%v): the image should run nothing but /traefik-sd", rel, info.Mode())
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(files)
	want := []string{"/etc/group", "/etc/passwd", "/etc/ssl/certs/ca-certificates.crt", "/traefik-sd"}
	if !slices.Equal(files, want) {
		t.Errorf("the image's files are %q, want exactly %q", files, want)
	}
	for _, sh := range []string{"bin/sh", "bin/busybox", "usr/bin/sh"} {
		if _, err := os.Lstat(filepath.Join(rootfs, sh)); err == nil {
			t.Errorf("/%s is in the image", sh)
		}
	}
	passwd, _ := os.ReadFile(filepath.Join(rootfs, "etc", "passwd"))
	if !strings.Contains(string(passwd), fmt.Sprintf(":x:%d:%d:", imageUID, imageUID)) {
		t.Errorf("/etc/passwd names no user %d: %q", imageUID, passwd)
	}
	if ca, _ := os.ReadFile(filepath.Join(rootfs, "etc", "ssl", "certs", "ca-certificates.crt")); !bytes.Contains(ca, []byte("-----BEGIN CERTIFICATE-----")) {
		t.Error("the CA bundle holds no certificate")
	}
}

// asImageUser runs path (inside rootfs) with rootfs as its root directory,
// as the image's user and group with no supplementary groups: what a
// runtime does with the image's config, less the namespaces.
func asImageUser(rootfs, path string, args ...string) *exec.Cmd {
	cmd := exec.Command(path, args...)
	cmd.Path = path // resolved inside the chroot, not on the host
	cmd.Dir = "/"
	cmd.Env = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Chroot:     rootfs,
		Credential: &syscall.Credential{Uid: imageUID, Gid: imageUID, Groups: []uint32{}},
		Setpgid:    true,
	}
	return cmd
}

// checkHealthz starts the entrypoint from the image's root as its user, on
// a free loopback port, without etcd (plugin-only mode), and waits for
// /healthz to answer 200; the process must run as the image's user.
func checkHealthz(t *testing.T, rootfs string, entry []string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	args := append(slices.Clone(entry[1:]), "--address="+addr, "--etcd.endpoints=", "--worker.authority=imagetest",
		"--traefik.metricsURL=http://127.0.0.1:9/metrics") // nothing listens there: /healthz does not depend on it
	cmd := asImageUser(rootfs, entry[0], args...)
	var logs bytes.Buffer
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting %s from the image's root: %v", entry[0], err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-exited
			t.Errorf("the sidecar did not stop within 10 s of SIGTERM\n%s", logs.String())
		}
	}()

	if status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", cmd.Process.Pid)); err == nil {
		for _, line := range strings.Split(string(status), "\n") {
			if f := strings.Fields(line); len(f) == 5 && (f[0] == "Uid:" || f[0] == "Gid:") {
				for _, id := range f[1:] {
					if id != fmt.Sprint(imageUID) {
						t.Errorf("the sidecar runs with %s, want %d throughout", line, imageUID)
						break
					}
				}
			}
		}
	}

	client := &http.Client{Timeout: 2 * time.Second}
	deadline := time.Now().Add(30 * time.Second)
	for {
		select {
		case err := <-exited:
			exited <- err
			t.Fatalf("the sidecar exited (%v) before /healthz answered\n%s", err, logs.String())
		default:
		}
		resp, err := client.Get("http://" + addr + "/healthz")
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				t.Logf("/healthz from the image's entrypoint as %d: %d %q", imageUID, resp.StatusCode, strings.TrimSpace(string(body)))
				return
			}
			err = fmt.Errorf("%s: %q", resp.Status, body)
		}
		if time.Now().After(deadline) {
			t.Fatalf("/healthz did not answer 200 within 30 s: %v\n%s", err, logs.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
}
