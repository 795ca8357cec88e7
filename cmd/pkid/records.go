package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"

	"github.com/pkid/pkid/daemon"
	"github.com/pkid/pkid/store"
)

func openStore(ctx context.Context, config string) (*store.DB, error) {
	cfg, err := daemon.LoadConfig(config)
	if err != nil {
		return nil, err
	}
	if _, err := os.Stat(cfg.Database); err != nil {
		return nil, fmt.Errorf("database: %w", err)
	}
	return store.Open(ctx, cfg.Database)
}

func cmdRecords(ctx context.Context, args []string, stdout io.Writer) error {
	if len(args) == 0 || args[0] != "list" {
		return fmt.Errorf("%w: pkid records list --config F [--status pending|issued|aborted]", errUsage)
	}
	fs := newFlags("records list")
	config := configFlag(fs)
	status := fs.String("status", "", "only records with this status")
	if err := fs.Parse(args[1:]); err != nil {
		return errUsage
	}
	db, err := openStore(ctx, *config)
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
	fs := newFlags("audit verify")
	config := configFlag(fs)
	if err := fs.Parse(args[1:]); err != nil {
		return errUsage
	}
	db, err := openStore(ctx, *config)
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
