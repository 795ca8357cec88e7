package record

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"testing"
	"time"
)

func TestEncodeEvent(t *testing.T) {
	at := time.Date(2026, 11, 30, 8, 0, 0, 120000000, time.UTC)
	tests := []struct {
		name string
		ev   AuditEvent
		want string
	}{
		{"refusal", AuditEvent{Time: at, Action: ActionRefused, RequestID: "req-1", Identity: "client", Profile: "web-server", Outcome: "forbidden", Reason: "no"},
			`{"time":"2026-11-30T08:00:00.12Z","action":"refused","reqId":"req-1","identity":"client","profile":"web-server","outcome":"forbidden","reason":"no"}`},
		{"issued", AuditEvent{Time: at, Action: ActionIssued, Outcome: "issued", CertificateID: "c1", Serial: "4a", DERHash: "ab"},
			`{"time":"2026-11-30T08:00:00.12Z","action":"issued","reqId":"","identity":"","profile":"","outcome":"issued","certificateId":"c1","serialNumber":"4a","derSha256":"ab"}`},
		{"crl", AuditEvent{Time: at, Action: ActionCRL, CA: "ec-issuing", CRLNumber: 7, DERHash: "cd"},
			`{"time":"2026-11-30T08:00:00.12Z","action":"crl","reqId":"","identity":"","profile":"","outcome":"","derSha256":"cd","ca":"ec-issuing","crlNumber":7}`},
		{"summary", AuditEvent{Time: at, Action: ActionRefusalsSuppressed, Identity: "x", Count: 31},
			`{"time":"2026-11-30T08:00:00.12Z","action":"refusals-suppressed","reqId":"","identity":"x","profile":"","outcome":"","count":31}`},
		// The same instant in another zone encodes the same.
		{"zone", AuditEvent{Time: at.In(time.FixedZone("x", 3600)), Action: ActionRefused},
			`{"time":"2026-11-30T08:00:00.12Z","action":"refused","reqId":"","identity":"","profile":"","outcome":""}`},
		// A year json.Marshal(time.Time) refuses still encodes.
		{"far future", AuditEvent{Time: time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC), Action: ActionRefused},
			`{"time":"10000-01-01T00:00:00Z","action":"refused","reqId":"","identity":"","profile":"","outcome":""}`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := EncodeEvent(tc.ev)
			if got != tc.want {
				t.Fatalf("EncodeEvent =\n%s\nwant\n%s", got, tc.want)
			}
			if tc.ev.Time.Year() > 9999 {
				return // time.Time cannot parse it back; the verifier does not need to
			}
			back, err := DecodeEvent(got)
			if err != nil || EncodeEvent(back) != got {
				t.Fatalf("DecodeEvent round trip = %+v, %v", back, err)
			}
		})
	}
}

// The previous release stored json.Marshal(AuditEvent) of a UTC event;
// EncodeEvent must give the same bytes for the fields it had.
func TestEncodeEventMatchesPreviousRelease(t *testing.T) {
	ev := AuditEvent{Time: time.Date(2026, 11, 30, 8, 0, 0, 1, time.UTC), Action: ActionIssued, RequestID: "req-2",
		Identity: "uri:spiffe://example.internal/demo-client", Profile: "web-server", Outcome: "issued",
		CertificateID: "00000000-0000-4000-8000-000000000001", Serial: "4abc"}
	old, err := json.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	if got := EncodeEvent(ev); got != string(old) {
		t.Fatalf("EncodeEvent = %s, previous release wrote %s", got, old)
	}
}

func TestChainHash(t *testing.T) {
	body := `{"time":"2026-11-30T08:00:00Z","action":"refused","reqId":"req-1","identity":"client","profile":"web-server","outcome":"forbidden"}`
	// printf '<64 zeros>\n1\n<body>' | sha256sum
	const want = "2ef646ff90a1daf72eecb20968bff0f42381c46f278359b46cea533cc34e692b"
	if got := ChainHash(GenesisHash, 1, body); got != want {
		t.Fatalf("ChainHash = %s, want %s", got, want)
	}
}

func TestCheckpointSignature(t *testing.T) {
	cp := Checkpoint{Seq: 12, Hash: "ab", Time: time.Date(2026, 11, 30, 8, 0, 0, 5, time.FixedZone("x", 7200))}
	if got, want := string(cp.SignedMessage()), "pkid audit checkpoint v1\n12\nab\n2026-11-30T06:00:00.000000005Z\n"; got != want {
		t.Fatalf("SignedMessage = %q, want %q", got, want)
	}
	p256, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	p521, _ := ecdsa.GenerateKey(elliptic.P521(), rand.Reader)
	r, _ := rsa.GenerateKey(rand.Reader, 2048)
	for _, tc := range []struct {
		name string
		key  crypto.Signer
		hash crypto.Hash
	}{{"P-256", p256, crypto.SHA256}, {"P-384", p384, crypto.SHA384}, {"RSA", r, crypto.SHA256}} {
		t.Run(tc.name, func(t *testing.T) {
			h, digest, err := CheckpointDigest(tc.key.Public(), cp)
			if err != nil || h != tc.hash {
				t.Fatalf("CheckpointDigest = %v, %v; want %v", h, err, tc.hash)
			}
			signed := cp
			if signed.Signature, err = tc.key.Sign(rand.Reader, digest, h); err != nil {
				t.Fatal(err)
			}
			if err := VerifyCheckpoint(tc.key.Public(), signed); err != nil {
				t.Fatalf("VerifyCheckpoint: %v", err)
			}
			moved := signed
			moved.Seq++
			if err := VerifyCheckpoint(tc.key.Public(), moved); !errors.Is(err, ErrBadCheckpointSignature) {
				t.Fatalf("VerifyCheckpoint of an altered checkpoint = %v", err)
			}
			if id, err := AuditKeyID(tc.key.Public()); err != nil || len(id) != 64 {
				t.Fatalf("AuditKeyID = %q, %v", id, err)
			}
		})
	}
	if _, err := CheckpointHash(p521.Public()); err == nil {
		t.Fatal("P-521 accepted as an audit key")
	}
}
