// Command pkid-deb builds pkid's Debian package, pkid_<version>_amd64.deb,
// from packaging/nfpm.yaml with nfpm used as a library. `make package` runs it
// as
//
//	go run . -root .. -bin ../bin/pkid -version "$(VERSION)" -out ../dist
//
// where VERSION is the Makefile's `git describe --tags --always --dirty`.
//
// packaging/ is a Go module of its own: nfpm (and the PromQL parser the
// dashboard test uses) and their dependencies stay out of pkid's go.mod and
// go.sum, can never be linked into pkid's binary, and cannot move the
// versions of the modules pkid itself is built with.
package main

import (
	"debug/elf"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/goreleaser/nfpm/v2"
	"github.com/goreleaser/nfpm/v2/deb"
)

func main() {
	var o options
	flag.StringVar(&o.Root, "root", "..", "the pkid repository root")
	flag.StringVar(&o.Bin, "bin", "../bin/pkid", "the pkid binary to package (make build)")
	flag.StringVar(&o.Version, "version", "", "the version as `git describe --tags --always --dirty` prints it")
	flag.StringVar(&o.OutDir, "out", "../dist", "where to write the .deb")
	flag.Parse()
	if flag.NArg() != 0 || o.Version == "" {
		fmt.Fprintln(os.Stderr, "usage: pkid-deb -version VERSION [-root DIR] [-bin FILE] [-out DIR]")
		os.Exit(2)
	}
	path, err := build(o)
	if err != nil {
		fmt.Fprintf(os.Stderr, "pkid-deb: %v\n", err)
		os.Exit(1)
	}
	fmt.Println(path)
}

// options says what to package and where to put it.
type options struct {
	Root    string // repository root: configs/, README.md, packaging/nfpm.yaml
	Bin     string // the pkid binary
	Version string // as git describe prints it; debianVersion makes the package's
	OutDir  string
}

// build writes OutDir/pkid_<version>_amd64.deb and returns its path.
func build(o options) (string, error) {
	root, err := filepath.Abs(o.Root)
	if err != nil {
		return "", err
	}
	bin, err := filepath.Abs(o.Bin)
	if err != nil {
		return "", err
	}
	version, err := debianVersion(o.Version)
	if err != nil {
		return "", err
	}
	glibc, err := glibcNeeded(bin)
	if err != nil {
		return "", err
	}

	stage, err := os.MkdirTemp("", "pkid-deb-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(stage)
	unit, err := os.ReadFile(filepath.Join(root, "configs", "pkid.service"))
	if err != nil {
		return "", err
	}
	unit, err = debianUnit(unit)
	if err != nil {
		return "", err
	}
	if err := os.WriteFile(filepath.Join(stage, "pkid.service"), unit, 0o644); err != nil {
		return "", err
	}

	raw, err := os.ReadFile(filepath.Join(root, "packaging", "nfpm.yaml"))
	if err != nil {
		return "", err
	}
	text, err := expand(string(raw), map[string]string{
		"PKID_ROOT":    root,
		"PKID_BIN":     bin,
		"PKID_VERSION": version,
		"PKID_GLIBC":   glibc,
		"PKID_STAGE":   stage,
	})
	if err != nil {
		return "", fmt.Errorf("packaging/nfpm.yaml: %w", err)
	}
	// Every variable is replaced already; nfpm itself only asks for signing
	// passphrases (NFPM_*), and the package is not signed.
	cfg, err := nfpm.ParseWithEnvMapping(strings.NewReader(text), func(string) string { return "" })
	if err != nil {
		return "", fmt.Errorf("packaging/nfpm.yaml: %w", err)
	}
	if err := cfg.Validate(); err != nil {
		return "", fmt.Errorf("packaging/nfpm.yaml: %w", err)
	}
	info, err := cfg.Get("deb")
	if err != nil {
		return "", err
	}
	if info.MTime.IsZero() { // no SOURCE_DATE_EPOCH: the commit's time, so a rebuild is byte-identical
		info.MTime = commitTime(root)
	}

	name := deb.Default.ConventionalFileName(info)
	if want := "pkid_" + version + "_amd64.deb"; name != want {
		return "", fmt.Errorf("nfpm names the package %s, want %s", name, want)
	}
	if err := os.MkdirAll(o.OutDir, 0o755); err != nil {
		return "", err
	}
	path := filepath.Join(o.OutDir, name)
	f, err := os.CreateTemp(o.OutDir, name+".*")
	if err != nil {
		return "", err
	}
	defer os.Remove(f.Name()) // after a successful rename there is nothing left to remove
	if err := deb.Default.Package(info, f); err != nil {
		f.Close()
		return "", fmt.Errorf("nfpm: %w", err)
	}
	if err := f.Chmod(0o644); err != nil {
		f.Close()
		return "", err
	}
	if err := f.Close(); err != nil {
		return "", err
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return "", err
	}
	return path, nil
}

// expand replaces each ${NAME} of text with vars[NAME] and refuses any other
// name, so a typo in nfpm.yaml cannot become an empty path.
func expand(text string, vars map[string]string) (string, error) {
	var unknown []string
	out := os.Expand(text, func(name string) string {
		v, ok := vars[name]
		if !ok || v == "" {
			unknown = append(unknown, name)
		}
		return v
	})
	if len(unknown) > 0 {
		return "", fmt.Errorf("unknown or empty variables %s", strings.Join(unknown, ", "))
	}
	return out, nil
}

var (
	describeSuffix = regexp.MustCompile(`^(.+)-([0-9]+)-g([0-9a-f]{4,40})$`)
	abbrevHash     = regexp.MustCompile(`^[0-9a-f]{4,40}$`)
	debianUpstream = regexp.MustCompile(`^[0-9][A-Za-z0-9.+~]*$`)
)

// debianVersion turns what `git describe --tags --always --dirty` prints
// into a Debian upstream version (deb-version(7)) that dpkg sorts in the
// order the commits were made (a dirty build after its commit), with no
// hyphen since the package has no Debian revision:
//
//	v1.4.0                   1.4.0
//	v1.4.0-3-g1a2b3c4        1.4.0+3.g1a2b3c4  (after 1.4.0, before 1.4.1)
//	v1.5.0-rc.1              1.5.0~rc.1        (before 1.5.0)
//	v1.4.0-dirty             1.4.0+dirty
//	1a2b3c4 (no tag yet)     0.0.0~git.1a2b3c4 (before any release)
func debianVersion(describe string) (string, error) {
	s, dirty := strings.CutSuffix(strings.TrimSpace(describe), "-dirty")
	var v string
	if abbrevHash.MatchString(s) {
		v = "0.0.0~git." + s
	} else {
		tag, commits, hash := s, "", ""
		if m := describeSuffix.FindStringSubmatch(s); m != nil {
			tag, commits, hash = m[1], m[2], m[3]
		}
		if len(tag) > 1 && tag[0] == 'v' && tag[1] >= '0' && tag[1] <= '9' {
			tag = tag[1:]
		}
		// A semver pre-release (-rc.1) sorts before its release: Debian's ~.
		release, meta, _ := strings.Cut(tag, "+")
		release, pre, hasPre := strings.Cut(release, "-")
		v = release
		if hasPre {
			v += "~" + strings.ReplaceAll(pre, "-", ".")
		}
		if meta != "" {
			v += "+" + strings.ReplaceAll(meta, "-", ".")
		}
		if commits != "" {
			v += plus(v) + commits + ".g" + hash
		}
	}
	if dirty {
		v += plus(v) + "dirty"
	}
	if !debianUpstream.MatchString(v) {
		return "", fmt.Errorf("version %q (git describe) makes %q, not a Debian version: tag releases vX.Y.Z, or set VERSION", describe, v)
	}
	return v, nil
}

// plus is the separator that appends local build information to v.
func plus(v string) string {
	if strings.Contains(v, "+") {
		return "."
	}
	return "+"
}

// libc6Libraries are the shared objects the Debian package libc6 provides
// that a Go binary may name; pkid declares libc6 and nothing else.
var libc6Libraries = map[string]bool{
	"libc.so.6": true, "libpthread.so.0": true, "libdl.so.2": true,
	"libm.so.6": true, "libresolv.so.2": true, "librt.so.1": true,
}

// glibcNeeded returns the newest GLIBC_x.y symbol version the binary needs
// (dpkg-shlibdeps' answer for libc6, without a debian/ tree), after checking
// it is a dynamically linked amd64 binary that needs no library but libc6's.
func glibcNeeded(path string) (string, error) {
	f, err := elf.Open(path)
	if err != nil {
		return "", fmt.Errorf("the pkid binary: %w", err)
	}
	defer f.Close()
	if f.Machine != elf.EM_X86_64 {
		return "", fmt.Errorf("%s is a %s binary, the package is amd64", path, f.Machine)
	}
	libs, err := f.ImportedLibraries()
	if err != nil {
		return "", fmt.Errorf("%s: %w", path, err)
	}
	if len(libs) == 0 {
		return "", fmt.Errorf("%s is statically linked; pkid needs cgo for PKCS#11 (make build, CGO_ENABLED=1)", path)
	}
	for _, l := range libs {
		if !libc6Libraries[l] {
			return "", fmt.Errorf("%s needs %s, but the package declares only libc6", path, l)
		}
	}
	syms, err := f.ImportedSymbols()
	if err != nil {
		return "", fmt.Errorf("%s: %w", path, err)
	}
	var newest []int
	for _, s := range syms {
		v, ok := strings.CutPrefix(s.Version, "GLIBC_")
		if !ok || v == "PRIVATE" {
			continue
		}
		n, err := versionNumbers(v)
		if err != nil {
			return "", fmt.Errorf("%s: symbol %s@%s: %w", path, s.Name, s.Version, err)
		}
		if compareNumbers(n, newest) > 0 {
			newest = n
		}
	}
	if newest == nil {
		return "", errors.New(path + " names no GLIBC_ symbol version")
	}
	parts := make([]string, len(newest))
	for i, n := range newest {
		parts[i] = strconv.Itoa(n)
	}
	return strings.Join(parts, "."), nil
}

func versionNumbers(v string) ([]int, error) {
	var n []int
	for p := range strings.SplitSeq(v, ".") {
		i, err := strconv.Atoi(p)
		if err != nil {
			return nil, fmt.Errorf("version %q: %w", v, err)
		}
		n = append(n, i)
	}
	return n, nil
}

func compareNumbers(a, b []int) int {
	for i := 0; i < len(a) || i < len(b); i++ {
		var x, y int
		if i < len(a) {
			x = a[i]
		}
		if i < len(b) {
			y = b[i]
		}
		if x != y {
			return x - y
		}
	}
	return len(a) - len(b)
}

// debianUnit rewrites configs/pkid.service, written for `make install`
// (/usr/local), for the package: the binary is /usr/bin/pkid and the docs
// are in /usr/share/doc/pkid (Debian Policy 9.1: packages never use
// /usr/local). Any other /usr/local path is an error, not a silent miss.
func debianUnit(unit []byte) ([]byte, error) {
	lines := strings.Split(string(unit), "\n")
	for i, l := range lines {
		if strings.HasPrefix(l, "# Install:") {
			lines[i] = "# Installed by the pkid Debian package: /usr/bin/pkid, this unit, /etc/pkid/pkid.yaml."
		}
	}
	s := strings.NewReplacer(
		"/usr/local/bin/pkid", "/usr/bin/pkid",
		"/usr/local/share/doc/pkid/", "/usr/share/doc/pkid/",
	).Replace(strings.Join(lines, "\n"))
	if i := strings.Index(s, "/usr/local"); i >= 0 {
		line := s[strings.LastIndex(s[:i], "\n")+1:]
		line, _, _ = strings.Cut(line, "\n")
		return nil, fmt.Errorf("configs/pkid.service: %q names /usr/local, which the package does not install", line)
	}
	return []byte(s), nil
}

// commitTime is HEAD's commit time, or zero (nfpm then uses now).
func commitTime(root string) time.Time {
	out, err := exec.Command("git", "-C", root, "log", "-1", "--format=%ct").Output()
	if err != nil {
		return time.Time{}
	}
	sec, err := strconv.ParseInt(strings.TrimSpace(string(out)), 10, 64)
	if err != nil {
		return time.Time{}
	}
	return time.Unix(sec, 0).UTC()
}
