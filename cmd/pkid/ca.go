package main

import (
	"context"
	"crypto"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/pkid/pkid/ceremony"
	"github.com/pkid/pkid/daemon"
	"github.com/pkid/pkid/hsm"
	"github.com/pkid/pkid/policy"
)

const caUsage = `usage:
  pkid ca create-root         TOKEN-FLAGS --label L --key-type T --cn NAME [--org O] [--validity 10y] [--max-path-len N] --out FILE
  pkid ca create-intermediate TOKEN-FLAGS --label L --key-type T --cn NAME --parent-label P --parent-cert FILE [--validity 5y] [--max-path-len 0] --out FILE
  pkid ca issue-tls           TOKEN-FLAGS --ca-label L --ca-cert FILE --cn NAME [--dns D]... [--ip A]... [--uri U]... [--server] [--client] [--validity 1y] --out FILE --key-out FILE

TOKEN-FLAGS: --module PATH --token-label LABEL, and the PIN from --pin-file FILE or $PKID_HSM_PIN.
key types: ec-p256 ec-p384 ec-p521 rsa-2048 rsa-3072 rsa-4096
`

type stringList []string

func (s *stringList) String() string     { return strings.Join(*s, ",") }
func (s *stringList) Set(v string) error { *s = append(*s, v); return nil }

type tokenFlags struct {
	module, tokenLabel, pinFile string
}

func (t *tokenFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&t.module, "module", os.Getenv("PKID_HSM_MODULE"), "PKCS#11 module path")
	fs.StringVar(&t.tokenLabel, "token-label", "", "token label")
	fs.StringVar(&t.pinFile, "pin-file", "", "file holding the user PIN (else $"+daemon.DefaultPINEnv+")")
}

func (t *tokenFlags) open() (*hsm.Token, error) {
	cfg := daemon.ConfigFile{HSM: daemon.HSMConfig{PINFile: t.pinFile, PINEnv: daemon.DefaultPINEnv}}
	pin, err := cfg.ReadPIN()
	if err != nil {
		return nil, err
	}
	return hsm.Open(hsm.Config{Module: t.module, TokenLabel: t.tokenLabel, PIN: pin})
}

func parseValidity(s string) (time.Duration, error) {
	d, err := policy.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("--validity: %w", err)
	}
	return d, nil
}

func cmdCA(ctx context.Context, args []string, stdout io.Writer) error {
	if len(args) == 0 {
		return fmt.Errorf("%w\n%s", errUsage, caUsage)
	}
	fs := newFlags("ca " + args[0])
	var tf tokenFlags
	tf.register(fs)
	label := fs.String("label", "", "label of the new key in the token")
	keyType := fs.String("key-type", "ec-p384", "key type")
	cn := fs.String("cn", "", "subject common name")
	org := fs.String("org", "", "subject organization")
	validity := fs.String("validity", "", "validity, e.g. 10y")
	maxPathLen := fs.Int("max-path-len", -1, "basic constraints path length; -1 for none")
	out := fs.String("out", "", "certificate output file (PEM)")
	parentLabel := fs.String("parent-label", "", "label of the parent CA key in the token")
	parentCert := fs.String("parent-cert", "", "parent CA certificate (PEM)")
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
	if *out == "" {
		return fmt.Errorf("%w: --out is required\n%s", errUsage, caUsage)
	}
	if _, err := os.Stat(*out); err == nil {
		return fmt.Errorf("%s already exists; refusing to overwrite a CA certificate", *out)
	}
	tok, err := tf.open()
	if err != nil {
		return err
	}
	defer tok.Close()
	now := time.Now()

	switch args[0] {
	case "create-root", "create-intermediate":
		if *label == "" || *cn == "" {
			return fmt.Errorf("%w: --label and --cn are required\n%s", errUsage, caUsage)
		}
		def := "10y"
		if args[0] == "create-intermediate" {
			def = "5y"
		}
		if *validity == "" {
			*validity = def
		}
		d, err := parseValidity(*validity)
		if err != nil {
			return err
		}
		spec := ceremony.CASpec{CommonName: *cn, Organization: *org, Validity: d, MaxPathLen: *maxPathLen}
		var parent *x509.Certificate
		var parentSigner crypto.Signer
		if args[0] == "create-intermediate" {
			if parent, parentSigner, err = loadCA(tok, *parentLabel, *parentCert); err != nil {
				return fmt.Errorf("parent: %w", err)
			}
		}
		signer, err := tok.GenerateCAKey(*label, hsm.KeyType(*keyType))
		if err != nil {
			return err
		}
		var cert *x509.Certificate
		if parent == nil {
			cert, err = ceremony.SelfSigned(signer, spec, now)
		} else {
			cert, err = ceremony.Intermediate(parent, parentSigner, signer.Public(), spec, now)
		}
		if err != nil {
			return err
		}
		if err := writeFile(*out, ceremony.PEM(cert), 0o644); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "created %s key %q in token %q and wrote %s (%s, valid until %s)\n",
			*keyType, *label, tf.tokenLabel, *out, cert.Subject, cert.NotAfter.UTC().Format(time.RFC3339))
		return nil

	case "issue-tls":
		if *keyOut == "" || *cn == "" || (!*server && !*client) {
			return fmt.Errorf("%w: --cn, --key-out and --server and/or --client are required\n%s", errUsage, caUsage)
		}
		if *validity == "" {
			*validity = "1y"
		}
		d, err := parseValidity(*validity)
		if err != nil {
			return err
		}
		ca, signer, err := loadCA(tok, *caLabel, *caCert)
		if err != nil {
			return err
		}
		spec := ceremony.TLSSpec{CommonName: *cn, DNSNames: dns, Server: *server, Client: *client, Validity: d}
		for _, s := range ips {
			ip := net.ParseIP(s)
			if ip == nil {
				return fmt.Errorf("--ip %q is not an IP address", s)
			}
			spec.IPs = append(spec.IPs, ip)
		}
		for _, s := range uris {
			u, err := url.Parse(s)
			if err != nil || u.Scheme == "" {
				return fmt.Errorf("--uri %q is not an absolute URI", s)
			}
			spec.URIs = append(spec.URIs, u)
		}
		certPEM, keyPEM, err := ceremony.TLSLeaf(ca, signer, spec, now)
		if err != nil {
			return err
		}
		if err := writeFile(*keyOut, keyPEM, 0o600); err != nil {
			return err
		}
		if err := writeFile(*out, certPEM, 0o644); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "issued TLS certificate %s and key %s for %q\n", *out, *keyOut, *cn)
		return nil
	}
	return fmt.Errorf("%w: unknown ca command %q\n%s", errUsage, args[0], caUsage)
}

// loadCA reads a CA certificate and finds its key in the token, checking
// custody and that the two match.
func loadCA(tok *hsm.Token, label, certPath string) (*x509.Certificate, crypto.Signer, error) {
	if label == "" || certPath == "" {
		return nil, nil, errors.New("a key label and a certificate file are required")
	}
	b, err := os.ReadFile(certPath)
	if err != nil {
		return nil, nil, err
	}
	cert, err := ceremony.ReadCertificate(b)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", certPath, err)
	}
	signer, err := tok.CheckCustody(label, cert)
	if err != nil {
		return nil, nil, err
	}
	return cert, signer, nil
}

// writeFile writes atomically: a temporary file in the same directory,
// synced, then renamed into place.
func writeFile(path string, data []byte, mode os.FileMode) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".pkid-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return err
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
