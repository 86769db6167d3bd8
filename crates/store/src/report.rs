//! What an import reports about its lines: the problems that refused it and the warnings about
//! what it accepted. A mistake that concerns many lines the same way (no `--bypass` for an allow
//! list, a section of another list, a malware bypass) is reported once with all its lines; a
//! problem with one value is reported on its own line, with the value.

use std::collections::HashMap;
use std::fmt;

use allowgate_types::{Printable, shown};
use serde::Serialize;

/// Most line ranges one [`Lines`] keeps (its count goes on).
const MAX_RANGES: usize = 1000;
/// Most ranges a [`Lines`] shows in its text form.
const SHOWN_RANGES: usize = 8;
/// Longest value quoted in a report, in characters.
const MAX_SHOWN_VALUE: usize = 80;

/// What the numbers of an import's [`Lines`] count: file lines (text, CSV) or array elements
/// (JSON).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LineUnit {
    /// 1-based lines of the file.
    #[default]
    Line,
    /// 1-based elements of a JSON array.
    Element,
}

impl LineUnit {
    fn noun(self, plural: bool) -> &'static str {
        match (self, plural) {
            (LineUnit::Line, false) => "line",
            (LineUnit::Line, true) => "lines",
            (LineUnit::Element, false) => "JSON array element",
            (LineUnit::Element, true) => "JSON array elements",
        }
    }
}

/// A set of line numbers, kept as sorted ranges: `line 3`, `lines 1–50 (50 lines)`,
/// `lines 2, 5–7 (4 lines)`. At most 1000 ranges are kept; [`Lines::count`] counts
/// every line all the same.
///
/// ```
/// use allowgate_store::Lines;
/// let mut lines = Lines::default();
/// for n in [5, 1, 2, 3, 9, 2] {
///     lines.insert(n);
/// }
/// assert_eq!(lines.count(), 5);
/// assert_eq!(lines.ranges(), [(1, 3), (5, 5), (9, 9)]);
/// assert_eq!(lines.to_string(), "lines 1–3, 5, 9 (5 lines)");
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Lines {
    ranges: Vec<(usize, usize)>,
    count: usize,
    /// The last line counted but not kept (past the range cap), so that a line repeated right
    /// away is not counted twice.
    last_unkept: Option<usize>,
}

impl Lines {
    /// One line.
    pub fn one(line: usize) -> Lines {
        let mut lines = Lines::default();
        lines.insert(line);
        lines
    }

    /// Add a line (once; in any order).
    pub fn insert(&mut self, line: usize) {
        // The first range that ends at `line - 1` or later.
        let i = self
            .ranges
            .partition_point(|&(_, end)| end.saturating_add(1) < line);
        if let Some(&(start, end)) = self.ranges.get(i) {
            if start <= line && line <= end {
                return;
            }
            if end + 1 == line {
                self.ranges[i].1 = line;
                self.count += 1;
                if let Some(&(next_start, next_end)) = self.ranges.get(i + 1)
                    && next_start == line + 1
                {
                    self.ranges[i].1 = next_end;
                    self.ranges.remove(i + 1);
                }
                return;
            }
            if line + 1 == start {
                self.ranges[i].0 = line;
                self.count += 1;
                return;
            }
        }
        if self.ranges.len() >= MAX_RANGES {
            if self.last_unkept != Some(line) {
                self.last_unkept = Some(line);
                self.count += 1;
            }
            return;
        }
        self.ranges.insert(i, (line, line));
        self.count += 1;
    }

    /// How many lines.
    pub fn count(&self) -> usize {
        self.count
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The first line.
    pub fn first(&self) -> Option<usize> {
        self.ranges.first().map(|&(start, _)| start)
    }

    /// The ranges kept, `(first, last)` each, in order.
    pub fn ranges(&self) -> &[(usize, usize)] {
        &self.ranges
    }

    /// Whether `line` is one of them (among the ranges kept).
    pub fn contains(&self, line: usize) -> bool {
        let i = self.ranges.partition_point(|&(_, end)| end < line);
        self.ranges.get(i).is_some_and(|&(start, _)| start <= line)
    }

    /// The text form, counting `unit`s.
    pub fn describe(&self, unit: LineUnit) -> String {
        let mut parts: Vec<String> = self
            .ranges
            .iter()
            .take(SHOWN_RANGES)
            .map(|&(start, end)| {
                if start == end {
                    start.to_string()
                } else {
                    format!("{start}–{end}")
                }
            })
            .collect();
        if self.ranges.len() > SHOWN_RANGES || self.count > self.listed() {
            parts.push("…".into());
        }
        let listed = parts.join(", ");
        if self.count == 1 {
            format!("{} {listed}", unit.noun(false))
        } else {
            format!(
                "{} {listed} ({} {})",
                unit.noun(true),
                self.count,
                unit.noun(true)
            )
        }
    }

    /// Lines in the ranges kept.
    fn listed(&self) -> usize {
        self.ranges
            .iter()
            .map(|&(start, end)| end - start + 1)
            .sum()
    }
}

impl fmt::Display for Lines {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.describe(LineUnit::Line))
    }
}

impl Serialize for Lines {
    /// `[[first, last], …]`.
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.ranges.serialize(s)
    }
}

/// One problem of a refused import, or one warning about an accepted one, with the lines it
/// concerns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LineReport {
    /// The lines (JSON imports: array elements), as `[[first, last], …]` in JSON.
    pub lines: Lines,
    /// The offending value, when the report is about one value (printable, at most 80
    /// characters).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// What is wrong, or worth knowing.
    pub message: String,
}

impl LineReport {
    /// A report about one value on one line. The value is made printable and cut to 80
    /// characters, the message made printable.
    pub fn value(line: usize, value: &str, message: &str) -> LineReport {
        LineReport {
            lines: Lines::one(line),
            value: Some(shown(value, MAX_SHOWN_VALUE)).filter(|v| !v.is_empty()),
            message: Printable(message).to_string(),
        }
    }

    /// A report about one line as a whole; the message is made printable.
    pub fn line(line: usize, message: &str) -> LineReport {
        LineReport {
            lines: Lines::one(line),
            value: None,
            message: Printable(message).to_string(),
        }
    }

    /// The text form, counting `unit`s: `lines 1–50 (50 lines): …`, ``line 3: `value`: …``.
    pub fn describe(&self, unit: LineUnit) -> String {
        match &self.value {
            Some(v) => format!("{}: `{v}`: {}", self.lines.describe(unit), self.message),
            None => format!("{}: {}", self.lines.describe(unit), self.message),
        }
    }
}

impl fmt::Display for LineReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.describe(LineUnit::Line))
    }
}

/// Every problem of a refused import. In every case nothing was changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ImportProblems {
    /// What the line numbers count.
    pub unit: LineUnit,
    /// How many lines (elements) have at least one problem: every one, listed or not.
    pub bad_lines: usize,
    /// The problems, ordered by their first line, each once: at most
    /// [`MAX_LINE_ERRORS`](crate::import::MAX_LINE_ERRORS).
    pub problems: Vec<LineReport>,
    /// Problems not listed (past the cap).
    pub unlisted: usize,
}

impl fmt::Display for ImportProblems {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let noun = self.unit.noun(self.bad_lines != 1);
        write!(
            f,
            "import rejected, nothing changed: {} invalid {noun}; fix these:",
            self.bad_lines
        )?;
        for p in &self.problems {
            write!(f, "\n  {}", p.describe(self.unit))?;
        }
        if self.unlisted > 0 {
            write!(f, "\n  … and {} more problems, not listed", self.unlisted)?;
        }
        Ok(())
    }
}

/// Whether a message is about one value (reported on its line, with the value) or the same for
/// every line it concerns (reported once, with all of them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Finding {
    /// The same wherever it occurs: grouped by its text.
    Shared(String),
    /// About this value.
    OfValue(String),
}

/// Collects findings line by line and groups them.
#[derive(Debug, Default)]
pub(crate) struct Reports {
    reports: Vec<LineReport>,
    /// Index in `reports` of each shared message.
    shared: HashMap<String, usize>,
    /// Every line with a finding (sorted and counted at the end).
    lines: Vec<usize>,
    unlisted: usize,
    max: usize,
}

impl Reports {
    /// At most `max` reports are kept.
    pub(crate) fn new(max: usize) -> Reports {
        Reports {
            max,
            ..Reports::default()
        }
    }

    /// Findings about `value` on `line`: the shared ones join their groups, the ones about the
    /// value become one report of that line.
    pub(crate) fn add(&mut self, line: usize, value: &str, findings: Vec<Finding>) {
        let mut own = Vec::new();
        for finding in findings {
            match finding {
                Finding::Shared(message) => self.add_shared(line, message),
                Finding::OfValue(message) => own.push(message),
            }
        }
        if !own.is_empty() {
            self.push(LineReport::value(line, value, &own.join("; ")));
        }
    }

    /// A finding about a line as a whole (a header, a row that cannot be read).
    pub(crate) fn add_line(&mut self, line: usize, message: String) {
        self.push(LineReport::line(line, &message));
    }

    fn add_shared(&mut self, line: usize, message: String) {
        let message = Printable(&message).to_string();
        self.lines.push(line);
        if let Some(&i) = self.shared.get(&message) {
            self.reports[i].lines.insert(line);
        } else if self.reports.len() < self.max {
            self.shared.insert(message.clone(), self.reports.len());
            self.reports.push(LineReport {
                lines: Lines::one(line),
                value: None,
                message,
            });
        } else {
            self.unlisted += 1;
        }
    }

    fn push(&mut self, report: LineReport) {
        self.lines.extend(report.lines.first());
        if self.reports.len() < self.max {
            self.reports.push(report);
        } else {
            self.unlisted += 1;
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.lines.is_empty()
    }

    /// The reports, ordered by first line.
    pub(crate) fn into_reports(mut self) -> Vec<LineReport> {
        self.reports.sort_by_key(|r| r.lines.first());
        self.reports
    }

    /// The problems of a refused import.
    pub(crate) fn into_problems(mut self, unit: LineUnit) -> ImportProblems {
        self.lines.sort_unstable();
        self.lines.dedup();
        let bad_lines = self.lines.len();
        let unlisted = self.unlisted;
        ImportProblems {
            unit,
            bad_lines,
            problems: self.into_reports(),
            unlisted,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_merge_into_ranges_in_any_order() {
        let mut lines = Lines::default();
        for n in [10, 12, 11, 3, 4, 1, 2, 12, 20] {
            lines.insert(n);
        }
        assert_eq!(lines.ranges(), [(1, 4), (10, 12), (20, 20)]);
        assert_eq!(lines.count(), 8);
        assert!(lines.contains(11) && !lines.contains(13) && !lines.contains(5));
        assert_eq!(lines.to_string(), "lines 1–4, 10–12, 20 (8 lines)");
        assert_eq!(Lines::one(7).to_string(), "line 7");
        assert_eq!(
            Lines::one(7).describe(LineUnit::Element),
            "JSON array element 7"
        );
    }

    #[test]
    fn lines_keep_counting_past_the_range_cap() {
        let mut lines = Lines::default();
        for n in 0..(MAX_RANGES + 500) {
            lines.insert(2 * n + 1);
            lines.insert(2 * n + 1);
        }
        assert_eq!(lines.count(), MAX_RANGES + 500);
        assert_eq!(lines.ranges().len(), MAX_RANGES);
        let text = lines.to_string();
        assert!(text.starts_with("lines 1, 3, 5,"), "{text}");
        assert!(text.ends_with(", … (1500 lines)"), "{text}");
    }

    #[test]
    fn shared_findings_are_grouped_value_findings_stay_on_their_line() {
        let mut reports = Reports::new(100);
        for line in 1..=50 {
            reports.add(
                line,
                "192.0.2.1",
                vec![Finding::Shared("needs checks".into())],
            );
        }
        reports.add(
            7,
            "bad\u{1b}[2J",
            vec![
                Finding::OfValue("not an IP".into()),
                Finding::OfValue("comment too long".into()),
                Finding::Shared("needs checks".into()),
            ],
        );
        let problems = reports.into_problems(LineUnit::Line);
        assert_eq!(problems.bad_lines, 50);
        assert_eq!(problems.problems.len(), 2);
        assert_eq!(
            problems.problems[0].to_string(),
            "lines 1–50 (50 lines): needs checks"
        );
        assert_eq!(
            problems.problems[1].to_string(),
            "line 7: `bad\\u{1b}[2J`: not an IP; comment too long"
        );
    }

    #[test]
    fn reports_past_the_cap_are_counted() {
        let mut reports = Reports::new(3);
        for line in 1..=10 {
            reports.add(line, "x", vec![Finding::OfValue("bad".into())]);
        }
        let problems = reports.into_problems(LineUnit::Line);
        assert_eq!((problems.bad_lines, problems.problems.len()), (10, 3));
        assert_eq!(problems.unlisted, 7);
        assert!(problems.to_string().contains("7 more problems"));
    }
}
