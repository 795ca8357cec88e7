// Package policy evaluates certificate requests against a profile's policy.
//
// It is pure: no I/O, no clock, no HTTP, SQL or PKCS#11. It owns the single
// duration grammar pkid uses everywhere (request ttl, policy maxima, config
// durations), the `*`-pattern matcher used for names and identities, the
// validation of subject alternative name values, and the policy rules in
// Infisical's shape (required / allowed / denied) with its exact wording.
package policy
