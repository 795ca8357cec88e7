package main

import (
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/pkid/pkid/daemon"
)

// cmdStore moves a store from SQLite to PostgreSQL (DESIGN.md §16).
func cmdStore(ctx context.Context, args []string, stdout io.Writer) error {
	const usage = "pkid store migrate --config F --from [sqlite:]SQLITE_FILE [--to postgres://…]   (F's database: the empty postgres:// target, whose password F's databasePasswordFile gives; stop pkid first)"
	if len(args) == 0 || args[0] != "migrate" {
		return fmt.Errorf("%w: %s", errUsage, usage)
	}
	fs := newFlags("store migrate")
	config := configFlag(fs)
	from := fs.String("from", "", "the SQLite database to copy (sqlite:PATH or PATH)")
	to := fs.String("to", "", "the PostgreSQL target; if given, it must be the config's database")
	if err := fs.Parse(args[1:]); err != nil || fs.NArg() != 0 || strings.TrimPrefix(*from, "sqlite:") == "" {
		return fmt.Errorf("%w: %s", errUsage, usage)
	}
	rep, err := daemon.MigrateStore(ctx, *config, strings.TrimPrefix(*from, "sqlite:"), *to)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "copied %d certificates, %d CRLs, %d audit entries, %d checkpoints, %d OCSP answers, %d revoked tokens, %d rows of ACME state\n",
		rep.Certificates, rep.CRLs, rep.AuditEntries, rep.Checkpoints, rep.OCSPResponses, rep.RevokedTokens, rep.ACMERows)
	fmt.Fprintf(stdout, "audit chain verified on the target: %d entries, %d signed checkpoints, head %d:%s (the source's)\n",
		rep.Audit.Entries, rep.Audit.Checkpoints, rep.HeadSeq, rep.HeadHash)
	return nil
}
