-- allowgate schema, version 1.
-- Kept close to portable SQL: the PostgreSQL backend will differ only in id columns and types.

CREATE TABLE tenants (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    name        TEXT NOT NULL UNIQUE,
    created_at  TEXT NOT NULL
);

-- A domain belongs to at most one tenant.
CREATE TABLE tenant_domains (
    domain      TEXT PRIMARY KEY,
    tenant_id   INTEGER NOT NULL REFERENCES tenants (id) ON DELETE CASCADE
);
CREATE INDEX tenant_domains_tenant ON tenant_domains (tenant_id);

-- AUTOINCREMENT: an entry id is never reused, so audit rows and history keep pointing at
-- the entry they meant.
CREATE TABLE entries (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    list          TEXT NOT NULL CHECK (list IN ('allow', 'block', 'ignore')),
    tenant_id     INTEGER REFERENCES tenants (id),   -- NULL = global
    kind          TEXT NOT NULL,
    value         TEXT NOT NULL,                      -- normalised (EntryValue's Display)
    checks        TEXT NOT NULL DEFAULT '',           -- CheckSet's Display: "spf,dkim" or "all"
    comment       TEXT,
    require_auth  BOOLEAN NOT NULL DEFAULT FALSE,
    internal      BOOLEAN NOT NULL DEFAULT FALSE,
    starts_at     TEXT,
    expires_at    TEXT,
    enabled       BOOLEAN NOT NULL DEFAULT TRUE,
    created_at    TEXT NOT NULL,
    created_by    TEXT NOT NULL
);
CREATE UNIQUE INDEX entries_identity ON entries (list, COALESCE(tenant_id, 0), kind, value);
CREATE INDEX entries_tenant ON entries (tenant_id);

-- Every change creates one revision.
CREATE TABLE revisions (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    created_at  TEXT NOT NULL,
    actor       TEXT NOT NULL,
    summary     TEXT NOT NULL
);

-- One row per changed entry or tenant; before/after are JSON documents (NULL when absent).
CREATE TABLE audit (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    revision_id  INTEGER NOT NULL REFERENCES revisions (id),
    at           TEXT NOT NULL,
    actor        TEXT NOT NULL,
    action       TEXT NOT NULL,
    object       TEXT NOT NULL CHECK (object IN ('entry', 'tenant')),
    object_id    INTEGER,
    before       TEXT,
    after        TEXT
);
CREATE INDEX audit_object ON audit (object, object_id);
