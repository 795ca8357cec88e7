-- Version 2: the ACME server's state (DESIGN §17). These rows are protocol
-- state, not evidence — an ACME certificate has its record and audit entry
-- like any other — so they change in place and carry no guards beyond the
-- constraints that keep one key one account and one EAB key one binding.

-- External account binding keys (RFC 8555 §7.3.4), made by
-- `pkid acme eab add`. Only a hash of the MAC key is kept: the MAC key is
-- derived from a secret the daemon holds.
CREATE TABLE acme_eab_keys (
	kid        text PRIMARY KEY,
	profile_id text NOT NULL,
	key_hash   text NOT NULL,
	account_id text NOT NULL DEFAULT '',
	created_at text NOT NULL,
	bound_at   text NOT NULL DEFAULT ''
);

CREATE TABLE acme_accounts (
	id         text PRIMARY KEY,
	profile_id text NOT NULL,
	key_id     text NOT NULL,
	jwk        text NOT NULL,
	contacts   text NOT NULL,
	status     text NOT NULL CHECK (status IN ('valid', 'deactivated')),
	eab_kid    text NOT NULL,
	created_at text NOT NULL,
	updated_at text NOT NULL,
	UNIQUE (profile_id, key_id)
);
-- An EAB key binds at most one account.
CREATE UNIQUE INDEX acme_accounts_eab ON acme_accounts (eab_kid) WHERE eab_kid <> '';

CREATE TABLE acme_orders (
	id             text COLLATE "C" PRIMARY KEY,
	account_id     text NOT NULL REFERENCES acme_accounts (id),
	profile_id     text NOT NULL,
	status         text NOT NULL CHECK (status IN ('pending', 'processing', 'valid', 'invalid')),
	identifiers    text NOT NULL,
	authorizations text NOT NULL,
	not_before     text NOT NULL,
	not_after      text NOT NULL,
	expires_at     text NOT NULL,
	problem        bytea,
	certificate_id text NOT NULL,
	created_at     text COLLATE "C" NOT NULL,
	updated_at     text NOT NULL
);
CREATE INDEX acme_orders_account ON acme_orders (account_id, created_at);

CREATE TABLE acme_authorizations (
	id               text PRIMARY KEY,
	order_id         text NOT NULL REFERENCES acme_orders (id),
	account_id       text NOT NULL,
	profile_id       text NOT NULL,
	identifier_type  text NOT NULL,
	identifier_value text NOT NULL,
	wildcard         integer NOT NULL,
	status           text NOT NULL CHECK (status IN ('pending', 'valid', 'invalid', 'deactivated')),
	expires_at       text NOT NULL,
	created_at       text NOT NULL,
	updated_at       text NOT NULL
);

CREATE TABLE acme_challenges (
	authz_id     text NOT NULL REFERENCES acme_authorizations (id),
	position     integer NOT NULL,
	type         text NOT NULL,
	token        text NOT NULL,
	status       text NOT NULL CHECK (status IN ('pending', 'processing', 'valid', 'invalid')),
	validated_at text NOT NULL,
	problem      bytea,
	updated_at   text NOT NULL,
	PRIMARY KEY (authz_id, type)
);

-- Nonces (RFC 8555 §6.5) live here so that every node accepts the ones
-- any node gave out, and each only once.
CREATE TABLE acme_nonces (
	nonce      text PRIMARY KEY,
	expires_at text COLLATE "C" NOT NULL
);
CREATE INDEX acme_nonces_expiry ON acme_nonces (expires_at);
