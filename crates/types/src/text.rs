//! Text that came from outside (an admin, a file, a message), made safe to print.

use std::fmt;

/// Displays untrusted text with control characters escaped, so that a value holding ESC, CR or
/// a newline cannot move the cursor, rewrite a terminal line or forge extra lines in a log:
/// `\u{1b}[2J` prints as `\u{1b}[2J` (the escape spelled out), a CR as `\r`, a newline as `\n`.
/// Everything else, non-ASCII letters included, prints as it is.
///
/// ```
/// use allowgate_types::Printable;
/// assert_eq!(Printable("a\u{1b}[31mb\r\n").to_string(), "a\\u{1b}[31mb\\r\\n");
/// assert_eq!(Printable("bücher.de").to_string(), "bücher.de");
/// ```
#[derive(Debug, Clone, Copy)]
pub struct Printable<'a>(pub &'a str);

impl fmt::Display for Printable<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut rest = self.0;
        while let Some(i) = rest.find(needs_escape) {
            f.write_str(&rest[..i])?;
            let c = rest[i..].chars().next().unwrap_or_default();
            write!(f, "{}", c.escape_default())?;
            rest = &rest[i + c.len_utf8()..];
        }
        f.write_str(rest)
    }
}

/// Control characters (C0, DEL, C1) and the invisible bidirectional overrides that can make a
/// terminal show text in another order than it is.
fn needs_escape(c: char) -> bool {
    c.is_control() || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// Text made printable (see [`Printable`]) and cut to at most `max` characters, an ellipsis
/// marking the cut: for quoting a value in an error message.
pub fn shown(text: &str, max: usize) -> String {
    let printable = Printable(text.trim()).to_string();
    if printable.chars().count() <= max {
        printable
    } else {
        let mut s: String = printable.chars().take(max.saturating_sub(1)).collect();
        s.push('…');
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_bytes_are_escaped() {
        assert_eq!(Printable("plain").to_string(), "plain");
        assert_eq!(Printable("x\u{7f}y\u{85}").to_string(), "x\\u{7f}y\\u{85}");
        assert_eq!(
            Printable("\u{202e}moc.evil").to_string(),
            "\\u{202e}moc.evil"
        );
        assert_eq!(shown("  abc\u{1b}  ", 80), "abc\\u{1b}");
        assert_eq!(shown(&"x".repeat(100), 10), format!("{}…", "x".repeat(9)));
    }
}
