package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pkid/pkid/record"
	"github.com/pkid/pkid/store"
)

// v1Event is the audit event as the first release marshalled it.
type v1Event struct {
	Time          time.Time `json:"time"`
	Action        string    `json:"action"`
	RequestID     string    `json:"reqId"`
	Identity      string    `json:"identity"`
	Profile       string    `json:"profile"`
	Outcome       string    `json:"outcome"`
	Reason        string    `json:"reason,omitempty"`
	CertificateID string    `json:"certificateId,omitempty"`
	Serial        string    `json:"serialNumber,omitempty"`
}

type v1Cert struct {
	id, serial, status, created string
	der                         []byte
}

// buildV1 makes a database exactly as the first release did: its schema
// (testdata/schema_v1.sql, a copy of that release's SQL), no version
// table, times in trimmed RFC 3339, and a valid chain of its events.
func buildV1(t *testing.T, path string, certs []v1Cert, events []v1Event) {
	t.Helper()
	schema, err := os.ReadFile("testdata/schema_v1.sql")
	if err != nil {
		t.Fatal(err)
	}
	raw, err := sql.Open("sqlite", "file:"+path+"?_pragma=journal_mode(WAL)&_pragma=synchronous(FULL)")
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	if _, err := raw.Exec(string(schema)); err != nil {
		t.Fatalf("creating the version-1 schema: %v", err)
	}
	for _, c := range certs {
		if _, err := raw.Exec(`INSERT INTO certificates (id, serial, profile, ca, identity, request_id, common_name,
			alt_names, key_usages, ext_key_usages, signature_algorithm, key_algorithm, not_before, not_after, status, der,
			created_at, updated_at) VALUES (?, ?, 'web-server', 'ec-issuing', 'client', 'req-1', 'a.example.internal',
			'[{"type":"dns_name","value":"b.example.internal"},{"type":"dns_name","value":"a.example.internal"}]',
			'["key_encipherment","digital_signature"]', '["server_auth"]', 'ECDSA-SHA256', 'EC_prime256v1',
			'2026-11-30T08:00:00Z', '2026-12-30T08:00:00.25Z', ?, ?, ?, ?)`,
			c.id, c.serial, c.status, c.der, c.created, c.created); err != nil {
			t.Fatal(err)
		}
	}
	prev := record.GenesisHash
	for k, ev := range events {
		b, err := json.Marshal(ev)
		if err != nil {
			t.Fatal(err)
		}
		seq := int64(k + 1)
		h := record.ChainHash(prev, seq, string(b))
		if _, err := raw.Exec(`INSERT INTO audit (seq, at, event, prev_hash, hash) VALUES (?, ?, ?, ?, ?)`,
			seq, ev.Time.UTC().Format(time.RFC3339Nano), string(b), prev, h); err != nil {
			t.Fatal(err)
		}
		prev = h
	}
}

func TestMigrationOneIsTheFirstReleaseSchema(t *testing.T) {
	old, err := os.ReadFile("testdata/schema_v1.sql")
	if err != nil {
		t.Fatal(err)
	}
	one, err := migrationFiles.ReadFile("migrations/0001_initial.sql")
	if err != nil {
		t.Fatal(err)
	}
	if string(one) != string(old) {
		t.Fatal("migrations/0001_initial.sql differs from the first release's schema (testdata/schema_v1.sql): " +
			"version 1 must never change; add a migration instead")
	}
	if ms, err := migrations(); err != nil || len(ms) != LatestSchemaVersion {
		t.Fatalf("migrations() = %d, %v", len(ms), err)
	}
}

func TestMigrateFromVersion1(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "pkid.db")
	when := func(s string) time.Time {
		v, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	// Times with 0, 9, 2 and 1 fractional digits: in version 1's text,
	// whole seconds sorted after fractions of the same second.
	certs := []v1Cert{
		{id: "00000000-0000-4000-8000-000000000001", serial: "4a01", status: "issued", created: "2026-11-30T08:00:00Z", der: []byte("der one")},
		{id: "00000000-0000-4000-8000-000000000002", serial: "4a02", status: "issued", created: "2026-11-30T08:00:00.5Z", der: []byte("der two")},
		{id: "00000000-0000-4000-8000-000000000003", serial: "4a03", status: "pending", created: "2026-11-30T07:59:59.123456789Z"},
		{id: "00000000-0000-4000-8000-000000000004", serial: "4a04", status: "aborted", created: "2026-11-30T08:00:00.05Z"},
	}
	events := []v1Event{
		{Time: when("2026-11-30T08:00:00.1Z"), Action: "issued", RequestID: "req-1", Identity: "client", Profile: "web-server", Outcome: "issued", CertificateID: certs[0].id, Serial: certs[0].serial},
		{Time: when("2026-11-30T08:00:00.2Z"), Action: "refused", RequestID: "req-2", Identity: "other", Profile: "web-server", Outcome: "forbidden", Reason: "no"},
		{Time: when("2026-11-30T08:00:00.6Z"), Action: "issued", RequestID: "req-3", Identity: "client", Profile: "web-server", Outcome: "issued", CertificateID: certs[1].id, Serial: certs[1].serial},
		{Time: when("2026-11-30T08:00:00.7Z"), Action: "refused", RequestID: "req-4", Identity: "client", Profile: "web-server", Outcome: "policy_violation", Reason: "lint", CertificateID: certs[3].id, Serial: certs[3].serial},
	}
	buildV1(t, path, certs, events)
	if v, err := SchemaVersionAt(ctx, path); err != nil || v != 1 {
		t.Fatalf("SchemaVersionAt(first release) = %d, %v; want 1", v, err)
	}

	d := openDB(t, path)
	defer func() { d.Close(ctx) }()
	if v, err := d.SchemaVersion(ctx); err != nil || v != LatestSchemaVersion {
		t.Fatalf("SchemaVersion after migration = %d, %v", v, err)
	}
	// The rows are intact, the new columns empty.
	got, err := d.Certificate(ctx, certs[0].id)
	if err != nil {
		t.Fatal(err)
	}
	if got.Serial != "4a01" || got.Status != record.StatusIssued || string(got.DER) != "der one" ||
		got.Profile != "web-server" || got.CA != "ec-issuing" || got.Identity != "client" || got.RequestID != "req-1" ||
		got.CommonName != "a.example.internal" || len(got.AltNames) != 2 || got.AltNames[0].Value != "b.example.internal" ||
		strings.Join(got.KeyUsages, ",") != "key_encipherment,digital_signature" ||
		!got.NotBefore.Equal(when("2026-11-30T08:00:00Z")) || !got.NotAfter.Equal(when("2026-12-30T08:00:00.25Z")) ||
		!got.CreatedAt.Equal(when(certs[0].created)) || got.ProfileID != "" || got.TBSHash != "" ||
		got.CertificateRequestID != "" || !got.RevokedAt.IsZero() || got.CSR != nil || got.Node != "" {
		t.Errorf("migrated record = %+v", got)
	}
	// Listed in time order now, whatever version 1's text said.
	var order []string
	if err := d.ListCertificates(ctx, store.Filter{}, func(c *record.Certificate) error { order = append(order, c.Serial); return nil }); err != nil {
		t.Fatal(err)
	}
	if strings.Join(order, " ") != "4a03 4a01 4a04 4a02" {
		t.Errorf("migrated records listed as %v, want by creation time", order)
	}
	rep, err := d.VerifyAudit(ctx, store.VerifyOptions{})
	if err != nil {
		t.Fatalf("VerifyAudit of the migrated chain: %v", err)
	}
	if rep.Entries != 4 || rep.LegacyEntries != 4 || rep.Certificates != 4 {
		t.Errorf("VerifyAudit report %+v", rep)
	}

	// The migrated database keeps working: the old pending row is
	// recovered, a legacy certificate revoked, a new one issued.
	if rec, err := d.AbortPending(ctx, "node-1", time.Hour, "restart after upgrade", at(10)); err != nil || len(rec) != 1 || rec[0].ID != certs[2].id {
		t.Fatalf("AbortPending = %+v, %v", rec, err)
	}
	if err := d.Revoke(ctx, certs[0].id, at(11), "SUPERSEDED", record.AuditEvent{Time: at(11), Outcome: "revoked"}); err != nil {
		t.Fatalf("Revoke of a migrated certificate: %v", err)
	}
	c := newCert(20)
	if err := d.Reserve(ctx, c); err != nil {
		t.Fatal(err)
	}
	if err := d.Finalize(ctx, c.ID, []byte("new der"), issued(21)); err != nil {
		t.Fatal(err)
	}
	if err := d.Close(ctx); err != nil {
		t.Fatal(err)
	}
	d = openDB(t, path) // a second Open migrates nothing
	var applied int
	if err := d.db.QueryRowContext(ctx, `SELECT count(*) FROM schema_migrations`).Scan(&applied); err != nil || applied != LatestSchemaVersion {
		t.Errorf("schema_migrations holds %d rows, %v", applied, err)
	}
	rep, err = d.VerifyAudit(ctx, store.VerifyOptions{})
	if err != nil {
		t.Fatalf("VerifyAudit after using the migrated database: %v", err)
	}
	if rep.Entries != 7 || rep.LegacyEntries != 4 || rep.Certificates != 5 {
		t.Errorf("VerifyAudit report %+v", rep)
	}
}

// A failing migration leaves the database as it was.
func TestMigrationIsAtomic(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "pkid.db")
	buildV1(t, path, []v1Cert{{id: "x", serial: "4a", status: "issued", created: "2026-11-30T08:00:00Z"}}, nil)
	// A table in the way makes version 2 fail after it rebuilt certificates.
	raw, err := sql.Open("sqlite", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := raw.Exec(`CREATE TABLE crls (x)`); err != nil {
		t.Fatal(err)
	}
	raw.Close()
	if d, err := Open(ctx, path, Options{}); err == nil {
		d.Close(ctx)
		t.Fatal("Open succeeded over a conflicting table")
	}
	if v, err := SchemaVersionAt(ctx, path); err != nil || v != 1 {
		t.Errorf("after the failed migration: version %d, %v; want the first release's tables untouched", v, err)
	}
}
