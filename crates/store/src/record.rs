//! The JSON form of entries and tenants (export, audit, API), and decoding of stored rows.

use allowgate_types::{
    CheckSet, Comment, Entry, EntryId, EntryKind, EntryValue, List, NewEntry, Scope, TenantName,
};
use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;

use crate::StoreError;

/// The JSON form of an entry's fields, as written by export and audit.
#[derive(Serialize)]
pub(crate) struct EntryJson<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<i64>,
    list: &'static str,
    scope: String,
    kind: &'static str,
    value: String,
    checks: CheckSet,
    comment: Option<&'a str>,
    require_auth: bool,
    internal: bool,
    starts_at: Option<String>,
    expires_at: Option<String>,
    enabled: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    created_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    created_by: Option<&'a str>,
}

/// A time as written by export and audit: RFC 3339 in UTC (`+00:00`), only as many fraction
/// digits as needed; the same text the database holds.
pub(crate) fn time_text(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::AutoSi, false)
}

impl<'a> EntryJson<'a> {
    /// The fields of a new entry (export form: no id, no creation data).
    pub(crate) fn new(entry: &'a NewEntry) -> EntryJson<'a> {
        EntryJson {
            id: None,
            list: entry.list.as_str(),
            scope: entry.scope.to_string(),
            kind: entry.kind().as_str(),
            value: entry.value.to_string(),
            checks: entry.checks,
            comment: entry.comment.as_ref().map(Comment::as_str),
            require_auth: entry.require_auth,
            internal: entry.internal,
            starts_at: entry.starts_at.map(time_text),
            expires_at: entry.expires_at.map(time_text),
            enabled: entry.enabled,
            created_at: None,
            created_by: None,
        }
    }

    /// Every field of a stored entry (audit form).
    pub(crate) fn stored(
        id: i64,
        entry: &'a NewEntry,
        created_at: DateTime<Utc>,
        created_by: &'a str,
    ) -> Self {
        EntryJson {
            id: Some(id),
            created_at: Some(time_text(created_at)),
            created_by: Some(created_by),
            ..EntryJson::new(entry)
        }
    }
}

/// The JSON form of a stored entry, with every field: `id`, `list`, `scope`, `kind`, `value`,
/// `checks` (an array of check ids, or `["all"]`), `comment`, `require_auth`, `internal`,
/// `starts_at`, `expires_at`, `enabled`, `created_at`, `created_by`. Audit records use this form;
/// JSON export uses it without `id`, `created_at` and `created_by`. JSON import accepts both.
pub fn entry_to_json(entry: &Entry) -> Result<serde_json::Value, StoreError> {
    serde_json::to_value(EntryJson::stored(
        entry.id.0,
        &entry.entry,
        entry.created_at,
        &entry.created_by,
    ))
    .map_err(|source| StoreError::Encode {
        what: "an entry",
        source,
    })
}

/// An `entries` row joined with its tenant's name.
#[derive(Debug, Clone, sqlx::FromRow)]
pub(crate) struct EntryRow {
    pub id: i64,
    pub list: String,
    pub tenant_id: Option<i64>,
    pub tenant: Option<String>,
    pub kind: String,
    pub value: String,
    pub checks: String,
    pub comment: Option<String>,
    pub require_auth: bool,
    pub internal: bool,
    pub starts_at: Option<DateTime<Utc>>,
    pub expires_at: Option<DateTime<Utc>>,
    pub enabled: bool,
    pub created_at: DateTime<Utc>,
    pub created_by: String,
}

/// The columns of [`EntryRow`], for `SELECT … FROM entries e LEFT JOIN tenants t …`.
pub(crate) const ENTRY_COLUMNS: &str = "e.id, e.list, e.tenant_id, t.name AS tenant, e.kind, e.value, \
     e.checks, e.comment, e.require_auth, e.internal, e.starts_at, e.expires_at, e.enabled, \
     e.created_at, e.created_by";

impl EntryRow {
    /// Re-validate a stored row. Values were accepted once, so over-broad ones pass (force).
    pub(crate) fn into_entry(self) -> Result<Entry, StoreError> {
        let id = self.id;
        let corrupt = |reason: String| StoreError::Corrupt {
            table: "entries",
            id,
            reason,
        };
        let list: List = self
            .list
            .parse()
            .map_err(|e| corrupt(format!("list: {e}")))?;
        let kind: EntryKind = self
            .kind
            .parse()
            .map_err(|e| corrupt(format!("kind: {e}")))?;
        let (value, _) = EntryValue::parse(kind, &self.value, true)
            .map_err(|e| corrupt(format!("value: {e}")))?;
        let checks: CheckSet = self
            .checks
            .parse()
            .map_err(|e| corrupt(format!("checks: {e}")))?;
        let comment = match self.comment.as_deref().map(Comment::parse).transpose() {
            Ok(c) => c.flatten(),
            Err(e) => return Err(corrupt(format!("comment: {e}"))),
        };
        let scope = match (self.tenant_id, self.tenant) {
            (None, _) => Scope::Global,
            (Some(_), Some(name)) => Scope::Tenant(
                TenantName::parse(&name).map_err(|e| corrupt(format!("tenant: {e}")))?,
            ),
            (Some(t), None) => return Err(corrupt(format!("tenant id {t} does not exist"))),
        };
        Ok(Entry {
            id: EntryId(id),
            entry: NewEntry {
                list,
                scope,
                value,
                checks,
                comment,
                require_auth: self.require_auth,
                internal: self.internal,
                starts_at: self.starts_at,
                expires_at: self.expires_at,
                enabled: self.enabled,
            },
            created_at: self.created_at,
            created_by: self.created_by,
        })
    }
}
