//! The email history: one [`HistoryRecord`] per decision a node made, written in batches
//! ([`Store::record_history`](crate::Store::record_history)), searched newest first
//! ([`Store::history`](crate::Store::history) with a [`HistoryFilter`]), deleted by age
//! ([`Store::purge_history`](crate::Store::purge_history)); and how often each entry took effect
//! ([`Store::entry_hits`](crate::Store::entry_hits)).
//!
//! Records are plain data: the server turns a verdict into one (the store does not depend on
//! the engine). What the store checks, it checks before it takes the write lock, and a batch
//! with one bad record is refused whole; [`HistoryRecord::validate`] lets a writer check each
//! record on its own before it queues it.
//!
//! ```
//! use allowgate_store::{HistoryFilter, HistoryRecord, Store};
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let store = Store::open("sqlite::memory:").await.unwrap();
//! let record = HistoryRecord {
//!     time: "2026-12-01T08:00:00Z".parse().unwrap(),
//!     node: "gw1".into(),
//!     queue_id: Some("4FJK2Q1xyz".into()),
//!     tenant: None,
//!     client_ip: "192.0.2.7".into(),
//!     sender: Some("alice@partner.example".into()),
//!     sender_source: Some("MAIL FROM".into()),
//!     recipients: vec!["bob@acme.example".into()],
//!     status: "pass".into(),
//!     action: "accept".into(),
//!     stage: "message".into(),
//!     bypassed: vec![],
//!     matched: vec![],
//!     checks: Default::default(),
//!     reason: "Pass".into(),
//!     revision: 3,
//! };
//! store.record_history(&[record.clone()]).await.unwrap();
//! let filter = HistoryFilter { ip: Some("192.0.2.0/24".into()), ..Default::default() };
//! assert_eq!(store.history(&filter).await.unwrap(), vec![record]);
//! store.close().await;
//! # });
//! ```

use std::collections::BTreeMap;
use std::net::IpAddr;

use allowgate_types::{
    Domain, EmailAddress, IpBounds, IpRange, TenantName, normalize_ip, parse_ip, shown,
};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::StoreError;

/// Most records in one [`Store::record_history`](crate::Store::record_history) batch.
pub const MAX_HISTORY_BATCH: usize = 10_000;
/// Most recipients in one record.
pub const MAX_RECIPIENTS: usize = 1000;
/// Most bytes of one record: its text fields and its JSON-encoded lists together.
pub const MAX_RECORD_BYTES: usize = 64 * 1024;
/// Longest node name and queue id, in bytes.
pub const MAX_NODE_BYTES: usize = 255;
/// Records a [`HistoryFilter`] returns unless it says otherwise.
pub const DEFAULT_HISTORY_LIMIT: u32 = 100;
/// Most records one [`Store::history`](crate::Store::history) call returns.
pub const MAX_HISTORY_LIMIT: u32 = 10_000;

/// The statuses a record may have (the engine's `Status` keywords), in the order the design
/// lists them.
pub const HISTORY_STATUSES: &[&str] = &[
    "clean",
    "pass",
    "blocked",
    "greylisted",
    "spam",
    "quarantined",
    "rejected",
];

/// The actions a record may have (the engine's `Action` keywords), mildest first.
pub const HISTORY_ACTIONS: &[&str] = &["accept", "tag", "quarantine", "defer", "reject"];

/// Where in the mail flow a record was decided.
pub const HISTORY_STAGES: &[&str] = &["rcpt", "message"];

/// One decision, as the email history keeps it: what came in, what was decided and why.
///
/// Stored exactly as given, except that `time` is kept to the microsecond (finer parts are
/// dropped), `client_ip` and `sender` are stored in their normalised forms (`::ffff:192.0.2.7`
/// → `192.0.2.7`, `Alice@Example.COM` → `alice@example.com`), and `tenant` trimmed. A record
/// built from a verdict (whose addresses are normalised already) reads back identical.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryRecord {
    /// When the decision was made.
    pub time: DateTime<Utc>,
    /// The gateway node that made it.
    pub node: String,
    /// The MTA's queue id, when known.
    pub queue_id: Option<String>,
    /// The recipients' tenant; `None` for no tenant, or recipients of several.
    pub tenant: Option<String>,
    /// The effective client IP.
    pub client_ip: String,
    /// The one sender address used for allow matching; `None` for the null sender.
    pub sender: Option<String>,
    /// Where that address came from (`MAIL FROM`, `Return-Path`, …).
    pub sender_source: Option<String>,
    /// The recipients (at most [`MAX_RECIPIENTS`]).
    pub recipients: Vec<String>,
    /// One of [`HISTORY_STATUSES`].
    pub status: String,
    /// One of [`HISTORY_ACTIONS`].
    pub action: String,
    /// Where in the mail flow it was decided: one of [`HISTORY_STAGES`] (`rcpt`: by the
    /// policy server, for one recipient; `message`: by the milter, for the whole message).
    pub stage: String,
    /// The check ids bypassed for the message.
    pub bypassed: Vec<String>,
    /// Every entry that matched.
    pub matched: Vec<HistoryMatch>,
    /// The outcome of every check: check id → outcome keyword.
    pub checks: BTreeMap<String, String>,
    /// The one-line reason: `Clean: exempted by entry #12`, `Blocked: blocked by entry #3`, `Pass`.
    pub reason: String,
    /// The configuration revision that decided.
    pub revision: i64,
}

/// An entry that matched a message, as the history keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryMatch {
    /// The entry's id.
    pub id: i64,
    /// Its list: `allow`, `block` or `ignore`.
    pub list: String,
    /// Its kind: `ip`, `email`, …
    pub kind: String,
    /// Its value.
    pub value: String,
    /// Its scope: `global` or a tenant name.
    pub scope: String,
    /// The checks it bypasses.
    pub checks: Vec<String>,
    /// What it matched, in words: `client ip 192.0.2.7`.
    pub matched_on: String,
    /// Whether it took effect (only those count as hits, [`Store::entry_hits`](crate::Store::entry_hits)).
    pub applied: bool,
}

/// How often an entry took effect (matched and applied), from the history batches written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct EntryHits {
    /// How many decisions it took effect in.
    pub hits: u64,
    /// The time of the newest of them.
    pub last_hit: DateTime<Utc>,
}

/// Which history records to read: every field that is set must match; newest first, at most
/// `limit`. The text fields are what a user typed (CLI flags, API query parameters): the store
/// parses them and refuses a bad one with [`StoreError::InvalidHistoryFilter`] naming it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryFilter {
    /// A sender: an address (`alice@example.com`: that address, case-insensitively); a domain
    /// (`example.com`, `@example.com` or `*@example.com`: senders at exactly that domain); or a
    /// domain and all below it (`*.example.com`, `@*.example.com`, `*@*.example.com`) — the
    /// forms and meanings of entry values.
    pub sender: Option<String>,
    /// A client IP: an address (`192.0.2.7`, `2001:db8::1`), a CIDR (`192.0.2.0/24`) or a range
    /// (`192.0.2.10-192.0.2.99`); IPv4-mapped IPv6 is IPv4.
    pub ip: Option<String>,
    /// A status, one of [`HISTORY_STATUSES`].
    pub status: Option<String>,
    /// A tenant name.
    pub tenant: Option<String>,
    /// Only records at or after this time.
    pub since: Option<DateTime<Utc>>,
    /// At most this many records, 1 to [`MAX_HISTORY_LIMIT`] (default [`DEFAULT_HISTORY_LIMIT`]).
    pub limit: u32,
}

impl Default for HistoryFilter {
    fn default() -> Self {
        HistoryFilter {
            sender: None,
            ip: None,
            status: None,
            tenant: None,
            since: None,
            limit: DEFAULT_HISTORY_LIMIT,
        }
    }
}

/// What is wrong with a history record: the field and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct InvalidRecord {
    /// The field (`client_ip`, `recipients`, …; `record` for the whole record's size).
    pub field: &'static str,
    /// Why, quoting the value (printable, shortened).
    pub reason: String,
}

impl HistoryRecord {
    /// Check the record as [`Store::record_history`](crate::Store::record_history) does: `node`
    /// 1 to 255 bytes, `queue_id` at most 255; `client_ip` an IP address; `sender` an address;
    /// `tenant` a tenant name; `status` and `action` known keywords; at most
    /// [`MAX_RECIPIENTS`] recipients and [`MAX_RECORD_BYTES`] in all.
    pub fn validate(&self) -> Result<(), InvalidRecord> {
        PreparedRecord::new(self).map(drop)
    }
}

/// A record checked and encoded for its row: what is bound into the `INSERT`.
pub(crate) struct PreparedRecord<'a> {
    pub time: i64,
    pub node: &'a str,
    pub queue_id: Option<&'a str>,
    pub tenant: Option<String>,
    pub client_ip: String,
    pub ip_key: Vec<u8>,
    pub sender: Option<String>,
    pub sender_rdomain: Option<String>,
    pub sender_source: Option<&'a str>,
    pub recipients: String,
    pub status: &'a str,
    pub action: &'a str,
    pub stage: &'a str,
    pub bypassed: String,
    pub matched: String,
    pub checks: String,
    pub reason: &'a str,
    pub revision: i64,
}

fn invalid(field: &'static str, reason: impl Into<String>) -> InvalidRecord {
    InvalidRecord {
        field,
        reason: reason.into(),
    }
}

fn json(field: &'static str, value: &impl Serialize) -> Result<String, InvalidRecord> {
    serde_json::to_string(value).map_err(|e| invalid(field, format!("cannot be encoded: {e}")))
}

impl<'a> PreparedRecord<'a> {
    pub(crate) fn new(r: &'a HistoryRecord) -> Result<PreparedRecord<'a>, InvalidRecord> {
        if r.node.is_empty() || r.node.len() > MAX_NODE_BYTES {
            return Err(invalid(
                "node",
                format!("must be 1 to {MAX_NODE_BYTES} bytes"),
            ));
        }
        if r.queue_id
            .as_ref()
            .is_some_and(|q| q.len() > MAX_NODE_BYTES)
        {
            return Err(invalid(
                "queue_id",
                format!("longer than {MAX_NODE_BYTES} bytes"),
            ));
        }
        if r.recipients.len() > MAX_RECIPIENTS {
            return Err(invalid(
                "recipients",
                format!(
                    "{} recipients; at most {MAX_RECIPIENTS} are kept per record",
                    r.recipients.len()
                ),
            ));
        }
        if !HISTORY_STATUSES.contains(&r.status.as_str()) {
            return Err(invalid(
                "status",
                format!(
                    "`{}` is not one of {}",
                    shown(&r.status, 40),
                    HISTORY_STATUSES.join(", ")
                ),
            ));
        }
        if !HISTORY_ACTIONS.contains(&r.action.as_str()) {
            return Err(invalid(
                "action",
                format!(
                    "`{}` is not one of {}",
                    shown(&r.action, 40),
                    HISTORY_ACTIONS.join(", ")
                ),
            ));
        }
        if !HISTORY_STAGES.contains(&r.stage.as_str()) {
            return Err(invalid(
                "stage",
                format!(
                    "`{}` is not one of {}",
                    shown(&r.stage, 40),
                    HISTORY_STAGES.join(", ")
                ),
            ));
        }
        if r.revision < 0 {
            return Err(invalid("revision", "is negative"));
        }
        let ip = parse_ip(&r.client_ip).map_err(|e| invalid("client_ip", e.to_string()))?;
        let sender = r
            .sender
            .as_deref()
            .map(EmailAddress::parse)
            .transpose()
            .map_err(|e| invalid("sender", e.to_string()))?;
        let tenant = r
            .tenant
            .as_deref()
            .map(TenantName::parse)
            .transpose()
            .map_err(|e| invalid("tenant", e.to_string()))?;
        let prepared = PreparedRecord {
            time: r.time.timestamp_micros(),
            node: &r.node,
            queue_id: r.queue_id.as_deref(),
            tenant: tenant.map(|t| t.as_str().to_string()),
            client_ip: ip.to_string(),
            ip_key: ip_key(ip),
            sender_rdomain: sender.as_ref().map(|s| reversed_domain(s.domain())),
            sender: sender.map(|s| s.to_string()),
            sender_source: r.sender_source.as_deref(),
            recipients: json("recipients", &r.recipients)?,
            status: &r.status,
            action: &r.action,
            stage: &r.stage,
            bypassed: json("bypassed", &r.bypassed)?,
            matched: json("matched", &r.matched)?,
            checks: json("checks", &r.checks)?,
            reason: &r.reason,
            revision: r.revision,
        };
        let bytes = prepared.size();
        if bytes > MAX_RECORD_BYTES {
            return Err(invalid(
                "record",
                format!("{bytes} bytes; at most {MAX_RECORD_BYTES} are kept per record"),
            ));
        }
        Ok(prepared)
    }

    /// The bytes of its text, as stored.
    fn size(&self) -> usize {
        let opt = |s: Option<&str>| s.map_or(0, str::len);
        self.node.len()
            + opt(self.queue_id)
            + opt(self.tenant.as_deref())
            + self.client_ip.len()
            + 2 * opt(self.sender.as_deref())
            + opt(self.sender_source)
            + self.recipients.len()
            + self.status.len()
            + self.action.len()
            + self.stage.len()
            + self.bypassed.len()
            + self.matched.len()
            + self.checks.len()
            + self.reason.len()
    }
}

/// The sortable key of an address: the family byte (4 or 6), then the address, big-endian.
pub(crate) fn ip_key(ip: IpAddr) -> Vec<u8> {
    match normalize_ip(ip) {
        IpAddr::V4(a) => family_key(4, &a.octets()),
        IpAddr::V6(a) => family_key(6, &a.octets()),
    }
}

fn family_key(family: u8, address: &[u8]) -> Vec<u8> {
    let mut key = Vec::with_capacity(1 + address.len());
    key.push(family);
    key.extend_from_slice(address);
    key
}

/// The keys of the first and the last address of an interval.
fn bounds_key(bounds: IpBounds) -> (Vec<u8>, Vec<u8>) {
    match bounds {
        IpBounds::V4(s, e) => (
            family_key(4, &s.to_be_bytes()),
            family_key(4, &e.to_be_bytes()),
        ),
        IpBounds::V6(s, e) => (
            family_key(6, &s.to_be_bytes()),
            family_key(6, &e.to_be_bytes()),
        ),
    }
}

/// `mail.example.com` → `com.example.mail.`: a domain and everything below it share a prefix.
pub(crate) fn reversed_domain(domain: &Domain) -> String {
    let mut out = String::with_capacity(domain.as_str().len() + 1);
    for label in domain.as_str().rsplit('.') {
        out.push_str(label);
        out.push('.');
    }
    out
}

/// A [`HistoryFilter`] parsed: what the query binds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ParsedFilter {
    pub sender: Option<SenderCondition>,
    /// Inclusive bounds of `ip_key`.
    pub ip: Option<(Vec<u8>, Vec<u8>)>,
    pub status: Option<&'static str>,
    pub tenant: Option<String>,
    pub since: Option<i64>,
    pub limit: u32,
}

/// How the sender filter selects rows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SenderCondition {
    /// `sender = …`.
    Address(String),
    /// `sender_rdomain = …`.
    Domain(String),
    /// `sender_rdomain >= start AND sender_rdomain < end`.
    DomainAndBelow {
        /// `com.example.`
        start: String,
        /// `com.example/`
        end: String,
    },
}

fn bad_filter(field: &'static str, reason: String) -> StoreError {
    StoreError::InvalidHistoryFilter { field, reason }
}

impl HistoryFilter {
    /// Parse every field; the first bad one is the error.
    pub(crate) fn parse(&self) -> Result<ParsedFilter, StoreError> {
        if !(1..=MAX_HISTORY_LIMIT).contains(&self.limit) {
            return Err(bad_filter(
                "limit",
                format!("{} is not between 1 and {MAX_HISTORY_LIMIT}", self.limit),
            ));
        }
        let sender = self.sender.as_deref().map(parse_sender).transpose()?;
        let ip = match self.ip.as_deref() {
            None => None,
            Some(text) => {
                let (range, _) =
                    IpRange::parse(text, true).map_err(|e| bad_filter("ip", e.to_string()))?;
                Some(bounds_key(range.bounds()))
            }
        };
        let status = match self.status.as_deref() {
            None => None,
            Some(text) => {
                let want = text.trim().to_ascii_lowercase();
                let found = HISTORY_STATUSES.iter().find(|s| **s == want).copied();
                Some(found.ok_or_else(|| {
                    bad_filter(
                        "status",
                        format!(
                            "`{}` is not a status; use one of {}",
                            shown(text, 40),
                            HISTORY_STATUSES.join(", ")
                        ),
                    )
                })?)
            }
        };
        let tenant = self
            .tenant
            .as_deref()
            .map(TenantName::parse)
            .transpose()
            .map_err(|e| bad_filter("tenant", e.to_string()))?
            .map(|t| t.as_str().to_string());
        Ok(ParsedFilter {
            sender,
            ip,
            status,
            tenant,
            since: self.since.map(|t| t.timestamp_micros()),
            limit: self.limit,
        })
    }
}

/// `alice@example.com` → that address; `example.com`, `@example.com`, `*@example.com` → that
/// domain; `*.example.com` (also after `@` or `*@`) → it and everything below it.
fn parse_sender(input: &str) -> Result<SenderCondition, StoreError> {
    let text = input.trim();
    let domain_part = text
        .strip_prefix("*@")
        .or_else(|| text.strip_prefix('@'))
        .or_else(|| (!text.contains('@')).then_some(text));
    let Some(domain_text) = domain_part else {
        let address = EmailAddress::parse(text).map_err(|e| bad_filter("sender", e.to_string()))?;
        return Ok(SenderCondition::Address(address.to_string()));
    };
    let (name, below) = match domain_text.strip_prefix("*.") {
        Some(rest) => (rest, true),
        None => (domain_text, false),
    };
    let domain = Domain::parse_from_mail(name).map_err(|e| {
        bad_filter(
            "sender",
            format!(
                "`{}` is neither an address nor a domain ({e})",
                shown(input, 80)
            ),
        )
    })?;
    let start = reversed_domain(&domain);
    Ok(if below {
        let mut end = start.clone();
        end.pop();
        end.push('/');
        SenderCondition::DomainAndBelow { start, end }
    } else {
        SenderCondition::Domain(start)
    })
}

/// A stored time (microseconds) back as a time; `None` if out of range.
pub(crate) fn time_of_micros(micros: i64) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp_micros(micros)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(ip: &str) -> Vec<u8> {
        ip_key(ip.parse().unwrap())
    }

    #[test]
    fn ip_keys_sort_like_addresses_and_keep_families_apart() {
        let ordered = [
            "0.0.0.0",
            "9.255.255.255",
            "10.0.0.0",
            "192.0.2.7",
            "255.255.255.255",
        ];
        for pair in ordered.windows(2) {
            assert!(key(pair[0]) < key(pair[1]), "{pair:?}");
        }
        assert_eq!(key("::ffff:192.0.2.7"), key("192.0.2.7"));
        // Every IPv6 key is above every IPv4 key, whatever the bytes after the family.
        assert!(key("::") > key("255.255.255.255"));
        let (lo, hi) = bounds_key(IpRange::parse("192.0.2.0/24", true).unwrap().0.bounds());
        for inside in ["192.0.2.0", "192.0.2.255"] {
            assert!((lo.clone()..=hi.clone()).contains(&key(inside)), "{inside}");
        }
        for outside in ["192.0.1.255", "192.0.3.0", "c000:2ff::1", "::c000:205"] {
            assert!(
                !(lo.clone()..=hi.clone()).contains(&key(outside)),
                "{outside}"
            );
        }
    }

    #[test]
    fn sender_filters_parse_to_their_conditions() {
        let domain = |s: &str| SenderCondition::Domain(s.into());
        let below = |s: &str, e: &str| SenderCondition::DomainAndBelow {
            start: s.into(),
            end: e.into(),
        };
        let cases = [
            (
                "Alice@Example.COM",
                SenderCondition::Address("alice@example.com".into()),
            ),
            ("example.com", domain("com.example.")),
            ("@Example.com.", domain("com.example.")),
            ("*@example.com", domain("com.example.")),
            ("*.example.com", below("com.example.", "com.example/")),
            ("@*.example.com", below("com.example.", "com.example/")),
            (
                "*@*.mail.example.com",
                below("com.example.mail.", "com.example.mail/"),
            ),
        ];
        for (input, want) in cases {
            assert_eq!(parse_sender(input).unwrap(), want, "{input}");
        }
        for bad in ["", "@", "a@", "*", "not a domain", "x@@", "*.*.example.com"] {
            let err = parse_sender(bad).unwrap_err();
            assert!(
                matches!(
                    err,
                    StoreError::InvalidHistoryFilter {
                        field: "sender",
                        ..
                    }
                ),
                "{bad}: {err:?}"
            );
        }
    }

    #[test]
    fn a_domain_range_covers_the_domain_and_below_only() {
        let SenderCondition::DomainAndBelow { start, end } = parse_sender("*.example.com").unwrap()
        else {
            panic!()
        };
        let rdomain = |d: &str| reversed_domain(&Domain::parse(d).unwrap());
        for inside in [
            "example.com",
            "mail.example.com",
            "a.b.example.com",
            "_x.example.com",
        ] {
            let r = rdomain(inside);
            assert!(start <= r && r < end, "{inside}");
        }
        for outside in [
            "badexample.com",
            "example.co",
            "example.com.au",
            "com",
            "examplf.com",
        ] {
            let r = rdomain(outside);
            assert!(!(start <= r && r < end), "{outside}");
        }
    }
}
