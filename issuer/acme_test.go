package issuer

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/pkid/pkid/policy"
	"github.com/pkid/pkid/record"
)

func withACME(c *ProfileConfig) { c.ACME = ACMEConfig{Enabled: true} }

func acmeHarness(t *testing.T) (*harness, Meta) {
	t.Helper()
	h := newHarness(t, false, withACME)
	acct, err := policy.ACMEIdentity("acct-1")
	if err != nil {
		t.Fatal(err)
	}
	return h, Meta{RequestID: "req-00000000000001", Identity: acct}
}

func csrDER(t *testing.T, key *ecdsa.PrivateKey, cn string, dns []string, ips []net.IP) []byte {
	t.Helper()
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: cn},
		DNSNames: dns, IPAddresses: ips}, key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func TestACMEProfileConfig(t *testing.T) {
	for _, c := range []struct {
		name   string
		change func(*ProfileConfig)
		want   string // "" valid
	}{
		{"defaults", withACME, ""},
		{"ACME only, no client identities", func(c *ProfileConfig) { withACME(c); c.AllowedIdentities = nil }, ""},
		{"unknown challenge", func(c *ProfileConfig) {
			c.ACME = ACMEConfig{Enabled: true, Challenges: []string{"http-01", "email-reply-00"}}
		}, `unknown challenge type "email-reply-00"`},
		{"challenge twice", func(c *ProfileConfig) { c.ACME = ACMEConfig{Enabled: true, Challenges: []string{"dns-01", "dns-01"}} }, "listed twice"},
		{"settings without enabled", func(c *ProfileConfig) { c.ACME = ACMEConfig{ExternalAccountRequired: true} }, "enabled is false"},
		{"validity over the maximum", func(c *ProfileConfig) { c.ACME = ACMEConfig{Enabled: true, Validity: "91d"} }, "more than the policy's maxValidity"},
		{"no ACME identifier allowed", func(c *ProfileConfig) {
			withACME(c)
			c.Policy.AltNames = map[string]*policy.NameRule{policy.SANEmail: {Allowed: []string{"*@example.internal"}}}
		}, "no dns_name or ip_address SAN"},
	} {
		_, err := NewProfile(profileConfig(c.change))
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%s: %v", c.name, err)
		case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
			t.Errorf("%s: error %v, want %q", c.name, err, c.want)
		}
	}
	h, _ := acmeHarness(t)
	p, ok := h.iss.ACMEProfile("web")
	if !ok || p.ID != profileID || strings.Join(p.Challenges, ",") != "http-01,tls-alpn-01,dns-01" || p.ExternalAccountRequired {
		t.Errorf("ACMEProfile = %+v, %v", p, ok)
	}
	if _, ok := newHarness(t, false).iss.ACMEProfile("web"); ok {
		t.Error("a profile without acme.enabled serves ACME")
	}
}

// An ACME account is admitted by acme.enabled, not allowedIdentities, but
// the policy still applies, at new-order and at finalize.
func TestSignACME(t *testing.T) {
	ctx := context.Background()
	h, meta := acmeHarness(t)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ids := []policy.SAN{san(t, policy.SANDNS, "www.example.internal"), san(t, policy.SANIP, "10.1.2.3")}
	if err := h.iss.CheckACMEIdentifiers(ctx, meta, profileID, ids); err != nil {
		t.Fatalf("CheckACMEIdentifiers: %v", err)
	}
	res, err := h.iss.SignACME(ctx, meta, ACMERequest{ProfileID: profileID, Identifiers: ids,
		CSR: csrDER(t, key, "", []string{"WWW.example.internal"}, []net.IP{net.ParseIP("10.1.2.3")})})
	if err != nil {
		t.Fatalf("SignACME: %v", err)
	}
	leaf := parsePEM(t, res.Certificate)
	if len(leaf.DNSNames) != 1 || leaf.DNSNames[0] != "www.example.internal" || len(leaf.IPAddresses) != 1 || leaf.Subject.CommonName != "" {
		t.Errorf("names %v %v %q", leaf.DNSNames, leaf.IPAddresses, leaf.Subject.CommonName)
	}
	if got := leaf.NotAfter.Sub(leaf.NotBefore); got != 90*24*time.Hour {
		t.Errorf("lifetime %s, want the policy's maximum", got)
	}
	rec := h.store.only(t)
	if rec.Identity != "acme:acct-1" || len(rec.CSR) == 0 {
		t.Errorf("record identity %q, CSR kept: %t", rec.Identity, len(rec.CSR) > 0)
	}
	if strings.Count(res.CertificateChain, "BEGIN CERTIFICATE") != 1 {
		t.Errorf("chain has the root: %s", res.CertificateChain)
	}

	// The CN alone may carry an identifier; it becomes the SAN.
	one := []policy.SAN{san(t, policy.SANDNS, "cn.example.internal")}
	res, err = h.iss.SignACME(ctx, meta, ACMERequest{ProfileID: profileID, Identifiers: one, CSR: csrDER(t, key, "cn.example.internal", nil, nil)})
	if err != nil {
		t.Fatalf("SignACME with the identifier in the CN only: %v", err)
	}
	if leaf := parsePEM(t, res.Certificate); len(leaf.DNSNames) != 1 || leaf.DNSNames[0] != "cn.example.internal" {
		t.Errorf("SANs %v, want the CN's name", leaf.DNSNames)
	}
}

func TestSignACMERefusals(t *testing.T) {
	ctx := context.Background()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	www := san(t, policy.SANDNS, "www.example.internal")
	client := metaFor(t, "uri:spiffe://test/client")
	for _, c := range []struct {
		name string
		meta func(Meta) Meta
		req  ACMERequest
		kind Kind
		csr  bool   // a badCSR refusal
		msg  string // in the message
	}{
		{"CSR names another name", nil, ACMERequest{Identifiers: []policy.SAN{www}, CSR: csrDER(t, key, "", []string{"other.example.internal"}, nil)},
			KindBadRequest, true, "exactly the order's identifiers"},
		{"CSR names one more", nil, ACMERequest{Identifiers: []policy.SAN{www}, CSR: csrDER(t, key, "", []string{"www.example.internal", "x.example.internal"}, nil)},
			KindBadRequest, true, "exactly the order's identifiers"},
		{"CSR names one less", nil, ACMERequest{Identifiers: []policy.SAN{www, san(t, policy.SANDNS, "x.example.internal")}, CSR: csrDER(t, key, "", []string{"www.example.internal"}, nil)},
			KindBadRequest, true, "exactly the order's identifiers"},
		{"CN not an identifier", nil, ACMERequest{Identifiers: []policy.SAN{www}, CSR: csrDER(t, key, "cn.example.internal", []string{"www.example.internal"}, nil)},
			KindBadRequest, true, "common name"},
		{"garbage CSR", nil, ACMERequest{Identifiers: []policy.SAN{www}, CSR: []byte("not DER")}, KindBadRequest, true, "Invalid CSR"},
		{"denied by policy at finalize", nil, ACMERequest{Identifiers: []policy.SAN{san(t, policy.SANDNS, "admin.example.internal")},
			CSR: csrDER(t, key, "", []string{"admin.example.internal"}, nil)}, KindPolicy, false, "admin.example.internal"},
		{"a client identity", func(Meta) Meta { return client }, ACMERequest{Identifiers: []policy.SAN{www}, CSR: csrDER(t, key, "", []string{"www.example.internal"}, nil)},
			KindForbidden, false, "Only ACME accounts"},
	} {
		t.Run(c.name, func(t *testing.T) {
			h, meta := acmeHarness(t)
			if c.meta != nil {
				meta = c.meta(meta)
			}
			c.req.ProfileID = profileID
			_, err := h.iss.SignACME(ctx, meta, c.req)
			e := wantKind(t, err, c.kind)
			if errors.Is(err, ErrBadCSR) != c.csr || !strings.Contains(e.Message, c.msg) {
				t.Errorf("error %q (badCSR %t), want %q (badCSR %t)", e.Message, errors.Is(err, ErrBadCSR), c.msg, c.csr)
			}
			if n := len(h.store.records); n != 0 {
				t.Errorf("%d records reserved for a refused finalize", n)
			}
		})
	}
	// A profile without ACME does not exist for the ACME entry points.
	h := newHarness(t, false)
	acct, _ := policy.ACMEIdentity("acct-1")
	_, err := h.iss.SignACME(ctx, Meta{Identity: acct}, ACMERequest{ProfileID: profileID, Identifiers: []policy.SAN{www},
		CSR: csrDER(t, key, "", []string{"www.example.internal"}, nil)})
	wantKind(t, err, KindNotFound)
	// New-order: a denied name and a wildcard covering it, all at once.
	h, meta := acmeHarness(t)
	err = h.iss.CheckACMEIdentifiers(ctx, meta, profileID, []policy.SAN{san(t, policy.SANDNS, "admin.example.internal"), san(t, policy.SANDNS, "*.example.internal"), www})
	if e := wantKind(t, err, KindPolicy); strings.Count(e.Message, "example.internal") < 2 {
		t.Errorf("new-order refusal %q does not name every violation", e.Message)
	}
}

func TestRevokeACME(t *testing.T) {
	ctx := context.Background()
	h, meta := acmeHarness(t)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ids := []policy.SAN{san(t, policy.SANDNS, "www.example.internal")}
	issue := func() []byte {
		res, err := h.iss.SignACME(ctx, meta, ACMERequest{ProfileID: profileID, Identifiers: ids, CSR: csrDER(t, key, "", []string{"www.example.internal"}, nil)})
		if err != nil {
			t.Fatal(err)
		}
		return parsePEM(t, res.Certificate).Raw
	}
	other, _ := policy.ACMEIdentity("acct-2")
	stranger, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der := issue()
	forged := append([]byte(nil), der...)
	forged[len(forged)-1] ^= 1

	for _, c := range []struct {
		name string
		meta Meta
		req  ACMERevokeRequest
		kind Kind
	}{
		{"another account", Meta{Identity: other}, ACMERevokeRequest{Certificate: der, Reason: 1}, KindForbidden},
		{"a key that is not the certificate's", Meta{Identity: other}, ACMERevokeRequest{Certificate: der, Reason: 1, KeyHolder: stranger.Public()}, KindForbidden},
		{"certificateHold", meta, ACMERevokeRequest{Certificate: der, Reason: 6}, KindBadRequest},
		{"unknown reason", meta, ACMERevokeRequest{Certificate: der, Reason: 7}, KindBadRequest},
		{"not a certificate", meta, ACMERevokeRequest{Certificate: []byte("x"), Reason: 0}, KindBadRequest},
		{"a forged copy", meta, ACMERevokeRequest{Certificate: forged, Reason: 0}, KindNotFound},
	} {
		c.req.ProfileID = profileID
		_, err := h.iss.RevokeACME(ctx, c.meta, c.req)
		wantKind(t, err, c.kind)
		if c.name == "certificateHold" && !errors.Is(err, ErrBadRevocationReason) {
			t.Errorf("%s: %v is not a bad revocation reason", c.name, err)
		}
	}
	rec, err := h.iss.RevokeACME(ctx, meta, ACMERevokeRequest{ProfileID: profileID, Certificate: der, Reason: 4})
	if err != nil || rec.RevocationReason != "SUPERSEDED" {
		t.Fatalf("revoking as the ordering account: %v, %v", rec, err)
	}
	_, err = h.iss.RevokeACME(ctx, meta, ACMERevokeRequest{ProfileID: profileID, Certificate: der, Reason: 4})
	if wantKind(t, err, KindBadRequest); !errors.Is(err, record.ErrAlreadyRevoked) {
		t.Errorf("second revocation: %v, want already revoked", err)
	}
	// The holder of the certificate's key may revoke it, from any account.
	der = issue()
	keyID, _ := policy.ACMEIdentity("key-abc")
	if _, err := h.iss.RevokeACME(ctx, Meta{Identity: keyID}, ACMERevokeRequest{ProfileID: profileID, Certificate: der, Reason: 1, KeyHolder: key.Public()}); err != nil {
		t.Errorf("revoking with the certificate's key: %v", err)
	}
}
