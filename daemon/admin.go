package daemon

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/pkid/pkid/issuer"
	"github.com/pkid/pkid/record"
	"github.com/pkid/pkid/store"
	"github.com/pkid/pkid/store/migrate"
	"github.com/pkid/pkid/store/postgres"
	"github.com/pkid/pkid/store/sqlite"
)

// Operator commands (`pkid records`, `pkid audit`, `pkid check-config`)
// work on the configured database and token without serving.

// ErrUsage marks a command-line mistake (the command exits 2).
var ErrUsage = errors.New("usage")

// RecordStatuses are the statuses `pkid records list --status` accepts.
var RecordStatuses = []string{record.StatusPending, record.StatusIssued, record.StatusAborted, record.StatusRevoked}

// RecordView is a certificate record as the operator commands print it.
type RecordView struct {
	CertificateID        string           `json:"certificateId"`
	SerialNumber         string           `json:"serialNumber"`
	Status               string           `json:"status"`
	Profile              string           `json:"profile"`
	ProfileID            string           `json:"profileId"`
	CA                   string           `json:"ca"`
	Identity             string           `json:"identity"`
	RequestID            string           `json:"reqId"`
	CertificateRequestID string           `json:"certificateRequestId,omitempty"`
	CommonName           string           `json:"commonName"`
	AltNames             []record.AltName `json:"altNames"`
	KeyUsages            []string         `json:"keyUsages"`
	ExtKeyUsages         []string         `json:"extendedKeyUsages"`
	SignatureAlgorithm   string           `json:"signatureAlgorithm"`
	KeyAlgorithm         string           `json:"keyAlgorithm"`
	NotBefore            time.Time        `json:"notBefore"`
	NotAfter             time.Time        `json:"notAfter"`
	TBSHash              string           `json:"tbsSha256,omitempty"`
	CSRHash              string           `json:"csrSha256,omitempty"`
	Renews               string           `json:"renews,omitempty"`
	RevokedAt            *time.Time       `json:"revokedAt,omitempty"`
	RevocationReason     string           `json:"revocationReason,omitempty"`
	CreatedAt            time.Time        `json:"createdAt"`
	Certificate          string           `json:"certificate,omitempty"` // PEM, in `records show`
}

func viewOf(c *record.Certificate, withPEM bool) RecordView {
	v := RecordView{CertificateID: c.ID, SerialNumber: c.Serial, Status: c.Status, Profile: c.Profile, ProfileID: c.ProfileID,
		CA: c.CA, Identity: c.Identity, RequestID: c.RequestID, CertificateRequestID: c.CertificateRequestID,
		CommonName: c.CommonName, AltNames: c.AltNames, KeyUsages: c.KeyUsages, ExtKeyUsages: c.ExtKeyUsages,
		SignatureAlgorithm: c.SignatureAlgorithm, KeyAlgorithm: c.KeyAlgorithm, NotBefore: c.NotBefore, NotAfter: c.NotAfter,
		TBSHash: c.TBSHash, CSRHash: c.CSRHash, Renews: c.Renews, RevocationReason: c.RevocationReason, CreatedAt: c.CreatedAt}
	if !c.RevokedAt.IsZero() {
		t := c.RevokedAt
		v.RevokedAt = &t
	}
	if v.AltNames == nil {
		v.AltNames = []record.AltName{}
	}
	if withPEM && len(c.DER) > 0 {
		v.Certificate = strings.TrimSpace(string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.DER})))
	}
	return v
}

// openExistingStore opens the database of the config at path, which must
// already exist: an operator command never creates one.
func openExistingStore(ctx context.Context, path string) (store.Store, *Config, error) {
	cfg, err := LoadConfig(path)
	if err != nil {
		return nil, nil, err
	}
	if !cfg.postgres {
		if _, err := os.Stat(cfg.database); err != nil {
			return nil, nil, fmt.Errorf("database: %w", err)
		}
	}
	st, err := openStore(ctx, cfg, nil, nil)
	return st, cfg, err
}

func closeStore(st store.Store) {
	ctx, cancel := context.WithTimeout(context.Background(), storeCloseTimeout)
	defer cancel()
	st.Close(ctx)
}

// ListRecords calls fn for every record (of status, if not "") in
// creation order.
func ListRecords(ctx context.Context, configPath, status string, fn func(RecordView) error) error {
	if status != "" && !contains(RecordStatuses, status) {
		return fmt.Errorf("%w: --status %q is not one of %s", ErrUsage, status, strings.Join(RecordStatuses, ", "))
	}
	st, _, err := openExistingStore(ctx, configPath)
	if err != nil {
		return err
	}
	defer closeStore(st)
	return st.ListCertificates(ctx, store.Filter{Status: status}, func(c *record.Certificate) error { return fn(viewOf(c, false)) })
}

// ShowRecord returns the record named by a serial number (hex, any case,
// colons allowed) or a certificate id, with its PEM.
func ShowRecord(ctx context.Context, configPath, serialOrID string) (RecordView, error) {
	st, _, err := openExistingStore(ctx, configPath)
	if err != nil {
		return RecordView{}, err
	}
	defer closeStore(st)
	c, err := findRecord(ctx, st, serialOrID)
	if err != nil {
		return RecordView{}, err
	}
	return viewOf(c, true), nil
}

func findRecord(ctx context.Context, st store.Store, serialOrID string) (*record.Certificate, error) {
	var c *record.Certificate
	var err error
	if serial, ok := record.NormalizeSerial(serialOrID); ok {
		c, err = st.CertificateBySerial(ctx, serial)
	} else {
		c, err = st.Certificate(ctx, strings.ToLower(serialOrID))
	}
	if errors.Is(err, record.ErrNotFound) {
		return nil, fmt.Errorf("%w: no certificate with serial number or id %q", ErrUsage, serialOrID)
	}
	return c, err
}

// VerifyAudit checks the audit chain of the configured database, its
// checkpoints against the configured audit public key, and, with anchor
// ("SEQ:HASH"), that the chain still holds that entry.
func VerifyAudit(ctx context.Context, configPath, anchor string) (*store.AuditReport, error) {
	opts := store.VerifyOptions{}
	if anchor != "" {
		seqText, hash, ok := strings.Cut(anchor, ":")
		seq, err := strconv.ParseInt(seqText, 10, 64)
		if !ok || err != nil || seq < 1 || len(hash) != 64 {
			return nil, fmt.Errorf("%w: --checkpoint %q is not SEQ:HASH (a sequence number and a 64-digit hex hash)", ErrUsage, anchor)
		}
		opts.Anchor = &store.Anchor{Seq: seq, Hash: strings.ToLower(hash)}
	}
	st, cfg, err := openExistingStore(ctx, configPath)
	if err != nil {
		return nil, err
	}
	defer closeStore(st)
	if opts.Key, err = readPublicKey(cfg.audit.PublicKey); err != nil {
		return nil, fmt.Errorf("audit.publicKey: %w", err)
	}
	return st.VerifyAudit(ctx, opts)
}

// CheckReport is what `pkid check-config` found.
type CheckReport struct {
	CAs, Profiles int
	Warnings      []string
	// Database says which database the config names and the state of its
	// schema: up to date, migrations that start will apply, or new.
	Database string
}

// CheckConfig loads and checks everything Serve would, without listening
// and without changing anything: the config, the token and every key's
// custody, the CA chains, a linted sample certificate per profile, and the
// database's schema, which it reads but never migrates or creates.
func CheckConfig(ctx context.Context, configPath string, log *slog.Logger) (*CheckReport, error) {
	cfg, err := LoadConfig(configPath)
	if err != nil {
		return nil, err
	}
	db, err := inspectDatabase(ctx, cfg)
	if err != nil {
		return nil, err
	}
	m := newMetrics(Info{}, cfg)
	res, err := openResources(ctx, cfg, m, log, func() (store.Store, error) { return unopenedStore{}, nil })
	if err != nil {
		return nil, err
	}
	defer res.Close()
	g, err := buildGeneration(ctx, cfg, res, m, log)
	if err != nil {
		return nil, err
	}
	return &CheckReport{CAs: len(cfg.cas), Profiles: len(cfg.profiles), Warnings: g.warnings, Database: db}, nil
}

// unopenedStore stands in for the database while check-config builds what
// Serve builds: opening the store would migrate it (and create a SQLite
// file). Nothing built before serving calls the store; if something did,
// the nil Store inside would make that a panic in check-config's tests.
type unopenedStore struct{ store.Store }

func (unopenedStore) Close(context.Context) error { return nil }

// inspectDatabase describes the configured database and its schema version
// against this release's, reading it only. A database that does not exist
// yet is fine (Serve creates it), but not one that a newer pkid migrated:
// Serve refuses that.
func inspectDatabase(ctx context.Context, cfg *Config) (string, error) {
	var what string
	var version, latest int
	if cfg.postgres {
		password, err := cfg.readDatabasePassword()
		if err != nil {
			return "", fmt.Errorf("database: %w", err)
		}
		what, latest = "PostgreSQL database", postgres.LatestSchemaVersion
		if version, err = postgres.SchemaVersionAt(ctx, cfg.database, postgres.Options{Password: password}); err != nil {
			return "", fmt.Errorf("database: %w", err)
		}
	} else {
		var err error
		what, latest = "SQLite database "+cfg.database, sqlite.LatestSchemaVersion
		version, err = sqlite.SchemaVersionAt(ctx, cfg.database)
		if errors.Is(err, os.ErrNotExist) {
			dir := filepath.Dir(cfg.database)
			if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
				return "", fmt.Errorf("database: %s cannot be created: its directory %s does not exist", cfg.database, dir)
			}
			return fmt.Sprintf("%s: new database, created at start with schema v%d", what, latest), nil
		}
		if err != nil {
			return "", fmt.Errorf("database: %w", err)
		}
	}
	switch {
	case version > latest:
		return "", fmt.Errorf("database: %s has schema v%d, newer than this pkid's (v%d): pkid refuses to use it", what, version, latest)
	case version == 0:
		return fmt.Sprintf("%s: new database, schema v%d created at start", what, latest), nil
	case version == latest:
		return fmt.Sprintf("%s: schema v%d, up to date", what, version), nil
	}
	return fmt.Sprintf("%s: schema v%d, %d pending migrations (applied at start, to v%d)", what, version, latest-version, latest), nil
}

func contains(list []string, v string) bool {
	for _, s := range list {
		if s == v {
			return true
		}
	}
	return false
}

// RevokeResult is what `pkid revoke` did.
type RevokeResult struct {
	Serial, CertificateID, Reason string
	RevokedAt                     time.Time
}

// Revoke revokes the certificate with serial as the operator: a status
// change and its audit entry (identity local:<operator>) in one
// transaction. A running pkid puts it on the CRL within crl.maxDelay.
func Revoke(ctx context.Context, configPath, serial, reason, operator string) (*RevokeResult, error) {
	s, ok := record.NormalizeSerial(serial)
	if !ok {
		return nil, fmt.Errorf("%w: --serial %q is not a hexadecimal serial number", ErrUsage, serial)
	}
	if _, err := issuer.ReasonCode(reason); err != nil {
		var valid []string
		for _, r := range issuer.RevocationReasons {
			if r != "CERTIFICATE_HOLD" {
				valid = append(valid, r)
			}
		}
		return nil, fmt.Errorf("%w: --reason: %v; valid reasons: %s", ErrUsage, issuer.AsError(err).Message, strings.Join(valid, ", "))
	}
	st, _, err := openExistingStore(ctx, configPath)
	if err != nil {
		return nil, err
	}
	defer closeStore(st)
	c, err := findRecord(ctx, st, s)
	if err != nil {
		return nil, err
	}
	at := time.Now().UTC().Truncate(time.Second)
	ev := record.AuditEvent{Time: at, Action: record.ActionRevoked, Identity: "local:" + operator, Profile: c.Profile,
		Outcome: record.StatusRevoked, Reason: reason, CertificateID: c.ID, Serial: c.Serial, CA: c.CA}
	switch err := st.Revoke(ctx, c.ID, at, reason, ev); {
	case errors.Is(err, record.ErrAlreadyRevoked):
		return nil, fmt.Errorf("certificate %s is already revoked", c.Serial)
	case errors.Is(err, record.ErrNotRevocable):
		return nil, fmt.Errorf("%w: record %s is %s, not an issued certificate", ErrUsage, c.Serial, c.Status)
	case err != nil:
		return nil, err
	}
	return &RevokeResult{Serial: c.Serial, CertificateID: c.ID, Reason: reason, RevokedAt: at}, nil
}

// CRLView is a CA's current CRL as `pkid crl show` prints it.
type CRLView struct {
	CA         string         `json:"ca"`
	Number     int64          `json:"crlNumber"`
	ThisUpdate time.Time      `json:"thisUpdate"`
	NextUpdate time.Time      `json:"nextUpdate"`
	Entries    []CRLEntryView `json:"entries"`
}

// CRLEntryView is one revoked certificate on a CRL.
type CRLEntryView struct {
	Serial         string    `json:"serialNumber"`
	RevocationTime time.Time `json:"revocationTime"`
	Reason         string    `json:"reason"`
}

// ShowCRL returns the newest CRL of the CA named ca from the database.
func ShowCRL(ctx context.Context, configPath, ca string) (*CRLView, error) {
	st, cfg, err := openExistingStore(ctx, configPath)
	if err != nil {
		return nil, err
	}
	defer closeStore(st)
	var names []string
	known := false
	for _, c := range cfg.cas {
		if c.KeyLabel != "" {
			names = append(names, c.Name)
			known = known || c.Name == ca
		}
	}
	if !known {
		return nil, fmt.Errorf("%w: --ca %q is not a CA with a key; choose one of %s", ErrUsage, ca, strings.Join(names, ", "))
	}
	c, err := st.LatestCRL(ctx, ca)
	if errors.Is(err, record.ErrNotFound) {
		return nil, fmt.Errorf("CA %s has no CRL yet: pkid makes one when it starts", ca)
	}
	if err != nil {
		return nil, err
	}
	crl, err := x509.ParseRevocationList(c.DER)
	if err != nil {
		return nil, fmt.Errorf("stored CRL %d of %s: %w", c.Number, ca, err)
	}
	v := &CRLView{CA: ca, Number: c.Number, ThisUpdate: crl.ThisUpdate, NextUpdate: crl.NextUpdate, Entries: []CRLEntryView{}}
	for _, e := range crl.RevokedCertificateEntries {
		v.Entries = append(v.Entries, CRLEntryView{Serial: e.SerialNumber.Text(16), RevocationTime: e.RevocationTime,
			Reason: issuer.ReasonName(e.ReasonCode)})
	}
	return v, nil
}

// MigrateReport is what `pkid store migrate` copied and verified.
type MigrateReport struct {
	migrate.Report
	Audit *store.AuditReport
}

// MigrateStore copies the SQLite store at from into the PostgreSQL
// database of the config at configPath (DESIGN.md §16), which must be
// empty, then verifies the copied audit chain with the config's audit key
// and checks that its head is the source's. to, if set, must be the
// config's database: it lets the command name its target, while the
// config still supplies the target's password file. The daemon must be
// stopped: writes made during the copy would not be copied.
func MigrateStore(ctx context.Context, configPath, from, to string) (*MigrateReport, error) {
	cfg, err := LoadConfig(configPath)
	if err != nil {
		return nil, err
	}
	if !cfg.postgres {
		return nil, fmt.Errorf("%w: the config's database must be the postgres:// target (it is %s)", ErrUsage, cfg.database)
	}
	if to != "" && to != cfg.database {
		return nil, fmt.Errorf("%w: --to is not the config's database; the config names the target (and its password file)", ErrUsage)
	}
	key, err := readPublicKey(cfg.audit.PublicKey)
	if err != nil {
		return nil, fmt.Errorf("audit.publicKey: %w", err)
	}
	if _, err := os.Stat(from); err != nil {
		return nil, fmt.Errorf("--from: %w", err)
	}
	src, err := sqlite.Open(ctx, from, sqlite.Options{BusyTimeout: cfg.limits.databaseBusyTimeout})
	if err != nil {
		return nil, fmt.Errorf("--from: %w", err)
	}
	defer closeStore(src)
	srcSeq, srcHash, err := src.AuditHead(ctx)
	if err != nil {
		return nil, fmt.Errorf("reading the source's audit head: %w", err)
	}
	st, err := openStore(ctx, cfg, nil, nil)
	if err != nil {
		return nil, err
	}
	defer closeStore(st)
	dst, ok := st.(*postgres.DB)
	if !ok {
		return nil, errors.New("the config's database did not open as PostgreSQL")
	}
	rep, err := migrate.Copy(ctx, src, dst)
	if err != nil {
		return nil, err
	}
	if rep.HeadSeq != srcSeq || rep.HeadHash != srcHash {
		return nil, fmt.Errorf("the copy's audit head %d:%s is not the source's %d:%s", rep.HeadSeq, rep.HeadHash, srcSeq, srcHash)
	}
	audit, err := dst.VerifyAudit(ctx, store.VerifyOptions{Key: key, Anchor: &store.Anchor{Seq: srcSeq, Hash: srcHash}})
	if err != nil {
		return nil, fmt.Errorf("verifying the copied audit log: %w", err)
	}
	return &MigrateReport{Report: rep, Audit: audit}, nil
}
