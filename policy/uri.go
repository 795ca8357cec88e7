package policy

import (
	"fmt"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"unicode/utf8"
)

// URIs (RFC 3986) in SANs and identities. A URI is parsed into its parts
// once, each part canonicalized (RFC 3986 §6.2.2: case, percent-encoding;
// the host by pkid's DNS and IP rules), and everything a relying party might
// resolve differently from a policy is refused outright: userinfo, a query
// or a fragment, and dot-segments in any encoding — a policy that allows
// /ns/team-a/* must never issue /ns/team-a/../team-b/x.

// maxSPIFFEID is the SPIFFE-ID specification's limit (§2.3) on a SPIFFE ID.
const maxSPIFFEID = 2048

// defaultPorts are the ports that the schemes pkid normalizes (RFC 3986
// §6.2.3) imply: https://h:443/x and https://h/x name the same resource, so
// they must be one value, or a deny list written without the port is walked
// around with it.
var defaultPorts = map[string]string{"http": "80", "https": "443"}

// uriValue is a canonical URI by parts. With an authority, it is
// scheme://host[:port]path; without one, scheme:opaque. An http or https
// URI always has an authority, a path (at least "/") and no default port.
type uriValue struct {
	scheme    string
	authority bool
	host      string // a canonical DNS name, IPv4 text or [IPv6]; a glob in patterns
	port      string // decimal without leading zeros, never the scheme's default; or ""
	path      string // "" or starting with "/"; never "" for http and https
	opaque    string // everything after "scheme:" when there is no authority
}

func (u uriValue) String() string {
	if !u.authority {
		return u.scheme + ":" + u.opaque
	}
	s := u.scheme + "://" + u.host
	if u.port != "" {
		s += ":" + u.port
	}
	return s + u.path
}

// errURI builds the client-facing error for a refused URI.
func errURI(format string, a ...any) error {
	return fmt.Errorf("Invalid URI: "+format, a...)
}

// canonicalURI parses a uniformResourceIdentifier SAN value. RFC 5280
// §4.2.1.6 requires an absolute URI with a scheme and a scheme-specific part,
// and, when it has an authority, a host that is a fully qualified domain
// name or an IP address.
func canonicalURI(raw string) (uriValue, error) {
	u, err := parseURIParts(raw, false)
	if err != nil {
		return uriValue{}, err
	}
	// crypto/x509 encodes a URI as u.String() and parses it back with
	// url.Parse: refuse what would not survive that unchanged, so that the
	// certificate holds exactly the canonical text.
	s := u.String()
	if pu, err := url.Parse(s); err != nil || pu.String() != s {
		return uriValue{}, errURI("not in a form a certificate can hold")
	}
	return u, nil
}

// parseURIParts is the parser values and patterns share. In a pattern, `*`
// may appear in the host, the path and the opaque part, and is kept as a
// glob; a pattern's scheme and port are exact.
func parseURIParts(raw string, pattern bool) (uriValue, error) {
	if raw == "" {
		return uriValue{}, errURI("empty")
	}
	for i := 0; i < len(raw); i++ {
		if c := raw[i]; c <= 0x20 || c == 0x7f {
			return uriValue{}, errURI("spaces and control characters are not allowed")
		}
	}
	if strings.ContainsAny(raw, "?#") {
		// Refused even when empty: a query or a fragment is a second place
		// for meaning that no policy here looks at.
		return uriValue{}, errURI("a query or a fragment is not allowed")
	}
	colon := strings.IndexByte(raw, ':')
	if colon <= 0 || !validScheme(raw[:colon]) {
		return uriValue{}, errURI("an absolute URI with a scheme is required")
	}
	u := uriValue{scheme: strings.ToLower(raw[:colon])}
	rest := raw[colon+1:]
	spiffe := u.scheme == "spiffe"

	if !strings.HasPrefix(rest, "//") {
		if spiffe {
			return uriValue{}, errURI("a SPIFFE ID needs a trust domain (spiffe://trust-domain/path)")
		}
		if _, ok := defaultPorts[u.scheme]; ok {
			// RFC 9110 §4.2: an http(s) URI is "//" authority path-abempty.
			// Browsers read https:host/x as https://host/x (WHATWG URL), which
			// no pattern with an authority would match.
			return uriValue{}, errURI("an %s URI needs an authority (%s://host/path, RFC 9110 section 4.2)", u.scheme, u.scheme)
		}
		if rest == "" {
			return uriValue{}, errURI("an absolute URI with a scheme-specific part is required")
		}
		opaque, err := canonicalPath(rest)
		if err != nil {
			return uriValue{}, err
		}
		if i := strings.IndexByte(opaque, ':'); u.scheme == "urn" && i > 0 {
			// The namespace identifier is case-insensitive (RFC 8141 §3.1).
			opaque = strings.ToLower(opaque[:i]) + opaque[i:]
		}
		u.opaque = opaque
		return u, nil
	}

	u.authority = true
	authority, path := rest[2:], ""
	if i := strings.IndexByte(authority, '/'); i >= 0 {
		authority, path = authority[:i], authority[i:]
	}
	if strings.Contains(authority, "@") {
		return uriValue{}, errURI("userinfo is not allowed")
	}
	host, port, err := splitHostPort(authority)
	if err != nil {
		return uriValue{}, err
	}
	if port != "" {
		if spiffe {
			return uriValue{}, errURI("a SPIFFE ID has no port (SPIFFE-ID §2.1)")
		}
		if u.port, err = canonicalPort(port); err != nil {
			return uriValue{}, err
		}
	}
	if u.host, err = canonicalHost(host, spiffe, pattern); err != nil {
		return uriValue{}, err
	}
	if u.path, err = canonicalPath(path); err != nil {
		return uriValue{}, err
	}
	if def, ok := defaultPorts[u.scheme]; ok {
		// Scheme-based normalization (RFC 3986 §6.2.3): the default port is
		// no port, and an empty path is "/" (RFC 9110 §4.2.3).
		if u.port == def {
			u.port = ""
		}
		if u.path == "" {
			u.path = "/"
		}
		// Servers merge empty segments (and many decode %2F first), so
		// /a//b is /a/b to them but another path to a pattern.
		if decoded, _ := url.PathUnescape(u.path); strings.Contains(decoded, "//") {
			return uriValue{}, errURI("an empty path segment ('//') is not allowed in an %s URI", u.scheme)
		}
	}
	if spiffe {
		if err := checkSPIFFEPath(u.path, pattern); err != nil {
			return uriValue{}, err
		}
		if !pattern && len(u.String()) > maxSPIFFEID {
			return uriValue{}, errURI("a SPIFFE ID is at most %d bytes (SPIFFE-ID §2.3)", maxSPIFFEID)
		}
	}
	return u, nil
}

// validScheme checks RFC 3986 §3.1: ALPHA *( ALPHA / DIGIT / "+" / "-" / "." ).
func validScheme(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z':
		case i > 0 && (c >= '0' && c <= '9' || c == '+' || c == '-' || c == '.'):
		default:
			return false
		}
	}
	return s != ""
}

// splitHostPort splits an authority without userinfo into host and port
// (RFC 3986 §3.2.2, §3.2.3). An IP literal keeps its brackets.
func splitHostPort(authority string) (host, port string, err error) {
	if strings.HasPrefix(authority, "[") {
		end := strings.IndexByte(authority, ']')
		if end < 0 {
			return "", "", errURI("an IP literal lacks its closing bracket")
		}
		host, rest := authority[:end+1], authority[end+1:]
		if rest == "" {
			return host, "", nil
		}
		if rest[0] != ':' {
			return "", "", errURI("unexpected characters after the IP literal")
		}
		if rest == ":" {
			return "", "", errURI("an empty port is not allowed")
		}
		return host, rest[1:], nil
	}
	if i := strings.LastIndexByte(authority, ':'); i >= 0 {
		if i == len(authority)-1 {
			return "", "", errURI("an empty port is not allowed")
		}
		return authority[:i], authority[i+1:], nil
	}
	return authority, "", nil
}

// canonicalPort returns a port in decimal without leading zeros, 1..65535.
// parseURIParts then drops the scheme's default port; any other port is
// kept, and only a pattern that names it admits it (uriPattern.match).
func canonicalPort(port string) (string, error) {
	for i := 0; i < len(port); i++ {
		if port[i] < '0' || port[i] > '9' {
			return "", errURI("the port must be a number")
		}
	}
	n, err := strconv.Atoi(port)
	if err != nil || n < 1 || n > 65535 {
		return "", errURI("the port must be between 1 and 65535")
	}
	return strconv.Itoa(n), nil
}

// canonicalHost canonicalizes the host of a URI with an authority: an IP
// literal or an IPv4 address by the IP rules, a SPIFFE trust domain by the
// SPIFFE rules, anything else as a DNS name (percent-encoding decoded first,
// RFC 3986 §3.2.2; a non-ASCII host, as in an IRI, converted to A-labels,
// RFC 3987 §3.1). In a pattern, a host with `*` is a DNS pattern.
func canonicalHost(host string, spiffe, pattern bool) (string, error) {
	if host == "" {
		return "", errURI("a URI with an authority needs a host (RFC 5280 section 4.2.1.6)")
	}
	if strings.HasPrefix(host, "[") {
		inner := host[1 : len(host)-1]
		if strings.HasPrefix(inner, "v") || strings.HasPrefix(inner, "V") {
			return "", errURI("IPvFuture literals are not supported")
		}
		if spiffe {
			return "", errURI("a SPIFFE trust domain is a name, not an IP literal")
		}
		a, err := netip.ParseAddr(inner)
		if err != nil || !a.Is6() || a.Zone() != "" || strings.Contains(inner, "%") {
			return "", errURI("the IP literal is not a valid IPv6 address")
		}
		if a = a.Unmap(); a.Is4() {
			return a.String(), nil
		}
		return "[" + a.String() + "]", nil
	}
	decoded, err := url.PathUnescape(host)
	if err != nil || !utf8.ValidString(decoded) {
		return "", errURI("the host has an invalid percent-encoding")
	}
	if spiffe {
		return canonicalTrustDomain(decoded, pattern)
	}
	if pattern && strings.Contains(decoded, "*") {
		h, err := canonicalDNSPattern(decoded)
		if err != nil {
			return "", errURI("the host pattern is not valid: %v", err)
		}
		return h, nil
	}
	if strings.Trim(decoded, "0123456789.") == "" {
		a, err := netip.ParseAddr(decoded)
		if err != nil || !a.Is4() {
			return "", errURI("the host is not a valid IPv4 address")
		}
		return a.String(), nil
	}
	h, err := canonicalDNS(decoded, false)
	if err != nil {
		return "", errURI("the host is not valid: %v", err)
	}
	return h, nil
}

// canonicalTrustDomain checks a SPIFFE trust domain (SPIFFE-ID §2.1):
// lower-cased, only [a-z0-9._-], and — because crypto/x509 refuses a URI
// host with an empty label, and RFC 5280 wants a domain name — no empty
// label. A pattern may also hold `*`.
func canonicalTrustDomain(td string, pattern bool) (string, error) {
	td = strings.ToLower(td)
	for i := 0; i < len(td); i++ {
		c := td[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-' || pattern && c == '*') {
			return "", errURI("a SPIFFE trust domain holds only letters, digits, '.', '_' and '-' (SPIFFE-ID §2.1)")
		}
	}
	for _, label := range strings.Split(td, ".") {
		if label == "" {
			return "", errURI("the SPIFFE trust domain has an empty label")
		}
	}
	return td, nil
}

// canonicalPath canonicalizes a path (or the opaque part of a URI without
// authority) segment by segment: percent-encoded unreserved characters are
// decoded and every other escape is written with upper-case hex (RFC 3986
// §6.2.2.1, §6.2.2.2); a character outside pchar is refused rather than
// escaped, so that what the client sent and what is signed differ only by
// those two rules. A dot-segment (RFC 3986 §3.3, §5.2.4) is refused in any
// encoding, even hidden behind an encoded '/' or '\' that some servers
// decode before they normalize.
func canonicalPath(path string) (string, error) {
	if path == "" {
		return "", nil
	}
	segments := strings.Split(path, "/")
	for i, seg := range segments {
		canon, err := canonicalSegment(seg)
		if err != nil {
			return "", err
		}
		decoded, _ := url.PathUnescape(canon) // canonicalSegment checked every escape
		for _, piece := range strings.FieldsFunc(decoded, func(r rune) bool { return r == '/' || r == '\\' }) {
			if piece == "." || piece == ".." {
				return "", errURI("a path with '.' or '..' segments is not allowed")
			}
		}
		segments[i] = canon
	}
	return strings.Join(segments, "/"), nil
}

const upperHex = "0123456789ABCDEF"

// canonicalSegment canonicalizes one path segment (RFC 3986 §3.3 pchar).
func canonicalSegment(seg string) (string, error) {
	var b strings.Builder
	for i := 0; i < len(seg); i++ {
		c := seg[i]
		switch {
		case c == '%':
			if i+2 >= len(seg) || !isHex(seg[i+1]) || !isHex(seg[i+2]) {
				return "", errURI("an invalid percent-encoding")
			}
			v := unhex(seg[i+1])<<4 | unhex(seg[i+2])
			if isUnreserved(v) {
				b.WriteByte(v)
			} else {
				b.WriteByte('%')
				b.WriteByte(upperHex[v>>4])
				b.WriteByte(upperHex[v&15])
			}
			i += 2
		case isUnreserved(c) || strings.IndexByte("!$&'()*+,;=:@", c) >= 0:
			b.WriteByte(c)
		case c >= utf8.RuneSelf:
			return "", errURI("characters outside ASCII must be percent-encoded")
		default:
			return "", errURI("the character %q is not allowed in a path", c)
		}
	}
	return b.String(), nil
}

// checkSPIFFEPath applies SPIFFE-ID §2.2 to a canonical path: empty, or
// segments of [A-Za-z0-9._-] (a pattern may add `*`), none empty (so no
// trailing '/'), none '.' or '..'.
func checkSPIFFEPath(path string, pattern bool) error {
	if path == "" {
		return nil
	}
	for _, seg := range strings.Split(path[1:], "/") {
		if seg == "" {
			return errURI("a SPIFFE ID path has no empty segment and no trailing '/' (SPIFFE-ID §2.2)")
		}
		for i := 0; i < len(seg); i++ {
			c := seg[i]
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-' || pattern && c == '*') {
				return errURI("a SPIFFE ID path holds only letters, digits, '.', '_' and '-' (SPIFFE-ID §2.2)")
			}
		}
	}
	return nil
}

func isUnreserved(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '.' || c == '_' || c == '~'
}

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case c >= '0' && c <= '9':
		return c - '0'
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10
	default:
		return c - 'A' + 10
	}
}

// uriPattern is a URI pattern by parts (DESIGN §3): `*` alone matches any
// URI without a port; otherwise the scheme is exact, the host a DNS glob,
// the port equal, and the path a `*` glob — a `*` may cross '/' but never
// leaves the path, so spiffe://example.internal/* never matches another
// trust domain. A pattern without authority (urn:uuid:*) globs over its
// opaque part.
type uriPattern struct {
	any bool
	u   uriValue
}

func parseURIPattern(raw string) (uriPattern, error) {
	if raw == "*" {
		return uriPattern{any: true}, nil
	}
	u, err := parseURIParts(raw, true)
	if err != nil {
		return uriPattern{}, err
	}
	return uriPattern{u: u}, nil
}

func (p uriPattern) String() string {
	if p.any {
		return "*"
	}
	return p.u.String()
}

// literal reports whether the pattern matches exactly one value.
func (p uriPattern) literal() bool {
	return !p.any && !strings.Contains(p.u.String(), "*")
}

// match reports whether v matches the pattern, used as mode says. A port
// is the one part a pattern may leave unsaid, and each mode fails safe
// there (DESIGN §3, "no port unless the pattern has one"): to admit, a
// value with a port needs a pattern that names that port (`*` admits only
// port-less values); to deny, a pattern without a port denies the value
// whatever its port, one with a port only that port.
func (p uriPattern) match(v uriValue, mode matchMode) bool {
	portMatches := p.u.port == v.port || mode == denying && p.u.port == ""
	switch {
	case p.any:
		return v.port == "" || mode == denying
	case p.u.scheme != v.scheme || p.u.authority != v.authority:
		return false
	case !v.authority:
		return Match(p.u.opaque, v.opaque)
	default:
		return Match(p.u.host, v.host) && portMatches && Match(p.u.path, v.path)
	}
}
