//! Storage of allowgate: tenants and their domains, list entries, configuration revisions and
//! the audit log; import and export of entries; the email history and per-entry hit counts
//! ([`history`]); the users who administer allowgate and their API tokens ([`users`]).
//!
//! The store runs over SQLite (the embedded default; a PostgreSQL backend for fleets will sit
//! behind the same API — `src/backend/mod.rs` says how backends plug in). Every
//! change is one transaction that creates one revision and one audit row per changed entry or
//! tenant; a change waits for another one up to a bounded busy timeout and then fails with
//! [`StoreError::Busy`]. [`Store::load_policy`] reads everything a snapshot is compiled from in
//! one read transaction. Entries read back are validated again, so a row edited by hand into
//! something invalid is reported ([`StoreError::Corrupt`]) rather than served. Every error says
//! what kind of failure it is ([`StoreError::kind`]).
//!
//! ```
//! use allowgate_store::{EntryFilter, Store};
//! use allowgate_types::{Actor, EntryKind, EntrySpec, List};
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let store = Store::open("sqlite::memory:").await.unwrap();
//! let spec = EntrySpec {
//!     list: Some(List::Block),
//!     kind: Some(EntryKind::Ip),
//!     value: "192.0.2.0/24".into(),
//!     ..Default::default()
//! };
//! let (entry, _warnings) = spec.validate().unwrap();
//! let admin = Actor::parse("admin").unwrap();
//! let stored = store.add_entry(&entry, &admin).await.unwrap();
//! assert_eq!(store.entries(&EntryFilter::default()).await.unwrap(), vec![stored]);
//! assert_eq!(store.revision().await.unwrap(), 1);
//! store.close().await;
//! # });
//! ```
#![deny(missing_docs)]

mod backend;
mod error;
pub mod export;
pub mod history;
pub mod import;
mod record;
mod report;
pub mod users;

use std::time::Duration;

use allowgate_types::{
    Actor, Domain, Entry, EntryId, EntryKind, List, NewEntry, Scope, Tenant, TenantName, shown,
};
use chrono::{DateTime, SubsecRound, Utc};

use backend::{Backend, on_backend};
pub use error::{ErrorKind, ImportError, StoreError};
pub use export::ExportFormat;
pub use history::{EntryHits, HistoryFilter, HistoryMatch, HistoryRecord, InvalidRecord};
pub use import::{
    ImportFamily, ImportFormat, ImportMode, ImportReport, ImportRequest, ParsedEntry, ParsedImport,
    parse_import,
};
pub use record::entry_to_json;
pub use report::{ImportProblems, LineReport, LineUnit, Lines};
pub use users::{
    ApiToken, AuthError, DenyReason, OneTimePassword, Role, TokenId, TokenInfo, TokenLabel, User,
    UserId, UserName,
};

/// How long a change waits for another change to finish by default.
pub const DEFAULT_BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// How a store is opened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreOptions {
    /// How long a change waits for another change holding the write lock before it fails with
    /// [`StoreError::Busy`] (default [`DEFAULT_BUSY_TIMEOUT`]).
    pub busy_timeout: Duration,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            busy_timeout: DEFAULT_BUSY_TIMEOUT,
        }
    }
}

/// Which entries to read; the default selects every entry.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EntryFilter {
    /// Only this list.
    pub list: Option<List>,
    /// Only this scope (global, or one tenant's own entries).
    pub scope: Option<Scope>,
    /// Only this kind.
    pub kind: Option<EntryKind>,
}

/// Everything a snapshot is compiled from, as of one revision: read by [`Store::load_policy`]
/// in one read transaction, so the three parts always belong together.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// The revision these are the state of (0 when nothing ever changed).
    pub revision: i64,
    /// Every tenant with its domains, by name.
    pub tenants: Vec<Tenant>,
    /// Every entry, ordered by id, but those in `unreadable`.
    pub entries: Vec<Entry>,
    /// Entry rows that do not validate any more, left out of `entries`.
    pub unreadable: Vec<UnreadableEntry>,
}

/// A stored entry row that does not validate any more: edited by hand, or refused by a rule
/// made stricter since it was stored. A policy load leaves it out and reports it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("entry {id} does not validate any more ({reason}); fix or remove it")]
pub struct UnreadableEntry {
    /// The row's id.
    pub id: EntryId,
    /// What is wrong with it.
    pub reason: String,
}

/// What [`Store::remove_tenant`] removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantRemoval {
    /// The tenant as it was.
    pub tenant: Tenant,
    /// How many of its entries were removed with it.
    pub entries_removed: u64,
    /// The revision the removal created.
    pub revision: i64,
}

/// One row of the audit log: one changed entry, tenant, user or API token.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct AuditRecord {
    /// Its id (increasing).
    pub id: i64,
    /// The revision the change created; `None` for users and tokens, which are not part of
    /// the policy and create no revision.
    pub revision: Option<i64>,
    /// When.
    pub at: DateTime<Utc>,
    /// Who.
    pub actor: String,
    /// `add`, `remove`, (tenants) `update` or (tokens) `revoke`.
    pub action: String,
    /// `entry`, `tenant`, `user` or `token`.
    pub object: String,
    /// The id of the entry, tenant, user or token.
    pub object_id: Option<i64>,
    /// The object before the change (JSON), `None` when it was added.
    pub before: Option<serde_json::Value>,
    /// The object after the change (JSON), `None` when it was removed.
    pub after: Option<serde_json::Value>,
}

/// The store: a pool of database connections. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Store {
    backend: Backend,
}

/// The current time as stored: whole microseconds (what every backend keeps exactly).
pub(crate) fn now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(6)
}

/// A database URL fit for messages and logs: the password (`user:password@`) replaced by
/// `***`, control characters escaped, at most 200 characters.
///
/// ```
/// assert_eq!(allowgate_store::redact_url("postgres://app:s3cret@db/gate"), "postgres://app:***@db/gate");
/// assert_eq!(allowgate_store::redact_url("sqlite://allowgate.db"), "sqlite://allowgate.db");
/// ```
pub fn redact_url(url: &str) -> String {
    let redacted = match url.split_once("://") {
        Some((scheme, rest)) => {
            let authority_end = rest.find('/').unwrap_or(rest.len());
            match rest[..authority_end].rfind('@') {
                Some(at) => {
                    let user_end = rest[..at].find(':').unwrap_or(at);
                    let password = if user_end < at { ":***" } else { "" };
                    format!("{scheme}://{}{password}{}", &rest[..user_end], &rest[at..])
                }
                None => url.to_string(),
            }
        }
        None => url.to_string(),
    };
    shown(&redacted, 200)
}

impl Store {
    /// Open (and migrate) the database at `url` with the default options: `sqlite://PATH`
    /// (the file is created if missing) or `sqlite::memory:` (a private in-memory database).
    pub async fn open(url: &str) -> Result<Store, StoreError> {
        Store::open_with(url, &StoreOptions::default()).await
    }

    /// [`Store::open`] with `options`.
    pub async fn open_with(url: &str, options: &StoreOptions) -> Result<Store, StoreError> {
        match url.split_once(':').map(|(scheme, _)| scheme) {
            Some("sqlite") => Ok(Store {
                backend: Backend::Sqlite(backend::sqlite::ops::Ops::open(url, options).await?),
            }),
            Some(scheme @ ("postgres" | "postgresql")) => Err(StoreError::UnsupportedUrl {
                scheme: scheme.to_string(),
                hint: "PostgreSQL support comes in a later release; use sqlite://PATH",
            }),
            None => Err(StoreError::NotAUrl {
                input: shown(url, 200),
            }),
            Some(scheme) => Err(StoreError::UnsupportedUrl {
                scheme: shown(scheme, 20),
                hint: "use sqlite://PATH or sqlite::memory:",
            }),
        }
    }

    /// Close every connection; afterwards the SQLite file is checkpointed (no `-wal` left).
    pub async fn close(self) {
        on_backend!(self, ops => ops.close().await)
    }

    /// Add a tenant owning `domains`. Fails if the name exists
    /// ([`StoreError::TenantExists`]) or a domain belongs to another tenant
    /// ([`StoreError::DomainTaken`]).
    pub async fn add_tenant(
        &self,
        name: &TenantName,
        domains: &[Domain],
        actor: &Actor,
    ) -> Result<Tenant, StoreError> {
        on_backend!(self, ops => ops.add_tenant(name, domains, actor).await)
    }

    /// Give an existing tenant more domains; returns the tenant afterwards. Fails if there is
    /// no such tenant ([`StoreError::TenantNotFound`]) or a domain belongs to a tenant already,
    /// this one included ([`StoreError::DomainTaken`]). One revision, one audit row (`update`).
    pub async fn add_tenant_domains(
        &self,
        name: &TenantName,
        domains: &[Domain],
        actor: &Actor,
    ) -> Result<Tenant, StoreError> {
        on_backend!(self, ops => ops.add_tenant_domains(name, domains, actor).await)
    }

    /// Take a domain away from a tenant; returns the tenant afterwards. Fails if there is no
    /// such tenant or it does not own the domain ([`StoreError::DomainNotOwned`]). One
    /// revision, one audit row (`update`).
    pub async fn remove_tenant_domain(
        &self,
        name: &TenantName,
        domain: &Domain,
        actor: &Actor,
    ) -> Result<Tenant, StoreError> {
        on_backend!(self, ops => ops.remove_tenant_domain(name, domain, actor).await)
    }

    /// Remove a tenant and its domains. A tenant with entries is refused
    /// ([`StoreError::TenantHasEntries`]) unless `with_entries`, which removes them too, each
    /// with its own audit row; a tenant with users is refused ([`StoreError::TenantHasUsers`]).
    /// One revision.
    pub async fn remove_tenant(
        &self,
        name: &TenantName,
        with_entries: bool,
        actor: &Actor,
    ) -> Result<TenantRemoval, StoreError> {
        on_backend!(self, ops => ops.remove_tenant(name, with_entries, actor).await)
    }

    /// Every tenant with its domains, by name.
    pub async fn tenants(&self) -> Result<Vec<Tenant>, StoreError> {
        on_backend!(self, ops => ops.tenants().await)
    }

    /// Store a validated entry. Fails with [`StoreError::Duplicate`] if an entry with the same
    /// list, scope, kind and value exists, [`StoreError::UnknownTenant`] if the scope's tenant
    /// does not.
    pub async fn add_entry(&self, entry: &NewEntry, actor: &Actor) -> Result<Entry, StoreError> {
        on_backend!(self, ops => ops.add_entry(entry, actor).await)
    }

    /// Delete an entry; returns what it was.
    pub async fn remove_entry(&self, id: EntryId, actor: &Actor) -> Result<Entry, StoreError> {
        on_backend!(self, ops => ops.remove_entry(id, actor).await)
    }

    /// The entries selected by `filter`, ordered by id. A filter naming an unknown tenant fails
    /// with [`StoreError::UnknownTenant`].
    pub async fn entries(&self, filter: &EntryFilter) -> Result<Vec<Entry>, StoreError> {
        on_backend!(self, ops => ops.entries(filter).await)
    }

    /// One entry by id; [`StoreError::NotFound`] if there is none.
    pub async fn entry(&self, id: EntryId) -> Result<Entry, StoreError> {
        on_backend!(self, ops => ops.entry(id).await)
    }

    /// The newest revision; 0 when nothing ever changed.
    pub async fn revision(&self) -> Result<i64, StoreError> {
        on_backend!(self, ops => ops.revision().await)
    }

    /// The revision, every tenant and every entry, read in one read transaction: the three
    /// always belong to the same revision, however many changes are made meanwhile. This is
    /// what a node compiles its snapshot from.
    pub async fn load_policy(&self) -> Result<Policy, StoreError> {
        on_backend!(self, ops => ops.load_policy().await)
    }

    /// The newest `limit` audit records, newest first.
    pub async fn audit(&self, limit: u32) -> Result<Vec<AuditRecord>, StoreError> {
        on_backend!(self, ops => ops.audit(limit).await)
    }

    /// Import entries: parse and validate all of `data` first (any bad line rejects the whole
    /// import and changes nothing), then write everything in one transaction that creates one
    /// revision (none if nothing changed) and an audit row per added or removed entry.
    ///
    /// `progress(done, total)` is called every 1000 values: the first half of `total` counts
    /// values parsed, the second half values written.
    pub async fn import(
        &self,
        req: &ImportRequest,
        data: &[u8],
        actor: &Actor,
        progress: &(dyn Fn(u64, u64) + Sync),
    ) -> Result<ImportReport, ImportError> {
        on_backend!(self, ops => ops.import(req, data, actor, progress).await)
    }

    /// Write a batch of history records in one short transaction (multi-row inserts), and add
    /// each entry that took effect in them (matched and applied) to its hit count
    /// ([`Store::entry_hits`]). Every record is checked first ([`HistoryRecord::validate`]): one
    /// bad record refuses the whole batch ([`StoreError::InvalidHistoryRecord`], nothing
    /// written), and so does a batch of more than [`history::MAX_HISTORY_BATCH`] records. An
    /// empty batch does nothing. History writes take the write lock like changes do, and
    /// wait for it up to the busy timeout.
    pub async fn record_history(&self, batch: &[HistoryRecord]) -> Result<(), StoreError> {
        on_backend!(self, ops => ops.record_history(batch).await)
    }

    /// The history records `filter` selects, newest first (by time, then by the order they
    /// were written). A filter field that does not parse is refused
    /// ([`StoreError::InvalidHistoryFilter`], naming it).
    pub async fn history(&self, filter: &HistoryFilter) -> Result<Vec<HistoryRecord>, StoreError> {
        on_backend!(self, ops => ops.history(filter).await)
    }

    /// Delete the history records older than `older_than` (retention); returns how many. Rows
    /// go oldest first in chunks of a few thousand, each its own transaction, so a purge never
    /// holds the write lock for long.
    pub async fn purge_history(&self, older_than: DateTime<Utc>) -> Result<u64, StoreError> {
        on_backend!(self, ops => ops.purge_history(older_than).await)
    }

    /// How often entry `id` took effect in the history written so far, and when last; `None`
    /// if it never did. Purging history leaves the counts alone.
    pub async fn entry_hits(&self, id: EntryId) -> Result<Option<EntryHits>, StoreError> {
        on_backend!(self, ops => ops.entry_hits(id).await)
    }

    /// Add a user with a generated password, returned once ([`OneTimePassword`]; the store
    /// keeps only its Argon2id hash, and the user must change it at first login). `role` and
    /// `tenant` must go together ([`StoreError::RoleTenant`]: an admin has no tenant, a
    /// tenant-admin has one), the tenant must exist ([`StoreError::UnknownTenant`]) and the name
    /// be free ([`StoreError::UserExists`]); at most [`users::MAX_USERS`] users. One audit row
    /// (`add user`, without the password or its hash); no revision.
    pub async fn add_user(
        &self,
        name: &UserName,
        role: Role,
        tenant: Option<&TenantName>,
        actor: &Actor,
    ) -> Result<(User, OneTimePassword), StoreError> {
        on_backend!(self, ops => ops.add_user(name, role, tenant, actor).await)
    }

    /// The user `name` (as typed: normalised here) if `password` is theirs and they may log in
    /// (not disabled, not locked out); otherwise [`AuthError::Denied`], the same error for every
    /// reason. One Argon2 verification is made whether the user exists or not, so the time of
    /// a refusal does not tell either; the comparison is the `argon2` crate's, in constant time.
    /// Nothing is written (counting failed logins comes with the login page).
    pub async fn verify_password(&self, name: &str, password: &str) -> Result<User, AuthError> {
        on_backend!(self, ops => ops.verify_password(name, password).await)
    }

    /// Make an API token for `user`, returned once ([`ApiToken`]; the store keeps only its
    /// SHA-256). Fails for an unknown user ([`StoreError::UserNotFound`]) or one that holds
    /// [`users::MAX_ACTIVE_TOKENS`] tokens not revoked ([`StoreError::TooManyTokens`]). One
    /// audit row (`add token`, with the user and label, never the token); no revision.
    pub async fn add_token(
        &self,
        user: &UserName,
        label: Option<&TokenLabel>,
        actor: &Actor,
    ) -> Result<(TokenInfo, ApiToken), StoreError> {
        on_backend!(self, ops => ops.add_token(user, label, actor).await)
    }

    /// The user a token acts as, if it is a token, not revoked, of a user not disabled;
    /// otherwise [`AuthError::Denied`]. Text that cannot be a token is refused without a
    /// lookup. Records the use in `last_used_at` when the last one recorded is a minute old or
    /// more ([`users::LAST_USED_RESOLUTION`]); when another change holds the write lock past
    /// the busy timeout, that record is skipped rather than the caller refused.
    pub async fn authenticate_token(&self, token: &str) -> Result<User, AuthError> {
        on_backend!(self, ops => ops.authenticate_token(token).await)
    }

    /// Revoke a token; returns it as it is now. [`StoreError::TokenNotFound`] if there is no
    /// such token, [`StoreError::TokenAlreadyRevoked`] if it was revoked before. One audit row
    /// (`revoke token`); no revision.
    pub async fn revoke_token(&self, id: TokenId, actor: &Actor) -> Result<TokenInfo, StoreError> {
        on_backend!(self, ops => ops.revoke_token(id, actor).await)
    }

    /// Every user, by name.
    pub async fn list_users(&self) -> Result<Vec<User>, StoreError> {
        on_backend!(self, ops => ops.list_users().await)
    }

    /// Every API token (revoked ones too), or those of one user ([`StoreError::UserNotFound`]
    /// if there is none by that name), by id. Never a token or its hash.
    pub async fn list_tokens(&self, user: Option<&UserName>) -> Result<Vec<TokenInfo>, StoreError> {
        on_backend!(self, ops => ops.list_tokens(user).await)
    }

    /// Export the entries selected by `filter` (ordered by id) in `format`.
    pub async fn export(
        &self,
        filter: &EntryFilter,
        format: ExportFormat,
    ) -> Result<String, StoreError> {
        export::render(&self.entries(filter).await?, format)
    }
}
