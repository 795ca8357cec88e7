-- Version 4: the ACME server's state (DESIGN §17). These rows are protocol
-- state, not evidence — an ACME certificate has its record and audit entry
-- like any other — so they change in place and carry no guards beyond the
-- constraints that keep one key one account and one EAB key one binding.

-- External account binding keys (RFC 8555 §7.3.4), made by
-- `pkid acme eab add`. Only a hash of the MAC key is kept: the MAC key is
-- derived from a secret the daemon holds.
CREATE TABLE acme_eab_keys (
	kid        TEXT PRIMARY KEY,
	profile_id TEXT NOT NULL,
	key_hash   TEXT NOT NULL,
	account_id TEXT NOT NULL DEFAULT '',
	created_at TEXT NOT NULL,
	bound_at   TEXT NOT NULL DEFAULT ''
);

CREATE TABLE acme_accounts (
	id         TEXT PRIMARY KEY,
	profile_id TEXT NOT NULL,
	key_id     TEXT NOT NULL,
	jwk        TEXT NOT NULL,
	contacts   TEXT NOT NULL,
	status     TEXT NOT NULL CHECK (status IN ('valid', 'deactivated')),
	eab_kid    TEXT NOT NULL,
	created_at TEXT NOT NULL,
	updated_at TEXT NOT NULL,
	UNIQUE (profile_id, key_id)
);
-- An EAB key binds at most one account.
CREATE UNIQUE INDEX acme_accounts_eab ON acme_accounts (eab_kid) WHERE eab_kid <> '';

CREATE TABLE acme_orders (
	id             TEXT PRIMARY KEY,
	account_id     TEXT NOT NULL REFERENCES acme_accounts (id),
	profile_id     TEXT NOT NULL,
	status         TEXT NOT NULL CHECK (status IN ('pending', 'processing', 'valid', 'invalid')),
	identifiers    TEXT NOT NULL,
	authorizations TEXT NOT NULL,
	not_before     TEXT NOT NULL,
	not_after      TEXT NOT NULL,
	expires_at     TEXT NOT NULL,
	problem        BLOB,
	certificate_id TEXT NOT NULL,
	created_at     TEXT NOT NULL,
	updated_at     TEXT NOT NULL
);
CREATE INDEX acme_orders_account ON acme_orders (account_id, created_at);

CREATE TABLE acme_authorizations (
	id               TEXT PRIMARY KEY,
	order_id         TEXT NOT NULL REFERENCES acme_orders (id),
	account_id       TEXT NOT NULL,
	profile_id       TEXT NOT NULL,
	identifier_type  TEXT NOT NULL,
	identifier_value TEXT NOT NULL,
	wildcard         INTEGER NOT NULL,
	status           TEXT NOT NULL CHECK (status IN ('pending', 'valid', 'invalid', 'deactivated')),
	expires_at       TEXT NOT NULL,
	created_at       TEXT NOT NULL,
	updated_at       TEXT NOT NULL
);

CREATE TABLE acme_challenges (
	authz_id     TEXT NOT NULL REFERENCES acme_authorizations (id),
	position     INTEGER NOT NULL,
	type         TEXT NOT NULL,
	token        TEXT NOT NULL,
	status       TEXT NOT NULL CHECK (status IN ('pending', 'processing', 'valid', 'invalid')),
	validated_at TEXT NOT NULL,
	problem      BLOB,
	updated_at   TEXT NOT NULL,
	PRIMARY KEY (authz_id, type)
);

-- Nonces (RFC 8555 §6.5) live here so that every node accepts the ones
-- any node gave out, and each only once.
CREATE TABLE acme_nonces (
	nonce      TEXT PRIMARY KEY,
	expires_at TEXT NOT NULL
);
CREATE INDEX acme_nonces_expiry ON acme_nonces (expires_at);
