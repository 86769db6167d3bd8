-- allowgate schema, version 2: the email history and per-entry hit counts.
-- Portable SQL: the PostgreSQL twin differs in the id column (BIGINT GENERATED ALWAYS AS
-- IDENTITY), BLOB (BYTEA), and `COLLATE "C"` on sender_rdomain (its range filter needs
-- byte order; SQLite's default collation is byte order already).

-- One row per decision a node made. Written in batches by the server (one transaction each);
-- read newest first, filtered by sender, client IP, status, tenant and time; deleted oldest
-- first by retention.
--
-- `time` is microseconds since the Unix epoch (UTC), not RFC 3339 text: 8 bytes instead of
-- 25-32 in the row and in each of the six indexes below that end in it, compared as integers,
-- exact to the microsecond the rest of the store keeps. Every index is (filter column, time):
-- a filter reads its rows newest first straight from the index and stops at the limit.
CREATE TABLE history (
    id              INTEGER PRIMARY KEY,
    time            INTEGER NOT NULL,   -- microseconds since 1970-01-01T00:00:00Z
    node            TEXT NOT NULL,      -- the gateway that decided
    queue_id        TEXT,
    tenant          TEXT,               -- tenant name; NULL: no tenant or several
    client_ip       TEXT NOT NULL,      -- normalised (IPv4-mapped IPv6 as IPv4)
    -- The client IP as a byte string that sorts like the addresses: 4 then the 4 bytes of an
    -- IPv4 address, or 6 then the 16 bytes of an IPv6 address (the family byte keeps the two
    -- apart). An address, CIDR or range filter is one index range over it; text cannot do that.
    ip_key          BLOB NOT NULL,
    sender          TEXT,               -- the address used for allow matching; NULL: none (<>)
    -- The sender's domain, labels reversed, with a trailing dot: mail.example.com →
    -- com.example.mail. — a domain and all below it are one range ('com.example.' up to
    -- 'com.example/'), the domain alone one value.
    sender_rdomain  TEXT,
    sender_source   TEXT,               -- MAIL FROM, Return-Path, …
    recipients      TEXT NOT NULL,      -- JSON array of addresses
    status          TEXT NOT NULL,      -- clean, pass, blocked, greylisted, spam, quarantined, rejected
    action          TEXT NOT NULL,      -- accept, tag, quarantine, defer, reject
    bypassed        TEXT NOT NULL,      -- JSON array of check ids
    matched         TEXT NOT NULL,      -- JSON array of {id, list, kind, value, scope, checks, matched_on, applied}
    checks          TEXT NOT NULL,      -- JSON object: check id → outcome
    reason          TEXT NOT NULL,      -- one line: "Clean: exempted by entry #12"
    revision        INTEGER NOT NULL    -- the configuration revision that decided
);
CREATE INDEX history_time ON history (time);
CREATE INDEX history_sender ON history (sender, time);
CREATE INDEX history_sender_domain ON history (sender_rdomain, time);
CREATE INDEX history_ip ON history (ip_key, time);
CREATE INDEX history_status ON history (status, time);
CREATE INDEX history_tenant ON history (tenant, time);

-- How often each entry matched and took effect, and when last. Updated from the same batches
-- as the history. No foreign key: an entry removed between a decision and its batch must not
-- refuse the batch; entry ids are never reused, so a removed entry's row only lingers.
CREATE TABLE entry_hits (
    entry_id  INTEGER PRIMARY KEY,
    hits      INTEGER NOT NULL,
    last_hit  INTEGER NOT NULL          -- microseconds since the Unix epoch, like history.time
);
