package main

import (
	"context"
	"crypto/x509"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/pkid/pkid/daemon"
)

const caUsage = `usage:
  pkid ca create-root         TOKEN-FLAGS --label L --key-type T --cn NAME [--org O] [--validity 10y] [--max-path-len N] --out FILE
  pkid ca create-intermediate TOKEN-FLAGS --label L --key-type T --cn NAME --parent-label P --parent-cert FILE [--validity 5y] [--max-path-len 0] --out FILE
  pkid ca create-audit-key    TOKEN-FLAGS --label L [--key-type ec-p256] --out FILE
  pkid ca create-ocsp-key     TOKEN-FLAGS --ca NAME [--label pkid-ocsp-NAME] [--key-type ec-p256]
  pkid ca create-mtls-ca      TOKEN-FLAGS --label L [--key-type ec-p256] --cn NAME [--org O] [--validity 10y] --out FILE
  pkid ca issue-tls           TOKEN-FLAGS --ca-label L --ca-cert FILE --cn NAME [--dns D]... [--ip A]... [--uri U]... [--server] [--client] [--validity 1y] --out FILE --key-out FILE

TOKEN-FLAGS: --module PATH --token-label LABEL, and the PIN from --pin-file FILE or $PKID_HSM_PIN.
key types: ec-p256 ec-p384 ec-p521 rsa-2048 rsa-3072 rsa-4096

These are key-ceremony commands: every key is generated in the token and every
signature is the token's. issue-tls signs only the mTLS material of the API
listener and its clients, and only with the key create-mtls-ca made: a key
made for a CA, the audit log or OCSP never signs there, and the mTLS CA key
is refused wherever the daemon expects one of those.
`

type stringList []string

func (s *stringList) String() string     { return strings.Join(*s, ",") }
func (s *stringList) Set(v string) error { *s = append(*s, v); return nil }

func cmdCA(_ context.Context, args []string, stdout io.Writer) error {
	if len(args) == 0 {
		return fmt.Errorf("%w\n%s", errUsage, caUsage)
	}
	fs := newFlags("ca " + args[0])
	var tp daemon.TokenParams
	fs.StringVar(&tp.Module, "module", os.Getenv("PKID_HSM_MODULE"), "PKCS#11 module path")
	fs.StringVar(&tp.TokenLabel, "token-label", "", "token label")
	fs.StringVar(&tp.PINFile, "pin-file", "", "file holding the user PIN (else $"+daemon.DefaultPINEnv+")")
	label := fs.String("label", "", "label of the new key in the token")
	keyType := fs.String("key-type", "", "key type")
	cn := fs.String("cn", "", "subject common name")
	org := fs.String("org", "", "subject organization")
	validity := fs.String("validity", "", "validity, e.g. 10y")
	maxPathLen := fs.Int("max-path-len", -1, "basic constraints path length; -1 for none")
	out := fs.String("out", "", "output file (PEM)")
	parentLabel := fs.String("parent-label", "", "label of the parent CA key in the token")
	parentCert := fs.String("parent-cert", "", "parent CA certificate (PEM)")
	caName := fs.String("ca", "", "CA the OCSP responder key answers for")
	caLabel := fs.String("ca-label", "", "label of the issuing CA key")
	caCert := fs.String("ca-cert", "", "issuing CA certificate (PEM)")
	keyOut := fs.String("key-out", "", "private key output file (PEM, mode 0600)")
	server := fs.Bool("server", false, "server certificate (serverAuth)")
	client := fs.Bool("client", false, "client certificate (clientAuth)")
	var dns, ips, uris stringList
	fs.Var(&dns, "dns", "DNS SAN (repeatable)")
	fs.Var(&ips, "ip", "IP SAN (repeatable)")
	fs.Var(&uris, "uri", "URI SAN (repeatable)")
	if err := fs.Parse(args[1:]); err != nil {
		return errUsage
	}
	usage := func(msg string) error { return fmt.Errorf("%w: %s\n%s", errUsage, msg, caUsage) }
	if *out == "" && args[0] != "create-ocsp-key" {
		return usage("--out is required")
	}
	valid := func(def string) (time.Duration, error) {
		if *validity == "" {
			*validity = def
		}
		d, err := daemon.ParseValidity(*validity)
		if err != nil {
			return 0, fmt.Errorf("--validity: %w", err)
		}
		return d, nil
	}
	kt := func(def string) daemon.KeyType {
		if *keyType == "" {
			return daemon.KeyType(def)
		}
		return daemon.KeyType(*keyType)
	}
	switch args[0] {
	case "create-root", "create-intermediate", "create-mtls-ca", "create-audit-key", "create-ocsp-key", "issue-tls":
	default:
		return usage(fmt.Sprintf("unknown ca command %q", args[0]))
	}
	c, err := daemon.OpenCeremony(tp)
	if err != nil {
		return err
	}
	defer c.Close()

	switch args[0] {
	case "create-root", "create-intermediate", "create-mtls-ca":
		if *label == "" || *cn == "" {
			return usage("--label and --cn are required")
		}
		def := "10y"
		if args[0] == "create-intermediate" {
			def = "5y"
		}
		d, err := valid(def)
		if err != nil {
			return err
		}
		spec := daemon.CASpec{CommonName: *cn, Organization: *org, Validity: d, MaxPathLen: *maxPathLen}
		var create func() (*x509.Certificate, error)
		switch args[0] {
		case "create-root":
			create = func() (*x509.Certificate, error) { return c.CreateRoot(*label, kt("ec-p384"), spec, *out) }
		case "create-intermediate":
			create = func() (*x509.Certificate, error) {
				return c.CreateIntermediate(*label, kt("ec-p384"), spec, *parentLabel, *parentCert, *out)
			}
		default:
			create = func() (*x509.Certificate, error) { return c.CreateMTLSCA(*label, kt("ec-p256"), spec, *out) }
		}
		crt, err := create()
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "created key %q in token %q and wrote %s (%s, valid until %s)\n",
			*label, tp.TokenLabel, *out, crt.Subject, crt.NotAfter.UTC().Format(time.RFC3339))
		return nil

	case "create-audit-key":
		if *label == "" {
			return usage("--label is required")
		}
		if err := c.CreateAuditKey(*label, kt("ec-p256"), *out); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "created audit key %q in token %q and wrote its public key to %s\n", *label, tp.TokenLabel, *out)
		return nil

	case "create-ocsp-key":
		if *caName == "" {
			return usage("--ca is required")
		}
		if *label == "" {
			*label = "pkid-ocsp-" + *caName
		}
		if err := c.CreateOCSPKey(*label, kt("ec-p256")); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "created OCSP responder key %q for CA %s in token %q; set ocspKeyLabel: %s on that CA in the config\n",
			*label, *caName, tp.TokenLabel, *label)
		return nil

	default: // issue-tls
		if *keyOut == "" || *cn == "" || (!*server && !*client) {
			return usage("--cn, --key-out and --server and/or --client are required")
		}
		d, err := valid("1y")
		if err != nil {
			return err
		}
		err = c.IssueTLS(daemon.TLSRequest{CALabel: *caLabel, CACert: *caCert, CommonName: *cn, DNS: dns, IPs: ips, URIs: uris,
			Server: *server, Client: *client, Validity: d, CertOut: *out, KeyOut: *keyOut})
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "issued TLS certificate %s and key %s for %q\n", *out, *keyOut, *cn)
		return nil
	}
}
