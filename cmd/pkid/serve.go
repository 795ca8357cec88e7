package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"

	"github.com/pkid/pkid/daemon"
)

func cmdServe(ctx context.Context, args []string, log *slog.Logger) error {
	fs := newFlags("serve")
	config := configFlag(fs)
	if err := fs.Parse(args); err != nil {
		return errUsage
	}
	return daemon.Serve(ctx, *config, daemon.Info{Version: Version, Commit: commit()}, log)
}

func cmdCheckConfig(ctx context.Context, args []string, stdout io.Writer, log *slog.Logger) error {
	fs := newFlags("check-config")
	config := configFlag(fs)
	if err := fs.Parse(args); err != nil {
		return errUsage
	}
	rep, err := daemon.CheckConfig(ctx, *config, log)
	if err != nil {
		return err
	}
	for _, w := range rep.Warnings {
		fmt.Fprintln(stdout, "warning:", w)
	}
	fmt.Fprintf(stdout, "config %s is valid: %d CAs, %d profiles; every CA key and the audit key are in the token with the required attributes, every profile lints clean\n",
		*config, rep.CAs, rep.Profiles)
	fmt.Fprintln(stdout, rep.Database)
	return nil
}
