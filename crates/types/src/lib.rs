//! Validated, normalised values of allowgate.
//!
//! Every value that crosses allowgate's edge (an entry typed by an admin, an imported line, an
//! address from a message) is parsed into one of these newtypes, through the same normalisation:
//! lower-case domains without a trailing dot, IDN as A-labels, IPv4-mapped IPv6 as IPv4, CIDR
//! host bits cleared.
//!
//! ```
//! use allowgate_types::{EntryKind, EntryValue};
//! let (value, warnings) = EntryValue::parse(EntryKind::Ip, "::ffff:192.0.2.7", false).unwrap();
//! assert_eq!(value.to_string(), "192.0.2.7");
//! assert!(warnings.is_empty());
//! ```
#![deny(missing_docs)]

mod check;
mod country;
mod domain;
mod email;
mod entry;
mod error;
mod ip;
mod sender;
mod tenant;
mod text;

pub use check::{CheckGroup, CheckId, CheckSet};
pub use country::CountryCode;
pub use domain::{Domain, DomainPattern};
pub use email::{EmailAddress, EmailPattern, sender_domain_of};
pub use entry::{
    Comment, Entry, EntryId, EntryKind, EntrySpec, EntryValue, List, MAX_COMMENT, MAX_VALUE,
    NewEntry, Scope, TenantName, parse_time,
};
pub use error::{EntryError, ValueError, Warning};
pub use ip::{IpBounds, IpRange, normalize_ip, parse_ip};
pub use sender::SenderSource;
pub use tenant::{Actor, Tenant};
pub use text::{Printable, shown};

/// Serialise values as their canonical text (the same text `Display` prints and `parse` reads).
macro_rules! serialize_as_display {
    ($($t:ty),*) => {$(
        impl serde::Serialize for $t {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }
    )*};
}

serialize_as_display!(
    CheckId,
    CountryCode,
    Domain,
    DomainPattern,
    EmailAddress,
    EmailPattern,
    EntryKind,
    EntryValue,
    IpRange,
    List,
    Scope,
    SenderSource,
    TenantName,
    Comment,
    Actor
);

/// `FromStr` for values whose `parse` takes only the text.
macro_rules! from_str_via_parse {
    ($($t:ty),*) => {$(
        impl std::str::FromStr for $t {
            type Err = ValueError;
            fn from_str(s: &str) -> Result<Self, ValueError> {
                <$t>::parse(s)
            }
        }
    )*};
}

from_str_via_parse!(Actor, CountryCode, Domain, EmailAddress, TenantName);
