//! Reading macros: the name spellings the MTAs use.

/// The value of macro `name` among `pairs` (from [`Command::Macros`](crate::Command::Macros)),
/// whichever way either side spells it: `{i}` and `i` are the same macro, as are
/// `{client_addr}` and `client_addr`. Postfix sends one-letter macros bare (`i`, `j`, `v`,
/// `_`) and longer ones in braces (`{daemon_name}`). When a name is defined twice, the last
/// definition counts.
///
/// ```
/// use allowgate_milter::macro_value;
/// let pairs = vec![
///     ("i".to_string(), "4F1B29B61BF".to_string()),
///     ("{rcpt_addr}".to_string(), "bob@example.test".to_string()),
/// ];
/// assert_eq!(macro_value(&pairs, "{i}"), Some("4F1B29B61BF"));
/// assert_eq!(macro_value(&pairs, "i"), Some("4F1B29B61BF"));
/// assert_eq!(macro_value(&pairs, "rcpt_addr"), Some("bob@example.test"));
/// assert_eq!(macro_value(&pairs, "{j}"), None);
/// ```
pub fn macro_value<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    let wanted = bare(name);
    pairs
        .iter()
        .rev()
        .find(|(n, _)| bare(n) == wanted)
        .map(|(_, value)| value.as_str())
}

/// `{name}` → `name`; anything else as it is.
fn bare(name: &str) -> &str {
    name.strip_prefix('{')
        .and_then(|n| n.strip_suffix('}'))
        .unwrap_or(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_spellings_last_definition_wins() {
        let pairs: Vec<(String, String)> = [
            ("j", "gw.example.test"),
            ("{daemon_name}", "gw.example.test"),
            ("_", "unknown [203.0.113.9]"),
            ("{i}", "first"),
            ("i", "second"),
            ("{}", "empty"),
            ("{unclosed", "u"),
        ]
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect();
        let cases: &[(&str, Option<&str>)] = &[
            ("j", Some("gw.example.test")),
            ("{j}", Some("gw.example.test")),
            ("daemon_name", Some("gw.example.test")),
            ("{daemon_name}", Some("gw.example.test")),
            ("_", Some("unknown [203.0.113.9]")),
            ("i", Some("second")),
            ("{i}", Some("second")),
            ("", Some("empty")),
            ("{}", Some("empty")),
            ("{unclosed", Some("u")),
            ("unclosed", None),
            ("J", None),
            ("{daemon_addr}", None),
        ];
        for (name, expected) in cases {
            assert_eq!(macro_value(&pairs, name), *expected, "{name}");
        }
        assert_eq!(macro_value(&[], "i"), None);
    }
}
