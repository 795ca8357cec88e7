package integration

import (
	"database/sql"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	_ "modernc.org/sqlite"
)

var prodReq = map[string]any{"profileId": prodClients, "commonName": "db.prod.example.internal", "ttl": "1h",
	"signatureAlgorithm": "ECDSA-SHA256", "keyAlgorithm": "EC_prime256v1"}

// mountTmpfs mounts a small tmpfs (root only) so the database can meet a
// real read-only file system and a real full disk.
func mountTmpfs(t *testing.T, size string) string {
	t.Helper()
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size, "tmpfs", dir).CombinedOutput(); err != nil {
		if os.Getenv("PKID_REQUIRE_SOFTHSM") == "1" && os.Geteuid() == 0 {
			t.Fatalf("mount tmpfs: %v %s", err, out)
		}
		t.Skipf("cannot mount a tmpfs here: %v %s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", "-l", dir).Run() })
	return dir
}

// waitStatus polls until the daemon answers want (or gives up).
func waitStatus(t *testing.T, d *daemon2, want int) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		code, body := d.post(t, "client", prodReq)
		if code == want {
			return
		}
		if code == 200 && want != 200 {
			t.Fatalf("got 200 while the database is failed: %v", body)
		}
		if time.Now().After(deadline) {
			t.Fatalf("status %d, want %d: %v", code, want, body)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func readyzCode(t *testing.T, d *daemon2) int {
	code, _ := httpGet(t, "http://"+d.metrics+"/readyz")
	return code
}

// A database that becomes read-only, full or locked gives 503 — never a
// signed certificate without a record — and pkid recovers when it does.
func TestDatabaseFaults(t *testing.T) {
	mnt := mountTmpfs(t, "32M")
	d := newDaemon2(t, func(c string) string {
		return strings.Replace(c, "database: pkid.db", "database: "+filepath.Join(mnt, "pkid.db"), 1) +
			"limits:\n  databaseBusyTimeout: 300ms\n"
	})
	if code, body := d.post(t, "client", prodReq); code != 200 {
		t.Fatalf("healthy: %d %v", code, body)
	}
	// The start-up OCSP pass signs too (and may have listed the certificate
	// just issued); the signature counts below start after it.
	d.waitOCSPPresigned(t, "pkid")
	signs := func() string {
		_, text := httpGet(t, "http://"+d.metrics+"/metrics")
		for _, l := range strings.Split(text, "\n") {
			if strings.HasPrefix(l, `pkid_hsm_sign_duration_seconds_count{ca="ec-issuing"}`) {
				return l
			}
		}
		return ""
	}
	ready := func(want int) {
		deadline := time.Now().Add(15 * time.Second)
		for readyzCode(t, d) != want && time.Now().Before(deadline) {
			time.Sleep(200 * time.Millisecond)
		}
		if got := readyzCode(t, d); got != want {
			t.Errorf("/readyz = %d, want %d", got, want)
		}
	}

	t.Run("full disk", func(t *testing.T) {
		filler := filepath.Join(mnt, "filler")
		f, err := os.Create(filler)
		if err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 1<<20)
		for {
			if _, err := f.Write(buf); err != nil {
				break // ENOSPC
			}
		}
		f.Close()
		before := signs()
		waitStatus(t, d, 503)
		if signs() != before {
			t.Error("the token signed while the database could not record the intent")
		}
		ready(503)
		os.Remove(filler)
		waitStatus(t, d, 200)
		ready(200)
	})

	t.Run("locked by another process", func(t *testing.T) {
		db, err := sql.Open("sqlite", "file:"+filepath.Join(mnt, "pkid.db")+"?_pragma=busy_timeout(5000)")
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		conn, err := db.Conn(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if _, err := conn.ExecContext(t.Context(), "BEGIN EXCLUSIVE"); err != nil {
			t.Fatal(err)
		}
		code, body := d.post(t, "client", prodReq)
		if code != 503 || body["error"] != "ServiceUnavailable" {
			t.Errorf("locked database: %d %v", code, body)
		}
		conn.ExecContext(t.Context(), "ROLLBACK")
		conn.Close()
		waitStatus(t, d, 200)
	})

	t.Run("read-only file system", func(t *testing.T) {
		// The kernel will not remount read-only under a file open for
		// writing, so the fault meets pkid at start: it refuses, naming the
		// database, and starts once the file system is writable again.
		d.cmd.Process.Signal(syscall.SIGTERM)
		<-d.exited
		if out, err := exec.Command("mount", "-o", "remount,ro", mnt).CombinedOutput(); err != nil {
			t.Fatalf("remount ro: %v %s", err, out)
		}
		out, errOut, code := s.pkid(t, "serve", "--config", filepath.Join(d.dir, "pkid.yaml"))
		if code != 1 || !strings.Contains(errOut, "database") {
			t.Errorf("serve on a read-only database: exit %d %s%s", code, out, errOut)
		}
		t.Logf("refused with: %s", lastLine(errOut))
		if out, err := exec.Command("mount", "-o", "remount,rw", mnt).CombinedOutput(); err != nil {
			t.Fatalf("remount rw: %v %s", err, out)
		}
		d.start(t)
		waitStatus(t, d, 200)
	})

	// Nothing half-issued: no pending record survives, the chain verifies.
	d.cmd.Process.Signal(syscall.SIGTERM)
	<-d.exited
	cfg := filepath.Join(d.dir, "pkid.yaml")
	out, _ := exec.Command(s.bin, "records", "list", "--config", cfg, "--status", "pending").Output()
	if strings.TrimSpace(string(out)) != "" {
		t.Errorf("pending records after the faults:\n%s", out)
	}
	if out, err := exec.Command(s.bin, "audit", "verify", "--config", cfg).CombinedOutput(); err != nil {
		t.Errorf("audit verify: %v %s", err, out)
	}
	log, _ := os.ReadFile(d.logPath)
	t.Logf("503s logged: %d", strings.Count(string(log), `"status":503`))
}

// A corrupt database file stops pkid at start with a message, not a crash.
func TestCorruptDatabaseRefusesToStart(t *testing.T) {
	dir := t.TempDir()
	cfg := strings.Replace(readFile(t, s.path("pkid.yaml")), "database: pkid.db", "database: "+filepath.Join(dir, "corrupt.db"), 1)
	cfg = strings.Replace(cfg, "listen: \""+s.addr+"\"", "listen: \""+freeAddr()+"\"", 1)
	cfg = strings.Replace(cfg, "metricsListen: \""+s.metrics+"\"", "metricsListen: \""+freeAddr()+"\"", 1)
	variant := s.path("corrupt.yaml")
	os.WriteFile(variant, []byte(cfg), 0o600)
	defer os.Remove(variant)
	garbage := []byte("SQLite format 3\x00" + strings.Repeat("\xde\xad\xbe\xef", 2048))
	os.WriteFile(filepath.Join(dir, "corrupt.db"), garbage, 0o600)
	out, errOut, code := s.pkid(t, "serve", "--config", variant)
	if code != 1 || !strings.Contains(errOut, "database") || strings.Contains(errOut, "panic") {
		t.Fatalf("serve on a corrupt database: exit %d\n%s%s", code, out, errOut)
	}
	t.Logf("refused with: %s", strings.TrimSpace(fmt.Sprint(lastLine(errOut))))
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}
