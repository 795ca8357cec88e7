package postgres

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pkid/pkid/store/postgres/pgtest"
)

// testCA makes a CA and, if host is set, a server certificate it signed
// for that IP; PEM bytes.
func testCA(t *testing.T, host string) (caPEM, certPEM, keyPEM []byte) {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	now := time.Now()
	caTpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "pgtest CA"}, NotBefore: now.Add(-time.Hour),
		NotAfter: now.Add(time.Hour), IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTpl, caTpl, caKey.Public(), caKey)
	if err != nil {
		t.Fatal(err)
	}
	caPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER})
	if host == "" {
		return caPEM, nil, nil
	}
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: host}, NotBefore: now.Add(-time.Hour),
		NotAfter: now.Add(time.Hour), IPAddresses: []net.IP{net.ParseIP(host)}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tpl, caTpl, key.Public(), caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return caPEM, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})
}

// The DSN's sslmode is pgx's to honour and pkid passes it through: with
// verify-full and the right root the store's connections are TLS; with
// another root, opening fails; with disable they are plain.
func TestSSLModeIsHonoured(t *testing.T) {
	srv := pgtest.StartServer(t)
	caPEM, certPEM, keyPEM := testCA(t, "127.0.0.1")
	otherPEM, _, _ := testCA(t, "")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := srv.EnableTLS(ctx, certPEM, keyPEM); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	root, other := filepath.Join(dir, "root.pem"), filepath.Join(dir, "other.pem")
	os.WriteFile(root, caPEM, 0o600)
	os.WriteFile(other, otherPEM, 0o600)
	plain := srv.NewDatabase(t)
	withTLS := func(mode, rootFile string) string {
		return strings.Replace(plain, "sslmode=disable", "sslmode="+mode+"&sslrootcert="+rootFile, 1)
	}

	for _, c := range []struct {
		name, dsn string
		tls       bool
	}{{"verify-full", withTLS("verify-full", root), true}, {"disable", plain, false}} {
		d, err := Open(ctx, c.dsn, Options{Password: srv.Password()})
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		var encrypted bool
		if err := d.pool.QueryRow(ctx, `SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()`).Scan(&encrypted); err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if encrypted != c.tls {
			t.Errorf("%s: the connection is TLS: %v, want %v", c.name, encrypted, c.tls)
		}
		d.Close(ctx)
	}
	if d, err := Open(ctx, withTLS("verify-full", other), Options{Password: srv.Password()}); err == nil {
		d.Close(ctx)
		t.Error("verify-full opened a server whose certificate another CA signed")
	} else if !strings.Contains(err.Error(), "certificate") || strings.Contains(err.Error(), srv.Password()) {
		t.Errorf("verify-full against another CA: %v; want a certificate error without the password", err)
	}
}
