package store

import (
	"context"
	"crypto"
	"fmt"
	"time"

	"github.com/pkid/pkid/record"
)

// Store is the contract every backend implements. Every write is durable
// before it returns success; see the package comment for what happens when
// a context ends.
type Store interface {
	// Reserve inserts c with status pending (its Status, DER and
	// revocation fields are ignored). A taken serial is ErrDuplicateSerial
	// (wrapped).
	Reserve(ctx context.Context, c *record.Certificate) error
	// Finalize turns pending into issued with der and appends ev (action
	// issued), in one transaction.
	Finalize(ctx context.Context, id string, der []byte, ev record.AuditEvent) error
	// Abort turns pending into aborted (der kept if non-nil, for forensics)
	// and appends ev, in one transaction.
	Abort(ctx context.Context, id string, der []byte, ev record.AuditEvent) error
	// Refuse appends ev only (a refused request, or a summary of refusals).
	Refuse(ctx context.Context, ev record.AuditEvent) error
	// Revoke turns issued into revoked (at, reason) and appends ev (action
	// revoked), in one transaction. ErrNotFound; ErrAlreadyRevoked when
	// revoked; ErrNotRevocable when pending or aborted.
	Revoke(ctx context.Context, id string, at time.Time, reason string, ev record.AuditEvent) error

	// Certificate returns the record with id, or ErrNotFound.
	Certificate(ctx context.Context, id string) (*record.Certificate, error)
	// CertificateBySerial returns the record with serial (lowercase hex),
	// or ErrNotFound.
	CertificateBySerial(ctx context.Context, serial string) (*record.Certificate, error)
	// CertificateByRequestID returns the record answered with
	// certificateRequestId, or ErrNotFound.
	CertificateByRequestID(ctx context.Context, certificateRequestID string) (*record.Certificate, error)
	// ListCertificates calls fn for each record f selects, in creation
	// order, then by id; an error from fn stops the listing and is returned.
	ListCertificates(ctx context.Context, f Filter, fn func(*record.Certificate) error) error
	// Revoked calls fn for every revoked certificate of ca (expired ones
	// too), by serial.
	Revoked(ctx context.Context, ca string, fn func(record.RevokedEntry) error) error
	// RevocationCount counts the revoked certificates of ca (so that a
	// CRL maker sees revocations other processes made).
	RevocationCount(ctx context.Context, ca string) (int64, error)
	// CountPending counts pending certificates and CRLs.
	CountPending(ctx context.Context) (int, error)
	// AbortPending resolves the pending certificates (to aborted, with an
	// audit entry of action recovered) and pending CRLs (to aborted; the
	// number stays used) that node reserved, and those of every other node
	// whose heartbeat is older than at − staleAfter or that never sent one
	// (records made before nodes had names belong to node ""); the rows of
	// nodes that are alive are left alone (DESIGN §16). A node calls it at
	// start-up, before it reserves anything, with its own name: its own
	// pending rows then belong to a run that stopped between reservation
	// and finalization. With one node (SQLite) that is every pending row,
	// as before nodes had names.
	AbortPending(ctx context.Context, node string, staleAfter time.Duration, reason string, at time.Time) ([]Recovered, error)
	// AbortAbandoned resolves, as AbortPending does, the pending rows of
	// every node other than node whose heartbeat is older than
	// at − staleAfter or that never sent one, and leaves node's own rows
	// alone: node is running and may be signing them. A running node
	// calls it on its heartbeat schedule, so that a node that stopped for
	// good leaves no rows pending until some node starts (DESIGN §16).
	// With nothing to resolve it writes nothing.
	AbortAbandoned(ctx context.Context, node string, staleAfter time.Duration, reason string, at time.Time) ([]Recovered, error)
	// Heartbeat records that node is alive at at (a heartbeat never moves
	// back). A node sends one before it first reserves, and then well
	// within the staleAfter the others pass to AbortPending, or its
	// pending rows look abandoned.
	Heartbeat(ctx context.Context, node string, at time.Time) error
	// Lead takes, without waiting, the cluster-wide lock named task (one
	// node at a time makes a CA's CRL and OCSP answers, DESIGN §16). ok is
	// false when another holder has it. release gives it back and is safe
	// to call more than once. A lock that is lost with its database
	// connection is not reported by Lead itself: a holder that keeps it
	// for longer than one round of work asks StillLeads before each round.
	Lead(ctx context.Context, task string) (release func(), ok bool, err error)
	// StillLeads reports whether this store still holds the lock named
	// task that an earlier Lead took: false if it was released, or lost
	// with its database connection (a restarted server, a dropped link),
	// in which case it is given up here too and another node may take it.
	StillLeads(ctx context.Context, task string) (bool, error)

	// PutOCSPResponses stores pre-signed OCSP answers, replacing the
	// stored answer for each (CA, serial), in one durable transaction. An
	// answer never replaces one with a later thisUpdate, nor a revoked
	// answer one that says good, so a node that lost the lead cannot
	// overwrite a fresher answer. Not audited: the signature is the
	// responder key's, and what it says follows from audited records.
	PutOCSPResponses(ctx context.Context, rs []record.OCSPResponse) error
	// OCSPResponse returns the stored answer for serial of ca, or
	// ErrNotFound.
	OCSPResponse(ctx context.Context, ca, serial string) (*record.OCSPResponse, error)

	// RevokeToken durably records that the access token jti is revoked
	// until expiresAt (DESIGN §15); revoking it again is not an error.
	// Tokens past their expiry may be purged: they are refused anyway.
	RevokeToken(ctx context.Context, jti string, expiresAt time.Time) error
	// TokenRevoked reports whether jti was revoked.
	TokenRevoked(ctx context.Context, jti string) (bool, error)

	// ReserveCRL inserts (c.CA, c.Number) pending with its TBS hash;
	// ErrCRLNumberUsed unless c.Number is greater than every number ever
	// reserved for c.CA, whatever became of it.
	ReserveCRL(ctx context.Context, c *record.CRL) error
	// FinalizeCRL turns a pending CRL into issued with der and appends ev
	// (action crl), in one transaction.
	FinalizeCRL(ctx context.Context, ca string, number int64, der []byte, ev record.AuditEvent) error
	// AbortCRL turns a pending CRL into aborted and appends ev, in one
	// transaction. The number stays used.
	AbortCRL(ctx context.Context, ca string, number int64, ev record.AuditEvent) error
	// LatestCRL returns ca's issued CRL with the highest number, or
	// ErrNotFound.
	LatestCRL(ctx context.Context, ca string) (*record.CRL, error)
	// LastCRLNumber returns the highest number ever reserved for ca, in any
	// status; 0 if none.
	LastCRLNumber(ctx context.Context, ca string) (int64, error)

	// AuditHead returns the newest durable entry's sequence number and
	// hash; 0 and record.GenesisHash for an empty log.
	AuditHead(ctx context.Context) (seq int64, hash string, err error)
	// AddCheckpoint stores cp; ErrInvalidCheckpoint unless entry cp.Seq
	// exists with hash cp.Hash and cp.Seq is beyond the latest checkpoint.
	// The signature is not checked here (the store has no key); VerifyAudit
	// checks it.
	AddCheckpoint(ctx context.Context, cp record.Checkpoint) error
	// LatestCheckpoint returns the checkpoint with the highest Seq, or
	// ErrNotFound.
	LatestCheckpoint(ctx context.Context) (*record.Checkpoint, error)
	// VerifyAudit checks the log and its agreement with the records. It
	// returns the report and, for the first problem found, an
	// *AuditProblem; other errors mean the check could not run.
	VerifyAudit(ctx context.Context, o VerifyOptions) (*AuditReport, error)

	// ACME holds the ACME server's state (DESIGN §17).
	ACME

	// Check reports whether the store is writable and not full. It returns
	// by ctx's deadline even if the writer is stuck.
	Check(ctx context.Context) error
	// Close finishes the writes already submitted and releases the
	// database. If that takes longer than ctx allows it returns ctx.Err(),
	// leaving the writer to finish (and release) on its own; a later Close
	// waits again.
	Close(ctx context.Context) error
}

// Filter selects certificate records; the zero value selects all. Status
// is one of record's statuses (an unknown one is an error), CA a CA name,
// Profile a profile name.
type Filter struct {
	Status, CA, Profile string
}

// Validate reports an unknown status.
func (f Filter) Validate() error {
	switch f.Status {
	case "", record.StatusPending, record.StatusIssued, record.StatusAborted, record.StatusRevoked:
		return nil
	}
	return fmt.Errorf("unknown certificate status %q", f.Status)
}

// VerifyOptions tune VerifyAudit.
type VerifyOptions struct {
	// Key is the audit public key (ECDSA P-256 with SHA-256, P-384 with
	// SHA-384, or RSA PKCS #1 v1.5 with SHA-256). Nil: signatures are not
	// checked, and the report says so.
	Key crypto.PublicKey
	// Anchor, from the logs or an external system (`--checkpoint
	// SEQ:HASH`), is an entry the chain must still contain.
	Anchor *Anchor
}

// Anchor names one audit entry by its sequence number and hash.
type Anchor struct {
	Seq  int64
	Hash string
}

// AuditReport counts what VerifyAudit checked.
type AuditReport struct {
	Entries             int64 // audit entries whose link and hash were checked
	Checkpoints         int   // checkpoints checked
	LastCheckpoint      int64 // Seq of the newest checkpoint; 0 if none
	AfterLastCheckpoint int64 // entries beyond it, which no signature covers yet
	SignaturesChecked   bool  // false when VerifyOptions.Key was nil
	// LegacyEntries are the first entries of a log written before issued
	// entries carried derSha256 (a database from schema version 1): their
	// certificates' DER cannot be cross-checked.
	LegacyEntries int64
	Certificates  int64 // certificate records cross-checked against the log
	CRLs          int64 // CRL records cross-checked against the log
}

// AuditProblem is the first place where the log is not what was written.
// Seq is 0 when the problem is a record the log does not account for.
type AuditProblem struct {
	Seq    int64
	Reason string
}

func (p *AuditProblem) Error() string {
	if p.Seq == 0 {
		return "audit log: " + p.Reason
	}
	return fmt.Sprintf("audit entry %d: %s", p.Seq, p.Reason)
}

// Recovered is a pending reservation AbortPending resolved: a certificate
// (ID set) or a CRL (CRLNumber set). TBSHash says what the token may have
// signed before the run stopped (DESIGN §5).
type Recovered struct {
	ID, Serial, Profile, Identity, RequestID string // a certificate; empty for a CRL
	CA                                       string
	Node                                     string // the node that reserved it
	CRLNumber                                int64  // a CRL; 0 for a certificate
	TBSHash                                  string
}
