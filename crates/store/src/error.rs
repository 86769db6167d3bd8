//! Errors of the store and of imports.

use std::fmt;

use allowgate_types::EntryId;

/// Why a store operation failed. Every variant names the offending input; none carries a
/// connection string or password.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database reported an error (or could not be reached).
    #[error("database error: {message}")]
    Database {
        /// What went wrong, without connection details.
        message: String,
    },
    /// The database URL names a backend this build does not support.
    #[error("unsupported database URL scheme `{scheme}`: use sqlite://PATH or sqlite::memory:")]
    UnsupportedUrl {
        /// The scheme of the URL (the part before `:`); the rest is not repeated.
        scheme: String,
    },
    /// Applying the schema migrations failed.
    #[error("database migration failed: {message}")]
    Migrate {
        /// What went wrong.
        message: String,
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
    /// A tenant with this name exists already.
    #[error("tenant `{name}` already exists")]
    TenantExists {
        /// The tenant name.
        name: String,
    },
    /// A domain is already owned by another tenant.
    #[error("domain `{domain}` already belongs to tenant `{tenant}`")]
    DomainTaken {
        /// The domain.
        domain: String,
        /// The tenant that owns it.
        tenant: String,
    },
    /// A stored row does not validate any more.
    #[error("corrupt {table} row {id}: {reason}")]
    Corrupt {
        /// The table (`entries`, `tenants`, `tenant_domains`, `audit`).
        table: &'static str,
        /// The id of the row (the domain's tenant id for `tenant_domains`).
        id: i64,
        /// What is wrong with it.
        reason: String,
    },
}

/// A database error's message, without connection details.
pub(crate) fn describe(error: &sqlx::Error) -> String {
    match error {
        // Configuration errors may quote the URL, which may hold a password.
        sqlx::Error::Configuration(_) => "invalid database configuration".to_string(),
        sqlx::Error::Database(db) => db.message().to_string(),
        other => other.to_string(),
    }
}

impl From<sqlx::Error> for StoreError {
    fn from(error: sqlx::Error) -> Self {
        StoreError::Database {
            message: describe(&error),
        }
    }
}

impl From<sqlx::migrate::MigrateError> for StoreError {
    fn from(error: sqlx::migrate::MigrateError) -> Self {
        StoreError::Migrate {
            message: error.to_string(),
        }
    }
}

/// One bad line (or CSV row, or JSON array element) of an import.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LineError {
    /// 1-based line number; for JSON imports the 1-based index of the array element (the
    /// reason says so).
    pub line: usize,
    /// The offending value, truncated to 80 characters.
    pub value: String,
    /// Why it was refused.
    pub reason: String,
}

impl fmt::Display for LineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.value.is_empty() {
            write!(f, "line {}: {}", self.line, self.reason)
        } else {
            write!(f, "line {}: `{}`: {}", self.line, self.value, self.reason)
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
    /// The file is not UTF-8.
    #[error("import is not valid UTF-8 (first invalid byte on line {line}); save it as UTF-8")]
    NotUtf8 {
        /// 1-based line of the first invalid byte.
        line: usize,
    },
    /// One or more lines are invalid; every one of them is listed (up to
    /// [`MAX_LINE_ERRORS`](crate::import::MAX_LINE_ERRORS), the last one saying how many more).
    #[error("{}", invalid_message(.0))]
    Invalid(Vec<LineError>),
    /// The store failed (or the scope's tenant does not exist).
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn invalid_message(errors: &[LineError]) -> String {
    let mut text = String::from("import rejected, nothing changed; fix these lines:");
    for e in errors {
        text.push_str("\n  ");
        text.push_str(&e.to_string());
    }
    text
}

impl From<sqlx::Error> for ImportError {
    fn from(error: sqlx::Error) -> Self {
        ImportError::Store(error.into())
    }
}
