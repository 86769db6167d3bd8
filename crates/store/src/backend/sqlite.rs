//! The SQLite backend: the SQL and settings only SQLite needs. The operations themselves are
//! in [`ops`] (shared by every backend, see [`crate::backend`]).
//!
//! - A file database runs in WAL mode (readers never wait for the writer) with foreign keys on
//!   and a pool of 4 connections; `sqlite::memory:` keeps exactly one connection (the database
//!   lives as long as it).
//! - A change starts with `BEGIN IMMEDIATE`, which takes the write lock at once. Another writer
//!   waits for it up to the busy timeout ([`StoreOptions::busy_timeout`]) and then gets
//!   [`StoreError::Busy`]; a deferred `BEGIN` could instead fail half-way, when its first write
//!   finds that its read snapshot is stale.
//! - A consistent read is a deferred `BEGIN`: in WAL mode its first `SELECT` fixes the
//!   snapshot that every later statement of the transaction sees.

use std::str::FromStr;

use chrono::{DateTime, Utc};
use sqlx::error::DatabaseError;
use sqlx::sqlite::{SqliteConnectOptions, SqliteError, SqliteJournalMode, SqlitePoolOptions};
use sqlx::{Pool, QueryBuilder, Transaction};

use crate::StoreOptions;
use crate::error::{ErrorKind, StoreError};
use crate::import::ParsedEntry;

/// The sqlx database type [`ops`] is compiled against.
pub(crate) type Db = sqlx::Sqlite;

/// The operations, compiled for SQLite.
#[path = "ops.rs"]
pub(crate) mod ops;

/// The SQLite schema migrations.
pub(crate) static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

/// Open a pool for `url` (`sqlite://PATH`, created if missing, or `sqlite::memory:`) and bring
/// the schema up to date.
pub(crate) async fn connect(url: &str, options: &StoreOptions) -> Result<Pool<Db>, StoreError> {
    let memory = url.contains(":memory:") || url.contains("mode=memory");
    let mut connect = SqliteConnectOptions::from_str(url)
        // A SQLite URL is a file name and options, never a password: the reason may be shown.
        .map_err(|source| StoreError::InvalidUrl {
            source: Some(source),
        })?
        .foreign_keys(true)
        .busy_timeout(options.busy_timeout)
        // The connection's worker thread hands rows over a bounded channel (50 by default): a
        // channel that holds an import chunk's `RETURNING` ids spares the thread switches.
        .row_buffer_size(2 * ENTRY_CHUNK)
        .create_if_missing(true);
    if !memory {
        connect = connect.journal_mode(SqliteJournalMode::Wal);
    }
    let pool_options = if memory {
        // An in-memory database lives as long as its last connection: keep exactly one.
        SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
    } else {
        SqlitePoolOptions::new().max_connections(4)
    };
    // Two processes opening a new file at once (the CLI and the server at first start) would
    // both find it unmigrated and both create its tables: one migrates at a time, under a lock
    // on a file beside the database (released when the guard drops).
    let _guard = if memory {
        None
    } else {
        Some(migration_lock(connect.get_filename()).await?)
    };
    let pool = pool_options.connect_with(connect).await?;
    MIGRATOR.run(&pool).await?;
    Ok(pool)
}

/// An exclusive lock on `<database>-migrate.lock`, waited for on a blocking thread.
async fn migration_lock(database: &std::path::Path) -> Result<std::fs::File, StoreError> {
    let mut path = database.as_os_str().to_owned();
    path.push("-migrate.lock");
    let unavailable = |source: std::io::Error| StoreError::Unavailable {
        source: sqlx::Error::Io(source),
    };
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(&path)
        .map_err(unavailable)?;
    tokio::task::spawn_blocking(move || file.lock().map(|()| file))
        .await
        .map_err(|e| unavailable(std::io::Error::other(e)))?
        .map_err(unavailable)
}

/// Start a change: take the write lock now, waiting up to the busy timeout for another writer.
pub(crate) async fn begin_write(pool: &Pool<Db>) -> Result<Transaction<'static, Db>, StoreError> {
    Ok(pool.begin_with("BEGIN IMMEDIATE").await?)
}

/// Start a read whose statements all see one state of the database.
pub(crate) async fn begin_read(pool: &Pool<Db>) -> Result<Transaction<'static, Db>, StoreError> {
    Ok(pool.begin_with("BEGIN DEFERRED").await?)
}

/// SQL for the JSON form of entry row `e` joined with its tenant `t`: the same document as
/// [`entry_to_json`](crate::entry_to_json) (check ids contain only `a-z` and `-`, so splitting
/// at `,` is exact). Building it in the database keeps a 100,000-entry import from shipping
/// every row back and forth.
pub(crate) const ENTRY_JSON_SQL: &str = r#"json_object(
    'id', e.id, 'list', e.list, 'scope', COALESCE(t.name, 'global'), 'kind', e.kind,
    'value', e.value,
    'checks', json(CASE WHEN e.checks = '' THEN '[]'
                        ELSE '["' || replace(e.checks, ',', '","') || '"]' END),
    'comment', e.comment,
    'require_auth', json(CASE WHEN e.require_auth THEN 'true' ELSE 'false' END),
    'internal', json(CASE WHEN e.internal THEN 'true' ELSE 'false' END),
    'starts_at', e.starts_at, 'expires_at', e.expires_at,
    'enabled', json(CASE WHEN e.enabled THEN 'true' ELSE 'false' END),
    'created_at', e.created_at, 'created_by', e.created_by)"#;

/// Rows per multi-row `INSERT` into `entries` (9 bound values each, 4 shared: 27,004 per
/// statement; SQLite allows 32,766). Measured on 100,000 entries with `RETURNING id` (the ids
/// come back one row at a time through sqlx's worker channel, and the next statement is built
/// meanwhile, see `ops::import`): CPU 0.73 s at 250 and 500 rows, 0.70 s at 1000, 0.67 s at
/// 2000, 0.64 s at 3000.
pub(crate) const ENTRY_CHUNK: usize = 3000;

/// The columns every entry of one import shares; bound once per statement.
pub(crate) struct SharedColumns<'a> {
    /// `entries.list`.
    pub list: &'static str,
    /// `entries.tenant_id` (`None`: global).
    pub tenant: Option<i64>,
    /// `entries.created_at`.
    pub at: DateTime<Utc>,
    /// `entries.created_by`.
    pub actor: &'a str,
}

/// Make `query` insert `rows` (at most [`ENTRY_CHUNK`]) into `entries`, skipping any whose
/// identity (list, scope, kind, value) is stored already, and return the id of every row it
/// inserted — exactly those, whatever other writers do.
pub(crate) fn insert_entries(
    query: &mut QueryBuilder<Db>,
    shared: &SharedColumns<'_>,
    rows: &[ParsedEntry],
) {
    query.reset();
    query.push(
        "INSERT INTO entries (list, tenant_id, created_at, created_by, kind, value, checks, \
         comment, require_auth, internal, starts_at, expires_at, enabled) SELECT ",
    );
    query
        .push_bind(shared.list)
        .push(", ")
        .push_bind(shared.tenant)
        .push(", ")
        .push_bind(shared.at)
        .push(", ")
        .push_bind(shared.actor.to_string());
    // SQLite names the columns of a VALUES list column1, column2, …
    query.push(
        ", column1, column2, column3, column4, column5, column6, column7, column8, column9 FROM (",
    );
    query.push_values(rows, |mut row, p| {
        let e = &p.entry;
        row.push_bind(e.kind().as_str())
            .push_bind(e.value.to_string())
            .push_bind(e.checks.to_string())
            .push_bind(e.comment.as_ref().map(|c| c.as_str().to_string()))
            .push_bind(e.require_auth)
            .push_bind(e.internal)
            .push_bind(e.starts_at)
            .push_bind(e.expires_at)
            .push_bind(e.enabled);
    });
    // `WHERE true` keeps SQLite from reading ON CONFLICT as part of the SELECT's join.
    query.push(") WHERE true ON CONFLICT DO NOTHING RETURNING id");
}

/// Rows per multi-row `INSERT` into `history` (17 bound values each: 8,500 per statement;
/// SQLite allows 32,766).
pub(crate) const HISTORY_CHUNK: usize = 500;

/// Rows per multi-row upsert into `entry_hits` (3 bound values each).
pub(crate) const ENTRY_HITS_CHUNK: usize = 1000;

/// History rows deleted per transaction by a purge. Measured on 1,000,000 rows: a chunk of
/// 5000 held the write lock ~300 ms (each row leaves three indexes at random places); 1000
/// holds it about as long as a history batch of 500 takes to write.
pub(crate) const PURGE_CHUNK: usize = 1000;

/// Most id runs (`e.id BETWEEN $a AND $b`, two bound values each) in one statement.
pub(crate) const ID_RUN_CHUNK: usize = 500;

// SQLite's primary result codes (https://www.sqlite.org/rescode.html); an extended code keeps
// its primary code in the low byte.
const SQLITE_PERM: i32 = 3;
const SQLITE_BUSY: i32 = 5;
const SQLITE_LOCKED: i32 = 6;
const SQLITE_NOMEM: i32 = 7;
const SQLITE_READONLY: i32 = 8;
const SQLITE_IOERR: i32 = 10;
const SQLITE_CORRUPT: i32 = 11;
const SQLITE_FULL: i32 = 13;
const SQLITE_CANTOPEN: i32 = 14;
const SQLITE_PROTOCOL: i32 = 15;
const SQLITE_AUTH: i32 = 23;
const SQLITE_NOTADB: i32 = 26;

/// What a SQLite result code says: busy/locked → [`ErrorKind::Busy`]; cannot open, I/O, disk
/// full, read-only, not a database → [`ErrorKind::Unavailable`]; a corrupt file →
/// [`ErrorKind::Corrupt`]. `None` for errors of other databases and other codes.
pub(crate) fn error_kind(error: &dyn DatabaseError) -> Option<ErrorKind> {
    let sqlite = error.try_downcast_ref::<SqliteError>()?;
    let code: i32 = sqlite.code()?.parse().ok()?;
    match code & 0xff {
        SQLITE_BUSY | SQLITE_LOCKED => Some(ErrorKind::Busy),
        SQLITE_PERM | SQLITE_NOMEM | SQLITE_READONLY | SQLITE_IOERR | SQLITE_FULL
        | SQLITE_CANTOPEN | SQLITE_PROTOCOL | SQLITE_AUTH | SQLITE_NOTADB => {
            Some(ErrorKind::Unavailable)
        }
        SQLITE_CORRUPT => Some(ErrorKind::Corrupt),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    /// The shared operations use `$n` placeholders: SQLite (through sqlx) binds them by number,
    /// not by position, and a number used twice is one value.
    #[tokio::test]
    async fn dollar_placeholders_bind_by_number() {
        use sqlx::Connection;
        let mut conn = sqlx::SqliteConnection::connect("sqlite::memory:")
            .await
            .unwrap();
        let text: String = sqlx::query_scalar("SELECT $2 || $1 || $2")
            .bind("a")
            .bind("b")
            .fetch_one(&mut conn)
            .await
            .unwrap();
        assert_eq!(text, "bab");
        conn.close().await.unwrap();
    }
}
