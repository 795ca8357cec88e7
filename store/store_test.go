package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pkid/pkid/record"
)

func openTemp(t *testing.T) (*DB, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "pkid.db")
	d, err := Open(context.Background(), path, Options{})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { d.Close() })
	return d, path
}

func newRecord(n int) *record.Record {
	now := time.Date(2026, 11, 30, 8, 0, 0, 0, time.UTC)
	return &record.Record{
		ID: fmt.Sprintf("00000000-0000-4000-8000-%012d", n), Serial: fmt.Sprintf("4%039x", n),
		Profile: "web-server", CA: "ec-issuing", Identity: "client", RequestID: "req-x",
		CommonName: "a.example.internal", AltNames: []record.AltName{{Type: "dns_name", Value: "a.example.internal"}},
		KeyUsages: []string{"digital_signature"}, ExtKeyUsages: []string{"server_auth"},
		SignatureAlgorithm: "ECDSA-SHA256", KeyAlgorithm: "EC_prime256v1",
		NotBefore: now, NotAfter: now.Add(time.Hour), CreatedAt: now.Add(time.Duration(n) * time.Millisecond),
	}
}

func event(action string) record.AuditEvent {
	return record.AuditEvent{Time: time.Now().UTC(), Action: action, Identity: "client", Profile: "web-server", Outcome: action}
}

func TestReserveFinalizeList(t *testing.T) {
	ctx := context.Background()
	d, _ := openTemp(t)
	rec := newRecord(1)
	if err := d.Reserve(ctx, rec); err != nil {
		t.Fatalf("Reserve: %v", err)
	}
	if n, _ := d.CountPending(ctx); n != 1 {
		t.Fatalf("pending = %d, want 1", n)
	}
	if err := d.Finalize(ctx, rec.ID, []byte{0x30, 0x00}, event("issued")); err != nil {
		t.Fatalf("Finalize: %v", err)
	}
	// A second transition of the same record is refused.
	if err := d.Abort(ctx, rec.ID, nil, event("refused")); err == nil {
		t.Fatal("Abort after Finalize succeeded, want error")
	}
	var got []Summary
	if err := d.ListRecords(ctx, Filter{}, func(s Summary) error { got = append(got, s); return nil }); err != nil {
		t.Fatalf("ListRecords: %v", err)
	}
	if len(got) != 1 || got[0].Status != record.StatusIssued || got[0].SerialNumber != rec.Serial ||
		got[0].AltNames[0] != rec.AltNames[0] || !got[0].NotAfter.Equal(rec.NotAfter) || string(got[0].DER) != "\x30\x00" {
		t.Fatalf("ListRecords = %+v", got)
	}
	if n, err := d.VerifyAudit(ctx); err != nil || n != 1 {
		t.Fatalf("VerifyAudit = %d, %v; want 1 entry (the failed Abort must not leave one)", n, err)
	}
}

func TestDuplicateSerial(t *testing.T) {
	ctx := context.Background()
	d, _ := openTemp(t)
	if err := d.Reserve(ctx, newRecord(1)); err != nil {
		t.Fatal(err)
	}
	dup := newRecord(2)
	dup.Serial = newRecord(1).Serial
	if err := d.Reserve(ctx, dup); !errors.Is(err, record.ErrDuplicateSerial) {
		t.Fatalf("Reserve duplicate = %v, want ErrDuplicateSerial", err)
	}
}

// Concurrent writers share commits, a failing write in a group does not
// take the others down, and the audit chain stays intact.
func TestGroupCommitConcurrent(t *testing.T) {
	ctx := context.Background()
	d, path := openTemp(t)
	const n = 200
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for k := 0; k < n; k++ {
		wg.Add(1)
		go func(k int) {
			defer wg.Done()
			rec := newRecord(k)
			if err := d.Reserve(ctx, rec); err != nil {
				errs <- err
				return
			}
			if k%10 == 0 { // a bad transition inside a group
				if err := d.Finalize(ctx, "no-such-id", nil, event("issued")); err == nil {
					errs <- errors.New("finalize of unknown id succeeded")
				}
			}
			if err := d.Finalize(ctx, rec.ID, []byte{1}, event("issued")); err != nil {
				errs <- err
			}
		}(k)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	st := d.Stats()
	if st.Writes != 2*n+n/10 {
		t.Errorf("writes = %d, want %d", st.Writes, 2*n+n/10)
	}
	t.Logf("%d writes in %d commits (%.1f per commit)", st.Writes, st.Commits, float64(st.Writes)/float64(st.Commits))
	if cnt, err := d.VerifyAudit(ctx); err != nil || cnt != n {
		t.Fatalf("VerifyAudit = %d, %v; want %d", cnt, err, n)
	}
	// The chain head survives a reopen.
	d.Close()
	d2, err := Open(ctx, path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer d2.Close()
	if err := d2.Refuse(ctx, event("refused")); err != nil {
		t.Fatal(err)
	}
	if cnt, err := d2.VerifyAudit(ctx); err != nil || cnt != n+1 {
		t.Fatalf("VerifyAudit after reopen = %d, %v", cnt, err)
	}
}

func TestAuditAppendOnlyAndTamperEvident(t *testing.T) {
	ctx := context.Background()
	d, path := openTemp(t)
	for k := 0; k < 3; k++ {
		if err := d.Refuse(ctx, event("refused")); err != nil {
			t.Fatal(err)
		}
	}
	raw, err := sql.Open("sqlite", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	if _, err := raw.Exec(`UPDATE audit SET event = '{}' WHERE seq = 2`); err == nil {
		t.Fatal("UPDATE on audit succeeded, want the append-only trigger to refuse")
	}
	if _, err := raw.Exec(`DELETE FROM audit WHERE seq = 2`); err == nil {
		t.Fatal("DELETE on audit succeeded")
	}
	// Someone with raw file access drops the trigger and edits an entry.
	if _, err := raw.Exec(`DROP TRIGGER audit_no_update`); err != nil {
		t.Fatal(err)
	}
	if _, err := raw.Exec(`UPDATE audit SET event = replace(event, 'refused', 'issued') WHERE seq = 2`); err != nil {
		t.Fatal(err)
	}
	_, err = d.VerifyAudit(ctx)
	var p *AuditProblem
	if !errors.As(err, &p) || p.Seq != 2 {
		t.Fatalf("VerifyAudit = %v, want a problem at entry 2", err)
	}
}

func TestAbortPending(t *testing.T) {
	ctx := context.Background()
	d, _ := openTemp(t)
	for k := 1; k <= 3; k++ {
		if err := d.Reserve(ctx, newRecord(k)); err != nil {
			t.Fatal(err)
		}
	}
	if err := d.Finalize(ctx, newRecord(2).ID, []byte{1}, event("issued")); err != nil {
		t.Fatal(err)
	}
	got, err := d.AbortPending(ctx, "crash", time.Now())
	if err != nil || len(got) != 2 || got[0].ID != newRecord(1).ID || got[1].ID != newRecord(3).ID {
		t.Fatalf("AbortPending = %+v, %v", got, err)
	}
	if n, _ := d.CountPending(ctx); n != 0 {
		t.Errorf("%d still pending", n)
	}
	var statuses []string
	d.ListRecords(ctx, Filter{}, func(s Summary) error { statuses = append(statuses, s.Status); return nil })
	if strings.Join(statuses, ",") != "aborted,issued,aborted" {
		t.Errorf("statuses %v", statuses)
	}
	if n, err := d.VerifyAudit(ctx); err != nil || n != 3 {
		t.Errorf("audit: %d entries, %v; want the finalize and two recoveries", n, err)
	}
}

// BenchmarkIssueWrites is one certificate's writes (reserve, then finalize
// with its audit entry) from 32 concurrent issuers.
func BenchmarkIssueWrites(b *testing.B) {
	ctx := context.Background()
	d, err := Open(ctx, filepath.Join(b.TempDir(), "pkid.db"), Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer d.Close()
	var n atomic.Int64
	b.SetParallelism(16)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			rec := newRecord(int(n.Add(1)))
			if err := d.Reserve(ctx, rec); err != nil {
				b.Fatal(err)
			}
			if err := d.Finalize(ctx, rec.ID, []byte{1}, event("issued")); err != nil {
				b.Fatal(err)
			}
		}
	})
	st := d.Stats()
	b.ReportMetric(float64(st.Writes)/float64(st.Commits), "writes/commit")
}
