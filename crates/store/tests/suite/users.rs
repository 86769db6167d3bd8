//! Users and API tokens: added, listed, authenticated, revoked; refusals that change nothing;
//! secrets never stored or audited in clear.

use std::time::{Duration, Instant};

use allowgate_store::users::{MAX_ACTIVE_TOKENS, MAX_USERS, PASSWORD_LENGTH, TOKEN_LENGTH};
use allowgate_store::{
    AuditRecord, AuthError, DenyReason, ErrorKind, Role, Store, StoreError, TokenLabel, User,
    UserName,
};
use sha2::Digest;

use super::*;

pub fn user(name: &str) -> UserName {
    UserName::parse(name).unwrap()
}

fn label(text: &str) -> TokenLabel {
    TokenLabel::parse(text).unwrap()
}

/// The reason of a refusal; panics on success or a store failure.
fn denied<T: std::fmt::Debug>(result: Result<T, AuthError>) -> DenyReason {
    match result {
        Err(AuthError::Denied(reason)) => reason,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

/// A store with tenant `acme` (and `beta`), and nothing else.
async fn with_tenants(db: &TestDb) -> Store {
    let store = open(db).await;
    for (name, d) in [("acme", "acme.example"), ("beta", "beta.example")] {
        store
            .add_tenant(&tenant(name), &[domain(d)], &actor("setup"))
            .await
            .unwrap();
    }
    store
}

/// The audit rows about `object` (`user` or `token`), oldest first.
async fn audit_of(store: &Store, object: &str) -> Vec<AuditRecord> {
    let mut rows: Vec<AuditRecord> = store
        .audit(1000)
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.object == object)
        .collect();
    rows.reverse();
    rows
}

pub async fn users_are_added_listed_and_their_passwords_verified<B: Backend>(b: &B) {
    let db = b.fresh();
    let store = with_tenants(&db).await;
    let revision = store.revision().await.unwrap();
    let root = actor("cli:root");

    let (alice, alice_pw) = store
        .add_user(&user(" Alice "), Role::Admin, None, &root)
        .await
        .unwrap();
    assert_eq!(alice.name.as_str(), "alice");
    assert_eq!((alice.role, alice.tenant.as_ref()), (Role::Admin, None));
    assert!(alice.must_change_password && !alice.disabled);
    assert_eq!(alice.locked_until, None);
    assert_eq!(alice.created_by, "cli:root");
    let pw = alice_pw.as_str();
    assert_eq!(pw.len(), PASSWORD_LENGTH);
    assert!(pw.bytes().all(|c| c.is_ascii_alphanumeric()), "{pw}");
    assert!(!format!("{alice_pw:?}{alice:?}").contains(pw));

    let (bob, bob_pw) = store
        .add_user(
            &user("bob"),
            Role::TenantAdmin,
            Some(&tenant("acme")),
            &root,
        )
        .await
        .unwrap();
    assert_eq!(bob.tenant, Some(tenant("acme")));
    assert_ne!(bob_pw.as_str(), pw, "every password is new");
    let (carol, _) = store
        .add_user(&user("carol@acme.example"), Role::Viewer, None, &actor("x"))
        .await
        .unwrap();
    let (dave, _) = store
        .add_user(&user("dave"), Role::Viewer, Some(&tenant("beta")), &root)
        .await
        .unwrap();
    assert_eq!(
        store.list_users().await.unwrap(),
        vec![alice.clone(), bob.clone(), carol.clone(), dave.clone()],
        "by name, exactly as added"
    );

    // Passwords: the name as typed (normalised), the password exactly.
    assert_eq!(store.verify_password("alice", pw).await.unwrap(), alice);
    assert_eq!(store.verify_password(" ALICE", pw).await.unwrap(), alice);
    assert_eq!(
        store.verify_password("bob", bob_pw.as_str()).await.unwrap(),
        bob
    );
    let wrong = [
        ("alice", bob_pw.as_str(), DenyReason::WrongPassword),
        ("alice", &pw.to_lowercase(), DenyReason::WrongPassword),
        ("alice", &pw[1..], DenyReason::WrongPassword),
        ("alice", &format!("{pw} "), DenyReason::WrongPassword),
        ("alice", "", DenyReason::WrongPassword),
        ("alice", &"x".repeat(100_000), DenyReason::WrongPassword),
        ("bob", pw, DenyReason::WrongPassword),
        ("mallory", pw, DenyReason::UnknownUser),
        ("not a name!", pw, DenyReason::UnknownUser),
        ("", pw, DenyReason::UnknownUser),
    ];
    for (name, password, reason) in wrong {
        let result = store.verify_password(name, password).await;
        // One message for every refusal: a client cannot tell who exists.
        assert_eq!(
            result.as_ref().map_err(ToString::to_string).unwrap_err(),
            "invalid credentials"
        );
        assert_eq!(denied(result), reason, "{name}");
    }

    // No revision (the policy did not change); one audit row per user, with its actor.
    assert_eq!(store.revision().await.unwrap(), revision);
    let audit = audit_of(&store, "user").await;
    assert_eq!(audit.len(), 4);
    for (row, u) in audit.iter().zip([&alice, &bob, &carol, &dave]) {
        assert_eq!(
            (row.action.as_str(), row.object_id, row.revision),
            ("add", Some(u.id.0), None)
        );
        assert_eq!(row.actor, u.created_by);
        assert!(row.before.is_none());
        let after = row.after.as_ref().unwrap();
        assert_eq!(after, &serde_json::to_value(u).unwrap());
        assert_eq!(after["name"], u.name.as_str());
        assert_eq!(after["role"], u.role.as_str());
        let text = after.to_string();
        assert!(after.get("password").is_none() && after.get("password_hash").is_none());
        assert!(
            !text.contains("hash") && !text.contains("$argon2"),
            "{text}"
        );
    }
    assert_eq!(audit[1].after.as_ref().unwrap()["tenant"], "acme");
    assert_eq!(audit[1].after.as_ref().unwrap()["role"], "tenant-admin");
    assert_eq!(
        audit[0].after.as_ref().unwrap()["tenant"],
        serde_json::Value::Null
    );
    store.close().await;
}

pub async fn bad_user_and_token_requests_are_refused_and_change_nothing<B: Backend>(b: &B) {
    let db = b.fresh();
    let store = with_tenants(&db).await;
    let root = actor("root");
    let (_, pw) = store
        .add_user(&user("alice"), Role::Admin, None, &root)
        .await
        .unwrap();
    let (info, token) = store.add_token(&user("alice"), None, &root).await.unwrap();
    store.revoke_token(info.id, &root).await.unwrap();
    let (_, live) = store.add_token(&user("alice"), None, &root).await.unwrap();
    store.close().await;
    let before = b.state(&db).await;

    let store = open(&db).await;
    let acme = tenant("acme");
    let nobody = tenant("nobody");
    let refused: Vec<(&str, Result<_, StoreError>, ErrorKind)> = vec![
        (
            "admin with a tenant",
            store
                .add_user(&user("x"), Role::Admin, Some(&acme), &root)
                .await,
            ErrorKind::InvalidInput,
        ),
        (
            "tenant-admin without a tenant",
            store
                .add_user(&user("x"), Role::TenantAdmin, None, &root)
                .await,
            ErrorKind::InvalidInput,
        ),
        (
            "tenant-admin of an unknown tenant",
            store
                .add_user(&user("x"), Role::TenantAdmin, Some(&nobody), &root)
                .await,
            ErrorKind::InvalidInput,
        ),
        (
            "viewer of an unknown tenant",
            store
                .add_user(&user("x"), Role::Viewer, Some(&nobody), &root)
                .await,
            ErrorKind::InvalidInput,
        ),
        (
            "duplicate",
            store
                .add_user(&user("alice"), Role::Viewer, None, &root)
                .await,
            ErrorKind::Conflict,
        ),
        (
            "duplicate in another spelling",
            store
                .add_user(&user("ALICE"), Role::Admin, None, &root)
                .await,
            ErrorKind::Conflict,
        ),
    ];
    let messages: Vec<String> = refused
        .into_iter()
        .map(|(what, result, kind)| {
            let err = result.map(drop).unwrap_err();
            assert_eq!(err.kind(), kind, "{what}: {err:?}");
            err.to_string()
        })
        .collect();
    assert!(
        messages[0].contains("admin") && messages[0].contains("cannot have a tenant"),
        "{}",
        messages[0]
    );
    assert!(messages[1].contains("needs a tenant"), "{}", messages[1]);
    assert!(
        messages[2].contains("unknown tenant `nobody`"),
        "{}",
        messages[2]
    );
    assert_eq!(messages[4], "user `alice` already exists");
    assert_eq!(messages[5], "user `alice` already exists");

    let err = store
        .add_token(&user("bob"), None, &root)
        .await
        .unwrap_err();
    assert!(matches!(&err, StoreError::UserNotFound { name } if name == "bob"));
    assert_eq!(err.kind(), ErrorKind::NotFound);
    let err = store.list_tokens(Some(&user("bob"))).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
    let err = store
        .revoke_token(allowgate_store::TokenId(99), &root)
        .await
        .unwrap_err();
    assert_eq!(
        (err.kind(), err.to_string()),
        (ErrorKind::NotFound, "no token 99".into())
    );
    let err = store.revoke_token(info.id, &root).await.unwrap_err();
    assert!(matches!(err, StoreError::TokenAlreadyRevoked { id, .. } if id == info.id));
    assert_eq!(err.kind(), ErrorKind::Conflict);
    assert!(err.to_string().contains("revoked already"), "{err}");
    for (name, reason) in [
        ("", "it is empty"),
        ("bob smith", "letters a-z"),
        ("-rf", "start with a letter or digit"),
        (&"a".repeat(65), "longer than 64"),
    ] {
        let err = UserName::parse(name).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput);
        assert!(err.to_string().contains(reason), "{name}: {err}");
    }

    // Refused authentications write nothing either; a good one within the minute neither.
    assert_eq!(
        denied(store.verify_password("alice", "wrong").await),
        DenyReason::WrongPassword
    );
    assert_eq!(
        denied(store.authenticate_token(token.as_str()).await),
        DenyReason::RevokedToken
    );
    store.verify_password("alice", pw.as_str()).await.unwrap();
    store.close().await;
    assert!(
        b.state(&db).await == before,
        "a refused call changed the database"
    );

    // (The live token's first use is written once.)
    let store = open(&db).await;
    store.authenticate_token(live.as_str()).await.unwrap();
    store.close().await;
    assert!(b.state(&db).await != before);
}

pub async fn passwords_and_tokens_are_never_stored_in_clear<B: Backend>(b: &B) {
    let db = b.fresh();
    let store = with_tenants(&db).await;
    let root = actor("root");
    let (bob, pw) = store
        .add_user(
            &user("bob"),
            Role::TenantAdmin,
            Some(&tenant("acme")),
            &root,
        )
        .await
        .unwrap();
    let (info, token) = store
        .add_token(&user("bob"), Some(&label("deploy bot")), &root)
        .await
        .unwrap();
    store.authenticate_token(token.as_str()).await.unwrap();
    store.revoke_token(info.id, &root).await.unwrap();
    let audit: String = store
        .audit(100)
        .await
        .unwrap()
        .iter()
        .map(|r| serde_json::to_string(r).unwrap())
        .collect();
    store.close().await;

    let (hash, stored_token_hash) = raw_secrets(&db, bob.id.0, info.id.0).await;
    // A PHC string of Argon2id: $argon2id$v=19$m=…,t=…,p=…$salt$hash.
    let fields: Vec<&str> = hash.split('$').collect();
    assert_eq!(fields.len(), 6, "{hash}");
    assert_eq!((fields[1], fields[2]), ("argon2id", "v=19"), "{hash}");
    assert!(fields[3].starts_with("m=19456,t=2,p=1"), "{hash}");
    assert!(fields[4].len() >= 22 && fields[5].len() >= 43, "{hash}");
    assert!(
        argon2::password_hash::phc::PasswordHash::new(&hash).is_ok(),
        "{hash}"
    );
    assert!(!hash.contains(pw.as_str()));
    // The token's SHA-256, nothing else.
    let sha: [u8; 32] = sha2::Sha256::digest(token.as_str().as_bytes()).into();
    assert_eq!(stored_token_hash, sha);

    // Neither secret anywhere in the file (closed: no -wal left, checked by `state`), nor the
    // token without its prefix, nor in the audit log; the hashes are not audited either.
    let bytes = b.state(&db).await;
    let token_body = &token.as_str()[3..];
    for secret in [pw.as_str(), token.as_str(), token_body] {
        assert!(
            !contains(&bytes, secret.as_bytes()),
            "a secret is in the database file"
        );
        assert!(!audit.contains(secret), "a secret is in the audit log");
    }
    assert!(
        contains(&bytes, hash.as_bytes()),
        "the test reads the right file"
    );
    assert!(!audit.contains(&hash) && !audit.contains("$argon2"));
    assert!(!audit.contains("token_hash") && !audit.contains("password_hash"));
    let hex: String = sha.iter().map(|b| format!("{b:02x}")).collect();
    assert!(!audit.contains(&hex));
    assert!(audit.contains("deploy bot"), "the label is audited");
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// The stored password hash of user `user_id` and the stored hash of token `token_id`, read
/// past the store.
async fn raw_secrets(db: &TestDb, user_id: i64, token_id: i64) -> (String, [u8; 32]) {
    use sqlx::Connection;
    let mut conn = sqlx::SqliteConnection::connect(&db.url).await.unwrap();
    let hash: String = sqlx::query_scalar("SELECT password_hash FROM users WHERE id = $1")
        .bind(user_id)
        .fetch_one(&mut conn)
        .await
        .unwrap();
    let token: Vec<u8> = sqlx::query_scalar("SELECT token_hash FROM api_tokens WHERE id = $1")
        .bind(token_id)
        .fetch_one(&mut conn)
        .await
        .unwrap();
    conn.close().await.unwrap();
    (hash, token.try_into().unwrap())
}

pub async fn tokens_authenticate_until_revoked<B: Backend>(b: &B) {
    let db = b.fresh();
    let store = with_tenants(&db).await;
    let revision = store.revision().await.unwrap();
    let root = actor("cli:root");
    let (bob, bob_pw) = store
        .add_user(
            &user("bob"),
            Role::TenantAdmin,
            Some(&tenant("acme")),
            &root,
        )
        .await
        .unwrap();
    let (carol, _) = store
        .add_user(&user("carol"), Role::Viewer, None, &root)
        .await
        .unwrap();

    let started = chrono::Utc::now();
    let (deploy, deploy_token) = store
        .add_token(&user("bob"), Some(&label(" deploy ")), &actor("cli:ops"))
        .await
        .unwrap();
    assert_eq!(deploy.user, bob.name);
    assert_eq!(
        deploy.label.as_ref().map(TokenLabel::as_str),
        Some("deploy")
    );
    assert_eq!(deploy.created_by, "cli:ops");
    assert_eq!((deploy.last_used_at, deploy.revoked_at), (None, None));
    let text = deploy_token.as_str();
    assert_eq!(text.len(), TOKEN_LENGTH);
    assert!(text.starts_with("ag_"));
    assert!(
        text[3..]
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
    );
    assert!(!format!("{deploy_token:?}{deploy:?}").contains(&text[3..]));
    let (backup, backup_token) = store.add_token(&user("bob"), None, &root).await.unwrap();
    let (viewer, viewer_token) = store.add_token(&user("carol"), None, &root).await.unwrap();
    assert_eq!(
        store.list_tokens(None).await.unwrap(),
        vec![deploy.clone(), backup.clone(), viewer.clone()]
    );

    // A token is its user.
    assert_eq!(store.authenticate_token(text).await.unwrap(), bob);
    assert_eq!(
        store
            .authenticate_token(viewer_token.as_str())
            .await
            .unwrap(),
        carol
    );
    // Its first use is recorded; another within the minute writes nothing new.
    let used = store.list_tokens(Some(&user("bob"))).await.unwrap()[0].last_used_at;
    let used = used.expect("the first use is recorded");
    assert!(started <= used && used <= chrono::Utc::now());
    store.authenticate_token(text).await.unwrap();
    let again = store.list_tokens(Some(&user("bob"))).await.unwrap();
    assert_eq!(again[0].last_used_at, Some(used));
    assert_eq!(again[1].last_used_at, None, "only the token used");
    // A use after more than a minute is recorded again.
    store.close().await;
    b.execute_raw(
        &db,
        "UPDATE api_tokens SET last_used_at = '2020-01-01T00:00:00+00:00' WHERE id = $1",
        deploy.id.0,
    )
    .await;
    let store = open(&db).await;
    store.authenticate_token(text).await.unwrap();
    let later = store.list_tokens(Some(&user("bob"))).await.unwrap()[0].last_used_at;
    assert!(later.unwrap() >= used, "{later:?}");

    // Junk and near misses are refused.
    let mut near = text.to_string();
    let last = if near.ends_with('A') { "B" } else { "A" };
    near.replace_range(TOKEN_LENGTH - 1.., last);
    for (junk, reason) in [
        ("", DenyReason::MalformedToken),
        ("ag_", DenyReason::MalformedToken),
        (&text[..TOKEN_LENGTH - 1], DenyReason::MalformedToken),
        (&format!("Bearer {text}"), DenyReason::MalformedToken),
        (&text.to_uppercase(), DenyReason::MalformedToken),
        (near.as_str(), DenyReason::UnknownToken),
    ] {
        let result = store.authenticate_token(junk).await;
        assert_eq!(
            result.as_ref().map_err(ToString::to_string).unwrap_err(),
            "invalid credentials"
        );
        assert_eq!(denied(result), reason, "{junk:?}");
    }

    // Revoked: refused, and the other tokens still work.
    let revoked = store
        .revoke_token(deploy.id, &actor("cli:sec"))
        .await
        .unwrap();
    let at = revoked.revoked_at.expect("revoked");
    assert_eq!(revoked, deploy_with(&store, deploy.id).await);
    assert_eq!(
        denied(store.authenticate_token(text).await),
        DenyReason::RevokedToken
    );
    assert_eq!(
        store
            .authenticate_token(backup_token.as_str())
            .await
            .unwrap(),
        bob
    );
    let err = store.revoke_token(deploy.id, &root).await.unwrap_err();
    assert!(matches!(err, StoreError::TokenAlreadyRevoked { at: a, .. } if a == at));

    // Audited with their actors, without the tokens; no revision.
    assert_eq!(store.revision().await.unwrap(), revision);
    let audit = audit_of(&store, "token").await;
    let actions: Vec<(&str, Option<i64>, &str)> = audit
        .iter()
        .map(|r| (r.action.as_str(), r.object_id, r.actor.as_str()))
        .collect();
    assert_eq!(
        actions,
        [
            ("add", Some(deploy.id.0), "cli:ops"),
            ("add", Some(backup.id.0), "cli:root"),
            ("add", Some(viewer.id.0), "cli:root"),
            ("revoke", Some(deploy.id.0), "cli:sec"),
        ]
    );
    let added = audit[0].after.as_ref().unwrap();
    assert_eq!(
        (&added["user"], &added["label"]),
        (&"bob".into(), &"deploy".into())
    );
    let revoke = &audit[3];
    assert_eq!(revoke.revision, None);
    assert_eq!(
        revoke.before.as_ref().unwrap()["revoked_at"],
        serde_json::Value::Null
    );
    assert_eq!(
        revoke.after.as_ref().unwrap(),
        &serde_json::to_value(&revoked).unwrap()
    );

    // A disabled user's tokens and password are refused; a locked user's password too.
    store.close().await;
    b.execute_raw(
        &db,
        "UPDATE users SET disabled = TRUE WHERE id = $1",
        bob.id.0,
    )
    .await;
    b.execute_raw(
        &db,
        "UPDATE users SET locked_until = '2999-01-01T00:00:00+00:00' WHERE id = $1",
        carol.id.0,
    )
    .await;
    let store = open(&db).await;
    assert_eq!(
        denied(store.authenticate_token(backup_token.as_str()).await),
        DenyReason::Disabled
    );
    assert_eq!(
        denied(store.verify_password("bob", bob_pw.as_str()).await),
        DenyReason::Disabled
    );
    let users: Vec<User> = store.list_users().await.unwrap();
    assert!(users[0].disabled);
    assert!(users[1].locked_until.is_some());
    // Locking out is about passwords: a locked user's tokens still work.
    assert_eq!(
        store
            .authenticate_token(viewer_token.as_str())
            .await
            .unwrap()
            .name,
        carol.name
    );
    store.close().await;
}

async fn deploy_with(store: &Store, id: allowgate_store::TokenId) -> allowgate_store::TokenInfo {
    store
        .list_tokens(None)
        .await
        .unwrap()
        .into_iter()
        .find(|t| t.id == id)
        .unwrap()
}

pub async fn a_locked_users_password_is_refused<B: Backend>(b: &B) {
    let db = b.fresh();
    let store = open(&db).await;
    let (carol, pw) = store
        .add_user(&user("carol"), Role::Viewer, None, &actor("root"))
        .await
        .unwrap();
    store.close().await;
    b.execute_raw(
        &db,
        "UPDATE users SET locked_until = '2999-01-01T00:00:00+00:00' WHERE id = $1",
        carol.id.0,
    )
    .await;
    let store = open(&db).await;
    assert_eq!(
        denied(store.verify_password("carol", pw.as_str()).await),
        DenyReason::Locked
    );
    store.close().await;
    // A lock in the past is over.
    b.execute_raw(
        &db,
        "UPDATE users SET locked_until = '2020-01-01T00:00:00+00:00' WHERE id = $1",
        carol.id.0,
    )
    .await;
    let store = open(&db).await;
    assert_eq!(
        store
            .verify_password("carol", pw.as_str())
            .await
            .unwrap()
            .name,
        carol.name
    );
    store.close().await;
}

pub async fn a_tenant_with_users_cannot_be_removed<B: Backend>(b: &B) {
    let db = b.fresh();
    let store = with_tenants(&db).await;
    let root = actor("root");
    for name in ["zoe", "carol"] {
        store
            .add_user(&user(name), Role::Viewer, Some(&tenant("acme")), &root)
            .await
            .unwrap();
    }
    let revision = store.revision().await.unwrap();
    let err = store
        .remove_tenant(&tenant("acme"), true, &root)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, StoreError::TenantHasUsers { name, count: 2, .. } if name == "acme"),
        "{err:?}"
    );
    assert_eq!(err.kind(), ErrorKind::Conflict);
    assert_eq!(
        err.to_string(),
        "tenant `acme` has 2 users (carol, zoe); a tenant with users cannot be removed"
    );
    assert_eq!(store.tenants().await.unwrap().len(), 2);
    assert_eq!(store.revision().await.unwrap(), revision);
    // A tenant without users goes as before.
    store
        .remove_tenant(&tenant("beta"), false, &root)
        .await
        .unwrap();
    assert_eq!(store.list_users().await.unwrap().len(), 2);
    store.close().await;
}

pub async fn users_and_active_tokens_are_capped<B: Backend>(b: &B) {
    let db = b.fresh();
    let store = open(&db).await;
    let root = actor("root");
    store
        .add_user(&user("alice"), Role::Admin, None, &root)
        .await
        .unwrap();
    let mut first = None;
    for i in 0..MAX_ACTIVE_TOKENS {
        let (info, _) = store
            .add_token(&user("alice"), Some(&label(&format!("t{i}"))), &root)
            .await
            .unwrap();
        first.get_or_insert(info.id);
    }
    let err = store
        .add_token(&user("alice"), None, &root)
        .await
        .unwrap_err();
    assert!(matches!(&err, StoreError::TooManyTokens { user } if user == "alice"));
    assert_eq!(err.kind(), ErrorKind::Conflict);
    assert!(err.to_string().contains("revoke"), "{err}");
    // Revoked tokens do not count.
    store.revoke_token(first.unwrap(), &root).await.unwrap();
    store.add_token(&user("alice"), None, &root).await.unwrap();
    store.close().await;

    // Users: the rest of the cap written past the store (hashing 10,000 passwords would take
    // minutes), then one more through it.
    b.execute_raw(
        &db,
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < $1) \
         INSERT INTO users (name, role, password_hash, created_at, created_by) \
         SELECT 'u' || i, 'viewer', 'x', '2026-01-01T00:00:00+00:00', 'test' FROM n",
        i64::try_from(MAX_USERS).unwrap() - 1,
    )
    .await;
    let store = open(&db).await;
    assert_eq!(store.list_users().await.unwrap().len() as u64, MAX_USERS);
    let err = store
        .add_user(&user("one-more"), Role::Viewer, None, &root)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::TooManyUsers), "{err:?}");
    assert_eq!(err.kind(), ErrorKind::Conflict);
    store.close().await;
}

/// A refusal of an unknown user costs one Argon2 verification like a wrong password does, so
/// its time does not tell who exists. (Measured loosely, within a factor of 4: without the
/// dummy verification an unknown user is refused a hundred times faster.)
pub async fn an_unknown_user_costs_as_much_to_refuse_as_a_wrong_password<B: Backend>(b: &B) {
    let db = b.fresh();
    let store = open(&db).await;
    store
        .add_user(&user("alice"), Role::Admin, None, &actor("root"))
        .await
        .unwrap();
    // Interleaved, so that load from tests running beside this one falls on both alike; the
    // fastest of seven each.
    async fn once(store: &Store, name: &str) -> Duration {
        let started = Instant::now();
        assert!(store.verify_password(name, "wrong password").await.is_err());
        started.elapsed()
    }
    let (mut known, mut unknown) = (Duration::MAX, Duration::MAX);
    for _ in 0..7 {
        known = known.min(once(&store, "alice").await);
        unknown = unknown.min(once(&store, "mallory").await);
    }
    assert!(
        unknown * 4 >= known && known * 4 >= unknown,
        "wrong password {known:?}, unknown user {unknown:?}"
    );
    store.close().await;
}
