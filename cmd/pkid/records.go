package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"

	"github.com/pkid/pkid/daemon"
)

func cmdRecords(ctx context.Context, args []string, stdout io.Writer) error {
	const usage = "pkid records list --config F [--status pending|issued|aborted|revoked] | pkid records show --config F SERIAL|ID"
	if len(args) == 0 {
		return fmt.Errorf("%w: %s", errUsage, usage)
	}
	enc := json.NewEncoder(stdout)
	switch args[0] {
	case "list":
		fs := newFlags("records list")
		config := configFlag(fs)
		status := fs.String("status", "", "only records with this status")
		if err := fs.Parse(args[1:]); err != nil || fs.NArg() != 0 {
			return fmt.Errorf("%w: %s", errUsage, usage)
		}
		return daemon.ListRecords(ctx, *config, *status, func(v daemon.RecordView) error { return enc.Encode(v) })
	case "show":
		fs := newFlags("records show")
		config := configFlag(fs)
		if err := fs.Parse(args[1:]); err != nil || fs.NArg() != 1 {
			return fmt.Errorf("%w: %s", errUsage, usage)
		}
		v, err := daemon.ShowRecord(ctx, *config, fs.Arg(0))
		if err != nil {
			return err
		}
		enc.SetIndent("", "  ")
		return enc.Encode(v)
	}
	return fmt.Errorf("%w: %s", errUsage, usage)
}

func cmdAudit(ctx context.Context, args []string, stdout io.Writer) error {
	const usage = "pkid audit verify --config F [--checkpoint SEQ:HASH]"
	if len(args) == 0 || args[0] != "verify" {
		return fmt.Errorf("%w: %s", errUsage, usage)
	}
	fs := newFlags("audit verify")
	config := configFlag(fs)
	anchor := fs.String("checkpoint", "", "a checkpoint SEQ:HASH from the logs or an external copy that the chain must still contain")
	if err := fs.Parse(args[1:]); err != nil || fs.NArg() != 0 {
		return fmt.Errorf("%w: %s", errUsage, usage)
	}
	rep, err := daemon.VerifyAudit(ctx, *config, *anchor)
	if err != nil {
		if rep != nil {
			return fmt.Errorf("audit log fails verification after %d good entries: %w", rep.Entries, err)
		}
		return fmt.Errorf("audit log fails verification: %w", err)
	}
	fmt.Fprintf(stdout, "audit chain intact: %d entries, %d signed checkpoints (newest covers entry %d), %d entries after it\n",
		rep.Entries, rep.Checkpoints, rep.LastCheckpoint, rep.AfterLastCheckpoint)
	if *anchor != "" {
		fmt.Fprintf(stdout, "the chain contains checkpoint %s\n", *anchor)
	}
	return nil
}
