package validate

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/asn1"
	"fmt"
	"net/netip"
	"strings"
)

// ALPNProto is the TLS application protocol of tls-alpn-01 (RFC 8737 §6.2).
const ALPNProto = "acme-tls/1"

// OIDACMEIdentifier is id-pe-acmeIdentifier (RFC 8737 §6.1).
var OIDACMEIdentifier = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 1, 31}

// tlsALPN01 connects with ALPN acme-tls/1 and checks the self-signed
// certificate the identifier answers with (RFC 8737 §3): one SAN, the
// identifier, and a critical acmeIdentifier extension holding the SHA-256
// of the key authorization.
func (v *Validator) tlsALPN01(ctx context.Context, c Challenge) error {
	conn, err := v.dial(ctx, c, v.cfg.TLSALPNPort)
	if err != nil {
		return err
	}
	defer conn.Close()
	if deadline, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(deadline)
	}
	sni := c.Value
	if c.Identifier == "ip" {
		sni = reverseName(c.Value) // RFC 8738 §6
	}
	// The certificate is the challenge's, self-signed: it is checked
	// below, not against any trust store.
	tc := tls.Client(conn, &tls.Config{ServerName: sni, NextProtos: []string{ALPNProto}, InsecureSkipVerify: true, MinVersion: tls.VersionTLS12})
	if err := tc.HandshakeContext(ctx); err != nil {
		return fail("tls", "tls-alpn-01 for %s: the TLS handshake failed", c.Value)
	}
	st := tc.ConnectionState()
	if st.NegotiatedProtocol != ALPNProto || len(st.PeerCertificates) == 0 {
		return fail("tls", "tls-alpn-01 for %s: the server did not negotiate %s", c.Value, ALPNProto)
	}
	return checkALPNCertificate(st.PeerCertificates[0], c)
}

func checkALPNCertificate(leaf *x509.Certificate, c Challenge) error {
	names := len(leaf.DNSNames) + len(leaf.IPAddresses) + len(leaf.EmailAddresses) + len(leaf.URIs)
	ok := names == 1
	if c.Identifier == "ip" {
		want, _ := netip.ParseAddr(c.Value)
		got, _ := netip.AddrFromSlice(ipOrNil(leaf))
		ok = ok && len(leaf.IPAddresses) == 1 && got.Unmap() == want.Unmap()
	} else {
		ok = ok && len(leaf.DNSNames) == 1 && strings.EqualFold(leaf.DNSNames[0], c.Value)
	}
	if !ok {
		return fail("unauthorized", "tls-alpn-01 for %s: the certificate must name exactly the identifier", c.Value)
	}
	sum := sha256.Sum256([]byte(c.KeyAuthorization))
	for _, ext := range leaf.Extensions {
		if !ext.Id.Equal(OIDACMEIdentifier) {
			continue
		}
		var got []byte
		rest, err := asn1.Unmarshal(ext.Value, &got)
		switch {
		case !ext.Critical:
			return fail("unauthorized", "tls-alpn-01 for %s: the acmeIdentifier extension is not critical", c.Value)
		case err != nil || len(rest) > 0:
			return fail("unauthorized", "tls-alpn-01 for %s: the acmeIdentifier extension is malformed", c.Value)
		case !bytes.Equal(got, sum[:]):
			return fail("unauthorized", "tls-alpn-01 for %s: the acmeIdentifier extension does not hold the key authorization's digest", c.Value)
		}
		return nil
	}
	return fail("unauthorized", "tls-alpn-01 for %s: the certificate has no acmeIdentifier extension", c.Value)
}

func ipOrNil(c *x509.Certificate) []byte {
	if len(c.IPAddresses) == 0 {
		return nil
	}
	return c.IPAddresses[0]
}

// reverseName is the reverse-mapping DNS name of an IP address (RFC 1035
// §3.5, RFC 3596 §2.5), the SNI of tls-alpn-01 for IP identifiers.
func reverseName(ip string) string {
	a, err := netip.ParseAddr(ip)
	if err != nil {
		return ""
	}
	a = a.Unmap()
	b := a.AsSlice()
	var parts []string
	if a.Is4() {
		for k := len(b) - 1; k >= 0; k-- {
			parts = append(parts, fmt.Sprint(b[k]))
		}
		return strings.Join(parts, ".") + ".in-addr.arpa"
	}
	for k := len(b) - 1; k >= 0; k-- {
		parts = append(parts, fmt.Sprintf("%x", b[k]&0xf), fmt.Sprintf("%x", b[k]>>4))
	}
	return strings.Join(parts, ".") + ".ip6.arpa"
}
