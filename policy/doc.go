// Package policy evaluates certificate requests against a profile's policy,
// on canonical values.
//
// It is pure: no I/O, no clock, no HTTP, SQL or PKCS#11. It owns:
//
//   - the canonical values (DESIGN §3). Every name is parsed once — ParseSAN
//     for subject alternative names, ParseCommonName for the subject CN —
//     into a value that cannot be built without passing the checks of its
//     kind, and whose text is exactly what the certificate encodes and the
//     record stores. DNS names are lower case with IDNA 2008 A-labels, IP
//     addresses are netip addresses with IPv4-mapped IPv6 unmapped, e-mail
//     domains are DNS names, URIs are taken apart and refused when a part
//     could be read two ways (userinfo, query, fragment, dot-segments).
//   - the policy in Infisical's shape (required / allowed / denied), with
//     Infisical's wording for violations. New canonicalizes every pattern
//     by the rules of its kind, so that a request is matched against
//     patterns spelled the way values are, and lists what it changed
//     (Warnings). A wildcard request is refused when it covers a denied
//     name; a `*` in a usage rule never covers code_signing, time_stamping
//     or ocsp_signing.
//   - the typed client identities of DESIGN §2 (uri:, dns:, cn:, machine:)
//     and the typed patterns that profiles list, which match only
//     identities of their own kind.
//   - the single duration grammar pkid uses everywhere (request ttl, policy
//     maxima, config durations) and the `*` matcher underneath the patterns.
package policy
