package daemon

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/pkid/pkid/ceremony"
)

// With metricsTLS and a client CA bundle, the metrics listener serves only
// scrapers that present a certificate from that CA.
func TestMetricsListenerMutualTLS(t *testing.T) {
	dir := t.TempDir()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader) // in memory only
	ca, err := ceremony.SelfSigned(caKey, ceremony.CASpec{CommonName: "scrape CA", Validity: time.Hour, MaxPathLen: 0}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	write := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	caFile := write("ca.pem", ceremony.PEM(ca))
	srvCert, srvKey, err := ceremony.TLSLeaf(ca, caKey, ceremony.TLSSpec{CommonName: "metrics", IPs: []net.IP{net.IPv4(127, 0, 0, 1)}, Server: true, Validity: time.Hour}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	cliCert, cliKey, err := ceremony.TLSLeaf(ca, caKey, ceremony.TLSSpec{CommonName: "prometheus", Client: true, Validity: time.Hour}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	addr := func() string {
		l, _ := net.Listen("tcp", "127.0.0.1:0")
		defer l.Close()
		return l.Addr().String()
	}()
	cfg := &Config{metricsListen: addr, metricsTLS: &TLSConfig{
		Certificate: write("s.pem", srvCert), Key: write("s-key.pem", srvKey), ClientCAs: caFile}}
	d := testDaemon(&fakeToken{}, &fakeStore{})
	srv, _, err := d.listenMetrics(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()

	roots := x509.NewCertPool()
	roots.AddCert(ca)
	get := func(certs []tls.Certificate) (int, error) {
		c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, Certificates: certs}}}
		resp, err := c.Get("https://" + addr + "/healthz")
		if err != nil {
			return 0, err
		}
		defer resp.Body.Close()
		io.Copy(io.Discard, resp.Body)
		return resp.StatusCode, nil
	}
	if _, err := get(nil); err == nil {
		t.Error("a scraper without a client certificate was served")
	}
	pair, err := tls.X509KeyPair(cliCert, cliKey)
	if err != nil {
		t.Fatal(err)
	}
	if code, err := get([]tls.Certificate{pair}); err != nil || code != 200 {
		t.Errorf("scraper with a certificate: %d %v", code, err)
	}
}
