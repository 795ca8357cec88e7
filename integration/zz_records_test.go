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
	"os"
	"os/exec"
	"strings"
	"testing"

	_ "modernc.org/sqlite"
)

// Runs last (file order): every certificate a client received during the
// suite has an issued record with the same serial and DER; the audit chain
// verifies; an altered copy of the database fails verification; no leaf
// private key is anywhere in the database.
func TestRecordsMatchEveryIssuedCertificate(t *testing.T) {
	privateKeys := issueAndKeepKeys(t)
	out, errOut, code := s.pkid(t, "records", "list", "--config", s.path("pkid.yaml"))
	if code != 0 {
		t.Fatalf("records list: %d %s", code, errOut)
	}
	type rec struct {
		CertificateID, SerialNumber, Status, Profile, Identity, CommonName string
	}
	records := map[string]rec{}
	sc := bufio.NewScanner(strings.NewReader(out))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var r rec
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatalf("records list line is not JSON: %q", sc.Text())
		}
		records[r.CertificateID] = r
	}
	s.mu.Lock()
	issued := s.issued
	s.mu.Unlock()
	if len(issued) < 20 {
		t.Fatalf("only %d certificates were issued during the suite", len(issued))
	}
	issuedRecords := 0
	for _, r := range records {
		if r.Status == "issued" {
			issuedRecords++
		}
	}
	if issuedRecords != len(issued) {
		t.Errorf("%d issued records, but clients received %d certificates", issuedRecords, len(issued))
	}
	for id, c := range issued {
		r, ok := records[id]
		if !ok || r.Status != "issued" || r.SerialNumber != c.serial || r.Identity != "spiffe://example.internal/demo-client" {
			t.Errorf("certificate %s (serial %s): record %+v", id, c.serial, r)
		}
	}

	db, err := sql.Open("sqlite", "file:"+s.path("pkid.db")+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for id, c := range issued {
		var der []byte
		if err := db.QueryRow(`SELECT der FROM certificates WHERE id = ?`, id).Scan(&der); err != nil || !bytes.Equal(der, c.der) {
			t.Errorf("stored DER of %s differs from what the client received (%v)", id, err)
		}
	}
	var refusals int
	if err := db.QueryRow(`SELECT count(*) FROM audit WHERE event LIKE '%"action":"refused"%'`).Scan(&refusals); err != nil || refusals == 0 {
		t.Errorf("no refusal in the audit log (%v)", err)
	}

	out, errOut, code = s.pkid(t, "audit", "verify", "--config", s.path("pkid.yaml"))
	if code != 0 || !strings.Contains(out, "audit chain intact") {
		t.Fatalf("audit verify: %d %s %s", code, out, errOut)
	}

	// No PIN and no leaf private key in the daemon's log or database files
	// after the whole suite: issuance, every error, check-config runs.
	assertNoSecrets(t, s.dir, s.logPath, privateKeys)

	// An altered copy of the database fails verification.
	tampered := s.path("tampered.db")
	os.Remove(tampered)
	if _, err := db.Exec(`VACUUM INTO ?`, tampered); err != nil {
		t.Fatal(err)
	}
	tdb, err := sql.Open("sqlite", "file:"+tampered)
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{`DROP TRIGGER audit_no_update`,
		`UPDATE audit SET event = replace(event, '"action":"refused"', '"action":"issued"') WHERE seq = (SELECT min(seq) FROM audit WHERE event LIKE '%refused%')`} {
		if _, err := tdb.Exec(q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	tdb.Close()
	cfg := strings.Replace(readFile(t, s.path("pkid.yaml")), "database: pkid.db", "database: tampered.db", 1)
	if err := os.WriteFile(s.path("tampered.yaml"), []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	out, errOut, code = s.pkid(t, "audit", "verify", "--config", s.path("tampered.yaml"))
	if code == 0 || !strings.Contains(errOut, "does not match") {
		t.Fatalf("audit verify of a tampered database: exit %d %s %s", code, out, errOut)
	}
}

// issueAndKeepKeys issues a few certificates and returns the raw bytes of
// their private keys, to look for them in the database.
func issueAndKeepKeys(t *testing.T) [][]byte {
	var keys [][]byte
	for _, alg := range []string{"EC_prime256v1", "RSA_2048"} {
		r := s.issue(t, map[string]any{"profileId": webServer, "commonName": "k.example.internal", "ttl": "1h",
			"altNames":           []map[string]string{{"type": "dns_name", "value": "k.example.internal"}},
			"signatureAlgorithm": "ECDSA-SHA256", "keyAlgorithm": alg})
		s.checkIssued(t, r)
		block, _ := pem.Decode([]byte(r.str("privateKey")))
		if block == nil {
			t.Fatal("no private key PEM")
		}
		key, err := x509.ParsePKCS8PrivateKey(block.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		// The secret itself (EC scalar, RSA private exponent), the whole
		// PKCS#8 DER and its base64 text.
		var secret []byte
		switch k := key.(type) {
		case *ecdsa.PrivateKey:
			secret, _ = k.Bytes()
		case *rsa.PrivateKey:
			secret = k.D.Bytes()
		}
		keys = append(keys, secret, block.Bytes, []byte(base64.StdEncoding.EncodeToString(block.Bytes)))
	}
	return keys
}

func runScript(t *testing.T, script string, args ...string) (string, string, int) {
	t.Helper()
	cmd := exec.Command(script, args...)
	cmd.Env = append(os.Environ(), "PKID_BIN="+s.bin, "PKID_API_ADDR="+s.addr, "PKID_METRICS_ADDR="+s.metrics)
	var out, errb strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if ee, ok := err.(*exec.ExitError); ok {
		return out.String(), errb.String(), ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return out.String(), errb.String(), 0
}
