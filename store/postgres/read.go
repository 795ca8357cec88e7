package postgres

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pkid/pkid/record"
	"github.com/pkid/pkid/store"
	"github.com/pkid/pkid/store/internal/contract"
)

const certColumns = contract.CertificateColumns

func scanCertificate(row pgx.Row) (*record.Certificate, error) {
	return contract.ScanCertificate(row.Scan)
}

func (d *DB) certificateWhere(ctx context.Context, what, where, arg string) (*record.Certificate, error) {
	if err := d.closing(); err != nil {
		return nil, err
	}
	c, err := scanCertificate(d.pool.QueryRow(ctx, `SELECT `+certColumns+` FROM certificates WHERE `+where, arg))
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return nil, fmt.Errorf("certificate %s: %w", what, record.ErrNotFound)
	case err != nil:
		return nil, fmt.Errorf("reading certificate %s: %w", what, classify(err))
	}
	return c, nil
}

// Certificate returns the record with id.
func (d *DB) Certificate(ctx context.Context, id string) (*record.Certificate, error) {
	return d.certificateWhere(ctx, id, `id = $1`, id)
}

// CertificateBySerial returns the record with serial (lowercase hex;
// other spellings are lowered first).
func (d *DB) CertificateBySerial(ctx context.Context, serial string) (*record.Certificate, error) {
	serial = strings.ToLower(serial)
	return d.certificateWhere(ctx, "with serial "+serial, `serial = $1`, serial)
}

// CertificateByRequestID returns the record answered with
// certificateRequestID.
func (d *DB) CertificateByRequestID(ctx context.Context, certificateRequestID string) (*record.Certificate, error) {
	if certificateRequestID == "" {
		return nil, fmt.Errorf("certificate with no request id: %w", record.ErrNotFound)
	}
	return d.certificateWhere(ctx, "of request "+certificateRequestID, `certificate_request_id = $1`, certificateRequestID)
}

// each runs query on the pool and calls fn for each row scanned by scan,
// stopping at fn's first error.
func each[T any](ctx context.Context, d *DB, scan func(pgx.Row) (T, error), fn func(T) error, query string, args ...any) (err error) {
	rows, err := d.pool.Query(ctx, query, args...)
	if err != nil {
		return classify(err)
	}
	defer rows.Close()
	for rows.Next() {
		v, err := scan(rows)
		if err != nil {
			return classify(err)
		}
		if err := fn(v); err != nil {
			return callbackError{err}
		}
	}
	return classify(rows.Err())
}

// callbackError carries the caller's own error out of each unwrapped by
// a message, so that the caller gets back exactly what its callback said.
type callbackError struct{ err error }

func (e callbackError) Error() string { return e.err.Error() }

func unwrapCallback(err error, what string) error {
	var cb callbackError
	if errors.As(err, &cb) {
		return cb.err
	}
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	return nil
}

// ListCertificates calls fn for each record f selects, in creation order,
// then by id.
func (d *DB) ListCertificates(ctx context.Context, f store.Filter, fn func(*record.Certificate) error) error {
	if err := f.Validate(); err != nil {
		return fmt.Errorf("listing certificates: %w", err)
	}
	if err := d.closing(); err != nil {
		return err
	}
	var where []string
	var args []any
	for _, c := range []struct{ column, value string }{{"status", f.Status}, {"ca", f.CA}, {"profile", f.Profile}} {
		if c.value != "" {
			args = append(args, c.value)
			where = append(where, fmt.Sprintf("%s = $%d", c.column, len(args)))
		}
	}
	query := `SELECT ` + certColumns + ` FROM certificates`
	if len(where) > 0 {
		query += ` WHERE ` + strings.Join(where, ` AND `)
	}
	return unwrapCallback(each(ctx, d, scanCertificate, fn, query+` ORDER BY created_at, id`, args...), "listing certificates")
}

// Revoked calls fn for every revoked certificate of ca, by serial.
func (d *DB) Revoked(ctx context.Context, ca string, fn func(record.RevokedEntry) error) error {
	if err := d.closing(); err != nil {
		return err
	}
	scan := func(row pgx.Row) (record.RevokedEntry, error) {
		var e record.RevokedEntry
		var at, na string
		if err := row.Scan(&e.Serial, &at, &e.Reason, &na); err != nil {
			return e, err
		}
		var err1, err2 error
		e.RevokedAt, err1 = contract.ParseTime(at)
		e.NotAfter, err2 = contract.ParseTime(na)
		return e, errors.Join(err1, err2)
	}
	return unwrapCallback(each(ctx, d, scan, fn, `SELECT serial, revoked_at, revocation_reason, not_after
		FROM certificates WHERE status = 'revoked' AND ca = $1 ORDER BY serial`, ca), "listing revoked certificates of "+ca)
}

func (d *DB) count(ctx context.Context, what, query string, args ...any) (int64, error) {
	if err := d.closing(); err != nil {
		return 0, err
	}
	var n int64
	if err := d.pool.QueryRow(ctx, query, args...).Scan(&n); err != nil {
		return 0, fmt.Errorf("%s: %w", what, classify(err))
	}
	return n, nil
}

// RevocationCount counts the revoked certificates of ca.
func (d *DB) RevocationCount(ctx context.Context, ca string) (int64, error) {
	return d.count(ctx, "counting revocations of "+ca, `SELECT count(*) FROM certificates WHERE status = 'revoked' AND ca = $1`, ca)
}

// CountPending returns how many certificates and CRLs are still pending,
// whichever node reserved them.
func (d *DB) CountPending(ctx context.Context) (int, error) {
	n, err := d.count(ctx, "counting pending records", `SELECT (SELECT count(*) FROM certificates WHERE status = 'pending')
		+ (SELECT count(*) FROM crls WHERE status = 'pending')`)
	return int(n), err
}

// LatestCRL returns ca's issued CRL with the highest number.
func (d *DB) LatestCRL(ctx context.Context, ca string) (*record.CRL, error) {
	if err := d.closing(); err != nil {
		return nil, err
	}
	var c record.CRL
	var this, next, created string
	err := d.pool.QueryRow(ctx, `SELECT ca, number, this_update, next_update, tbs_hash, status, der, node, created_at
		FROM crls WHERE ca = $1 AND status = 'issued' ORDER BY number DESC LIMIT 1`, ca).
		Scan(&c.CA, &c.Number, &this, &next, &c.TBSHash, &c.Status, &c.DER, &c.Node, &created)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return nil, fmt.Errorf("latest CRL of %s: %w", ca, record.ErrNotFound)
	case err != nil:
		return nil, fmt.Errorf("reading the latest CRL of %s: %w", ca, classify(err))
	}
	var err1, err2, err3 error
	c.ThisUpdate, err1 = contract.ParseTime(this)
	c.NextUpdate, err2 = contract.ParseTime(next)
	c.CreatedAt, err3 = contract.ParseTime(created)
	if err := errors.Join(err1, err2, err3); err != nil {
		return nil, fmt.Errorf("CRL record %d of %s: %w", c.Number, c.CA, err)
	}
	return &c, nil
}

// LastCRLNumber returns the highest number ever reserved for ca; 0 if none.
func (d *DB) LastCRLNumber(ctx context.Context, ca string) (int64, error) {
	return d.count(ctx, "reading the last CRL number of "+ca, `SELECT coalesce(max(number), 0) FROM crls WHERE ca = $1`, ca)
}

// AuditHead returns the newest committed entry's sequence number and hash.
func (d *DB) AuditHead(ctx context.Context) (int64, string, error) {
	if err := d.closing(); err != nil {
		return 0, "", err
	}
	var seq int64
	var hash string
	if err := d.pool.QueryRow(ctx, `SELECT seq, hash FROM audit_head WHERE id = 1`).Scan(&seq, &hash); err != nil {
		return 0, "", fmt.Errorf("reading the audit chain head: %w", classify(err))
	}
	return seq, hash, nil
}

func scanCheckpoint(row pgx.Row) (record.Checkpoint, error) {
	var cp record.Checkpoint
	var at string
	if err := row.Scan(&cp.Seq, &cp.Hash, &at, &cp.KeyID, &cp.Signature); err != nil {
		return cp, err
	}
	var err error
	if cp.Time, err = contract.ParseTime(at); err != nil {
		return cp, fmt.Errorf("audit checkpoint %d: %w", cp.Seq, err)
	}
	return cp, nil
}

// LatestCheckpoint returns the checkpoint with the highest Seq.
func (d *DB) LatestCheckpoint(ctx context.Context) (*record.Checkpoint, error) {
	if err := d.closing(); err != nil {
		return nil, err
	}
	cp, err := scanCheckpoint(d.pool.QueryRow(ctx, `SELECT seq, hash, at, key_id, signature
		FROM audit_checkpoints ORDER BY seq DESC LIMIT 1`))
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return nil, fmt.Errorf("latest audit checkpoint: %w", record.ErrNotFound)
	case err != nil:
		return nil, fmt.Errorf("reading the latest audit checkpoint: %w", classify(err))
	}
	return &cp, nil
}

// OCSPResponse returns the stored answer for serial of ca.
func (d *DB) OCSPResponse(ctx context.Context, ca, serial string) (*record.OCSPResponse, error) {
	if err := d.closing(); err != nil {
		return nil, err
	}
	serial = strings.ToLower(serial)
	r := record.OCSPResponse{CA: ca, Serial: serial}
	var this, next string
	err := d.pool.QueryRow(ctx, `SELECT status, this_update, next_update, der FROM ocsp_responses
		WHERE ca = $1 AND serial = $2`, ca, serial).Scan(&r.Status, &this, &next, &r.DER)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return nil, fmt.Errorf("OCSP answer for %s %s: %w", ca, serial, record.ErrNotFound)
	case err != nil:
		return nil, fmt.Errorf("reading the OCSP answer for %s %s: %w", ca, serial, classify(err))
	}
	var err1, err2 error
	r.ThisUpdate, err1 = contract.ParseTime(this)
	r.NextUpdate, err2 = contract.ParseTime(next)
	if err := errors.Join(err1, err2); err != nil {
		return nil, fmt.Errorf("OCSP answer for %s %s: %w", ca, serial, err)
	}
	return &r, nil
}

// TokenRevoked reports whether jti was revoked (and not yet purged).
func (d *DB) TokenRevoked(ctx context.Context, jti string) (bool, error) {
	n, err := d.count(ctx, "looking up token "+jti, `SELECT count(*) FROM revoked_tokens WHERE jti = $1`, jti)
	return n > 0, err
}

// Check proves the server takes writes: an empty write goes through the
// writer, whose transaction takes a transaction id (which a standby, or a
// server that is down, cannot give). It returns by ctx's deadline even if
// the writer is stuck; the abandoned probe is skipped when its turn comes.
func (d *DB) Check(ctx context.Context) error {
	if err := d.closing(); err != nil {
		return err
	}
	if err := d.writes.SubmitBounded(ctx, false, func(context.Context, *group) error { return nil }); err != nil {
		if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
			err = classify(err)
		}
		return fmt.Errorf("database not writable: %w", err)
	}
	return nil
}

// lead is one held advisory lock and the session that holds it.
type lead struct {
	conn *pgxpool.Conn
	key  int64
	task string
}

// Lead takes the session-level advisory lock named task without waiting
// (pg_try_advisory_lock) on a connection it keeps until release, so the
// lock is the whole cluster's. A connection that breaks takes the lock
// with it (the server ends the session), which is why holders keep it for
// one round of work.
func (d *DB) Lead(ctx context.Context, task string) (func(), bool, error) {
	if err := d.closing(); err != nil {
		return nil, false, err
	}
	key := lockKey("lead", task)
	pc, err := d.pool.Acquire(ctx)
	if err != nil {
		return nil, false, fmt.Errorf("taking the lead of %s: %w", task, classify(err))
	}
	var ok bool
	if err := pc.QueryRow(ctx, `SELECT pg_try_advisory_lock($1)`, key).Scan(&ok); err != nil {
		pc.Release()
		return nil, false, fmt.Errorf("taking the lead of %s: %w", task, classify(err))
	}
	if !ok {
		pc.Release()
		return nil, false, nil
	}
	l := &lead{conn: pc, key: key, task: task}
	d.leadMu.Lock()
	d.leads[l] = struct{}{}
	d.leadMu.Unlock()
	var once sync.Once
	return func() { once.Do(func() { d.releaseLead(l) }) }, true, nil
}

// StillLeads asks, on the connection that holds task's lock, whether its
// session still holds it. A connection that cannot answer has lost it (a
// session lock lives exactly as long as its session): it is dropped, so
// the lock is free for another node if the server still had it.
func (d *DB) StillLeads(ctx context.Context, task string) (bool, error) {
	if err := d.closing(); err != nil {
		return false, err
	}
	d.leadMu.Lock()
	var l *lead
	for h := range d.leads {
		if h.task == task {
			l = h
		}
	}
	d.leadMu.Unlock()
	if l == nil {
		return false, nil
	}
	var held bool
	// A bigint advisory key shows in pg_locks as its high and low halves.
	hi, lo := int64(uint64(l.key)>>32), int64(uint32(uint64(l.key)))
	err := l.conn.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()
		AND granted AND objsubid = 1 AND classid::bigint = $1 AND objid::bigint = $2)`, hi, lo).Scan(&held)
	if err != nil && ctx.Err() != nil {
		return false, fmt.Errorf("checking the lead of %s: %w", task, classify(err))
	}
	if err != nil || !held {
		d.leadMu.Lock()
		delete(d.leads, l)
		d.leadMu.Unlock()
		l.conn.Hijack().Close(context.Background())
		return false, nil
	}
	return true, nil
}

// releaseLead unlocks l and returns its connection, unless Close already
// dropped it. A connection that cannot unlock is closed, which ends the
// session and so the lock.
func (d *DB) releaseLead(l *lead) {
	d.leadMu.Lock()
	_, held := d.leads[l]
	delete(d.leads, l)
	d.leadMu.Unlock()
	if !held {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var unlocked bool
	if err := l.conn.QueryRow(ctx, `SELECT pg_advisory_unlock($1)`, l.key).Scan(&unlocked); err != nil || !unlocked {
		l.conn.Hijack().Close(ctx)
		return
	}
	l.conn.Release()
}

// dropLeads ends the sessions of the leads still held (at Close).
func (d *DB) dropLeads() {
	d.leadMu.Lock()
	held := d.leads
	d.leads = map[*lead]struct{}{}
	d.leadMu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for l := range held {
		// Unlock first: a closed connection's lock is freed only once the
		// server notices, and another node asking at once would be refused.
		l.conn.Exec(ctx, `SELECT pg_advisory_unlock($1)`, l.key)
		l.conn.Hijack().Close(ctx)
	}
}

// cursor streams query's rows inside tx through a server-side cursor,
// fetching a batch at a time. Several cursors can then be read in turn on
// the one connection of one snapshot (a connection has one result set at
// a time, and VerifyAudit reads the log and the checkpoints side by side).
// It yields an error at most once, last.
func cursor[T any](ctx context.Context, tx pgx.Tx, name string, scan func(pgx.Row) (T, error), query string) iter.Seq2[T, error] {
	const batch = 1000
	return func(yield func(T, error) bool) {
		var zero T
		if _, err := tx.Exec(ctx, `DECLARE `+name+` NO SCROLL CURSOR FOR `+query); err != nil {
			yield(zero, classify(err))
			return
		}
		for {
			rows, err := tx.Query(ctx, fmt.Sprintf(`FETCH FORWARD %d FROM %s`, batch, name))
			if err != nil {
				yield(zero, classify(err))
				return
			}
			vs, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (T, error) { return scan(r) })
			if err != nil {
				yield(zero, classify(err))
				return
			}
			for _, v := range vs {
				if !yield(v, nil) {
					return
				}
			}
			if len(vs) < batch {
				return
			}
		}
	}
}

// VerifyAudit checks the audit log and its agreement with the records
// (see store.Store) in one read-only REPEATABLE READ transaction — one
// snapshot, which writers of every node neither block nor are blocked by.
func (d *DB) VerifyAudit(ctx context.Context, o store.VerifyOptions) (*store.AuditReport, error) {
	if err := d.closing(); err != nil {
		return nil, err
	}
	tx, err := d.pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return nil, fmt.Errorf("verifying audit log: %w", classify(err))
	}
	defer tx.Rollback(context.Background())
	var legacy int64
	if err := tx.QueryRow(ctx, `SELECT through_seq FROM audit_legacy`).Scan(&legacy); err != nil {
		return nil, fmt.Errorf("verifying audit log: reading the legacy boundary: %w", classify(err))
	}
	log := contract.Log{
		LegacyThrough: legacy,
		Entries: cursor(ctx, tx, "entries", func(r pgx.Row) (contract.Entry, error) {
			var e contract.Entry
			return e, r.Scan(&e.Seq, &e.PrevHash, &e.Hash, &e.Body)
		}, `SELECT seq, prev_hash, hash, event FROM audit ORDER BY seq`),
		Checkpoints: cursor(ctx, tx, "checkpoints", scanCheckpoint, `SELECT seq, hash, at, key_id, signature FROM audit_checkpoints ORDER BY seq`),
		Certificates: cursor(ctx, tx, "certificates", func(r pgx.Row) (contract.CertificateEvidence, error) {
			var c contract.CertificateEvidence
			return c, r.Scan(&c.ID, &c.Serial, &c.Status, &c.DER)
		}, `SELECT id, serial, status, der FROM certificates`),
		CRLs: cursor(ctx, tx, "crls", func(r pgx.Row) (contract.CRLEvidence, error) {
			var c contract.CRLEvidence
			return c, r.Scan(&c.CA, &c.Number, &c.Status, &c.DER)
		}, `SELECT ca, number, status, der FROM crls`),
	}
	return contract.Verify(ctx, o, log)
}
