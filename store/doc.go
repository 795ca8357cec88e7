// Package store is the contract between pkid's core and its databases: the
// Store interface every backend implements (store/sqlite, the embedded
// default; store/postgres for several nodes, DESIGN §16), the types its
// methods exchange, and — in store/storetest — the one test suite every
// backend must pass. It holds no implementation, so the core can depend on
// it without pulling in a database driver.
//
// # What a backend promises
//
// Durability. A write method returns success only once its effect is
// durable (committed and synced). Backends group concurrent writes into one
// transaction and one sync (group commit) so that durability does not
// serialize throughput, but each caller is answered only after the commit
// that holds its own write. A write that fails inside a group is rolled back
// alone (a savepoint per write) and never takes the others down.
//
// Once submitted, a write is waited for even if its context ends: the
// caller then learns whether it became durable rather than guessing, so
// nothing durable is ever reported as failed. A context that ends before
// the write is submitted, or before the group that would hold it begins,
// fails it with nothing written. Check and Close are the exceptions: they
// return by their context's deadline even if a write is stuck (a readiness
// probe and a shutdown must not hang on a wedged disk).
//
// Nothing on error. Every method that refuses (ErrNotFound,
// ErrAlreadyRevoked, ErrNotRevocable, ErrNotPending, ErrCRLNumberUsed,
// ErrDuplicateSerial, ErrInvalidCheckpoint — all from package record,
// wrapped with context) has written nothing, not even an audit entry.
//
// Intent before signature (DESIGN §5). Reserve and ReserveCRL record what
// is about to be signed (the TBS hash) before the token signs; Finalize,
// Abort, FinalizeCRL and AbortCRL resolve the reservation and append the
// audit entry in the same transaction. A reservation left pending by a crash
// is resolved by AbortPending at start-up; a CRL number it held stays used,
// because the token may have signed a CRL with it (RFC 5280 §5.2.3).
//
// Audit entries agree with the records. A backend fills in the fields of
// an event it can derive (certificateId, serialNumber, derSha256, ca,
// crlNumber) and refuses an event that contradicts the record it resolves,
// so that VerifyAudit's cross-checks hold by construction.
//
// Several nodes (DESIGN §16). Each reservation carries the name of the node
// that made it; a node sends heartbeats, and AbortPending resolves only the
// caller's own pending rows and those of nodes whose heartbeat stopped, so
// a node that starts never aborts what a live node is signing; a running
// node calls AbortAbandoned, which leaves its own rows too, after each
// heartbeat. Lead is the
// cluster-wide lock under which one node at a time makes a CA's CRL and OCSP
// answers; the answers are stored (PutOCSPResponses) and served by every
// node. Revoked access tokens are stored so that every node refuses them.
//
// A database that cannot be reached fails calls with an error wrapping
// record.ErrUnavailable (the caller answers 503); the store reconnects by
// itself when the database is back.
//
// The audit log. One hash chain (record.ChainHash over record.EncodeEvent,
// from record.GenesisHash), sequence numbers consecutive from 1, append-only.
// Checkpoints signed by the audit key anchor it: AddCheckpoint accepts only
// a checkpoint that names an existing entry by its hash and lies beyond the
// latest one. VerifyAudit checks everything DESIGN §6 asks of `pkid audit
// verify` in one streaming pass over the log and one over the records, from
// one consistent snapshot.
package store
