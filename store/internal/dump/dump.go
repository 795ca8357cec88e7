// Package dump is the form in which one backend hands its whole content
// to another (store/migrate): every row, as stored, streamed from one
// consistent snapshot. Audit entries travel verbatim — sequence number,
// body and hashes — because a chain re-encoded would no longer match its
// signed checkpoints.
package dump

import (
	"errors"
	"iter"
	"time"

	"github.com/pkid/pkid/record"
)

// Entry is one audit entry exactly as stored.
type Entry struct {
	Seq            int64
	At             string // the entry's time column, as the source wrote it
	Body           string
	PrevHash, Hash string
}

// CRL is a CRL record with the column record.CRL does not carry.
type CRL struct {
	record.CRL
	UpdatedAt time.Time
}

// Token is one revoked access token.
type Token struct {
	JTI       string
	ExpiresAt time.Time
}

// Snapshot is a backend's content. Each sequence yields a non-nil error at
// most once, last; certificates come in creation order, CRLs by CA and
// number, entries and checkpoints by sequence number.
type Snapshot struct {
	// LegacyThrough is the source's legacy-entry boundary (entries from
	// before issued entries carried derSha256).
	LegacyThrough int64
	Certificates  iter.Seq2[*record.Certificate, error]
	CRLs          iter.Seq2[CRL, error]
	Entries       iter.Seq2[Entry, error]
	Checkpoints   iter.Seq2[record.Checkpoint, error]
	OCSP          iter.Seq2[record.OCSPResponse, error]
	Tokens        iter.Seq2[Token, error]
	// ACME are the ACME server's tables, which both backends lay out
	// alike, row by row as the source's driver reads them.
	ACME []Rows
}

// Rows are the rows of one table, in its columns' order.
type Rows struct {
	Table   string
	Columns []string
	Rows    iter.Seq2[[]any, error]
}

// Counts says how many rows of each kind were copied, and where the
// chain's head is.
type Counts struct {
	Certificates, CRLs, Entries, Checkpoints, OCSPResponses, Tokens int64
	ACMERows                                                        int64
	LegacyThrough                                                   int64
	HeadSeq                                                         int64
	HeadHash                                                        string
}

// ErrNotEmpty: the target of an import already holds data.
var ErrNotEmpty = errors.New("the target store is not empty")
