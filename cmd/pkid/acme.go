package main

import (
	"context"
	"fmt"
	"io"

	"github.com/pkid/pkid/daemon"
)

// cmdACME makes external account binding keys for a profile's ACME server
// (DESIGN.md §17). The MAC key is shown once; the store keeps its hash.
func cmdACME(ctx context.Context, args []string, stdout io.Writer) error {
	const usage = "pkid acme eab add --config F --profile P [--key-file F]"
	if len(args) < 2 || args[0] != "eab" || args[1] != "add" {
		return fmt.Errorf("%w: %s", errUsage, usage)
	}
	fs := newFlags("acme eab add")
	config := configFlag(fs)
	profile := fs.String("profile", "", "profile name or slug whose ACME directory the key is for")
	file := fs.String("key-file", "", "write the MAC key to this new file (mode 0600) instead of printing it")
	if err := fs.Parse(args[2:]); err != nil || fs.NArg() != 0 || *profile == "" {
		return fmt.Errorf("%w: %s", errUsage, usage)
	}
	k, err := daemon.AddEABKey(ctx, *config, *profile)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "# external account binding key for the ACME directory of profile %s\n", k.Profile)
	fmt.Fprintf(stdout, "kid: %s\n", k.KeyID)
	if *file != "" {
		if err := daemon.WriteSecretFile(*file, k.MACKey); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "hmac: written to %s\n", *file)
		return nil
	}
	fmt.Fprintf(stdout, "hmac: %s\n# (the MAC key, base64url, shown once: pkid keeps only its hash)\n", k.MACKey)
	return nil
}
