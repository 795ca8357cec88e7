// Package consumer is a project of its own that tests against a real pkid
// through pkidtest, as any other project would.
package consumer

import (
	"bytes"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"net/http"
	"testing"

	"github.com/pkid/pkid/pkidtest"
)

func TestIssueAndVerify(t *testing.T) {
	srv := pkidtest.Start(t, pkidtest.Options{})
	attrs := map[string]any{"commonName": "app.example.internal", "ttl": "1h",
		"signatureAlgorithm": "ECDSA-SHA256", "keyAlgorithm": "EC_prime256v1",
		"altNames": []map[string]string{{"type": "dns_name", "value": "app.example.internal"}}}

	// v3 over mutual TLS.
	v3 := map[string]any{"profileId": srv.Profiles["web-server"]}
	for k, v := range attrs {
		v3[k] = v
	}
	var issued struct {
		Certificate, IssuingCaCertificate, CertificateChain, PrivateKey string
	}
	post(t, srv.Client, srv.URL+"/api/v3/pki/certificates/issue-certificate", "", v3, &issued)
	verify(t, srv, issued.Certificate, issued.CertificateChain)

	// v1 with the machine identity's Bearer token and no client certificate.
	var created struct {
		Certificate struct{ Certificate, CertificateChain string } `json:"certificate"`
		Status      string                                         `json:"status"`
	}
	post(t, srv.BearerClient, srv.URL+"/api/v1/cert-manager/certificates", srv.Token,
		map[string]any{"profileId": srv.Profiles["web-server"], "attributes": attrs}, &created)
	if created.Status != "issued" {
		t.Errorf("v1 status %q", created.Status)
	}
	verify(t, srv, created.Certificate.Certificate, created.Certificate.CertificateChain)
}

func post(t *testing.T, c *http.Client, url, bearer string, body, out any) {
	t.Helper()
	raw, err := json.Marshal(body)
	if err != nil {
		t.Fatal(err)
	}
	req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var buf bytes.Buffer
	buf.ReadFrom(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("POST %s: %d %s", url, resp.StatusCode, buf.Bytes())
	}
	if err := json.Unmarshal(buf.Bytes(), out); err != nil {
		t.Fatalf("POST %s: %v", url, err)
	}
}

// verify checks leaf against the PKI root, through the chain pkid returned.
func verify(t *testing.T, srv *pkidtest.Server, leafPEM, chainPEM string) {
	t.Helper()
	block, _ := pem.Decode([]byte(leafPEM))
	if block == nil {
		t.Fatalf("no certificate in %q", leafPEM)
	}
	leaf, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	intermediates := x509.NewCertPool()
	intermediates.AppendCertsFromPEM([]byte(chainPEM))
	_, err = leaf.Verify(x509.VerifyOptions{Roots: srv.RootCAs, Intermediates: intermediates,
		DNSName: "app.example.internal", KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}})
	if err != nil {
		t.Errorf("issued certificate does not verify against the root: %v", err)
	}
}
