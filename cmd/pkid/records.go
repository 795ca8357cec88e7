package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/pkid/pkid/daemon"
	"github.com/pkid/pkid/store"
)

// openStore parses --config (and whatever else fs defines) and opens the
// configured database, which must already exist.
func openStore(ctx context.Context, fs *flag.FlagSet, args []string) (*store.DB, error) {
	config := configFlag(fs)
	if err := fs.Parse(args); err != nil {
		return nil, errUsage
	}
	cfg, err := daemon.LoadConfig(*config)
	if err != nil {
		return nil, err
	}
	if _, err := os.Stat(cfg.Database); err != nil {
		return nil, fmt.Errorf("database: %w", err)
	}
	return store.Open(ctx, cfg.Database, store.Options{})
}

func cmdRecords(ctx context.Context, args []string, stdout io.Writer) error {
	if len(args) == 0 || args[0] != "list" {
		return fmt.Errorf("%w: pkid records list --config F [--status pending|issued|aborted]", errUsage)
	}
	fs := newFlags("records list")
	status := fs.String("status", "", "only records with this status")
	db, err := openStore(ctx, fs, args[1:])
	if err != nil {
		return err
	}
	defer db.Close()
	enc := json.NewEncoder(stdout)
	return db.ListRecords(ctx, store.Filter{Status: *status}, func(s store.Summary) error { return enc.Encode(s) })
}

func cmdAudit(ctx context.Context, args []string, stdout io.Writer) error {
	if len(args) == 0 || args[0] != "verify" {
		return fmt.Errorf("%w: pkid audit verify --config F", errUsage)
	}
	db, err := openStore(ctx, newFlags("audit verify"), args[1:])
	if err != nil {
		return err
	}
	defer db.Close()
	n, err := db.VerifyAudit(ctx)
	if err != nil {
		return fmt.Errorf("audit chain broken after %d good entries: %w", n, err)
	}
	fmt.Fprintf(stdout, "audit chain intact: %d entries\n", n)
	return nil
}
