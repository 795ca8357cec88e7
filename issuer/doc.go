// Package issuer is pkid's issuance core (DESIGN.md §5).
//
// Two types divide the work. An Issuer belongs to one configuration
// generation: given an authenticated, typed identity and a schema-valid
// request whose names are canonical values, it looks up the profile,
// authorizes the identity, applies the rate limit, evaluates the policy
// and the CA's constraints and builds the to-be-signed certificate. The
// Service is built once and outlives reloads: it is the only code that
// makes a token key sign, and every signature it makes goes, in this
// order, through: reserve the serial (durable, status pending, with the
// hash of the exact TBS); lint that exact TBS signed by a throw-away key of
// the CA's type; sign those bytes with the CA key through crypto.Signer;
// verify the signature with the CA certificate and that the signed TBS is
// the linted one; finalize the record together with its audit entry
// (durable); and only then answer. It also signs the audit log's
// checkpoints with the audit key, and writes refusals within their cap.
//
// The package imports no HTTP, SQL, PKCS#11 or Prometheus code. It declares
// the seams it needs — Store, Linter, Observer, Clock — and the daemon wires
// real implementations into them. Errors leave the package as *Error values
// carrying a transport-neutral Kind; the API maps kinds to HTTP statuses.
package issuer
