//! Import of entries from text, CSV or JSON.
//!
//! The parsing half ([`parse_import`]) is pure: bytes in, validated entries (or every bad line)
//! out, no database. [`Store::import`](crate::Store::import) writes the result in one
//! transaction.
//!
//! Formats:
//! - **text**: one entry per line, `value # comment`; `#` at the start of a line makes it a
//!   comment; blank lines are skipped; a line may hold several values separated by `,` or `;`
//!   (a trailing `# comment` then applies to each of them). A text export's section headers,
//!   `# list: block, scope: global, kind: ip`, are read: the values under one have its kind, and
//!   a section of another list or scope, or of a kind outside the import's family, refuses the
//!   import with its lines (an export never lands in another list by accident).
//!
//! Problems are reported each once with every line they concern (no `--bypass` for an allow
//! list on 50 lines is one problem on `lines 1–50`); a problem with one value is reported on its
//! line with the value. Every bad line is counted; the listing stops at [`MAX_LINE_ERRORS`].
//! - **CSV**: a header row naming the columns (case-insensitive, any order; only `value` is
//!   required): `value`, `kind`, `comment`, `checks`, `require_auth`, `internal`, `starts_at`,
//!   `expires_at`, `enabled`; `list` and `scope` must match the import if present; `id`,
//!   `created_at` and `created_by` are ignored.
//! - **JSON**: an array of objects with the same fields, or `{"entries": [...]}` as written by
//!   export.
//!
//! ```
//! use allowgate_store::import::{parse_import, ImportFamily, ImportRequest};
//! use allowgate_types::List;
//!
//! let req = ImportRequest::new(List::Block, ImportFamily::Server);
//! let parsed = parse_import(b"192.0.2.7 # scanner\nmx.example.net; 198.51.100.0/24\n", &req).unwrap();
//! let values: Vec<String> = parsed.entries.iter().map(|e| e.entry.value.to_string()).collect();
//! assert_eq!(values, ["192.0.2.7", "mx.example.net", "198.51.100.0/24"]);
//! ```

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::path::Path;
use std::str::FromStr;

use allowgate_types::{
    CheckSet, EntryError, EntryKind, EntrySpec, IpRange, List, NewEntry, Printable, Scope, Warning,
    parse_time, shown,
};
use serde::Serialize;
use serde_json::Value;

use crate::error::ImportError;
use crate::report::{Finding, LineReport, LineUnit, Lines, Reports};

/// Largest accepted import, in bytes (2 MB).
pub const MAX_IMPORT_BYTES: usize = 2 * 1024 * 1024;
/// Most entries accepted in one import.
pub const MAX_IMPORT_ENTRIES: usize = 100_000;
/// Most problems listed in [`ImportError::Invalid`] (and warnings in a report); the bad lines
/// are counted all the same.
pub const MAX_LINE_ERRORS: usize = 1000;
/// Longest text quoted in a problem, in characters.
const MAX_SHOWN_VALUE: usize = 80;
/// Progress is reported after this many entries.
const PROGRESS_STEP: usize = 1000;

/// Which kinds one import holds (one import = one kind family).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ImportFamily {
    /// Sending servers: a value that parses as an IP address, CIDR or range is `ip`, anything
    /// else `host`.
    Server,
    /// Senders: a value with `@` is `email`, anything else (also `@example.com`) `domain`.
    Email,
    /// Exactly one kind.
    Kind(EntryKind),
}

impl ImportFamily {
    /// The kinds of this family.
    pub fn kinds(self) -> Vec<EntryKind> {
        match self {
            ImportFamily::Server => vec![EntryKind::Ip, EntryKind::Host],
            ImportFamily::Email => vec![EntryKind::Email, EntryKind::Domain],
            ImportFamily::Kind(k) => vec![k],
        }
    }

    /// Whether `kind` belongs to this family.
    pub fn contains(self, kind: EntryKind) -> bool {
        match self {
            ImportFamily::Server => matches!(kind, EntryKind::Ip | EntryKind::Host),
            ImportFamily::Email => matches!(kind, EntryKind::Email | EntryKind::Domain),
            ImportFamily::Kind(k) => k == kind,
        }
    }

    /// The kind a value without an explicit kind gets.
    pub fn classify(self, value: &str) -> EntryKind {
        let text = value.trim();
        match self {
            ImportFamily::Server => {
                // Anything shaped like an address is an `ip`, so that a typo is reported as a
                // bad address rather than a bad host name.
                let ip_shaped = text.contains([':', '/', '['])
                    || (!text.is_empty()
                        && text
                            .bytes()
                            .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'-' | b' ')));
                if ip_shaped || IpRange::parse(text, true).is_ok() {
                    EntryKind::Ip
                } else {
                    EntryKind::Host
                }
            }
            ImportFamily::Email => {
                let bare_domain = text.starts_with('@') && text.matches('@').count() == 1;
                if text.contains('@') && !bare_domain {
                    EntryKind::Email
                } else {
                    EntryKind::Domain
                }
            }
            ImportFamily::Kind(k) => k,
        }
    }
}

impl fmt::Display for ImportFamily {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ImportFamily::Server => f.write_str("server"),
            ImportFamily::Email => f.write_str("email"),
            ImportFamily::Kind(k) => write!(f, "{k}"),
        }
    }
}

impl FromStr for ImportFamily {
    type Err = allowgate_types::ValueError;
    /// `server`, `email`, or an entry kind (`country`, `spf-domain`, …). Note that `email` is
    /// the family (email + domain), not the kind.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "server" => Ok(ImportFamily::Server),
            "email" => Ok(ImportFamily::Email),
            other => other.parse().map(ImportFamily::Kind),
        }
    }
}

/// The format of an import (or export) file: text, CSV or JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum ImportFormat {
    /// One entry per line, `value # comment`.
    #[default]
    Text,
    /// CSV with a header row.
    Csv,
    /// A JSON array of entry objects, or `{"entries": [...]}`.
    Json,
}

impl ImportFormat {
    /// The format a file name suggests: `.csv` → CSV, `.json` → JSON, anything else text.
    pub fn from_path(path: &Path) -> ImportFormat {
        match path
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase)
            .as_deref()
        {
            Some("csv") => ImportFormat::Csv,
            Some("json") => ImportFormat::Json,
            _ => ImportFormat::Text,
        }
    }

    /// The keyword (`text`, `csv`, `json`).
    pub fn as_str(self) -> &'static str {
        match self {
            ImportFormat::Text => "text",
            ImportFormat::Csv => "csv",
            ImportFormat::Json => "json",
        }
    }
}

impl fmt::Display for ImportFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ImportFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "text" | "txt" => Ok(ImportFormat::Text),
            "csv" => Ok(ImportFormat::Csv),
            "json" => Ok(ImportFormat::Json),
            other => Err(format!(
                "unknown format `{other}`; expected text, csv or json"
            )),
        }
    }
}

/// What happens to the entries already there.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum ImportMode {
    /// Keep them; entries already present are counted as duplicates and left alone.
    #[default]
    Merge,
    /// Delete the entries of the import's list and scope whose kind is in the family, then
    /// insert the file's entries (in one transaction).
    Replace,
}

/// What to import and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportRequest {
    /// The list every entry goes on.
    pub list: List,
    /// The scope every entry gets.
    pub scope: Scope,
    /// The kinds the file may hold.
    pub family: ImportFamily,
    /// Checks bypassed (allow lists); a CSV/JSON row's own `checks` override it.
    pub checks: Option<CheckSet>,
    /// The file format.
    pub format: ImportFormat,
    /// Merge or replace.
    pub mode: ImportMode,
    /// Accept over-broad values and malware bypasses.
    pub force: bool,
    /// Default `require_auth` of the entries (a CSV/JSON row's own value overrides it).
    pub require_auth: bool,
    /// Confirms that a replace may leave the list, scope and kinds empty (a file with no
    /// entries). Without it such a replace is refused ([`ImportError::WouldEmpty`]) whenever
    /// there are entries to remove.
    pub allow_empty: bool,
}

impl ImportRequest {
    /// A request for `list` and `family` with the defaults: global scope, no checks, text,
    /// merge, not forced, no `require_auth`, no empty replace.
    pub fn new(list: List, family: ImportFamily) -> ImportRequest {
        ImportRequest {
            list,
            scope: Scope::Global,
            family,
            checks: None,
            format: ImportFormat::Text,
            mode: ImportMode::Merge,
            force: false,
            require_auth: false,
            allow_empty: false,
        }
    }
}

/// One validated entry of an import, with the line it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedEntry {
    /// 1-based line (JSON: array element).
    pub line: usize,
    /// The entry.
    pub entry: NewEntry,
}

/// The result of parsing an import: valid, deduplicated entries.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ParsedImport {
    /// The entries, in file order, each value once.
    pub entries: Vec<ParsedEntry>,
    /// Values that appeared again later in the file (dropped).
    pub duplicates: u64,
    /// Warnings about accepted entries, each once with the lines it concerns.
    pub warnings: Vec<LineReport>,
    /// Number of values found in the file (entries + duplicates).
    pub values: u64,
}

/// What an import did. Its JSON form: `{"added", "duplicates", "removed", "warnings":
/// [{"lines": [[first, last], …], "value"?, "message"}], "revision"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ImportReport {
    /// Entries inserted.
    pub added: u64,
    /// Values ignored because they appeared earlier in the file or already exist.
    pub duplicates: u64,
    /// Entries deleted (replace mode).
    pub removed: u64,
    /// Warnings about accepted entries, each once with the lines it concerns.
    pub warnings: Vec<LineReport>,
    /// The revision after the import (unchanged if nothing changed).
    pub revision: i64,
}

/// Parse and validate an import without touching any database (the fuzzing entry point).
///
/// Checks the caps first (size, then UTF-8, then the number of values, before any value is
/// validated), then validates every value; if any is bad, every bad line is returned in
/// [`ImportError::Invalid`]. It never returns [`ImportError::Store`]; the cap errors
/// ([`ImportError::TooLarge`], [`ImportError::TooManyEntries`], [`ImportError::NotUtf8`]) are
/// kept as their own variants rather than folded into line errors.
pub fn parse_import(data: &[u8], req: &ImportRequest) -> Result<ParsedImport, ImportError> {
    parse_with_progress(data, req, &|_, _| {})
}

/// [`parse_import`], calling `progress(done, total)` every 1000 values.
pub(crate) fn parse_with_progress(
    data: &[u8],
    req: &ImportRequest,
    progress: &dyn Fn(u64, u64),
) -> Result<ParsedImport, ImportError> {
    if data.len() > MAX_IMPORT_BYTES {
        return Err(ImportError::TooLarge {
            bytes: data.len() as u64,
        });
    }
    let text = decode_utf8(data)?;
    let mut problems = Reports::new(MAX_LINE_ERRORS);
    let (rows, unit) = match req.format {
        ImportFormat::Text => (text_rows(text, &mut problems), LineUnit::Line),
        ImportFormat::Csv => (csv_rows(text, &mut problems), LineUnit::Line),
        ImportFormat::Json => json_rows(text, &mut problems),
    };
    if rows.len() > MAX_IMPORT_ENTRIES {
        return Err(ImportError::TooManyEntries {
            count: rows.len() as u64,
        });
    }
    let total = rows.len() as u64;
    progress(0, total);
    let mut warnings = Reports::new(MAX_LINE_ERRORS);
    let mut seen: HashSet<(EntryKind, String)> = HashSet::with_capacity(rows.len());
    let mut parsed = ParsedImport {
        values: total,
        ..ParsedImport::default()
    };
    for (i, row) in rows.into_iter().enumerate() {
        let line = row.line;
        match build(row, req) {
            Ok((entry, found)) if problems.is_empty() => {
                let key = (entry.kind(), entry.value.to_string());
                if seen.contains(&key) {
                    parsed.duplicates += 1;
                } else {
                    if !found.is_empty() {
                        warnings.add(line, &key.1, found.iter().map(warning_finding).collect());
                    }
                    seen.insert(key);
                    parsed.entries.push(ParsedEntry { line, entry });
                }
            }
            Ok(_) => {}
            Err(rejected) => problems.add(line, &rejected.value, rejected.findings),
        }
        if (i + 1) % PROGRESS_STEP == 0 {
            progress((i + 1) as u64, total);
        }
    }
    progress(total, total);
    if problems.is_empty() {
        parsed.warnings = warnings.into_reports();
        Ok(parsed)
    } else {
        Err(ImportError::Invalid(problems.into_problems(unit)))
    }
}

/// How a warning about an accepted entry is reported: the ones that say the same about every
/// entry of the file once (with their lines), the ones about a value on its line.
fn warning_finding(warning: &Warning) -> Finding {
    match warning {
        Warning::SenderWithoutAuth { .. } => Finding::Shared(
            "sender allow entries without --require-auth can be spoofed by anyone; \
             pass --require-auth"
                .into(),
        ),
        Warning::BypassesMalware | Warning::NeverBypassed { .. } => {
            Finding::Shared(warning.to_string())
        }
        other => Finding::OfValue(other.to_string()),
    }
}

/// The text, or every line that is not UTF-8.
fn decode_utf8(data: &[u8]) -> Result<&str, ImportError> {
    match std::str::from_utf8(data) {
        Ok(text) => Ok(text.strip_prefix('\u{feff}').unwrap_or(text)),
        Err(_) => {
            let mut lines = Lines::default();
            for (i, line) in data.split(|b| *b == b'\n').enumerate() {
                if std::str::from_utf8(line).is_err() {
                    lines.insert(i + 1);
                }
            }
            Err(ImportError::NotUtf8 { lines })
        }
    }
}

/// One value of the file with the fields it came with, not yet validated.
#[derive(Debug, Default)]
struct RawRow {
    line: usize,
    value: String,
    kind: Option<String>,
    comment: Option<String>,
    checks: Option<String>,
    require_auth: Option<bool>,
    internal: Option<bool>,
    enabled: Option<bool>,
    starts_at: Option<String>,
    expires_at: Option<String>,
    list: Option<String>,
    scope: Option<String>,
    /// The line of the text section header (`# list: …, scope: …, kind: …`) the value is under.
    section: Option<usize>,
    /// Problems found while reading the fields.
    problems: Vec<Finding>,
}

/// A text export's section header: `# list: block, scope: global, kind: ip`.
struct Section {
    line: usize,
    list: String,
    scope: String,
    kind: String,
}

/// The fields of a section header comment (the text after `#`), `None` if the comment is not
/// one. A comment starting `list:` and naming a `scope:` or `kind:` is taken for one; anything
/// else about it is an error (an export must import unambiguously).
fn section_header(line: usize, comment: &str) -> Option<Result<Section, String>> {
    let lower = comment.to_ascii_lowercase();
    if !(lower.starts_with("list:") && (lower.contains("scope:") || lower.contains("kind:"))) {
        return None;
    }
    let mut fields: HashMap<&str, &str> = HashMap::new();
    for part in comment.split(',') {
        let Some((key, value)) = part.split_once(':') else {
            return Some(Err(SECTION_FORM.into()));
        };
        let key = key.trim();
        let key = ["list", "scope", "kind"]
            .into_iter()
            .find(|k| k.eq_ignore_ascii_case(key));
        match key {
            Some(key) if !fields.contains_key(key) => {
                fields.insert(key, value.trim());
            }
            _ => return Some(Err(SECTION_FORM.into())),
        }
    }
    match (fields.get("list"), fields.get("scope"), fields.get("kind")) {
        (Some(list), Some(scope), Some(kind)) => Some(Ok(Section {
            line,
            list: list.to_string(),
            scope: scope.to_string(),
            kind: kind.to_string(),
        })),
        _ => Some(Err(SECTION_FORM.into())),
    }
}

const SECTION_FORM: &str = "unreadable section header: a comment starting `list:` must read \
     `# list: LIST, scope: SCOPE, kind: KIND` as an export writes it";

fn text_rows(text: &str, problems: &mut Reports) -> Vec<RawRow> {
    let mut rows = Vec::new();
    let mut section: Option<Section> = None;
    for (i, line) in text.split('\n').enumerate() {
        let line_no = i + 1;
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        if let Some(comment) = line.strip_prefix('#') {
            match section_header(line_no, comment.trim()) {
                None => {}
                Some(Ok(s)) => section = Some(s),
                Some(Err(reason)) => {
                    problems.add(line_no, line, vec![Finding::OfValue(reason)]);
                    section = None;
                }
            }
            continue;
        }
        let (values, comment) = split_comment(line);
        for value in split_values(values)
            .into_iter()
            .map(str::trim)
            .filter(|v| !v.is_empty())
        {
            let mut row = RawRow {
                line: line_no,
                value: value.to_string(),
                comment: comment.map(str::to_string),
                ..RawRow::default()
            };
            if let Some(s) = &section {
                row.section = Some(s.line);
                row.list = Some(s.list.clone());
                row.scope = Some(s.scope.clone());
                row.kind = Some(s.kind.clone());
            }
            rows.push(row);
        }
    }
    rows
}

/// Split `value # comment` at the first `#` that starts the line or follows white space, outside
/// a quoted local part (so that a `#` inside an address stays part of the value).
fn split_comment(line: &str) -> (&str, Option<&str>) {
    let mut previous_space = true;
    for (i, c, quoted) in outside_quotes(line) {
        if c == '#' && previous_space && !quoted {
            let comment = line[i + 1..].trim();
            return (line[..i].trim(), (!comment.is_empty()).then_some(comment));
        }
        previous_space = c.is_whitespace();
    }
    (line, None)
}

/// Split values at `,` and `;`, but not inside a quoted local part (`"a,b"@example.com`).
fn split_values(text: &str) -> Vec<&str> {
    let mut values = Vec::new();
    let mut start = 0;
    for (i, c, quoted) in outside_quotes(text) {
        if matches!(c, ',' | ';') && !quoted {
            values.push(&text[start..i]);
            start = i + 1;
        }
    }
    values.push(&text[start..]);
    values
}

/// Each character with its position and whether it is inside a `"…"` quoted string (where `\`
/// escapes the next character), the quotes themselves counting as inside.
fn outside_quotes(text: &str) -> impl Iterator<Item = (usize, char, bool)> + '_ {
    let mut in_quotes = false;
    let mut escaped = false;
    text.char_indices().map(move |(i, c)| {
        let inside = in_quotes || c == '"';
        if escaped {
            escaped = false;
        } else if in_quotes && c == '\\' {
            escaped = true;
        } else if c == '"' {
            in_quotes = !in_quotes;
        }
        (i, c, inside)
    })
}

/// A CSV column / JSON field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Field {
    Value,
    Kind,
    Comment,
    Checks,
    RequireAuth,
    Internal,
    StartsAt,
    ExpiresAt,
    Enabled,
    List,
    Scope,
    /// Accepted and ignored (`id`, `created_at`, `created_by`).
    Ignored,
}

const KNOWN_FIELDS: &str = "value, kind, comment, checks, require_auth, internal, starts_at, expires_at, enabled, list, scope";

fn field(name: &str) -> Option<Field> {
    let name = name.trim().to_ascii_lowercase().replace(['-', ' '], "_");
    Some(match name.as_str() {
        "value" => Field::Value,
        "kind" => Field::Kind,
        "comment" => Field::Comment,
        "checks" | "bypass" => Field::Checks,
        "require_auth" => Field::RequireAuth,
        "internal" => Field::Internal,
        "starts_at" | "starts" => Field::StartsAt,
        "expires_at" | "expires" => Field::ExpiresAt,
        "enabled" => Field::Enabled,
        "list" => Field::List,
        "scope" => Field::Scope,
        "id" | "created_at" | "created_by" => Field::Ignored,
        _ => return None,
    })
}

fn parse_bool(name: &str, text: &str) -> Result<Option<bool>, String> {
    match text.trim().to_ascii_lowercase().as_str() {
        "" => Ok(None),
        "true" | "yes" | "y" | "1" | "on" => Ok(Some(true)),
        "false" | "no" | "n" | "0" | "off" => Ok(Some(false)),
        _ => Err(format!(
            "`{name}` must be true or false, not `{}`",
            shown(text, MAX_SHOWN_VALUE)
        )),
    }
}

fn non_empty(text: &str) -> Option<String> {
    let text = text.trim();
    (!text.is_empty()).then(|| text.to_string())
}

impl RawRow {
    /// Set a field from its text (CSV cell, or JSON string).
    fn set_text(&mut self, field: Field, text: &str) {
        let bool_field = |row: &mut RawRow, name: &str| match parse_bool(name, text) {
            Ok(b) => b,
            Err(e) => {
                row.problems.push(Finding::OfValue(e));
                None
            }
        };
        match field {
            Field::Value => self.value = text.to_string(),
            Field::Kind => self.kind = non_empty(text),
            Field::Comment => self.comment = non_empty(text),
            Field::Checks => self.checks = non_empty(text),
            Field::RequireAuth => self.require_auth = bool_field(self, "require_auth"),
            Field::Internal => self.internal = bool_field(self, "internal"),
            Field::Enabled => self.enabled = bool_field(self, "enabled"),
            Field::StartsAt => self.starts_at = non_empty(text),
            Field::ExpiresAt => self.expires_at = non_empty(text),
            Field::List => self.list = non_empty(text),
            Field::Scope => self.scope = non_empty(text),
            Field::Ignored => {}
        }
    }
}

/// The rows of a CSV file; problems with its header go to `problems` (and no rows come back).
fn csv_rows(text: &str, problems: &mut Reports) -> Vec<RawRow> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .trim(csv::Trim::All)
        .from_reader(text.as_bytes());
    let mut records = reader.records();
    let line_of = |p: Option<&csv::Position>| p.map_or(1, |p| p.line() as usize);
    let header = match records.next() {
        None => {
            problems.add_line(
                1,
                "empty CSV: a header row naming the columns (at least `value`) is required".into(),
            );
            return Vec::new();
        }
        Some(Err(e)) => {
            problems.add_line(line_of(e.position()), format!("unreadable CSV header: {e}"));
            return Vec::new();
        }
        Some(Ok(h)) => h,
    };
    let header_line = line_of(header.position());
    let mut fields = Vec::with_capacity(header.len());
    let mut errors: Vec<(String, String)> = Vec::new();
    let mut seen = HashSet::new();
    for name in header.iter() {
        match field(name) {
            Some(f) => {
                if f != Field::Ignored && !seen.insert(f) {
                    errors.push((name.into(), "column appears twice in the header".into()));
                }
                fields.push(f);
            }
            None => errors.push((
                name.into(),
                format!("unknown column; known columns: {KNOWN_FIELDS}"),
            )),
        }
    }
    if !fields.contains(&Field::Value) {
        if fields.is_empty() {
            // Nothing in the first row names a column: it is data, not a header.
            errors.clear();
        }
        errors.push((
            header.iter().collect::<Vec<_>>().join(","),
            "the first row must be a header naming the columns, with at least a `value` column"
                .into(),
        ));
    }
    if !errors.is_empty() {
        for (name, reason) in errors {
            problems.add(header_line, &name, vec![Finding::OfValue(reason)]);
        }
        return Vec::new();
    }
    let mut rows = Vec::new();
    for record in records {
        match record {
            Err(e) => rows.push(RawRow {
                line: line_of(e.position()),
                problems: vec![Finding::OfValue(format!("unreadable CSV row: {e}"))],
                ..RawRow::default()
            }),
            Ok(record) => {
                let mut row = RawRow {
                    line: line_of(record.position()),
                    ..RawRow::default()
                };
                if record.len() != fields.len() {
                    row.problems.push(Finding::Shared(format!(
                        "row has {} fields; the header has {}",
                        record.len(),
                        fields.len()
                    )));
                }
                for (f, cell) in fields.iter().zip(record.iter()) {
                    row.set_text(*f, cell);
                }
                rows.push(row);
            }
        }
    }
    rows
}

/// The rows of a JSON import (numbered by array element); a file that is not JSON of the right
/// shape goes to `problems` as a file problem (numbered by file line: the unit returned).
fn json_rows(text: &str, problems: &mut Reports) -> (Vec<RawRow>, LineUnit) {
    let shape = "a JSON import is an array of entry objects, or an object with an `entries` array";
    let root: Value = match serde_json::from_str(text) {
        Ok(root) => root,
        Err(e) => {
            problems.add_line(
                e.line(),
                format!(
                    "not valid JSON (column {}): {}",
                    e.column(),
                    Printable(&e.to_string())
                ),
            );
            return (Vec::new(), LineUnit::Line);
        }
    };
    let items = match root {
        Value::Array(items) => items,
        Value::Object(mut map) => match map.remove("entries") {
            Some(Value::Array(items)) => items,
            _ => {
                problems.add_line(1, shape.into());
                return (Vec::new(), LineUnit::Line);
            }
        },
        _ => {
            problems.add_line(1, shape.into());
            return (Vec::new(), LineUnit::Line);
        }
    };
    let rows = items
        .into_iter()
        .enumerate()
        .map(|(i, item)| json_row(i + 1, item))
        .collect();
    (rows, LineUnit::Element)
}

fn json_row(line: usize, item: Value) -> RawRow {
    let mut row = RawRow {
        line,
        ..RawRow::default()
    };
    let Value::Object(map) = item else {
        row.problems.push(Finding::Shared(
            "not an object (expected {\"value\": …, …})".into(),
        ));
        return row;
    };
    let mut has_value = false;
    for (key, value) in map {
        let Some(f) = field(&key) else {
            row.problems.push(Finding::Shared(format!(
                "unknown field `{}`; known fields: {KNOWN_FIELDS}",
                shown(&key, MAX_SHOWN_VALUE)
            )));
            continue;
        };
        has_value |= f == Field::Value;
        match (f, value) {
            (Field::Ignored, _) | (_, Value::Null) => {}
            (_, Value::String(s)) => row.set_text(f, &s),
            (Field::RequireAuth, Value::Bool(b)) => row.require_auth = Some(b),
            (Field::Internal, Value::Bool(b)) => row.internal = Some(b),
            (Field::Enabled, Value::Bool(b)) => row.enabled = Some(b),
            (Field::Checks, Value::Array(items)) => {
                let names: Option<Vec<&str>> = items.iter().map(Value::as_str).collect();
                match names {
                    Some(names) => row.checks = non_empty(&names.join(",")),
                    None => row.problems.push(Finding::Shared(
                        "`checks` must be an array of check ids".into(),
                    )),
                }
            }
            (f, other) => {
                let want = match f {
                    Field::RequireAuth | Field::Internal | Field::Enabled => "true or false",
                    Field::Checks => "a string or an array of check ids",
                    _ => "a string",
                };
                row.problems.push(Finding::Shared(format!(
                    "`{}` must be {want}, not {}",
                    shown(&key.to_ascii_lowercase(), MAX_SHOWN_VALUE),
                    type_name(&other)
                )));
            }
        }
    }
    if !has_value {
        row.problems
            .push(Finding::Shared("no `value` field".into()));
    }
    row
}

fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// A row that cannot be imported: its value and everything wrong with it.
struct Rejected {
    value: String,
    findings: Vec<Finding>,
}

/// Validate one row into an entry, or say everything that is wrong with it.
fn build(row: RawRow, req: &ImportRequest) -> Result<(NewEntry, Vec<Warning>), Rejected> {
    let mut problems = row.problems;
    // Where a list, scope or kind comes from: a section header (the same for all of its
    // lines) or the row's own column.
    let (origin, about_header): (String, fn(String) -> Finding) = match row.section {
        Some(line) => (format!("the section on line {line}"), Finding::Shared),
        None => ("the entry".to_string(), Finding::OfValue),
    };
    if let Some(list) = &row.list {
        match list.parse::<List>() {
            Ok(l) if l == req.list => {}
            Ok(l) => problems.push(Finding::Shared(format!(
                "{origin} is for the {l} list, but this import is for the {} list",
                req.list
            ))),
            Err(e) => problems.push(about_header(e.to_string())),
        }
    }
    if let Some(scope) = &row.scope {
        match scope.parse::<Scope>() {
            Ok(s) if s == req.scope => {}
            Ok(s) => problems.push(Finding::Shared(format!(
                "{origin} is for scope {s}, but this import is for scope {}",
                req.scope
            ))),
            Err(e) => problems.push(about_header(e.to_string())),
        }
    }
    let kind = match &row.kind {
        None => Some(req.family.classify(&row.value)),
        Some(text) => match text.parse::<EntryKind>() {
            Ok(k) if req.family.contains(k) => Some(k),
            Ok(k) => {
                let kinds: Vec<&str> = req.family.kinds().iter().map(|k| k.as_str()).collect();
                problems.push(Finding::Shared(format!(
                    "{origin} is of kind {k}, which does not belong in a {} import (kinds: {})",
                    req.family,
                    kinds.join(", ")
                )));
                None
            }
            Err(e) => {
                problems.push(about_header(e.to_string()));
                None
            }
        },
    };
    let checks = match row.checks.as_deref() {
        Some(text) => match text.parse::<CheckSet>() {
            Ok(c) => Some(c),
            Err(e) => {
                problems.push(Finding::Shared(e.to_string()));
                req.checks
            }
        },
        None => req.checks,
    };
    let mut time =
        |text: Option<String>, name: &str| match text.as_deref().map(parse_time).transpose() {
            Ok(t) => t,
            Err(e) => {
                problems.push(Finding::OfValue(format!("{name}: {e}")));
                None
            }
        };
    let starts_at = time(row.starts_at, "starts_at");
    let expires_at = time(row.expires_at, "expires_at");
    // Without a kind, or without a value because the row could not be read, there is nothing
    // more to say about the value.
    let (Some(kind), false) = (kind, row.value.trim().is_empty() && !problems.is_empty()) else {
        return Err(Rejected {
            value: row.value,
            findings: problems,
        });
    };
    let spec = EntrySpec {
        list: Some(req.list),
        scope: req.scope.clone(),
        kind: Some(kind),
        value: row.value,
        checks,
        comment: row.comment,
        require_auth: row.require_auth.unwrap_or(req.require_auth),
        internal: row.internal.unwrap_or(false),
        starts_at,
        expires_at,
        disabled: !row.enabled.unwrap_or(true),
        force: req.force,
    };
    match spec.validate() {
        Ok(ok) if problems.is_empty() => Ok(ok),
        Ok(_) => Err(Rejected {
            value: spec.value,
            findings: problems,
        }),
        Err(errors) => {
            // A bad value is that value's problem; anything else (no checks for an allow list,
            // a malware bypass without --force, …) is the same for every line it concerns.
            problems.extend(errors.iter().map(|e| match e {
                EntryError::Value(_) => Finding::OfValue(e.to_string()),
                _ => Finding::Shared(e.to_string()),
            }));
            Err(Rejected {
                value: spec.value,
                findings: problems,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server(list: List) -> ImportRequest {
        ImportRequest::new(list, ImportFamily::Server)
    }

    fn values(parsed: &ParsedImport) -> Vec<String> {
        parsed
            .entries
            .iter()
            .map(|e| e.entry.value.to_string())
            .collect()
    }

    /// A quoted local part may hold `,`, `;` and ` #`: a text file (and a text export) keeps
    /// such an address whole.
    #[test]
    fn quoted_local_parts_with_separators_survive_a_text_export_regression() {
        let req = ImportRequest::new(List::Block, ImportFamily::Email);
        let data = "\"a,b\"@x.example; \"c;d #e\"@x.example, plain@x.example # note\n";
        let parsed = parse_import(data.as_bytes(), &req).unwrap();
        assert_eq!(
            values(&parsed),
            [
                "\"a,b\"@x.example",
                "\"c;d #e\"@x.example",
                "plain@x.example"
            ]
        );
        assert!(
            parsed
                .entries
                .iter()
                .all(|e| e.entry.comment.as_ref().map(|c| c.as_str()) == Some("note"))
        );
        let stored: Vec<allowgate_types::Entry> = parsed
            .entries
            .iter()
            .zip(1..)
            .map(|(p, id)| allowgate_types::Entry {
                id: allowgate_types::EntryId(id),
                entry: p.entry.clone(),
                created_at: chrono::Utc::now(),
                created_by: "test".into(),
            })
            .collect();
        let text = crate::export::render(&stored, ImportFormat::Text).unwrap();
        let again = parse_import(text.as_bytes(), &req).unwrap();
        assert_eq!(values(&again), values(&parsed), "{text}");
    }

    /// A problem flattened: its first line, its value (or ""), its message.
    #[derive(Debug)]
    struct Flat {
        line: usize,
        value: String,
        reason: String,
    }

    fn problems(result: Result<ParsedImport, ImportError>) -> crate::ImportProblems {
        match result {
            Err(ImportError::Invalid(problems)) => problems,
            other => panic!("expected Invalid, got {other:?}"),
        }
    }

    fn invalid(result: Result<ParsedImport, ImportError>) -> Vec<Flat> {
        problems(result)
            .problems
            .into_iter()
            .map(|p| Flat {
                line: p.lines.first().unwrap_or(0),
                value: p.value.unwrap_or_default(),
                reason: p.message,
            })
            .collect()
    }

    #[test]
    fn text_separators_comments_and_kinds() {
        let data = "\u{feff}# header comment\r\n192.0.2.7 # scanner\r\n\r\nmx.example.net; 198.51.100.0/24,2001:db8::/48\n  # indented comment\n192.0.2.10-192.0.2.20\n";
        let parsed = parse_import(data.as_bytes(), &server(List::Block)).unwrap();
        assert_eq!(
            values(&parsed),
            [
                "192.0.2.7",
                "mx.example.net",
                "198.51.100.0/24",
                "2001:db8::/48",
                "192.0.2.10-192.0.2.20"
            ]
        );
        let kinds: Vec<EntryKind> = parsed.entries.iter().map(|e| e.entry.kind()).collect();
        assert_eq!(
            kinds,
            [
                EntryKind::Ip,
                EntryKind::Host,
                EntryKind::Ip,
                EntryKind::Ip,
                EntryKind::Ip
            ]
        );
        let lines: Vec<usize> = parsed.entries.iter().map(|e| e.line).collect();
        assert_eq!(lines, [2, 4, 4, 4, 6]);
        assert_eq!(
            parsed.entries[0].entry.comment.as_ref().map(|c| c.as_str()),
            Some("scanner")
        );
        assert_eq!(parsed.entries[1].entry.comment, None);
    }

    #[test]
    fn comment_applies_to_every_value_of_a_line() {
        let parsed = parse_import(b"192.0.2.1, 192.0.2.2 # both", &server(List::Block)).unwrap();
        assert!(
            parsed
                .entries
                .iter()
                .all(|e| e.entry.comment.as_ref().map(|c| c.as_str()) == Some("both"))
        );
    }

    #[test]
    fn hash_inside_a_value_is_not_a_comment() {
        let mut req = ImportRequest::new(List::Block, ImportFamily::Email);
        req.format = ImportFormat::Text;
        let parsed = parse_import(b"a#b@example.com # note #2", &req).unwrap();
        assert_eq!(values(&parsed), ["a#b@example.com"]);
        assert_eq!(
            parsed.entries[0].entry.comment.as_ref().map(|c| c.as_str()),
            Some("note #2")
        );
    }

    #[test]
    fn email_family_classifies() {
        let req = ImportRequest::new(List::Block, ImportFamily::Email);
        let parsed = parse_import(
            b"user@example.com\n@example.org\nexample.net\n*@*.example.edu",
            &req,
        )
        .unwrap();
        let kinds: Vec<EntryKind> = parsed.entries.iter().map(|e| e.entry.kind()).collect();
        assert_eq!(
            kinds,
            [
                EntryKind::Email,
                EntryKind::Domain,
                EntryKind::Domain,
                EntryKind::Email
            ]
        );
        assert_eq!(
            values(&parsed),
            [
                "user@example.com",
                "example.org",
                "example.net",
                "*@*.example.edu"
            ]
        );
    }

    #[test]
    fn duplicates_in_the_file_are_counted() {
        let parsed = parse_import(
            b"192.0.2.1\n192.0.2.1\n::ffff:192.0.2.1\nMX.example.net\nmx.example.net.",
            &server(List::Block),
        )
        .unwrap();
        assert_eq!(values(&parsed), ["192.0.2.1", "mx.example.net"]);
        assert_eq!(parsed.duplicates, 3);
        assert_eq!(parsed.values, 5);
    }

    #[test]
    fn every_bad_line_is_reported() {
        let data =
            "192.0.2.1\n192.0.2.300\nok.example.com\n10.0.0.0/33\nbad_host!.example\n0.0.0.0/0\n";
        let errors = invalid(parse_import(data.as_bytes(), &server(List::Block)));
        let lines: Vec<usize> = errors.iter().map(|e| e.line).collect();
        assert_eq!(lines, [2, 4, 5, 6], "{errors:#?}");
        assert_eq!(errors[0].value, "192.0.2.300");
        assert!(
            errors[0].reason.contains("not a valid IP"),
            "{}",
            errors[0].reason
        );
        assert!(
            errors[3].reason.contains("over-broad"),
            "{}",
            errors[3].reason
        );
        let mut forced = server(List::Block);
        forced.force = true;
        let errors = invalid(parse_import(data.as_bytes(), &forced));
        assert_eq!(errors.len(), 3);
    }

    #[test]
    fn allow_needs_checks_and_comment_cap_applies() {
        let long = format!("192.0.2.1 # {}", "x".repeat(129));
        let errors = invalid(parse_import(long.as_bytes(), &server(List::Allow)));
        assert_eq!(errors.len(), 2, "{errors:#?}");
        assert!(
            errors[0].reason.contains("need a set of checks") && errors[0].value.is_empty(),
            "{errors:#?}"
        );
        assert!(
            errors[1].reason.contains("comment is 129 characters")
                && errors[1].value == "192.0.2.1",
            "{errors:#?}"
        );
        let mut req = server(List::Allow);
        req.checks = Some("spf,dkim".parse().unwrap());
        let parsed = parse_import(b"192.0.2.1", &req).unwrap();
        assert_eq!(parsed.entries[0].entry.checks.to_string(), "spf,dkim");
    }

    #[test]
    fn long_values_are_truncated_in_errors() {
        let data = format!("{}.example.com!", "a".repeat(300));
        let errors = invalid(parse_import(data.as_bytes(), &server(List::Block)));
        assert_eq!(errors[0].value.chars().count(), 80);
    }

    #[test]
    fn error_list_is_capped() {
        let data = "not an ip!\n".repeat(MAX_LINE_ERRORS + 5);
        let problems = problems(parse_import(data.as_bytes(), &server(List::Block)));
        assert_eq!(problems.problems.len(), MAX_LINE_ERRORS);
        assert_eq!(problems.unlisted, 5);
        assert_eq!(problems.bad_lines, MAX_LINE_ERRORS + 5);
        assert!(problems.to_string().contains("and 5 more problems"));
    }

    #[test]
    fn caps_and_encoding() {
        let big = vec![b'\n'; MAX_IMPORT_BYTES + 1];
        assert!(matches!(
            parse_import(&big, &server(List::Block)),
            Err(ImportError::TooLarge { .. })
        ));
        let many = "192.0.2.1,".repeat(MAX_IMPORT_ENTRIES + 1);
        assert!(matches!(
            parse_import(many.as_bytes(), &server(List::Block)),
            Err(ImportError::TooManyEntries { count }) if count == MAX_IMPORT_ENTRIES as u64 + 1
        ));
        let bad = b"192.0.2.1\n192.0.2.2\nmx.\xffexample.com\n";
        assert!(matches!(
            parse_import(bad, &server(List::Block)),
            Err(ImportError::NotUtf8 { lines }) if lines.ranges() == [(3, 3)]
        ));
    }

    #[test]
    fn csv_columns_any_order_and_overrides() {
        let mut req = ImportRequest::new(List::Allow, ImportFamily::Email);
        req.format = ImportFormat::Csv;
        req.checks = Some("spam".parse().unwrap());
        let data = "Comment,VALUE,checks,require_auth,expires_at,enabled\n\
                    \"partner, main\",user@example.com,,yes,2030-01-01,\n\
                    ,*.example.org,\"spf,dkim\",true,,false\n";
        let parsed = parse_import(data.as_bytes(), &req).unwrap();
        let [a, b] = &parsed.entries[..] else {
            panic!("{parsed:?}")
        };
        assert_eq!(a.line, 2);
        assert_eq!(
            a.entry.comment.as_ref().map(|c| c.as_str()),
            Some("partner, main")
        );
        assert_eq!(a.entry.checks.to_string(), "spam");
        assert!(a.entry.require_auth);
        assert_eq!(a.entry.expires_at, Some(parse_time("2030-01-01").unwrap()));
        assert!(a.entry.enabled);
        assert_eq!(b.entry.kind(), EntryKind::Domain);
        assert_eq!(b.entry.checks.to_string(), "spf,dkim");
        assert!(!b.entry.enabled);
    }

    #[test]
    fn csv_header_problems() {
        let mut req = server(List::Block);
        req.format = ImportFormat::Csv;
        let errors = invalid(parse_import(b"192.0.2.1\n192.0.2.2\n", &req));
        assert_eq!(errors.len(), 1);
        assert!(errors[0].reason.contains("header"), "{errors:?}");
        let errors = invalid(parse_import(b"value,colour,value\n192.0.2.1,red,x\n", &req));
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert!(
            invalid(parse_import(b"", &req))[0]
                .reason
                .contains("header")
        );
    }

    #[test]
    fn csv_row_problems() {
        let mut req = server(List::Block);
        req.format = ImportFormat::Csv;
        let data =
            "value,kind,internal\n192.0.2.1,email,\n192.0.2.2,ip,maybe\n192.0.2.3\n192.0.2.4,ip,\n";
        let errors = invalid(parse_import(data.as_bytes(), &req));
        let lines: Vec<usize> = errors.iter().map(|e| e.line).collect();
        assert_eq!(lines, [2, 3, 4], "{errors:#?}");
        assert!(errors[0].reason.contains("does not belong"));
        assert!(
            errors[1]
                .reason
                .contains("`internal` must be true or false")
        );
        assert!(errors[2].reason.contains("row has 1 fields"));
    }

    #[test]
    fn json_array_and_object() {
        let mut req = server(List::Ignore);
        req.format = ImportFormat::Json;
        let data = br#"[{"value": "192.0.2.0/24", "internal": true, "comment": "relays"}, {"value": "mx.example.net", "kind": "host", "id": 7}]"#;
        let parsed = parse_import(data, &req).unwrap();
        assert_eq!(values(&parsed), ["192.0.2.0/24", "mx.example.net"]);
        assert!(parsed.entries[0].entry.internal);
        let wrapped = br#"{"entries": [{"value": "192.0.2.9", "checks": []}]}"#;
        assert_eq!(values(&parse_import(wrapped, &req).unwrap()), ["192.0.2.9"]);
    }

    #[test]
    fn json_errors_name_the_element() {
        let mut req = server(List::Block);
        req.format = ImportFormat::Json;
        let data = br#"[{"value": "192.0.2.1"}, 5, {"value": 7}, {"valeu": "192.0.2.2"}, {"value": "192.0.2.3", "enabled": "nope"}]"#;
        let errors = invalid(parse_import(data, &req));
        let lines: Vec<usize> = errors.iter().map(|e| e.line).collect();
        assert_eq!(lines, [2, 3, 4, 4, 5], "{errors:#?}");
        assert!(errors[2].reason.contains("unknown field `valeu`"));
        assert!(errors[3].reason.contains("no `value` field"));
        let text = problems(parse_import(data, &req)).to_string();
        assert!(
            text.contains("4 invalid JSON array elements")
                && text.contains("\n  JSON array element 2: not an object"),
            "{text}"
        );
        // A file that is not JSON: its file line.
        let problems = problems(parse_import(b"[{\"value\": \n \"x\"", &req));
        assert_eq!(problems.unit, LineUnit::Line);
        assert_eq!(problems.problems[0].lines.first(), Some(2));
        assert!(problems.problems[0].message.contains("not valid JSON"));
    }

    #[test]
    fn list_and_scope_columns_must_match() {
        let mut req = server(List::Block);
        req.format = ImportFormat::Json;
        let data = br#"[{"value": "192.0.2.1", "list": "block", "scope": "global"}, {"value": "192.0.2.2", "list": "ignore"}, {"value": "192.0.2.3", "scope": "acme"}]"#;
        let errors = invalid(parse_import(data, &req));
        let lines: Vec<usize> = errors.iter().map(|e| e.line).collect();
        assert_eq!(lines, [2, 3]);
    }

    #[test]
    fn from_path_and_keywords() {
        assert_eq!(
            ImportFormat::from_path(Path::new("x/list.CSV")),
            ImportFormat::Csv
        );
        assert_eq!(
            ImportFormat::from_path(Path::new("list.json")),
            ImportFormat::Json
        );
        assert_eq!(
            ImportFormat::from_path(Path::new("list.txt")),
            ImportFormat::Text
        );
        assert_eq!(
            ImportFormat::from_path(Path::new("list")),
            ImportFormat::Text
        );
        assert_eq!(
            "server".parse::<ImportFamily>().unwrap(),
            ImportFamily::Server
        );
        assert_eq!(
            "email".parse::<ImportFamily>().unwrap(),
            ImportFamily::Email
        );
        assert_eq!(
            "country".parse::<ImportFamily>().unwrap(),
            ImportFamily::Kind(EntryKind::Country)
        );
    }

    #[test]
    fn progress_is_reported() {
        let data = "192.0.2.1\n".repeat(2500);
        let calls = std::sync::Mutex::new(Vec::new());
        let _ = parse_with_progress(data.as_bytes(), &server(List::Block), &|d, t| {
            calls.lock().unwrap().push((d, t));
        });
        let calls = calls.into_inner().unwrap();
        assert_eq!(calls, [(0, 2500), (1000, 2500), (2000, 2500), (2500, 2500)]);
    }

    /// Regression: a text export re-imported into the allow list turned block entries into
    /// allow entries (the section header was read as a comment).
    #[test]
    fn a_text_export_of_the_block_list_is_refused_by_an_allow_import() {
        let export = "# allowgate export: 3 entries\n\n\
                      # list: block, scope: global, kind: ip\n192.0.2.7\n198.51.100.0/24 # scanners\n\n\
                      # list: block, scope: global, kind: host\nmx.bad.example\n";
        let mut allow = server(List::Allow);
        allow.checks = Some("spf".parse().unwrap());
        let problems = problems(parse_import(export.as_bytes(), &allow));
        assert_eq!(problems.bad_lines, 3);
        let text = problems.to_string();
        assert!(
            text.contains(
                "lines 4–5 (2 lines): the section on line 3 is for the block list, but this \
                 import is for the allow list"
            ),
            "{text}"
        );
        assert!(
            text.contains("line 8: the section on line 7 is for the block list"),
            "{text}"
        );
        // Into the block list it imports, each value with its section's kind.
        let parsed = parse_import(export.as_bytes(), &server(List::Block)).unwrap();
        let kinds: Vec<EntryKind> = parsed.entries.iter().map(|e| e.entry.kind()).collect();
        assert_eq!(kinds, [EntryKind::Ip, EntryKind::Ip, EntryKind::Host]);
        assert_eq!(
            parsed.entries[1].entry.comment.as_ref().map(|c| c.as_str()),
            Some("scanners")
        );
    }

    #[test]
    fn text_sections_of_another_scope_or_kind_are_refused() {
        let tenant = "# list: block, scope: acme, kind: ip\n192.0.2.7\n";
        let text = problems(parse_import(tenant.as_bytes(), &server(List::Block))).to_string();
        assert!(
            text.contains("line 2: the section on line 1 is for scope acme, but this import is for scope global"),
            "{text}"
        );
        let email = "# list: block, scope: global, kind: email\nuser@example.com\n";
        let text = problems(parse_import(email.as_bytes(), &server(List::Block))).to_string();
        assert!(
            text.contains("is of kind email, which does not belong in a server import"),
            "{text}"
        );
        // A value under a section is of the section's kind, never guessed.
        let req = ImportRequest::new(List::Block, ImportFamily::Email);
        let domain = "# list: block, scope: global, kind: domain\nuser@example.com\n";
        let errors = invalid(parse_import(domain.as_bytes(), &req));
        assert_eq!((errors.len(), errors[0].line), (1, 2), "{errors:#?}");
        // A header that cannot be read is an error; a comment that merely starts with `list:`
        // is a comment.
        let bad = "# list: block, scope: global, kind: ip, checks: spf\n192.0.2.7\n";
        let errors = invalid(parse_import(bad.as_bytes(), &server(List::Block)));
        assert_eq!(errors[0].line, 1, "{errors:#?}");
        assert!(errors[0].reason.contains("unreadable section header"));
        let fine = "# list: partner relays\n192.0.2.7\n";
        assert_eq!(
            values(&parse_import(fine.as_bytes(), &server(List::Block)).unwrap()),
            ["192.0.2.7"]
        );
    }

    /// Regression: invalid UTF-8 on several lines named only the first.
    #[test]
    fn every_line_with_invalid_utf8_is_named() {
        let data = b"192.0.2.1\nmx.\xffexample.com\n192.0.2.3\n192.0.2.4\n\xfe\n\xc3(\n";
        let err = parse_import(data, &server(List::Block)).unwrap_err();
        let ImportError::NotUtf8 { lines } = &err else {
            panic!("{err:?}")
        };
        assert_eq!(lines.ranges(), [(2, 2), (5, 6)]);
        assert_eq!(lines.count(), 3);
        assert!(err.to_string().contains("lines 2, 5–6 (3 lines)"), "{err}");
    }

    /// Regression: with 1,500 bad lines the report said 1,000.
    #[test]
    fn fifteen_hundred_bad_lines_are_counted_as_fifteen_hundred() {
        let data: String = (0..1500).map(|i| format!("192.0.{i}.300\n")).collect();
        let problems = problems(parse_import(data.as_bytes(), &server(List::Block)));
        assert_eq!(problems.bad_lines, 1500);
        assert_eq!(problems.problems.len(), MAX_LINE_ERRORS);
        assert_eq!(problems.unlisted, 500);
        assert!(
            problems
                .to_string()
                .starts_with("import rejected, nothing changed: 1500 invalid lines"),
            "{problems}"
        );
    }

    /// Regression: an allow import without --bypass printed the same error for every entry;
    /// so did a scope mismatch and a malware bypass.
    #[test]
    fn one_mistake_on_fifty_lines_is_reported_once_with_its_lines() {
        let mut data: String = (1..=50).map(|i| format!("192.0.2.{i}\n")).collect();
        data.push_str("192.0.2.300\n");
        let errors = invalid(parse_import(data.as_bytes(), &server(List::Allow)));
        assert_eq!(errors.len(), 2, "{errors:#?}");
        let text = problems(parse_import(data.as_bytes(), &server(List::Allow))).to_string();
        assert!(
            text.contains("\n  lines 1–51 (51 lines): allow entries need a set of checks"),
            "{text}"
        );
        assert!(text.contains("\n  line 51: `192.0.2.300`: "), "{text}");

        let mut req = server(List::Allow);
        req.checks = Some("malware".parse().unwrap());
        let errors = invalid(parse_import(data.as_bytes(), &req));
        assert_eq!(errors.len(), 2, "{errors:#?}");
        assert!(errors[0].reason.contains("confirm with --force"));

        let mut req = server(List::Block);
        req.format = ImportFormat::Csv;
        let csv: String = std::iter::once("value,scope\n".to_string())
            .chain((1..=50).map(|i| format!("192.0.2.{i},acme\n")))
            .collect();
        let errors = invalid(parse_import(csv.as_bytes(), &req));
        assert_eq!(errors.len(), 1, "{errors:#?}");
        assert!(errors[0].reason.contains("is for scope acme"));
    }

    #[test]
    fn warnings_about_every_entry_are_reported_once() {
        let mut req = ImportRequest::new(List::Allow, ImportFamily::Email);
        req.checks = Some(CheckSet::ALL);
        req.force = true;
        let data: String = (1..=50)
            .map(|i| format!("user{i}@partner.example\n"))
            .chain(["ceo@gmail.com\n".to_string()])
            .collect();
        let parsed = parse_import(data.as_bytes(), &req).unwrap();
        let text: Vec<String> = parsed.warnings.iter().map(ToString::to_string).collect();
        assert!(
            text.iter()
                .any(|w| w.starts_with("lines 1–51 (51 lines): this entry bypasses malware")),
            "{text:#?}"
        );
        assert!(
            text.iter().any(|w| w
                .starts_with("lines 1–50 (50 lines): sender allow entries without --require-auth")),
            "{text:#?}"
        );
        assert!(
            text.iter().any(
                |w| w.starts_with("line 51: `ceo@gmail.com`: `gmail.com` is a freemail domain")
            ),
            "{text:#?}"
        );
        assert_eq!(text.len(), 3, "{text:#?}");
    }

    /// Regression: values with ESC or CR were echoed raw in import errors.
    #[test]
    fn control_bytes_in_values_are_escaped_in_errors() {
        let data = "bad\u{1b}[2Jhost!\r\n\u{1b}]0;title\u{7}.example\n";
        let err = parse_import(data.as_bytes(), &server(List::Block)).unwrap_err();
        let text = err.to_string();
        assert!(
            !text.chars().any(|c| c.is_control() && c != '\n'),
            "{text:?}"
        );
        assert!(text.contains("bad\\u{1b}[2Jhost!"), "{text}");
        let json = serde_json::to_string(&err).unwrap();
        assert!(!json.contains('\u{1b}'), "{json}");
    }

    proptest::proptest! {
        #[test]
        fn never_panics(data in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512), fmt in 0..3u8) {
            let mut req = server(List::Block);
            req.format = [ImportFormat::Text, ImportFormat::Csv, ImportFormat::Json][usize::from(fmt)];
            let _ = parse_import(&data, &req);
        }

        #[test]
        fn text_values_round_trip(ips in proptest::collection::vec(proptest::prelude::any::<[u8; 4]>(), 1..50)) {
            let text: Vec<String> = ips.iter().map(|o| std::net::Ipv4Addr::from(*o).to_string()).collect();
            let parsed = parse_import(text.join(";").as_bytes(), &server(List::Block)).unwrap();
            let mut want = text.clone();
            let mut seen = HashSet::new();
            want.retain(|v| seen.insert(v.clone()));
            proptest::prop_assert_eq!(values(&parsed), want);
        }
    }
}
