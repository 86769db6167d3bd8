//! Users and API tokens: who may administer allowgate, with which [`Role`], and the bearer
//! tokens programs use ([`Store::add_user`](crate::Store::add_user),
//! [`Store::add_token`](crate::Store::add_token), …).
//!
//! - **Names** ([`UserName`]) are 1 to 64 characters of `a-z`, `0-9`, `.`, `_`, `@` and `-`,
//!   starting with a letter or digit; they are trimmed and ASCII upper case is lowered
//!   (`Alice@Example.com` is `alice@example.com`), so one person cannot hold two spellings of a
//!   name. Anything else (spaces, non-ASCII letters that could look like ASCII ones) is refused.
//! - **Roles and tenants**: an `admin` has no tenant (every tenant and the global entries); a
//!   `tenant-admin` has exactly one; a `viewer` has one, or none to see every tenant. The tenant
//!   must exist.
//! - **Passwords** are generated, never chosen: [`PASSWORD_LENGTH`] characters of `A-Z a-z 0-9`
//!   drawn from the operating system's CSPRNG (about 143 bits), shown once
//!   ([`OneTimePassword`]) and stored only as an Argon2id hash in a PHC string
//!   (`$argon2id$v=19$m=19456,t=2,p=1$…`: the `argon2` crate's defaults, OWASP's recommended
//!   minimum, with a 16-byte random salt). Hashing and verifying run on a blocking thread.
//! - **API tokens** are `ag_` and the unpadded base64url text of 32 random bytes
//!   ([`TOKEN_LENGTH`] characters): the prefix lets secret scanners and people recognise
//!   them. Only their SHA-256 is stored: a token is a 256-bit random secret, which no amount of
//!   guessing finds, so a slow password hash would add cost and nothing else.
//! - **Authentication** answers one [`AuthError::Denied`] for every refusal (unknown user,
//!   wrong password, revoked token, …): the reason is there for logs, never for the client.
//!   Checking a password costs one Argon2 verification whether the user exists or not.
//! - Changes are audited (`user` and `token` objects) with their actor, and create no revision:
//!   users and tokens are not part of the policy a node serves. No secret and no hash is ever
//!   in an audit row, a [`User`], a [`TokenInfo`], or their `Debug` output.
//!
//! ```
//! use allowgate_store::{Role, Store, UserName};
//! use allowgate_types::Actor;
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let store = Store::open("sqlite::memory:").await.unwrap();
//! let admin = Actor::parse("cli:root").unwrap();
//! let name = UserName::parse("Alice").unwrap();
//! let (user, password) = store.add_user(&name, Role::Admin, None, &admin).await.unwrap();
//! assert_eq!(user.name.as_str(), "alice");
//! assert_eq!(store.verify_password("alice", password.as_str()).await.unwrap(), user);
//!
//! let (info, token) = store.add_token(&name, None, &admin).await.unwrap();
//! assert!(token.as_str().starts_with("ag_"));
//! assert_eq!(store.authenticate_token(token.as_str()).await.unwrap().name, user.name);
//! store.revoke_token(info.id, &admin).await.unwrap();
//! assert!(store.authenticate_token(token.as_str()).await.is_err());
//! store.close().await;
//! # });
//! ```

use std::fmt;
use std::str::FromStr;

use allowgate_types::{TenantName, shown};
use argon2::Argon2;
use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use base64::Engine as _;
use chrono::{DateTime, Utc};
use sha2::Digest as _;

use crate::StoreError;

/// Longest user name, in characters.
pub const MAX_USER_NAME: usize = 64;
/// Longest token label, in characters.
pub const MAX_TOKEN_LABEL: usize = 64;
/// Characters of a generated password.
pub const PASSWORD_LENGTH: usize = 24;
/// Longest password [`Store::verify_password`](crate::Store::verify_password) looks at, in
/// bytes; a longer one is refused without hashing it.
pub const MAX_PASSWORD_BYTES: usize = 1024;
/// Most users a store holds.
pub const MAX_USERS: u64 = 10_000;
/// Most tokens one user holds that are not revoked.
pub const MAX_ACTIVE_TOKENS: u64 = 100;
/// What every API token starts with.
pub const TOKEN_PREFIX: &str = "ag_";
/// Characters of an API token: the prefix and 43 of base64url (32 bytes, unpadded).
pub const TOKEN_LENGTH: usize = 46;
/// Random bytes in an API token.
const TOKEN_BYTES: usize = 32;
/// How stale `last_used_at` may get: a token used again within this time is not written
/// again, so a busy API client costs one write a minute, not one per request.
pub const LAST_USED_RESOLUTION: chrono::TimeDelta = chrono::TimeDelta::seconds(60);

/// The letters of generated passwords: no punctuation, so a password is one word to a shell,
/// a terminal's double-click and a form field alike.
const PASSWORD_ALPHABET: &[u8; 62] =
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

/// An Argon2id hash (of a random password nobody knows) with the parameters new hashes get:
/// verifying a password for a user that does not exist costs as much as for one that does, so
/// the time of a refusal does not tell whether the name exists. A unit test keeps its
/// parameters equal to [`Argon2::default`]'s.
const DUMMY_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$BBMz2rFPyS76PhxqegLZrg$\
                          JY9Pu3XvpTluvWt2ssovEU7J03JS78MFUlzfkbp+6Co";

/// The id of a stored user.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(transparent)]
pub struct UserId(pub i64);

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// The id of a stored API token (what `token revoke` takes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(transparent)]
pub struct TokenId(pub i64);

impl fmt::Display for TokenId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// What a user may do (DESIGN §5.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Role {
    /// `admin`: the MSP — every tenant and the global entries. Has no tenant.
    Admin,
    /// `tenant-admin`: its own tenant's entries; global entries read-only. Has one tenant.
    TenantAdmin,
    /// `viewer`: reads only — its own tenant, or every tenant when it has none.
    Viewer,
}

impl Role {
    /// Every role, in the order of the contract.
    pub const ALL: [Role; 3] = [Role::Admin, Role::TenantAdmin, Role::Viewer];

    /// The keyword: `admin`, `tenant-admin`, `viewer`.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::TenantAdmin => "tenant-admin",
            Role::Viewer => "viewer",
        }
    }

    /// Whether a user of this role may have `tenant`: an admin has none, a tenant-admin has
    /// one, a viewer either. [`StoreError::RoleTenant`] says why not.
    pub fn check_tenant(self, tenant: Option<&TenantName>) -> Result<(), StoreError> {
        match (self, tenant) {
            (Role::Admin, Some(_)) => Err(StoreError::RoleTenant {
                role: self,
                reason: "cannot have a tenant: an admin manages every tenant and the global \
                         entries (leave the tenant out, or give the user another role)",
            }),
            (Role::TenantAdmin, None) => Err(StoreError::RoleTenant {
                role: self,
                reason: "needs a tenant: a tenant-admin manages exactly one",
            }),
            _ => Ok(()),
        }
    }
}

impl FromStr for Role {
    type Err = StoreError;

    /// Exactly `admin`, `tenant-admin` or `viewer` (surrounding spaces ignored).
    fn from_str(s: &str) -> Result<Role, StoreError> {
        let text = s.trim();
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == text)
            .ok_or_else(|| StoreError::InvalidRole {
                input: shown(text, 40),
            })
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl serde::Serialize for Role {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// A validated, normalised user name: 1 to [`MAX_USER_NAME`] characters of `a-z`, `0-9`, `.`,
/// `_`, `@` and `-`, starting with a letter or digit; trimmed, ASCII upper case lowered.
///
/// ```
/// use allowgate_store::UserName;
/// assert_eq!(UserName::parse(" Alice@Example.COM ").unwrap().as_str(), "alice@example.com");
/// assert!(UserName::parse("bob smith").is_err());
/// assert!(UserName::parse("-rf").is_err());
/// assert!(UserName::parse("аlice").is_err()); // a Cyrillic "а"
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UserName(Box<str>);

impl UserName {
    /// Validate and normalise a user name.
    pub fn parse(input: &str) -> Result<UserName, StoreError> {
        let text = input.trim();
        let bad = |reason: &'static str| StoreError::InvalidUserName {
            input: shown(text, 80),
            reason,
        };
        if text.is_empty() {
            return Err(bad("it is empty"));
        }
        if text.chars().count() > MAX_USER_NAME {
            return Err(bad("it is longer than 64 characters"));
        }
        let name = text.to_ascii_lowercase();
        if !name.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'@' | b'-')
        }) {
            return Err(bad("use only letters a-z, digits and `.`, `_`, `@`, `-`"));
        }
        if !name.as_bytes()[0].is_ascii_alphanumeric() {
            return Err(bad("it must start with a letter or digit"));
        }
        Ok(UserName(name.into()))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for UserName {
    type Err = StoreError;
    fn from_str(s: &str) -> Result<UserName, StoreError> {
        UserName::parse(s)
    }
}

impl fmt::Display for UserName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl serde::Serialize for UserName {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

/// A validated token label: 1 to [`MAX_TOKEN_LABEL`] characters, trimmed, none of them a
/// control character or an invisible bidirectional override.
///
/// ```
/// use allowgate_store::TokenLabel;
/// assert_eq!(TokenLabel::parse(" deploy bot ").unwrap().as_str(), "deploy bot");
/// assert!(TokenLabel::parse("a\nforged line").is_err());
/// assert!(TokenLabel::parse(&"x".repeat(65)).is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TokenLabel(Box<str>);

impl TokenLabel {
    /// Validate a label.
    pub fn parse(input: &str) -> Result<TokenLabel, StoreError> {
        let text = input.trim();
        let bad = |reason: String| StoreError::InvalidTokenLabel { reason };
        if text.is_empty() {
            return Err(bad("it is empty (leave the label out instead)".into()));
        }
        let len = text.chars().count();
        if len > MAX_TOKEN_LABEL {
            return Err(bad(format!(
                "it is {len} characters long; the limit is {MAX_TOKEN_LABEL}"
            )));
        }
        if text.chars().any(|c| {
            c.is_control() || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
        }) {
            return Err(bad(format!(
                "`{}` contains control or invisible direction characters",
                shown(text, 80)
            )));
        }
        Ok(TokenLabel(text.into()))
    }

    /// The label.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for TokenLabel {
    type Err = StoreError;
    fn from_str(s: &str) -> Result<TokenLabel, StoreError> {
        TokenLabel::parse(s)
    }
}

impl fmt::Display for TokenLabel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl serde::Serialize for TokenLabel {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

/// A stored user. It holds no password and no hash, so neither can reach a log, an audit
/// record or JSON through it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct User {
    /// Its id.
    pub id: UserId,
    /// Its name.
    pub name: UserName,
    /// Its role.
    pub role: Role,
    /// Its tenant: `None` for an admin, and for a viewer of every tenant.
    pub tenant: Option<TenantName>,
    /// Its password is the one-time password it was given: the first login must change it.
    pub must_change_password: bool,
    /// It can neither log in nor use its tokens.
    pub disabled: bool,
    /// Logins are refused until then (after repeated wrong passwords).
    pub locked_until: Option<DateTime<Utc>>,
    /// When it was added.
    pub created_at: DateTime<Utc>,
    /// Who added it.
    pub created_by: String,
}

/// A stored API token, without the token: only its hash is stored, and that is not here
/// either.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TokenInfo {
    /// Its id.
    pub id: TokenId,
    /// The user it acts as.
    pub user: UserName,
    /// Its label.
    pub label: Option<TokenLabel>,
    /// When it was made.
    pub created_at: DateTime<Utc>,
    /// Who made it.
    pub created_by: String,
    /// When it was last used (to the minute, [`LAST_USED_RESOLUTION`]); `None`: never.
    pub last_used_at: Option<DateTime<Utc>>,
    /// When it was revoked; `None`: it is valid.
    pub revoked_at: Option<DateTime<Utc>>,
}

/// A user's generated password, returned once by
/// [`Store::add_user`](crate::Store::add_user); the store keeps only its hash. Its `Debug`
/// shows no secret.
pub struct OneTimePassword(String);

impl OneTimePassword {
    /// The password, to show to the person it is for.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for OneTimePassword {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("OneTimePassword(…)")
    }
}

/// A new API token, returned once by [`Store::add_token`](crate::Store::add_token); the store
/// keeps only its SHA-256. Its `Debug` shows no secret.
pub struct ApiToken(String);

impl ApiToken {
    /// The token, for the `Authorization: Bearer` header.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ApiToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiToken(ag_…)")
    }
}

/// Why authentication failed.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// The credentials are refused. The message is the same whatever the reason, so that a
    /// client cannot tell an unknown user from a wrong password; the reason is for logs.
    #[error("invalid credentials")]
    Denied(DenyReason),
    /// The store failed; nothing is known about the credentials.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<sqlx::Error> for AuthError {
    fn from(e: sqlx::Error) -> Self {
        AuthError::Store(e.into())
    }
}

/// Why credentials were refused: for logs and metrics only, never for the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DenyReason {
    /// No user by that name (or a name that cannot be one).
    UnknownUser,
    /// The password is not the user's (or is longer than [`MAX_PASSWORD_BYTES`]).
    WrongPassword,
    /// The user is disabled.
    Disabled,
    /// The user is locked out for now.
    Locked,
    /// The text does not have the form of a token.
    MalformedToken,
    /// No token has this hash.
    UnknownToken,
    /// The token was revoked.
    RevokedToken,
}

impl DenyReason {
    /// A keyword for logs: `unknown_user`, `wrong_password`, `disabled`, `locked`,
    /// `malformed_token`, `unknown_token`, `revoked_token`.
    pub fn as_str(self) -> &'static str {
        match self {
            DenyReason::UnknownUser => "unknown_user",
            DenyReason::WrongPassword => "wrong_password",
            DenyReason::Disabled => "disabled",
            DenyReason::Locked => "locked",
            DenyReason::MalformedToken => "malformed_token",
            DenyReason::UnknownToken => "unknown_token",
            DenyReason::RevokedToken => "revoked_token",
        }
    }
}

impl fmt::Display for DenyReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

// ---------------------------------------------------------------------------------------------
// Secrets: generated from the operating system's CSPRNG, hashed, checked.

fn random_failure(e: getrandom::Error) -> StoreError {
    StoreError::Crypto {
        what: "the operating system's random number generator failed",
        reason: e.to_string(),
    }
}

/// A new password: [`PASSWORD_LENGTH`] characters of [`PASSWORD_ALPHABET`], each uniform
/// (bytes of 248 and above are drawn again: 248 is the largest multiple of 62 in a byte).
pub(crate) fn generate_password() -> Result<OneTimePassword, StoreError> {
    let mut password = String::with_capacity(PASSWORD_LENGTH);
    let mut bytes = [0u8; 2 * PASSWORD_LENGTH];
    while password.len() < PASSWORD_LENGTH {
        getrandom::fill(&mut bytes).map_err(random_failure)?;
        for &b in &bytes {
            if password.len() == PASSWORD_LENGTH {
                break;
            }
            if b < 248 {
                password.push(char::from(PASSWORD_ALPHABET[usize::from(b % 62)]));
            }
        }
    }
    Ok(OneTimePassword(password))
}

/// The PHC string of an Argon2id hash of `password` with a fresh 16-byte salt. Slow on
/// purpose (tens of milliseconds): call it through [`blocking`].
pub(crate) fn hash_password(password: &str) -> Result<String, StoreError> {
    let mut salt = [0u8; 16];
    getrandom::fill(&mut salt).map_err(random_failure)?;
    let hash = Argon2::default()
        .hash_password_with_salt(password.as_bytes(), &salt)
        .map_err(|e| StoreError::Crypto {
            what: "the password cannot be hashed",
            reason: e.to_string(),
        })?;
    Ok(hash.to_string())
}

/// Whether `password` is the one `phc` is a hash of, compared in constant time by the
/// `argon2` crate; `Err` with the reason when `phc` is not a usable Argon2 PHC string. `None`
/// verifies against [`DUMMY_HASH`] (and is always false). Slow: call it through [`blocking`].
pub(crate) fn verify_password(password: &[u8], phc: Option<&str>) -> Result<bool, String> {
    let hash = PasswordHash::new(phc.unwrap_or(DUMMY_HASH)).map_err(|e| e.to_string())?;
    match Argon2::default().verify_password(password, &hash) {
        Ok(()) => Ok(phc.is_some()),
        Err(argon2::password_hash::Error::PasswordInvalid) => Ok(false),
        Err(e) => Err(e.to_string()),
    }
}

/// Run slow work (password hashing) on tokio's blocking threads, so that it does not hold up
/// the tasks of the thread that asked.
pub(crate) async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, StoreError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| StoreError::Crypto {
            what: "the password hashing thread failed",
            reason: e.to_string(),
        })
}

/// A new API token and the hash the store keeps of it.
pub(crate) fn generate_token() -> Result<(ApiToken, [u8; 32]), StoreError> {
    let mut bytes = [0u8; TOKEN_BYTES];
    getrandom::fill(&mut bytes).map_err(random_failure)?;
    let mut text = String::with_capacity(TOKEN_LENGTH);
    text.push_str(TOKEN_PREFIX);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode_string(bytes, &mut text);
    let hash = token_hash(&text).ok_or_else(|| StoreError::Crypto {
        what: "a new token does not have the form of a token",
        reason: format!("{} characters", text.len()),
    })?;
    Ok((ApiToken(text), hash))
}

/// The SHA-256 of a token's text; `None` if the text cannot be a token ([`TOKEN_PREFIX`]
/// and 43 base64url characters), so that junk costs no database lookup.
///
/// SHA-256, not a password hash: a token is 32 bytes from a CSPRNG, so the stored hash cannot
/// be reversed by guessing, however fast each guess is. Looking the hash up by index leaks
/// nothing useful: the hash of a guess says nothing about the hash of a token.
pub(crate) fn token_hash(token: &str) -> Option<[u8; 32]> {
    let body = token.strip_prefix(TOKEN_PREFIX)?;
    let well_formed = token.len() == TOKEN_LENGTH
        && body
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    well_formed.then(|| sha2::Sha256::digest(token.as_bytes()).into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_normalised_and_bad_ones_refused() {
        for (input, want) in [
            ("alice", "alice"),
            (" Alice ", "alice"),
            ("Bob.Smith@Example.COM", "bob.smith@example.com"),
            ("9lives_x-y", "9lives_x-y"),
            (&"a".repeat(64), &"a".repeat(64)),
        ] {
            assert_eq!(UserName::parse(input).unwrap().as_str(), want, "{input}");
        }
        for bad in [
            "",
            "   ",
            "bob smith",
            "-rf",
            ".hidden",
            "@home",
            "_x",
            "ålice",
            "a\u{430}lice",
            "al\nice",
            "a\u{0}b",
            "a/b",
            "a+b",
            &"a".repeat(65),
        ] {
            let err = UserName::parse(bad).unwrap_err();
            assert!(
                matches!(err, StoreError::InvalidUserName { .. }),
                "{bad:?}: {err:?}"
            );
            assert_eq!(err.kind(), crate::ErrorKind::InvalidInput);
        }
        // The message quotes the input, escaped and cut.
        let err = UserName::parse(&format!("x\u{1b}[2J{}", "y".repeat(500))).unwrap_err();
        let text = err.to_string();
        assert!(!text.contains('\u{1b}') && text.len() < 300, "{text}");
    }

    #[test]
    fn roles_parse_and_print_exactly_their_keywords() {
        for role in Role::ALL {
            assert_eq!(role.as_str().parse::<Role>().unwrap(), role);
            assert_eq!(role.to_string(), role.as_str());
            assert_eq!(
                serde_json::to_value(role).unwrap(),
                serde_json::json!(role.as_str())
            );
        }
        for bad in [
            "",
            "Admin",
            "tenant_admin",
            "tenantadmin",
            "root",
            "viewer,admin",
        ] {
            let err = bad.parse::<Role>().unwrap_err();
            assert!(matches!(err, StoreError::InvalidRole { .. }), "{bad:?}");
            assert!(err.to_string().contains("tenant-admin"), "{err}");
        }
    }

    #[test]
    fn roles_and_tenants_combine_as_the_design_says() {
        let acme = TenantName::parse("acme").unwrap();
        assert!(Role::Admin.check_tenant(None).is_ok());
        assert!(Role::Admin.check_tenant(Some(&acme)).is_err());
        assert!(Role::TenantAdmin.check_tenant(Some(&acme)).is_ok());
        assert!(Role::TenantAdmin.check_tenant(None).is_err());
        assert!(Role::Viewer.check_tenant(None).is_ok());
        assert!(Role::Viewer.check_tenant(Some(&acme)).is_ok());
    }

    #[test]
    fn labels_are_printable_and_short() {
        assert_eq!(
            TokenLabel::parse("ci: deploy").unwrap().as_str(),
            "ci: deploy"
        );
        assert_eq!(
            TokenLabel::parse(&"é".repeat(64))
                .unwrap()
                .as_str()
                .chars()
                .count(),
            64
        );
        for bad in ["", "  ", "a\rb", "\u{1b}[2J", "a\u{202e}b", &"x".repeat(65)] {
            let err = TokenLabel::parse(bad).unwrap_err();
            assert!(
                matches!(err, StoreError::InvalidTokenLabel { .. }),
                "{bad:?}"
            );
            assert!(!err.to_string().contains('\u{1b}'));
        }
    }

    #[test]
    fn passwords_are_long_random_and_alphanumeric() {
        let a = generate_password().unwrap();
        let b = generate_password().unwrap();
        assert_eq!(a.as_str().len(), PASSWORD_LENGTH);
        assert!(a.as_str().bytes().all(|c| c.is_ascii_alphanumeric()));
        assert_ne!(a.as_str(), b.as_str());
        assert!(!format!("{a:?}").contains(a.as_str()));
        // Every letter of the alphabet turns up (a biased or stuck generator would not).
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..200 {
            seen.extend(generate_password().unwrap().as_str().bytes());
        }
        assert_eq!(seen.len(), 62);
    }

    #[test]
    fn a_hash_is_an_argon2id_phc_string_that_verifies_its_password_only() {
        let hash = hash_password("correct horse").unwrap();
        assert!(
            hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{hash}"
        );
        assert_ne!(hash, hash_password("correct horse").unwrap(), "salted");
        assert_eq!(verify_password(b"correct horse", Some(&hash)), Ok(true));
        assert_eq!(verify_password(b"correct horsf", Some(&hash)), Ok(false));
        assert_eq!(verify_password(b"", Some(&hash)), Ok(false));
        assert!(verify_password(b"x", Some("not a hash")).is_err());
        assert_eq!(verify_password(b"anything", None), Ok(false));
    }

    /// The dummy hash must cost what a real one costs: same algorithm, version and parameters.
    #[test]
    fn the_dummy_hash_has_the_parameters_of_new_hashes() {
        let real = hash_password("x").unwrap();
        let prefix = |h: &str| h.rsplitn(3, '$').nth(2).map(str::to_string);
        assert_eq!(prefix(DUMMY_HASH), prefix(&real));
        assert!(PasswordHash::new(DUMMY_HASH).is_ok());
    }

    #[test]
    fn tokens_have_their_form_and_only_their_form_is_hashed() {
        let (token, hash) = generate_token().unwrap();
        let text = token.as_str();
        assert_eq!(text.len(), TOKEN_LENGTH);
        assert!(text.starts_with(TOKEN_PREFIX));
        assert_eq!(token_hash(text), Some(hash));
        assert!(!format!("{token:?}").contains(&text[3..]));
        let (other, _) = generate_token().unwrap();
        assert_ne!(other.as_str(), text);
        let mut wrong_char = text.to_string();
        wrong_char.replace_range(10..11, "+");
        for bad in [
            "",
            "ag_",
            &text[..TOKEN_LENGTH - 1],
            &format!("{text}A"),
            &text.replacen("ag_", "xx_", 1),
            &wrong_char,
            &format!("Bearer {text}"),
        ] {
            assert_eq!(token_hash(bad), None, "{bad:?}");
        }
    }
}
