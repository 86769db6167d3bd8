//! Errors of the store and of imports.

use allowgate_types::{EntryId, List, Scope};
use chrono::{DateTime, Utc};

use crate::import::ImportFamily;
use crate::report::{ImportProblems, Lines};
use crate::users::{Role, TokenId};

/// What kind of failure a [`StoreError`] is: what a caller can do about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// The database cannot be reached or opened (connection refused, file cannot be opened,
    /// I/O error, disk full, pool timed out or closed). A server keeps serving its last
    /// snapshot and tries again.
    Unavailable,
    /// Another change held the write lock past the busy timeout; retrying later will work.
    Busy,
    /// The change contradicts what is stored: a duplicate entry, a tenant that exists, a
    /// domain another tenant owns, a tenant that still has entries or users, a user that
    /// exists, a token revoked already, a cap on users or tokens reached.
    Conflict,
    /// The request itself is wrong: an unknown tenant in a scope, a bad database URL, …
    InvalidInput,
    /// The entry, tenant, domain, user or token the change is about does not exist.
    NotFound,
    /// Stored data does not validate any more (a row edited by hand, a damaged file).
    Corrupt,
    /// A bug: the store or the database did something it should not.
    Internal,
}

/// Why a store operation failed. Every variant names the offending input; none carries a
/// connection string or password (neither in its message nor in its sources). Variants that
/// come from the database keep the [`sqlx::Error`] as their source; [`StoreError::kind`] says
/// what kind of failure it is.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database cannot be reached or opened.
    #[error("the database cannot be reached or opened")]
    Unavailable {
        /// What the database layer reported.
        #[source]
        source: sqlx::Error,
    },
    /// Another change held the write lock for longer than the busy timeout.
    #[error("another change is in progress; retry when it has finished")]
    Busy {
        /// What the database layer reported.
        #[source]
        source: sqlx::Error,
    },
    /// Any other error the database layer reported; [`StoreError::kind`] tells a uniqueness
    /// conflict, undecodable data and bugs apart.
    #[error("database error")]
    Database {
        /// What the database layer reported.
        #[source]
        source: sqlx::Error,
    },
    /// The schema migrations could not be applied (the database was changed by a newer
    /// allowgate, or a migration failed half-way).
    #[error("the database schema cannot be brought up to date")]
    Migrate {
        /// What the migrator reported.
        #[source]
        source: sqlx::migrate::MigrateError,
    },
    /// The database URL cannot be used. Its text is not repeated (it may hold a password).
    #[error("invalid database URL (expected sqlite://PATH or sqlite::memory:)")]
    InvalidUrl {
        /// The reason, kept only where it cannot quote a password (SQLite URLs).
        #[source]
        source: Option<sqlx::Error>,
    },
    /// A database given as a bare path instead of a URL.
    #[error("`{input}` is not a database URL; did you mean `sqlite://{input}`?")]
    NotAUrl {
        /// The path as given (printable).
        input: String,
    },
    /// The database URL names a backend this build does not support.
    #[error("unsupported database URL scheme `{scheme}`: {hint}")]
    UnsupportedUrl {
        /// The scheme of the URL (the part before `:`, printable); the rest is not repeated.
        scheme: String,
        /// What to use instead.
        hint: &'static str,
    },
    /// An entry with the same list, scope, kind and value already exists.
    #[error("an identical entry already exists: {existing}")]
    Duplicate {
        /// The entry that is already there.
        existing: EntryId,
    },
    /// No entry with this id.
    #[error("no entry {id}")]
    NotFound {
        /// The id asked for.
        id: EntryId,
    },
    /// A scope names a tenant that does not exist.
    #[error("unknown tenant `{name}` (add it first: allowgate tenant add {name} --domain …)")]
    UnknownTenant {
        /// The tenant name.
        name: String,
    },
    /// A change to a tenant that does not exist.
    #[error("no tenant `{name}`")]
    TenantNotFound {
        /// The tenant name.
        name: String,
    },
    /// A tenant with this name exists already.
    #[error("tenant `{name}` already exists")]
    TenantExists {
        /// The tenant name.
        name: String,
    },
    /// A domain is already owned by a tenant (another one, or the one it was added to).
    #[error("domain `{domain}` already belongs to tenant `{tenant}`")]
    DomainTaken {
        /// The domain.
        domain: String,
        /// The tenant that owns it.
        tenant: String,
    },
    /// A domain to remove from a tenant that the tenant does not own.
    #[error("tenant `{tenant}` does not own domain `{domain}`")]
    DomainNotOwned {
        /// The domain.
        domain: String,
        /// The tenant.
        tenant: String,
    },
    /// A tenant to remove still has entries, and removing them was not asked for.
    #[error(
        "tenant `{name}` still has {entries} entries; remove them first, or remove the tenant \
         together with its entries (allowgate tenant rm {name} --with-entries)"
    )]
    TenantHasEntries {
        /// The tenant name.
        name: String,
        /// How many entries it has.
        entries: u64,
    },
    /// A tenant to remove still has users.
    #[error("tenant `{name}` has {count} users ({names}); a tenant with users cannot be removed")]
    TenantHasUsers {
        /// The tenant name.
        name: String,
        /// How many users it has.
        count: u64,
        /// The first few of their names, comma-separated.
        names: String,
    },
    /// A user name that is not valid.
    #[error("invalid user name `{input}`: {reason}")]
    InvalidUserName {
        /// The name as given (printable, shortened).
        input: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A role that does not exist.
    #[error("unknown role `{input}`; use admin, tenant-admin or viewer")]
    InvalidRole {
        /// The role as given (printable, shortened).
        input: String,
    },
    /// A role and a tenant that do not go together.
    #[error("role {role} {reason}")]
    RoleTenant {
        /// The role.
        role: Role,
        /// Why, and what to do.
        reason: &'static str,
    },
    /// A token label that is not valid.
    #[error("invalid token label: {reason}")]
    InvalidTokenLabel {
        /// What is wrong with it.
        reason: String,
    },
    /// A user with this name exists already.
    #[error("user `{name}` already exists")]
    UserExists {
        /// The user name.
        name: String,
    },
    /// No user with this name.
    #[error("no user `{name}`")]
    UserNotFound {
        /// The user name.
        name: String,
    },
    /// The store holds as many users as it may.
    #[error("there are {max} users already, the most a store holds", max = crate::users::MAX_USERS)]
    TooManyUsers,
    /// A user holds as many valid tokens as it may.
    #[error(
        "user `{user}` has {max} tokens that are not revoked, the most one user holds; revoke \
         one first",
        max = crate::users::MAX_ACTIVE_TOKENS
    )]
    TooManyTokens {
        /// The user name.
        user: String,
    },
    /// No API token with this id.
    #[error("no token {id}")]
    TokenNotFound {
        /// The id asked for.
        id: TokenId,
    },
    /// An API token to revoke was revoked already.
    #[error(
        "token {id} was revoked already, at {}",
        .at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    )]
    TokenAlreadyRevoked {
        /// The token's id.
        id: TokenId,
        /// When it was revoked.
        at: DateTime<Utc>,
    },
    /// Random numbers or a password hash could not be made (a broken system, or a bug). The
    /// reason never holds a secret.
    #[error("{what}: {reason}")]
    Crypto {
        /// What failed.
        what: &'static str,
        /// Why.
        reason: String,
    },
    /// A history batch holds more records than one transaction takes.
    #[error(
        "a history batch of {records} records; at most {max} are written at once",
        max = crate::history::MAX_HISTORY_BATCH
    )]
    HistoryBatchTooLarge {
        /// How many records the batch holds.
        records: usize,
    },
    /// A record of a history batch is invalid; the whole batch was refused.
    #[error("history record {index} of the batch is invalid ({problem}); nothing was written")]
    InvalidHistoryRecord {
        /// Its position in the batch (from 0).
        index: usize,
        /// What is wrong with it.
        problem: crate::history::InvalidRecord,
    },
    /// A history filter field does not parse.
    #[error("{field}: {reason}")]
    InvalidHistoryFilter {
        /// The field: `sender`, `ip`, `status`, `tenant` or `limit`.
        field: &'static str,
        /// Why, quoting the value.
        reason: String,
    },
    /// A stored row does not validate any more.
    #[error("corrupt {table} row {id}: {reason}")]
    Corrupt {
        /// The table (`entries`, `tenants`, `tenant_domains`, `audit`, `history`, `entry_hits`,
        /// `users`, `api_tokens`).
        table: &'static str,
        /// The id of the row (the domain's tenant id for `tenant_domains`).
        id: i64,
        /// What is wrong with it.
        reason: String,
    },
    /// Something could not be encoded as JSON (a bug).
    #[error("cannot encode {what} as JSON")]
    Encode {
        /// What was being encoded.
        what: &'static str,
        /// Why.
        #[source]
        source: serde_json::Error,
    },
    /// An export could not be rendered (a bug).
    #[error("cannot render the {format} export")]
    Export {
        /// The format (`text`, `csv`, `json`).
        format: &'static str,
        /// Why.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl ErrorKind {
    /// The keyword: `unavailable`, `busy`, `conflict`, `invalid_input`, `not_found`, `corrupt`,
    /// `internal`.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Unavailable => "unavailable",
            ErrorKind::Busy => "busy",
            ErrorKind::Conflict => "conflict",
            ErrorKind::InvalidInput => "invalid_input",
            ErrorKind::NotFound => "not_found",
            ErrorKind::Corrupt => "corrupt",
            ErrorKind::Internal => "internal",
        }
    }
}

impl StoreError {
    /// What kind of failure this is.
    pub fn kind(&self) -> ErrorKind {
        match self {
            StoreError::Unavailable { .. } => ErrorKind::Unavailable,
            StoreError::Busy { .. } => ErrorKind::Busy,
            StoreError::Database { source } => sqlx_kind(source),
            StoreError::Migrate { .. } => ErrorKind::Internal,
            StoreError::InvalidUrl { .. }
            | StoreError::NotAUrl { .. }
            | StoreError::UnsupportedUrl { .. }
            | StoreError::UnknownTenant { .. }
            | StoreError::HistoryBatchTooLarge { .. }
            | StoreError::InvalidHistoryRecord { .. }
            | StoreError::InvalidHistoryFilter { .. }
            | StoreError::InvalidUserName { .. }
            | StoreError::InvalidRole { .. }
            | StoreError::RoleTenant { .. }
            | StoreError::InvalidTokenLabel { .. } => ErrorKind::InvalidInput,
            StoreError::Duplicate { .. }
            | StoreError::TenantExists { .. }
            | StoreError::DomainTaken { .. }
            | StoreError::TenantHasEntries { .. }
            | StoreError::TenantHasUsers { .. }
            | StoreError::UserExists { .. }
            | StoreError::TooManyUsers
            | StoreError::TooManyTokens { .. }
            | StoreError::TokenAlreadyRevoked { .. } => ErrorKind::Conflict,
            StoreError::NotFound { .. }
            | StoreError::TenantNotFound { .. }
            | StoreError::DomainNotOwned { .. }
            | StoreError::UserNotFound { .. }
            | StoreError::TokenNotFound { .. } => ErrorKind::NotFound,
            StoreError::Corrupt { .. } => ErrorKind::Corrupt,
            StoreError::Encode { .. } | StoreError::Export { .. } | StoreError::Crypto { .. } => {
                ErrorKind::Internal
            }
        }
    }
}

/// What kind of failure a database-layer error is: the backend's own codes first (busy, cannot
/// open, …), then what every backend shares.
fn sqlx_kind(error: &sqlx::Error) -> ErrorKind {
    use sqlx::error::ErrorKind as DbKind;
    match error {
        sqlx::Error::Database(db) => {
            crate::backend::database_error_kind(db.as_ref()).unwrap_or(match db.kind() {
                DbKind::UniqueViolation => ErrorKind::Conflict,
                _ => ErrorKind::Internal,
            })
        }
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => ErrorKind::Unavailable,
        sqlx::Error::Configuration(_) => ErrorKind::InvalidInput,
        sqlx::Error::ColumnDecode { .. } | sqlx::Error::Decode(_) => ErrorKind::Corrupt,
        sqlx::Error::Migrate(m) => match m.as_ref() {
            sqlx::migrate::MigrateError::Execute(e)
            | sqlx::migrate::MigrateError::ExecuteMigration(e, _) => sqlx_kind(e),
            _ => ErrorKind::Internal,
        },
        _ => ErrorKind::Internal,
    }
}

impl From<sqlx::Error> for StoreError {
    fn from(source: sqlx::Error) -> Self {
        match sqlx_kind(&source) {
            ErrorKind::Unavailable => StoreError::Unavailable { source },
            ErrorKind::Busy => StoreError::Busy { source },
            // A configuration error may quote the URL, and with it a password: dropped.
            ErrorKind::InvalidInput => StoreError::InvalidUrl { source: None },
            _ => StoreError::Database { source },
        }
    }
}

impl From<sqlx::migrate::MigrateError> for StoreError {
    fn from(error: sqlx::migrate::MigrateError) -> Self {
        use sqlx::migrate::MigrateError;
        match error {
            // Busy or unreachable while migrating is busy or unreachable, not a schema problem.
            MigrateError::Execute(e) | MigrateError::ExecuteMigration(e, _)
                if matches!(sqlx_kind(&e), ErrorKind::Busy | ErrorKind::Unavailable) =>
            {
                e.into()
            }
            source => StoreError::Migrate { source },
        }
    }
}

/// Why an import was refused. In every case nothing was changed.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// The file is larger than the 2 MB cap.
    #[error("import is {bytes} bytes; the limit is {max} bytes (2 MB): split the file", max = crate::import::MAX_IMPORT_BYTES)]
    TooLarge {
        /// Size of the input.
        bytes: u64,
    },
    /// The file holds more than 100,000 entries.
    #[error("import holds {count} entries; the limit is {max}: split the file", max = crate::import::MAX_IMPORT_ENTRIES)]
    TooManyEntries {
        /// Number of entries found.
        count: u64,
    },
    /// The file is not UTF-8: every line with invalid bytes is named.
    #[error("import is not valid UTF-8 on {}; save it as UTF-8", .lines)]
    NotUtf8 {
        /// The lines holding bytes that are not UTF-8.
        lines: Lines,
    },
    /// Lines are invalid: every problem, once, with every line it concerns.
    #[error("{0}")]
    Invalid(ImportProblems),
    /// A replace would leave the list, scope and kinds of the import empty, and that was not
    /// confirmed ([`ImportRequest::allow_empty`](crate::ImportRequest::allow_empty)).
    #[error(
        "replacing would remove all {existing} {family} entries of the {list} list ({scope}) and \
         add none; to empty them on purpose, confirm it (--allow-empty)"
    )]
    WouldEmpty {
        /// How many entries are there.
        existing: u64,
        /// The list.
        list: List,
        /// The scope.
        scope: Scope,
        /// The kinds.
        family: ImportFamily,
    },
    /// The store failed (or the scope's tenant does not exist).
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl ImportError {
    /// What kind of failure this is: the file or the request is at fault
    /// ([`ErrorKind::InvalidInput`]), or the store's own kind.
    pub fn kind(&self) -> ErrorKind {
        match self {
            ImportError::Store(e) => e.kind(),
            _ => ErrorKind::InvalidInput,
        }
    }

    /// A stable keyword for the refusal: `too_large`, `too_many_entries`, `not_utf8`,
    /// `invalid_lines`, `would_empty`, or the store error's kind ([`ErrorKind::as_str`]).
    pub fn code(&self) -> &'static str {
        match self {
            ImportError::TooLarge { .. } => "too_large",
            ImportError::TooManyEntries { .. } => "too_many_entries",
            ImportError::NotUtf8 { .. } => "not_utf8",
            ImportError::Invalid(_) => "invalid_lines",
            ImportError::WouldEmpty { .. } => "would_empty",
            ImportError::Store(e) => e.kind().as_str(),
        }
    }
}

impl serde::Serialize for ImportError {
    /// `{"code", "message", "invalid_lines"?, "problems"?: [{"lines", "value"?, "message"}],
    /// "unlisted"?}`: the message is the first line of the text form; an invalid file lists
    /// every problem (up to the cap) and counts every bad line.
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let text = self.to_string();
        let mut map = s.serialize_map(None)?;
        map.serialize_entry("code", self.code())?;
        map.serialize_entry("message", text.lines().next().unwrap_or_default())?;
        match self {
            ImportError::Invalid(p) => {
                map.serialize_entry("unit", &p.unit)?;
                map.serialize_entry("invalid_lines", &p.bad_lines)?;
                map.serialize_entry("problems", &p.problems)?;
                map.serialize_entry("unlisted", &p.unlisted)?;
            }
            ImportError::NotUtf8 { lines } => {
                map.serialize_entry("invalid_lines", &lines.count())?;
                map.serialize_entry("lines", lines)?;
            }
            _ => {}
        }
        map.end()
    }
}

impl From<sqlx::Error> for ImportError {
    fn from(error: sqlx::Error) -> Self {
        ImportError::Store(error.into())
    }
}
