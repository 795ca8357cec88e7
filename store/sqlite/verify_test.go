package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/pkid/pkid/record"
	"github.com/pkid/pkid/store"
	"github.com/pkid/pkid/store/internal/contract"
)

// fill writes n issued certificates and their entries straight into the
// file in one transaction: going through the writer would measure group
// commit, not verification.
func fill(b *testing.B, path string, n int) {
	b.Helper()
	raw, err := sql.Open("sqlite", "file:"+path+"?_pragma=journal_mode(WAL)")
	if err != nil {
		b.Fatal(err)
	}
	defer raw.Close()
	tx, err := raw.Begin()
	if err != nil {
		b.Fatal(err)
	}
	defer tx.Rollback()
	insCert, err := tx.Prepare(`INSERT INTO certificates (id, serial, profile_id, profile, ca, issuer_hash, identity, request_id,
		certificate_request_id, application_id, common_name, alt_names, key_usages, ext_key_usages, signature_algorithm,
		key_algorithm, not_before, not_after, tbs_hash, csr, csr_hash, renews, status, der, revoked_at, revocation_reason,
		created_at, updated_at) VALUES (?, ?, '', 'p', 'ca', '', 'i', 'r', ?, '', 'cn', '[]', '[]', '[]', 's', 'k',
		'', '', '', NULL, '', '', 'issued', ?, '', '', ?, ?)`)
	if err != nil {
		b.Fatal(err)
	}
	insAudit, err := tx.Prepare(`INSERT INTO audit (seq, at, event, prev_hash, hash) VALUES (?, '', ?, ?, ?)`)
	if err != nil {
		b.Fatal(err)
	}
	der := make([]byte, 1000) // about a real certificate's size
	prev := record.GenesisHash
	for k := 1; k <= n; k++ {
		c := newCert(k)
		der[0], der[1], der[2] = byte(k), byte(k>>8), byte(k>>16)
		if _, err := insCert.Exec(c.ID, c.Serial, c.CertificateRequestID, der, contract.TimeText(c.CreatedAt), contract.TimeText(c.CreatedAt)); err != nil {
			b.Fatal(err)
		}
		ev := issued(k)
		ev.CertificateID, ev.Serial, ev.DERHash = c.ID, c.Serial, contract.DERHash(der)
		body := record.EncodeEvent(ev)
		h := record.ChainHash(prev, int64(k), body)
		if _, err := insAudit.Exec(k, body, prev, h); err != nil {
			b.Fatal(err)
		}
		prev = h
	}
	if err := tx.Commit(); err != nil {
		b.Fatal(err)
	}
}

// BenchmarkVerifyAudit verifies logs of 10^4 and 10^5 issued
// certificates (each with its entry); heap-bytes/cert is the heap in use
// after a run, garbage included, per certificate — an upper bound on what
// the cross-check keeps.
func BenchmarkVerifyAudit(b *testing.B) {
	for _, n := range []int{10_000, 100_000} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			ctx := context.Background()
			path := filepath.Join(b.TempDir(), "pkid.db")
			d, err := Open(ctx, path, Options{})
			if err != nil {
				b.Fatal(err)
			}
			defer d.Close(ctx)
			fill(b, path, n)
			b.ResetTimer()
			var peak uint64
			for range b.N {
				rep, err := d.VerifyAudit(ctx, store.VerifyOptions{})
				if err != nil || rep.Entries != int64(n) || rep.Certificates != int64(n) {
					b.Fatalf("VerifyAudit = %+v, %v", rep, err)
				}
				var ms runtime.MemStats
				runtime.ReadMemStats(&ms)
				peak = max(peak, ms.HeapInuse)
			}
			b.ReportMetric(float64(peak)/float64(n), "heap-bytes/cert")
		})
	}
}
