package integration

import (
	"bytes"
	"crypto/x509"
	"database/sql"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	zx509 "github.com/zmap/zcrypto/x509"
	"github.com/zmap/zlint/v3"
	"github.com/zmap/zlint/v3/lint"
)

// call sends method path with a JSON body (or none) from client to a daemon.
func (d *daemon2) call(t *testing.T, client, method, path string, body any) (int, map[string]any) {
	t.Helper()
	var r io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		r = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, "https://"+d.addr+path, r)
	if err != nil {
		t.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := d.clients[client].Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	var out map[string]any
	json.NewDecoder(resp.Body).Decode(&out)
	return resp.StatusCode, out
}

// openssl runs openssl in dir and returns its combined output.
func openssl(t *testing.T, dir string, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command("openssl", args...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func writeTemp(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// CSRs made by openssl req, EC and RSA, are signed with the CSR's key; what
// the CSR may not ask for is refused with a 400 that names it.
func TestSignCSRsMadeByOpenSSL(t *testing.T) {
	dir := t.TempDir()
	for _, c := range []struct{ name, keyArgs string }{
		{"ec", "-newkey ec -pkeyopt ec_paramgen_curve:P-256"},
		{"rsa", "-newkey rsa:2048"},
	} {
		t.Run(c.name, func(t *testing.T) {
			cn := c.name + "-csr.example.internal"
			args := append([]string{"req", "-new", "-nodes", "-keyout", c.name + "-key.pem", "-out", c.name + ".csr",
				"-subj", "/CN=" + cn, "-addext", "subjectAltName=DNS:" + cn}, strings.Fields(c.keyArgs)...)
			if out, err := openssl(t, dir, args...); err != nil {
				t.Fatalf("openssl req: %v\n%s", err, out)
			}
			csr, _ := os.ReadFile(filepath.Join(dir, c.name+".csr"))
			b, _ := json.Marshal(map[string]any{"profileId": webServer, "csr": string(csr), "ttl": "1d"})
			r := s.postTo(t, "client", "/api/v3/pki/certificates/sign-certificate", b)
			if r.status != 200 {
				t.Fatalf("sign: %d %s", r.status, r.raw)
			}
			if _, has := r.body["privateKey"]; has {
				t.Error("a CSR signature answered a private key")
			}
			leafFile := writeTemp(t, dir, c.name+"-leaf.pem", r.str("certificate")+"\n")
			chainFile := writeTemp(t, dir, c.name+"-chain.pem", r.str("certificateChain")+"\n")
			if out, err := openssl(t, dir, "verify", "-CAfile", s.path("ca", "root.pem"), "-untrusted", chainFile, leafFile); err != nil {
				t.Errorf("openssl verify: %v %s", err, out)
			}
			// The certificate carries the key of the CSR.
			certKey, _ := openssl(t, dir, "x509", "-in", leafFile, "-noout", "-pubkey")
			csrKey, _ := openssl(t, dir, "req", "-in", c.name+".csr", "-noout", "-pubkey")
			if certKey == "" || certKey != csrKey {
				t.Error("the certificate's key is not the CSR's")
			}
			leaf, err := parseCert(r.str("certificate"))
			if err != nil {
				t.Fatal(err)
			}
			lintClean(t, leaf)
		})
	}
	if out, err := openssl(t, dir, "req", "-new", "-nodes", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-keyout", "o-key.pem",
		"-out", "o.csr", "-subj", "/CN=o.example.internal/O=Example"); err != nil {
		t.Fatalf("openssl req: %v\n%s", err, out)
	}
	withO, _ := os.ReadFile(filepath.Join(dir, "o.csr"))
	for _, c := range []struct {
		name, csr string
		status    int
		want      string
	}{
		{"another subject attribute", string(withO), 400, "CSR subject attribute O is not accepted"},
		{"garbage", "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----", 400, "Invalid CSR"},
		{"oversized", strings.Repeat("A", 5000), 422, "too_big"},
	} {
		name := c.name
		b, _ := json.Marshal(map[string]any{"profileId": webServer, "csr": c.csr, "ttl": "1d"})
		r := s.postTo(t, "client", "/api/v3/pki/certificates/sign-certificate", b)
		if r.status != c.status || !strings.Contains(string(r.raw), c.want) {
			t.Errorf("%s: %d %s", name, r.status, r.raw)
		}
	}
}

// fetchCRL gets a CA's CRL from a public listener.
func fetchCRL(t *testing.T, public, ca string) (*x509.RevocationList, []byte, http.Header) {
	t.Helper()
	resp, err := http.Get("http://" + public + "/crl/" + ca + ".crl")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	der, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/pkix-crl" {
		t.Fatalf("GET CRL of %s: %d %s", ca, resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	crl, err := x509.ParseRevocationList(der)
	if err != nil {
		t.Fatal(err)
	}
	return crl, der, resp.Header
}

// waitCRL waits until a CA's CRL has a number above after.
func waitCRL(t *testing.T, public, ca string, after int64) (*x509.RevocationList, []byte) {
	t.Helper()
	return pollCRL(t, public, ca, 20*time.Second, func(crl *x509.RevocationList) bool { return crl.Number.Int64() > after },
		func(crl *x509.RevocationList) string {
			return fmt.Sprintf("CRL of %s stayed at number %d", ca, crl.Number.Int64())
		})
}

// waitCRLListing waits until a CA's CRL has a number above after and lists
// every one of serials (lower-case hex): a CRL cut for another reason
// before a revocation committed may come first.
func waitCRLListing(t *testing.T, public, ca string, after int64, serials ...string) (*x509.RevocationList, []byte) {
	t.Helper()
	missing := func(crl *x509.RevocationList) int {
		listed := map[string]bool{}
		for _, e := range crl.RevokedCertificateEntries {
			listed[e.SerialNumber.Text(16)] = true
		}
		n := 0
		for _, s := range serials {
			if !listed[s] {
				n++
			}
		}
		return n
	}
	return pollCRL(t, public, ca, 20*time.Second,
		func(crl *x509.RevocationList) bool { return crl.Number.Int64() > after && missing(crl) == 0 },
		func(crl *x509.RevocationList) string {
			return fmt.Sprintf("CRL %d of %s lacks %d of %v", crl.Number.Int64(), ca, missing(crl), serials)
		})
}

// pollCRL fetches a CA's CRL from public until ok holds of it, and fails
// with failure's account of the last one fetched if that takes longer than
// within.
func pollCRL(t *testing.T, public, ca string, within time.Duration, ok func(*x509.RevocationList) bool,
	failure func(*x509.RevocationList) string) (*x509.RevocationList, []byte) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		crl, der, _ := fetchCRL(t, public, ca)
		if ok(crl) {
			return crl, der
		}
		if time.Now().After(deadline) {
			t.Fatal(failure(crl))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func crlLintClean(t *testing.T, der []byte) {
	t.Helper()
	zc, err := zx509.ParseRevocationList(der)
	if err != nil {
		t.Fatal(err)
	}
	reg, err := lint.GlobalRegistry().Filter(lint.FilterOptions{IncludeSources: lint.SourceList{lint.RFC5280, lint.Community}})
	if err != nil {
		t.Fatal(err)
	}
	for name, res := range zlint.LintRevocationListEx(zc, reg).Results {
		if res.Status == lint.Warn || res.Status == lint.Error || res.Status == lint.Fatal {
			t.Errorf("zlint %s on the CRL: %s %s", name, res.Status, res.Details)
		}
	}
}

// The whole life: issue, revoke through the API and with `pkid revoke`,
// and relying parties see it: the CRL at the URL the certificate names
// lists the serial with its reason, verifies against the CA with openssl
// and is zlint-clean, openssl verify -crl_check refuses the revoked
// certificate and accepts another; CRL numbers only increase, across
// restarts and across a crash between reserving a number and signing.
func TestRevocationReachesTheCRL(t *testing.T) {
	d := startDaemon2(t)
	dir := t.TempDir()
	issueOne := func(cn string) map[string]any {
		code, body := d.post(t, "client", map[string]any{"profileId": webServer, "commonName": cn, "ttl": "1h",
			"altNames": sans("dns_name", cn), "signatureAlgorithm": "ECDSA-SHA256", "keyAlgorithm": "EC_prime256v1"})
		if code != 200 {
			t.Fatalf("issue %s: %d %v", cn, code, body)
		}
		return body
	}
	revoked, kept, local := issueOne("revoked.example.internal"), issueOne("kept.example.internal"), issueOne("local.example.internal")
	leaf, _ := parseCert(revoked["certificate"].(string))
	if len(leaf.CRLDistributionPoints) != 1 || leaf.CRLDistributionPoints[0] != "http://"+d.public+"/crl/ec-issuing.crl" ||
		len(leaf.IssuingCertificateURL) != 1 || leaf.IssuingCertificateURL[0] != "http://"+d.public+"/ca/ec-issuing.crt" {
		t.Fatalf("the certificate names %v and %v, not the public listener", leaf.CRLDistributionPoints, leaf.IssuingCertificateURL)
	}
	before, _, header := fetchCRL(t, d.public, "ec-issuing")
	if len(before.RevokedCertificateEntries) != 0 || header.Get("ETag") == "" || !strings.HasPrefix(header.Get("Cache-Control"), "public, max-age=") {
		t.Fatalf("first CRL: %d entries, headers %v", len(before.RevokedCertificateEntries), header)
	}
	// A conditional request for an unchanged CRL is answered 304.
	req, _ := http.NewRequest(http.MethodGet, "http://"+d.public+"/crl/ec-issuing.crl", nil)
	req.Header.Set("If-None-Match", header.Get("ETag"))
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != http.StatusNotModified {
		t.Errorf("If-None-Match of the current CRL: %v %v", resp, err)
	}

	serial := revoked["serialNumber"].(string)
	code, body := d.call(t, "client", http.MethodPost, "/api/v1/pki/certificates/"+strings.ToUpper(serial)+"/revoke",
		map[string]string{"revocationReason": "KEY_COMPROMISE"})
	if code != 200 || body["message"] != "Successfully revoked certificate" || body["serialNumber"] != serial {
		t.Fatalf("revoke: %d %v", code, body)
	}
	if code, body := d.call(t, "client", http.MethodPost, "/api/v1/pki/certificates/"+serial+"/revoke",
		map[string]string{"revocationReason": "KEY_COMPROMISE"}); code != 400 || body["message"] != "Certificate already revoked" {
		t.Errorf("revoking again: %d %v", code, body)
	}
	if code, body := d.call(t, "client", http.MethodPost, "/api/v1/pki/certificates/"+kept["serialNumber"].(string)+"/revoke",
		map[string]string{"revocationReason": "CERTIFICATE_HOLD"}); code != 400 || !strings.Contains(fmt.Sprint(body["message"]), "CERTIFICATE_HOLD") {
		t.Errorf("certificateHold: %d %v", code, body)
	}
	if code, _ := d.call(t, "client", http.MethodGet, "/api/v1/pki/certificates/4bad0000", nil); code != 404 {
		t.Errorf("look-up of an unknown serial: %d", code)
	}
	code, body = d.call(t, "client", http.MethodGet, "/api/v1/pki/certificates/"+serial, nil)
	if c, _ := body["certificate"].(map[string]any); code != 200 || c["status"] != "revoked" || c["revocationReason"] != "KEY_COMPROMISE" {
		t.Errorf("look-up after revocation: %d %v", code, body)
	}

	crl, der := waitCRLListing(t, d.public, "ec-issuing", before.Number.Int64(), serial)
	if len(crl.RevokedCertificateEntries) != 1 || crl.RevokedCertificateEntries[0].SerialNumber.Text(16) != serial ||
		crl.RevokedCertificateEntries[0].ReasonCode != 1 {
		t.Fatalf("CRL %d entries %+v, want the revoked serial with keyCompromise", crl.Number, crl.RevokedCertificateEntries)
	}
	crlLintClean(t, der)
	chain := writeTemp(t, dir, "chain.pem", revoked["certificateChain"].(string)+"\n")
	crlFile := writeTemp(t, dir, "ec.crl", string(pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: der})))
	if out, err := openssl(t, dir, "crl", "-in", crlFile, "-CAfile", chain, "-noout"); err != nil || !strings.Contains(out, "verify OK") {
		t.Errorf("openssl crl -CAfile: %v %s", err, out)
	}
	bundle := writeTemp(t, dir, "bundle.pem", readFile(t, filepath.Join(d.dir, "ca", "root.pem"))+revoked["certificateChain"].(string)+"\n")
	for _, c := range []struct {
		cert map[string]any
		ok   bool
	}{{revoked, false}, {kept, true}} {
		leaf := writeTemp(t, dir, "leaf.pem", c.cert["certificate"].(string)+"\n")
		// -crl_download fetches the CRL from the URL the certificate names.
		out, err := openssl(t, dir, "verify", "-CAfile", bundle, "-crl_check", "-crl_download", leaf)
		if c.ok && err != nil {
			t.Errorf("openssl verify -crl_check of a good certificate: %v %s", err, out)
		}
		if !c.ok && (err == nil || !strings.Contains(out, "certificate revoked")) {
			t.Errorf("openssl verify -crl_check of the revoked certificate: %v %s", err, out)
		}
	}

	// The operator revokes locally; the running daemon's CRL follows.
	config := filepath.Join(d.dir, "pkid.yaml")
	if out, errOut, code := s.pkid(t, "revoke", "--config", config, "--serial", local["serialNumber"].(string), "--reason", "superseded"); code != 0 {
		t.Fatalf("pkid revoke: %d %s %s", code, out, errOut)
	}
	crl, _ = waitCRLListing(t, d.public, "ec-issuing", crl.Number.Int64(), serial, strings.ToLower(local["serialNumber"].(string)))
	if len(crl.RevokedCertificateEntries) != 2 {
		t.Errorf("after pkid revoke the CRL has %d entries", len(crl.RevokedCertificateEntries))
	}
	out, _, _ := s.pkid(t, "crl", "show", "--config", config, "--ca", "ec-issuing")
	if !strings.Contains(out, serial) || !strings.Contains(out, `"reason": "SUPERSEDED"`) {
		t.Errorf("pkid crl show:\n%s", out)
	}
	for _, bad := range [][]string{{"revoke", "--config", config, "--serial", "4bad", "--reason", "superseded"},
		{"crl", "show", "--config", config, "--ca", "nope"}, {"revoke", "--config", config, "--serial", serial, "--reason", "bored"}} {
		if _, errOut, code := s.pkid(t, bad...); code != 2 || errOut == "" {
			t.Errorf("pkid %v: exit %d %q, want 2 with a message", bad, code, errOut)
		}
	}
	// CRL numbers only increase: across a restart, and across a crash that
	// left a reserved number unsigned. A kill cannot be timed to land
	// between the reservation and the signature, so the pending row it
	// would leave is written by hand; what this checks is the restart
	// path (start-up resolves the row, the number stays used). The fault
	// itself is issuer's TestCRLNumberSurvivesAFaultAfterReservation.
	last := crl.Number.Int64()
	d.cmd.Process.Signal(syscall.SIGTERM)
	<-d.exited
	db, err := sql.Open("sqlite", "file:"+filepath.Join(d.dir, "pkid.db"))
	if err != nil {
		t.Fatal(err)
	}
	var max int64
	db.QueryRow(`SELECT max(number) FROM crls WHERE ca = 'ec-issuing'`).Scan(&max)
	now := time.Now().UTC().Format("2006-01-02T15:04:05.000000000Z")
	if _, err := db.Exec(`INSERT INTO crls (ca, number, this_update, next_update, tbs_hash, status, der, created_at, updated_at)
		VALUES ('ec-issuing', ?, ?, ?, ?, 'pending', NULL, ?, ?)`, max+1, now, now, strings.Repeat("ab", 32), now, now); err != nil {
		db.Close()
		t.Fatalf("leaving a pending CRL as a crash would: %v", err)
	}
	db.Close()
	d.start(t)
	after, _ := waitCRL(t, d.public, "ec-issuing", last)
	if after.Number.Int64() != max+2 {
		t.Errorf("after a restart with CRL %d left pending the CRL is number %d, want %d (never reuse a number)", max+1, after.Number.Int64(), max+2)
	}
	if !strings.Contains(readFile(t, d.logPath), "resolved pending record") {
		t.Error("the pending CRL was not reported at start")
	}
	if out, errOut, code := s.pkid(t, "audit", "verify", "--config", config); code != 0 {
		t.Errorf("audit verify after the lifecycle: %d %s %s", code, out, errOut)
	}
	// The CA certificate is served at the URL its leaves name.
	resp, err := http.Get(leaf.IssuingCertificateURL[0])
	if err != nil {
		t.Fatal(err)
	}
	caDER, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	ca, _ := parseCert(readFile(t, filepath.Join(d.dir, "ca", "ec-issuing.pem")))
	if resp.Header.Get("Content-Type") != "application/pkix-cert" || !bytes.Equal(caDER, ca.Raw) {
		t.Errorf("GET %s: %s, %d bytes", leaf.IssuingCertificateURL[0], resp.Header.Get("Content-Type"), len(caDER))
	}
}

// Renewal keeps the subject, SANs, usages and lifetime, and changes the key
// and the serial; a CSR-signed certificate cannot be renewed.
func TestRenewal(t *testing.T) {
	r := s.issue(t, map[string]any{"profileId": webServer, "commonName": "renew.example.internal", "ttl": "2h",
		"altNames":           sans("dns_name", "renew.example.internal", "ip_address", "10.9.9.9"),
		"extendedKeyUsages":  []string{"server_auth", "client_auth"},
		"signatureAlgorithm": "ECDSA-SHA256", "keyAlgorithm": "EC_secp384r1"})
	old := s.checkIssued(t, r)
	rr := s.postTo(t, "client", "/api/v3/pki/certificates/"+r.str("certificateId")+"/renew", []byte(`{"removeRootsFromChain":false}`))
	leaf := s.checkIssued(t, rr)
	switch {
	case rr.str("serialNumber") == r.str("serialNumber"), rr.str("privateKey") == r.str("privateKey"), rr.str("certificateRequestId") == "":
		t.Error("a renewal needs a new serial, a new key and a certificate request id")
	case leaf.Subject.CommonName != old.Subject.CommonName, fmt.Sprint(leaf.DNSNames, leaf.IPAddresses) != fmt.Sprint(old.DNSNames, old.IPAddresses),
		fmt.Sprint(leaf.ExtKeyUsage) != fmt.Sprint(old.ExtKeyUsage), leaf.NotAfter.Sub(leaf.NotBefore) != old.NotAfter.Sub(old.NotBefore),
		leaf.PublicKeyAlgorithm != old.PublicKeyAlgorithm:
		t.Errorf("the renewal differs: %v %v %v", leaf.Subject, leaf.DNSNames, leaf.ExtKeyUsage)
	}
	out, _, _ := s.pkid(t, "records", "show", "--config", s.path("pkid.yaml"), rr.str("serialNumber"))
	if !strings.Contains(out, `"renews": "`+r.str("certificateId")+`"`) {
		t.Errorf("the renewal's record does not link to the original:\n%s", out)
	}
}
