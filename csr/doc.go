// Package csr verifies a PKCS #10 certificate signing request (RFC 2986)
// that a client sends to pkid's sign-certificate endpoint (DESIGN.md §11)
// and reduces it to what pkid may take from it: the public key, the subject
// CN, and the subjectAltName, keyUsage and extKeyUsage the client requests.
//
// Parse is strict on purpose: rather than silently dropping what pkid will
// not certify, it refuses a CSR that asks for anything else — another
// subject attribute, another requested extension, another CSR attribute, a
// CA certificate — so a client never receives a certificate that differs
// from what it asked for without being told. Every refusal is an [*Error]
// whose text is safe for the client and names the problem (the API answers
// it as 400). Checks run in a fixed order, and the first failure is
// reported:
//
//  1. the PEM text: at most 4096 characters after trimming, exactly one
//     CERTIFICATE REQUEST (or NEW CERTIFICATE REQUEST) block and nothing
//     else but whitespace (RFC 7468 §7);
//  2. the DER: it parses with crypto/x509, carries nothing after the
//     request, and its outer structure re-encodes to the same bytes;
//  3. the self-signature verifies, and its algorithm is neither MD5- nor
//     SHA-1-based;
//  4. the key passes [goodkey.Policy.Check];
//  5. the subject holds at most one attribute, CN, of at most 100
//     characters;
//  6. the extensionRequest attribute (RFC 2985 §5.4.2) requests only
//     subjectAltName (dNSName, iPAddress, rfc822Name,
//     uniformResourceIdentifier), keyUsage, extKeyUsage (the six purposes
//     pkid names) and basicConstraints with cA false, each at most once;
//  7. the request carries no attribute other than extensionRequest.
//
// The values in a [Request] are the CSR's own strings. Parse does not
// canonicalize them: the caller runs them through the same canonical-value
// parsers as the JSON API (policy.ParseSAN, policy.ParseCommonName) before
// policy and signing, so that a CSR and a JSON request are judged alike.
//
// The package is pure: no I/O, no clock, no package-level state.
package csr
