CREATE TABLE IF NOT EXISTS certificates (
	id                  TEXT PRIMARY KEY,
	serial              TEXT NOT NULL UNIQUE,
	profile             TEXT NOT NULL,
	ca                  TEXT NOT NULL,
	identity            TEXT NOT NULL,
	request_id          TEXT NOT NULL,
	common_name         TEXT NOT NULL,
	alt_names           TEXT NOT NULL,
	key_usages          TEXT NOT NULL,
	ext_key_usages      TEXT NOT NULL,
	signature_algorithm TEXT NOT NULL,
	key_algorithm       TEXT NOT NULL,
	not_before          TEXT NOT NULL,
	not_after           TEXT NOT NULL,
	status              TEXT NOT NULL CHECK (status IN ('pending', 'issued', 'aborted')),
	der                 BLOB,
	created_at          TEXT NOT NULL,
	updated_at          TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS certificates_status ON certificates(status);
CREATE TABLE IF NOT EXISTS audit (
	seq       INTEGER PRIMARY KEY,
	at        TEXT NOT NULL,
	event     TEXT NOT NULL,
	prev_hash TEXT NOT NULL,
	hash      TEXT NOT NULL
);
CREATE TRIGGER IF NOT EXISTS audit_no_update BEFORE UPDATE ON audit
	BEGIN SELECT RAISE(ABORT, 'audit log is append-only'); END;
CREATE TRIGGER IF NOT EXISTS audit_no_delete BEFORE DELETE ON audit
	BEGIN SELECT RAISE(ABORT, 'audit log is append-only'); END;
