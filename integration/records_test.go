package integration

import (
	"bufio"
	"bytes"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/x509"
	"database/sql"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"

	_ "modernc.org/sqlite"
)

// issuedCert is one certificate a client received.
type issuedCert struct {
	id, serial string
	der        []byte
	secrets    [][]byte // the private key's secret, PKCS#8 DER and its base64 text
}

// issueOwn issues certificates of its own with both key families through
// the client and returns what the client received.
func issueOwn(t *testing.T, post func(map[string]any) (int, map[string]any)) []issuedCert {
	t.Helper()
	var out []issuedCert
	for k, alg := range []string{"EC_prime256v1", "RSA_2048", "EC_secp384r1"} {
		cn := fmt.Sprintf("rec%d.example.internal", k)
		code, body := post(map[string]any{"profileId": webServer, "commonName": cn, "ttl": "1h",
			"altNames": sans("dns_name", cn), "signatureAlgorithm": "ECDSA-SHA256", "keyAlgorithm": alg})
		if code != 200 {
			t.Fatalf("issue %s: %d %v", alg, code, body)
		}
		leaf, err := parseCert(body["certificate"].(string))
		if err != nil {
			t.Fatal(err)
		}
		block, _ := pem.Decode([]byte(body["privateKey"].(string)))
		if block == nil {
			t.Fatal("no private key PEM")
		}
		key, err := x509.ParsePKCS8PrivateKey(block.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		var secret []byte
		switch k := key.(type) {
		case *ecdsa.PrivateKey:
			secret, _ = k.Bytes()
		case *rsa.PrivateKey:
			secret = k.D.Bytes()
		}
		out = append(out, issuedCert{id: body["certificateId"].(string), serial: body["serialNumber"].(string), der: leaf.Raw,
			secrets: [][]byte{secret, block.Bytes, []byte(base64.StdEncoding.EncodeToString(block.Bytes))}})
	}
	return out
}

// Every certificate this test's client received has an issued record with
// the same serial, DER and typed identity — in `records list`, in
// `records show`, and in the database; the audit log verifies; no PIN and
// no leaf private key is in the database or the log.
func TestRecordsMatchIssuedCertificates(t *testing.T) {
	d := startDaemon2(t)
	certs := issueOwn(t, func(req map[string]any) (int, map[string]any) { return d.post(t, "client", req) })
	config := filepath.Join(d.dir, "pkid.yaml")

	out, errOut, code := s.pkid(t, "records", "list", "--config", config, "--status", "issued")
	if code != 0 {
		t.Fatalf("records list: %d %s", code, errOut)
	}
	type rec struct{ CertificateID, SerialNumber, Status, Identity, TBSSha256 string }
	records := map[string]rec{}
	sc := bufio.NewScanner(strings.NewReader(out))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var r struct {
			CertificateID, SerialNumber, Status, Identity string
			TBS                                           string `json:"tbsSha256"`
		}
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatalf("records list line is not JSON: %q", sc.Text())
		}
		records[r.CertificateID] = rec{r.CertificateID, r.SerialNumber, r.Status, r.Identity, r.TBS}
	}
	db, err := sql.Open("sqlite", "file:"+filepath.Join(d.dir, "pkid.db")+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var keys [][]byte
	for _, c := range certs {
		keys = append(keys, c.secrets...)
		r, ok := records[c.id]
		if !ok || r.Status != "issued" || r.SerialNumber != c.serial || r.Identity != "uri:spiffe://example.internal/demo-client" || len(r.TBSSha256) != 64 {
			t.Errorf("certificate %s (serial %s): record %+v", c.id, c.serial, r)
		}
		var der []byte
		if err := db.QueryRow(`SELECT der FROM certificates WHERE id = ?`, c.id).Scan(&der); err != nil || !bytes.Equal(der, c.der) {
			t.Errorf("stored DER of %s differs from what the client received (%v)", c.id, err)
		}
		show, errOut, code := s.pkid(t, "records", "show", "--config", config, strings.ToUpper(c.serial))
		var v struct{ CertificateID, Certificate string }
		if code != 0 || json.Unmarshal([]byte(show), &v) != nil || v.CertificateID != c.id {
			t.Fatalf("records show %s: %d %s %s", c.serial, code, show, errOut)
		}
		if block, _ := pem.Decode([]byte(v.Certificate)); block == nil || !bytes.Equal(block.Bytes, c.der) {
			t.Errorf("records show %s: the PEM is not the certificate", c.serial)
		}
	}
	if out, errOut, code := s.pkid(t, "records", "list", "--config", config, "--status", "bogus"); code != 2 ||
		!strings.Contains(errOut, "pending, issued, aborted, revoked") {
		t.Errorf("records list --status bogus: exit %d %q %q, want 2 naming the valid statuses", code, out, errOut)
	}
	if _, errOut, code := s.pkid(t, "records", "show", "--config", config, "0badc0ffee"); code != 2 || !strings.Contains(errOut, "no certificate") {
		t.Errorf("records show of an unknown serial: exit %d %q", code, errOut)
	}
	if out, errOut, code := s.pkid(t, "audit", "verify", "--config", config); code != 0 || !strings.Contains(out, "audit chain intact") {
		t.Fatalf("audit verify: %d %s %s", code, out, errOut)
	}
	assertNoSecrets(t, d.dir, d.logPath, keys)
}

// tamperedCopy copies a fixture's database, runs the statements on the
// copy (the append-only triggers dropped first, as an attacker with the
// file would) and returns a config that points at it.
func tamperedCopy(t *testing.T, d *daemon2, name string, stmts ...string) string {
	t.Helper()
	src, err := sql.Open("sqlite", "file:"+filepath.Join(d.dir, "pkid.db")+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	copyPath := filepath.Join(d.dir, name+".db")
	if _, err := src.Exec(`VACUUM INTO ?`, copyPath); err != nil {
		t.Fatal(err)
	}
	db, err := sql.Open("sqlite", "file:"+copyPath)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	rows, err := db.Query(`SELECT name FROM sqlite_master WHERE type = 'trigger'`)
	if err != nil {
		t.Fatal(err)
	}
	var triggers []string
	for rows.Next() {
		var n string
		rows.Scan(&n)
		triggers = append(triggers, n)
	}
	rows.Close()
	for _, tr := range triggers {
		stmts = append([]string{"DROP TRIGGER " + tr}, stmts...)
	}
	for _, q := range stmts {
		if _, err := db.Exec(q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	cfg := strings.Replace(readFile(t, filepath.Join(d.dir, "pkid.yaml")), "database: pkid.db", "database: "+name+".db", 1)
	p := filepath.Join(d.dir, name+".yaml")
	if err := os.WriteFile(p, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// The audit log is anchored: altering, removing, reordering or truncating
// entries, deleting a record, adding one the log never saw, and forging a
// checkpoint are each detected by `pkid audit verify`, which also checks an
// anchor taken from the log.
func TestAuditTamperingIsDetected(t *testing.T) {
	d := startDaemon2(t)
	certs := issueOwn(t, func(req map[string]any) (int, map[string]any) { return d.post(t, "client", req) })
	if code, _ := d.post(t, "intruder", intruderWeb); code != 403 {
		t.Fatal("the intruder's refusal is part of the log under test")
	}
	d.cmd.Process.Signal(syscall.SIGTERM) // a clean stop signs a checkpoint of the last entries
	<-d.exited
	logText := readFile(t, d.logPath)
	m := regexp.MustCompile(`"verify":"pkid audit verify --checkpoint (\d+):([0-9a-f]{64})"`).FindAllStringSubmatch(logText, -1)
	if len(m) == 0 {
		t.Fatalf("no checkpoint in the log:\n%s", logText)
	}
	anchor := m[len(m)-1][1] + ":" + m[len(m)-1][2]
	config := filepath.Join(d.dir, "pkid.yaml")
	out, errOut, code := s.pkid(t, "audit", "verify", "--config", config, "--checkpoint", anchor)
	if code != 0 || !strings.Contains(out, "0 entries after it") {
		t.Fatalf("audit verify of the intact log with its anchor: %d %s %s", code, out, errOut)
	}
	wrongAnchor := m[len(m)-1][1] + ":" + strings.Repeat("0", 64)
	if _, errOut, code := s.pkid(t, "audit", "verify", "--config", config, "--checkpoint", wrongAnchor); code == 0 || !strings.Contains(errOut, "anchor") {
		t.Errorf("a forged anchor passed: %d %s", code, errOut)
	}

	victim := certs[1].id
	cases := []struct {
		name  string
		stmts []string
		want  string
	}{
		{"altered entry", []string{`UPDATE audit SET event = replace(event, '"action":"refused"', '"action":"issued"') WHERE seq = (SELECT min(seq) FROM audit WHERE event LIKE '%"action":"refused"%')`},
			"content does not match its hash"},
		{"removed entry", []string{`DELETE FROM audit WHERE seq = 2`}, "audit entry 2: missing"},
		{"reordered entries", []string{`UPDATE audit SET seq = -1 WHERE seq = 1`, `UPDATE audit SET seq = 1 WHERE seq = 2`, `UPDATE audit SET seq = 2 WHERE seq = -1`},
			"link does not match"},
		{"truncated tail", []string{`DELETE FROM audit WHERE seq = (SELECT max(seq) FROM audit)`}, "truncated"},
		{"deleted record", []string{`DELETE FROM certificates WHERE id = '` + victim + `'`}, "names a certificate that has no record"},
		{"a record the log never saw", []string{`INSERT INTO certificates SELECT '00000000-0000-4000-8000-00000000dead', 'dead', profile_id, profile, ca, issuer_hash,
			identity, request_id, '00000000-0000-4000-8000-00000000beef', application_id, common_name, alt_names, key_usages, ext_key_usages, signature_algorithm,
			key_algorithm, not_before, not_after, tbs_hash, csr, csr_hash, renews, status, der, revoked_at, revocation_reason, created_at, updated_at, node
			FROM certificates WHERE id = '` + victim + `'`}, "no issued entry names it"},
		{"forged checkpoint", []string{`UPDATE audit_checkpoints SET signature = x'3006020101020101' WHERE seq = (SELECT max(seq) FROM audit_checkpoints)`},
			"checkpoint signature does not verify"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg := tamperedCopy(t, d, strings.ReplaceAll(c.name, " ", "-"), c.stmts...)
			out, errOut, code := s.pkid(t, "audit", "verify", "--config", cfg)
			if code == 0 || !strings.Contains(errOut, c.want) {
				t.Errorf("audit verify: exit %d %s %s, want a failure naming %q", code, out, errOut, c.want)
			}
		})
	}
}
