package integration

import (
	"crypto/x509"
	"fmt"
	"testing"
	"time"
)

const (
	webServer        = "b59e644e-e2ee-4dec-871e-2ac6f5ac2f0e"
	internalServices = "a1e5a186-5d12-4ffb-81c5-2e93d83a049f"
	prodClients      = "13646ca2-2a8e-4d37-aa4e-641fc7771122"
)

var keyAlgorithms = []string{"RSA_2048", "RSA_3072", "RSA_4096", "EC_prime256v1", "EC_secp384r1", "EC_secp521r1"}

func TestWebServerEveryKeyAlgorithm(t *testing.T) {
	sigs := []string{"ECDSA-SHA256", "ECDSA-SHA384", "ECDSA-SHA512"}
	for k, alg := range keyAlgorithms {
		t.Run(alg, func(t *testing.T) {
			host := fmt.Sprintf("h%d.example.internal", k)
			r := s.issue(t, map[string]any{"profileId": webServer, "commonName": host, "ttl": "30d",
				"altNames":           []map[string]string{{"type": "dns_name", "value": host}, {"type": "ip_address", "value": "10.1.2.3"}},
				"signatureAlgorithm": sigs[k%3], "keyAlgorithm": alg})
			leaf := s.checkIssued(t, r)
			if leaf.Subject.CommonName != host || len(leaf.DNSNames) != 1 || len(leaf.IPAddresses) != 1 {
				t.Errorf("subject/SANs: %v %v %v", leaf.Subject, leaf.DNSNames, leaf.IPAddresses)
			}
			if leaf.Issuer.CommonName != "pkid Demo EC Issuing CA" {
				t.Errorf("issued by %v", leaf.Issuer)
			}
			if lifetime := leaf.NotAfter.Sub(leaf.NotBefore); lifetime != 30*24*time.Hour {
				t.Errorf("lifetime %v, want 30d", lifetime)
			}
			// Defaults: digital_signature (+ nothing for EC keys), server_auth.
			if leaf.KeyUsage != x509.KeyUsageDigitalSignature || len(leaf.ExtKeyUsage) != 1 || leaf.ExtKeyUsage[0] != x509.ExtKeyUsageServerAuth {
				t.Errorf("usages %v %v", leaf.KeyUsage, leaf.ExtKeyUsage)
			}
		})
	}
}

func TestInternalServicesEveryKeyAlgorithm(t *testing.T) {
	sigs := []string{"RSA-SHA256", "RSA-SHA384", "RSA-SHA512"}
	for k, alg := range keyAlgorithms {
		t.Run(alg, func(t *testing.T) {
			host := fmt.Sprintf("s%d.svc.example.internal", k)
			r := s.issue(t, map[string]any{"profileId": internalServices, "commonName": host, "ttl": "365d",
				"altNames": []map[string]string{{"type": "dns_name", "value": host},
					{"type": "uri", "value": "spiffe://example.internal/ns/svc"}, {"type": "email", "value": "svc@example.internal"}},
				"signatureAlgorithm": sigs[k%3], "keyAlgorithm": alg})
			leaf := s.checkIssued(t, r)
			if leaf.Issuer.CommonName != "pkid Demo RSA Issuing CA" || leaf.URIs[0].String() != "spiffe://example.internal/ns/svc" ||
				leaf.EmailAddresses[0] != "svc@example.internal" {
				t.Errorf("issuer/SANs: %v %v %v", leaf.Issuer, leaf.URIs, leaf.EmailAddresses)
			}
			wantKU := x509.KeyUsageDigitalSignature
			if alg[:3] == "RSA" {
				wantKU |= x509.KeyUsageKeyEncipherment // RSA leaves get the default key_encipherment, EC leaves never
			}
			if leaf.KeyUsage != wantKU || len(leaf.ExtKeyUsage) != 2 {
				t.Errorf("usages %v %v", leaf.KeyUsage, leaf.ExtKeyUsage)
			}
		})
	}
}

func TestProdClients(t *testing.T) {
	r := s.issue(t, map[string]any{"profileId": prodClients, "commonName": "billing.prod.example.internal", "ttl": "24h",
		"signatureAlgorithm": "ECDSA-SHA256", "keyAlgorithm": "EC_prime256v1"})
	leaf := s.checkIssued(t, r)
	if len(leaf.ExtKeyUsage) != 1 || leaf.ExtKeyUsage[0] != x509.ExtKeyUsageClientAuth || len(leaf.DNSNames) != 0 {
		t.Errorf("EKU %v SANs %v", leaf.ExtKeyUsage, leaf.DNSNames)
	}
}

func TestWildcardSubjectlessAndExplicitWindow(t *testing.T) {
	r := s.issue(t, map[string]any{"profileId": webServer, "commonName": "*.example.internal", "ttl": "1d",
		"altNames":           []map[string]string{{"type": "dns_name", "value": "*.example.internal"}},
		"signatureAlgorithm": "ECDSA-SHA256", "keyAlgorithm": "EC_prime256v1"})
	s.checkIssued(t, r)

	r = s.issue(t, map[string]any{"profileId": webServer, "ttl": "1d",
		"altNames":           []map[string]string{{"type": "dns_name", "value": "bare.example.internal"}},
		"signatureAlgorithm": "ECDSA-SHA256", "keyAlgorithm": "EC_prime256v1"})
	leaf := s.checkIssued(t, r)
	for _, e := range leaf.Extensions {
		if e.Id.String() == "2.5.29.17" && !e.Critical {
			t.Error("SAN must be critical when the subject is empty")
		}
	}

	nb := time.Now().UTC().Add(time.Hour).Truncate(time.Second)
	na := nb.Add(6 * time.Hour)
	r = s.issue(t, map[string]any{"profileId": webServer, "commonName": "w.example.internal", "ttl": "6h",
		"notBefore": nb.Format(time.RFC3339), "notAfter": na.Format(time.RFC3339),
		"altNames":           []map[string]string{{"type": "dns_name", "value": "w.example.internal"}},
		"signatureAlgorithm": "ECDSA-SHA256", "keyAlgorithm": "EC_prime256v1", "removeRootsFromChain": true})
	if r.status != 200 {
		t.Fatalf("%d %s", r.status, r.raw)
	}
	leaf, _ = parseCert(r.str("certificate"))
	if !leaf.NotBefore.Equal(nb) || !leaf.NotAfter.Equal(na) {
		t.Errorf("window %v..%v, want %v..%v", leaf.NotBefore, leaf.NotAfter, nb, na)
	}
	if chain := parseChain(t, r.str("certificateChain")); len(chain) != 1 || chain[0].Subject.CommonName != "pkid Demo EC Issuing CA" {
		t.Errorf("removeRootsFromChain: chain has %d certificates", len(chain))
	}
}
