package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"syscall"
	"time"

	"github.com/pkid/pkid/record"
)

// Summary is a record as `pkid records list` prints it.
type Summary struct {
	CertificateID      string           `json:"certificateId"`
	SerialNumber       string           `json:"serialNumber"`
	Profile            string           `json:"profile"`
	CA                 string           `json:"ca"`
	Identity           string           `json:"identity"`
	RequestID          string           `json:"reqId"`
	CommonName         string           `json:"commonName"`
	AltNames           []record.AltName `json:"altNames"`
	KeyUsages          []string         `json:"keyUsages"`
	ExtKeyUsages       []string         `json:"extendedKeyUsages"`
	SignatureAlgorithm string           `json:"signatureAlgorithm"`
	KeyAlgorithm       string           `json:"keyAlgorithm"`
	NotBefore          time.Time        `json:"notBefore"`
	NotAfter           time.Time        `json:"notAfter"`
	Status             string           `json:"status"`
	CreatedAt          time.Time        `json:"createdAt"`
	DER                []byte           `json:"-"`
}

// Filter selects records; the zero value selects all.
type Filter struct {
	Status string
}

// ListRecords calls fn for each record in creation order.
func (d *DB) ListRecords(ctx context.Context, f Filter, fn func(Summary) error) error {
	query := `SELECT id, serial, profile, ca, identity, request_id, common_name, alt_names, key_usages,
		ext_key_usages, signature_algorithm, key_algorithm, not_before, not_after, status, der, created_at
		FROM certificates`
	var args []any
	if f.Status != "" {
		query += ` WHERE status = ?`
		args = append(args, f.Status)
	}
	rows, err := d.db.QueryContext(ctx, query+` ORDER BY created_at, id`, args...)
	if err != nil {
		return fmt.Errorf("listing records: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var s Summary
		var alt, ku, eku, nb, na, created string
		if err := rows.Scan(&s.CertificateID, &s.SerialNumber, &s.Profile, &s.CA, &s.Identity, &s.RequestID,
			&s.CommonName, &alt, &ku, &eku, &s.SignatureAlgorithm, &s.KeyAlgorithm, &nb, &na, &s.Status,
			&s.DER, &created); err != nil {
			return fmt.Errorf("reading record: %w", err)
		}
		if err := decodeRow(&s, alt, ku, eku, nb, na, created); err != nil {
			return fmt.Errorf("record %s: %w", s.CertificateID, err)
		}
		if err := fn(s); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("listing records: %w", err)
	}
	return nil
}

func decodeRow(s *Summary, alt, ku, eku, nb, na, created string) error {
	for _, f := range []struct {
		text string
		into any
	}{{alt, &s.AltNames}, {ku, &s.KeyUsages}, {eku, &s.ExtKeyUsages}} {
		if err := json.Unmarshal([]byte(f.text), f.into); err != nil {
			return fmt.Errorf("decoding column: %w", err)
		}
	}
	for _, f := range []struct {
		text string
		into *time.Time
	}{{nb, &s.NotBefore}, {na, &s.NotAfter}, {created, &s.CreatedAt}} {
		t, err := time.Parse(time.RFC3339Nano, f.text)
		if err != nil {
			return fmt.Errorf("decoding time: %w", err)
		}
		*f.into = t
	}
	return nil
}

// CountPending returns how many records are still pending.
func (d *DB) CountPending(ctx context.Context) (int, error) {
	var n int
	if err := d.db.QueryRowContext(ctx, `SELECT count(*) FROM certificates WHERE status = 'pending'`).Scan(&n); err != nil {
		return 0, fmt.Errorf("counting pending records: %w", err)
	}
	return n, nil
}

// AuditProblem describes the first entry where the chain breaks.
type AuditProblem struct {
	Seq    int64
	Reason string
}

func (p *AuditProblem) Error() string { return fmt.Sprintf("audit entry %d: %s", p.Seq, p.Reason) }

// VerifyAudit walks the audit chain from the first entry and returns the
// number of entries checked, or an *AuditProblem naming the first entry
// that was altered, removed or reordered.
func (d *DB) VerifyAudit(ctx context.Context) (int64, error) {
	rows, err := d.db.QueryContext(ctx, `SELECT seq, event, prev_hash, hash FROM audit ORDER BY seq`)
	if err != nil {
		return 0, fmt.Errorf("reading audit log: %w", err)
	}
	defer rows.Close()
	prev, want := genesisHash, int64(1)
	for rows.Next() {
		var seq int64
		var body, prevHash, hash string
		if err := rows.Scan(&seq, &body, &prevHash, &hash); err != nil {
			return want - 1, fmt.Errorf("reading audit entry: %w", err)
		}
		switch {
		case seq != want:
			return want - 1, &AuditProblem{Seq: want, Reason: fmt.Sprintf("missing (next entry is %d)", seq)}
		case prevHash != prev:
			return want - 1, &AuditProblem{Seq: seq, Reason: "previous-hash link does not match"}
		case chainHash(prev, seq, body) != hash:
			return want - 1, &AuditProblem{Seq: seq, Reason: "content does not match its hash"}
		}
		prev = hash
		want++
	}
	if err := rows.Err(); err != nil {
		return want - 1, fmt.Errorf("reading audit log: %w", err)
	}
	return want - 1, nil
}

// minFreeBytes is the free space below which the database is reported
// not writable: a commit needs room for its WAL frames.
const minFreeBytes = 1 << 20

// Check proves the database is writable: its volume has room, and an empty write goes through the
// writer and its transaction, which takes SQLite's write lock.
func (d *DB) Check(ctx context.Context) error {
	if free, err := freeBytes(d.dir); err == nil && free < minFreeBytes {
		return fmt.Errorf("database volume is full: %d bytes free", free)
	}
	err := d.submit(ctx, func(ctx context.Context, c *sql.Conn, _ *DB) error {
		_, err := c.ExecContext(ctx, `UPDATE certificates SET status = status WHERE 0`)
		return err
	})
	if err != nil {
		return fmt.Errorf("database not writable: %w", err)
	}
	return nil
}

func freeBytes(dir string) (uint64, error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return 0, err
	}
	return st.Bavail * uint64(st.Bsize), nil
}
