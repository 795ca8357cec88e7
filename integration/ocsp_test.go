package integration

import (
	"bytes"
	"crypto/x509"
	"encoding/asn1"
	"encoding/base64"
	"encoding/pem"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/ocsp"
)

// openssl ocsp as the relying party (DESIGN.md §14): good for an issued
// certificate, revoked after a revocation, unknown for a serial pkid never
// issued — answers signed by a delegated responder whose certificate has
// EKU ocspSigning and id-pkix-ocsp-nocheck and whose key is in the token;
// by POST and by GET; verified up the chain (-CAfile) and with the
// responder certificate pinned (-VAfile); garbage gets malformedRequest.
func TestOCSPWithOpenSSL(t *testing.T) {
	dir := t.TempDir()
	r := s.issue(t, map[string]any{"profileId": webServer, "commonName": "ocsp.example.internal", "ttl": "1h",
		"altNames": sans("dns_name", "ocsp.example.internal"), "signatureAlgorithm": "ECDSA-SHA256", "keyAlgorithm": "EC_prime256v1"})
	leafCert := s.checkIssued(t, r)
	if len(leafCert.OCSPServer) != 1 || leafCert.OCSPServer[0] != "http://"+s.public+"/ocsp" {
		t.Fatalf("the certificate's AIA names OCSP %v", leafCert.OCSPServer)
	}
	leaf := writeTemp(t, dir, "leaf.pem", r.str("certificate")+"\n")
	issuer := writeTemp(t, dir, "issuer.pem", r.str("issuingCaCertificate")+"\n")
	bundle := writeTemp(t, dir, "bundle.pem", readFile(t, s.path("ca", "root.pem"))+r.str("issuingCaCertificate")+"\n")
	url := leafCert.OCSPServer[0]
	// query asks with trust, how openssl is to verify the responder: up
	// the chain (-CAfile) or as an explicitly trusted certificate (-VAfile).
	query := func(trust []string, args ...string) string {
		t.Helper()
		out, err := openssl(t, dir, append(append([]string{"ocsp", "-issuer", issuer, "-url", url, "-no_nonce"}, trust...), args...)...)
		if err != nil {
			t.Fatalf("openssl ocsp %v %v: %v\n%s", trust, args, err, out)
		}
		if !strings.Contains(out, "Response verify OK") {
			t.Fatalf("openssl ocsp %v did not verify the answer:\n%s", trust, out)
		}
		return out
	}
	ask := func(args ...string) string { t.Helper(); return query([]string{"-CAfile", bundle}, args...) }
	if out := ask("-cert", leaf); !strings.Contains(out, leaf+": good") {
		t.Errorf("issued certificate:\n%s", out)
	}
	if out := ask("-serial", "0x4b1d0000deadbeef"); !strings.Contains(out, "0x4b1d0000deadbeef: unknown") {
		t.Errorf("never issued:\n%s", out)
	}

	// The responder certificate, from an answer.
	out := ask("-cert", leaf, "-resp_text")
	block, _ := pem.Decode([]byte(out[strings.Index(out, "-----BEGIN CERTIFICATE-----"):]))
	if block == nil {
		t.Fatalf("no responder certificate in the answer:\n%s", out)
	}
	responder, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	nocheck := false
	for _, e := range responder.Extensions {
		nocheck = nocheck || e.Id.Equal(asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 48, 1, 5})
	}
	if len(responder.ExtKeyUsage) != 1 || responder.ExtKeyUsage[0] != x509.ExtKeyUsageOCSPSigning || !nocheck || responder.IsCA {
		t.Errorf("responder certificate: EKU %v, nocheck %t", responder.ExtKeyUsage, nocheck)
	}
	lintClean(t, responder)
	// A relying party that pins the responder certificate (-VAfile: trusted
	// as given, no chain) gets the same answers.
	vaFile := writeTemp(t, dir, "responder.pem", string(pem.EncodeToMemory(block)))
	askVA := func(args ...string) string { t.Helper(); return query([]string{"-VAfile", vaFile}, args...) }
	if out := askVA("-cert", leaf); !strings.Contains(out, leaf+": good") {
		t.Errorf("issued certificate, -VAfile:\n%s", out)
	}
	// Its key is the one labelled pkid-ocsp-ec-issuing in the token.
	read := exec.Command("pkcs11-tool", "--module", moduleFromConfig(t, s.dir), "--token-label", "pkid-demo",
		"--read-object", "--type", "pubkey", "--label", "pkid-ocsp-ec-issuing")
	read.Env = append(os.Environ(), "SOFTHSM2_CONF="+s.path("softhsm2.conf"))
	spki, err := read.Output()
	if err != nil || !bytes.Equal(spki, responder.RawSubjectPublicKeyInfo) {
		t.Errorf("the responder certificate's key is not the token's pkid-ocsp-ec-issuing (%v, %d bytes)", err, len(spki))
	}

	// Revoked: at once.
	rev := s.postTo(t, "client", "/api/v1/pki/certificates/"+r.str("serialNumber")+"/revoke", []byte(`{"revocationReason":"KEY_COMPROMISE"}`))
	if rev.status != 200 {
		t.Fatalf("revoke: %d %s", rev.status, rev.raw)
	}
	if out := ask("-cert", leaf); !strings.Contains(out, leaf+": revoked") || !strings.Contains(out, "Reason: keyCompromise") {
		t.Errorf("after revocation:\n%s", out)
	}
	if out := askVA("-cert", leaf); !strings.Contains(out, leaf+": revoked") || !strings.Contains(out, "Reason: keyCompromise") {
		t.Errorf("after revocation, -VAfile:\n%s", out)
	}

	// GET (RFC 5019): the request in the path, base64; cacheable.
	reqFile := filepath.Join(dir, "req.der")
	if out, err := openssl(t, dir, "ocsp", "-issuer", issuer, "-cert", leaf, "-no_nonce", "-reqout", reqFile); err != nil {
		t.Fatalf("openssl ocsp -reqout: %v %s", err, out)
	}
	raw, _ := os.ReadFile(reqFile)
	resp, err := http.Get(url + "/" + base64.StdEncoding.EncodeToString(raw))
	if err != nil {
		t.Fatal(err)
	}
	der, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.Header.Get("Content-Type") != "application/ocsp-response" || !strings.Contains(resp.Header.Get("Cache-Control"), "max-age=") ||
		resp.Header.Get("ETag") == "" {
		t.Errorf("GET answer headers: %v", resp.Header)
	}
	ca, _ := parseCert(r.str("issuingCaCertificate"))
	if parsed, err := ocsp.ParseResponseForCert(der, leafCert, ca); err != nil || parsed.Status != ocsp.Revoked {
		t.Errorf("GET answer: %v %+v", err, parsed)
	}

	// Garbage, by POST and by GET.
	for _, send := range []func() (*http.Response, error){
		func() (*http.Response, error) {
			return http.Post(url, "application/ocsp-request", strings.NewReader("garbage"))
		},
		func() (*http.Response, error) { return http.Get(url + "/Z2FyYmFnZQ==") },
	} {
		resp, err := send()
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !bytes.Equal(body, ocsp.MalformedRequestErrorResponse) {
			t.Errorf("garbage: %d %x, want malformedRequest", resp.StatusCode, body)
		}
	}
	_, text := httpGet(t, "http://"+s.metrics+"/metrics")
	for _, series := range []string{`pkid_ocsp_responses_total{ca="ec-issuing",status="good"}`, `pkid_ocsp_responses_total{ca="unknown",status="malformed"}`,
		`pkid_ocsp_responder_not_after_timestamp_seconds{ca="ec-issuing"}`} {
		if !strings.Contains(text, series) {
			t.Errorf("scrape lacks %s", series)
		}
	}
}
