//! The store's behaviour suite: every test is a function taking a [`Backend`], a way to get
//! fresh, empty databases of one kind. `tests/store.rs` instantiates the whole suite once per
//! backend.

pub mod concurrency;
pub mod entries;
pub mod export;
pub mod history;
pub mod imports;
pub mod tenants;
pub mod users;

use std::future::Future;
use std::path::{Path, PathBuf};

use allowgate_store::{EntryFilter, ImportFamily, ImportFormat, ImportRequest, Store};
use allowgate_types::{
    Actor, Domain, Entry, EntryKind, EntrySpec, List, NewEntry, Scope, TenantName,
};

/// A kind of database the suite runs against.
pub trait Backend: Sync {
    /// A fresh, empty database; it is dropped with the returned value.
    fn fresh(&self) -> TestDb;

    /// Run `sql` on `db` outside the store (to damage a row on purpose). `$1` is `id`.
    fn execute_raw(
        &self,
        db: &TestDb,
        sql: &'static str,
        id: i64,
    ) -> impl Future<Output = ()> + Send;

    /// Everything `db` holds, exactly (call it with every store closed): two equal results
    /// mean nothing changed at all.
    fn state(&self, db: &TestDb) -> impl Future<Output = Vec<u8>> + Send;
}

/// A database made for one test.
pub struct TestDb {
    /// Its URL.
    pub url: String,
    /// The SQLite file, for the tests that look at files.
    pub path: Option<PathBuf>,
    _guard: Box<dyn std::any::Any + Send + Sync>,
}

/// SQLite files in temporary directories.
pub struct SqliteFiles;

impl Backend for SqliteFiles {
    fn fresh(&self) -> TestDb {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("allowgate.db");
        TestDb {
            url: format!("sqlite://{}", path.display()),
            path: Some(path),
            _guard: Box::new(dir),
        }
    }

    async fn execute_raw(&self, db: &TestDb, sql: &'static str, id: i64) {
        use sqlx::Connection;
        let mut conn = sqlx::SqliteConnection::connect(&db.url).await.unwrap();
        sqlx::query(sql).bind(id).execute(&mut conn).await.unwrap();
        conn.close().await.unwrap();
    }

    async fn state(&self, db: &TestDb) -> Vec<u8> {
        let path = db.path.as_deref().unwrap();
        let wal = wal(path);
        assert!(
            !wal.exists() || std::fs::metadata(&wal).unwrap().len() == 0,
            "the store left a -wal file behind"
        );
        std::fs::read(path).unwrap()
    }
}

/// The `-wal` file next to a SQLite database.
pub fn wal(path: &Path) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push("-wal");
    PathBuf::from(p)
}

pub async fn open(db: &TestDb) -> Store {
    Store::open(&db.url).await.unwrap()
}

pub fn actor(name: &str) -> Actor {
    Actor::parse(name).unwrap()
}

pub fn tenant(name: &str) -> TenantName {
    TenantName::parse(name).unwrap()
}

pub fn domain(name: &str) -> Domain {
    Domain::parse(name).unwrap()
}

pub fn acme() -> Scope {
    Scope::Tenant(tenant("acme"))
}

pub fn spec(list: List, kind: EntryKind, value: &str) -> EntrySpec {
    let checks = (list == List::Allow).then(|| "spf,dkim".parse().unwrap());
    EntrySpec {
        list: Some(list),
        kind: Some(kind),
        value: value.into(),
        checks,
        ..Default::default()
    }
}

pub fn valid(spec: EntrySpec) -> NewEntry {
    spec.validate().unwrap().0
}

pub fn new(list: List, kind: EntryKind, value: &str) -> NewEntry {
    valid(spec(list, kind, value))
}

pub fn no_progress(_: u64, _: u64) {}

pub fn request(list: List, family: ImportFamily, format: ImportFormat) -> ImportRequest {
    let mut req = ImportRequest::new(list, family);
    req.format = format;
    if list == List::Allow {
        req.checks = Some("spam".parse().unwrap());
    }
    req
}

pub fn values(entries: &[Entry]) -> Vec<String> {
    entries.iter().map(|e| e.entry.value.to_string()).collect()
}

pub fn all() -> EntryFilter {
    EntryFilter::default()
}

pub fn contents(entries: &[Entry]) -> Vec<NewEntry> {
    entries.iter().map(|e| e.entry.clone()).collect()
}
