package contract

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"iter"
	"strings"

	"github.com/pkid/pkid/record"
	"github.com/pkid/pkid/store"
)

// Entry is one stored audit entry.
type Entry struct {
	Seq            int64
	PrevHash, Hash string
	Body           string
}

// CertificateEvidence is what the verifier needs of a certificate record.
type CertificateEvidence struct {
	ID, Serial, Status string
	DER                []byte
}

// CRLEvidence is what the verifier needs of a CRL record.
type CRLEvidence struct {
	CA     string
	Number int64
	Status string
	DER    []byte
}

// Log is a backend's audit log and records, read from one consistent
// snapshot (otherwise a write between the passes would look like a
// problem). Each sequence yields a non-nil error at most once, last.
type Log struct {
	// LegacyThrough is the last entry written before issued entries
	// carried derSha256 (a database migrated from schema version 1); 0
	// when every entry is recent.
	LegacyThrough int64
	Entries       iter.Seq2[Entry, error]               // by seq
	Checkpoints   iter.Seq2[record.Checkpoint, error]   // by seq
	Certificates  iter.Seq2[CertificateEvidence, error] // any order
	CRLs          iter.Seq2[CRLEvidence, error]         // any order
}

// certState is what the log says about one certificate. The map holding
// it is keyed by a 128-bit fingerprint of the id rather than the id, which
// keeps a million certificates to about a hundred megabytes.
type certState struct {
	firstSeq, issuedSeq, revokedSeq int64
	der                             [sha256.Size]byte
	legacy                          bool // issued before derSha256 was recorded
	seen                            bool // a record exists
}

type crlKey struct {
	ca     string
	number int64
}

type crlState struct {
	seq  int64
	der  [sha256.Size]byte
	seen bool
}

// evidence is the part of an event body the cross-checks read. Decoding
// only these fields keeps a body the verifier need not understand (a time
// time.Time cannot parse) from failing verification.
type evidence struct {
	Action        string `json:"action"`
	CertificateID string `json:"certificateId"`
	DERHash       string `json:"derSha256"`
	CA            string `json:"ca"`
	CRLNumber     int64  `json:"crlNumber"`
}

func fingerprint(id string) [16]byte {
	sum := sha256.Sum256([]byte(id))
	return [16]byte(sum[:16])
}

func problem(seq int64, format string, args ...any) error {
	return &store.AuditProblem{Seq: seq, Reason: fmt.Sprintf(format, args...)}
}

// Verify checks l as store.Store.VerifyAudit documents: in one pass over
// the entries (merged with the checkpoints) every link, hash and sequence
// number, every checkpoint and the anchor; then, in one pass over the
// records, that each record and the log account for each other. It stops
// at the first problem and returns the report so far with it.
func Verify(ctx context.Context, o store.VerifyOptions, l Log) (*store.AuditReport, error) {
	rep := &store.AuditReport{SignaturesChecked: o.Key != nil}
	var keyID string
	if o.Key != nil {
		if _, err := record.CheckpointHash(o.Key); err != nil {
			return rep, err
		}
		var err error
		if keyID, err = record.AuditKeyID(o.Key); err != nil {
			return rep, err
		}
	}
	if o.Anchor != nil && o.Anchor.Seq < 1 {
		return rep, fmt.Errorf("anchor sequence number %d: entries start at 1", o.Anchor.Seq)
	}

	nextCP, stop := iter.Pull2(l.Checkpoints)
	defer stop()
	cp, cpErr, cpOK := nextCP()

	certs := make(map[[16]byte]certState)
	crls := make(map[crlKey]crlState)
	prev, want := record.GenesisHash, int64(1)
	for e, err := range l.Entries {
		if err != nil {
			return rep, fmt.Errorf("reading audit log: %w", err)
		}
		if err := ctx.Err(); err != nil {
			return rep, err
		}
		switch {
		case e.Seq != want:
			return rep, problem(want, "missing (the next entry is %d)", e.Seq)
		case e.PrevHash != prev:
			return rep, problem(e.Seq, "previous-hash link does not match")
		case record.ChainHash(prev, e.Seq, e.Body) != e.Hash:
			return rep, problem(e.Seq, "content does not match its hash")
		}
		for ; cpOK && cp.Seq <= e.Seq; cp, cpErr, cpOK = nextCP() {
			if cpErr != nil {
				return rep, fmt.Errorf("reading audit checkpoints: %w", cpErr)
			}
			if cp.Seq != e.Seq {
				return rep, problem(cp.Seq, "a checkpoint names this entry, which is not in the log")
			}
			if cp.Hash != e.Hash {
				return rep, problem(e.Seq, "hash does not match its checkpoint (the chain was rewritten)")
			}
			if o.Key != nil {
				if cp.KeyID != keyID {
					return rep, problem(cp.Seq, "checkpoint is signed by key %s, not by the audit key %s", cp.KeyID, keyID)
				}
				if err := record.VerifyCheckpoint(o.Key, cp); err != nil {
					return rep, problem(cp.Seq, "checkpoint signature does not verify")
				}
			}
			rep.Checkpoints++
			rep.LastCheckpoint = cp.Seq
		}
		if o.Anchor != nil && o.Anchor.Seq == e.Seq && !strings.EqualFold(o.Anchor.Hash, e.Hash) {
			return rep, problem(e.Seq, "hash %s does not match the anchor's %s", e.Hash, o.Anchor.Hash)
		}
		if err := account(certs, crls, e, l.LegacyThrough); err != nil {
			return rep, err
		}
		rep.Entries++
		prev = e.Hash
		want++
	}
	last := want - 1
	if cpOK {
		if cpErr != nil {
			return rep, fmt.Errorf("reading audit checkpoints: %w", cpErr)
		}
		// Entries a signed checkpoint covers are gone from the tail.
		return rep, problem(last+1, "missing: the log ends at entry %d, but a checkpoint covers up to entry %d (truncated)", last, cp.Seq)
	}
	if o.Anchor != nil && o.Anchor.Seq > last {
		return rep, problem(o.Anchor.Seq, "missing: the log ends at entry %d, before the anchor", last)
	}
	rep.AfterLastCheckpoint = last - rep.LastCheckpoint
	rep.LegacyEntries = min(l.LegacyThrough, last)

	if err := checkCertificates(ctx, rep, certs, l.Certificates); err != nil {
		return rep, err
	}
	return rep, checkCRLs(ctx, rep, crls, l.CRLs)
}

// account notes what entry e says about certificates and CRLs.
func account(certs map[[16]byte]certState, crls map[crlKey]crlState, e Entry, legacyThrough int64) error {
	var ev evidence
	if err := json.Unmarshal([]byte(e.Body), &ev); err != nil {
		return problem(e.Seq, "content is not an audit event")
	}
	var der [sha256.Size]byte
	hasDER := false
	if ev.DERHash != "" {
		b, err := hex.DecodeString(ev.DERHash)
		if err != nil || len(b) != sha256.Size {
			return problem(e.Seq, "derSha256 %q is not a hex SHA-256", ev.DERHash)
		}
		der, hasDER = [sha256.Size]byte(b), true
	}
	if ev.Action == record.ActionCRL {
		if ev.CA == "" || ev.CRLNumber == 0 {
			return problem(e.Seq, "crl entry names no CA and number")
		}
		if !hasDER {
			return problem(e.Seq, "crl entry has no derSha256")
		}
		k := crlKey{ev.CA, ev.CRLNumber}
		if st, dup := crls[k]; dup {
			return problem(e.Seq, "second crl entry for CRL %d of %s (first: entry %d)", k.number, k.ca, st.seq)
		}
		crls[k] = crlState{seq: e.Seq, der: der}
	}
	if ev.CertificateID == "" {
		return nil
	}
	k := fingerprint(ev.CertificateID)
	st, ok := certs[k]
	if !ok {
		st.firstSeq = e.Seq
	}
	switch ev.Action {
	case record.ActionIssued:
		if st.issuedSeq != 0 {
			return problem(e.Seq, "second issued entry for certificate %s (first: entry %d)", ev.CertificateID, st.issuedSeq)
		}
		st.issuedSeq = e.Seq
		switch {
		case hasDER:
			st.der = der
		case e.Seq <= legacyThrough:
			st.legacy = true
		default:
			return problem(e.Seq, "issued entry has no derSha256")
		}
	case record.ActionRevoked:
		if st.revokedSeq != 0 {
			return problem(e.Seq, "second revoked entry for certificate %s (first: entry %d)", ev.CertificateID, st.revokedSeq)
		}
		st.revokedSeq = e.Seq
	}
	certs[k] = st
	return nil
}

func checkCertificates(ctx context.Context, rep *store.AuditReport, certs map[[16]byte]certState, records iter.Seq2[CertificateEvidence, error]) error {
	for c, err := range records {
		if err != nil {
			return fmt.Errorf("reading certificate records: %w", err)
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		k := fingerprint(c.ID)
		st := certs[k]
		switch c.Status {
		case record.StatusIssued, record.StatusRevoked:
			if st.issuedSeq == 0 {
				return problem(0, "certificate %s (serial %s) is %s, but no issued entry names it", c.ID, c.Serial, c.Status)
			}
			if !st.legacy && sha256.Sum256(c.DER) != st.der {
				return problem(st.issuedSeq, "derSha256 does not match the DER of certificate %s", c.ID)
			}
			if c.Status == record.StatusRevoked && st.revokedSeq == 0 {
				return problem(0, "certificate %s (serial %s) is revoked, but no revoked entry names it", c.ID, c.Serial)
			}
			if c.Status == record.StatusIssued && st.revokedSeq != 0 {
				return problem(st.revokedSeq, "revoked entry for certificate %s, whose record is issued", c.ID)
			}
		default:
			if st.issuedSeq != 0 {
				return problem(st.issuedSeq, "issued entry for certificate %s, whose record is %s", c.ID, c.Status)
			}
			if st.revokedSeq != 0 {
				return problem(st.revokedSeq, "revoked entry for certificate %s, whose record is %s", c.ID, c.Status)
			}
		}
		if st.firstSeq != 0 {
			st.seen = true
			certs[k] = st
		}
		rep.Certificates++
	}
	var orphan int64
	for _, st := range certs {
		if !st.seen && (orphan == 0 || st.firstSeq < orphan) {
			orphan = st.firstSeq
		}
	}
	if orphan != 0 {
		return problem(orphan, "names a certificate that has no record")
	}
	return nil
}

func checkCRLs(ctx context.Context, rep *store.AuditReport, crls map[crlKey]crlState, records iter.Seq2[CRLEvidence, error]) error {
	for c, err := range records {
		if err != nil {
			return fmt.Errorf("reading CRL records: %w", err)
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		k := crlKey{c.CA, c.Number}
		st, ok := crls[k]
		switch {
		case c.Status == record.StatusIssued && !ok:
			return problem(0, "CRL %d of %s is issued, but no crl entry names it", c.Number, c.CA)
		case c.Status == record.StatusIssued && sha256.Sum256(c.DER) != st.der:
			return problem(st.seq, "derSha256 does not match the DER of CRL %d of %s", c.Number, c.CA)
		case c.Status != record.StatusIssued && ok:
			return problem(st.seq, "crl entry for CRL %d of %s, whose record is %s", c.Number, c.CA, c.Status)
		}
		if ok {
			st.seen = true
			crls[k] = st
		}
		rep.CRLs++
	}
	var orphan *crlKey
	var at int64
	for k, st := range crls {
		if !st.seen && (orphan == nil || st.seq < at) {
			orphan, at = &k, st.seq
		}
	}
	if orphan != nil {
		return problem(at, "names CRL %d of %s, which has no record", orphan.number, orphan.ca)
	}
	return nil
}
