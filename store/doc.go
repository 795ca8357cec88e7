// Package store keeps certificate records and the hash-chained audit log in
// SQLite (modernc.org/sqlite, pure Go) in WAL mode with synchronous=FULL.
//
// Every write goes through one writer goroutine that groups the writes
// waiting at that moment into a single transaction and a single fsync
// (group commit). Each caller is answered only after the commit that holds
// its write is durable; a write that fails inside a group is rolled back to
// its own savepoint without disturbing the others.
//
// The audit log is append-only (triggers refuse UPDATE and DELETE) and each
// entry's hash commits to the previous entry's hash, so VerifyAudit detects
// an altered, removed or reordered entry.
package store
