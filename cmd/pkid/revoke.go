package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/user"
	"strings"
	"time"

	"github.com/pkid/pkid/daemon"
)

// operator names who runs the command, for the audit log: the user behind
// sudo when there is one.
func operator() string {
	if u := os.Getenv("SUDO_USER"); u != "" {
		return u
	}
	if u, err := user.Current(); err == nil {
		return u.Username
	}
	return fmt.Sprintf("uid-%d", os.Getuid())
}

func cmdRevoke(ctx context.Context, args []string, stdout io.Writer) error {
	const usage = "pkid revoke --config F --serial S --reason KEY_COMPROMISE|SUPERSEDED|..."
	fs := newFlags("revoke")
	config := configFlag(fs)
	serial := fs.String("serial", "", "serial number (hex, colons allowed)")
	reason := fs.String("reason", "", "revocation reason (Infisical's names)")
	if err := fs.Parse(args); err != nil || fs.NArg() != 0 || *serial == "" || *reason == "" {
		return fmt.Errorf("%w: %s", errUsage, usage)
	}
	res, err := daemon.Revoke(ctx, *config, *serial, strings.ToUpper(*reason), operator())
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "revoked certificate %s (%s) for %s at %s; a running pkid puts it on the CRL within crl.maxDelay\n",
		res.Serial, res.CertificateID, res.Reason, res.RevokedAt.Format(time.RFC3339))
	return nil
}

func cmdCRL(ctx context.Context, args []string, stdout io.Writer) error {
	const usage = "pkid crl show --config F --ca NAME"
	if len(args) == 0 || args[0] != "show" {
		return fmt.Errorf("%w: %s", errUsage, usage)
	}
	fs := newFlags("crl show")
	config := configFlag(fs)
	ca := fs.String("ca", "", "CA name")
	if err := fs.Parse(args[1:]); err != nil || fs.NArg() != 0 || *ca == "" {
		return fmt.Errorf("%w: %s", errUsage, usage)
	}
	v, err := daemon.ShowCRL(ctx, *config, *ca)
	if err != nil {
		return err
	}
	enc := json.NewEncoder(stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
