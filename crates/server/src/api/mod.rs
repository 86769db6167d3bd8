//! The JSON API, `/api/v1` (DESIGN §5.4), on the HTTP listener: this slice has entries (list,
//! add, show, remove), tenants (list), the email history (search) and evaluation (a dry run
//! of `allowgate check`).
//!
//! - **State**: the API opens its own [`Store`] from the configured URL on first use, like the
//!   history writer; while it cannot, every API request is answered 503 (never a panic).
//! - **Authentication**: every route of [`ROUTES`] takes a [`Caller`], the extractor that
//!   checks `Authorization: Bearer <token>` with [`Store::authenticate_token`]; no token, a bad
//!   one and a revoked one get the same 401.
//! - **Authorization**: every handler asks [`authz`], and nothing else decides.
//! - **Routes**: [`ROUTES`] lists them; the router is built from that list only, and the
//!   tenant-isolation test of `tests/api.rs` walks it.
//! - Changes are audited as `api:<user name>`.

pub mod authz;
pub mod error;

use std::sync::Arc;

use crate::reload::Shared;
use allowgate_store::history::DEFAULT_HISTORY_LIMIT;
use allowgate_store::{EntryFilter, HistoryFilter, Store, StoreError, User, entry_to_json};
use allowgate_types::{
    Actor, CheckSet, Entry, EntryError, EntryId, EntryKind, EntrySpec, List, Scope, TenantName,
    parse_time,
};
use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{Method, StatusCode, header};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::{MethodFilter, MethodRouter, any, on};
use serde::Deserialize;
use tokio::sync::OnceCell;

use crate::evaluate::{EvaluateRequest, InvalidRequest};
use crate::reload::StoreSource;
use authz::Refusal;
pub use error::ApiError;

/// Largest request body, in bytes; 413 beyond.
pub const BODY_LIMIT: usize = 64 * 1024;
/// Largest body of `POST /api/v1/evaluate`, in bytes: a message of up to 10 MiB (the CLI's cap,
/// [`crate::evaluate::MAX_MESSAGE_BYTES`]) as a JSON string, and the other fields; 413 beyond.
pub const EVALUATE_BODY_LIMIT: usize = 12 * 1024 * 1024;
/// Entries listed when `limit` is not given.
pub const DEFAULT_LIMIT: usize = 100;
/// Most entries one list request returns.
pub const MAX_LIMIT: usize = 1000;

/// What an API route does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Endpoint {
    /// `GET /api/v1/entries`
    ListEntries,
    /// `POST /api/v1/entries`
    AddEntry,
    /// `GET /api/v1/entries/{id}`
    ShowEntry,
    /// `DELETE /api/v1/entries/{id}`
    RemoveEntry,
    /// `GET /api/v1/tenants`
    ListTenants,
    /// `GET /api/v1/history`
    History,
    /// `POST /api/v1/evaluate`
    Evaluate,
}

/// One route of the API.
#[derive(Debug, Clone)]
pub struct Route {
    /// The method.
    pub method: Method,
    /// The path, as axum writes it (`{id}` for a parameter).
    pub path: &'static str,
    /// What it does.
    pub endpoint: Endpoint,
}

/// Every route of the API: the router is built from this list and nothing else, and the
/// tenant-isolation test walks it (and fails for a route it has no expectation for).
pub const ROUTES: &[Route] = &[
    Route {
        method: Method::GET,
        path: "/api/v1/entries",
        endpoint: Endpoint::ListEntries,
    },
    Route {
        method: Method::POST,
        path: "/api/v1/entries",
        endpoint: Endpoint::AddEntry,
    },
    Route {
        method: Method::GET,
        path: "/api/v1/entries/{id}",
        endpoint: Endpoint::ShowEntry,
    },
    Route {
        method: Method::DELETE,
        path: "/api/v1/entries/{id}",
        endpoint: Endpoint::RemoveEntry,
    },
    Route {
        method: Method::GET,
        path: "/api/v1/tenants",
        endpoint: Endpoint::ListTenants,
    },
    Route {
        method: Method::GET,
        path: "/api/v1/history",
        endpoint: Endpoint::History,
    },
    Route {
        method: Method::POST,
        path: "/api/v1/evaluate",
        endpoint: Endpoint::Evaluate,
    },
];

/// The API's state: where its store comes from, and the store once open.
#[derive(Debug)]
pub struct ApiState {
    source: StoreSource,
    store: OnceCell<Store>,
    /// The server's state: the snapshot an evaluation runs on is the one this node serves.
    shared: Arc<Shared>,
}

impl ApiState {
    /// A state that opens the store of `source` on first use (and again after a failure), and
    /// evaluates on the snapshot `shared` serves.
    pub fn new(source: StoreSource, shared: Arc<Shared>) -> ApiState {
        ApiState {
            source,
            store: OnceCell::new(),
            shared,
        }
    }

    /// The store, opened now if it was not; 503 if it cannot be.
    async fn store(&self) -> Result<Store, ApiError> {
        self.store
            .get_or_try_init(|| Store::open_with(&self.source.url, &self.source.options))
            .await
            .cloned()
            .map_err(|e| {
                tracing::warn!(error = %e, "api: cannot open the store");
                ApiError::unavailable()
            })
    }

    /// Close the store if it was opened.
    pub async fn close(&self) {
        if let Some(store) = self.store.get() {
            store.clone().close().await;
        }
    }
}

/// An authenticated caller: the user its token acts as, the actor its changes are audited
/// under, and the store.
#[derive(Debug)]
pub struct Caller {
    /// The user.
    pub user: User,
    /// `api:<user name>`.
    pub actor: Actor,
    /// The store.
    pub store: Store,
}

impl FromRequestParts<Arc<ApiState>> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<ApiState>,
    ) -> Result<Caller, ApiError> {
        let token = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                let (scheme, token) = v.trim().split_once(' ')?;
                scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
            })
            .ok_or_else(ApiError::unauthorized)?;
        let store = state.store().await?;
        let user = store.authenticate_token(token).await?;
        let actor = Actor::parse(&format!("api:{}", user.name)).map_err(|e| {
            tracing::error!(error = %e, "api: a user name does not make an actor");
            ApiError::internal()
        })?;
        Ok(Caller { user, actor, store })
    }
}

/// The API's routes, built from [`ROUTES`], with the body cap; any other path under `/api/v1`
/// is a 404 and any other method a 405, both in the error shape.
pub fn router(state: Arc<ApiState>) -> Router {
    let mut router = Router::new();
    for route in ROUTES {
        let Ok(filter) = MethodFilter::try_from(route.method.clone()) else {
            tracing::error!(method = %route.method, path = route.path, "api: a route with a method axum cannot route is left out");
            continue;
        };
        router = router.route(route.path, method_router(filter, route.endpoint));
    }
    router
        .route("/api/v1/{*rest}", any(no_route))
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .with_state(state)
}

fn method_router(filter: MethodFilter, endpoint: Endpoint) -> MethodRouter<Arc<ApiState>> {
    match endpoint {
        Endpoint::ListEntries => on(filter, list_entries),
        Endpoint::AddEntry => on(filter, add_entry),
        Endpoint::ShowEntry => on(filter, show_entry),
        Endpoint::RemoveEntry => on(filter, remove_entry),
        Endpoint::ListTenants => on(filter, list_tenants),
        Endpoint::History => on(filter, history),
        // The one route with a larger body cap (this layer is inside the router's own).
        Endpoint::Evaluate => {
            on(filter, evaluate).layer(DefaultBodyLimit::max(EVALUATE_BODY_LIMIT))
        }
    }
}

async fn no_route() -> ApiError {
    ApiError::not_found("no such API route")
}

/// 405 in the error shape, with `Allow` naming the methods the path takes (from [`ROUTES`]).
async fn method_not_allowed(path: Option<axum::extract::MatchedPath>) -> axum::response::Response {
    let allow: Vec<&str> = path
        .map(|p| {
            ROUTES
                .iter()
                .filter(|r| r.path == p.as_str())
                .map(|r| r.method.as_str())
                .collect()
        })
        .unwrap_or_default();
    let mut response = axum::response::IntoResponse::into_response(ApiError::method_not_allowed());
    if let Ok(value) = axum::http::HeaderValue::from_str(&allow.join(", "))
        && !allow.is_empty()
    {
        response
            .headers_mut()
            .insert(axum::http::header::ALLOW, value);
    }
    response
}

/// The answer for a refusal about a tenant's scope.
fn refuse_scope(refusal: Refusal, scope: &Scope) -> ApiError {
    match (refusal, scope) {
        (Refusal::Hidden, Scope::Tenant(t)) => ApiError::no_tenant(t.as_str()),
        (Refusal::Hidden, Scope::Global) => ApiError::no_tenant("global"),
        (Refusal::Forbidden, _) => forbidden_write(),
    }
}

fn forbidden_write() -> ApiError {
    ApiError::forbidden("your role may read this but not change it")
}

fn entry_json(entry: &Entry) -> Result<serde_json::Value, ApiError> {
    Ok(entry_to_json(entry)?)
}

/// `GET /api/v1/entries?list=&scope=&kind=&q=&limit=&offset=`
async fn list_entries(
    caller: Caller,
    query: Result<Query<Vec<(String, String)>>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let Query(params) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let mut problems = Vec::new();
    let mut filter = EntryFilter::default();
    let mut q: Option<String> = None;
    let mut limit = DEFAULT_LIMIT;
    let mut offset = 0usize;
    let mut seen = Vec::new();
    for (key, value) in &params {
        if seen.contains(&key.as_str()) {
            problems.push(format!("{}: given more than once", shown(key)));
            continue;
        }
        match key.as_str() {
            "list" => match value.parse::<List>() {
                Ok(l) => filter.list = Some(l),
                Err(e) => problems.push(format!("list: {e}")),
            },
            "kind" => match value.parse::<EntryKind>() {
                Ok(k) => filter.kind = Some(k),
                Err(e) => problems.push(format!("kind: {e}")),
            },
            "scope" => match value.parse::<Scope>() {
                Ok(s) => filter.scope = Some(s),
                Err(e) => problems.push(format!("scope: {e}")),
            },
            "q" => {
                if value.chars().count() > 256 {
                    problems.push("q: at most 256 characters".into());
                } else {
                    q = Some(value.to_lowercase());
                }
            }
            "limit" => match value.trim().parse::<usize>() {
                Ok(n) if (1..=MAX_LIMIT).contains(&n) => limit = n,
                _ => problems.push(format!(
                    "limit: `{}` is not a number from 1 to {MAX_LIMIT}",
                    shown(value)
                )),
            },
            "offset" => match value.trim().parse::<usize>() {
                Ok(n) => offset = n,
                Err(_) => problems.push(format!(
                    "offset: `{}` is not a number from 0 up",
                    shown(value)
                )),
            },
            _ => {
                problems.push(format!("{}: unknown parameter", shown(key)));
                continue;
            }
        }
        seen.push(key.as_str());
    }
    if !problems.is_empty() {
        return Err(ApiError::invalid(problems));
    }
    if let Some(scope) = &filter.scope {
        authz::may_read(&caller.user, scope).map_err(|r| refuse_scope(r, scope))?;
    }
    let entries = caller.store.entries(&filter).await?;
    let matching: Vec<&Entry> = entries
        .iter()
        .filter(|e| authz::may_read(&caller.user, &e.entry.scope).is_ok())
        .filter(|e| q.as_deref().is_none_or(|q| matches_text(e, q)))
        .collect();
    let total = matching.len();
    let page = matching
        .into_iter()
        .skip(offset)
        .take(limit)
        .map(entry_json)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Json(serde_json::json!({ "entries": page, "total": total })))
}

/// Whether the value or the comment of `entry` contains `q` (lower case), ignoring case.
fn matches_text(entry: &Entry, q: &str) -> bool {
    entry.entry.value.to_string().to_lowercase().contains(q)
        || entry
            .entry
            .comment
            .as_ref()
            .is_some_and(|c| c.as_str().to_lowercase().contains(q))
}

/// Input text fit for an error message: printable, at most 40 characters.
fn shown(text: &str) -> String {
    allowgate_types::shown(text, 40)
}

/// The body of `POST /api/v1/entries`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AddBody {
    list: Option<String>,
    kind: Option<String>,
    value: Option<String>,
    scope: Option<String>,
    checks: Option<Checks>,
    comment: Option<String>,
    #[serde(default)]
    require_auth: bool,
    #[serde(default)]
    internal: bool,
    starts_at: Option<String>,
    expires_at: Option<String>,
    #[serde(default)]
    enabled: Option<bool>,
    #[serde(default)]
    force: bool,
}

/// Checks as the CLI's JSON writes them (an array of ids) or as `--bypass` takes them.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Checks {
    List(Vec<String>),
    Text(String),
}

/// The body of a request as JSON: 413 beyond [`BODY_LIMIT`], 400 when it is not JSON, 422 when
/// a field has the wrong type or is unknown.
fn json_body<T: serde::de::DeserializeOwned>(
    body: Result<Bytes, BytesRejection>,
) -> Result<T, ApiError> {
    json_body_up_to(body, BODY_LIMIT)
}

/// [`json_body`] for a route whose cap is `limit`.
fn json_body_up_to<T: serde::de::DeserializeOwned>(
    body: Result<Bytes, BytesRejection>,
    limit: usize,
) -> Result<T, ApiError> {
    let bytes = body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::too_large(limit)
        } else {
            ApiError::bad_request("the request body cannot be read")
        }
    })?;
    serde_json::from_slice(&bytes).map_err(|e| {
        let problem = allowgate_types::shown(&e.to_string(), 200);
        match e.classify() {
            serde_json::error::Category::Data => ApiError::invalid(vec![problem]),
            _ => ApiError::bad_request(format!("the body is not JSON: {problem}")),
        }
    })
}

/// `POST /api/v1/entries`: validated exactly as `allowgate entry add` ([`EntrySpec::validate`]).
async fn add_entry(
    caller: Caller,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    // A viewer learns nothing from a write, not even whether its body is valid.
    authz::may_write_at_all(&caller.user).map_err(|_| forbidden_write())?;
    let body: AddBody = json_body(body)?;
    let mut problems = Vec::new();
    let list = body.list.as_ref().and_then(|t| {
        t.parse::<List>()
            .map_err(|e| problems.push(format!("list: {e}")))
            .ok()
    });
    let kind = body.kind.as_ref().and_then(|t| {
        t.parse::<EntryKind>()
            .map_err(|e| problems.push(format!("kind: {e}")))
            .ok()
    });
    let scope = match &body.scope {
        None => Some(authz::default_write_scope(&caller.user)),
        Some(t) => t
            .parse::<Scope>()
            .map_err(|e| problems.push(format!("scope: {e}")))
            .ok(),
    };
    let checks = match &body.checks {
        None => None,
        Some(c) => {
            let text = match c {
                Checks::List(ids) => ids.join(","),
                Checks::Text(t) => t.clone(),
            };
            text.parse::<CheckSet>()
                .map_err(|e| problems.push(format!("checks: {e}")))
                .ok()
        }
    };
    let mut time = |name: &str, text: &Option<String>| {
        text.as_deref().and_then(|t| {
            parse_time(t)
                .map_err(|e| problems.push(format!("{name}: {e}")))
                .ok()
        })
    };
    let starts_at = time("starts_at", &body.starts_at);
    let expires_at = time("expires_at", &body.expires_at);
    let spec = EntrySpec {
        list,
        scope: scope.clone().unwrap_or_default(),
        kind,
        value: body.value.clone().unwrap_or_default(),
        checks,
        comment: body.comment.clone(),
        require_auth: body.require_auth,
        internal: body.internal,
        starts_at,
        expires_at,
        disabled: body.enabled == Some(false),
        force: body.force,
    };
    let validated = spec.validate();
    if let Err(errors) = &validated {
        for e in errors {
            // A field already reported as unreadable is not reported again as missing.
            let again = match e {
                EntryError::MissingList => body.list.is_some(),
                EntryError::MissingKind => body.kind.is_some(),
                EntryError::MissingChecks => body.checks.is_some(),
                _ => false,
            };
            if !again {
                problems.push(e.to_string());
            }
        }
    }
    if body.value.is_none() {
        problems.push("value: required".into());
    }
    // Whether the caller may write there is decided before the input is judged, so that a
    // tenant-admin learns nothing about another tenant from a write into it.
    if let Some(scope) = &scope {
        authz::may_write(&caller.user, scope).map_err(|r| refuse_scope(r, scope))?;
    }
    if !problems.is_empty() {
        return Err(ApiError::invalid(problems));
    }
    let Ok((new, warnings)) = validated else {
        return Err(ApiError::internal());
    };
    let entry = caller.store.add_entry(&new, &caller.actor).await?;
    let mut json = entry_json(&entry)?;
    if let Some(map) = json.as_object_mut() {
        map.insert(
            "warnings".into(),
            warnings
                .iter()
                .map(|w| serde_json::Value::from(w.to_string()))
                .collect(),
        );
    }
    let location = format!("/api/v1/entries/{}", entry.id.0);
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        Json(json),
    )
        .into_response())
}

/// An entry id from a path: digits (`12`), else 404 as for an entry that does not exist.
fn entry_id(text: &str) -> Result<EntryId, ApiError> {
    text.parse::<i64>()
        .ok()
        .filter(|n| *n > 0)
        .map(EntryId)
        .ok_or_else(|| ApiError::no_entry(&shown(text)))
}

/// The entry `id` if `caller` may read it; 404 as for a missing one otherwise.
async fn readable_entry(caller: &Caller, id: &str) -> Result<Entry, ApiError> {
    let id = entry_id(id)?;
    let entry = caller.store.entry(id).await?;
    authz::may_read(&caller.user, &entry.entry.scope)
        .map_err(|_| ApiError::no_entry(&id.0.to_string()))?;
    Ok(entry)
}

/// `GET /api/v1/entries/{id}`
async fn show_entry(
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let entry = readable_entry(&caller, &id).await?;
    Ok(Json(entry_json(&entry)?))
}

/// `DELETE /api/v1/entries/{id}`: 200 with the entry as it was.
async fn remove_entry(
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    authz::may_write_at_all(&caller.user).map_err(|_| forbidden_write())?;
    let entry = readable_entry(&caller, &id).await?;
    authz::may_write(&caller.user, &entry.entry.scope).map_err(|r| match r {
        Refusal::Forbidden => forbidden_write(),
        Refusal::Hidden => ApiError::no_entry(&entry.id.0.to_string()),
    })?;
    let removed = caller.store.remove_entry(entry.id, &caller.actor).await?;
    Ok(Json(entry_json(&removed)?))
}

/// `GET /api/v1/tenants`: every tenant for an admin (and a viewer of all); one's own otherwise.
async fn list_tenants(caller: Caller) -> Result<Json<serde_json::Value>, ApiError> {
    let tenants: Vec<serde_json::Value> = caller
        .store
        .tenants()
        .await?
        .into_iter()
        .filter(|t| authz::may_see_tenant(&caller.user, &t.name))
        .map(|t| serde_json::json!({ "name": t.name, "domains": t.domains }))
        .collect();
    Ok(Json(serde_json::json!({ "tenants": tenants })))
}

/// `GET /api/v1/history?sender=&ip=&status=&tenant=&since=&limit=`: as `allowgate history
/// --json` (`{"records":[…]}`, newest first), filtered as the store filters for the CLI. A user
/// confined to a tenant sees only that tenant's records: its tenant filter is forced to its own,
/// and naming another tenant is answered as a tenant that does not exist.
async fn history(
    caller: Caller,
    query: Result<Query<Vec<(String, String)>>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let Query(params) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let mut problems = Vec::new();
    let mut filter = HistoryFilter::default();
    let mut tenant: Option<TenantName> = None;
    let mut seen = Vec::new();
    for (key, value) in &params {
        if seen.contains(&key.as_str()) {
            problems.push(format!("{}: given more than once", shown(key)));
            continue;
        }
        match key.as_str() {
            "sender" => filter.sender = Some(value.clone()),
            "ip" => filter.ip = Some(value.clone()),
            "status" => filter.status = Some(value.clone()),
            "tenant" => match TenantName::parse(value.trim()) {
                Ok(t) => tenant = Some(t),
                Err(e) => problems.push(format!("tenant: {e}")),
            },
            "since" => match parse_time(value) {
                Ok(t) => filter.since = Some(t),
                Err(e) => problems.push(format!("since: {e}")),
            },
            "limit" => match value.trim().parse::<u32>() {
                Ok(n) => filter.limit = n,
                Err(_) => problems.push(format!(
                    "limit: `{}` is not a number (1 to {}; default {DEFAULT_HISTORY_LIMIT})",
                    shown(value),
                    allowgate_store::history::MAX_HISTORY_LIMIT
                )),
            },
            _ => {
                problems.push(format!("{}: unknown parameter", shown(key)));
                continue;
            }
        }
        seen.push(key.as_str());
    }
    if !problems.is_empty() {
        return Err(ApiError::invalid(problems));
    }
    let named = tenant.as_ref().map(|t| t.as_str().to_string());
    let tenant = authz::history_tenant(&caller.user, tenant)
        .map_err(|_| ApiError::no_tenant(named.as_deref().unwrap_or_default()))?;
    filter.tenant = tenant.map(|t| t.as_str().to_string());
    let records = caller.store.history(&filter).await.map_err(|e| match e {
        // The filter's fields are the query's parameters.
        StoreError::InvalidHistoryFilter { field, reason } => {
            ApiError::invalid(vec![format!("{field}: {reason}")])
        }
        other => other.into(),
    })?;
    let records: Vec<_> = records
        .into_iter()
        .filter(|r| authz::may_see_record(&caller.user, r.tenant.as_deref()))
        .collect();
    Ok(Json(serde_json::json!({ "records": records })))
}

/// The 422 for an invalid evaluation request: every field, as `field: reason`.
fn invalid_request(e: InvalidRequest) -> ApiError {
    ApiError::invalid(
        e.0.into_iter()
            .map(|f| format!("{}: {}", f.field, f.reason))
            .collect(),
    )
}

/// `POST /api/v1/evaluate`: a dry run of `allowgate check` — the same request
/// ([`EvaluateRequest`], validated and evaluated by [`crate::evaluate`]) against the policy
/// compiled fresh from the store as `check` compiles it, answering the verdict `check --json`
/// prints. Nothing is written: no history record, no audit row. A user confined to a tenant
/// evaluates only mail whose every recipient is at a domain of its own tenant.
async fn evaluate(
    State(state): State<Arc<ApiState>>,
    caller: Caller,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<allowgate_core::Verdict>, ApiError> {
    let request: EvaluateRequest = json_body_up_to(body, EVALUATE_BODY_LIMIT)?;
    // Validated (and its message parsed) once; the context serves the tenant check and the
    // verdict.
    let (ctx, results) = request
        .context(chrono::Utc::now())
        .map_err(invalid_request)?;
    // The snapshot this node serves: the answer is what its policy server and milter decide
    // now (with the server's policy settings), at the cost of a lookup — no compile, so a
    // caller cannot make the server rebuild its policy. A change is in it within the reload
    // interval (250 ms by default).
    let snapshot = state.shared.snapshot.load_full();
    for (i, rcpt) in ctx.recipients.iter().enumerate() {
        let tenant = snapshot.tenant_of(rcpt.domain());
        authz::may_evaluate_for(&caller.user, tenant).map_err(|_| {
            ApiError::not_found(format!(
                "rcpt[{i}]: no tenant of yours has the domain `{}`",
                shown(rcpt.domain().as_str())
            ))
        })?;
    }
    let found = allowgate_core::exemptions(&snapshot, &ctx);
    Ok(Json(allowgate_core::decide(&found, &results).verdict()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_has_a_method_axum_routes_and_is_listed_once() {
        for (i, route) in ROUTES.iter().enumerate() {
            assert!(
                MethodFilter::try_from(route.method.clone()).is_ok(),
                "{route:?}"
            );
            assert!(route.path.starts_with("/api/v1/"), "{route:?}");
            assert!(
                !ROUTES[..i]
                    .iter()
                    .any(|r| r.method == route.method && r.path == route.path),
                "{route:?} twice"
            );
        }
    }
}
