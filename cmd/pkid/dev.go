package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"

	"github.com/pkid/pkid/daemon"
)

const devUsage = "pkid dev [--listen-host 127.0.0.1] [--api-port N] [--metrics-port N] [--public-port N] [--module PATH] [--json FILE]"

// cmdDev serves a throw-away pkid on loopback until SIGINT or SIGTERM, then
// deletes everything it made.
func cmdDev(ctx context.Context, args []string, stdout io.Writer, log *slog.Logger) error {
	fs := newFlags("dev")
	var o daemon.DevOptions
	fs.StringVar(&o.ListenHost, "listen-host", "127.0.0.1", "loopback address or localhost to listen on")
	fs.IntVar(&o.APIPort, "api-port", 0, "API port (0: a free one)")
	fs.IntVar(&o.MetricsPort, "metrics-port", 0, "metrics port (0: a free one)")
	fs.IntVar(&o.PublicPort, "public-port", 0, "CRL and OCSP port (0: a free one)")
	fs.StringVar(&o.Module, "module", os.Getenv("PKID_HSM_MODULE"), "SoftHSM2 module (default: the installed one)")
	fs.StringVar(&o.JSONFile, "json", "", "write the environment as JSON to this file (mode 0600) instead of printing it")
	if err := fs.Parse(args); err != nil || fs.NArg() != 0 {
		return fmt.Errorf("%w: %s", errUsage, devUsage)
	}
	if o.JSONFile != "" {
		abs, err := filepath.Abs(o.JSONFile)
		if err != nil {
			return fmt.Errorf("--json: %w", err)
		}
		o.JSONFile = abs
	}
	return daemon.Dev(ctx, o, daemon.Info{Version: Version, Commit: commit()}, log, func(e daemon.DevInfo) {
		if o.JSONFile != "" {
			fmt.Fprintf(stdout, "pkid dev: ready (pid %d); environment in %s; stop with Ctrl-C or SIGTERM, which deletes everything\n", e.PID, o.JSONFile)
			return
		}
		printDev(stdout, e)
	})
}

// printDev shows the environment to a person, with a request to try. The
// credentials are shown because they die with this process's token.
func printDev(w io.Writer, e daemon.DevInfo) {
	names := make([]string, 0, len(e.Profiles))
	for n := range e.Profiles {
		names = append(names, n)
	}
	sort.Strings(names)
	fmt.Fprintf(w, `pkid dev: ready (pid %d); Ctrl-C or SIGTERM stops it and deletes %s with its token

  API (mTLS or Bearer)   %s
  metrics                %s/metrics
  CRLs, CA certs, OCSP   %s
  server CA bundle       %s   (SSL_CERT_FILE for clients)
  PKI root               %s
  client certificate     %s
  client key             %s   (identity %s)
  machine identity       %s: clientId %s clientSecret %s
  static Bearer token    %s
  project slug           %s
  profiles              `, e.PID, e.Dir, e.APIURL, e.MetricsURL, e.PublicURL, e.CABundle, e.RootCA,
		e.ClientCertificate, e.ClientKey, e.ClientIdentity, e.MachineIdentity, e.ClientID, e.ClientSecret, e.StaticToken, e.ProjectSlug)
	for _, n := range names {
		fmt.Fprintf(w, " %s=%s", n, e.Profiles[n])
	}
	fmt.Fprintf(w, `

try:
  curl --cacert %s --cert %s --key %s \
    -H 'Content-Type: application/json' %s/api/v3/pki/certificates/issue-certificate \
    -d '{"profileId":"%s","commonName":"app.example.internal","ttl":"1d","signatureAlgorithm":"ECDSA-SHA256","keyAlgorithm":"EC_prime256v1","altNames":[{"type":"dns_name","value":"app.example.internal"}]}'
`, e.CABundle, e.ClientCertificate, e.ClientKey, e.APIURL, e.Profiles["web-server"])
}
