package integration

import (
	"crypto/x509"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"

	"github.com/pkid/pkid/store/postgres/pgtest"
)

// One node outgrown (DESIGN.md §16): pkid store migrate copies a stopped
// node's SQLite store into an empty PostgreSQL database, and pkid on the
// PostgreSQL config serves the same records, audit chain and revocations.
func TestStoreMigrateToPostgreSQL(t *testing.T) {
	pg := pgtest.StartServer(t)
	d := startDaemon2(t)
	own := issueOwn(t, func(req map[string]any) (int, map[string]any) { return d.post(t, "client", req) })
	revoked := own[0]
	if code, body := d.call(t, "client", "POST", "/api/v1/pki/certificates/"+revoked.serial+"/revoke",
		map[string]string{"revocationReason": "KEY_COMPROMISE"}); code != 200 {
		t.Fatalf("revoke: %d %v", code, body)
	}
	d.cmd.Process.Signal(syscall.SIGTERM)
	if err := <-d.exited; err != nil {
		t.Fatalf("pkid did not stop cleanly: %v", err)
	}
	sqliteConfig := filepath.Join(d.dir, "pkid.yaml")
	before, _, code := s.pkid(t, "records", "list", "--config", sqliteConfig)
	if code != 0 {
		t.Fatal("records list on the SQLite store failed")
	}

	// The same fixture on PostgreSQL: a password file, never the DSN.
	pwFile := filepath.Join(d.dir, "pg-password")
	if err := os.WriteFile(pwFile, []byte(pg.Password()+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	dsn := pg.NewDatabase(t)
	d.editConfig(t, func(c string) string {
		return strings.Replace(c, "database: pkid.db\n", fmt.Sprintf("database: %q\ndatabasePasswordFile: pg-password\n", dsn), 1)
	})
	if _, errOut, code := s.pkid(t, "store", "migrate", "--config", sqliteConfig, "--from", "sqlite:"+filepath.Join(d.dir, "pkid.db"),
		"--to", dsn+"x"); code != 2 || !strings.Contains(errOut, "--to is not the config's database") || strings.Contains(errOut, dsn) {
		t.Errorf("a --to that is not the config's database: exit %d %q", code, errOut)
	}
	if out, errOut, code := s.pkid(t, "store", "migrate", "--config", sqliteConfig, "--from", "sqlite:"+filepath.Join(d.dir, "pkid.db"), "--to", dsn); code != 0 {
		t.Fatalf("pkid store migrate: exit %d\n%s%s", code, out, errOut)
	} else if !regexp.MustCompile(`copied \d+ certificates`).MatchString(out) || !strings.Contains(out, "audit chain verified on the target") {
		t.Errorf("migrate said: %s", out)
	}
	// Copying twice would make two chains of one: refused, nothing changed.
	if _, errOut, code := s.pkid(t, "store", "migrate", "--config", sqliteConfig, "--from", filepath.Join(d.dir, "pkid.db")); code == 0 ||
		!strings.Contains(errOut, "not empty") {
		t.Errorf("a second migrate into the same database: exit %d %q", code, errOut)
	}
	after, _, code := s.pkid(t, "records", "list", "--config", sqliteConfig)
	if code != 0 || after != before {
		t.Fatalf("records differ after the migration (exit %d):\n%s\nvs\n%s", code, before, after)
	}
	if out, errOut, code := s.pkid(t, "audit", "verify", "--config", sqliteConfig); code != 0 {
		t.Fatalf("audit verify on PostgreSQL: %s%s", out, errOut)
	}

	// pkid serves from PostgreSQL: the old records answer, the revocation
	// is on the CRL, and new certificates get new serials on the same chain.
	d.start(t)
	for _, c := range own {
		code, body := d.call(t, "client", "GET", "/api/v1/pki/certificates/"+c.serial, nil)
		if code != 200 {
			t.Fatalf("look-up of %s after the migration: %d %v", c.serial, code, body)
		}
	}
	crl, _, _ := fetchCRL(t, d.public, "ec-issuing")
	listed := false
	for _, e := range crl.RevokedCertificateEntries {
		listed = listed || e.SerialNumber.Text(16) == strings.TrimLeft(revoked.serial, "0")
	}
	if !listed {
		t.Errorf("the CRL served from PostgreSQL does not list %s", revoked.serial)
	}
	code, body := d.post(t, "client", map[string]any{"profileId": webServer, "commonName": "after.example.internal",
		"altNames": []map[string]string{{"type": "dns_name", "value": "after.example.internal"}}, "ttl": "1d",
		"signatureAlgorithm": "ECDSA-SHA256", "keyAlgorithm": "EC_prime256v1"})
	if code != 200 {
		t.Fatalf("issuance on PostgreSQL: %d %v", code, body)
	}
	if _, err := x509.ParseCertificate(mustDER(t, body["certificate"].(string))); err != nil {
		t.Fatal(err)
	}
	d.cmd.Process.Signal(syscall.SIGTERM)
	<-d.exited
	out, errOut, code := s.pkid(t, "audit", "verify", "--config", sqliteConfig)
	if code != 0 {
		t.Fatalf("audit verify after issuing on PostgreSQL: %s%s", out, errOut)
	}
	var lines int
	for _, l := range strings.Split(strings.TrimSpace(mustRun(t, "records", "list", "--config", sqliteConfig)), "\n") {
		var v map[string]any
		if json.Unmarshal([]byte(l), &v) == nil {
			lines++
		}
	}
	if want := strings.Count(strings.TrimSpace(before), "\n") + 2; lines != want {
		t.Errorf("%d records after one more issuance, want %d", lines, want)
	}
	if strings.Contains(readFile(t, d.logPath), pg.Password()) {
		t.Error("the database password is in the daemon's log")
	}
}

func mustRun(t *testing.T, args ...string) string {
	t.Helper()
	out, errOut, code := s.pkid(t, args...)
	if code != 0 {
		t.Fatalf("pkid %v: exit %d %s", args, code, errOut)
	}
	return out
}

func mustDER(t *testing.T, pemText string) []byte {
	t.Helper()
	c, err := parseCert(pemText)
	if err != nil {
		t.Fatal(err)
	}
	return c.Raw
}
