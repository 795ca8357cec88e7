-- Version 2: revocation, the reservation's forensic fields, CRLs and
-- signed audit checkpoints.
--
-- SQLite cannot widen a CHECK constraint in place, so certificates is
-- rebuilt (https://sqlite.org/lang_altertable.html#otheralter); nothing
-- references it, so the rename needs no foreign-key juggling. Rows made by
-- version 1 get empty strings for the new text columns.
--
-- Times become fixed-width (nanoseconds always written) so that ORDER BY
-- on the text is chronological: version 1 wrote RFC 3339 with trailing
-- zeros trimmed, where "…:00Z" sorts after "…:00.5Z". Every version-1 time
-- is UTC ("Z"), which the rewrite relies on.

CREATE TABLE certificates_v2 (
	id                     TEXT PRIMARY KEY,
	serial                 TEXT NOT NULL UNIQUE,
	profile_id             TEXT NOT NULL,
	profile                TEXT NOT NULL,
	ca                     TEXT NOT NULL,
	issuer_hash            TEXT NOT NULL,
	identity               TEXT NOT NULL,
	request_id             TEXT NOT NULL,
	certificate_request_id TEXT NOT NULL,
	application_id         TEXT NOT NULL,
	common_name            TEXT NOT NULL,
	alt_names              TEXT NOT NULL,
	key_usages             TEXT NOT NULL,
	ext_key_usages         TEXT NOT NULL,
	signature_algorithm    TEXT NOT NULL,
	key_algorithm          TEXT NOT NULL,
	not_before             TEXT NOT NULL,
	not_after              TEXT NOT NULL,
	tbs_hash               TEXT NOT NULL,
	csr                    BLOB,
	csr_hash               TEXT NOT NULL,
	renews                 TEXT NOT NULL,
	status                 TEXT NOT NULL CHECK (status IN ('pending', 'issued', 'aborted', 'revoked')),
	der                    BLOB,
	revoked_at             TEXT NOT NULL,
	revocation_reason      TEXT NOT NULL,
	created_at             TEXT NOT NULL,
	updated_at             TEXT NOT NULL
);

INSERT INTO certificates_v2 (id, serial, profile_id, profile, ca, issuer_hash, identity, request_id,
	certificate_request_id, application_id, common_name, alt_names, key_usages, ext_key_usages,
	signature_algorithm, key_algorithm, not_before, not_after, tbs_hash, csr, csr_hash, renews, status, der,
	revoked_at, revocation_reason, created_at, updated_at)
SELECT id, serial, '', profile, ca, '', identity, request_id,
	'', '', common_name, alt_names, key_usages, ext_key_usages,
	signature_algorithm, key_algorithm,
	CASE WHEN instr(not_before, '.') = 0 THEN substr(not_before, 1, 19) || '.000000000Z'
		ELSE substr(not_before, 1, 20) || substr(substr(not_before, 21, length(not_before) - 21) || '000000000', 1, 9) || 'Z' END,
	CASE WHEN instr(not_after, '.') = 0 THEN substr(not_after, 1, 19) || '.000000000Z'
		ELSE substr(not_after, 1, 20) || substr(substr(not_after, 21, length(not_after) - 21) || '000000000', 1, 9) || 'Z' END,
	'', NULL, '', '', status, der, '', '',
	CASE WHEN instr(created_at, '.') = 0 THEN substr(created_at, 1, 19) || '.000000000Z'
		ELSE substr(created_at, 1, 20) || substr(substr(created_at, 21, length(created_at) - 21) || '000000000', 1, 9) || 'Z' END,
	CASE WHEN instr(updated_at, '.') = 0 THEN substr(updated_at, 1, 19) || '.000000000Z'
		ELSE substr(updated_at, 1, 20) || substr(substr(updated_at, 21, length(updated_at) - 21) || '000000000', 1, 9) || 'Z' END
FROM certificates;

DROP TABLE certificates;
ALTER TABLE certificates_v2 RENAME TO certificates;

CREATE INDEX certificates_status ON certificates(status);
CREATE INDEX certificates_created ON certificates(created_at, id);
CREATE INDEX certificates_revoked ON certificates(ca, serial) WHERE status = 'revoked';
-- Version-1 rows have no certificate request id; every new one is unique.
CREATE UNIQUE INDEX certificates_request ON certificates(certificate_request_id) WHERE certificate_request_id <> '';

-- A record is evidence the audit log is checked against: it is never
-- deleted, what was reserved never changes, and its status only moves
-- forward (pending → issued | aborted, issued → revoked), the DER fixed
-- once issued.
CREATE TRIGGER certificates_no_delete BEFORE DELETE ON certificates
	BEGIN SELECT RAISE(ABORT, 'certificate records are never deleted'); END;
CREATE TRIGGER certificates_forward_only BEFORE UPDATE ON certificates
	WHEN NOT (
		(OLD.status = 'pending' AND NEW.status IN ('issued', 'aborted'))
		OR (OLD.status = 'issued' AND NEW.status = 'revoked' AND NEW.der IS OLD.der)
	)
	OR NEW.id IS NOT OLD.id OR NEW.serial IS NOT OLD.serial OR NEW.profile_id IS NOT OLD.profile_id
	OR NEW.profile IS NOT OLD.profile OR NEW.ca IS NOT OLD.ca OR NEW.issuer_hash IS NOT OLD.issuer_hash
	OR NEW.identity IS NOT OLD.identity OR NEW.request_id IS NOT OLD.request_id
	OR NEW.certificate_request_id IS NOT OLD.certificate_request_id OR NEW.application_id IS NOT OLD.application_id
	OR NEW.common_name IS NOT OLD.common_name OR NEW.alt_names IS NOT OLD.alt_names
	OR NEW.key_usages IS NOT OLD.key_usages OR NEW.ext_key_usages IS NOT OLD.ext_key_usages
	OR NEW.signature_algorithm IS NOT OLD.signature_algorithm OR NEW.key_algorithm IS NOT OLD.key_algorithm
	OR NEW.not_before IS NOT OLD.not_before OR NEW.not_after IS NOT OLD.not_after
	OR NEW.tbs_hash IS NOT OLD.tbs_hash OR NEW.csr IS NOT OLD.csr OR NEW.csr_hash IS NOT OLD.csr_hash
	OR NEW.renews IS NOT OLD.renews OR NEW.created_at IS NOT OLD.created_at
	BEGIN SELECT RAISE(ABORT, 'certificate record transition not allowed'); END;

-- CRL numbers are never reused (RFC 5280 §5.2.3): rows are never deleted
-- and a new number is greater than every number the CA ever reserved,
-- whatever became of it.
CREATE TABLE crls (
	ca          TEXT NOT NULL,
	number      INTEGER NOT NULL CHECK (number > 0),
	this_update TEXT NOT NULL,
	next_update TEXT NOT NULL,
	tbs_hash    TEXT NOT NULL,
	status      TEXT NOT NULL CHECK (status IN ('pending', 'issued', 'aborted')),
	der         BLOB,
	created_at  TEXT NOT NULL,
	updated_at  TEXT NOT NULL,
	PRIMARY KEY (ca, number)
);
CREATE TRIGGER crls_number_increases BEFORE INSERT ON crls
	WHEN NEW.number <= (SELECT coalesce(max(number), 0) FROM crls WHERE ca = NEW.ca)
	BEGIN SELECT RAISE(ABORT, 'CRL number already used'); END;
CREATE TRIGGER crls_no_delete BEFORE DELETE ON crls
	BEGIN SELECT RAISE(ABORT, 'CRL records are never deleted'); END;
CREATE TRIGGER crls_forward_only BEFORE UPDATE ON crls
	WHEN NOT (OLD.status = 'pending' AND NEW.status IN ('issued', 'aborted'))
	OR NEW.ca IS NOT OLD.ca OR NEW.number IS NOT OLD.number OR NEW.this_update IS NOT OLD.this_update
	OR NEW.next_update IS NOT OLD.next_update OR NEW.tbs_hash IS NOT OLD.tbs_hash
	OR NEW.created_at IS NOT OLD.created_at
	BEGIN SELECT RAISE(ABORT, 'CRL record transition not allowed'); END;

-- Checkpoints are append-only and increase, like the log they anchor.
CREATE TABLE audit_checkpoints (
	seq       INTEGER PRIMARY KEY,
	hash      TEXT NOT NULL,
	at        TEXT NOT NULL,
	key_id    TEXT NOT NULL,
	signature BLOB NOT NULL
);
CREATE TRIGGER audit_checkpoints_increase BEFORE INSERT ON audit_checkpoints
	WHEN NEW.seq <= (SELECT coalesce(max(seq), 0) FROM audit_checkpoints)
	BEGIN SELECT RAISE(ABORT, 'audit checkpoints only move forward'); END;
CREATE TRIGGER audit_checkpoints_no_update BEFORE UPDATE ON audit_checkpoints
	BEGIN SELECT RAISE(ABORT, 'audit checkpoints are append-only'); END;
CREATE TRIGGER audit_checkpoints_no_delete BEFORE DELETE ON audit_checkpoints
	BEGIN SELECT RAISE(ABORT, 'audit checkpoints are append-only'); END;

-- Entries written by version 1 carry no derSha256; the verifier accepts
-- that for them only. The boundary is fixed here, once.
CREATE TABLE audit_legacy (through_seq INTEGER NOT NULL);
INSERT INTO audit_legacy (through_seq) SELECT coalesce(max(seq), 0) FROM audit;
CREATE TRIGGER audit_legacy_no_insert BEFORE INSERT ON audit_legacy
	BEGIN SELECT RAISE(ABORT, 'the legacy boundary is fixed'); END;
CREATE TRIGGER audit_legacy_no_update BEFORE UPDATE ON audit_legacy
	BEGIN SELECT RAISE(ABORT, 'the legacy boundary is fixed'); END;
CREATE TRIGGER audit_legacy_no_delete BEFORE DELETE ON audit_legacy
	BEGIN SELECT RAISE(ABORT, 'the legacy boundary is fixed'); END;
