package main

import (
	"fmt"
	"io"

	"github.com/pkid/pkid/daemon"
)

// cmdIdentity makes machine identities' credentials (DESIGN.md §15). It
// changes no config: it prints what to add, and the secret once.
func cmdIdentity(args []string, stdout io.Writer) error {
	const usage = "pkid identity add --name N [--secret-file F] | pkid identity token --name N [--token-file F]"
	if len(args) == 0 {
		return fmt.Errorf("%w: %s", errUsage, usage)
	}
	fs := newFlags("identity " + args[0])
	name := fs.String("name", "", "machine identity name (the identity is machine:<name>)")
	var file *string
	switch args[0] {
	case "add":
		file = fs.String("secret-file", "", "write the client secret to this new file (mode 0600) instead of printing it")
	case "token":
		file = fs.String("token-file", "", "write the token to this new file (mode 0600) instead of printing it")
	default:
		return fmt.Errorf("%w: %s", errUsage, usage)
	}
	if err := fs.Parse(args[1:]); err != nil || fs.NArg() != 0 || *name == "" {
		return fmt.Errorf("%w: %s", errUsage, usage)
	}
	var secret, shown, stanza, header string
	if args[0] == "add" {
		c, err := daemon.NewMachineIdentity(*name)
		if err != nil {
			return err
		}
		secret, stanza = c.ClientSecret, c.Stanza
		header = fmt.Sprintf("# machine identity %s (requests authenticate as machine:%s)\n# clientId:     %s\n", c.Name, c.Name, c.ClientID)
		shown = "# clientSecret: %s\n"
	} else {
		t, err := daemon.NewStaticToken(*name)
		if err != nil {
			return err
		}
		secret, stanza = t.Token, t.Stanza
		header = fmt.Sprintf("# static token of machine identity %s; add its hash to that identity's staticTokens\n", t.Name)
		shown = "# token:        %s\n"
	}
	if *file != "" {
		if err := daemon.WriteSecretFile(*file, secret); err != nil {
			return err
		}
		fmt.Fprintf(stdout, header+shown, "written to "+*file)
	} else {
		fmt.Fprintf(stdout, header+shown, secret+"   (shown once: pkid keeps only its hash)")
	}
	fmt.Fprint(stdout, "# then reload pkid (systemctl reload pkid)\n"+stanza)
	return nil
}
