//! Export of entries as text, CSV or JSON, in forms that [`import`](crate::import) reads back.

use std::fmt::Write as _;

use allowgate_types::{Entry, NewEntry};

use crate::StoreError;
use crate::record::{EntryJson, time_text};

/// The format of an export: the same formats an import reads.
pub use crate::import::ImportFormat as ExportFormat;

/// The CSV columns, in order.
pub const CSV_COLUMNS: [&str; 11] = [
    "list",
    "scope",
    "kind",
    "value",
    "checks",
    "comment",
    "require_auth",
    "internal",
    "starts_at",
    "expires_at",
    "enabled",
];

/// Render entries (in the order given) in `format`. Fails only on a bug (a value that cannot be
/// encoded), never with an empty or partial export.
pub fn render(entries: &[Entry], format: ExportFormat) -> Result<String, StoreError> {
    let failed = |source: Box<dyn std::error::Error + Send + Sync>| StoreError::Export {
        format: format.as_str(),
        source,
    };
    match format {
        ExportFormat::Text => Ok(render_text(entries)),
        ExportFormat::Csv => render_csv(entries).map_err(|e| failed(e.into())),
        ExportFormat::Json => render_json(entries).map_err(|e| failed(e.into())),
    }
}

fn render_text(entries: &[Entry]) -> String {
    let mut sorted: Vec<&NewEntry> = entries.iter().map(|e| &e.entry).collect();
    // Group by list, scope and kind; keep id order inside a group (the sort is stable).
    sorted.sort_by(|a, b| (a.list, &a.scope, a.kind()).cmp(&(b.list, &b.scope, b.kind())));
    let mut out = format!("# allowgate export: {} entries\n", entries.len());
    let mut group = None;
    for e in sorted {
        let key = (e.list, &e.scope, e.kind());
        if group != Some(key) {
            group = Some(key);
            let _ = writeln!(
                out,
                "\n# list: {}, scope: {}, kind: {}",
                e.list,
                e.scope,
                e.kind()
            );
        }
        match &e.comment {
            Some(c) => {
                let _ = writeln!(out, "{} # {}", e.value, c);
            }
            None => {
                let _ = writeln!(out, "{}", e.value);
            }
        }
    }
    out
}

fn render_csv(entries: &[Entry]) -> Result<String, csv::Error> {
    let mut writer = csv::Writer::from_writer(Vec::new());
    writer.write_record(CSV_COLUMNS)?;
    for e in entries {
        let e = &e.entry;
        let bool_text = |b: bool| if b { "true" } else { "false" };
        writer.write_record([
            e.list.as_str(),
            &e.scope.to_string(),
            e.kind().as_str(),
            &e.value.to_string(),
            &e.checks.to_string(),
            e.comment.as_ref().map_or("", |c| c.as_str()),
            bool_text(e.require_auth),
            bool_text(e.internal),
            &e.starts_at.map(time_text).unwrap_or_default(),
            &e.expires_at.map(time_text).unwrap_or_default(),
            bool_text(e.enabled),
        ])?;
    }
    let bytes = writer
        .into_inner()
        .map_err(|e| csv::Error::from(e.into_error()))?;
    // Every field written is a Rust string, so the bytes are UTF-8; if not, that is an error.
    String::from_utf8(bytes).map_err(|e| csv::Error::from(std::io::Error::other(e)))
}

fn render_json(entries: &[Entry]) -> Result<String, serde_json::Error> {
    #[derive(serde::Serialize)]
    struct Export<'a> {
        entries: Vec<EntryJson<'a>>,
    }
    let export = Export {
        entries: entries.iter().map(|e| EntryJson::new(&e.entry)).collect(),
    };
    let mut text = serde_json::to_string_pretty(&export)?;
    text.push('\n');
    Ok(text)
}
