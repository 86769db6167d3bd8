//! The store's operations, written once and compiled once per backend (see [`crate::backend`]):
//! `Db` is the backend's sqlx database type and `dialect` its module of database-specific SQL.
//! Everything here is portable SQL with `$n` placeholders.

use allowgate_types::{Actor, Domain, Entry, EntryId, NewEntry, Scope, Tenant, TenantName};
use chrono::{DateTime, Utc};
use futures_util::TryStreamExt;
use sqlx::{Pool, QueryBuilder};

use super::{self as dialect, Db};
use crate::error::{ImportError, StoreError};
use crate::history::{
    EntryHits, HistoryFilter, HistoryMatch, HistoryRecord, PreparedRecord, SenderCondition,
    time_of_micros,
};
use crate::import::{self, ImportMode, ImportReport, ImportRequest};
use crate::record::{ENTRY_COLUMNS, EntryRow};
use crate::users::{
    self, ApiToken, AuthError, DenyReason, OneTimePassword, Role, TokenId, TokenInfo, TokenLabel,
    User, UserId, UserName,
};
use crate::{AuditRecord, EntryFilter, Policy, TenantRemoval, UnreadableEntry, now};

type Conn = <Db as sqlx::Database>::Connection;

/// The operations over one backend's connection pool. Cheap to clone.
#[derive(Debug, Clone)]
pub(crate) struct Ops {
    pool: Pool<Db>,
}

#[derive(sqlx::FromRow)]
struct AuditDbRow {
    id: i64,
    revision_id: Option<i64>,
    at: DateTime<Utc>,
    actor: String,
    action: String,
    object: String,
    object_id: Option<i64>,
    before: Option<String>,
    after: Option<String>,
}

#[derive(sqlx::FromRow)]
struct HistoryDbRow {
    id: i64,
    time: i64,
    node: String,
    queue_id: Option<String>,
    tenant: Option<String>,
    client_ip: String,
    sender: Option<String>,
    sender_source: Option<String>,
    recipients: String,
    status: String,
    action: String,
    stage: String,
    bypassed: String,
    matched: String,
    checks: String,
    reason: String,
    revision: i64,
}

/// The columns of [`HistoryDbRow`].
const HISTORY_COLUMNS: &str = "id, time, node, queue_id, tenant, client_ip, sender, \
     sender_source, recipients, status, action, stage, bypassed, matched, checks, reason, revision";

impl HistoryDbRow {
    fn into_record(self) -> Result<HistoryRecord, StoreError> {
        let id = self.id;
        let corrupt = |reason: String| StoreError::Corrupt {
            table: "history",
            id,
            reason,
        };
        fn decode<T: serde::de::DeserializeOwned>(field: &str, text: &str) -> Result<T, String> {
            serde_json::from_str(text).map_err(|e| format!("{field}: {e}"))
        }
        Ok(HistoryRecord {
            time: time_of_micros(self.time)
                .ok_or_else(|| corrupt(format!("time {} is out of range", self.time)))?,
            node: self.node,
            queue_id: self.queue_id,
            tenant: self.tenant,
            client_ip: self.client_ip,
            sender: self.sender,
            sender_source: self.sender_source,
            recipients: decode("recipients", &self.recipients).map_err(corrupt)?,
            status: self.status,
            action: self.action,
            stage: self.stage,
            bypassed: decode("bypassed", &self.bypassed).map_err(corrupt)?,
            matched: decode::<Vec<HistoryMatch>>("matched", &self.matched).map_err(corrupt)?,
            checks: decode("checks", &self.checks).map_err(corrupt)?,
            reason: self.reason,
            revision: self.revision,
        })
    }
}

impl Ops {
    /// Open `url` (see [`dialect::connect`]).
    pub(crate) async fn open(url: &str, options: &crate::StoreOptions) -> Result<Ops, StoreError> {
        Ok(Ops {
            pool: dialect::connect(url, options).await?,
        })
    }

    pub(crate) async fn close(&self) {
        self.pool.close().await;
    }

    pub(crate) async fn add_tenant(
        &self,
        name: &TenantName,
        domains: &[Domain],
        actor: &Actor,
    ) -> Result<Tenant, StoreError> {
        let mut tx = dialect::begin_write(&self.pool).await?;
        let exists: Option<i64> = sqlx::query_scalar("SELECT id FROM tenants WHERE name = $1")
            .bind(name.as_str())
            .fetch_optional(&mut *tx)
            .await?;
        if exists.is_some() {
            return Err(StoreError::TenantExists {
                name: name.to_string(),
            });
        }
        let domains = sorted(domains);
        check_domains_free(&mut tx, &domains).await?;
        let at = now();
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO tenants (name, created_at) VALUES ($1, $2) RETURNING id",
        )
        .bind(name.as_str())
        .bind(at)
        .fetch_one(&mut *tx)
        .await?;
        insert_domains(&mut tx, id, &domains).await?;
        let tenant = Tenant {
            name: name.clone(),
            domains,
        };
        let revision = new_revision(&mut tx, at, actor, &format!("add tenant {name}")).await?;
        let change = TenantChange::new(revision, at, actor, id);
        change.audit(&mut tx, "add", None, Some(&tenant)).await?;
        tx.commit().await?;
        Ok(tenant)
    }

    pub(crate) async fn add_tenant_domains(
        &self,
        name: &TenantName,
        domains: &[Domain],
        actor: &Actor,
    ) -> Result<Tenant, StoreError> {
        let mut tx = dialect::begin_write(&self.pool).await?;
        let (id, before) = tenant_by_name(&mut tx, name).await?;
        let added = sorted(domains);
        if added.is_empty() {
            return Ok(before);
        }
        check_domains_free(&mut tx, &added).await?;
        insert_domains(&mut tx, id, &added).await?;
        let mut after = before.clone();
        after.domains.extend(added.iter().cloned());
        after.domains.sort();
        let summary = format!("add domains {} to tenant {name}", joined(&added));
        commit_tenant_update(tx, actor, id, &summary, &before, after).await
    }

    pub(crate) async fn remove_tenant_domain(
        &self,
        name: &TenantName,
        domain: &Domain,
        actor: &Actor,
    ) -> Result<Tenant, StoreError> {
        let mut tx = dialect::begin_write(&self.pool).await?;
        let (id, before) = tenant_by_name(&mut tx, name).await?;
        if !before.domains.contains(domain) {
            return Err(StoreError::DomainNotOwned {
                domain: domain.to_string(),
                tenant: name.to_string(),
            });
        }
        sqlx::query("DELETE FROM tenant_domains WHERE domain = $1 AND tenant_id = $2")
            .bind(domain.as_str())
            .bind(id)
            .execute(&mut *tx)
            .await?;
        let mut after = before.clone();
        after.domains.retain(|d| d != domain);
        let summary = format!("remove domain {domain} from tenant {name}");
        commit_tenant_update(tx, actor, id, &summary, &before, after).await
    }

    pub(crate) async fn remove_tenant(
        &self,
        name: &TenantName,
        with_entries: bool,
        actor: &Actor,
    ) -> Result<TenantRemoval, StoreError> {
        let mut tx = dialect::begin_write(&self.pool).await?;
        let (id, tenant) = tenant_by_name(&mut tx, name).await?;
        let entries: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM entries WHERE tenant_id = $1")
            .bind(id)
            .fetch_one(&mut *tx)
            .await?;
        let entries = u64::try_from(entries).unwrap_or(0);
        // Users of a tenant are never removed or left without it behind an admin's back (a
        // viewer without a tenant sees every tenant); the foreign key would refuse it anyway.
        let user_names: Vec<String> =
            sqlx::query_scalar("SELECT name FROM users WHERE tenant_id = $1 ORDER BY name LIMIT 5")
                .bind(id)
                .fetch_all(&mut *tx)
                .await?;
        if !user_names.is_empty() {
            let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM users WHERE tenant_id = $1")
                .bind(id)
                .fetch_one(&mut *tx)
                .await?;
            let count = u64::try_from(count).unwrap_or(0);
            let mut names = user_names.join(", ");
            if count > user_names.len() as u64 {
                names.push_str(", …");
            }
            return Err(StoreError::TenantHasUsers {
                name: name.to_string(),
                count,
                names,
            });
        }
        if entries > 0 && !with_entries {
            return Err(StoreError::TenantHasEntries {
                name: name.to_string(),
                entries,
            });
        }
        let at = now();
        let summary = if entries > 0 {
            format!("remove tenant {name} and its {entries} entries")
        } else {
            format!("remove tenant {name}")
        };
        let revision = new_revision(&mut tx, at, actor, &summary).await?;
        if entries > 0 {
            let mut audit = audit_entries(revision, at, actor, AuditAction::Remove);
            audit.push("e.tenant_id = ").push_bind(id);
            audit.build().execute(&mut *tx).await?;
            sqlx::query("DELETE FROM entries WHERE tenant_id = $1")
                .bind(id)
                .execute(&mut *tx)
                .await?;
        }
        sqlx::query("DELETE FROM tenant_domains WHERE tenant_id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM tenants WHERE id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        let change = TenantChange::new(revision, at, actor, id);
        change.audit(&mut tx, "remove", Some(&tenant), None).await?;
        tx.commit().await?;
        Ok(TenantRemoval {
            tenant,
            entries_removed: entries,
            revision,
        })
    }

    pub(crate) async fn tenants(&self) -> Result<Vec<Tenant>, StoreError> {
        let mut conn = self.pool.acquire().await?;
        read_tenants(&mut conn).await
    }

    pub(crate) async fn add_entry(
        &self,
        entry: &NewEntry,
        actor: &Actor,
    ) -> Result<Entry, StoreError> {
        let mut tx = dialect::begin_write(&self.pool).await?;
        let tenant_id = scope_tenant_id(&mut tx, &entry.scope).await?;
        let value = entry.value.to_string();
        let existing: Option<i64> = sqlx::query_scalar(
            "SELECT id FROM entries \
             WHERE list = $1 AND COALESCE(tenant_id, 0) = $2 AND kind = $3 AND value = $4",
        )
        .bind(entry.list.as_str())
        .bind(tenant_id.unwrap_or(0))
        .bind(entry.kind().as_str())
        .bind(&value)
        .fetch_optional(&mut *tx)
        .await?;
        if let Some(id) = existing {
            return Err(StoreError::Duplicate {
                existing: EntryId(id),
            });
        }
        let at = now();
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO entries (list, tenant_id, kind, value, checks, comment, require_auth, \
             internal, starts_at, expires_at, enabled, created_at, created_by) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) RETURNING id",
        )
        .bind(entry.list.as_str())
        .bind(tenant_id)
        .bind(entry.kind().as_str())
        .bind(&value)
        .bind(entry.checks.to_string())
        .bind(entry.comment.as_ref().map(|c| c.as_str()))
        .bind(entry.require_auth)
        .bind(entry.internal)
        .bind(entry.starts_at)
        .bind(entry.expires_at)
        .bind(entry.enabled)
        .bind(at)
        .bind(actor.as_str())
        .fetch_one(&mut *tx)
        .await?;
        let stored = Entry {
            id: EntryId(id),
            entry: entry.clone(),
            created_at: at,
            created_by: actor.to_string(),
        };
        let summary = format!(
            "add {} {} entry {} `{value}` ({})",
            entry.list,
            entry.kind(),
            stored.id,
            entry.scope
        );
        let revision = new_revision(&mut tx, at, actor, &summary).await?;
        let mut audit = audit_entries(revision, at, actor, AuditAction::Add);
        audit.push("e.id = ").push_bind(id);
        audit.build().execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(stored)
    }

    pub(crate) async fn remove_entry(
        &self,
        id: EntryId,
        actor: &Actor,
    ) -> Result<Entry, StoreError> {
        let mut tx = dialect::begin_write(&self.pool).await?;
        let entry = read_entry(&mut tx, id).await?;
        let at = now();
        let e = &entry.entry;
        let summary = format!(
            "remove {} {} entry {} `{}` ({})",
            e.list,
            e.kind(),
            id,
            e.value,
            e.scope
        );
        let revision = new_revision(&mut tx, at, actor, &summary).await?;
        let mut audit = audit_entries(revision, at, actor, AuditAction::Remove);
        audit.push("e.id = ").push_bind(id.0);
        audit.build().execute(&mut *tx).await?;
        sqlx::query("DELETE FROM entries WHERE id = $1")
            .bind(id.0)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(entry)
    }

    pub(crate) async fn entries(&self, filter: &EntryFilter) -> Result<Vec<Entry>, StoreError> {
        let mut conn = self.pool.acquire().await?;
        read_entries(&mut conn, filter).await
    }

    pub(crate) async fn revision(&self) -> Result<i64, StoreError> {
        let mut conn = self.pool.acquire().await?;
        read_revision(&mut conn).await
    }

    pub(crate) async fn load_policy(&self) -> Result<Policy, StoreError> {
        let mut tx = dialect::begin_read(&self.pool).await?;
        // The first read fixes the snapshot the other two see.
        let revision = read_revision(&mut tx).await?;
        let tenants = read_tenants(&mut tx).await?;
        let rows = read_entry_rows(&mut tx, &EntryFilter::default()).await?;
        tx.rollback().await?;
        // A row that no longer validates (edited by hand, or refused by a stricter rule since
        // it was stored) is left out and reported, not allowed to stop every decision.
        let mut entries = Vec::with_capacity(rows.len());
        let mut unreadable = Vec::new();
        for row in rows {
            let id = EntryId(row.id);
            match row.into_entry() {
                Ok(e) => entries.push(e),
                Err(e) => unreadable.push(UnreadableEntry {
                    id,
                    reason: match e {
                        StoreError::Corrupt { reason, .. } => reason,
                        other => other.to_string(),
                    },
                }),
            }
        }
        Ok(Policy {
            revision,
            tenants,
            entries,
            unreadable,
        })
    }

    pub(crate) async fn audit(&self, limit: u32) -> Result<Vec<AuditRecord>, StoreError> {
        let rows: Vec<AuditDbRow> = sqlx::query_as(
            "SELECT id, revision_id, at, actor, action, object, object_id, before, after \
             FROM audit ORDER BY id DESC LIMIT $1",
        )
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|row| {
                let json = |text: Option<String>| {
                    text.map(|t| serde_json::from_str(&t))
                        .transpose()
                        .map_err(|e| StoreError::Corrupt {
                            table: "audit",
                            id: row.id,
                            reason: e.to_string(),
                        })
                };
                Ok(AuditRecord {
                    id: row.id,
                    revision: row.revision_id,
                    at: row.at,
                    before: json(row.before)?,
                    after: json(row.after)?,
                    actor: row.actor,
                    action: row.action,
                    object: row.object,
                    object_id: row.object_id,
                })
            })
            .collect()
    }

    pub(crate) async fn add_user(
        &self,
        name: &UserName,
        role: Role,
        tenant: Option<&TenantName>,
        actor: &Actor,
    ) -> Result<(User, OneTimePassword), StoreError> {
        role.check_tenant(tenant)?;
        // The slow hash is made before the write lock is taken, not while holding it.
        let password = users::generate_password()?;
        let clear = password.as_str().to_string();
        let hash = users::blocking(move || users::hash_password(&clear)).await??;
        let mut tx = dialect::begin_write(&self.pool).await?;
        let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM users")
            .fetch_one(&mut *tx)
            .await?;
        if u64::try_from(count).unwrap_or(u64::MAX) >= users::MAX_USERS {
            return Err(StoreError::TooManyUsers);
        }
        let exists: Option<i64> = sqlx::query_scalar("SELECT id FROM users WHERE name = $1")
            .bind(name.as_str())
            .fetch_optional(&mut *tx)
            .await?;
        if exists.is_some() {
            return Err(StoreError::UserExists {
                name: name.to_string(),
            });
        }
        let tenant_id = match tenant {
            Some(t) => scope_tenant_id(&mut tx, &Scope::Tenant(t.clone())).await?,
            None => None,
        };
        let at = now();
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO users (name, role, tenant_id, password_hash, must_change_password, \
             created_at, created_by) VALUES ($1, $2, $3, $4, TRUE, $5, $6) RETURNING id",
        )
        .bind(name.as_str())
        .bind(role.as_str())
        .bind(tenant_id)
        .bind(&hash)
        .bind(at)
        .bind(actor.as_str())
        .fetch_one(&mut *tx)
        .await?;
        let user = User {
            id: UserId(id),
            name: name.clone(),
            role,
            tenant: tenant.cloned(),
            must_change_password: true,
            disabled: false,
            locked_until: None,
            created_at: at,
            created_by: actor.to_string(),
        };
        let after = audit_json(&user, "the user's audit record")?;
        audit_account(&mut tx, at, actor, "add", "user", id, None, Some(after)).await?;
        tx.commit().await?;
        Ok((user, password))
    }

    pub(crate) async fn verify_password(
        &self,
        name: &str,
        password: &str,
    ) -> Result<User, AuthError> {
        // Refusals that need no lookup say nothing about who exists: such names cannot.
        if password.len() > users::MAX_PASSWORD_BYTES {
            return Err(AuthError::Denied(DenyReason::WrongPassword));
        }
        let Ok(name) = UserName::parse(name) else {
            return Err(AuthError::Denied(DenyReason::UnknownUser));
        };
        let sql = format!("SELECT u.password_hash, {USER_COLUMNS} WHERE u.name = $1");
        let row: Option<UserSecretRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(name.as_str())
            .fetch_optional(&self.pool)
            .await?;
        // One Argon2 verification whether the user exists or not (against a dummy hash of the
        // same cost when it does not), and every other check after it.
        let (hash, row) = match row {
            Some(r) => (Some(r.password_hash), Some(r.user)),
            None => (None, None),
        };
        let clear = password.as_bytes().to_vec();
        let matches =
            users::blocking(move || users::verify_password(&clear, hash.as_deref())).await?;
        let Some(row) = row else {
            return Err(AuthError::Denied(DenyReason::UnknownUser));
        };
        let id = row.id;
        let matches = matches.map_err(|reason| StoreError::Corrupt {
            table: "users",
            id,
            reason: format!("password_hash: {reason}"),
        })?;
        let user = row.into_user()?;
        if !matches {
            return Err(AuthError::Denied(DenyReason::WrongPassword));
        }
        if user.disabled {
            return Err(AuthError::Denied(DenyReason::Disabled));
        }
        if user.locked_until.is_some_and(|t| t > Utc::now()) {
            return Err(AuthError::Denied(DenyReason::Locked));
        }
        Ok(user)
    }

    pub(crate) async fn add_token(
        &self,
        user: &UserName,
        label: Option<&TokenLabel>,
        actor: &Actor,
    ) -> Result<(TokenInfo, ApiToken), StoreError> {
        let (token, hash) = users::generate_token()?;
        let mut tx = dialect::begin_write(&self.pool).await?;
        let user_id = user_id(&mut tx, user).await?;
        let active: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM api_tokens WHERE user_id = $1 AND revoked_at IS NULL",
        )
        .bind(user_id)
        .fetch_one(&mut *tx)
        .await?;
        if u64::try_from(active).unwrap_or(u64::MAX) >= users::MAX_ACTIVE_TOKENS {
            return Err(StoreError::TooManyTokens {
                user: user.to_string(),
            });
        }
        let at = now();
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO api_tokens (user_id, label, token_hash, created_at, created_by) \
             VALUES ($1, $2, $3, $4, $5) RETURNING id",
        )
        .bind(user_id)
        .bind(label.map(TokenLabel::as_str))
        .bind(&hash[..])
        .bind(at)
        .bind(actor.as_str())
        .fetch_one(&mut *tx)
        .await?;
        let info = TokenInfo {
            id: TokenId(id),
            user: user.clone(),
            label: label.cloned(),
            created_at: at,
            created_by: actor.to_string(),
            last_used_at: None,
            revoked_at: None,
        };
        let after = audit_json(&info, "the token's audit record")?;
        audit_account(&mut tx, at, actor, "add", "token", id, None, Some(after)).await?;
        tx.commit().await?;
        Ok((info, token))
    }

    pub(crate) async fn authenticate_token(&self, token: &str) -> Result<User, AuthError> {
        let Some(hash) = users::token_hash(token) else {
            return Err(AuthError::Denied(DenyReason::MalformedToken));
        };
        let sql = format!(
            "SELECT k.id AS token_id, k.last_used_at, k.revoked_at, {USER_COLUMNS} \
             JOIN api_tokens k ON k.user_id = u.id WHERE k.token_hash = $1"
        );
        let row: Option<TokenAuthRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(&hash[..])
            .fetch_optional(&self.pool)
            .await?;
        let Some(row) = row else {
            return Err(AuthError::Denied(DenyReason::UnknownToken));
        };
        if row.revoked_at.is_some() {
            return Err(AuthError::Denied(DenyReason::RevokedToken));
        }
        let user = row.user.into_user()?;
        if user.disabled {
            return Err(AuthError::Denied(DenyReason::Disabled));
        }
        // One write a minute per token at most; a write lock held elsewhere (an import) does
        // not refuse the caller, the time is written at a later use.
        let at = now();
        if row
            .last_used_at
            .is_none_or(|t| at - t >= users::LAST_USED_RESOLUTION)
        {
            let written = sqlx::query("UPDATE api_tokens SET last_used_at = $1 WHERE id = $2")
                .bind(at)
                .bind(row.token_id)
                .execute(&self.pool)
                .await;
            match written.map_err(StoreError::from) {
                Ok(_) | Err(StoreError::Busy { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(user)
    }

    pub(crate) async fn revoke_token(
        &self,
        id: TokenId,
        actor: &Actor,
    ) -> Result<TokenInfo, StoreError> {
        let mut tx = dialect::begin_write(&self.pool).await?;
        let sql = format!("{TOKEN_SELECT} WHERE k.id = $1");
        let row: Option<TokenRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(id.0)
            .fetch_optional(&mut *tx)
            .await?;
        let before = row.ok_or(StoreError::TokenNotFound { id })?.into_info()?;
        if let Some(at) = before.revoked_at {
            return Err(StoreError::TokenAlreadyRevoked { id, at });
        }
        let at = now();
        sqlx::query("UPDATE api_tokens SET revoked_at = $1 WHERE id = $2")
            .bind(at)
            .bind(id.0)
            .execute(&mut *tx)
            .await?;
        let after = TokenInfo {
            revoked_at: Some(at),
            ..before.clone()
        };
        let before_json = audit_json(&before, "the token's audit record")?;
        let after_json = audit_json(&after, "the token's audit record")?;
        audit_account(
            &mut tx,
            at,
            actor,
            "revoke",
            "token",
            id.0,
            Some(before_json),
            Some(after_json),
        )
        .await?;
        tx.commit().await?;
        Ok(after)
    }

    pub(crate) async fn list_users(&self) -> Result<Vec<User>, StoreError> {
        let sql = format!("SELECT {USER_COLUMNS} ORDER BY u.name");
        let rows: Vec<UserRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .fetch_all(&self.pool)
            .await?;
        rows.into_iter().map(UserRow::into_user).collect()
    }

    pub(crate) async fn list_tokens(
        &self,
        user: Option<&UserName>,
    ) -> Result<Vec<TokenInfo>, StoreError> {
        // One read transaction: the user is looked up in the state its tokens are read from.
        let mut tx = dialect::begin_read(&self.pool).await?;
        let rows: Vec<TokenRow> = match user {
            Some(name) => {
                let id = user_id(&mut tx, name).await?;
                let sql = format!("{TOKEN_SELECT} WHERE k.user_id = $1 ORDER BY k.id");
                sqlx::query_as(sqlx::AssertSqlSafe(sql))
                    .bind(id)
                    .fetch_all(&mut *tx)
                    .await?
            }
            None => {
                let sql = format!("{TOKEN_SELECT} ORDER BY k.id");
                sqlx::query_as(sqlx::AssertSqlSafe(sql))
                    .fetch_all(&mut *tx)
                    .await?
            }
        };
        tx.rollback().await?;
        rows.into_iter().map(TokenRow::into_info).collect()
    }

    pub(crate) async fn entry(&self, id: EntryId) -> Result<Entry, StoreError> {
        let mut conn = self.pool.acquire().await?;
        read_entry(&mut conn, id).await
    }

    pub(crate) async fn record_history(&self, batch: &[HistoryRecord]) -> Result<(), StoreError> {
        if batch.is_empty() {
            return Ok(());
        }
        if batch.len() > crate::history::MAX_HISTORY_BATCH {
            return Err(StoreError::HistoryBatchTooLarge {
                records: batch.len(),
            });
        }
        // Everything is checked and encoded before the write lock is taken.
        let rows = batch
            .iter()
            .enumerate()
            .map(|(index, r)| {
                PreparedRecord::new(r)
                    .map_err(|problem| StoreError::InvalidHistoryRecord { index, problem })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let hits = entry_hit_counts(batch, &rows);
        let mut query = QueryBuilder::<Db>::new("");
        let mut tx = dialect::begin_write(&self.pool).await?;
        for chunk in rows.chunks(dialect::HISTORY_CHUNK) {
            query.reset();
            query.push(
                "INSERT INTO history (time, node, queue_id, tenant, client_ip, ip_key, sender, \
                 sender_rdomain, sender_source, recipients, status, action, stage, bypassed, \
                 matched, checks, reason, revision) ",
            );
            query.push_values(chunk, |mut row, r| {
                row.push_bind(r.time)
                    .push_bind(r.node)
                    .push_bind(r.queue_id)
                    .push_bind(r.tenant.as_deref())
                    .push_bind(r.client_ip.as_str())
                    .push_bind(r.ip_key.as_slice())
                    .push_bind(r.sender.as_deref())
                    .push_bind(r.sender_rdomain.as_deref())
                    .push_bind(r.sender_source)
                    .push_bind(r.recipients.as_str())
                    .push_bind(r.status)
                    .push_bind(r.action)
                    .push_bind(r.stage)
                    .push_bind(r.bypassed.as_str())
                    .push_bind(r.matched.as_str())
                    .push_bind(r.checks.as_str())
                    .push_bind(r.reason)
                    .push_bind(r.revision);
            });
            query.build().execute(&mut *tx).await?;
        }
        for chunk in hits.chunks(dialect::ENTRY_HITS_CHUNK) {
            query.reset();
            query.push("INSERT INTO entry_hits (entry_id, hits, last_hit) ");
            query.push_values(chunk, |mut row, (id, (hits, last))| {
                row.push_bind(*id).push_bind(*hits).push_bind(*last);
            });
            query.push(
                " ON CONFLICT (entry_id) DO UPDATE SET hits = entry_hits.hits + excluded.hits, \
                 last_hit = CASE WHEN excluded.last_hit > entry_hits.last_hit \
                 THEN excluded.last_hit ELSE entry_hits.last_hit END",
            );
            query.build().execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    pub(crate) async fn history(
        &self,
        filter: &HistoryFilter,
    ) -> Result<Vec<HistoryRecord>, StoreError> {
        let f = filter.parse()?;
        // Two steps: the ids of the newest matching rows, then those rows. With one filter the
        // inner query reads its (column, time) index alone — the index holds time and id — so
        // a range filter (a CIDR, a domain and below) that matches thousands of rows sorts
        // index entries, not rows, and reads only the rows it returns.
        let mut query = QueryBuilder::<Db>::new(format!(
            "SELECT {HISTORY_COLUMNS} FROM history WHERE id IN (SELECT id FROM history WHERE 1 = 1"
        ));
        match f.sender {
            None => {}
            Some(SenderCondition::Address(address)) => {
                query.push(" AND sender = ").push_bind(address);
            }
            Some(SenderCondition::Domain(rdomain)) => {
                query.push(" AND sender_rdomain = ").push_bind(rdomain);
            }
            Some(SenderCondition::DomainAndBelow { start, end }) => {
                query
                    .push(" AND sender_rdomain >= ")
                    .push_bind(start)
                    .push(" AND sender_rdomain < ")
                    .push_bind(end);
            }
        }
        match f.ip {
            None => {}
            // One address: equality, so that the (ip_key, time) index also gives the order.
            Some((first, last)) if first == last => {
                query.push(" AND ip_key = ").push_bind(first);
            }
            Some((first, last)) => {
                query
                    .push(" AND ip_key BETWEEN ")
                    .push_bind(first)
                    .push(" AND ")
                    .push_bind(last);
            }
        }
        if let Some(status) = f.status {
            query.push(" AND status = ").push_bind(status);
        }
        if let Some(tenant) = f.tenant {
            query.push(" AND tenant = ").push_bind(tenant);
        }
        if let Some(since) = f.since {
            query.push(" AND time >= ").push_bind(since);
        }
        query
            .push(" ORDER BY time DESC, id DESC LIMIT ")
            .push_bind(i64::from(f.limit))
            .push(") ORDER BY time DESC, id DESC");
        let rows: Vec<HistoryDbRow> = query.build_query_as().fetch_all(&self.pool).await?;
        rows.into_iter().map(HistoryDbRow::into_record).collect()
    }

    pub(crate) async fn purge_history(&self, older_than: DateTime<Utc>) -> Result<u64, StoreError> {
        let before = older_than.timestamp_micros();
        let chunk = i64::try_from(dialect::PURGE_CHUNK).unwrap_or(i64::MAX);
        let mut deleted = 0;
        loop {
            // One short transaction per chunk: admin changes and history batches wait for one
            // chunk at most, never for the whole purge.
            let started = std::time::Instant::now();
            let mut tx = dialect::begin_write(&self.pool).await?;
            let n = sqlx::query(
                "DELETE FROM history WHERE id IN \
                 (SELECT id FROM history WHERE time < $1 ORDER BY time LIMIT $2)",
            )
            .bind(before)
            .bind(chunk)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            tx.commit().await?;
            deleted += n;
            if n < dialect::PURGE_CHUNK as u64 {
                return Ok(deleted);
            }
            // Then as long a pause: a writer waiting for the lock (SQLite's busy handler polls,
            // it is not queued) finds it free before the next chunk takes it again.
            tokio::time::sleep(started.elapsed()).await;
        }
    }

    pub(crate) async fn entry_hits(&self, id: EntryId) -> Result<Option<EntryHits>, StoreError> {
        let row: Option<(i64, i64)> =
            sqlx::query_as("SELECT hits, last_hit FROM entry_hits WHERE entry_id = $1")
                .bind(id.0)
                .fetch_optional(&self.pool)
                .await?;
        row.map(|(hits, last_hit)| {
            let corrupt = |reason: String| StoreError::Corrupt {
                table: "entry_hits",
                id: id.0,
                reason,
            };
            Ok(EntryHits {
                hits: u64::try_from(hits).map_err(|_| corrupt(format!("hits {hits}")))?,
                last_hit: time_of_micros(last_hit)
                    .ok_or_else(|| corrupt(format!("last_hit {last_hit} is out of range")))?,
            })
        })
        .transpose()
    }

    pub(crate) async fn import(
        &self,
        req: &ImportRequest,
        data: &[u8],
        actor: &Actor,
        progress: &(dyn Fn(u64, u64) + Sync),
    ) -> Result<ImportReport, ImportError> {
        let parsed = import::parse_with_progress(data, req, &|done, n| progress(done, 2 * n))?;
        let total = 2 * parsed.values;
        let mut done = parsed.values + parsed.duplicates;
        let mut tx = dialect::begin_write(&self.pool).await?;
        let tenant = scope_tenant_id(&mut tx, &req.scope).await?;
        if req.mode == ImportMode::Replace && parsed.entries.is_empty() && !req.allow_empty {
            // A file with nothing in it would empty the list: only on explicit confirmation.
            let mut count = QueryBuilder::<Db>::new("SELECT COUNT(*) FROM entries WHERE ");
            push_family_condition(&mut count, "", req, tenant);
            let existing: i64 = count.build_query_scalar().fetch_one(&mut *tx).await?;
            if existing > 0 {
                return Err(ImportError::WouldEmpty {
                    existing: u64::try_from(existing).unwrap_or(0),
                    list: req.list,
                    scope: req.scope.clone(),
                    family: req.family,
                });
            }
        }
        let at = now();
        let revision: i64 = sqlx::query_scalar(
            "INSERT INTO revisions (created_at, actor, summary) VALUES ($1, $2, '') RETURNING id",
        )
        .bind(at)
        .bind(actor.as_str())
        .fetch_one(&mut *tx)
        .await?;

        let mut removed = 0;
        if req.mode == ImportMode::Replace {
            let mut audit = audit_entries(revision, at, actor, AuditAction::Remove);
            push_family_condition(&mut audit, "e.", req, tenant);
            audit.build().execute(&mut *tx).await?;
            let mut delete = QueryBuilder::<Db>::new("DELETE FROM entries WHERE ");
            push_family_condition(&mut delete, "", req, tenant);
            removed = delete.build().execute(&mut *tx).await?.rows_affected();
        }

        let shared = dialect::SharedColumns {
            list: req.list.as_str(),
            tenant,
            at,
            actor: actor.as_str(),
        };
        let mut inserted: Vec<i64> = Vec::with_capacity(parsed.entries.len());
        let chunks: Vec<_> = parsed.entries.chunks(dialect::ENTRY_CHUNK).collect();
        // Two statements in turn. The database hands the ids over one row at a time; waiting
        // for each would wake this task once per row. So: wait for the first id (SQLite has made
        // every insert of the statement by then), build the next statement while the rest
        // arrive, then take them all.
        let mut statements = [QueryBuilder::<Db>::new(""), QueryBuilder::<Db>::new("")];
        if let Some(first) = chunks.first() {
            dialect::insert_entries(&mut statements[0], &shared, first);
        }
        for (i, chunk) in chunks.iter().enumerate() {
            let [even, odd] = &mut statements;
            let (current, next) = if i % 2 == 0 { (even, odd) } else { (odd, even) };
            let mut prepare = || {
                if let Some(next_chunk) = chunks.get(i + 1) {
                    dialect::insert_entries(next, &shared, next_chunk);
                }
            };
            let mut ids = current.build_query_scalar::<i64>().fetch(&mut *tx);
            match ids.try_next().await? {
                Some(id) => {
                    inserted.push(id);
                    prepare();
                    while let Some(id) = ids.try_next().await? {
                        inserted.push(id);
                    }
                }
                None => prepare(),
            }
            drop(ids);
            done += chunk.len() as u64;
            progress(done, total);
        }
        // One audit row for every row inserted, and for no other: the ids the inserts returned,
        // as runs of consecutive ids (usually one run), each covering exactly ids of ours.
        inserted.sort_unstable();
        let runs = id_runs(&inserted);
        for runs in runs.chunks(dialect::ID_RUN_CHUNK) {
            let mut audit = audit_entries(revision, at, actor, AuditAction::Add);
            for (i, (first, last)) in runs.iter().enumerate() {
                audit.push(if i == 0 {
                    "(e.id BETWEEN "
                } else {
                    " OR (e.id BETWEEN "
                });
                audit
                    .push_bind(*first)
                    .push(" AND ")
                    .push_bind(*last)
                    .push(")");
            }
            audit.build().execute(&mut *tx).await?;
        }
        let added = inserted.len() as u64;
        let duplicates = parsed.duplicates + (parsed.entries.len() as u64 - added);

        let revision = if added == 0 && removed == 0 {
            tx.rollback().await?;
            self.revision().await?
        } else {
            let summary = format!(
                "import into {} {}: {added} added, {removed} removed, {duplicates} duplicates",
                req.list, req.scope
            );
            sqlx::query("UPDATE revisions SET summary = $1 WHERE id = $2")
                .bind(summary)
                .bind(revision)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            revision
        };
        progress(total, total);
        Ok(ImportReport {
            added,
            duplicates,
            removed,
            warnings: parsed.warnings,
            revision,
        })
    }
}

/// `… FROM users u LEFT JOIN tenants t …`: the columns of a [`UserRow`], for `SELECT`.
const USER_COLUMNS: &str = "u.id, u.name, u.role, t.name AS tenant, u.must_change_password, \
     u.disabled, u.locked_until, u.created_at, u.created_by \
     FROM users u LEFT JOIN tenants t ON t.id = u.tenant_id";

/// A stored user, not yet validated.
#[derive(sqlx::FromRow)]
struct UserRow {
    id: i64,
    name: String,
    role: String,
    tenant: Option<String>,
    must_change_password: bool,
    disabled: bool,
    locked_until: Option<DateTime<Utc>>,
    created_at: DateTime<Utc>,
    created_by: String,
}

impl UserRow {
    /// The user, its stored text validated again ([`StoreError::Corrupt`] if it does not).
    fn into_user(self) -> Result<User, StoreError> {
        let id = self.id;
        let corrupt = |reason: String| StoreError::Corrupt {
            table: "users",
            id,
            reason,
        };
        let name = UserName::parse(&self.name).map_err(|e| corrupt(e.to_string()))?;
        if name.as_str() != self.name {
            return Err(corrupt(format!("name `{}` is not normalised", name)));
        }
        let role: Role = self
            .role
            .parse()
            .map_err(|e: StoreError| corrupt(e.to_string()))?;
        let tenant = self
            .tenant
            .as_deref()
            .map(TenantName::parse)
            .transpose()
            .map_err(|e| corrupt(e.to_string()))?;
        role.check_tenant(tenant.as_ref())
            .map_err(|e| corrupt(e.to_string()))?;
        Ok(User {
            id: UserId(id),
            name,
            role,
            tenant,
            must_change_password: self.must_change_password,
            disabled: self.disabled,
            locked_until: self.locked_until,
            created_at: self.created_at,
            created_by: self.created_by,
        })
    }
}

/// A user and its password hash.
#[derive(sqlx::FromRow)]
struct UserSecretRow {
    password_hash: String,
    #[sqlx(flatten)]
    user: UserRow,
}

/// A token found by its hash, with its user.
#[derive(sqlx::FromRow)]
struct TokenAuthRow {
    token_id: i64,
    last_used_at: Option<DateTime<Utc>>,
    revoked_at: Option<DateTime<Utc>>,
    #[sqlx(flatten)]
    user: UserRow,
}

/// `SELECT` of a [`TokenRow`]; the caller appends the condition.
const TOKEN_SELECT: &str = "SELECT k.id, u.name AS user_name, k.label, k.created_at, \
     k.created_by, k.last_used_at, k.revoked_at FROM api_tokens k JOIN users u ON u.id = k.user_id";

/// A stored token (never its hash), not yet validated.
#[derive(sqlx::FromRow)]
struct TokenRow {
    id: i64,
    user_name: String,
    label: Option<String>,
    created_at: DateTime<Utc>,
    created_by: String,
    last_used_at: Option<DateTime<Utc>>,
    revoked_at: Option<DateTime<Utc>>,
}

impl TokenRow {
    fn into_info(self) -> Result<TokenInfo, StoreError> {
        let id = self.id;
        let corrupt = |reason: String| StoreError::Corrupt {
            table: "api_tokens",
            id,
            reason,
        };
        Ok(TokenInfo {
            id: TokenId(id),
            user: UserName::parse(&self.user_name).map_err(|e| corrupt(e.to_string()))?,
            label: self
                .label
                .as_deref()
                .map(TokenLabel::parse)
                .transpose()
                .map_err(|e| corrupt(e.to_string()))?,
            created_at: self.created_at,
            created_by: self.created_by,
            last_used_at: self.last_used_at,
            revoked_at: self.revoked_at,
        })
    }
}

/// A user's id; [`StoreError::UserNotFound`] if there is none by that name.
async fn user_id(conn: &mut Conn, name: &UserName) -> Result<i64, StoreError> {
    let id: Option<i64> = sqlx::query_scalar("SELECT id FROM users WHERE name = $1")
        .bind(name.as_str())
        .fetch_optional(&mut *conn)
        .await?;
    id.ok_or_else(|| StoreError::UserNotFound {
        name: name.to_string(),
    })
}

fn audit_json(value: &impl serde::Serialize, what: &'static str) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|source| StoreError::Encode { what, source })
}

/// Write the audit row of a change to a user or token (`object`): those belong to no revision.
#[allow(clippy::too_many_arguments)]
async fn audit_account(
    conn: &mut Conn,
    at: DateTime<Utc>,
    actor: &Actor,
    action: &str,
    object: &str,
    object_id: i64,
    before: Option<String>,
    after: Option<String>,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO audit (revision_id, at, actor, action, object, object_id, before, after) \
         VALUES (NULL, $1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(at)
    .bind(actor.as_str())
    .bind(action)
    .bind(object)
    .bind(object_id)
    .bind(before)
    .bind(after)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// For every entry that took effect in `batch` (matched and applied): in how many records, and
/// the newest of their times (as stored). An entry listed twice in one record counts once.
fn entry_hit_counts(
    batch: &[HistoryRecord],
    rows: &[PreparedRecord<'_>],
) -> Vec<(i64, (i64, i64))> {
    let mut hits: std::collections::BTreeMap<i64, (i64, i64)> = Default::default();
    let mut ids = Vec::new();
    for (record, row) in batch.iter().zip(rows) {
        ids.clear();
        ids.extend(record.matched.iter().filter(|m| m.applied).map(|m| m.id));
        ids.sort_unstable();
        ids.dedup();
        for &id in &ids {
            let (count, last) = hits.entry(id).or_insert((0, row.time));
            *count += 1;
            *last = (*last).max(row.time);
        }
    }
    hits.into_iter().collect()
}

/// Sorted ids as runs of consecutive ids, `(first, last)` each.
fn id_runs(sorted: &[i64]) -> Vec<(i64, i64)> {
    let mut runs: Vec<(i64, i64)> = Vec::new();
    for &id in sorted {
        match runs.last_mut() {
            Some((_, last)) if *last + 1 == id => *last = id,
            _ => runs.push((id, id)),
        }
    }
    runs
}

/// Domains sorted, each once.
fn sorted(domains: &[Domain]) -> Vec<Domain> {
    let mut domains = domains.to_vec();
    domains.sort();
    domains.dedup();
    domains
}

fn joined(domains: &[Domain]) -> String {
    domains
        .iter()
        .map(Domain::as_str)
        .collect::<Vec<_>>()
        .join(", ")
}

/// [`StoreError::DomainTaken`] for the first of `domains` that a tenant owns already.
async fn check_domains_free(conn: &mut Conn, domains: &[Domain]) -> Result<(), StoreError> {
    for domain in domains {
        let owner: Option<String> = sqlx::query_scalar(
            "SELECT t.name FROM tenant_domains d JOIN tenants t ON t.id = d.tenant_id \
             WHERE d.domain = $1",
        )
        .bind(domain.as_str())
        .fetch_optional(&mut *conn)
        .await?;
        if let Some(tenant) = owner {
            return Err(StoreError::DomainTaken {
                domain: domain.to_string(),
                tenant,
            });
        }
    }
    Ok(())
}

async fn insert_domains(
    conn: &mut Conn,
    tenant_id: i64,
    domains: &[Domain],
) -> Result<(), StoreError> {
    for domain in domains {
        sqlx::query("INSERT INTO tenant_domains (domain, tenant_id) VALUES ($1, $2)")
            .bind(domain.as_str())
            .bind(tenant_id)
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

/// A tenant's id and the tenant; [`StoreError::TenantNotFound`] if there is none by that name.
async fn tenant_by_name(conn: &mut Conn, name: &TenantName) -> Result<(i64, Tenant), StoreError> {
    let id: Option<i64> = sqlx::query_scalar("SELECT id FROM tenants WHERE name = $1")
        .bind(name.as_str())
        .fetch_optional(&mut *conn)
        .await?;
    let id = id.ok_or_else(|| StoreError::TenantNotFound {
        name: name.to_string(),
    })?;
    let rows: Vec<String> = sqlx::query_scalar(
        "SELECT domain FROM tenant_domains WHERE tenant_id = $1 ORDER BY domain",
    )
    .bind(id)
    .fetch_all(&mut *conn)
    .await?;
    let domains = rows
        .iter()
        .map(|d| domain_of_row(id, d))
        .collect::<Result<Vec<_>, _>>()?;
    Ok((
        id,
        Tenant {
            name: name.clone(),
            domains,
        },
    ))
}

fn domain_of_row(tenant_id: i64, text: &str) -> Result<Domain, StoreError> {
    Domain::parse(text).map_err(|e| StoreError::Corrupt {
        table: "tenant_domains",
        id: tenant_id,
        reason: e.to_string(),
    })
}

/// Every tenant with its domains, by name.
async fn read_tenants(conn: &mut Conn) -> Result<Vec<Tenant>, StoreError> {
    let rows: Vec<(i64, String, Option<String>)> = sqlx::query_as(
        "SELECT t.id, t.name, d.domain FROM tenants t LEFT JOIN tenant_domains d \
         ON d.tenant_id = t.id ORDER BY t.name, d.domain",
    )
    .fetch_all(&mut *conn)
    .await?;
    let mut tenants: Vec<Tenant> = Vec::new();
    let mut last_id = None;
    for (id, name, domain) in rows {
        if last_id != Some(id) {
            last_id = Some(id);
            let name = TenantName::parse(&name).map_err(|e| StoreError::Corrupt {
                table: "tenants",
                id,
                reason: e.to_string(),
            })?;
            tenants.push(Tenant {
                name,
                domains: Vec::new(),
            });
        }
        if let (Some(domain), Some(tenant)) = (domain, tenants.last_mut()) {
            tenant.domains.push(domain_of_row(id, &domain)?);
        }
    }
    Ok(tenants)
}

/// One entry; [`StoreError::NotFound`] if there is none with this id.
async fn read_entry(conn: &mut Conn, id: EntryId) -> Result<Entry, StoreError> {
    let sql = format!(
        "SELECT {ENTRY_COLUMNS} FROM entries e LEFT JOIN tenants t ON t.id = e.tenant_id \
         WHERE e.id = $1"
    );
    let row: Option<EntryRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(id.0)
        .fetch_optional(&mut *conn)
        .await?;
    row.ok_or(StoreError::NotFound { id })?.into_entry()
}

/// The entries selected by `filter`, ordered by id.
async fn read_entries(conn: &mut Conn, filter: &EntryFilter) -> Result<Vec<Entry>, StoreError> {
    let rows = read_entry_rows(conn, filter).await?;
    rows.into_iter().map(EntryRow::into_entry).collect()
}

/// The rows of the entries selected by `filter`, by id, not yet validated.
async fn read_entry_rows(
    conn: &mut Conn,
    filter: &EntryFilter,
) -> Result<Vec<EntryRow>, StoreError> {
    let mut query = QueryBuilder::<Db>::new(format!(
        "SELECT {ENTRY_COLUMNS} FROM entries e LEFT JOIN tenants t ON t.id = e.tenant_id \
         WHERE 1 = 1"
    ));
    if let Some(list) = filter.list {
        query.push(" AND e.list = ").push_bind(list.as_str());
    }
    match &filter.scope {
        None => {}
        Some(Scope::Global) => {
            query.push(" AND e.tenant_id IS NULL");
        }
        Some(scope @ Scope::Tenant(_)) => {
            let id = scope_tenant_id(&mut *conn, scope).await?;
            query.push(" AND e.tenant_id = ").push_bind(id);
        }
    }
    if let Some(kind) = filter.kind {
        query.push(" AND e.kind = ").push_bind(kind.as_str());
    }
    query.push(" ORDER BY e.id");
    Ok(query.build_query_as().fetch_all(&mut *conn).await?)
}

async fn read_revision(conn: &mut Conn) -> Result<i64, StoreError> {
    Ok(
        sqlx::query_scalar("SELECT COALESCE(MAX(id), 0) FROM revisions")
            .fetch_one(&mut *conn)
            .await?,
    )
}

/// `list = … AND COALESCE(tenant_id, 0) = … AND kind IN (…)`: the import's list, scope and
/// family, for `prefix`ed columns.
fn push_family_condition(
    query: &mut QueryBuilder<Db>,
    prefix: &str,
    req: &ImportRequest,
    tenant: Option<i64>,
) {
    query
        .push(format!("{prefix}list = "))
        .push_bind(req.list.as_str());
    query
        .push(format!(" AND COALESCE({prefix}tenant_id, 0) = "))
        .push_bind(tenant.unwrap_or(0));
    query.push(format!(" AND {prefix}kind IN ("));
    let mut separated = query.separated(", ");
    for kind in req.family.kinds() {
        separated.push_bind(kind.as_str());
    }
    query.push(")");
}

/// The tenant id of a scope (`None` for global); [`StoreError::UnknownTenant`] if it does not
/// exist.
async fn scope_tenant_id(conn: &mut Conn, scope: &Scope) -> Result<Option<i64>, StoreError> {
    match scope {
        Scope::Global => Ok(None),
        Scope::Tenant(name) => {
            let id: Option<i64> = sqlx::query_scalar("SELECT id FROM tenants WHERE name = $1")
                .bind(name.as_str())
                .fetch_optional(&mut *conn)
                .await?;
            id.map(Some).ok_or_else(|| StoreError::UnknownTenant {
                name: name.to_string(),
            })
        }
    }
}

async fn new_revision(
    conn: &mut Conn,
    at: DateTime<Utc>,
    actor: &Actor,
    summary: &str,
) -> Result<i64, StoreError> {
    Ok(sqlx::query_scalar(
        "INSERT INTO revisions (created_at, actor, summary) VALUES ($1, $2, $3) RETURNING id",
    )
    .bind(at)
    .bind(actor.as_str())
    .bind(summary)
    .fetch_one(&mut *conn)
    .await?)
}

/// Whether an audit row records an addition (`after`) or a removal (`before`).
#[derive(Clone, Copy)]
enum AuditAction {
    Add,
    Remove,
}

/// `INSERT INTO audit … SELECT … FROM entries e … WHERE ` writing one audit row per selected
/// entry, its JSON built by the database; the caller appends the condition.
fn audit_entries(
    revision: i64,
    at: DateTime<Utc>,
    actor: &Actor,
    action: AuditAction,
) -> QueryBuilder<Db> {
    let (name, column) = match action {
        AuditAction::Add => ("add", "after"),
        AuditAction::Remove => ("remove", "before"),
    };
    let mut query = QueryBuilder::<Db>::new(format!(
        "INSERT INTO audit (revision_id, at, actor, action, object, object_id, {column}) SELECT "
    ));
    query
        .push_bind(revision)
        .push(", ")
        .push_bind(at)
        .push(", ")
        .push_bind(actor.as_str().to_string());
    query.push(format!(
        ", '{name}', 'entry', e.id, {json} \
         FROM entries e LEFT JOIN tenants t ON t.id = e.tenant_id WHERE ",
        json = dialect::ENTRY_JSON_SQL
    ));
    query
}

/// Who changed which tenant in which revision, for its audit row.
/// Finish a change of tenant `id` from `before` to `after`: its revision, its audit row, commit.
async fn commit_tenant_update(
    mut tx: sqlx::Transaction<'static, Db>,
    actor: &Actor,
    id: i64,
    summary: &str,
    before: &Tenant,
    after: Tenant,
) -> Result<Tenant, StoreError> {
    let at = now();
    let revision = new_revision(&mut tx, at, actor, summary).await?;
    TenantChange::new(revision, at, actor, id)
        .audit(&mut tx, "update", Some(before), Some(&after))
        .await?;
    tx.commit().await?;
    Ok(after)
}

struct TenantChange<'a> {
    revision: i64,
    at: DateTime<Utc>,
    actor: &'a Actor,
    tenant_id: i64,
}

impl<'a> TenantChange<'a> {
    fn new(revision: i64, at: DateTime<Utc>, actor: &'a Actor, tenant_id: i64) -> Self {
        TenantChange {
            revision,
            at,
            actor,
            tenant_id,
        }
    }

    /// Write the audit row: `action` (`add`, `update`, `remove`) with the tenant before and
    /// after the change.
    async fn audit(
        &self,
        conn: &mut Conn,
        action: &str,
        before: Option<&Tenant>,
        after: Option<&Tenant>,
    ) -> Result<(), StoreError> {
        let json = |t: Option<&Tenant>| {
            t.map(serde_json::to_string)
                .transpose()
                .map_err(|source| StoreError::Encode {
                    what: "the tenant's audit record",
                    source,
                })
        };
        sqlx::query(
            "INSERT INTO audit (revision_id, at, actor, action, object, object_id, before, after) \
             VALUES ($1, $2, $3, $4, 'tenant', $5, $6, $7)",
        )
        .bind(self.revision)
        .bind(self.at)
        .bind(self.actor.as_str())
        .bind(action)
        .bind(self.tenant_id)
        .bind(json(before)?)
        .bind(json(after)?)
        .execute(&mut *conn)
        .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::id_runs;

    #[test]
    fn ids_become_runs_of_consecutive_ids() {
        assert_eq!(id_runs(&[]), []);
        assert_eq!(id_runs(&[7]), [(7, 7)]);
        assert_eq!(id_runs(&[1, 2, 3, 5, 6, 9]), [(1, 3), (5, 6), (9, 9)]);
    }
}
