//! The JSON API (`/api/v1`, DESIGN §5.4) of `allowgate_server::serve`, spoken to over real
//! HTTP/1.1 on loopback with a real SQLite file: every endpoint's success and error answers,
//! and a tenant-isolation matrix walked from `api::ROUTES` (every route × every kind of caller
//! × every scope), which fails for a route it has no expectation for.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::time::Duration;

use allowgate_server::api::ROUTES;
use allowgate_server::config::Config;
use allowgate_server::serve::{self, Running};
use allowgate_store::{EntryFilter, HistoryFilter, HistoryRecord, Role, Store, UserName};
use allowgate_types::{Actor, Domain, Entry, EntryKind, EntrySpec, List, TenantName};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A response: status, lower-cased headers, body (JSON, or `Value::Null` when empty or not
/// JSON).
#[derive(Debug)]
struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: Value,
    text: String,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// One HTTP/1.1 request on its own connection (`Connection: close`), raw bytes in and out.
async fn call(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&[u8]>,
) -> Reply {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let mut request = format!("{method} {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n");
    if let Some(t) = token {
        request.push_str(&format!("Authorization: Bearer {t}\r\n"));
    }
    if let Some(b) = body {
        request.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            b.len()
        ));
    }
    request.push_str("\r\n");
    let mut bytes = request.into_bytes();
    bytes.extend_from_slice(body.unwrap_or_default());
    // A refused large body may not be read: a reset after the answer is not an error here.
    let _ = stream.write_all(&bytes).await;
    let mut raw = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buf))
            .await
            .expect("no answer within 10 s")
        {
            Ok(0) | Err(_) => break,
            Ok(n) => raw.extend_from_slice(&buf[..n]),
        }
    }
    parse_reply(&raw)
}

fn parse_reply(raw: &[u8]) -> Reply {
    let text = String::from_utf8_lossy(raw).into_owned();
    let (head, rest) = text
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no complete answer: {text:?}"));
    let mut lines = head.split("\r\n");
    let status: u16 = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let chunked = headers
        .iter()
        .any(|(n, v)| n == "transfer-encoding" && v.contains("chunked"));
    let body_text = if chunked {
        let mut out = String::new();
        let mut rest = rest;
        loop {
            let (size, after) = rest.split_once("\r\n").unwrap();
            let size = usize::from_str_radix(size.trim(), 16).unwrap();
            if size == 0 {
                break;
            }
            out.push_str(&after[..size]);
            rest = &after[size + 2..];
        }
        out
    } else {
        rest.to_string()
    };
    Reply {
        status,
        headers,
        body: serde_json::from_str(&body_text).unwrap_or(Value::Null),
        text: body_text,
    }
}

/// Who calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Who {
    Admin,
    /// tenant-admin of alpha
    AdminA,
    /// tenant-admin of bravo
    AdminB,
    /// viewer of alpha
    ViewerA,
    NoToken,
    BadToken,
}

const EVERYONE: [Who; 6] = [
    Who::Admin,
    Who::AdminA,
    Who::AdminB,
    Who::ViewerA,
    Who::NoToken,
    Who::BadToken,
];

/// What a request names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    /// No scope (a list of everything visible, a write to the default scope).
    Unnamed,
    Global,
    /// tenant alpha
    A,
    /// tenant bravo
    B,
    /// A tenant (or an entry) that does not exist.
    Nowhere,
}

const EVERY_TARGET: [Target; 5] = [
    Target::Unnamed,
    Target::Global,
    Target::A,
    Target::B,
    Target::Nowhere,
];

struct Env {
    _dir: tempfile::TempDir,
    url: String,
    store: Store,
    admin: String,
    admin_a: String,
    admin_b: String,
    viewer_a: String,
    viewer_all: String,
    revoked: String,
}

fn tenant(name: &str) -> TenantName {
    TenantName::parse(name).unwrap()
}

async fn env() -> Env {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("allowgate.db").display());
    let store = Store::open(&url).await.unwrap();
    let root = Actor::parse("cli:root").unwrap();
    for (t, d) in [("alpha", "alpha.test"), ("bravo", "bravo.test")] {
        store
            .add_tenant(&tenant(t), &[Domain::parse(d).unwrap()], &root)
            .await
            .unwrap();
    }
    let token = async |name: &str, role: Role, t: Option<&str>| {
        let user = UserName::parse(name).unwrap();
        store
            .add_user(&user, role, t.map(tenant).as_ref(), &root)
            .await
            .unwrap();
        let (_, token) = store.add_token(&user, None, &root).await.unwrap();
        token.as_str().to_string()
    };
    let admin = token("admin", Role::Admin, None).await;
    let admin_a = token("alpha-admin", Role::TenantAdmin, Some("alpha")).await;
    let admin_b = token("bravo-admin", Role::TenantAdmin, Some("bravo")).await;
    let viewer_a = token("alpha-viewer", Role::Viewer, Some("alpha")).await;
    let viewer_all = token("viewer", Role::Viewer, None).await;
    let user = UserName::parse("gone").unwrap();
    store
        .add_user(&user, Role::Admin, None, &root)
        .await
        .unwrap();
    let (info, revoked) = store.add_token(&user, None, &root).await.unwrap();
    store.revoke_token(info.id, &root).await.unwrap();
    Env {
        _dir: dir,
        url,
        store,
        admin,
        admin_a,
        admin_b,
        viewer_a,
        viewer_all,
        revoked: revoked.as_str().to_string(),
    }
}

impl Env {
    fn token(&self, who: Who) -> Option<&str> {
        match who {
            Who::Admin => Some(&self.admin),
            Who::AdminA => Some(&self.admin_a),
            Who::AdminB => Some(&self.admin_b),
            Who::ViewerA => Some(&self.viewer_a),
            Who::NoToken => None,
            // Well-formed, but no such token.
            Who::BadToken => Some("ag_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"),
        }
    }

    async fn start(&self) -> Running {
        let mut config = Config::default();
        config.store.url = self.url.clone();
        config.listen.policy = "127.0.0.1:0".parse().unwrap();
        config.listen.milter = "127.0.0.1:0".parse().unwrap();
        config.listen.http = "127.0.0.1:0".parse().unwrap();
        serve::start(&config).await.unwrap()
    }

    /// Add an entry directly to the store.
    async fn add(&self, scope: &str, value: &str) -> Entry {
        let spec = EntrySpec {
            list: Some(List::Block),
            kind: Some(EntryKind::Ip),
            scope: scope.parse().unwrap(),
            value: value.into(),
            ..Default::default()
        };
        let (entry, _) = spec.validate().unwrap();
        self.store
            .add_entry(&entry, &Actor::parse("cli:root").unwrap())
            .await
            .unwrap()
    }

    /// Everything an API request could change: the entries, the revision, the audit and the
    /// history.
    async fn state(&self) -> (Vec<Entry>, i64, usize, usize) {
        let all = HistoryFilter {
            limit: 10_000,
            ..Default::default()
        };
        (
            self.store.entries(&EntryFilter::default()).await.unwrap(),
            self.store.revision().await.unwrap(),
            self.store.audit(10_000).await.unwrap().len(),
            self.store.history(&all).await.unwrap().len(),
        )
    }

    /// Record one decision for `tenant` (`None`: no tenant, or several) directly in the store.
    async fn record(&self, tenant: Option<&str>, sender: &str, ip: &str, status: &str, time: &str) {
        let record = HistoryRecord {
            time: time.parse().unwrap(),
            node: "gw1".into(),
            queue_id: None,
            tenant: tenant.map(Into::into),
            client_ip: ip.into(),
            sender: Some(sender.into()),
            sender_source: Some("MAIL FROM".into()),
            recipients: vec![format!("bob@{}.test", tenant.unwrap_or("other"))],
            status: status.into(),
            action: "accept".into(),
            stage: "message".into(),
            bypassed: vec![],
            matched: vec![],
            checks: Default::default(),
            reason: "Pass".into(),
            revision: 1,
        };
        self.store.record_history(&[record]).await.unwrap();
    }
}

fn scope_name(target: Target) -> Option<&'static str> {
    match target {
        Target::Unnamed => None,
        Target::Global => Some("global"),
        Target::A => Some("alpha"),
        Target::B => Some("bravo"),
        Target::Nowhere => Some("nowhere"),
    }
}

/// Whether `who` may read entries of `target` (DESIGN §5.4).
fn reads(who: Who, target: Target) -> bool {
    match (who, target) {
        (_, Target::Nowhere) => false,
        (Who::Admin, _) | (_, Target::Unnamed | Target::Global) => true,
        (Who::AdminA | Who::ViewerA, Target::A) | (Who::AdminB, Target::B) => true,
        _ => false,
    }
}

/// The status a write by `who` into `target` gets (201 or 200 when it succeeds).
fn write_status(who: Who, target: Target, success: u16) -> u16 {
    match (who, target) {
        (Who::ViewerA, _) => 403,
        (_, Target::Nowhere) => 404,
        (Who::Admin, _) => success,
        (_, Target::Global) => 403,
        (Who::AdminA, Target::A | Target::Unnamed) | (Who::AdminB, Target::B | Target::Unnamed) => {
            success
        }
        _ => 404,
    }
}

/// The status `who` gets for `method path` naming `target`; `None` when the route names no
/// such thing. Panics for a route without an expectation: a route added to `ROUTES` must be
/// added here.
fn expected(method: &str, path: &str, who: Who, target: Target) -> Option<u16> {
    let applies = match (method, path) {
        ("GET", "/api/v1/entries") | ("POST", "/api/v1/entries") => true,
        ("GET", "/api/v1/entries/{id}") | ("DELETE", "/api/v1/entries/{id}") => {
            target != Target::Unnamed
        }
        ("GET", "/api/v1/tenants") => target == Target::Unnamed,
        // `global` is no tenant: nothing to name.
        ("GET", "/api/v1/history") | ("POST", "/api/v1/evaluate") => target != Target::Global,
        _ => panic!("no expectation for route {method} {path}: add it to `expected`"),
    };
    if !applies {
        return None;
    }
    if matches!(who, Who::NoToken | Who::BadToken) {
        return Some(401);
    }
    Some(match (method, path) {
        ("GET", "/api/v1/entries") | ("GET", "/api/v1/entries/{id}") => {
            if reads(who, target) {
                200
            } else {
                404
            }
        }
        ("POST", "/api/v1/entries") => write_status(who, target, 201),
        ("DELETE", "/api/v1/entries/{id}") => {
            if who == Who::ViewerA {
                403
            } else if !reads(who, target) {
                404
            } else {
                write_status(who, target, 200)
            }
        }
        ("GET", "/api/v1/tenants") => 200,
        // History: the admin and a viewer of all filter by any tenant (one that does not
        // exist has no records); a confined user sees its own tenant, another is missing.
        // Evaluation: recipients of its own tenant only (none: the global entries only).
        ("GET", "/api/v1/history") | ("POST", "/api/v1/evaluate") => match (who, target) {
            (Who::Admin, _)
            | (_, Target::Unnamed)
            | (Who::AdminA | Who::ViewerA, Target::A)
            | (Who::AdminB, Target::B) => 200,
            _ => 404,
        },
        _ => unreachable!(),
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenant_isolation_matrix_over_every_route() {
    let env = env().await;
    let running = env.start().await;
    let addr = running.http_addr();
    // One entry per scope for the reads.
    let global = env.add("global", "192.0.2.1").await;
    let alpha = env.add("alpha", "192.0.2.2").await;
    let bravo = env.add("bravo", "192.0.2.3").await;
    // One history record per tenant, and one of none.
    for t in [Some("alpha"), Some("bravo"), None] {
        env.record(
            t,
            "a@x.example",
            "192.0.2.2",
            "pass",
            "2026-11-30T08:00:00Z",
        )
        .await;
    }
    let fixed = |target: Target| match target {
        Target::Global => global.id.0,
        Target::A => alpha.id.0,
        Target::B => bravo.id.0,
        _ => 999_999,
    };
    let mut serial = 0u32;
    let mut checked = 0;
    for route in ROUTES {
        let method = route.method.as_str();
        for who in EVERYONE {
            for target in EVERY_TARGET {
                let Some(want) = expected(method, route.path, who, target) else {
                    continue;
                };
                serial += 1;
                // A fresh entry to remove, so that a removal leaves the fixed ones alone.
                let mut fresh = None;
                let id = if route.path.contains("{id}") && method == "DELETE" {
                    match scope_name(target) {
                        Some(s) if target != Target::Nowhere => {
                            let e = env.add(s, &format!("203.0.113.{serial}")).await;
                            fresh = Some(e.id);
                            e.id.0
                        }
                        _ => fixed(target),
                    }
                } else {
                    fixed(target)
                };
                let mut path = route.path.replace("{id}", &id.to_string());
                let mut body = None;
                match (method, scope_name(target)) {
                    ("GET", Some(s)) if route.path == "/api/v1/history" => {
                        path.push_str(&format!("?tenant={s}"));
                    }
                    ("POST", name) if route.path == "/api/v1/evaluate" => {
                        let rcpt: Vec<String> =
                            name.map(|t| format!("bob@{t}.test")).into_iter().collect();
                        // The client IP every fixed entry's neighbourhood matches.
                        body = Some(json!({"ip": "192.0.2.2", "rcpt": rcpt}).to_string());
                    }
                    ("GET", Some(s)) if !route.path.contains("{id}") => {
                        path.push_str(&format!("?scope={s}"));
                    }
                    ("POST", scope) => {
                        let mut b = json!({
                            "list": "block", "kind": "ip",
                            "value": format!("198.51.100.{}", serial % 250),
                        });
                        if let Some(s) = scope {
                            b["scope"] = s.into();
                        }
                        body = Some(b.to_string());
                    }
                    _ => {}
                }
                let before = env.state().await;
                let reply = call(
                    addr,
                    method,
                    &path,
                    env.token(who),
                    body.as_deref().map(str::as_bytes),
                )
                .await;
                assert_eq!(
                    reply.status, want,
                    "{method} {path} as {who:?} naming {target:?}: {}",
                    reply.text
                );
                checked += 1;
                if reply.status >= 300 {
                    // Refused: the error shape, and nothing changed.
                    let error = &reply.body["error"];
                    assert!(error["code"].is_string(), "{}", reply.text);
                    assert!(error["message"].is_string(), "{}", reply.text);
                    assert!(error["details"].is_array(), "{}", reply.text);
                    assert_eq!(env.state().await, before, "{method} {path} as {who:?}");
                } else {
                    check_visible(&reply.body, who);
                    if route.path == "/api/v1/evaluate" {
                        assert_eq!(env.state().await, before, "a dry run writes nothing");
                    }
                }
                // Put things back: what a POST added, what a DELETE did not remove.
                if method == "POST" && reply.status == 201 {
                    let scope = reply.body["scope"].as_str().unwrap();
                    let want_scope = match (who, target) {
                        (Who::AdminA, Target::Unnamed) => "alpha",
                        (Who::AdminB, Target::Unnamed) => "bravo",
                        (_, Target::Unnamed) => "global",
                        (_, t) => scope_name(t).unwrap(),
                    };
                    assert_eq!(scope, want_scope, "{who:?} {target:?}");
                    let id = allowgate_types::EntryId(reply.body["id"].as_i64().unwrap());
                    env.store
                        .remove_entry(id, &Actor::parse("cli:root").unwrap())
                        .await
                        .unwrap();
                }
                if let Some(id) = fresh
                    && reply.status != 200
                {
                    env.store
                        .remove_entry(id, &Actor::parse("cli:root").unwrap())
                        .await
                        .unwrap();
                }
            }
        }
    }
    // Every route was asked by every caller.
    assert!(checked >= ROUTES.len() * EVERYONE.len(), "{checked}");
    running.shutdown().await;
}

/// Everything a successful answer shows is the caller's to see.
fn check_visible(body: &Value, who: Who) {
    let scopes: Vec<&str> = if let Some(entries) = body["entries"].as_array() {
        entries.iter().filter_map(|e| e["scope"].as_str()).collect()
    } else if let Some(tenants) = body["tenants"].as_array() {
        tenants.iter().filter_map(|t| t["name"].as_str()).collect()
    } else if let Some(records) = body["records"].as_array() {
        // A record of no tenant (or of several) is shown to unconfined callers only.
        for r in records {
            if r["tenant"].is_null() {
                assert_eq!(who, Who::Admin, "{who:?} was shown a record of no tenant");
            }
        }
        records
            .iter()
            .filter_map(|r| r["tenant"].as_str())
            .collect()
    } else if let Some(matched) = body["matched"].as_array() {
        matched.iter().filter_map(|m| m["scope"].as_str()).collect()
    } else {
        body["scope"].as_str().into_iter().collect()
    };
    for s in scopes {
        let target = match s {
            "global" => Target::Global,
            "alpha" => Target::A,
            "bravo" => Target::B,
            _ => Target::Nowhere,
        };
        assert!(reads(who, target), "{who:?} was shown {s}: {body}");
    }
}

fn post(value: &str, extra: Value) -> String {
    let mut b = json!({"list": "block", "kind": "ip", "value": value});
    if let Value::Object(m) = extra {
        for (k, v) in m {
            b[k] = v;
        }
    }
    b.to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entries_endpoints_answer_and_refuse_as_documented() {
    let env = env().await;
    let running = env.start().await;
    let addr = running.http_addr();
    let admin = Some(env.admin.as_str());

    // Add: 201, the entry as the CLI's JSON has it, its warnings, where it is.
    let body = json!({
        "list": "allow", "kind": "ip", "value": "192.0.2.77/24", "checks": ["spf", "dkim"],
        "comment": "partner relays", "expires_at": "2099-01-01",
    })
    .to_string();
    let r = call(
        addr,
        "POST",
        "/api/v1/entries",
        admin,
        Some(body.as_bytes()),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let id = r.body["id"].as_i64().unwrap();
    assert_eq!(
        r.header("location"),
        Some(format!("/api/v1/entries/{id}").as_str())
    );
    assert_eq!(r.body["value"], "192.0.2.0/24");
    assert_eq!(r.body["scope"], "global");
    assert_eq!(r.body["checks"], json!(["spf", "dkim"]));
    assert_eq!(r.body["created_by"], "api:admin");
    assert_eq!(
        r.body["warnings"].as_array().unwrap().len(),
        1,
        "{}",
        r.text
    );
    let stored = env.store.entry(allowgate_types::EntryId(id)).await.unwrap();
    let mut as_cli = allowgate_store::entry_to_json(&stored).unwrap();
    as_cli["warnings"] = r.body["warnings"].clone();
    assert_eq!(r.body, as_cli);
    // Audited with the API user as actor.
    let audit = env.store.audit(1).await.unwrap();
    assert_eq!(audit[0].actor, "api:admin");
    assert_eq!(audit[0].object_id, Some(id));

    // A tenant-admin's write without a scope goes to its tenant.
    let r = call(
        addr,
        "POST",
        "/api/v1/entries",
        Some(&env.admin_a),
        Some(post("198.51.100.9", json!({"comment": "Alpha office"})).as_bytes()),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.body["scope"], "alpha");
    assert_eq!(r.body["created_by"], "api:alpha-admin");
    env.add("bravo", "198.51.100.10").await;

    // List: filters, q, limit and offset, total.
    let list = |q: &'static str, token: &'static str| {
        let token = match token {
            "admin" => env.admin.clone(),
            "a" => env.admin_a.clone(),
            _ => env.viewer_all.clone(),
        };
        async move {
            call(
                addr,
                "GET",
                &format!("/api/v1/entries{q}"),
                Some(&token),
                None,
            )
            .await
        }
    };
    let r = list("", "admin").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["total"], 3);
    let r = list("", "a").await;
    assert_eq!(r.body["total"], 2, "global and alpha: {}", r.text);
    let r = list("", "viewer").await;
    assert_eq!(r.body["total"], 3, "a viewer without tenant sees all");
    let r = list("?list=allow", "admin").await;
    assert_eq!(r.body["total"], 1);
    let r = list("?scope=bravo&kind=ip", "admin").await;
    assert_eq!(r.body["entries"][0]["value"], "198.51.100.10");
    let r = list("?q=ALPHA", "admin").await;
    assert_eq!(r.body["total"], 1, "q matches comments, ignoring case");
    let r = list("?q=192.0.2", "admin").await;
    assert_eq!(r.body["total"], 1, "q matches values");
    let r = list("?limit=1&offset=1", "admin").await;
    assert_eq!(r.body["total"], 3);
    assert_eq!(r.body["entries"].as_array().unwrap().len(), 1);
    assert_eq!(r.body["entries"][0]["value"], "198.51.100.9");
    // Bad parameters: 422, every problem listed.
    let r = list(
        "?list=maybe&kind=shoe&limit=5000&offset=-1&colour=red&scope=Not%20A%20Name",
        "admin",
    )
    .await;
    assert_eq!(r.status, 422, "{}", r.text);
    assert_eq!(r.body["error"]["code"], "invalid_input");
    assert_eq!(
        r.body["error"]["details"].as_array().unwrap().len(),
        6,
        "{}",
        r.text
    );

    // Show.
    let r = call(addr, "GET", &format!("/api/v1/entries/{id}"), admin, None).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body, allowgate_store::entry_to_json(&stored).unwrap());
    for missing in ["999999", "0", "abc", "-1"] {
        let r = call(
            addr,
            "GET",
            &format!("/api/v1/entries/{missing}"),
            admin,
            None,
        )
        .await;
        assert_eq!(r.status, 404, "{missing}: {}", r.text);
    }

    // Refusals change nothing.
    let before = env.state().await;
    let refusals: Vec<(Option<&str>, Vec<u8>, u16, &str)> = vec![
        // Every problem of an invalid entry, at once.
        (
            admin,
            json!({"list": "allow", "kind": "ip", "value": "not-an-ip", "scope": "global",
                   "starts_at": "soon", "checks": ["nonsense"]})
            .to_string()
            .into_bytes(),
            422,
            "invalid_input",
        ),
        (admin, b"{\"list\": ".to_vec(), 400, "bad_request"),
        (admin, b"{\"list\": 5}".to_vec(), 422, "invalid_input"),
        (
            admin,
            post("192.0.2.9", json!({"colour": "red"})).into_bytes(),
            422,
            "invalid_input",
        ),
        // The same entry again: a conflict.
        (
            admin,
            json!({"list": "allow", "kind": "ip", "value": "192.0.2.0/24", "checks": "spf"})
                .to_string()
                .into_bytes(),
            409,
            "conflict",
        ),
        // Over the body cap.
        (
            admin,
            post(&"x".repeat(70 * 1024), json!({})).into_bytes(),
            413,
            "too_large",
        ),
        (
            admin,
            post("192.0.2.9", json!({"scope": "nowhere"})).into_bytes(),
            404,
            "not_found",
        ),
        (
            Some(&env.viewer_all),
            post("192.0.2.9", json!({})).into_bytes(),
            403,
            "forbidden",
        ),
    ];
    for (token, body, status, code) in refusals {
        let r = call(addr, "POST", "/api/v1/entries", token, Some(&body)).await;
        assert_eq!(r.status, status, "{}", r.text);
        assert_eq!(r.body["error"]["code"], code, "{}", r.text);
        assert_eq!(env.state().await, before);
    }
    let r = call(
        addr,
        "POST",
        "/api/v1/entries",
        admin,
        Some(
            json!({"list": "allow", "kind": "ip", "value": "not-an-ip", "starts_at": "soon",
                   "checks": ["nonsense"]})
            .to_string()
            .as_bytes(),
        ),
    )
    .await;
    assert_eq!(
        r.body["error"]["details"].as_array().unwrap().len(),
        3,
        "{}",
        r.text
    );

    // Remove: 200 with the entry as it was; then it is gone.
    let r = call(
        addr,
        "DELETE",
        &format!("/api/v1/entries/{id}"),
        admin,
        None,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body, allowgate_store::entry_to_json(&stored).unwrap());
    assert_eq!(env.store.audit(1).await.unwrap()[0].actor, "api:admin");
    let r = call(
        addr,
        "DELETE",
        &format!("/api/v1/entries/{id}"),
        admin,
        None,
    )
    .await;
    assert_eq!(r.status, 404);
    let r = call(addr, "GET", &format!("/api/v1/entries/{id}"), admin, None).await;
    assert_eq!(r.status, 404);

    // Tenants: all for an admin and a viewer of all; one's own otherwise.
    let names = async |token: &str| {
        let r = call(addr, "GET", "/api/v1/tenants", Some(token), None).await;
        assert_eq!(r.status, 200);
        r.body["tenants"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["name"].as_str().unwrap().to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(names(&env.admin).await, ["alpha", "bravo"]);
    assert_eq!(names(&env.viewer_all).await, ["alpha", "bravo"]);
    assert_eq!(names(&env.admin_b).await, ["bravo"]);
    assert_eq!(names(&env.viewer_a).await, ["alpha"]);
    let r = call(addr, "GET", "/api/v1/tenants", admin, None).await;
    assert_eq!(r.body["tenants"][0]["domains"], json!(["alpha.test"]));
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_tenant_is_answered_exactly_as_a_missing_one() {
    let env = env().await;
    let running = env.start().await;
    let addr = running.http_addr();
    let bravo = env.add("bravo", "192.0.2.3").await;
    let a = Some(env.admin_a.as_str());
    // Same-length names, so that the answers can be compared byte for byte.
    let pairs = [
        (
            "GET",
            "/api/v1/entries?scope=bravo".to_string(),
            "/api/v1/entries?scope=zulux".to_string(),
            None,
        ),
        (
            "POST",
            "/api/v1/entries".into(),
            "/api/v1/entries".into(),
            Some("scope"),
        ),
        (
            "GET",
            format!("/api/v1/entries/{}", bravo.id.0),
            "/api/v1/entries/999999".into(),
            None,
        ),
        (
            "DELETE",
            format!("/api/v1/entries/{}", bravo.id.0),
            "/api/v1/entries/999999".into(),
            None,
        ),
    ];
    for (method, other, missing, body) in pairs {
        let body_for = |t: &str| body.map(|_| post("192.0.2.50", json!({"scope": t})));
        let x = call(
            addr,
            method,
            &other,
            a,
            body_for("bravo").as_deref().map(str::as_bytes),
        )
        .await;
        let y = call(
            addr,
            method,
            &missing,
            a,
            body_for("zulux").as_deref().map(str::as_bytes),
        )
        .await;
        assert_eq!(x.status, 404, "{method} {other}: {}", x.text);
        assert_eq!(y.status, 404, "{method} {missing}: {}", y.text);
        let normalise = |t: &str| {
            t.replace("bravo", "NAME")
                .replace("zulux", "NAME")
                .replace(&bravo.id.0.to_string(), "ID")
                .replace("999999", "ID")
        };
        assert_eq!(normalise(&x.text), normalise(&y.text), "{method}");
    }
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_bad_and_revoked_tokens_get_the_same_401_and_health_needs_none() {
    let env = env().await;
    let running = env.start().await;
    let addr = running.http_addr();
    let mut answers = Vec::new();
    for token in [
        None,
        Some(""),
        Some("not-a-token"),
        Some("ag_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"),
        Some(env.revoked.as_str()),
    ] {
        let r = call(addr, "GET", "/api/v1/entries", token, None).await;
        assert_eq!(r.status, 401, "{token:?}: {}", r.text);
        assert_eq!(r.header("www-authenticate"), Some("Bearer"));
        answers.push(r.text);
    }
    answers.dedup();
    assert_eq!(answers.len(), 1, "{answers:?}");
    let r: Value = serde_json::from_str(&answers[0]).unwrap();
    assert_eq!(r["error"]["code"], "unauthorized");
    // Other paths and methods: the error shape too.
    let r = call(addr, "GET", "/api/v1/nothing/here", Some(&env.admin), None).await;
    assert_eq!(r.status, 404, "{}", r.text);
    assert_eq!(r.body["error"]["code"], "not_found");
    let r = call(
        addr,
        "PUT",
        "/api/v1/entries",
        Some(&env.admin),
        Some(b"{}"),
    )
    .await;
    assert_eq!(r.status, 405, "{}", r.text);
    assert_eq!(r.body["error"]["code"], "method_not_allowed");
    assert_eq!(r.header("allow"), Some("GET, POST"), "{:?}", r.headers);
    // Health and metrics stay open.
    assert_eq!(call(addr, "GET", "/healthz", None, None).await.status, 200);
    let m = call(addr, "GET", "/metrics", None, None).await;
    assert_eq!(m.status, 200);
    assert!(m.header("content-type").unwrap().starts_with("text/plain"));
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_store_the_api_answers_503_and_health_stays_up() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::default();
    config.store.url = format!(
        "sqlite://{}",
        dir.path().join("missing-folder/allowgate.db").display()
    );
    config.listen.policy = "127.0.0.1:0".parse().unwrap();
    config.listen.milter = "127.0.0.1:0".parse().unwrap();
    config.listen.http = "127.0.0.1:0".parse().unwrap();
    let running = serve::start(&config).await.unwrap();
    let addr = running.http_addr();
    let r = call(
        addr,
        "GET",
        "/api/v1/entries",
        Some("ag_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"),
        None,
    )
    .await;
    assert_eq!(r.status, 503, "{}", r.text);
    assert_eq!(r.body["error"]["code"], "unavailable");
    assert_eq!(r.body["error"]["message"], "internal error");
    assert!(!r.text.contains("missing-folder"), "{}", r.text);
    assert_eq!(call(addr, "GET", "/healthz", None, None).await.status, 200);
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_answers_as_the_cli_and_confines_tenants() {
    let env = env().await;
    let running = env.start().await;
    let addr = running.http_addr();
    env.record(
        Some("alpha"),
        "a@partner.example",
        "192.0.2.7",
        "pass",
        "2026-11-01T08:00:00Z",
    )
    .await;
    env.record(
        Some("bravo"),
        "b@other.example",
        "198.51.100.1",
        "blocked",
        "2026-11-02T08:00:00Z",
    )
    .await;
    env.record(
        None,
        "c@partner.example",
        "192.0.2.8",
        "pass",
        "2026-11-03T08:00:00Z",
    )
    .await;
    let get = async |q: &str, token: Option<&str>| {
        call(addr, "GET", &format!("/api/v1/history{q}"), token, None).await
    };
    let count = |r: &Reply| r.body["records"].as_array().map(Vec::len);
    // As `history --json`: the store's records, newest first.
    let r = get("", Some(&env.admin)).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let records = env.store.history(&HistoryFilter::default()).await.unwrap();
    assert_eq!(r.body, json!({ "records": records }));
    assert_eq!(count(&r), Some(3));
    assert_eq!(count(&get("", Some(&env.viewer_all)).await), Some(3));
    // Filters.
    for (q, n) in [
        ("?sender=a@partner.example", 1),
        ("?sender=partner.example", 2),
        ("?ip=192.0.2.0/24", 2),
        ("?status=blocked", 1),
        ("?tenant=bravo", 1),
        ("?tenant=nowhere", 0),
        ("?since=2026-11-02", 2),
        ("?since=2026-11-02T12:00:00%2B00:00", 1),
        ("?limit=1", 1),
    ] {
        let r = get(q, Some(&env.admin)).await;
        assert_eq!((r.status, count(&r)), (200, Some(n)), "{q}: {}", r.text);
    }
    // Confined: its own tenant only, never the record of no tenant.
    for token in [&env.admin_a, &env.viewer_a] {
        for q in ["", "?tenant=alpha", "?sender=partner.example"] {
            let r = get(q, Some(token)).await;
            assert_eq!(r.status, 200, "{}", r.text);
            assert_eq!(count(&r), Some(1), "{q}: {}", r.text);
            assert_eq!(r.body["records"][0]["tenant"], "alpha");
        }
    }
    // Another tenant: exactly as one that does not exist.
    let x = get("?tenant=bravo", Some(&env.admin_a)).await;
    let y = get("?tenant=zulux", Some(&env.admin_a)).await;
    assert_eq!((x.status, y.status), (404, 404), "{}", x.text);
    assert_eq!(x.text.replace("bravo", "N"), y.text.replace("zulux", "N"));
    // Bad filters: 422, the field named.
    for (q, field) in [
        ("?ip=nonsense", "ip:"),
        ("?sender=not%20a%20sender", "sender:"),
        ("?status=happy", "status:"),
        ("?tenant=Not%20A%20Name", "tenant:"),
        ("?since=yesterday", "since:"),
        ("?limit=0", "limit:"),
        ("?limit=lots", "limit:"),
        ("?colour=red", "colour:"),
        ("?ip=192.0.2.1&ip=192.0.2.2", "ip:"),
    ] {
        let r = get(q, Some(&env.admin)).await;
        assert_eq!(r.status, 422, "{q}: {}", r.text);
        assert_eq!(r.body["error"]["code"], "invalid_input");
        let details = r.body["error"]["details"].as_array().unwrap();
        assert!(
            details
                .iter()
                .any(|d| d.as_str().unwrap().starts_with(field)),
            "{q}: {}",
            r.text
        );
    }
    // Several problems at once: each one.
    let r = get("?since=soon&limit=x&colour=red", Some(&env.admin)).await;
    assert_eq!(
        r.body["error"]["details"].as_array().unwrap().len(),
        3,
        "{}",
        r.text
    );
    // No token.
    let r = get("", None).await;
    assert_eq!(r.status, 401);
    assert_eq!(r.body["error"]["code"], "unauthorized");
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn evaluate_answers_as_check_and_writes_nothing() {
    let env = env().await;
    let alpha = env.add("alpha", "192.0.2.2").await;
    env.add("bravo", "192.0.2.3").await;
    let running = env.start().await;
    let addr = running.http_addr();
    let post = async |body: &[u8], token: Option<&str>| {
        call(addr, "POST", "/api/v1/evaluate", token, Some(body)).await
    };
    let before = env.state().await;

    // The verdict `check --json` prints: the same request, evaluated against the policy
    // loaded from the store as `check` loads it.
    let body = json!({
        "ip": "192.0.2.2", "helo": "mx.partner.example", "host": "mx.partner.example",
        "mail_from": "alice@partner.example", "rcpt": ["bob@alpha.test"],
        "message": "From: alice@partner.example\r\nSubject: hi\r\n\r\nhello\r\n",
        "at": "2026-06-01T00:00:00Z",
    });
    let r = post(body.to_string().as_bytes(), Some(&env.admin)).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let request: allowgate_server::evaluate::EvaluateRequest =
        serde_json::from_value(body.clone()).unwrap();
    let loaded =
        allowgate_server::policy::load(&env.store, &Default::default(), &Default::default())
            .await
            .unwrap();
    let verdict = request
        .evaluate(&loaded.snapshot, chrono::Utc::now())
        .unwrap();
    assert_eq!(r.body, serde_json::to_value(&verdict).unwrap());
    assert_eq!(r.body["blocked_by"], json!([alpha.id.0]), "{}", r.text);
    // A viewer may evaluate for its tenant; a tenant-admin too.
    for token in [&env.viewer_a, &env.admin_a] {
        let r = post(body.to_string().as_bytes(), Some(token)).await;
        assert_eq!(r.status, 200, "{}", r.text);
    }

    // Confined: every recipient must be at a domain of its own tenant; another tenant's
    // domain and a domain of none are answered alike.
    let with_rcpt = |rcpt: Value| json!({"ip": "192.0.2.2", "rcpt": rcpt}).to_string();
    let x = post(
        with_rcpt(json!(["bob@bravo.test"])).as_bytes(),
        Some(&env.admin_a),
    )
    .await;
    let y = post(
        with_rcpt(json!(["bob@zulux.test"])).as_bytes(),
        Some(&env.admin_a),
    )
    .await;
    assert_eq!((x.status, y.status), (404, 404), "{}", x.text);
    assert_eq!(x.body["error"]["code"], "not_found");
    assert_eq!(x.text.replace("bravo", "N"), y.text.replace("zulux", "N"));
    let r = post(
        with_rcpt(json!(["bob@alpha.test", "carol@bravo.test"])).as_bytes(),
        Some(&env.viewer_a),
    )
    .await;
    assert_eq!(r.status, 404, "{}", r.text);
    // An admin evaluates for anyone.
    let r = post(
        with_rcpt(json!(["bob@bravo.test"])).as_bytes(),
        Some(&env.admin),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);

    // Invalid: 422, every field named (as `check` reports them).
    let r = post(
        json!({"ip": "192.0.2.300", "mail_from": "nobody", "rcpt": ["ok@alpha.test", "broken"]})
            .to_string()
            .as_bytes(),
        Some(&env.admin),
    )
    .await;
    assert_eq!(r.status, 422, "{}", r.text);
    let details: Vec<&str> = r.body["error"]["details"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d.as_str().unwrap())
        .collect();
    assert_eq!(details.len(), 3, "{}", r.text);
    assert!(details[0].starts_with("ip: "), "{details:?}");
    assert!(details[1].starts_with("mail_from: "), "{details:?}");
    assert!(details[2].starts_with("rcpt[1]: "), "{details:?}");
    for bad in [
        &b"{}"[..],
        b"{\"ip\": \"192.0.2.1\", \"colour\": 1}",
        b"{\"ip\": 5}",
    ] {
        let r = post(bad, Some(&env.admin)).await;
        assert_eq!(r.status, 422, "{}", r.text);
    }
    let r = post(b"{\"ip\": ", Some(&env.admin)).await;
    assert_eq!(r.status, 400, "{}", r.text);
    // A message over the CLI's 10 MiB in a body under the route's 12 MiB: 422 on `message`.
    let big = json!({"ip": "192.0.2.1", "message": "x".repeat(10 * 1024 * 1024 + 1)});
    let r = post(big.to_string().as_bytes(), Some(&env.admin)).await;
    assert_eq!(r.status, 422, "{}", r.text);
    assert!(
        r.body["error"]["details"][0]
            .as_str()
            .unwrap()
            .starts_with("message: "),
        "{}",
        r.text
    );
    // A body over 12 MiB: 413.
    let huge = json!({"ip": "192.0.2.1", "message": "x".repeat(12 * 1024 * 1024)});
    let r = post(huge.to_string().as_bytes(), Some(&env.admin)).await;
    assert_eq!(r.status, 413, "{}", r.text);
    assert_eq!(r.body["error"]["code"], "too_large");
    // Other routes keep the 64 KiB cap (tested with entries above); no token: 401.
    let r = post(with_rcpt(json!([])).as_bytes(), None).await;
    assert_eq!(r.status, 401);

    // Nothing was written: no entry, revision, audit row or history record.
    assert_eq!(env.state().await, before);
    running.shutdown().await;
}
