// Package validate checks ACME challenges (RFC 8555 §8.3 http-01, §8.4
// dns-01; RFC 8737 tls-alpn-01; RFC 8738 for IP identifiers) by
// connecting out to the identifier, and is built so that a client cannot
// turn that connection against the network (DESIGN §17):
//
//   - it connects only to the identifier's own addresses, on the one port
//     its challenge type uses (80, 443, or acme.httpPort / tlsALPNPort),
//     and asks DNS only for the identifier's _acme-challenge TXT record;
//   - http-01 follows a redirect only to the same host, scheme and port
//     (a redirect anywhere else fails the challenge before any connection
//     is made), at most maxRedirects times, and never uses a proxy;
//   - every validation has one deadline (Config.Timeout) over all its
//     connections, and reads at most maxBody bytes of a response;
//   - HostOverrides, which point names at addresses without DNS, exist
//     for tests and take only loopback addresses.
//
// A failed validation is a *Failure naming the ACME error type the
// challenge's problem document carries. The package keeps no state
// between validations and starts no goroutine that outlives one.
package validate

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// Defaults of Config.
const (
	DefaultHTTPPort    = 80
	DefaultTLSALPNPort = 443
	DefaultTimeout     = 10 * time.Second
	dialTimeout        = 5 * time.Second
	maxBody            = 4096 // a key authorization is ~90 bytes
	maxRedirects       = 10
)

// Config says where challenges are checked.
type Config struct {
	HTTPPort    int // default 80
	TLSALPNPort int // default 443
	// Resolvers are the DNS servers (host:port, IP literals) that answer
	// dns-01 queries and resolve identifiers; empty: the system's.
	Resolvers []string
	// HostOverrides resolve names without DNS: for tests only, and every
	// address must be loopback.
	HostOverrides map[string]netip.Addr
	// Timeout bounds one validation, all its connections included.
	Timeout time.Duration
}

// Validator checks challenges. It is safe for concurrent use.
type Validator struct {
	cfg      Config
	resolver *net.Resolver
}

// New validates cfg and applies its defaults; every problem is reported.
func New(cfg Config) (*Validator, error) {
	var problems []error
	if cfg.HTTPPort == 0 {
		cfg.HTTPPort = DefaultHTTPPort
	}
	if cfg.TLSALPNPort == 0 {
		cfg.TLSALPNPort = DefaultTLSALPNPort
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	for name, port := range map[string]int{"httpPort": cfg.HTTPPort, "tlsALPNPort": cfg.TLSALPNPort} {
		if port < 1 || port > 65535 {
			problems = append(problems, fmt.Errorf("%s: %d is not a TCP port", name, port))
		}
	}
	for _, r := range cfg.Resolvers {
		host, port, err := net.SplitHostPort(r)
		if _, perr := netip.ParseAddr(host); err != nil || perr != nil || port == "" {
			problems = append(problems, fmt.Errorf("resolvers: %q is not IP:port", r))
		}
	}
	overrides := map[string]netip.Addr{}
	for name, addr := range cfg.HostOverrides {
		if !addr.IsLoopback() {
			problems = append(problems, fmt.Errorf("hostOverrides: %s points at %s, which is not a loopback address; overrides are for tests only", name, addr))
		}
		overrides[strings.ToLower(strings.TrimSuffix(name, "."))] = addr
	}
	if len(problems) > 0 {
		return nil, errors.Join(problems...)
	}
	cfg.HostOverrides = overrides
	v := &Validator{cfg: cfg, resolver: net.DefaultResolver}
	if len(cfg.Resolvers) > 0 {
		servers := append([]string(nil), cfg.Resolvers...)
		v.resolver = &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
			// Only the configured servers are ever asked, whatever the
			// system's resolv.conf says; the first that answers serves.
			var d net.Dialer
			var err error
			for _, s := range servers {
				var c net.Conn
				if c, err = d.DialContext(ctx, network, s); err == nil {
					return c, nil
				}
			}
			return nil, err
		}}
	}
	return v, nil
}

// Challenge is one challenge to check.
type Challenge struct {
	Type       string // http-01, dns-01 or tls-alpn-01
	Identifier string // "dns" or "ip"
	Value      string // the canonical name (without "*." for a wildcard) or address
	Token      string
	// KeyAuthorization is token || '.' || the account key's thumbprint
	// (RFC 8555 §8.1).
	KeyAuthorization string
}

// Failure is a validation that did not pass: Type is the ACME error type
// without its urn:ietf:params:acme:error: prefix (connection, dns, tls,
// incorrectResponse, unauthorized, malformed), Detail is safe to show.
type Failure struct {
	Type   string
	Detail string
}

func (f *Failure) Error() string { return f.Type + ": " + f.Detail }

func fail(typ, format string, a ...any) *Failure {
	return &Failure{Type: typ, Detail: fmt.Sprintf(format, a...)}
}

// Validate checks c within the configured timeout: nil when it passes,
// a *Failure when it does not.
func (v *Validator) Validate(ctx context.Context, c Challenge) error {
	ctx, cancel := context.WithTimeout(ctx, v.cfg.Timeout)
	defer cancel()
	if c.Token == "" || c.KeyAuthorization == "" || !strings.HasPrefix(c.KeyAuthorization, c.Token+".") {
		return fail("malformed", "the challenge has no key authorization")
	}
	var err error
	switch c.Type {
	case "http-01":
		err = v.http01(ctx, c)
	case "tls-alpn-01":
		err = v.tlsALPN01(ctx, c)
	case "dns-01":
		err = v.dns01(ctx, c)
	default:
		return fail("malformed", "unknown challenge type %q", c.Type)
	}
	if err != nil && ctx.Err() != nil {
		var f *Failure
		if !errors.As(err, &f) || f.Type == "connection" {
			return fail("connection", "no answer from %s within %s", c.Value, v.cfg.Timeout)
		}
	}
	return err
}

// addresses resolves the identifier: an IP identifier is its address, a
// name its override or its DNS addresses.
func (v *Validator) addresses(ctx context.Context, c Challenge) ([]netip.Addr, error) {
	if c.Identifier == "ip" {
		a, err := netip.ParseAddr(c.Value)
		if err != nil {
			return nil, fail("malformed", "%q is not an IP address", c.Value)
		}
		return []netip.Addr{a.Unmap()}, nil
	}
	if a, ok := v.cfg.HostOverrides[c.Value]; ok {
		return []netip.Addr{a}, nil
	}
	addrs, err := v.resolver.LookupNetIP(ctx, "ip", c.Value)
	if err != nil || len(addrs) == 0 {
		return nil, fail("dns", "could not resolve %s", c.Value)
	}
	out := make([]netip.Addr, 0, len(addrs))
	for _, a := range addrs {
		out = append(out, a.Unmap())
	}
	return out, nil
}

// dial connects to the first of the identifier's addresses that answers
// on port, within dialTimeout each.
func (v *Validator) dial(ctx context.Context, c Challenge, port int) (net.Conn, error) {
	addrs, err := v.addresses(ctx, c)
	if err != nil {
		return nil, err
	}
	d := net.Dialer{Timeout: dialTimeout}
	for _, a := range addrs {
		conn, err := d.DialContext(ctx, "tcp", net.JoinHostPort(a.String(), strconv.Itoa(port)))
		if err == nil {
			return conn, nil
		}
	}
	return nil, fail("connection", "could not connect to %s on port %d", c.Value, port)
}

// digest is base64url(SHA-256(key authorization)), dns-01's TXT value.
func digest(keyAuthorization string) string {
	sum := sha256.Sum256([]byte(keyAuthorization))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// dns01 looks up _acme-challenge.<name> TXT (RFC 8555 §8.4).
func (v *Validator) dns01(ctx context.Context, c Challenge) error {
	if c.Identifier != "dns" {
		return fail("malformed", "dns-01 validates DNS names only")
	}
	name := "_acme-challenge." + c.Value
	records, err := v.resolver.LookupTXT(ctx, name)
	if err != nil {
		var de *net.DNSError
		if errors.As(err, &de) && de.IsNotFound {
			return fail("unauthorized", "no TXT record at %s", name)
		}
		return fail("dns", "could not look up the TXT records of %s", name)
	}
	want := digest(c.KeyAuthorization)
	for _, r := range records {
		if strings.TrimSpace(r) == want {
			return nil
		}
	}
	return fail("unauthorized", "no TXT record at %s holds the key authorization's digest (%d records)", name, len(records))
}
