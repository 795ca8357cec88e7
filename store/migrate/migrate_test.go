package migrate

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/pkid/pkid/record"
	"github.com/pkid/pkid/store"
	"github.com/pkid/pkid/store/postgres"
	"github.com/pkid/pkid/store/postgres/pgtest"
	"github.com/pkid/pkid/store/sqlite"
)

func at(n int) time.Time {
	return time.Date(2026, 11, 30, 8, 0, 0, 0, time.UTC).Add(time.Duration(n)*time.Millisecond + 7*time.Nanosecond)
}

func hexHash(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

func cert(n int) *record.Certificate {
	return &record.Certificate{
		ID: fmt.Sprintf("00000000-0000-4000-8000-%012d", n), Serial: fmt.Sprintf("4%039x", n),
		ProfileID: "11111111-0000-4000-8000-000000000001", Profile: "web-server", CA: "ec-issuing",
		IssuerHash: hexHash("ca"), Identity: "uri:spiffe://example.internal/demo-client", RequestID: fmt.Sprintf("req-%d", n),
		CertificateRequestID: fmt.Sprintf("22222222-0000-4000-8000-%012d", n), ApplicationID: "app",
		CommonName: "a.example.internal",
		AltNames:   []record.AltName{{Type: "dns_name", Value: "z.example.internal"}, {Type: "ip_address", Value: "10.0.0.1"}},
		KeyUsages:  []string{"key_encipherment", "digital_signature"}, ExtKeyUsages: []string{"server_auth"},
		SignatureAlgorithm: "ECDSA-SHA256", KeyAlgorithm: "EC_prime256v1", CSR: []byte(fmt.Sprintf("csr %d", n)),
		NotBefore: at(n), NotAfter: time.Date(9999, 12, 31, 23, 59, 59, 0, time.UTC), // RFC 5280 §4.1.2.5's "no expiry"
		TBSHash: hexHash(fmt.Sprint("tbs", n)), Node: "node-1", CreatedAt: at(n),
	}
}

func ev(n int, action string) record.AuditEvent {
	return record.AuditEvent{Time: at(n), Action: action, Identity: "client", Profile: "web-server", Outcome: action}
}

// A SQLite store with issued, revoked, aborted and pending records, CRLs
// (one aborted), checkpoints, OCSP answers and revoked tokens is copied
// into PostgreSQL; VerifyAudit there passes with the same key and counts,
// the records read back the same, and a second copy is refused.
func TestCopy(t *testing.T) {
	ctx := context.Background()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	checkpoint := func(s store.Store, n int) {
		t.Helper()
		seq, hash, err := s.AuditHead(ctx)
		if err != nil {
			t.Fatal(err)
		}
		cp := record.Checkpoint{Seq: seq, Hash: hash, Time: at(n)}
		if cp.KeyID, err = record.AuditKeyID(key.Public()); err != nil {
			t.Fatal(err)
		}
		h, digest, err := record.CheckpointDigest(key.Public(), cp)
		if err != nil {
			t.Fatal(err)
		}
		if cp.Signature, err = key.Sign(rand.Reader, digest, h); err != nil {
			t.Fatal(err)
		}
		if err := s.AddCheckpoint(ctx, cp); err != nil {
			t.Fatal(err)
		}
	}

	src, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "pkid.db"), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close(ctx)
	var ids []string
	n := 0
	for k := 0; k < 30; k++ {
		n++
		c := cert(n)
		ids = append(ids, c.ID)
		if err := src.Reserve(ctx, c); err != nil {
			t.Fatal(err)
		}
		switch k % 5 {
		case 0, 1, 2: // issued; every third of them revoked below
			if err := src.Finalize(ctx, c.ID, []byte("der "+c.ID), ev(n, record.ActionIssued)); err != nil {
				t.Fatal(err)
			}
		case 3:
			if err := src.Abort(ctx, c.ID, nil, ev(n, record.ActionAborted)); err != nil {
				t.Fatal(err)
			}
		case 4: // left pending
		}
		if k%5 == 0 {
			if err := src.Revoke(ctx, c.ID, at(n), "KEY_COMPROMISE", ev(n, record.ActionRevoked)); err != nil {
				t.Fatal(err)
			}
		}
		if k%7 == 0 {
			if err := src.Refuse(ctx, ev(n, record.ActionRefused)); err != nil {
				t.Fatal(err)
			}
		}
		if k == 10 {
			checkpoint(src, n)
		}
	}
	for number := int64(1); number <= 3; number++ {
		n++
		crl := &record.CRL{CA: "ec-issuing", Number: number, ThisUpdate: at(n), NextUpdate: at(n).Add(7 * 24 * time.Hour),
			TBSHash: hexHash(fmt.Sprint("crl", number)), Node: "node-1", CreatedAt: at(n)}
		if err := src.ReserveCRL(ctx, crl); err != nil {
			t.Fatal(err)
		}
		if number == 2 {
			err = src.AbortCRL(ctx, crl.CA, number, ev(n, record.ActionAborted))
		} else {
			err = src.FinalizeCRL(ctx, crl.CA, number, []byte(fmt.Sprint("crl der ", number)), ev(n, record.ActionCRL))
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	checkpoint(src, n+1)
	if err := src.Refuse(ctx, ev(n+2, record.ActionRefused)); err != nil { // beyond the last checkpoint
		t.Fatal(err)
	}
	ocsp := []record.OCSPResponse{
		{CA: "ec-issuing", Serial: cert(1).Serial, Status: record.OCSPRevoked, ThisUpdate: at(n), NextUpdate: at(n).Add(12 * time.Hour), DER: []byte("ocsp 1")},
		{CA: "ec-issuing", Serial: cert(2).Serial, Status: record.OCSPGood, ThisUpdate: at(n), NextUpdate: at(n).Add(12 * time.Hour), DER: []byte("ocsp 2")},
	}
	if err := src.PutOCSPResponses(ctx, ocsp); err != nil {
		t.Fatal(err)
	}
	if err := src.RevokeToken(ctx, "jti-1", time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	acmeOrder, acmeAuthz := acmeState(t, src)
	want, err := src.VerifyAudit(ctx, store.VerifyOptions{Key: key.Public()})
	if err != nil {
		t.Fatalf("VerifyAudit of the source: %v", err)
	}
	srcSeq, srcHash, _ := src.AuditHead(ctx)

	srv := pgtest.StartServer(t)
	dsn := srv.NewDatabase(t)
	dst, err := postgres.Open(ctx, dsn, postgres.Options{Password: srv.Password()})
	if err != nil {
		t.Fatal(err)
	}
	defer dst.Close(ctx)
	rep, err := Copy(ctx, src, dst)
	if err != nil {
		t.Fatalf("Copy: %v", err)
	}
	wantRep := Report{Certificates: 30, CRLs: 3, AuditEntries: want.Entries, Checkpoints: 2, OCSPResponses: 2, RevokedTokens: 1,
		ACMERows: 6, HeadSeq: srcSeq, HeadHash: srcHash}
	if rep != wantRep {
		t.Errorf("Copy report\n%+v\nwant\n%+v", rep, wantRep)
	}
	got, err := dst.VerifyAudit(ctx, store.VerifyOptions{Key: key.Public(), Anchor: &store.Anchor{Seq: srcSeq, Hash: srcHash}})
	if err != nil {
		t.Fatalf("VerifyAudit of the copy: %v", err)
	}
	if *got != *want {
		t.Errorf("VerifyAudit of the copy\n%+v\nwant, as of the source,\n%+v", *got, *want)
	}
	for _, id := range ids {
		a, err1 := src.Certificate(ctx, id)
		b, err2 := dst.Certificate(ctx, id)
		if err := errors.Join(err1, err2); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(a, b) {
			t.Errorf("certificate %s\nin SQLite %+v\nin PostgreSQL %+v", id, a, b)
		}
	}
	for _, r := range ocsp {
		if got, err := dst.OCSPResponse(ctx, r.CA, r.Serial); err != nil || string(got.DER) != string(r.DER) || !got.ThisUpdate.Equal(r.ThisUpdate) {
			t.Errorf("OCSP answer %s after the copy: %+v, %v", r.Serial, got, err)
		}
	}
	if ok, err := dst.TokenRevoked(ctx, "jti-1"); err != nil || !ok {
		t.Errorf("TokenRevoked after the copy = %v, %v", ok, err)
	}
	sameACMEState(t, src, dst, acmeOrder, acmeAuthz)
	if l, err := dst.LatestCRL(ctx, "ec-issuing"); err != nil || l.Number != 3 {
		t.Errorf("LatestCRL after the copy = %+v, %v", l, err)
	}
	// The copy goes on as a store: numbers stay used, the chain extends.
	if err := dst.ReserveCRL(ctx, &record.CRL{CA: "ec-issuing", Number: 3, ThisUpdate: at(1), NextUpdate: at(2), TBSHash: hexHash("x"), CreatedAt: at(1)}); !errors.Is(err, record.ErrCRLNumberUsed) {
		t.Errorf("ReserveCRL of a copied number = %v, want ErrCRLNumberUsed", err)
	}
	if rec, err := dst.AbortPending(ctx, "node-2", time.Minute, "migrated", at(n+3)); err != nil || len(rec) != 6 {
		t.Errorf("AbortPending of the copied pending rows = %d rows, %v; want 6 (node-1 sent no heartbeat here)", len(rec), err)
	}
	if _, err := dst.VerifyAudit(ctx, store.VerifyOptions{Key: key.Public()}); err != nil {
		t.Errorf("VerifyAudit after using the copy: %v", err)
	}

	// A second copy into the same target is refused, and changes nothing.
	seq, _, _ := dst.AuditHead(ctx)
	if _, err := Copy(ctx, src, dst); !errors.Is(err, ErrTargetNotEmpty) {
		t.Errorf("second Copy = %v, want ErrTargetNotEmpty", err)
	}
	if after, _, _ := dst.AuditHead(ctx); after != seq {
		t.Errorf("the refused copy moved the head from %d to %d", seq, after)
	}
}

// A source whose chain begins with entries of SQLite's first schema (no
// derSha256) carries its legacy boundary over, so the target accepts them
// as the source does.
func TestCopyKeepsLegacyBoundary(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "pkid.db")
	schema, err := os.ReadFile("../sqlite/testdata/schema_v1.sql")
	if err != nil {
		t.Fatal(err)
	}
	raw, err := sql.Open("sqlite", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := raw.Exec(string(schema)); err != nil {
		t.Fatal(err)
	}
	const id, serial = "00000000-0000-4000-8000-000000000001", "4a01"
	if _, err := raw.Exec(`INSERT INTO certificates (id, serial, profile, ca, identity, request_id, common_name,
		alt_names, key_usages, ext_key_usages, signature_algorithm, key_algorithm, not_before, not_after, status, der,
		created_at, updated_at) VALUES (?, ?, 'web-server', 'ec-issuing', 'client', 'req-1', 'a', '[]', '[]', '[]',
		'ECDSA-SHA256', 'EC_prime256v1', '2026-11-30T08:00:00Z', '2026-12-30T08:00:00Z', 'issued', x'01',
		'2026-11-30T08:00:00Z', '2026-11-30T08:00:00Z')`, id, serial); err != nil {
		t.Fatal(err)
	}
	body := `{"time":"2026-11-30T08:00:00.1Z","action":"issued","reqId":"req-1","identity":"client","profile":"web-server","outcome":"issued","certificateId":"` + id + `","serialNumber":"` + serial + `"}`
	if _, err := raw.Exec(`INSERT INTO audit VALUES (1, '2026-11-30T08:00:00.1Z', ?, ?, ?)`,
		body, record.GenesisHash, record.ChainHash(record.GenesisHash, 1, body)); err != nil {
		t.Fatal(err)
	}
	raw.Close()
	src, err := sqlite.Open(ctx, path, sqlite.Options{}) // migrates to the latest schema
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close(ctx)
	if err := src.Refuse(ctx, ev(1, record.ActionRefused)); err != nil {
		t.Fatal(err)
	}
	srv := pgtest.StartServer(t)
	dst, err := postgres.Open(ctx, srv.NewDatabase(t), postgres.Options{Password: srv.Password()})
	if err != nil {
		t.Fatal(err)
	}
	defer dst.Close(ctx)
	rep, err := Copy(ctx, src, dst)
	if err != nil || rep.LegacyEntries != 1 || rep.AuditEntries != 2 {
		t.Fatalf("Copy = %+v, %v; want 2 entries, the first legacy", rep, err)
	}
	got, err := dst.VerifyAudit(ctx, store.VerifyOptions{})
	if err != nil || got.LegacyEntries != 1 || got.Entries != 2 || got.Certificates != 1 {
		t.Fatalf("VerifyAudit of the copy = %+v, %v", got, err)
	}
}

// acmeState puts an EAB key, the account it binds, an order and its
// authorization with two challenges (one failed) into s.
func acmeState(t *testing.T, s *sqlite.DB) (order, authz string) {
	t.Helper()
	ctx := context.Background()
	const profile = "11111111-0000-4000-8000-000000000001"
	if err := s.AddACMEEABKey(ctx, &record.ACMEEABKey{KeyID: "kid-1", ProfileID: profile, KeyHash: hexHash("mac"), CreatedAt: at(1)}); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateACMEAccount(ctx, &record.ACMEAccount{ID: "acct-1", ProfileID: profile, KeyID: "thumb", Key: []byte(`{"kty":"EC"}`),
		Contacts: []string{"mailto:ops@example.internal"}, Status: record.ACMEValid, EABKeyID: "kid-1", CreatedAt: at(2)}); err != nil {
		t.Fatal(err)
	}
	o := &record.ACMEOrder{ID: "order-1", AccountID: "acct-1", ProfileID: profile, Status: record.ACMEPending,
		Identifiers: []record.ACMEIdentifier{{Type: "dns", Value: "a.example.internal"}}, AuthorizationIDs: []string{"authz-1"},
		Expires: at(3).Add(time.Hour), CreatedAt: at(3)}
	az := &record.ACMEAuthorization{ID: "authz-1", OrderID: o.ID, AccountID: "acct-1", ProfileID: profile,
		Identifier: o.Identifiers[0], Status: record.ACMEPending, Expires: o.Expires, CreatedAt: at(3),
		Challenges: []record.ACMEChallenge{{Type: "http-01", Token: "t1", Status: record.ACMEPending}, {Type: "dns-01", Token: "t2", Status: record.ACMEPending}}}
	if err := s.CreateACMEOrder(ctx, o, []*record.ACMEAuthorization{az}); err != nil {
		t.Fatal(err)
	}
	failed := az.Challenges[1]
	failed.Status, failed.Problem, failed.UpdatedAt = record.ACMEInvalid, []byte(`{"type":"urn:ietf:params:acme:error:dns"}`), at(4)
	if err := s.UpdateACMEChallenge(ctx, az.ID, failed.Type, record.ACMEPending, failed, record.ACMEInvalid); err != nil {
		t.Fatal(err)
	}
	return o.ID, az.ID
}

// sameACMEState checks that dst reads the ACME state as src does.
func sameACMEState(t *testing.T, src *sqlite.DB, dst *postgres.DB, order, authz string) {
	t.Helper()
	ctx := context.Background()
	for what, read := range map[string]func(store.Store) (any, error){
		"EAB key":       func(s store.Store) (any, error) { return s.ACMEEABKey(ctx, "kid-1") },
		"account":       func(s store.Store) (any, error) { return s.ACMEAccount(ctx, "acct-1") },
		"order":         func(s store.Store) (any, error) { return s.ACMEOrder(ctx, order) },
		"authorization": func(s store.Store) (any, error) { return s.ACMEAuthorization(ctx, authz) },
	} {
		a, err1 := read(src)
		b, err2 := read(dst)
		if err := errors.Join(err1, err2); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if !reflect.DeepEqual(a, b) {
			t.Errorf("ACME %s\nin SQLite %+v\nin PostgreSQL %+v", what, a, b)
		}
	}
}
