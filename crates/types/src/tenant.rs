//! Tenants (customer organisations and the recipient domains they own) and the actors who
//! change the configuration.

use std::fmt;

use crate::domain::Domain;
use crate::entry::TenantName;
use crate::error::ValueError;
use crate::text::shown;

/// A tenant and the recipient domains it owns. A domain belongs to at most one tenant; the
/// store enforces that.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tenant {
    /// The name.
    pub name: TenantName,
    /// The recipient domains it owns, sorted.
    pub domains: Vec<Domain>,
}

impl serde::Serialize for Tenant {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        #[derive(serde::Serialize)]
        struct Wire<'a> {
            name: &'a TenantName,
            domains: &'a [Domain],
        }
        Wire {
            name: &self.name,
            domains: &self.domains,
        }
        .serialize(s)
    }
}

/// Longest actor name, in characters.
pub const MAX_ACTOR: usize = 128;

/// Who makes a change, as the audit log records it: `cli:alice`, `api:deploy-bot`, … At most
/// 128 characters, no control characters (a newline would forge an extra audit line), not
/// empty.
///
/// ```
/// use allowgate_types::Actor;
/// assert_eq!(Actor::parse(" cli:alice ").unwrap().as_str(), "cli:alice");
/// assert!(Actor::parse("cli:alice\nrev 9 root add entry").is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Actor(Box<str>);

impl Actor {
    /// Validate an actor name (trimmed).
    pub fn parse(input: &str) -> Result<Actor, ValueError> {
        let text = input.trim();
        let bad = |reason: &str| ValueError::Actor {
            input: shown(text, 80),
            reason: reason.into(),
        };
        if text.is_empty() {
            return Err(bad("it is empty"));
        }
        let len = text.chars().count();
        if len > MAX_ACTOR {
            return Err(bad(&format!(
                "it is {len} characters long; the limit is {MAX_ACTOR}"
            )));
        }
        if text.chars().any(char::is_control) {
            return Err(bad("it contains control characters (a newline, ESC, …)"));
        }
        Ok(Actor(text.into()))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Actor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actor_with_newline_or_huge_is_refused() {
        assert!(Actor::parse("cli:a\nforged").is_err());
        assert!(Actor::parse("cli:a\u{1b}[2J").is_err());
        assert!(Actor::parse(&"x".repeat(100_000)).is_err());
        assert!(Actor::parse("   ").is_err());
        assert_eq!(
            Actor::parse(&"é".repeat(MAX_ACTOR)).map(|a| a.as_str().chars().count()),
            Ok(MAX_ACTOR)
        );
    }
}
