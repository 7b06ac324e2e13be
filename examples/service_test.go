package examples

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/traefik-sd/traefik-sd/internal/testbed"
	"github.com/traefik-sd/traefik-sd/sidecar/config"
)

// unitFile is a systemd unit: each section's keys, in order, with every
// value a key was given (LoadCredential= and others repeat).
type unitFile map[string]map[string][]string

func (u unitFile) one(section, key string) string {
	v := u[section][key]
	if len(v) == 0 {
		return ""
	}
	return v[len(v)-1]
}

// readUnit parses a unit as systemd does for what this unit uses:
// sections, key=value, comments (# and ;), and lines continued with a
// trailing backslash (joined with a space).
func readUnit(t *testing.T, path string) unitFile {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	u := unitFile{}
	section, pending := "", ""
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if pending == "" && (line == "" || line[0] == '#' || line[0] == ';') {
			continue
		}
		if strings.HasSuffix(line, `\`) {
			pending += strings.TrimSuffix(line, `\`) + " "
			continue
		}
		line, pending = pending+line, ""
		if strings.HasPrefix(line, "[") && strings.HasSuffix(line, "]") {
			section = strings.Trim(line, "[]")
			u[section] = map[string][]string{}
			continue
		}
		key, value, ok := strings.Cut(line, "=")
		if !ok || section == "" {
			t.Fatalf("%s:%d: not a key=value in a section: %q", path, n, line)
		}
		key = strings.TrimSpace(key)
		u[section][key] = append(u[section][key], strings.TrimSpace(value))
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return u
}

// TestSystemdUnitIsDeployable: examples/traefik-sd.service starts the
// sidecar as a hardened Type=notify service whose secrets come through
// LoadCredential= into the …File options: its command line, with the
// configuration file the unit's comment installs (examples/traefik-sd.yml)
// and the credentials as systemd would place them, loads through the
// sidecar's own loader, reads every secret from a credential and leaves
// nothing open on the address it listens on; and `systemd-analyze verify`
// has nothing to say about it.
func TestSystemdUnitIsDeployable(t *testing.T) {
	const unitPath, program, configPath = "traefik-sd.service", "/usr/local/bin/traefik-sd", "/etc/traefik-sd/traefik-sd.yml"
	u := readUnit(t, unitPath)
	svc := u["Service"]
	if svc == nil || u["Unit"] == nil || u["Install"] == nil {
		t.Fatalf("sections %v: want Unit, Service and Install", u)
	}
	// Hardening: each setting as the unit must have it.
	for key, want := range map[string]string{
		"Type":                    "notify", // the sidecar sends READY=1 once it listens
		"Restart":                 "on-failure",
		"DynamicUser":             "yes",
		"NoNewPrivileges":         "yes",
		"ProtectSystem":           "strict",
		"ProtectHome":             "yes",
		"PrivateTmp":              "yes",
		"PrivateDevices":          "yes",
		"ProtectKernelTunables":   "yes",
		"ProtectKernelModules":    "yes",
		"ProtectKernelLogs":       "yes",
		"ProtectControlGroups":    "yes",
		"CapabilityBoundingSet":   "",
		"RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX", // AF_UNIX: the notify socket
		"SystemCallArchitectures": "native",
		"MemoryDenyWriteExecute":  "yes",
	} {
		if got, set := svc[key]; !set || u.one("Service", key) != want {
			t.Errorf("%s=%q (set %v), want %q", key, strings.Join(got, " "), set, want)
		}
	}
	if f := strings.Join(svc["SystemCallFilter"], " "); !strings.HasPrefix(f, "@system-service") {
		t.Errorf("SystemCallFilter=%s: want @system-service first", f)
	}
	if _, set := svc["User"]; set {
		t.Error("User= with DynamicUser=yes: the dynamic user is the one wanted")
	}
	if v := svc["ProcSubset"]; len(v) > 0 {
		t.Errorf("ProcSubset=%v: hides /proc/stat, and /metrics fails on process_start_time_seconds", v)
	}
	for _, e := range append(svc["Environment"], svc["EnvironmentFile"]...) {
		t.Errorf("Environment %q: settings go in the configuration file, secrets in credentials", e)
	}

	// The credentials, as systemd copies them: id -> source.
	credentials := map[string]string{}
	for _, c := range svc["LoadCredential"] {
		id, source, ok := strings.Cut(c, ":")
		if !ok || !strings.HasPrefix(source, "/etc/traefik-sd/") {
			t.Errorf("LoadCredential=%s: want id:/etc/traefik-sd/<file>", c)
		}
		credentials[id] = source
	}
	credDir := t.TempDir()
	for id := range credentials {
		if err := os.WriteFile(filepath.Join(credDir, id), []byte("from-credential-"+id+"\n"), 0o400); err != nil {
			t.Fatal(err)
		}
	}

	// ExecStart: the program, then its arguments with ${CREDENTIALS_DIRECTORY}
	// expanded as systemd does, and the configuration file where the test
	// finds it.
	unitSrc, err := os.ReadFile(unitPath)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(unitSrc), "examples/traefik-sd.yml "+configPath) {
		t.Errorf("the unit's comment does not install examples/traefik-sd.yml as %s", configPath)
	}
	words := strings.Fields(u.one("Service", "ExecStart"))
	if len(words) == 0 || words[0] != program {
		t.Fatalf("ExecStart=%s: want %s first, without a prefix (+ or ! would run it privileged)", u.one("Service", "ExecStart"), program)
	}
	credRef := regexp.MustCompile(`^\$\{CREDENTIALS_DIRECTORY\}/([A-Za-z0-9_.-]+)$`)
	used := map[string]bool{}
	var args []string
	for _, a := range words[1:] {
		if strings.ContainsAny(a, `"'%`) {
			t.Errorf("argument %s: quotes and %% specifiers are not expected here", a)
		}
		name, value, _ := strings.Cut(strings.TrimPrefix(a, "--"), "=")
		if !strings.HasPrefix(a, "--") || !config.IsOption(name) {
			t.Errorf("argument %s is not an option of traefik-sd", a)
			continue
		}
		lower := strings.ToLower(name)
		if strings.HasSuffix(lower, "token") || strings.HasSuffix(lower, "password") {
			t.Errorf("argument %s carries a secret on the command line (ps shows it); use its File variant and a credential", a)
		}
		switch {
		case lower == "configfile":
			if value != configPath {
				t.Errorf("--configFile=%s, want %s", value, configPath)
			}
			value = "traefik-sd.yml"
		case strings.HasSuffix(lower, "file"):
			m := credRef.FindStringSubmatch(value)
			if m == nil || credentials[m[1]] == "" {
				t.Errorf("argument %s: not ${CREDENTIALS_DIRECTORY}/<id> of a LoadCredential= (%v)", a, credentials)
				continue
			}
			used[m[1]] = true
			value = filepath.Join(credDir, m[1])
		case strings.Contains(value, "$"):
			t.Errorf("argument %s: systemd would expand a variable the unit does not set", a)
		}
		args = append(args, "--"+name+"="+value)
	}
	for id := range credentials {
		if !used[id] {
			t.Errorf("LoadCredential=%s:… is used by no argument", id)
		}
	}
	cfg, err := loadArgs(args)
	if err != nil {
		t.Fatalf("the unit's command line does not load: %v\n%s", err, strings.Join(args, "\n"))
	}
	for what, got := range map[string]string{"the push token": cfg.Plugin.Token, "the read token": cfg.Server.ReadToken} {
		if !strings.HasPrefix(got, "from-credential-") {
			t.Errorf("%s is %q, not read from a credential", what, got)
		}
	}
	if w := cfg.AccessWarnings(); cfg.Plugin.Insecure || len(w) > 0 {
		t.Errorf("the sidecar on %s leaves access open (insecure %v): %q", cfg.Address, cfg.Plugin.Insecure, w)
	}

	verifySystemdUnit(t, unitPath, program)
}

// verifySystemdUnit runs `systemd-analyze verify` on a copy of the unit
// whose ExecStart names an executable that exists here (verify checks
// that, and nothing more of the program: the options were checked above).
// verify exits 0 on an unknown key or a value it cannot parse ("ignoring"),
// so any line it prints fails the test, except "Unit <name>.target not
// found", which says the machine has no systemd units installed, not that
// this one is wrong. Then `systemd-analyze security --offline=yes` must
// rate the unit's exposure 2.0 or lower ("OK" is below 4.0).
func verifySystemdUnit(t *testing.T, unitPath, program string) {
	analyze := testbed.Binary(t, "SYSTEMD_ANALYZE_BIN", "systemd-analyze")
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	src, err := os.ReadFile(unitPath)
	if err != nil {
		t.Fatal(err)
	}
	copyPath := filepath.Join(t.TempDir(), filepath.Base(unitPath))
	if err := os.WriteFile(copyPath, []byte(strings.ReplaceAll(string(src), program, self)), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(analyze, "verify", "--man=no", copyPath).CombinedOutput()
	if err != nil {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
	environment := regexp.MustCompile(`Unit [A-Za-z0-9@_.-]+\.target not found\.$`)
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if line != "" && !environment.MatchString(line) {
			t.Errorf("systemd-analyze verify: %s", strings.ReplaceAll(line, copyPath, unitPath))
		}
	}
	out, err = exec.Command(analyze, "security", "--offline=yes", "--no-pager", copyPath).CombinedOutput()
	m := regexp.MustCompile(`Overall exposure level for \S+: (\d+\.\d+)`).FindSubmatch(out)
	if err != nil || m == nil {
		t.Fatalf("systemd-analyze security: %v\n%s", err, out)
	}
	if level, _ := strconv.ParseFloat(string(m[1]), 64); level > 2.0 {
		t.Errorf("systemd-analyze security rates the unit's exposure %.1f, want 2.0 or lower:\n%s", level, out)
	}
}
