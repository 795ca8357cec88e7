package api

import (
	"crypto/rand"
	"crypto/tls"
)

// Identity is the client's identity from its verified certificate: the
// first URI SAN (e.g. a SPIFFE ID), else the first DNS SAN, else the
// subject common name (DESIGN.md §2). "" means no usable identity.
func Identity(cs *tls.ConnectionState) string {
	if cs == nil || len(cs.VerifiedChains) == 0 || len(cs.PeerCertificates) == 0 {
		return ""
	}
	leaf := cs.PeerCertificates[0]
	switch {
	case len(leaf.URIs) > 0:
		return leaf.URIs[0].String()
	case len(leaf.DNSNames) > 0:
		return leaf.DNSNames[0]
	}
	return leaf.Subject.CommonName
}

const idAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"

// newRequestID returns "req-" and 14 random alphanumerics, as Infisical's
// request ids look.
func newRequestID() string {
	b := make([]byte, 14)
	if _, err := rand.Read(b); err != nil {
		panic("crypto/rand failed: " + err.Error()) // never returns an error on Linux
	}
	for k := range b {
		b[k] = idAlphabet[int(b[k])%len(idAlphabet)]
	}
	return "req-" + string(b)
}
