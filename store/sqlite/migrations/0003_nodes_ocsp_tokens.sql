-- Version 3: nodes (DESIGN §16), pre-signed OCSP answers (§14) and
-- revoked access tokens (§15).
--
-- Each reservation names the node that made it, so that a node resolves at
-- start-up only its own pending rows and those of nodes whose heartbeat
-- stopped. Rows made before nodes had names get '' (no node has that name
-- or a heartbeat, so any node resolves them, as every earlier release did).
ALTER TABLE certificates ADD COLUMN node TEXT NOT NULL DEFAULT '';
ALTER TABLE crls ADD COLUMN node TEXT NOT NULL DEFAULT '';
CREATE INDEX certificates_pending ON certificates(node) WHERE status = 'pending';
CREATE INDEX crls_pending ON crls(node) WHERE status = 'pending';

-- The guards now keep the node fixed too: who reserved a serial is part of
-- what was reserved.
DROP TRIGGER certificates_forward_only;
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
	OR NEW.renews IS NOT OLD.renews OR NEW.created_at IS NOT OLD.created_at OR NEW.node IS NOT OLD.node
	BEGIN SELECT RAISE(ABORT, 'certificate record transition not allowed'); END;
DROP TRIGGER crls_forward_only;
CREATE TRIGGER crls_forward_only BEFORE UPDATE ON crls
	WHEN NOT (OLD.status = 'pending' AND NEW.status IN ('issued', 'aborted'))
	OR NEW.ca IS NOT OLD.ca OR NEW.number IS NOT OLD.number OR NEW.this_update IS NOT OLD.this_update
	OR NEW.next_update IS NOT OLD.next_update OR NEW.tbs_hash IS NOT OLD.tbs_hash
	OR NEW.created_at IS NOT OLD.created_at OR NEW.node IS NOT OLD.node
	BEGIN SELECT RAISE(ABORT, 'CRL record transition not allowed'); END;

-- One row per node: the last time it said it was alive.
CREATE TABLE nodes (
	name         TEXT PRIMARY KEY,
	heartbeat_at TEXT NOT NULL
);

-- The newest pre-signed answer per certificate. Not evidence (the records
-- and the log are): an answer is replaced when it is refreshed.
CREATE TABLE ocsp_responses (
	ca          TEXT NOT NULL,
	serial      TEXT NOT NULL,
	status      TEXT NOT NULL CHECK (status IN ('good', 'revoked')),
	this_update TEXT NOT NULL,
	next_update TEXT NOT NULL,
	der         BLOB NOT NULL,
	PRIMARY KEY (ca, serial)
);

-- Revoked access tokens until they expire (a token past its exp is refused
-- anyway, so its row may go).
CREATE TABLE revoked_tokens (
	jti        TEXT PRIMARY KEY,
	expires_at TEXT NOT NULL
);
CREATE INDEX revoked_tokens_expiry ON revoked_tokens(expires_at);
