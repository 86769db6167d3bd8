//! The import parser (text, CSV, JSON) fed arbitrary bytes, and its export round trip.
//!
//! The first two input bytes choose the request (format, list, scope, family, mode, flags); the
//! rest is the file. Properties:
//! - `parse_import` never panics and never reports a database error;
//! - a rejected file names at least one bad line, each with a line number ≥ 1, and no problem
//!   text holds a control character; a file that is not UTF-8 names lines that are not;
//! - an accepted file yields entries of the requested list, scope and family, each value once,
//!   and `values == entries + duplicates`;
//! - export round trip: the accepted entries, exported as CSV and as JSON (and as text when the
//!   file was text), import again to exactly the same entries.
#![no_main]

use allowgate_store::export::{ExportFormat, render};
use allowgate_store::import::{
    ImportFamily, ImportFormat, ImportMode, ImportRequest, MAX_IMPORT_ENTRIES, ParsedImport,
    parse_import,
};
use allowgate_store::{ImportError, ImportProblems};
use allowgate_types::{
    CheckId, CheckSet, Entry, EntryId, EntryKind, List, NewEntry, Scope, TenantName, parse_time,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let [a, b, file @ ..] = data else { return };
    let req = request(*a, *b);
    match parse_import(file, &req) {
        Ok(parsed) => accepted(file, &req, &parsed),
        Err(ImportError::Invalid(problems)) => rejected(file, &problems),
        Err(ImportError::TooLarge { .. } | ImportError::TooManyEntries { .. }) => {}
        Err(ImportError::NotUtf8 { lines }) => {
            assert!(
                std::str::from_utf8(file).is_err(),
                "NotUtf8 for UTF-8 input"
            );
            assert!(
                lines.first().is_some_and(|l| l >= 1),
                "NotUtf8 without a line"
            );
            for (first, last) in lines.ranges() {
                let line = file.split(|b| *b == b'\n').nth(first - 1);
                assert!(
                    line.is_some_and(|l| std::str::from_utf8(l).is_err()),
                    "line {first} named as not UTF-8"
                );
                assert!(first <= last);
            }
        }
        Err(e @ (ImportError::Store(_) | ImportError::WouldEmpty { .. })) => {
            panic!("parse_import touched the store: {e}")
        }
    }
});

/// Byte a: bits 0–1 format, 2–3 list, 4 mode, 5 force, 6 require_auth, 7 checks.
/// Byte b: family (`% 10`), bit 7 scope.
fn request(a: u8, b: u8) -> ImportRequest {
    let format = match a & 0b11 {
        1 => ImportFormat::Csv,
        2 => ImportFormat::Json,
        _ => ImportFormat::Text,
    };
    let list = match (a >> 2) & 0b11 {
        1 => List::Block,
        2 => List::Ignore,
        _ => List::Allow,
    };
    let mode = if a & 0x10 == 0 {
        ImportMode::Merge
    } else {
        ImportMode::Replace
    };
    let force = a & 0x20 != 0;
    let require_auth = a & 0x40 != 0;
    let checks = match (list, a & 0x80 != 0) {
        (List::Allow, false) => {
            Some(CheckSet::one(CheckId::Spf).union(CheckSet::one(CheckId::Rbl)))
        }
        (List::Allow, true) => Some(CheckSet::ALL),
        _ => None,
    };
    let family = match (b & 0x7f) % 10 {
        0 => ImportFamily::Server,
        1 => ImportFamily::Email,
        n => ImportFamily::Kind(EntryKind::ALL[usize::from(n - 2)]),
    };
    let scope = match TenantName::parse("acme") {
        Ok(t) if b & 0x80 != 0 => Scope::Tenant(t),
        _ => Scope::Global,
    };
    ImportRequest {
        list,
        scope,
        family,
        checks,
        format,
        mode,
        force,
        require_auth,
        allow_empty: false,
    }
}

fn rejected(file: &[u8], problems: &ImportProblems) {
    assert!(
        !problems.problems.is_empty() && problems.bad_lines >= 1,
        "an import was rejected without naming a bad line"
    );
    // Text and CSV lines are file lines, JSON "lines" array elements: never more than bytes + 1.
    for p in &problems.problems {
        let first = p.lines.first().unwrap_or(0);
        assert!(first >= 1, "problem on line 0: {p:?}");
        assert!(
            p.lines
                .ranges()
                .iter()
                .all(|&(_, last)| last <= file.len() + 1),
            "problem beyond the end of the file: {p:?}"
        );
        assert!(!p.message.is_empty(), "problem without a message: {p:?}");
        let text = p.to_string();
        assert!(
            !text.chars().any(char::is_control),
            "control character in a problem: {text:?}"
        );
    }
    assert!(problems.bad_lines >= problems.problems.len().min(1));
}

fn accepted(file: &[u8], req: &ImportRequest, parsed: &ParsedImport) {
    assert!(parsed.entries.len() <= MAX_IMPORT_ENTRIES);
    assert_eq!(
        parsed.values,
        parsed.entries.len() as u64 + parsed.duplicates,
        "values != entries + duplicates"
    );
    let mut keys = std::collections::HashSet::new();
    for p in &parsed.entries {
        let e = &p.entry;
        assert!(p.line >= 1, "entry on line 0: {p:?}");
        assert_eq!(e.list, req.list, "entry on another list: {p:?}");
        assert_eq!(e.scope, req.scope, "entry in another scope: {p:?}");
        assert!(
            req.family.contains(e.kind()),
            "entry of a kind outside {}: {p:?}",
            req.family
        );
        assert!(
            keys.insert((e.kind(), e.value.to_string())),
            "duplicate entry kept: {p:?}"
        );
    }
    let again = parse_import(file, req);
    assert!(
        matches!(&again, Ok(p) if p == parsed),
        "parsing is not deterministic"
    );

    let entries: Vec<NewEntry> = parsed.entries.iter().map(|p| p.entry.clone()).collect();
    round_trip(req, &entries, ExportFormat::Csv, ImportFormat::Csv);
    round_trip(req, &entries, ExportFormat::Json, ImportFormat::Json);
    if req.format == ImportFormat::Text {
        // Text carries values and comments only; everything else comes from the request, so a
        // text import exported as text must come back unchanged.
        round_trip(req, &entries, ExportFormat::Text, ImportFormat::Text);
    }
}

fn round_trip(req: &ImportRequest, entries: &[NewEntry], out: ExportFormat, back: ImportFormat) {
    let Ok(created_at) = parse_time("2026-01-01T00:00:00Z") else {
        return;
    };
    let stored: Vec<Entry> = entries
        .iter()
        .zip(1..)
        .map(|(entry, id)| Entry {
            id: EntryId(id),
            entry: entry.clone(),
            created_at,
            created_by: "fuzz".into(),
        })
        .collect();
    let exported = match render(&stored, out) {
        Ok(text) => text,
        Err(e) => panic!("{out} export failed: {e}"),
    };
    let req = ImportRequest {
        format: back,
        ..req.clone()
    };
    let reimported = match parse_import(exported.as_bytes(), &req) {
        Ok(p) => p,
        Err(e) => panic!("{out} export does not import again: {e}\n--- export:\n{exported}"),
    };
    let key = |e: &NewEntry| (e.kind(), e.value.to_string());
    let mut want: Vec<&NewEntry> = entries.iter().collect();
    let mut got: Vec<&NewEntry> = reimported.entries.iter().map(|p| &p.entry).collect();
    want.sort_by_key(|e| key(e));
    got.sort_by_key(|e| key(e));
    assert_eq!(
        got, want,
        "{out} export imports to other entries\n--- export:\n{exported}"
    );
    assert_eq!(
        reimported.duplicates, 0,
        "{out} export holds duplicates\n{exported}"
    );
}
