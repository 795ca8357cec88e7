// Package softhsm creates throw-away SoftHSM2 tokens for tests. The demo
// and CI set-up scripts live beside it (setup-demo.sh).
package softhsm

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// ModuleCandidates are where Debian and others install the SoftHSM2 module.
var ModuleCandidates = []string{
	"/usr/lib/softhsm/libsofthsm2.so",
	"/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
	"/usr/local/lib/softhsm/libsofthsm2.so",
}

// Module returns the installed SoftHSM2 module path, or "".
func Module() string {
	for _, p := range ModuleCandidates {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	return ""
}

// Required reports whether tests must fail rather than skip when SoftHSM2
// is missing; `make test` and CI set PKID_REQUIRE_SOFTHSM=1.
func Required() bool { return os.Getenv("PKID_REQUIRE_SOFTHSM") == "1" }

// TestToken is a freshly initialised token in a temporary directory.
type TestToken struct {
	Module string
	Label  string
	PIN    string
	Conf   string // SOFTHSM2_CONF path
}

// NewTestToken initialises a token under t.TempDir and points
// SOFTHSM2_CONF at it for the rest of the test. It skips the test when
// SoftHSM2 is missing, unless Required.
func NewTestToken(t testing.TB) *TestToken {
	t.Helper()
	module := Module()
	if module == "" || exec.Command("softhsm2-util", "--version").Run() != nil {
		if Required() {
			t.Fatal("SoftHSM2 is not installed (apt-get install softhsm2) and PKID_REQUIRE_SOFTHSM=1")
		}
		t.Skip("SoftHSM2 not installed; set PKID_REQUIRE_SOFTHSM=1 to make this a failure")
	}
	dir := t.TempDir()
	tokens := filepath.Join(dir, "tokens")
	if err := os.Mkdir(tokens, 0o700); err != nil {
		t.Fatal(err)
	}
	conf := filepath.Join(dir, "softhsm2.conf")
	body := fmt.Sprintf("directories.tokendir = %s\nobjectstore.backend = file\nlog.level = ERROR\n", tokens)
	if err := os.WriteFile(conf, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("SOFTHSM2_CONF", conf)
	tok := &TestToken{Module: module, Label: "pkid-test", PIN: randomPIN(), Conf: conf}
	out, err := exec.Command("softhsm2-util", "--init-token", "--free", "--label", tok.Label,
		"--so-pin", randomPIN(), "--pin", tok.PIN).CombinedOutput()
	if err != nil {
		t.Fatalf("softhsm2-util --init-token: %v\n%s", err, out)
	}
	return tok
}

func randomPIN() string {
	b := make([]byte, 8)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b)
}
