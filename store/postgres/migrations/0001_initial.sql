-- Version 1: the whole contract of store.Store as of SQLite schema 3
-- (DESIGN §6, §13–§16), for any number of nodes on one database.
--
-- Times are text in one fixed-width UTC layout with every nanosecond digit
-- ("2006-01-02T15:04:05.000000000Z"), as in SQLite: timestamptz keeps only
-- microseconds, and a checkpoint's signed message carries nanoseconds. Text
-- compared in the "C" collation then orders as time does whatever the
-- database's default collation is; ids and serials use it too, so listings
-- come in the same order as from SQLite.

-- A guard that refuses the statement: the message is its argument.
CREATE FUNCTION pkid_refuse() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	RAISE EXCEPTION '%', TG_ARGV[0] USING ERRCODE = 'PK000';
END $$;

CREATE TABLE certificates (
	id                     text COLLATE "C" PRIMARY KEY,
	serial                 text COLLATE "C" NOT NULL UNIQUE,
	profile_id             text NOT NULL,
	profile                text NOT NULL,
	ca                     text COLLATE "C" NOT NULL,
	issuer_hash            text NOT NULL,
	identity               text NOT NULL,
	request_id             text NOT NULL,
	certificate_request_id text COLLATE "C" NOT NULL,
	application_id         text NOT NULL,
	common_name            text NOT NULL,
	alt_names              jsonb NOT NULL,
	key_usages             jsonb NOT NULL,
	ext_key_usages         jsonb NOT NULL,
	signature_algorithm    text NOT NULL,
	key_algorithm          text NOT NULL,
	not_before             text COLLATE "C" NOT NULL,
	not_after              text COLLATE "C" NOT NULL,
	tbs_hash               text NOT NULL,
	csr                    bytea,
	csr_hash               text NOT NULL,
	renews                 text NOT NULL,
	status                 text NOT NULL CHECK (status IN ('pending', 'issued', 'aborted', 'revoked')),
	der                    bytea,
	revoked_at             text COLLATE "C" NOT NULL,
	revocation_reason      text NOT NULL,
	node                   text COLLATE "C" NOT NULL,
	created_at             text COLLATE "C" NOT NULL,
	updated_at             text COLLATE "C" NOT NULL
);
CREATE INDEX certificates_status ON certificates (status);
CREATE INDEX certificates_created ON certificates (created_at, id);
CREATE INDEX certificates_revoked ON certificates (ca, serial) WHERE status = 'revoked';
CREATE INDEX certificates_pending ON certificates (node) WHERE status = 'pending';
-- Records made before request ids were kept have none; every new one is unique.
CREATE UNIQUE INDEX certificates_request ON certificates (certificate_request_id) WHERE certificate_request_id <> '';

-- A record is evidence the audit log is checked against: it is never
-- deleted, what was reserved never changes, and its status only moves
-- forward (pending → issued | aborted, issued → revoked), the DER fixed
-- once issued.
CREATE FUNCTION pkid_certificates_forward_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	IF NOT ((OLD.status = 'pending' AND NEW.status IN ('issued', 'aborted'))
		OR (OLD.status = 'issued' AND NEW.status = 'revoked' AND NEW.der IS NOT DISTINCT FROM OLD.der))
	OR (NEW.id, NEW.serial, NEW.profile_id, NEW.profile, NEW.ca, NEW.issuer_hash, NEW.identity, NEW.request_id,
		NEW.certificate_request_id, NEW.application_id, NEW.common_name, NEW.alt_names, NEW.key_usages,
		NEW.ext_key_usages, NEW.signature_algorithm, NEW.key_algorithm, NEW.not_before, NEW.not_after,
		NEW.tbs_hash, NEW.csr, NEW.csr_hash, NEW.renews, NEW.node, NEW.created_at)
	IS DISTINCT FROM (OLD.id, OLD.serial, OLD.profile_id, OLD.profile, OLD.ca, OLD.issuer_hash, OLD.identity,
		OLD.request_id, OLD.certificate_request_id, OLD.application_id, OLD.common_name, OLD.alt_names,
		OLD.key_usages, OLD.ext_key_usages, OLD.signature_algorithm, OLD.key_algorithm, OLD.not_before,
		OLD.not_after, OLD.tbs_hash, OLD.csr, OLD.csr_hash, OLD.renews, OLD.node, OLD.created_at) THEN
		RAISE EXCEPTION 'certificate record transition not allowed' USING ERRCODE = 'PK000';
	END IF;
	RETURN NEW;
END $$;
CREATE TRIGGER certificates_forward_only BEFORE UPDATE ON certificates
	FOR EACH ROW EXECUTE FUNCTION pkid_certificates_forward_only();
CREATE TRIGGER certificates_no_delete BEFORE DELETE ON certificates
	FOR EACH ROW EXECUTE FUNCTION pkid_refuse('certificate records are never deleted');
CREATE TRIGGER certificates_no_truncate BEFORE TRUNCATE ON certificates
	FOR EACH STATEMENT EXECUTE FUNCTION pkid_refuse('certificate records are never deleted');

-- CRL numbers are never reused (RFC 5280 §5.2.3): rows are never deleted
-- and a new number is greater than every number the CA ever reserved,
-- whatever became of it. crl_numbers holds each CA's highest; the insert
-- trigger raises it under its row lock, so two nodes reserving at once
-- cannot both pass a check of max(number) and commit out of order.
CREATE TABLE crls (
	ca          text COLLATE "C" NOT NULL,
	number      bigint NOT NULL CHECK (number > 0),
	this_update text COLLATE "C" NOT NULL,
	next_update text COLLATE "C" NOT NULL,
	tbs_hash    text NOT NULL,
	status      text NOT NULL CHECK (status IN ('pending', 'issued', 'aborted')),
	der         bytea,
	node        text COLLATE "C" NOT NULL,
	created_at  text COLLATE "C" NOT NULL,
	updated_at  text COLLATE "C" NOT NULL,
	PRIMARY KEY (ca, number)
);
CREATE INDEX crls_pending ON crls (node) WHERE status = 'pending';
CREATE TABLE crl_numbers (
	ca   text COLLATE "C" PRIMARY KEY,
	last bigint NOT NULL
);
CREATE FUNCTION pkid_crls_number_increases() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	INSERT INTO crl_numbers AS n (ca, last) VALUES (NEW.ca, NEW.number)
		ON CONFLICT (ca) DO UPDATE SET last = EXCLUDED.last WHERE n.last < EXCLUDED.last;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'CRL number already used' USING ERRCODE = 'PK001';
	END IF;
	RETURN NEW;
END $$;
CREATE TRIGGER crls_number_increases BEFORE INSERT ON crls
	FOR EACH ROW EXECUTE FUNCTION pkid_crls_number_increases();
CREATE FUNCTION pkid_crls_forward_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	IF NOT (OLD.status = 'pending' AND NEW.status IN ('issued', 'aborted'))
	OR (NEW.ca, NEW.number, NEW.this_update, NEW.next_update, NEW.tbs_hash, NEW.node, NEW.created_at)
		IS DISTINCT FROM (OLD.ca, OLD.number, OLD.this_update, OLD.next_update, OLD.tbs_hash, OLD.node, OLD.created_at) THEN
		RAISE EXCEPTION 'CRL record transition not allowed' USING ERRCODE = 'PK000';
	END IF;
	RETURN NEW;
END $$;
CREATE TRIGGER crls_forward_only BEFORE UPDATE ON crls
	FOR EACH ROW EXECUTE FUNCTION pkid_crls_forward_only();
CREATE TRIGGER crls_no_delete BEFORE DELETE ON crls
	FOR EACH ROW EXECUTE FUNCTION pkid_refuse('CRL records are never deleted');
CREATE TRIGGER crls_no_truncate BEFORE TRUNCATE ON crls
	FOR EACH STATEMENT EXECUTE FUNCTION pkid_refuse('CRL records are never deleted');
CREATE FUNCTION pkid_crl_numbers_increase() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	IF NEW.ca IS DISTINCT FROM OLD.ca OR NEW.last <= OLD.last THEN
		RAISE EXCEPTION 'CRL numbers only increase' USING ERRCODE = 'PK000';
	END IF;
	RETURN NEW;
END $$;
CREATE TRIGGER crl_numbers_increase BEFORE UPDATE ON crl_numbers
	FOR EACH ROW EXECUTE FUNCTION pkid_crl_numbers_increase();
CREATE TRIGGER crl_numbers_no_delete BEFORE DELETE ON crl_numbers
	FOR EACH ROW EXECUTE FUNCTION pkid_refuse('CRL numbers are never released');
CREATE TRIGGER crl_numbers_no_truncate BEFORE TRUNCATE ON crl_numbers
	FOR EACH STATEMENT EXECUTE FUNCTION pkid_refuse('CRL numbers are never released');

-- The audit log: one hash chain for every node (DESIGN §16), append-only.
-- The body is text, not jsonb: the hash covers its exact bytes.
CREATE TABLE audit (
	seq       bigint PRIMARY KEY CHECK (seq > 0),
	at        text COLLATE "C" NOT NULL,
	event     text NOT NULL,
	prev_hash text NOT NULL,
	hash      text NOT NULL
);
CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit
	FOR EACH ROW EXECUTE FUNCTION pkid_refuse('audit log is append-only');
CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit
	FOR EACH ROW EXECUTE FUNCTION pkid_refuse('audit log is append-only');
CREATE TRIGGER audit_no_truncate BEFORE TRUNCATE ON audit
	FOR EACH STATEMENT EXECUTE FUNCTION pkid_refuse('audit log is append-only');

-- The chain head, one row. Every transaction that appends locks it first
-- (SELECT … FOR UPDATE) and reads the head under that lock, so the nodes'
-- appends are serialized into one chain; it may only move forward, to an
-- entry that exists with that hash.
CREATE TABLE audit_head (
	id   integer PRIMARY KEY CHECK (id = 1),
	seq  bigint NOT NULL,
	hash text NOT NULL
);
INSERT INTO audit_head (id, seq, hash) VALUES (1, 0, '0000000000000000000000000000000000000000000000000000000000000000');
CREATE FUNCTION pkid_audit_head_forward() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	IF NEW.id <> OLD.id OR NEW.seq <= OLD.seq
	OR NOT EXISTS (SELECT 1 FROM audit WHERE seq = NEW.seq AND hash = NEW.hash) THEN
		RAISE EXCEPTION 'the audit chain head only moves forward, to an entry of the log' USING ERRCODE = 'PK000';
	END IF;
	RETURN NEW;
END $$;
CREATE TRIGGER audit_head_forward BEFORE UPDATE ON audit_head
	FOR EACH ROW EXECUTE FUNCTION pkid_audit_head_forward();
CREATE TRIGGER audit_head_no_insert BEFORE INSERT ON audit_head
	FOR EACH ROW EXECUTE FUNCTION pkid_refuse('there is one audit chain head');
CREATE TRIGGER audit_head_no_delete BEFORE DELETE ON audit_head
	FOR EACH ROW EXECUTE FUNCTION pkid_refuse('there is one audit chain head');
CREATE TRIGGER audit_head_no_truncate BEFORE TRUNCATE ON audit_head
	FOR EACH STATEMENT EXECUTE FUNCTION pkid_refuse('there is one audit chain head');

-- Checkpoints are append-only and increase, like the log they anchor
-- (their writers hold the head lock, so the check below is not racy).
CREATE TABLE audit_checkpoints (
	seq       bigint PRIMARY KEY,
	hash      text NOT NULL,
	at        text COLLATE "C" NOT NULL,
	key_id    text NOT NULL,
	signature bytea NOT NULL
);
CREATE FUNCTION pkid_audit_checkpoints_increase() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	IF NEW.seq <= (SELECT coalesce(max(seq), 0) FROM audit_checkpoints) THEN
		RAISE EXCEPTION 'audit checkpoints only move forward' USING ERRCODE = 'PK000';
	END IF;
	RETURN NEW;
END $$;
CREATE TRIGGER audit_checkpoints_increase BEFORE INSERT ON audit_checkpoints
	FOR EACH ROW EXECUTE FUNCTION pkid_audit_checkpoints_increase();
CREATE TRIGGER audit_checkpoints_no_update BEFORE UPDATE ON audit_checkpoints
	FOR EACH ROW EXECUTE FUNCTION pkid_refuse('audit checkpoints are append-only');
CREATE TRIGGER audit_checkpoints_no_delete BEFORE DELETE ON audit_checkpoints
	FOR EACH ROW EXECUTE FUNCTION pkid_refuse('audit checkpoints are append-only');
CREATE TRIGGER audit_checkpoints_no_truncate BEFORE TRUNCATE ON audit_checkpoints
	FOR EACH STATEMENT EXECUTE FUNCTION pkid_refuse('audit checkpoints are append-only');

-- The entries a database migrated from SQLite carries from SQLite's schema
-- version 1, which had no derSha256 (store/migrate copies the boundary).
-- It is set once, while the log is still empty, and never again.
CREATE TABLE audit_legacy (through_seq bigint NOT NULL);
INSERT INTO audit_legacy (through_seq) VALUES (0);
CREATE FUNCTION pkid_audit_legacy_fixed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	IF OLD.through_seq <> 0 OR EXISTS (SELECT 1 FROM audit) THEN
		RAISE EXCEPTION 'the legacy boundary is fixed' USING ERRCODE = 'PK000';
	END IF;
	RETURN NEW;
END $$;
CREATE TRIGGER audit_legacy_fixed BEFORE UPDATE ON audit_legacy
	FOR EACH ROW EXECUTE FUNCTION pkid_audit_legacy_fixed();
CREATE TRIGGER audit_legacy_no_insert BEFORE INSERT ON audit_legacy
	FOR EACH ROW EXECUTE FUNCTION pkid_refuse('the legacy boundary is fixed');
CREATE TRIGGER audit_legacy_no_delete BEFORE DELETE ON audit_legacy
	FOR EACH ROW EXECUTE FUNCTION pkid_refuse('the legacy boundary is fixed');
CREATE TRIGGER audit_legacy_no_truncate BEFORE TRUNCATE ON audit_legacy
	FOR EACH STATEMENT EXECUTE FUNCTION pkid_refuse('the legacy boundary is fixed');

-- One row per node: the last time it said it was alive.
CREATE TABLE nodes (
	name         text COLLATE "C" PRIMARY KEY,
	heartbeat_at text COLLATE "C" NOT NULL
);

-- The newest pre-signed OCSP answer per certificate (replaced on refresh).
CREATE TABLE ocsp_responses (
	ca          text COLLATE "C" NOT NULL,
	serial      text COLLATE "C" NOT NULL,
	status      text NOT NULL CHECK (status IN ('good', 'revoked')),
	this_update text COLLATE "C" NOT NULL,
	next_update text COLLATE "C" NOT NULL,
	der         bytea NOT NULL,
	PRIMARY KEY (ca, serial)
);

-- Revoked access tokens until they expire.
CREATE TABLE revoked_tokens (
	jti        text COLLATE "C" PRIMARY KEY,
	expires_at text COLLATE "C" NOT NULL
);
CREATE INDEX revoked_tokens_expiry ON revoked_tokens (expires_at);
