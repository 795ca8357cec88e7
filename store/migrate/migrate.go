// Package migrate moves a pkid store from SQLite to PostgreSQL (DESIGN
// §16: one node outgrown): every certificate and CRL record, the audit log
// entry for entry — sequence numbers, bodies and hashes verbatim, so the
// chain and its signed checkpoints still verify — the checkpoints, the
// OCSP answers and the revoked tokens, into an empty PostgreSQL database,
// in one transaction there. `pkid store migrate` runs Copy, then
// VerifyAudit on the target with the audit key.
package migrate

import (
	"context"
	"fmt"

	"github.com/pkid/pkid/store/internal/dump"
	"github.com/pkid/pkid/store/postgres"
	"github.com/pkid/pkid/store/sqlite"
)

// ErrTargetNotEmpty: the PostgreSQL database already holds pkid data;
// Copy never merges two stores (two chains cannot become one).
var ErrTargetNotEmpty = dump.ErrNotEmpty

// Report says what Copy copied.
type Report struct {
	Certificates  int64
	CRLs          int64
	AuditEntries  int64
	Checkpoints   int64
	OCSPResponses int64
	RevokedTokens int64
	ACMERows      int64 // EAB keys, accounts, orders, authorizations and challenges
	// LegacyEntries are the first entries of a log written before issued
	// entries carried derSha256 (SQLite schema version 1); the boundary is
	// copied so the target's VerifyAudit accepts them as the source's did.
	LegacyEntries int64
	// HeadSeq and HeadHash are the copied chain's head: compare them with
	// the source's AuditHead, and with the last checkpoint in the logs.
	HeadSeq  int64
	HeadHash string
}

// Copy copies the content of from into to, which must be empty (an error
// wrapping ErrTargetNotEmpty otherwise), reading from one snapshot of from
// and writing in one transaction of to: either all of it is copied or
// nothing. The source should not be in use (stop the daemon first):
// writes made after the snapshot are not copied.
func Copy(ctx context.Context, from *sqlite.DB, to *postgres.DB) (Report, error) {
	var rep Report
	err := from.Export(ctx, func(s dump.Snapshot) error {
		n, err := to.Import(ctx, s)
		rep = Report{Certificates: n.Certificates, CRLs: n.CRLs, AuditEntries: n.Entries, Checkpoints: n.Checkpoints,
			OCSPResponses: n.OCSPResponses, RevokedTokens: n.Tokens, ACMERows: n.ACMERows, LegacyEntries: n.LegacyThrough,
			HeadSeq: n.HeadSeq, HeadHash: n.HeadHash}
		return err
	})
	if err != nil {
		return Report{}, fmt.Errorf("copying the SQLite store into PostgreSQL: %w", err)
	}
	return rep, nil
}
