package public

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/pkid/pkid/issuer"
)

type fixedCRLs map[string]*issuer.PublishedCRL

func (f fixedCRLs) Current(ca string) (*issuer.PublishedCRL, bool) { c, ok := f[ca]; return c, ok }

var now = time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)

func testCA(t *testing.T) *issuer.CA {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "Test CA"}, NotBefore: now.Add(-time.Hour),
		NotAfter: now.Add(time.Hour), IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign}
	der, _ := x509.CreateCertificate(rand.Reader, tpl, tpl, key.Public(), key)
	cert, _ := x509.ParseCertificate(der)
	ca, err := issuer.NewCA(issuer.CAParams{Name: "ec-issuing", Certificate: cert})
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

func get(h http.Handler, method, path string, header ...string) *httptest.ResponseRecorder {
	r := httptest.NewRequest(method, path, nil)
	for k := 0; k+1 < len(header); k += 2 {
		r.Header.Set(header[k], header[k+1])
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

func TestServesCRLsAndCACertificates(t *testing.T) {
	ca := testCA(t)
	crl := &issuer.PublishedCRL{CA: "ec-issuing", Number: 7, ThisUpdate: now.Add(-time.Hour), NextUpdate: now.Add(2 * time.Minute), DER: []byte{0x30, 0x03, 1, 2, 3}}
	h := NewHandler(Config{CRLs: fixedCRLs{"ec-issuing": crl}, CAs: []*issuer.CA{ca}, Now: func() time.Time { return now }})

	w := get(h, http.MethodGet, "/crl/ec-issuing.crl")
	if w.Code != 200 || w.Header().Get("Content-Type") != "application/pkix-crl" || w.Body.String() != string(crl.DER) {
		t.Fatalf("CRL: %d %v", w.Code, w.Header())
	}
	// max-age never runs past nextUpdate (2 minutes away here).
	if cc := w.Header().Get("Cache-Control"); cc != "public, max-age=120" {
		t.Errorf("Cache-Control %q", cc)
	}
	if lm := w.Header().Get("Last-Modified"); lm != crl.ThisUpdate.Format(http.TimeFormat) {
		t.Errorf("Last-Modified %q", lm)
	}
	if w2 := get(h, http.MethodGet, "/crl/ec-issuing.crl", "If-None-Match", w.Header().Get("ETag")); w2.Code != http.StatusNotModified {
		t.Errorf("If-None-Match: %d", w2.Code)
	}
	if w := get(h, http.MethodHead, "/crl/ec-issuing.crl"); w.Code != 200 || w.Body.Len() != 0 {
		t.Errorf("HEAD: %d %d bytes", w.Code, w.Body.Len())
	}
	w = get(h, http.MethodGet, "/ca/ec-issuing.crt")
	if w.Code != 200 || w.Header().Get("Content-Type") != "application/pkix-cert" || w.Body.String() != string(ca.Certificate().Raw) {
		t.Errorf("CA certificate: %d %v", w.Code, w.Header())
	}
	for path, want := range map[string]int{"/crl/other.crl": 404, "/crl/ec-issuing": 404, "/ca/ec-issuing.pem": 404, "/ocsp/x": 404, "/": 404} {
		if w := get(h, http.MethodGet, path); w.Code != want {
			t.Errorf("GET %s: %d, want %d", path, w.Code, want)
		}
	}
	if w := get(h, http.MethodPost, "/crl/ec-issuing.crl"); w.Code != http.StatusMethodNotAllowed {
		t.Errorf("POST: %d", w.Code)
	}
}
