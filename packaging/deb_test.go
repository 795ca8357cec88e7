package main

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

const repoRoot = ".."

func TestDebianVersion(t *testing.T) {
	tests := []struct {
		describe, want string
	}{
		{"v1.4.0", "1.4.0"},
		{"1.4.0", "1.4.0"},
		{"v1.4.0-3-g1a2b3c4", "1.4.0+3.g1a2b3c4"},
		{"v1.4.0-3-g1a2b3c4-dirty", "1.4.0+3.g1a2b3c4.dirty"},
		{"v1.4.0-dirty", "1.4.0+dirty"},
		{"v1.5.0-rc.1", "1.5.0~rc.1"},
		{"v1.5.0-rc.1-2-gabcdef0", "1.5.0~rc.1+2.gabcdef0"},
		{"v1.5.0-beta-1", "1.5.0~beta.1"},
		{"v1.5.0+meta", "1.5.0+meta"},
		{"v1.5.0+meta-7-gabcdef0", "1.5.0+meta.7.gabcdef0"},
		{"22edeaf", "0.0.0~git.22edeaf"},
		{"1234567", "0.0.0~git.1234567"}, // an all-digit abbreviated hash is still no tag
		{"22edeaf-dirty", "0.0.0~git.22edeaf+dirty"},
		{"22edeaf\n", "0.0.0~git.22edeaf"},
	}
	for _, tc := range tests {
		got, err := debianVersion(tc.describe)
		if err != nil || got != tc.want {
			t.Errorf("debianVersion(%q) = %q, %v; want %q", tc.describe, got, err, tc.want)
		}
	}
	for _, bad := range []string{"", "dev", "release-1.0", "v1.0_final", "v1:2"} {
		if got, err := debianVersion(bad); err == nil {
			t.Errorf("debianVersion(%q) = %q, want an error", bad, got)
		}
	}
	// dpkg orders the versions of commits as they were made, and a dirty
	// build after its commit.
	if _, err := exec.LookPath("dpkg"); err != nil {
		t.Skip("dpkg not installed: cannot check the order with dpkg --compare-versions")
	}
	order := []string{"22edeaf", "v0.9.0", "v1.0.0-rc.1", "v1.0.0-rc.1-4-gabcdef0", "v1.0.0", "v1.0.0-2-gabcdef0", "v1.0.1"}
	var pairs [][2]string
	for i := 1; i < len(order); i++ {
		pairs = append(pairs, [2]string{order[i-1], order[i]})
	}
	pairs = append(pairs, [2]string{"v1.0.0", "v1.0.0-dirty"}, [2]string{"v1.0.0-2-gabcdef0", "v1.0.0-2-gabcdef0-dirty"}, [2]string{"22edeaf", "22edeaf-dirty"})
	for _, p := range pairs {
		a, _ := debianVersion(p[0])
		b, _ := debianVersion(p[1])
		if err := exec.Command("dpkg", "--compare-versions", a, "lt", b).Run(); err != nil {
			t.Errorf("dpkg does not sort %s (%s) before %s (%s)", a, p[0], b, p[1])
		}
	}
}

func TestDebianUnit(t *testing.T) {
	src, err := os.ReadFile(filepath.Join(repoRoot, "configs", "pkid.service"))
	if err != nil {
		t.Fatal(err)
	}
	unit, err := debianUnit(src)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"\nExecStart=/usr/bin/pkid serve --config /etc/pkid/pkid.yaml\n",
		"\nExecStartPre=/usr/bin/pkid check-config --config /etc/pkid/pkid.yaml\n",
		"\nDocumentation=file:///usr/share/doc/pkid/README.md\n",
		"\nUser=pkid\n",
	} {
		if !bytes.Contains(unit, []byte(want)) {
			t.Errorf("packaged unit lacks %q", strings.TrimSpace(want))
		}
	}
	if _, err := debianUnit([]byte("[Service]\nExecStart=/usr/local/sbin/other\n")); err == nil {
		t.Error("a /usr/local path the package does not install was accepted")
	}
}

// testPackage is a .deb built the way `make package` builds it.
type testPackage struct {
	path        string
	version     string // Debian's
	versionLine string // what the packaged `pkid version` prints
}

// buildTestPackage packages $PKID_BIN (make test sets it to bin/pkid) or,
// without it, a pkid built here the way `make build` does.
func buildTestPackage(t *testing.T) testPackage {
	t.Helper()
	bin := os.Getenv("PKID_BIN")
	if bin == "" {
		describe, err := exec.Command("git", "-C", repoRoot, "describe", "--tags", "--always", "--dirty").Output()
		if err != nil {
			t.Fatalf("git describe: %v (set PKID_BIN to a built pkid)", err)
		}
		bin = filepath.Join(t.TempDir(), "pkid")
		cmd := exec.Command("go", "build", "-trimpath", "-ldflags", "-X main.Version="+strings.TrimSpace(string(describe)), "-o", bin, "./cmd/pkid")
		cmd.Dir = repoRoot
		cmd.Env = append(os.Environ(), "CGO_ENABLED=1")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("go build ./cmd/pkid: %v\n%s", err, out)
		}
	}
	out, err := exec.Command(bin, "version").Output()
	if err != nil {
		t.Fatalf("%s version: %v", bin, err)
	}
	line := strings.TrimSpace(string(out))
	fields := strings.Fields(line) // pkid VERSION (commit C, goX)
	if len(fields) < 2 || fields[0] != "pkid" {
		t.Fatalf("%s version printed %q", bin, line)
	}
	version, err := debianVersion(fields[1])
	if err != nil {
		t.Fatal(err)
	}
	path, err := build(options{Root: repoRoot, Bin: bin, Version: fields[1], OutDir: t.TempDir()})
	if err != nil {
		t.Fatalf("build: %v", err)
	}
	if want := "pkid_" + version + "_amd64.deb"; filepath.Base(path) != want {
		t.Fatalf("package file %s, want %s", filepath.Base(path), want)
	}
	return testPackage{path: path, version: version, versionLine: line}
}

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive", "LC_ALL=C")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// debEntry is one line of dpkg-deb -c.
type debEntry struct{ perm, owner string }

var debListLine = regexp.MustCompile(`^([-dlrwxsStT]{10}) (\S+)\s+\d+ \S+ \S+ \./(.*)$`)

// debContents lists the package's files: path (absolute, no trailing
// slash) to permissions and owner.
func debContents(t *testing.T, deb string) map[string]debEntry {
	t.Helper()
	entries := map[string]debEntry{}
	for l := range strings.Lines(run(t, "dpkg-deb", "-c", deb)) {
		m := debListLine.FindStringSubmatch(strings.TrimRight(l, "\n"))
		if m == nil {
			t.Fatalf("dpkg-deb -c line %q", l)
		}
		entries["/"+strings.TrimSuffix(m[3], "/")] = debEntry{m[1], m[2]}
	}
	return entries
}

// wantFiles are the package's files (not directories) and their modes.
func wantFiles(t *testing.T) map[string]string {
	t.Helper()
	want := map[string]string{
		"/usr/bin/pkid":                              "-rwxr-xr-x",
		"/lib/systemd/system/pkid.service":           "-rw-r--r--",
		"/etc/pkid/pkid.yaml":                        "-rw-r-----",
		"/usr/share/doc/pkid/README.md":              "-rw-r--r--",
		"/usr/share/doc/pkid/BENCHMARKS.md":          "-rw-r--r--",
		"/usr/share/pkid/prometheus/prometheus.yml":  "-rw-r--r--",
		"/usr/share/pkid/prometheus/alerts.yml":      "-rw-r--r--",
		"/usr/share/pkid/prometheus/alerts_test.yml": "-rw-r--r--",
		"/usr/share/pkid/grafana/pkid.json":          "-rw-r--r--",
	}
	configs, err := os.ReadDir(filepath.Join(repoRoot, "configs"))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range configs {
		want["/usr/share/doc/pkid/examples/"+e.Name()] = "-rw-r--r--"
	}
	return want
}

func TestPackageContents(t *testing.T) {
	if _, err := exec.LookPath("dpkg-deb"); err != nil {
		t.Skip("dpkg-deb not installed")
	}
	pkg := buildTestPackage(t)

	fields := map[string]string{}
	for l := range strings.Lines(run(t, "dpkg-deb", "--field", pkg.path, "Package", "Version", "Architecture", "Depends", "Suggests", "Recommends", "Pre-Depends")) {
		k, v, _ := strings.Cut(strings.TrimSpace(l), ": ")
		fields[k] = v
	}
	if fields["Package"] != "pkid" || fields["Version"] != pkg.version || fields["Architecture"] != "amd64" {
		t.Errorf("control: Package %q Version %q Architecture %q, want pkid %s amd64", fields["Package"], fields["Version"], fields["Architecture"], pkg.version)
	}
	if !regexp.MustCompile(`^libc6 \(>= 2\.[0-9]+\)$`).MatchString(fields["Depends"]) {
		t.Errorf("Depends: %q, want libc6 (>= 2.N) and nothing else", fields["Depends"])
	}
	if fields["Suggests"] != "softhsm2" || fields["Recommends"] != "" || fields["Pre-Depends"] != "" {
		t.Errorf("Suggests %q Recommends %q Pre-Depends %q, want softhsm2 suggested only", fields["Suggests"], fields["Recommends"], fields["Pre-Depends"])
	}

	entries := debContents(t, pkg.path)
	want := wantFiles(t)
	for path, e := range entries {
		if e.owner != "root/root" {
			t.Errorf("%s owned by %s, want root/root (postinst gives /etc/pkid to the group pkid)", path, e.owner)
		}
		if e.perm[0] == 'd' {
			continue
		}
		if w, ok := want[path]; !ok {
			t.Errorf("unexpected file %s in the package", path)
		} else if e.perm != w {
			t.Errorf("%s: mode %s, want %s", path, e.perm, w)
		}
	}
	for path := range want {
		if _, ok := entries[path]; !ok {
			t.Errorf("package lacks %s", path)
		}
	}
	if e := entries["/etc/pkid"]; e.perm != "drwxr-x---" {
		t.Errorf("/etc/pkid: %q, want drwxr-x---", e.perm)
	}

	if got := strings.TrimSpace(run(t, "dpkg-deb", "--info", pkg.path, "conffiles")); got != "/etc/pkid/pkid.yaml" {
		t.Errorf("conffiles %q, want /etc/pkid/pkid.yaml", got)
	}
	for _, s := range []string{"postinst", "prerm", "postrm"} {
		src, err := os.ReadFile(filepath.Join("scripts", s))
		if err != nil {
			t.Fatal(err)
		}
		if got := run(t, "dpkg-deb", "--info", pkg.path, s); got != string(src) {
			t.Errorf("the package's %s differs from packaging/scripts/%s", s, s)
		}
		if out, err := exec.Command("sh", "-n", filepath.Join("scripts", s)).CombinedOutput(); err != nil {
			t.Errorf("sh -n scripts/%s: %v\n%s", s, err, out)
		}
	}

	root := t.TempDir()
	run(t, "dpkg-deb", "--extract", pkg.path, root)
	for path, src := range map[string]string{
		"/etc/pkid/pkid.yaml":                            "configs/pkid.example.yaml",
		"/usr/share/pkid/grafana/pkid.json":              "configs/grafana-dashboard.json",
		"/usr/share/pkid/prometheus/alerts.yml":          "configs/alerts.yml",
		"/usr/share/doc/pkid/examples/pkid.example.yaml": "configs/pkid.example.yaml",
		"/usr/share/doc/pkid/README.md":                  "README.md",
	} {
		got, err := os.ReadFile(filepath.Join(root, path))
		if err != nil {
			t.Error(err)
			continue
		}
		if w, _ := os.ReadFile(filepath.Join(repoRoot, src)); !bytes.Equal(got, w) {
			t.Errorf("%s differs from %s", path, src)
		}
	}
	unit, err := os.ReadFile(filepath.Join(root, "lib/systemd/system/pkid.service"))
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(unit, []byte("/usr/local")) || !bytes.Contains(unit, []byte("\nExecStart=/usr/bin/pkid serve ")) {
		t.Errorf("the packaged unit does not run /usr/bin/pkid:\n%s", unit)
	}

	// Packaging the same inputs twice gives the same bytes (mtimes come from
	// the commit, not the clock).
	again, err := build(options{Root: repoRoot, Bin: filepath.Join(root, "usr/bin/pkid"), Version: strings.Fields(pkg.versionLine)[1], OutDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	a, _ := os.ReadFile(pkg.path)
	b, _ := os.ReadFile(again)
	if !bytes.Equal(a, b) {
		t.Error("two builds of the package from the same inputs differ")
	}
}

// TestPackageInstallPurge installs the package on this machine with dpkg,
// checks what postinst did and that the unit verifies, removes it (state
// kept), purges it (everything gone). It needs root; CI runs it as root with
// PKID_REQUIRE_PACKAGE=1. A t.Cleanup purges the package whatever happens,
// and the test refuses to run where a pkid is installed or its user or
// directories exist, since purging would delete them.
func TestPackageInstallPurge(t *testing.T) {
	require := os.Getenv("PKID_REQUIRE_PACKAGE") == "1"
	unable := func(format string, args ...any) {
		t.Helper()
		if require {
			t.Fatalf("PKID_REQUIRE_PACKAGE=1: "+format, args...)
		}
		t.Skipf(format+" (PKID_REQUIRE_PACKAGE=1 makes this a failure)", args...)
	}
	if os.Geteuid() != 0 {
		unable("installing the package with dpkg -i needs root")
	}
	for _, tool := range []string{"dpkg", "dpkg-deb", "dpkg-query", "dpkg-statoverride", "systemd-analyze", "runuser", "getent"} {
		if _, err := exec.LookPath(tool); err != nil {
			unable("%s not installed (systemd-analyze: apt-get install systemd)", tool)
		}
	}

	// One package test at a time on a machine (other worktrees, other runs).
	lock, err := os.OpenFile("/run/lock/pkid-package-test.lock", os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lock.Close() })
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		t.Fatal(err)
	}

	if st := dpkgStatus(); st != "" {
		unable("a pkid package is on this machine (%s); refusing to install over it and purge it", st)
	}
	for _, p := range []string{"/var/lib/pkid", "/etc/pkid", "/usr/bin/pkid", "/lib/systemd/system/pkid.service"} {
		if _, err := os.Lstat(p); err == nil {
			unable("%s exists; refusing to install pkid's package here, since purging it would delete that", p)
		}
	}
	if _, err := user.Lookup("pkid"); err == nil {
		unable("a user pkid exists; refusing to install pkid's package here, since purging it would delete that user")
	}
	if _, err := user.LookupGroup("pkid"); err == nil {
		unable("a group pkid exists; refusing to install pkid's package here, since purging it would delete that group")
	}

	pkg := buildTestPackage(t)
	files := debContents(t, pkg.path)
	existedBefore := map[string]bool{}
	for p := range files {
		if _, err := os.Lstat(p); err == nil {
			existedBefore[p] = true
		}
	}

	t.Cleanup(func() { purgeForCleanup(t) })
	run(t, "dpkg", "--install", pkg.path)

	t.Run("installed", func(t *testing.T) {
		out := run(t, "dpkg-query", "--show", "--showformat", "${Status}\n${Version}\n${Conffiles}\n", "pkid")
		lines := strings.Split(out, "\n")
		if len(lines) < 3 || lines[0] != "install ok installed" || lines[1] != pkg.version || !strings.HasPrefix(strings.TrimSpace(lines[2]), "/etc/pkid/pkid.yaml ") {
			t.Errorf("dpkg-query: %q, want installed, version %s, conffile /etc/pkid/pkid.yaml", out, pkg.version)
		}
		if got := strings.TrimSpace(run(t, "/usr/bin/pkid", "version")); got != pkg.versionLine {
			t.Errorf("pkid version: %q, want %q", got, pkg.versionLine)
		}
		for p := range files {
			if _, err := os.Lstat(p); err != nil {
				t.Errorf("%s not installed: %v", p, err)
			}
		}
	})

	t.Run("unit verifies", func(t *testing.T) {
		cmd := exec.Command("systemd-analyze", "verify", "/lib/systemd/system/pkid.service")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
		}
		for l := range strings.Lines(string(out)) {
			if strings.Contains(l, "pkid") {
				t.Errorf("systemd-analyze verify: %s", strings.TrimSpace(l))
			}
		}
	})

	u, err := user.Lookup("pkid")
	if err != nil {
		t.Fatalf("after dpkg --install: %v", err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	t.Run("user", func(t *testing.T) {
		// name:password:uid:gid:gecos:home:shell
		f := strings.Split(strings.TrimSpace(run(t, "getent", "passwd", "pkid")), ":")
		if len(f) != 7 {
			t.Fatalf("getent passwd pkid: %q", f)
		}
		g := strings.Split(strings.TrimSpace(run(t, "getent", "group", "pkid")), ":")
		if len(g) < 3 || g[2] != f[3] {
			t.Errorf("group pkid %q is not the user's group %s", g, f[3])
		}
		if uid <= 0 || uid >= 1000 { // login.defs SYS_UID_MAX: a system user
			t.Errorf("pkid has uid %d, want a system uid (1-999)", uid)
		}
		if f[5] != "/var/lib/pkid" || f[6] != "/usr/sbin/nologin" {
			t.Errorf("pkid: home %q, shell %q; want /var/lib/pkid, /usr/sbin/nologin", f[5], f[6])
		}
	})

	t.Run("modes", func(t *testing.T) {
		for _, tc := range []struct {
			path     string
			mode     os.FileMode
			uid, gid int
		}{
			{"/var/lib/pkid", os.ModeDir | 0o700, uid, gid},
			{"/etc/pkid", os.ModeDir | 0o750, 0, gid},
			{"/etc/pkid/pkid.yaml", 0o640, 0, gid},
			{"/usr/bin/pkid", 0o755, 0, 0},
		} {
			fi, err := os.Lstat(tc.path)
			if err != nil {
				t.Error(err)
				continue
			}
			st := fi.Sys().(*syscall.Stat_t)
			if fi.Mode() != tc.mode || int(st.Uid) != tc.uid || int(st.Gid) != tc.gid {
				t.Errorf("%s: %v %d:%d, want %v %d:%d", tc.path, fi.Mode(), st.Uid, st.Gid, tc.mode, tc.uid, tc.gid)
			}
		}
		// What the service user may do: read its config, not change it; write its state.
		for _, tc := range []struct {
			args []string
			ok   bool
		}{
			{[]string{"-r", "/etc/pkid/pkid.yaml"}, true},
			{[]string{"-w", "/etc/pkid/pkid.yaml"}, false},
			{[]string{"-w", "/var/lib/pkid"}, true},
		} {
			err := exec.Command("runuser", append([]string{"-u", "pkid", "--", "test"}, tc.args...)...).Run()
			if (err == nil) != tc.ok {
				t.Errorf("as pkid, test %s: %v, want ok=%v", strings.Join(tc.args, " "), err, tc.ok)
			}
		}
	})

	t.Run("nothing started", func(t *testing.T) {
		if _, err := os.Lstat("/etc/systemd/system/multi-user.target.wants/pkid.service"); err == nil {
			t.Error("installing enabled pkid.service")
		}
		if pids := processesOf(uid); len(pids) > 0 {
			t.Errorf("processes run as pkid after installing: %v", pids)
		}
	})

	// State the daemon would have written, owned by pkid: remove keeps it.
	db := "/var/lib/pkid/pkid.db"
	if err := os.WriteFile(db, []byte("records"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(db, uid, gid); err != nil {
		t.Fatal(err)
	}

	run(t, "dpkg", "--remove", "pkid")
	t.Run("removed", func(t *testing.T) {
		if st := dpkgStatus(); st != "deinstall ok config-files" {
			t.Errorf("after dpkg --remove: status %q, want deinstall ok config-files", st)
		}
		for _, p := range []string{"/usr/bin/pkid", "/lib/systemd/system/pkid.service", "/usr/share/pkid/grafana/pkid.json"} {
			if _, err := os.Lstat(p); err == nil {
				t.Errorf("%s still there after dpkg --remove", p)
			}
		}
		for _, p := range []string{db, "/etc/pkid/pkid.yaml"} {
			if _, err := os.Lstat(p); err != nil {
				t.Errorf("dpkg --remove deleted %s; only purge may", p)
			}
		}
		if _, err := user.Lookup("pkid"); err != nil {
			t.Errorf("dpkg --remove deleted the user pkid; only purge may: %v", err)
		}
	})

	run(t, "dpkg", "--purge", "pkid")
	t.Run("purged", func(t *testing.T) {
		if st := dpkgStatus(); st != "" {
			t.Errorf("after dpkg --purge: status %q", st)
		}
		for p := range files {
			if _, err := os.Lstat(p); err == nil && !existedBefore[p] {
				t.Errorf("%s still there after dpkg --purge", p)
			}
		}
		for _, p := range []string{"/var/lib/pkid", "/etc/pkid"} {
			if _, err := os.Lstat(p); err == nil {
				t.Errorf("%s still there after dpkg --purge", p)
			}
		}
		if _, err := user.Lookup("pkid"); err == nil {
			t.Error("the user pkid is still there after dpkg --purge")
		}
		if _, err := user.LookupGroup("pkid"); err == nil {
			t.Error("the group pkid is still there after dpkg --purge")
		}
		if out, _ := exec.Command("dpkg-statoverride", "--list").Output(); bytes.Contains(out, []byte("pkid")) {
			t.Errorf("dpkg-statoverride entries left: %s", out)
		}
	})
}

// dpkgStatus is dpkg's status of pkid, "" when dpkg does not have it.
func dpkgStatus() string {
	out, err := exec.Command("dpkg-query", "--show", "--showformat", "${Status}", "pkid").Output()
	st := strings.TrimSpace(string(out))
	if err != nil || st == "" || strings.HasSuffix(st, " not-installed") {
		return ""
	}
	return st
}

// purgeForCleanup leaves the machine as the test found it: no pkid package,
// user, group or directories (none existed before, or the test would not
// have run). If the package's own scripts cannot purge it, they are dropped
// and the test undoes their work itself.
func purgeForCleanup(t *testing.T) {
	if dpkgStatus() == "" {
		return
	}
	out, err := exec.Command("dpkg", "--purge", "pkid").CombinedOutput()
	if err == nil && dpkgStatus() == "" {
		return
	}
	t.Errorf("cleanup: dpkg --purge pkid: %v\n%s", err, out)
	for _, s := range []string{"prerm", "postrm"} {
		os.Remove("/var/lib/dpkg/info/pkid." + s)
	}
	out, err = exec.Command("dpkg", "--purge", "--force-remove-reinstreq", "pkid").CombinedOutput()
	if err != nil || dpkgStatus() != "" {
		t.Errorf("cleanup: pkid is STILL INSTALLED on this machine; remove it by hand (dpkg --purge pkid): %v\n%s", err, out)
	}
	exec.Command("userdel", "pkid").Run()
	exec.Command("groupdel", "pkid").Run()
	os.RemoveAll("/var/lib/pkid")
	os.RemoveAll("/etc/pkid")
}

// processesOf lists the pids whose real uid is uid.
func processesOf(uid int) []string {
	var pids []string
	dirs, _ := os.ReadDir("/proc")
	for _, d := range dirs {
		if _, err := strconv.Atoi(d.Name()); err != nil {
			continue
		}
		status, err := os.ReadFile(filepath.Join("/proc", d.Name(), "status"))
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		for l := range strings.Lines(string(status)) {
			if f := strings.Fields(l); len(f) > 1 && f[0] == "Uid:" && f[1] == strconv.Itoa(uid) {
				pids = append(pids, d.Name())
			}
		}
	}
	slices.Sort(pids)
	return pids
}
