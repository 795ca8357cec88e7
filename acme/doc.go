// Package acme is pkid's ACME server (RFC 8555, DESIGN §17): one
// directory per profile that enables it, at /acme/<profile slug>/directory
// on the API listener, so that certbot, lego, cert-manager, Caddy and
// Traefik get certificates without any Infisical client.
//
// ACME requests authenticate by JWS, not by client certificate. Every
// POST is checked in one order (verify): the flattened JWS form, an
// algorithm of the allow-list (ES256, ES384, RS256, EdDSA; else
// badSignatureAlgorithm), the url header equal to the request's URL
// (else unauthorized), the key — an embedded jwk only for new-account and
// revoke-cert, else the kid of a valid account of this directory (else
// accountDoesNotExist) —, the signature, and last the nonce, which the
// store accepts once (else badNonce). Every answer carries a fresh nonce;
// every refusal is an application/problem+json document with an
// urn:ietf:params:acme:error: type, never a 500 for a client's mistake.
//
// The package is an edge, like api: it holds no keys and signs nothing.
// An account is the typed identity acme:<account id>, which no profile
// lists: a profile that enables ACME admits its accounts. The profile's
// policy judges an order's identifiers at new-order
// (Issuer.CheckACMEIdentifiers: rejectedIdentifier) and the whole
// certificate again at finalize (Issuer.SignACME), where the CSR must
// name exactly the order's identifiers (badCSR) and the certificate goes
// through the same pipeline, lint, record and audit entry as every other.
// Revocation (Issuer.RevokeACME) is the same store transaction as the
// API's, so the CRL and OCSP follow.
//
// State lives in the store (Store; store.ACME), so several nodes share
// accounts, orders and nonces; state.go derives what follows from the
// stored decisions and the clock. Challenges are validated in the
// background by acme/validate, in the Runtime that outlives reloads, and
// clients poll. Rate limits: per source address on every request, per
// account (or key) on requests that create state, and the profile's own
// rate limit per account at finalize.
package acme
