package integration

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"io/fs"
	"math/big"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/miekg/pkcs11"

	"github.com/pkid/pkid/softhsm"
)

// The CA keys the demo created are in the token with the attributes of
// DESIGN.md §4, read back with plain miekg/pkcs11 (not through pkid), and
// their secret values cannot be read.
func TestCAKeyAttributesInToken(t *testing.T) {
	t.Setenv("SOFTHSM2_CONF", s.path("softhsm2.conf"))
	p := pkcs11.New(softhsm.Module())
	if p == nil {
		t.Fatal("cannot load the SoftHSM2 module")
	}
	if err := p.Initialize(); err != nil && !errors.Is(err, pkcs11.Error(pkcs11.CKR_CRYPTOKI_ALREADY_INITIALIZED)) {
		t.Fatal(err)
	}
	defer p.Destroy()
	defer p.Finalize()
	slots, err := p.GetSlotList(true)
	if err != nil {
		t.Fatal(err)
	}
	var slot uint
	found := false
	for _, sl := range slots {
		if ti, err := p.GetTokenInfo(sl); err == nil && strings.TrimSpace(ti.Label) == "pkid-demo" {
			slot, found = sl, true
		}
	}
	if !found {
		t.Fatal("token pkid-demo not found")
	}
	sess, err := p.OpenSession(slot, pkcs11.CKF_SERIAL_SESSION)
	if err != nil {
		t.Fatal(err)
	}
	defer p.CloseSession(sess)
	pin, err := os.ReadFile(s.path("hsm-pin"))
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Login(sess, pkcs11.CKU_USER, strings.TrimSpace(string(pin))); err != nil {
		t.Fatal(err)
	}
	defer p.Logout(sess)

	for _, label := range []string{"pkid-root", "pkid-ec-issuing", "pkid-rsa-issuing", "pkid-tls-ca", "pkid-audit",
		"pkid-ocsp-ec-issuing", "pkid-ocsp-rsa-issuing"} {
		t.Run(label, func(t *testing.T) {
			if err := p.FindObjectsInit(sess, []*pkcs11.Attribute{
				pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_PRIVATE_KEY), pkcs11.NewAttribute(pkcs11.CKA_LABEL, label),
			}); err != nil {
				t.Fatal(err)
			}
			objs, _, err := p.FindObjects(sess, 4)
			p.FindObjectsFinal(sess)
			if err != nil || len(objs) != 1 {
				t.Fatalf("private key %s: %d objects, %v", label, len(objs), err)
			}
			want := map[uint]bool{
				pkcs11.CKA_TOKEN: true, pkcs11.CKA_PRIVATE: true, pkcs11.CKA_SENSITIVE: true, pkcs11.CKA_EXTRACTABLE: false,
				pkcs11.CKA_ALWAYS_SENSITIVE: true, pkcs11.CKA_NEVER_EXTRACTABLE: true, pkcs11.CKA_SIGN: true,
				pkcs11.CKA_DECRYPT: false, pkcs11.CKA_UNWRAP: false, pkcs11.CKA_DERIVE: false, pkcs11.CKA_MODIFIABLE: false,
			}
			var template []*pkcs11.Attribute
			for typ := range want {
				template = append(template, pkcs11.NewAttribute(typ, nil))
			}
			attrs, err := p.GetAttributeValue(sess, objs[0], template)
			if err != nil {
				t.Fatal(err)
			}
			for _, a := range attrs {
				if got := len(a.Value) == 1 && a.Value[0] != 0; got != want[a.Type] {
					t.Errorf("attribute 0x%x = %t, want %t", a.Type, got, want[a.Type])
				}
			}
			// The key's role lives in its CKA_ID, which the PIN cannot rewrite.
			if err := p.SetAttributeValue(sess, objs[0], []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_ID, []byte("pkid-mtls-ca:x"))}); err == nil {
				t.Errorf("the CKA_ID of %s was rewritten", label)
			}
			for _, secret := range []uint{pkcs11.CKA_VALUE, pkcs11.CKA_PRIVATE_EXPONENT} {
				if v, err := p.GetAttributeValue(sess, objs[0], []*pkcs11.Attribute{pkcs11.NewAttribute(secret, nil)}); err == nil && len(v) == 1 && len(v[0].Value) > 0 {
					t.Errorf("secret attribute 0x%x of %s is readable", secret, label)
				}
			}
		})
	}
}

// No private key of a CA is anywhere in the fixture directory: the only
// PEM private keys are the three TLS leaves.
func TestNoCAKeyOnDisk(t *testing.T) {
	var keys []string
	err := walk(s.dir, func(path string, data []byte) {
		if strings.Contains(string(data), "PRIVATE KEY-----") {
			keys = append(keys, strings.TrimPrefix(path, s.dir+"/"))
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	want := "tls/client-key.pem tls/intruder-key.pem tls/server-key.pem"
	if strings.Join(keys, " ") != want {
		t.Errorf("files with private keys: %v, want only %s", keys, want)
	}
}

// A client certificate from another CA fails the handshake; TLS 1.1 is refused.
func TestTLSRefusals(t *testing.T) {
	old := s.clients["none"].Transport.(*http.Transport).TLSClientConfig.Clone()
	old.MinVersion, old.MaxVersion = tls.VersionTLS10, tls.VersionTLS11
	if conn, err := tls.Dial("tcp", s.addr, old); err == nil {
		conn.Close()
		t.Error("a TLS 1.1 handshake succeeded")
	}

	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	u, _ := url.Parse("spiffe://example.internal/demo-client") // the allowed identity, from the wrong CA
	tpl := &x509.Certificate{SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: "forged"}, URIs: []*url.URL{u},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tpl, tpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	forged := s.clients["none"].Transport.(*http.Transport).TLSClientConfig.Clone()
	// Force the certificate out: Go's client would otherwise withhold one
	// that does not match the server's acceptable CAs and send none.
	forged.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
		return &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, nil
	}
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: forged}}
	resp, err := client.Post("https://"+s.addr+"/api/v3/pki/certificates/issue-certificate", "application/json", strings.NewReader("{}"))
	if err == nil {
		resp.Body.Close()
		t.Fatalf("a client certificate from a foreign CA got an HTTP answer: %d", resp.StatusCode)
	}
}

func walk(root string, fn func(path string, data []byte)) error {
	return filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		fn(path, data)
		return nil
	})
}

// The key ceremony keeps every key to its job: issue-tls refuses an
// issuing CA's key (whose certificates chain to the root relying parties
// trust, and which must go through the daemon's lint, record and audit),
// and the mTLS CA key is refused as the parent of a CA. Neither refusal
// writes a file.
func TestCeremonyKeyRoles(t *testing.T) {
	out := t.TempDir()
	run := func(args ...string) (string, error) {
		cmd := exec.Command(s.bin, append(append([]string{"ca"}, args[0], "--module", moduleFromConfig(t, s.dir),
			"--token-label", "pkid-demo", "--pin-file", s.path("hsm-pin")), args[1:]...)...)
		cmd.Env = append(os.Environ(), "SOFTHSM2_CONF="+s.path("softhsm2.conf"))
		b, err := cmd.CombinedOutput()
		return string(b), err
	}
	for _, c := range []struct {
		name string
		args []string
		want []string
	}{
		{"issue-tls with an issuing CA key", []string{"issue-tls", "--ca-label", "pkid-ec-issuing", "--ca-cert", s.path("ca", "ec-issuing.pem"),
			"--server", "--cn", "bank.example.com", "--dns", "bank.example.com", "--validity", "10y",
			"--out", filepath.Join(out, "forged.pem"), "--key-out", filepath.Join(out, "forged-key.pem")},
			[]string{`key "pkid-ec-issuing": role is CA, audit or OCSP key, must be mTLS CA key`, "pkid ca create-mtls-ca"}},
		{"issue-tls with the root key", []string{"issue-tls", "--ca-label", "pkid-root", "--ca-cert", s.path("ca", "root.pem"),
			"--client", "--cn", "root-client", "--out", filepath.Join(out, "root-client.pem"), "--key-out", filepath.Join(out, "root-client-key.pem")},
			[]string{`key "pkid-root": role is CA, audit or OCSP key, must be mTLS CA key`}},
		{"the mTLS CA as a parent", []string{"create-intermediate", "--label", "pkid-shadow", "--key-type", "ec-p256", "--cn", "Shadow CA",
			"--parent-label", "pkid-tls-ca", "--parent-cert", s.path("tls", "ca.pem"), "--out", filepath.Join(out, "shadow.pem")},
			[]string{`parent: key "pkid-tls-ca": role is mTLS CA key, must be CA, audit or OCSP key`}},
	} {
		t.Run(c.name, func(t *testing.T) {
			msg, err := run(c.args...)
			if err == nil {
				t.Fatalf("succeeded:\n%s", msg)
			}
			for _, w := range c.want {
				if !strings.Contains(msg, w) {
					t.Errorf("output lacks %q:\n%s", w, msg)
				}
			}
		})
	}
	if entries, err := os.ReadDir(out); err != nil || len(entries) != 0 {
		t.Errorf("refused ceremonies wrote %v (%v)", entries, err)
	}
}
