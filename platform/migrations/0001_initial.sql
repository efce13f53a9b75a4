-- The manager's schema: accounts, credentials, workspaces, licenses and the admin audit log.
-- Identifiers are random 24-hex-digit strings made by the manager (as Coder v1's ids were).

CREATE TABLE users (
    id            TEXT PRIMARY KEY,
    email         TEXT NOT NULL CHECK (email <> ''),
    name          TEXT NOT NULL,
    role          TEXT NOT NULL CHECK (role IN ('admin', 'member')),
    -- A PHC string: $argon2id$v=19$m=...,t=...,p=...$salt$hash
    password_hash TEXT NOT NULL CHECK (password_hash LIKE '$argon2id$%'),
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at    TIMESTAMPTZ NOT NULL DEFAULT now()
);
-- Emails are unique regardless of case.
CREATE UNIQUE INDEX users_email_lower_key ON users (lower(email));

-- Session tokens and API keys share one table. A token is `<id>-<secret>`; only the SHA-256
-- of the secret is stored, so a token is looked up by id and its secret compared in constant time.
CREATE TABLE api_keys (
    id           TEXT PRIMARY KEY,
    secret_hash  BYTEA NOT NULL CHECK (octet_length(secret_hash) = 32),
    user_id      TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    kind         TEXT NOT NULL CHECK (kind IN ('session', 'api_key')),
    name         TEXT NOT NULL DEFAULT '',
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    expires_at   TIMESTAMPTZ NOT NULL,
    last_used_at TIMESTAMPTZ,
    revoked      BOOLEAN NOT NULL DEFAULT FALSE
);
CREATE INDEX api_keys_user_id_idx ON api_keys (user_id);

CREATE TABLE workspaces (
    id          TEXT PRIMARY KEY,
    owner_id    TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name        TEXT NOT NULL CHECK (name ~ '^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$'),
    image       TEXT NOT NULL,
    state       TEXT NOT NULL CHECK (state IN ('CREATING', 'ON', 'OFF', 'STOPPING', 'STARTING', 'DELETING', 'ERROR')),
    cpu_cores   REAL NOT NULL CHECK (cpu_cores > 0),
    memory_gb   REAL NOT NULL CHECK (memory_gb > 0),
    disk_gb     INTEGER NOT NULL CHECK (disk_gb > 0),
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (owner_id, name)
);

CREATE TABLE licenses (
    id          BIGSERIAL PRIMARY KEY,
    raw_token   TEXT NOT NULL,
    uploaded_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE audit_log (
    id       BIGSERIAL PRIMARY KEY,
    -- No foreign key: the trail outlives the accounts it names.
    actor_id TEXT NOT NULL,
    action   TEXT NOT NULL,
    target   TEXT NOT NULL,
    at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    details  JSONB NOT NULL DEFAULT '{}'::jsonb
);
CREATE INDEX audit_log_at_idx ON audit_log (at);
