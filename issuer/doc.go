// Package issuer is pkid's issuance pipeline (DESIGN.md §5).
//
// Given an authenticated identity and a schema-valid request it looks up the
// profile, authorizes the identity, applies the rate limit, evaluates the
// policy and the CA's constraints, builds the to-be-signed certificate, and
// then, in this order: reserves the serial in the store (durable, status
// pending); lints the exact TBS signed by a throw-away key of the CA's type;
// signs with the CA key through crypto.Signer; verifies the signature with
// the CA certificate and that the signed TBS equals the linted one; finalizes
// the record together with its audit entry (durable); and only then returns
// the result.
//
// The package imports no HTTP, SQL, PKCS#11 or Prometheus code. It declares
// the seams it needs — Store, Linter, Observer, Clock — and the daemon wires
// real implementations into them. Errors leave the package as *Error values
// carrying a transport-neutral Kind; the API maps kinds to HTTP statuses.
package issuer
