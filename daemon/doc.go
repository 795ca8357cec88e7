// Package daemon wires pkid together and runs it: config → token, store,
// CAs, profiles, linter and issuer → the mTLS API listener, with signal
// handling and graceful shutdown. It is the only package that knows every
// other one; the core (issuer, policy) knows none of them.
package daemon
