//! The seam between the store's API and the databases it runs on.
//!
//! # How a backend is put together
//!
//! Every store operation (add an entry, import, load the policy, …) is written **once**, in
//! portable SQL with `$1, $2, …` placeholders (SQLite accepts them through sqlx as well as
//! PostgreSQL does), in [`ops.rs`](sqlite::ops). That file names two things it does not define:
//!
//! - `Db`, the backend's sqlx database type (`sqlx::Sqlite`), and
//! - `dialect`, the module holding the SQL that differs per database: how a write transaction
//!   starts and waits for another writer (`BEGIN IMMEDIATE` and the busy timeout on SQLite), how
//!   a consistent read starts, the JSON-building SQL of audit rows, the multi-row upsert form of
//!   imports, how the database's error codes map onto [`ErrorKind`], its migrations, and how a
//!   URL becomes a connection pool.
//!
//! Each backend is one module (here only [`sqlite`]) that defines `Db` and its dialect pieces
//! and mounts `ops.rs` inside itself with `#[path]`, so the operations are compiled once per
//! backend against concrete types. [`Backend`] holds one variant per backend and
//! [`on_backend!`] forwards a call to whichever is open.
//!
//! Adding PostgreSQL therefore means: a `postgres.rs` dialect module (its `Db`, its SQL pieces,
//! `#[path = "ops.rs"] mod ops;`), `migrations/postgres`, a `Backend::Postgres` variant with its
//! arm in [`on_backend!`] and in [`database_error_kind`], and its URL scheme in
//! [`Store::open_with`](crate::Store::open_with) — no second copy of any operation.
//!
//! # Why this mechanism
//!
//! - **sqlx generics** (`fn add_entry<DB: Database>(…)`) need the executor and encode/decode
//!   bounds (`for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>`, `i64: Type<DB> +
//!   Encode<'q, DB>`, … for every bound type) repeated on every function, because bounds on
//!   associated types are not implied; the SQL drowns in them.
//! - **`sqlx::Any`** erases the types we rely on (timestamps) and the per-backend connection
//!   options (busy timeout, journal mode), and converts every value and row once more.
//! - **A macro holding the whole implementation** would work like this module does, but
//!   rustfmt and rust-analyzer do not see into macro bodies; a file mounted per backend is
//!   ordinary, formatted, checked Rust.

pub(crate) mod sqlite;

use sqlx::error::DatabaseError;

use crate::error::ErrorKind;

/// The open database, one variant per backend.
#[derive(Debug, Clone)]
pub(crate) enum Backend {
    /// SQLite (the embedded default).
    Sqlite(sqlite::ops::Ops),
}

/// `on_backend!(store, ops => ops.method(…).await)`: run the expression with `ops` bound to the
/// operations of whichever backend `store` has open.
macro_rules! on_backend {
    ($store:expr, $ops:ident => $call:expr) => {
        match &$store.backend {
            $crate::backend::Backend::Sqlite($ops) => $call,
        }
    };
}
pub(crate) use on_backend;

/// What a backend's own error code says about an error the database returned, if the code is
/// one it knows (busy, cannot open, …); `None` leaves it to the portable classification.
pub(crate) fn database_error_kind(error: &dyn DatabaseError) -> Option<ErrorKind> {
    sqlite::error_kind(error)
}
