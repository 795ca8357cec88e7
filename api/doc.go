// Package api is pkid's HTTP edge: the gorilla/mux routes, the client
// identity taken from the verified mTLS certificate, strict decoding of the
// issue-certificate body into zod-style validation issues, and the one
// function that maps the issuer's error kinds to HTTP statuses and
// Infisical's error envelope. Internals never reach a client.
package api
