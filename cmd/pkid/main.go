// Command pkid is the certificate authority daemon and its operator tools.
//
//	pkid serve        --config F     serve the API
//	pkid dev [--json F]              serve a throw-away pkid on loopback (SoftHSM2 token in a temporary directory)
//	pkid check-config --config F     check config, token, CAs, profiles and the database schema (read only); exit 1 on any problem
//	pkid ca ...                      key ceremony: create CA keys in the token and their certificates
//	pkid records list --config F     print certificate records as JSON lines
//	pkid records show --config F S   print one record with its PEM
//	pkid revoke --config F --serial S --reason R   revoke as the operator
//	pkid crl show --config F --ca NAME   print a CA's current CRL
//	pkid audit verify --config F     verify the audit log (chain, checkpoints, records)
//	pkid store migrate --config F --from [sqlite:]DB [--to DSN]   copy a SQLite store into PostgreSQL
//	pkid identity add --name N       make a machine identity's client id, secret and config stanza
//	pkid identity token --name N     make a static token for a machine identity
//	pkid acme eab add --config F --profile P   make an ACME external account binding key
//	pkid version
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"syscall"

	"github.com/pkid/pkid/daemon"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

const usage = `usage: pkid <command> [flags]

commands:
  serve --config F              serve the API over mutual TLS (and CRLs over plain HTTP)
  dev [--json F]                serve a throw-away pkid on loopback: a fresh SoftHSM2 token, CAs,
                                mTLS material and a machine identity in a temporary directory,
                                all deleted on Ctrl-C or SIGTERM (--listen-host, --api-port, ...)
  check-config --config F       validate config, token, CA keys, profiles and database schema
  ca create-root ...            create a root CA key in the token and its certificate
  ca create-intermediate ...    create an intermediate CA key, signed by its parent in the token
  ca create-mtls-ca ...         create the mTLS CA key in the token (API listener and clients only)
  ca issue-tls ...              issue a TLS server or client certificate from the mTLS CA
  ca create-audit-key ...       create the key that signs audit checkpoints, in the token
  ca create-ocsp-key ...        create a CA's delegated OCSP responder key, in the token
  records list --config F       print certificate records as JSON lines
  records show --config F S|ID  print one record with its PEM
  revoke --config F --serial S --reason R   revoke a certificate as the operator (audited as local:<user>)
  crl show --config F --ca NAME print a CA's current CRL
  audit verify --config F       verify the audit log: its hash chain, signed checkpoints and records
  store migrate --config F --from [sqlite:]DB [--to DSN]   copy a stopped node's SQLite store into the config's empty PostgreSQL database
  identity add --name N         make a machine identity: client id, client secret (shown once), config stanza
  identity token --name N       make a static token ("token auth") for a machine identity
  acme eab add --config F --profile P [--key-file F]   make an ACME external account binding key (shown once)
  version                       print version information
`

// errUsage makes run exit with status 2.
var errUsage = daemon.ErrUsage

func run(args []string, stdout, stderr io.Writer) int {
	log := slog.New(slog.NewJSONHandler(stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	var err error
	switch args[0] {
	case "serve":
		err = cmdServe(ctx, args[1:], log)
	case "dev":
		err = cmdDev(ctx, args[1:], stdout, log)
	case "check-config":
		err = cmdCheckConfig(ctx, args[1:], stdout, log)
	case "ca":
		err = cmdCA(ctx, args[1:], stdout)
	case "records":
		err = cmdRecords(ctx, args[1:], stdout)
	case "audit":
		err = cmdAudit(ctx, args[1:], stdout)
	case "revoke":
		err = cmdRevoke(ctx, args[1:], stdout)
	case "crl":
		err = cmdCRL(ctx, args[1:], stdout)
	case "store":
		err = cmdStore(ctx, args[1:], stdout)
	case "identity":
		err = cmdIdentity(args[1:], stdout)
	case "acme":
		err = cmdACME(ctx, args[1:], stdout)
	case "version":
		fmt.Fprintln(stdout, versionString())
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
	default:
		fmt.Fprintf(stderr, "pkid: unknown command %q\n\n%s", args[0], usage)
		return 2
	}
	switch {
	case err == nil:
		return 0
	case errors.Is(err, flag.ErrHelp):
		return 2
	case errors.Is(err, errUsage):
		if err != errUsage { // the flag package has already said what was wrong otherwise
			fmt.Fprintf(stderr, "pkid %s: %v\n", args[0], err)
		}
		return 2
	default:
		fmt.Fprintf(stderr, "pkid %s: %v\n", args[0], err)
		return 1
	}
}

// Version and Commit are set with -ldflags at build time.
var (
	Version = "dev"
	Commit  = ""
)

// commit is the build's VCS revision: set by ldflags, else from the build info.
func commit() string {
	if Commit != "" {
		return Commit
	}
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" {
				return s.Value
			}
		}
	}
	return "unknown"
}

func versionString() string {
	return fmt.Sprintf("pkid %s (commit %s, %s)", Version, commit(), runtime.Version())
}

func newFlags(name string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	return fs
}

func configFlag(fs *flag.FlagSet) *string {
	return fs.String("config", "/etc/pkid/pkid.yaml", "config file")
}
