package main

import (
	"bytes"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"
)

// issued is a certificate the bench had the daemon issue.
type issued struct {
	serial       string
	leaf, issuer *x509.Certificate
}

// issueOne issues one certificate with body (an issue-certificate request).
func issueOne(client *http.Client, fx *fixture, body string) (*issued, error) {
	resp, err := client.Post("https://"+fx.api+issuePath, "application/json", bytes.NewReader([]byte(body)))
	if err != nil {
		return nil, err
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		return nil, fmt.Errorf("issue-certificate: %d %.300s", resp.StatusCode, b)
	}
	var r struct {
		Certificate, IssuingCaCertificate, SerialNumber string
	}
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("issue-certificate answer: %w", err)
	}
	out := &issued{serial: r.SerialNumber}
	if out.leaf, err = parsePEMCertificate(r.Certificate); err != nil {
		return nil, err
	}
	if out.issuer, err = parsePEMCertificate(r.IssuingCaCertificate); err != nil {
		return nil, err
	}
	return out, nil
}

func parsePEMCertificate(s string) (*x509.Certificate, error) {
	block, _ := pem.Decode([]byte(s))
	if block == nil {
		return nil, errors.New("no PEM certificate in the answer")
	}
	return x509.ParseCertificate(block.Bytes)
}

// revoke revokes serial through the API and returns how long the call took.
func revoke(client *http.Client, fx *fixture, serial, reason string) (time.Duration, error) {
	start := time.Now()
	resp, err := client.Post("https://"+fx.api+fmt.Sprintf(revokePath, serial), "application/json",
		bytes.NewReader([]byte(`{"revocationReason":"`+reason+`"}`)))
	if err != nil {
		return 0, err
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	took := time.Since(start)
	if resp.StatusCode != 200 {
		return took, fmt.Errorf("revoke %s: %d %.300s", serial, resp.StatusCode, b)
	}
	return took, nil
}
