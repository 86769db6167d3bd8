//! Who may do what (DESIGN §5.4), in one place: every handler asks these functions and none
//! decides on its own.
//!
//! | role | reads | writes |
//! |---|---|---|
//! | `admin` | everything | everything |
//! | `tenant-admin` of T | T's entries and the global ones | T's entries only (the default scope); global → 403 |
//! | `viewer` of T | T's entries and the global ones | nothing (403) |
//! | `viewer` without tenant | everything | nothing (403) |
//!
//! History and evaluation follow the same line: a user confined to a tenant (a tenant-admin, a
//! tenant viewer) reads only its own tenant's history records (not those of no tenant or of
//! several) and evaluates only mail to its own tenant's domains; a viewer may evaluate (a dry
//! run changes nothing).
//!
//! Anything naming a tenant the caller may not see is refused with [`Refusal::Hidden`], which
//! the API answers exactly as it answers for a tenant or entry that does not exist (404).

use allowgate_store::{Role, User};
use allowgate_types::{Scope, TenantName};

/// Why a request is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The caller may see the object but not change it (403).
    Forbidden,
    /// The caller may not know the object exists (404, as for one that does not).
    Hidden,
}

/// The one tenant a user is confined to, if any (a tenant-admin's, a tenant viewer's).
fn confined_to(user: &User) -> Option<&TenantName> {
    match user.role {
        Role::Admin => None,
        Role::TenantAdmin | Role::Viewer => user.tenant.as_ref(),
    }
}

/// Whether `user` may see the tenant `name` (its name, its domains, its entries).
pub fn may_see_tenant(user: &User, name: &TenantName) -> bool {
    confined_to(user).is_none_or(|own| own == name)
}

/// Whether `user` may read entries of `scope`: global entries apply to every tenant, so every
/// user reads them; a tenant's entries only a user not confined to another tenant.
pub fn may_read(user: &User, scope: &Scope) -> Result<(), Refusal> {
    match scope {
        Scope::Global => Ok(()),
        Scope::Tenant(t) if may_see_tenant(user, t) => Ok(()),
        Scope::Tenant(_) => Err(Refusal::Hidden),
    }
}

/// Whether `user` may change anything at all: viewers may not. Asked before anything is looked
/// up, so that a viewer learns nothing from a write (always 403).
pub fn may_write_at_all(user: &User) -> Result<(), Refusal> {
    match user.role {
        Role::Admin | Role::TenantAdmin => Ok(()),
        Role::Viewer => Err(Refusal::Forbidden),
    }
}

/// Whether `user` may add or remove entries of `scope`.
pub fn may_write(user: &User, scope: &Scope) -> Result<(), Refusal> {
    may_write_at_all(user)?;
    match (user.role, scope) {
        (Role::Admin, _) => Ok(()),
        (_, Scope::Global) => Err(Refusal::Forbidden),
        (_, Scope::Tenant(t)) if confined_to(user) == Some(t) => Ok(()),
        (_, Scope::Tenant(_)) => Err(Refusal::Hidden),
    }
}

/// The tenant filter of a history request by `user` that asked for `requested`: a confined
/// user's own tenant whatever it asked for (another tenant is [`Refusal::Hidden`]); the
/// requested one (or none) for the others.
pub fn history_tenant(
    user: &User,
    requested: Option<TenantName>,
) -> Result<Option<TenantName>, Refusal> {
    match (confined_to(user), requested) {
        (None, requested) => Ok(requested),
        (Some(own), None) => Ok(Some(own.clone())),
        (Some(own), Some(t)) if *own == t => Ok(Some(t)),
        (Some(_), Some(_)) => Err(Refusal::Hidden),
    }
}

/// Whether `user` may see a history record of `tenant` (`None`: recipients of no tenant or of
/// several): a confined user only its own tenant's.
pub fn may_see_record(user: &User, tenant: Option<&str>) -> bool {
    confined_to(user).is_none_or(|own| tenant == Some(own.as_str()))
}

/// Whether `user` may evaluate mail to a recipient of `tenant` (`None`: a domain of no
/// tenant): a confined user only to its own tenant's domains; any other is
/// [`Refusal::Hidden`], so that another tenant's domain and a domain of none look the same.
pub fn may_evaluate_for(user: &User, tenant: Option<&TenantName>) -> Result<(), Refusal> {
    match confined_to(user) {
        None => Ok(()),
        Some(own) if tenant == Some(own) => Ok(()),
        Some(_) => Err(Refusal::Hidden),
    }
}

/// The scope of a write that names none: a tenant-admin's own tenant; global for the others.
pub fn default_write_scope(user: &User) -> Scope {
    match (user.role, &user.tenant) {
        (Role::TenantAdmin, Some(t)) => Scope::Tenant(t.clone()),
        _ => Scope::Global,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use allowgate_store::{UserId, UserName};

    fn user(role: Role, tenant: Option<&str>) -> User {
        User {
            id: UserId(1),
            name: UserName::parse("u").unwrap_or_else(|e| panic!("{e}")),
            role,
            tenant: tenant.map(|t| TenantName::parse(t).unwrap_or_else(|e| panic!("{e}"))),
            must_change_password: false,
            disabled: false,
            locked_until: None,
            created_at: chrono::Utc::now(),
            created_by: "test".into(),
        }
    }

    type Row<'a> = (&'a User, &'a str, Result<(), Refusal>, Result<(), Refusal>);

    fn scope(s: &str) -> Scope {
        s.parse().unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn the_table_of_the_module_doc() {
        use Refusal::{Forbidden, Hidden};
        let admin = user(Role::Admin, None);
        let ta = user(Role::TenantAdmin, Some("a"));
        let va = user(Role::Viewer, Some("a"));
        let v = user(Role::Viewer, None);
        // (user, scope, read, write)
        let table: [Row<'_>; 12] = [
            (&admin, "global", Ok(()), Ok(())),
            (&admin, "a", Ok(()), Ok(())),
            (&admin, "b", Ok(()), Ok(())),
            (&ta, "global", Ok(()), Err(Forbidden)),
            (&ta, "a", Ok(()), Ok(())),
            (&ta, "b", Err(Hidden), Err(Hidden)),
            (&va, "global", Ok(()), Err(Forbidden)),
            (&va, "a", Ok(()), Err(Forbidden)),
            (&va, "b", Err(Hidden), Err(Forbidden)),
            (&v, "global", Ok(()), Err(Forbidden)),
            (&v, "a", Ok(()), Err(Forbidden)),
            (&v, "b", Ok(()), Err(Forbidden)),
        ];
        for (u, s, read, write) in table {
            assert_eq!(may_read(u, &scope(s)), read, "{:?} reads {s}", u.role);
            assert_eq!(may_write(u, &scope(s)), write, "{:?} writes {s}", u.role);
        }
        assert_eq!(default_write_scope(&ta), scope("a"));
        assert_eq!(default_write_scope(&admin), Scope::Global);
        assert!(may_see_tenant(
            &v,
            &TenantName::parse("b").unwrap_or_else(|e| panic!("{e}"))
        ));
        assert!(!may_see_tenant(
            &ta,
            &TenantName::parse("b").unwrap_or_else(|e| panic!("{e}"))
        ));
    }

    #[test]
    fn history_and_evaluation_confine_to_the_own_tenant() {
        let name = |t: &str| TenantName::parse(t).unwrap_or_else(|e| panic!("{e}"));
        let admin = user(Role::Admin, None);
        let ta = user(Role::TenantAdmin, Some("a"));
        let va = user(Role::Viewer, Some("a"));
        let v = user(Role::Viewer, None);
        for u in [&admin, &v] {
            assert_eq!(history_tenant(u, None), Ok(None));
            assert_eq!(history_tenant(u, Some(name("b"))), Ok(Some(name("b"))));
            assert!(may_see_record(u, None));
            assert!(may_see_record(u, Some("b")));
            assert_eq!(may_evaluate_for(u, None), Ok(()));
            assert_eq!(may_evaluate_for(u, Some(&name("b"))), Ok(()));
        }
        for u in [&ta, &va] {
            assert_eq!(history_tenant(u, None), Ok(Some(name("a"))));
            assert_eq!(history_tenant(u, Some(name("a"))), Ok(Some(name("a"))));
            assert_eq!(history_tenant(u, Some(name("b"))), Err(Refusal::Hidden));
            assert!(may_see_record(u, Some("a")));
            assert!(!may_see_record(u, Some("b")));
            assert!(!may_see_record(u, None));
            assert_eq!(may_evaluate_for(u, Some(&name("a"))), Ok(()));
            assert_eq!(may_evaluate_for(u, Some(&name("b"))), Err(Refusal::Hidden));
            assert_eq!(may_evaluate_for(u, None), Err(Refusal::Hidden));
        }
    }
}
