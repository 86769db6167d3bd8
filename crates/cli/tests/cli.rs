//! The `allowgate` command end to end, on a real SQLite file: every "done means" case of the
//! foundation issue, shown through `check --json`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

struct Gate {
    dir: tempfile::TempDir,
}

impl Gate {
    fn new() -> Gate {
        Gate {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn db_path(&self) -> PathBuf {
        self.dir.path().join("allowgate.db")
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn write(&self, name: &str, contents: &str) -> PathBuf {
        let p = self.path(name);
        std::fs::write(&p, contents).unwrap();
        p
    }

    fn url(&self) -> String {
        format!("sqlite://{}", self.db_path().display())
    }

    /// The command for `args`, on this gate's database, not yet run.
    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_allowgate"));
        command
            .arg("--db")
            .arg(self.url())
            .args(args)
            .env("ALLOWGATE_ACTOR", "test")
            .env_remove("ALLOWGATE_DB")
            .env_remove("ALLOWGATE_BUSY_TIMEOUT");
        command
    }

    fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().unwrap()
    }

    /// Run and expect exit code `code`; returns stdout.
    fn expect(&self, code: i32, args: &[&str]) -> String {
        let out = self.run(args);
        assert_eq!(
            out.status.code(),
            Some(code),
            "{args:?}\nstdout: {}\nstderr: {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    fn ok(&self, args: &[&str]) -> String {
        self.expect(0, args)
    }

    fn check(&self, args: &[&str]) -> Value {
        let mut all = vec!["check", "--json"];
        all.extend_from_slice(args);
        serde_json::from_str(&self.ok(&all)).unwrap()
    }
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_str().map_or_else(|| x.to_string(), String::from))
        .collect()
}

fn ints(v: &Value) -> Vec<i64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_i64().unwrap())
        .collect()
}

#[test]
fn overlapping_cidr_and_range_entries_add_their_checks() {
    let g = Gate::new();
    g.ok(&[
        "entry",
        "add",
        "--list",
        "allow",
        "--kind",
        "ip",
        "--value",
        "192.0.2.124-192.0.2.255",
        "--bypass",
        "spf,dkim",
    ]);
    g.ok(&[
        "entry",
        "add",
        "--list",
        "allow",
        "--kind",
        "ip",
        "--value",
        "192.0.2.160/27",
        "--bypass",
        "greylisting",
    ]);
    let v = g.check(&["--ip", "192.0.2.170", "--rcpt", "bob@example.net"]);
    assert_eq!(strings(&v["bypassed"]), ["spf", "dkim", "greylisting"]);
    assert_eq!(v["status"], "clean");
    assert_eq!(v["matched"].as_array().unwrap().len(), 2);
    let v = g.check(&["--ip", "192.0.2.200", "--rcpt", "bob@example.net"]);
    assert_eq!(strings(&v["bypassed"]), ["spf", "dkim"]);
    let v = g.check(&["--ip", "192.0.2.100", "--rcpt", "bob@example.net"]);
    assert_eq!(strings(&v["bypassed"]), Vec::<String>::new());
    assert_eq!(v["status"], "pass");
}

#[test]
fn ipv4_mapped_address_matches_ipv4_entry() {
    let g = Gate::new();
    g.ok(&[
        "entry",
        "add",
        "--list",
        "allow",
        "--kind",
        "ip",
        "--value",
        "192.0.2.0/24",
        "--bypass",
        "rbl",
    ]);
    let v = g.check(&["--ip", "::ffff:192.0.2.7", "--rcpt", "bob@example.net"]);
    assert_eq!(strings(&v["bypassed"]), ["rbl"]);
    assert_eq!(v["client_ip"], "192.0.2.7");
    assert_eq!(v["matched"][0]["value"], "192.0.2.0/24");
}

#[test]
fn wildcard_matches_subdomains_on_label_boundaries_only() {
    let g = Gate::new();
    g.ok(&[
        "entry",
        "add",
        "--list",
        "allow",
        "--kind",
        "host",
        "--value",
        "*.example.com",
        "--bypass",
        "greylisting",
    ]);
    g.ok(&[
        "entry",
        "add",
        "--list",
        "allow",
        "--kind",
        "domain",
        "--value",
        "*.example.com",
        "--bypass",
        "spam",
    ]);
    let v = g.check(&[
        "--ip",
        "203.0.113.1",
        "--host",
        "mail.example.com",
        "--mail-from",
        "a@mail.example.com",
        "--rcpt",
        "b@example.net",
    ]);
    assert_eq!(strings(&v["bypassed"]), ["greylisting", "spam"]);
    let v = g.check(&[
        "--ip",
        "203.0.113.1",
        "--host",
        "badexample.com",
        "--mail-from",
        "a@badexample.com",
        "--rcpt",
        "b@example.net",
    ]);
    assert_eq!(strings(&v["bypassed"]), Vec::<String>::new());
    assert!(v["matched"].as_array().unwrap().is_empty());
}

#[test]
fn trailing_dot_and_case_are_normalised() {
    let g = Gate::new();
    let out = g.ok(&[
        "entry",
        "add",
        "--list",
        "block",
        "--kind",
        "domain",
        "--value",
        "EXAMPLE.COM.",
    ]);
    assert!(out.contains("block domain example.com"), "{out}");
    // The same entry again, spelled the other way, is a duplicate: exit 2, nothing changed.
    g.expect(
        2,
        &[
            "entry",
            "add",
            "--list",
            "block",
            "--kind",
            "domain",
            "--value",
            "example.com",
        ],
    );
    let v = g.check(&[
        "--ip",
        "203.0.113.1",
        "--mail-from",
        "Someone@Example.Com.",
        "--rcpt",
        "b@example.net",
    ]);
    assert_eq!(v["action"], "reject");
    assert_eq!(ints(&v["blocked_by"]), [1]);
    let v = g.check(&[
        "--ip",
        "203.0.113.1",
        "--mail-from",
        "someone@example.org",
        "--rcpt",
        "b@example.net",
    ]);
    assert_eq!(v["action"], "accept");
}

#[test]
fn allow_uses_the_first_sender_by_priority_block_checks_all() {
    let g = Gate::new();
    g.ok(&[
        "entry",
        "add",
        "--list",
        "allow",
        "--kind",
        "email",
        "--value",
        "news@partner.test",
        "--bypass",
        "spam,graymail",
    ]);
    g.ok(&[
        "entry",
        "add",
        "--list",
        "allow",
        "--kind",
        "email",
        "--value",
        "ceo@partner.test",
        "--bypass",
        "all",
        "--force",
    ]);
    g.ok(&[
        "entry",
        "add",
        "--list",
        "block",
        "--kind",
        "email",
        "--value",
        "spoofer@bad.test",
    ]);
    let msg = g.write(
        "m.eml",
        "Return-Path: <news@partner.test>\r\nFrom: \"CEO\" <ceo@partner.test>\r\nSender: spoofer@bad.test\r\nSubject: x\r\n\r\nhello\r\n",
    );
    let msg = msg.to_str().unwrap();
    // No MAIL FROM: Return-Path is the allow sender, not From:.
    let v = g.check(&[
        "--ip",
        "203.0.113.1",
        "--mail-from",
        "<>",
        "--rcpt",
        "b@example.net",
        "--message",
        msg,
    ]);
    assert_eq!(v["sender"], "news@partner.test");
    assert_eq!(v["sender_source"], "Return-Path");
    assert_eq!(strings(&v["bypassed"]), ["spam", "graymail"]);
    // The block side saw Sender:.
    assert_eq!(ints(&v["blocked_by"]), [3]);
    assert_eq!(v["action"], "reject");
    // MAIL FROM beats every header.
    let v = g.check(&[
        "--ip",
        "203.0.113.1",
        "--mail-from",
        "ceo@partner.test",
        "--rcpt",
        "b@example.net",
    ]);
    assert_eq!(v["sender"], "ceo@partner.test");
    assert!(strings(&v["bypassed"]).contains(&"blocklist".to_string()));
}

#[test]
fn global_entries_apply_to_every_tenant_tenant_entries_to_their_own() {
    let g = Gate::new();
    g.ok(&["tenant", "add", "acme", "--domain", "acme.test"]);
    g.ok(&[
        "tenant",
        "add",
        "beta",
        "--domain",
        "beta.test",
        "--domain",
        "beta.example",
    ]);
    g.ok(&[
        "entry",
        "add",
        "--list",
        "allow",
        "--kind",
        "ip",
        "--value",
        "198.51.100.7",
        "--bypass",
        "spf",
    ]);
    g.ok(&[
        "entry",
        "add",
        "--list",
        "allow",
        "--kind",
        "ip",
        "--value",
        "198.51.100.7",
        "--bypass",
        "dkim",
        "--scope",
        "acme",
    ]);
    let v = g.check(&["--ip", "198.51.100.7", "--rcpt", "x@acme.test"]);
    assert_eq!(
        (v["tenant"].as_str(), strings(&v["bypassed"])),
        (Some("acme"), vec!["spf".into(), "dkim".into()])
    );
    let v = g.check(&["--ip", "198.51.100.7", "--rcpt", "x@beta.example"]);
    assert_eq!(
        (v["tenant"].as_str(), strings(&v["bypassed"])),
        (Some("beta"), vec!["spf".to_string()])
    );
    let v = g.check(&["--ip", "198.51.100.7", "--rcpt", "x@unknown.test"]);
    assert_eq!(
        (v["tenant"].clone(), strings(&v["bypassed"])),
        (Value::Null, vec!["spf".to_string()])
    );
    // Recipients of both: only what both bypass.
    let v = g.check(&[
        "--ip",
        "198.51.100.7",
        "--rcpt",
        "x@acme.test",
        "--rcpt",
        "y@beta.test",
    ]);
    assert_eq!(strings(&v["bypassed"]), ["spf"]);
    // An entry for a tenant that does not exist is refused.
    g.expect(
        2,
        &[
            "entry",
            "add",
            "--list",
            "allow",
            "--kind",
            "ip",
            "--value",
            "198.51.100.8",
            "--bypass",
            "spf",
            "--scope",
            "nope",
        ],
    );
}

#[test]
fn expired_entry_matches_nothing() {
    let g = Gate::new();
    g.ok(&[
        "entry",
        "add",
        "--list",
        "allow",
        "--kind",
        "ip",
        "--value",
        "192.0.2.1",
        "--bypass",
        "spf",
        "--expires",
        "2026-01-01",
    ]);
    g.ok(&[
        "entry",
        "add",
        "--list",
        "allow",
        "--kind",
        "ip",
        "--value",
        "192.0.2.0/30",
        "--bypass",
        "dkim",
        "--starts",
        "2026-01-01T00:00:00Z",
        "--expires",
        "2099-01-01",
    ]);
    let v = g.check(&["--ip", "192.0.2.1", "--rcpt", "b@example.net"]);
    assert_eq!(strings(&v["bypassed"]), ["dkim"]);
    assert_eq!(
        ints(
            &v["matched"]
                .as_array()
                .unwrap()
                .iter()
                .map(|m| m["id"].clone())
                .collect()
        ),
        [2]
    );
    let v = g.check(&[
        "--ip",
        "192.0.2.1",
        "--rcpt",
        "b@example.net",
        "--at",
        "2025-06-01",
    ]);
    assert_eq!(strings(&v["bypassed"]), ["spf"]);
}

fn sha(path: &Path) -> Vec<u8> {
    // A content hash without extra dependencies: the bytes themselves.
    std::fs::read(path).unwrap()
}

#[test]
fn bad_import_line_leaves_the_store_byte_for_byte_unchanged_and_names_its_line() {
    let g = Gate::new();
    g.ok(&["tenant", "add", "acme", "--domain", "acme.test"]);
    g.ok(&[
        "entry",
        "add",
        "--list",
        "allow",
        "--kind",
        "ip",
        "--value",
        "192.0.2.1",
        "--bypass",
        "spf",
    ]);
    let good = g.write("good.txt", "# partner relays\n198.51.100.0/24 # relay A\n198.51.100.77, 2001:db8::1; mx.partner.test\n");
    g.ok(&[
        "import",
        good.to_str().unwrap(),
        "--list",
        "allow",
        "--type",
        "server",
        "--bypass",
        "spf,rbl",
    ]);
    let before = sha(&g.db_path());
    assert!(
        !g.path("allowgate.db-wal").exists()
            || std::fs::metadata(g.path("allowgate.db-wal")).unwrap().len() == 0
    );
    let bad = g.write(
        "bad.txt",
        "203.0.113.1\n203.0.113.2\n203.0.113.300\n# fine\nmx.ok.test\n\n0.0.0.0/0\n",
    );
    let out = g.run(&[
        "import",
        bad.to_str().unwrap(),
        "--list",
        "allow",
        "--type",
        "server",
        "--bypass",
        "spf",
    ]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("line 3: `203.0.113.300`"), "{stderr}");
    assert!(stderr.contains("line 7: `0.0.0.0/0`"), "{stderr}");
    assert!(stderr.contains("over-broad"), "{stderr}");
    assert!(!stderr.contains("line 1:"), "{stderr}");
    assert_eq!(sha(&g.db_path()), before, "the database file changed");
    let list = g.ok(&["entry", "list"]);
    assert!(!list.contains("203.0.113.1"), "{list}");
}

#[test]
fn import_export_round_trip() {
    let g = Gate::new();
    g.ok(&["tenant", "add", "acme", "--domain", "acme.test"]);
    let csv = g.write(
        "in.csv",
        "value,comment,checks,expires_at\nfriend@partner.test,CEO's assistant,spam,2099-01-01T00:00:00Z\n*.partner.test,,\"spf,dkim\",\n",
    );
    let out = g.ok(&[
        "import",
        csv.to_str().unwrap(),
        "--list",
        "allow",
        "--type",
        "email",
        "--bypass",
        "spf",
        "--scope",
        "acme",
        "--json",
    ]);
    let report: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["added"], 2);
    let exported = g.ok(&["export", "--format", "json"]);
    let g2 = Gate::new();
    g2.ok(&["tenant", "add", "acme", "--domain", "acme.test"]);
    let file = g2.write("export.json", &exported);
    g2.ok(&[
        "import",
        file.to_str().unwrap(),
        "--list",
        "allow",
        "--type",
        "email",
        "--scope",
        "acme",
    ]);
    assert_eq!(g2.ok(&["export", "--format", "json"]), exported);
    let v = g2.check(&[
        "--ip",
        "203.0.113.1",
        "--mail-from",
        "friend@partner.test",
        "--rcpt",
        "x@acme.test",
    ]);
    assert_eq!(strings(&v["bypassed"]), ["spf", "dkim", "spam"]);
}

#[test]
fn exit_codes_and_actionable_errors() {
    let g = Gate::new();
    // Invalid input: exit 2 with the reason.
    let out = g.run(&[
        "entry",
        "add",
        "--list",
        "allow",
        "--kind",
        "ip",
        "--value",
        "192.0.2.999",
        "--bypass",
        "spf",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("192.0.2.999"));
    let out = g.run(&[
        "entry",
        "add",
        "--list",
        "allow",
        "--kind",
        "ip",
        "--value",
        "192.0.2.9",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--bypass"));
    g.expect(
        2,
        &[
            "entry",
            "add",
            "--list",
            "allowed",
            "--kind",
            "ip",
            "--value",
            "192.0.2.9",
        ],
    );
    g.expect(
        2,
        &[
            "entry",
            "add",
            "--list",
            "allow",
            "--kind",
            "ip",
            "--value",
            "192.0.2.9",
            "--bypass",
            "malware",
        ],
    );
    g.ok(&[
        "entry",
        "add",
        "--list",
        "allow",
        "--kind",
        "ip",
        "--value",
        "192.0.2.9",
        "--bypass",
        "malware",
        "--force",
    ]);
    g.expect(2, &["entry", "rm", "42"]);
    g.expect(2, &["entry", "rm", "abc"]);
    g.expect(2, &["check", "--ip", "nonsense", "--rcpt", "a@b.test"]);
    g.expect(2, &["bogus-command"]);
    g.ok(&["entry", "rm", "#1"]);
    // Other errors: exit 1.
    let out = Command::new(env!("CARGO_BIN_EXE_allowgate"))
        .args(["--db", "sqlite:///nonexistent-dir/x/y.db", "entry", "list"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    g.expect(
        1,
        &[
            "import",
            "/nonexistent/file.txt",
            "--list",
            "block",
            "--type",
            "server",
        ],
    );
    // Every change was audited.
    let audit: Value = serde_json::from_str(&g.ok(&["audit", "--json"])).unwrap();
    let actions: Vec<String> = audit
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["action"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(actions, ["remove", "add"]);
}

#[test]
fn human_check_output_explains_itself() {
    let g = Gate::new();
    g.ok(&[
        "entry",
        "add",
        "--list",
        "allow",
        "--kind",
        "ip",
        "--value",
        "192.0.2.0/24",
        "--bypass",
        "spf",
        "--comment",
        "relay",
    ]);
    let out = g.ok(&["check", "--ip", "192.0.2.5", "--rcpt", "b@example.net"]);
    assert!(out.starts_with("Clean: exempted by entry #1\n"), "{out}");
    assert!(out.contains("spf by #1"), "{out}");
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Regression: a newline in --actor forged extra `audit` lines; a 100 kB actor was accepted.
#[test]
fn an_actor_with_a_newline_or_of_100_kb_is_refused() {
    let g = Gate::new();
    let forged = "mallory\n2026-01-01T00:00:00+00:00\trev 99\tcli:root\tadd entry #1";
    let huge = "x".repeat(100_000);
    for actor in [forged, huge.as_str()] {
        let out = g.run(&[
            "--actor",
            actor,
            "tenant",
            "add",
            "acme",
            "--domain",
            "acme.test",
        ]);
        assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
        let err = stderr(&out);
        assert!(
            err.contains("--actor") && err.contains("nothing was changed"),
            "{err}"
        );
        assert!(
            err.len() < 1000,
            "the refusal repeats the whole actor: {} bytes",
            err.len()
        );
    }
    assert_eq!(g.ok(&["audit"]), "");
    g.ok(&[
        "--actor",
        "alice",
        "tenant",
        "add",
        "acme",
        "--domain",
        "acme.test",
    ]);
    let audit = g.ok(&["audit"]);
    assert_eq!(audit.lines().count(), 1, "{audit}");
    assert!(audit.contains("\tcli:alice\tadd tenant"), "{audit}");
}

/// Stored text the audit log prints (an old row, or one written by another tool) is escaped.
#[test]
fn audit_output_escapes_what_it_prints() {
    let g = Gate::new();
    g.ok(&["tenant", "add", "acme", "--domain", "acme.test"]);
    let url = g.url();
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        use sqlx::Connection;
        let mut conn = sqlx::SqliteConnection::connect(&url).await.unwrap();
        sqlx::query(
            "UPDATE audit SET actor = 'cli:eve' || char(27) || '[2J' || char(10) || 'forged'",
        )
        .execute(&mut conn)
        .await
        .unwrap();
        conn.close().await.unwrap();
    });
    let audit = g.ok(&["audit"]);
    assert_eq!(audit.lines().count(), 1, "{audit:?}");
    assert!(!audit.contains('\u{1b}'), "{audit:?}");
    assert!(audit.contains(r"cli:eve\u{1b}[2J\nforged"), "{audit:?}");
}

/// Regression: `import --json` printed nothing on stdout when the import was refused.
#[test]
fn import_json_prints_the_report_with_every_error_when_refused() {
    let g = Gate::new();
    let mut text: String = (0..1500)
        .map(|i| format!("10.{}.{}.300\n", i / 256, i % 256))
        .collect();
    text.push_str("192.0.2.1\n");
    let file = g.write("bad.txt", &text);
    let out = g.run(&[
        "import",
        file.to_str().unwrap(),
        "--list",
        "block",
        "--type",
        "server",
        "--json",
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let error = &report["error"];
    assert_eq!(error["code"], "invalid_lines");
    // Every bad line is counted, though the listing stops at 1000.
    assert_eq!(error["invalid_lines"], 1500);
    assert_eq!(error["problems"].as_array().unwrap().len(), 1000);
    assert_eq!(error["unlisted"], 500);
    assert_eq!(error["problems"][0]["lines"], serde_json::json!([[1, 1]]));
    assert_eq!(error["problems"][0]["value"], "10.0.0.300");
    assert!(
        stderr(&out).contains("1500 invalid lines"),
        "{}",
        stderr(&out)
    );
    assert_eq!(g.ok(&["entry", "list"]), "");

    // A replace that would empty the list: refused with its report too.
    g.ok(&[
        "entry",
        "add",
        "--list",
        "block",
        "--kind",
        "ip",
        "--value",
        "192.0.2.1",
    ]);
    let empty = g.write("empty.txt", "# nothing\n");
    let out = g.run(&[
        "import",
        empty.to_str().unwrap(),
        "--list",
        "block",
        "--type",
        "server",
        "--replace",
        "--json",
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["error"]["code"], "would_empty");
}

/// Regression: `import --replace` of an empty or comments-only file emptied the list, exit 0.
#[test]
fn import_replace_of_an_empty_file_needs_allow_empty() {
    let g = Gate::new();
    g.ok(&[
        "entry",
        "add",
        "--list",
        "block",
        "--kind",
        "ip",
        "--value",
        "192.0.2.1",
    ]);
    g.ok(&[
        "entry",
        "add",
        "--list",
        "block",
        "--kind",
        "host",
        "--value",
        "mx.bad.test",
    ]);
    let before = g.ok(&["entry", "list"]);
    for (name, contents) in [("empty.txt", ""), ("comments.txt", "# to do\n\n# later\n")] {
        let file = g.write(name, contents);
        let out = g.run(&[
            "import",
            file.to_str().unwrap(),
            "--list",
            "block",
            "--type",
            "server",
            "--replace",
        ]);
        assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
        let err = stderr(&out);
        assert!(
            err.contains("remove all 2")
                && err.contains("--allow-empty")
                && err.contains("nothing was changed"),
            "{err}"
        );
        assert_eq!(g.ok(&["entry", "list"]), before);
    }
    let file = g.write("empty.txt", "");
    let out = g.ok(&[
        "import",
        file.to_str().unwrap(),
        "--list",
        "block",
        "--type",
        "server",
        "--replace",
        "--allow-empty",
    ]);
    assert!(out.contains("2 removed"), "{out}");
    assert_eq!(g.ok(&["entry", "list"]), "");
}

/// Regression: one mistake (no --bypass for an allow list) printed fifty messages.
#[test]
fn one_mistake_in_an_import_is_reported_once_with_its_lines() {
    let g = Gate::new();
    let mut text: String = (1..=50).map(|i| format!("192.0.2.{i}\n")).collect();
    text.push_str("bad\u{1b}[2Jhost\r!\n");
    let file = g.write("relays.txt", &text);
    let out = g.run(&[
        "import",
        file.to_str().unwrap(),
        "--list",
        "allow",
        "--type",
        "server",
    ]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(err.contains("51 invalid lines"), "{err}");
    assert_eq!(err.matches("need a set of checks").count(), 1, "{err}");
    assert!(
        err.contains("lines 1–51 (51 lines): allow entries need a set of checks"),
        "{err}"
    );
    // The value with ESC and CR is shown escaped, on its own line.
    assert!(err.contains(r"line 51: `bad\u{1b}[2Jhost\r!`"), "{err}");
    assert!(!err.contains('\u{1b}') && !err.contains('\r'), "{err:?}");
}

/// Regression: a text export re-imported into the allow list turned block entries into allow
/// entries.
#[test]
fn a_text_export_of_the_block_list_is_refused_by_the_allow_list() {
    let g = Gate::new();
    g.ok(&[
        "entry",
        "add",
        "--list",
        "block",
        "--kind",
        "ip",
        "--value",
        "203.0.113.0/24",
    ]);
    let exported = g.ok(&["export"]);
    let file = g.write("export.txt", &exported);
    let out = g.run(&[
        "import",
        file.to_str().unwrap(),
        "--list",
        "allow",
        "--type",
        "server",
        "--bypass",
        "spf",
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("is for the block list"),
        "{}",
        stderr(&out)
    );
    let list = g.ok(&["entry", "list", "--list", "allow"]);
    assert_eq!(list, "");
}

/// Regression: the CLI panicked (exit 101, "failed printing to stdout: Broken pipe") when its
/// stdout was a pipe closed early, as in `allowgate entry list | head -1`.
#[test]
fn a_closed_stdout_ends_the_command_quietly() {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;
    let g = Gate::new();
    // Far more than a pipe holds (64 KiB), so the writer meets the closed pipe.
    let text: String = (0..4000u32)
        .map(|i| format!("10.1.{}.{} # relay number {i}\n", i >> 8, i & 255))
        .collect();
    let file = g.write("many.txt", &text);
    g.ok(&[
        "import",
        file.to_str().unwrap(),
        "--list",
        "block",
        "--type",
        "server",
    ]);
    for round in 0..20 {
        for args in [
            &["entry", "list"][..],
            &["export", "--format", "json"],
            &["audit", "--limit", "5000"],
        ] {
            let mut child = g
                .command(args)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            let mut first = String::new();
            BufReader::new(child.stdout.take().unwrap())
                .read_line(&mut first)
                .unwrap();
            assert!(!first.is_empty());
            let out = child.wait_with_output().unwrap();
            assert_eq!(
                out.status.code(),
                Some(0),
                "round {round} {args:?}: {}",
                stderr(&out)
            );
            assert_eq!(stderr(&out), "", "round {round} {args:?}");
        }
        // Closed before the command writes anything.
        for args in [
            &["check", "--ip", "10.1.0.1", "--rcpt", "b@example.net"][..],
            &[
                "check",
                "--json",
                "--ip",
                "10.1.0.1",
                "--rcpt",
                "b@example.net",
            ],
            &["tenant", "list"],
        ] {
            let mut child = g
                .command(args)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            drop(child.stdout.take());
            let out = child.wait_with_output().unwrap();
            assert_eq!(
                out.status.code(),
                Some(0),
                "round {round} {args:?}: {}",
                stderr(&out)
            );
            assert_eq!(stderr(&out), "", "round {round} {args:?}");
        }
    }
    // A change whose confirmation cannot be printed is made all the same, and says nothing.
    let mut child = g
        .command(&[
            "entry",
            "add",
            "--list",
            "block",
            "--kind",
            "ip",
            "--value",
            "192.0.2.99",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    assert_eq!((out.status.code(), stderr(&out)), (Some(0), String::new()));
    assert!(
        g.ok(&["entry", "list", "--kind", "ip"])
            .contains("192.0.2.99")
    );
}

/// Write contention: another change holding the database past the busy timeout is reported
/// as such (exit 1), not as "database is locked".
#[test]
fn a_change_blocked_by_another_says_another_change_is_in_progress() {
    let g = Gate::new();
    g.ok(&["tenant", "add", "acme", "--domain", "acme.test"]);
    let url = g.url();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let mut holder = runtime.block_on(async {
        use sqlx::Connection;
        let mut conn = sqlx::SqliteConnection::connect(&url).await.unwrap();
        sqlx::query("BEGIN IMMEDIATE")
            .execute(&mut conn)
            .await
            .unwrap();
        conn
    });
    let started = std::time::Instant::now();
    let out = g.run(&[
        "--busy-timeout",
        "0.3",
        "entry",
        "add",
        "--list",
        "block",
        "--kind",
        "ip",
        "--value",
        "192.0.2.1",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("another change is in progress") && err.contains("retry"),
        "{err}"
    );
    assert!(!err.contains("locked"), "{err}");
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
    // Reads go on meanwhile.
    assert!(g.ok(&["tenant", "list"]).contains("acme"));
    runtime.block_on(async {
        use sqlx::Connection;
        sqlx::query("ROLLBACK").execute(&mut holder).await.unwrap();
        holder.close().await.unwrap();
    });
    g.ok(&[
        "entry",
        "add",
        "--list",
        "block",
        "--kind",
        "ip",
        "--value",
        "192.0.2.1",
    ]);
}

#[test]
fn check_reads_the_message_from_stdin_for_dash() {
    use std::io::Write;
    use std::process::Stdio;
    let g = Gate::new();
    g.ok(&[
        "entry",
        "add",
        "--list",
        "allow",
        "--kind",
        "email",
        "--value",
        "news@partner.test",
        "--bypass",
        "spam",
    ]);
    let message =
        "Return-Path: <news@partner.test>\r\nFrom: news@partner.test\r\nSubject: x\r\n\r\nhi\r\n";
    let file = g.write("m.eml", message);
    let from_file = g.check(&[
        "--ip",
        "203.0.113.1",
        "--mail-from",
        "<>",
        "--rcpt",
        "b@example.net",
        "--message",
        file.to_str().unwrap(),
    ]);
    let mut child = g
        .command(&[
            "check",
            "--json",
            "--ip",
            "203.0.113.1",
            "--mail-from",
            "<>",
            "--rcpt",
            "b@example.net",
            "--message",
            "-",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(message.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let from_stdin: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(from_stdin["sender"], "news@partner.test");
    assert_eq!(from_stdin, from_file);
}

#[test]
fn a_bare_path_for_db_suggests_a_sqlite_url_and_help_offers_no_postgres() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_allowgate"))
        .current_dir(dir.path())
        .args(["--db", "plain.db", "entry", "list"])
        .env_remove("ALLOWGATE_DB")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(err.contains("did you mean `sqlite://plain.db`?"), "{err}");
    assert!(!err.contains("nothing was changed"), "{err}");
    assert!(!dir.path().join("plain.db").exists());

    let help = Command::new(env!("CARGO_BIN_EXE_allowgate"))
        .arg("--help")
        .env("ALLOWGATE_DB", "postgres://app:s3cret@db/gate")
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(!help.contains("postgres://"), "{help}");
    assert!(!help.contains("s3cret"), "{help}");
    assert!(help.contains("sqlite://"), "{help}");
    let out = Command::new(env!("CARGO_BIN_EXE_allowgate"))
        .args(["--db", "postgres://app:s3cret@db/gate", "entry", "list"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(
        err.contains("PostgreSQL") && !err.contains("s3cret"),
        "{err}"
    );
}

#[test]
fn tenant_domains_are_added_and_removed_and_tenants_removed() {
    let g = Gate::new();
    g.ok(&["tenant", "add", "acme", "--domain", "acme.test"]);
    g.ok(&["tenant", "add", "beta", "--domain", "beta.test"]);
    let out = g.ok(&["tenant", "domain", "add", "acme", "acme.net", "Acme.ORG"]);
    assert!(out.contains("acme.net, acme.org, acme.test"), "{out}");
    let out = g.run(&["tenant", "domain", "add", "acme", "beta.test"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("already belongs to tenant `beta`"),
        "{}",
        stderr(&out)
    );
    g.ok(&["tenant", "domain", "rm", "acme", "acme.net"]);
    assert_eq!(
        g.expect(2, &["tenant", "domain", "rm", "acme", "acme.net"]),
        ""
    );
    let v = g.check(&["--ip", "192.0.2.1", "--rcpt", "x@acme.org"]);
    assert_eq!(v["tenant"], "acme");

    g.ok(&[
        "entry",
        "add",
        "--list",
        "block",
        "--kind",
        "ip",
        "--value",
        "192.0.2.1",
        "--scope",
        "acme",
    ]);
    let out = g.run(&["tenant", "rm", "acme"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("--with-entries"), "{}", stderr(&out));
    let out = g.ok(&["tenant", "rm", "acme", "--with-entries"]);
    assert!(
        out.contains("removed tenant acme") && out.contains("1 entries"),
        "{out}"
    );
    assert_eq!(g.ok(&["tenant", "list"]), "beta\tbeta.test\n");
    let audit: Value = serde_json::from_str(&g.ok(&["audit", "--json"])).unwrap();
    let newest: Vec<(String, String)> = audit.as_array().unwrap()[..2]
        .iter()
        .map(|r| {
            (
                r["action"].as_str().unwrap().into(),
                r["object"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(
        newest,
        [
            ("remove".into(), "tenant".into()),
            ("remove".into(), "entry".into())
        ]
    );
    assert!(g.ok(&["tenant", "--help"]).contains("domain"));
}

#[test]
fn read_only_commands_do_not_say_nothing_was_changed() {
    let g = Gate::new();
    for args in [
        &["entry", "list", "--scope", "nobody"][..],
        &["export", "--scope", "nobody"],
        &["check", "--ip", "nonsense", "--rcpt", "a@b.test"],
        &["audit", "--limit", "x"],
    ] {
        let out = g.run(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(
            !stderr(&out).contains("nothing was changed"),
            "{args:?}: {}",
            stderr(&out)
        );
    }
    let out = g.run(&["entry", "rm", "42"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("nothing was changed"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn entry_add_and_import_help_list_every_check_and_group() {
    use allowgate_types::{CheckGroup, CheckId};
    let g = Gate::new();
    for args in [&["entry", "add", "--help"][..], &["import", "--help"]] {
        let help = g.ok(args);
        for check in CheckId::ALL {
            assert!(help.contains(check.id()), "{args:?} lacks {check}:\n{help}");
        }
        for group in CheckGroup::ALL {
            assert!(
                help.contains(group.id()),
                "{args:?} lacks {}:\n{help}",
                group.id()
            );
        }
        assert!(
            help.contains("`malware`") && help.contains("--force"),
            "{help}"
        );
        assert!(
            help.contains("`*` and `*@*` are refused, even with --force"),
            "{help}"
        );
    }
}

#[test]
fn entry_list_marks_expired_and_not_yet_active_entries() {
    let g = Gate::new();
    g.ok(&[
        "entry",
        "add",
        "--list",
        "block",
        "--kind",
        "ip",
        "--value",
        "192.0.2.1",
        "--expires",
        "2020-01-01",
    ]);
    g.ok(&[
        "entry",
        "add",
        "--list",
        "block",
        "--kind",
        "ip",
        "--value",
        "192.0.2.2",
        "--starts",
        "2999-01-01",
    ]);
    g.ok(&[
        "entry",
        "add",
        "--list",
        "block",
        "--kind",
        "ip",
        "--value",
        "192.0.2.3",
    ]);
    let list = g.ok(&["entry", "list"]);
    let lines: Vec<&str> = list.lines().collect();
    assert!(lines[0].contains(" expired "), "{list}");
    assert!(lines[1].contains(" not-yet-active "), "{list}");
    assert!(
        !lines[2].contains("expired") && !lines[2].contains("not-yet-active"),
        "{list}"
    );
}

// ---------------------------------------------------------------------------------------------
// history and entry show: records written through the store's API into the gate's own file.

/// A `pass` record at 08:MM on 2024-03-01 from `ip`, sent by `sender` to `rcpts`.
fn history_record(
    minute: u32,
    ip: &str,
    sender: Option<&str>,
    rcpts: &[&str],
) -> allowgate_store::HistoryRecord {
    use chrono::TimeZone;
    allowgate_store::HistoryRecord {
        time: chrono::Utc
            .with_ymd_and_hms(2024, 3, 1, 8, minute, 0)
            .unwrap(),
        node: "gw1".into(),
        queue_id: Some(format!("Q{minute:02}")),
        tenant: None,
        client_ip: ip.into(),
        sender: sender.map(Into::into),
        sender_source: sender.map(|_| "MAIL FROM".into()),
        recipients: rcpts.iter().map(|r| r.to_string()).collect(),
        status: "pass".into(),
        action: "accept".into(),
        stage: "message".into(),
        bypassed: vec![],
        matched: vec![],
        checks: [("spf".to_string(), "not_run".to_string())].into(),
        reason: "Pass".into(),
        revision: 1,
    }
}

fn exempted(mut r: allowgate_store::HistoryRecord, entry: i64) -> allowgate_store::HistoryRecord {
    r.status = "clean".into();
    r.bypassed = vec!["spf".into(), "dkim".into()];
    r.checks = [
        ("dkim".to_string(), "bypassed".to_string()),
        ("spf".to_string(), "bypassed".to_string()),
    ]
    .into();
    r.matched = vec![allowgate_store::HistoryMatch {
        id: entry,
        list: "allow".into(),
        kind: "ip".into(),
        value: "192.0.2.0/24".into(),
        scope: "global".into(),
        checks: vec!["spf".into(), "dkim".into()],
        matched_on: format!("client ip {}", r.client_ip),
        applied: true,
    }];
    r.reason = format!("Clean: exempted by entry #{entry}");
    r
}

impl Gate {
    /// Write `batch` into this gate's database through the store, as the server does.
    fn record(&self, batch: &[allowgate_store::HistoryRecord]) {
        let url = self.url();
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(async {
                let store = allowgate_store::Store::open(&url).await.unwrap();
                store.record_history(batch).await.unwrap();
                store.close().await;
            });
    }

    /// `history --json` with `args`: the records' queue ids, in order.
    fn history_ids(&self, args: &[&str]) -> Vec<String> {
        let mut all = vec!["history", "--json"];
        all.extend_from_slice(args);
        let v: Value = serde_json::from_str(&self.ok(&all)).unwrap();
        v["records"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["queue_id"].as_str().unwrap().to_string())
            .collect()
    }
}

#[test]
fn history_answers_why_a_message_was_delivered_newest_first() {
    let g = Gate::new();
    let mut blocked = history_record(
        3,
        "198.51.100.9",
        Some("eve@spam.example"),
        &["bob@acme.example"],
    );
    blocked.status = "blocked".into();
    blocked.action = "reject".into();
    blocked.reason = "Blocked: blocked by entry #3".into();
    blocked.tenant = Some("acme".into());
    g.record(&[
        exempted(
            history_record(
                1,
                "192.0.2.7",
                Some("alice@partner.example"),
                &["bob@acme.example"],
            ),
            12,
        ),
        history_record(
            2,
            "2001:db8::7",
            None,
            &["bob@acme.example", "carol@acme.example", "dan@acme.example"],
        ),
        blocked,
    ]);
    let text = g.ok(&["history"]);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines,
        [
            "2024-03-01T08:03:00Z\tQ03\t198.51.100.9\teve@spam.example → bob@acme.example\tBlocked: blocked by entry #3",
            "2024-03-01T08:02:00Z\tQ02\t2001:db8::7\t<> → bob@acme.example (+2 more)\tPass",
            "2024-03-01T08:01:00Z\tQ01\t192.0.2.7\talice@partner.example → bob@acme.example\tClean: exempted by entry #12",
        ],
        "{text}"
    );

    // JSON: DESIGN 5.1's fields, newest first.
    let v: Value = serde_json::from_str(&g.ok(&["history", "--json"])).unwrap();
    let records = v["records"].as_array().unwrap();
    assert_eq!(records.len(), 3);
    for field in [
        "time",
        "queue_id",
        "node",
        "tenant",
        "client_ip",
        "sender",
        "recipients",
        "status",
        "action",
        "bypassed",
        "matched",
        "checks",
    ] {
        assert!(records[0].get(field).is_some(), "{field}: {v}");
    }
    let clean = &records[2];
    assert_eq!(clean["status"], "clean");
    assert_eq!(clean["time"], "2024-03-01T08:01:00Z");
    assert_eq!(strings(&clean["bypassed"]), ["spf", "dkim"]);
    assert_eq!(clean["matched"][0]["id"], 12);
    assert_eq!(
        clean["matched"][0]["checks"],
        serde_json::json!(["spf", "dkim"])
    );
    assert_eq!(clean["checks"]["spf"], "bypassed");
    assert_eq!(clean["reason"], "Clean: exempted by entry #12");
    assert_eq!(records[1]["sender"], Value::Null);
    assert_eq!(records[0]["tenant"], "acme");

    // Filters, alone and together.
    let cases: [(&[&str], &[&str]); 11] = [
        (&["--sender", "alice@partner.example"], &["Q01"]),
        (&["--sender", "partner.example"], &["Q01"]),
        (&["--sender", "*.example"], &["Q03", "Q01"]),
        (&["--ip", "192.0.2.0/24"], &["Q01"]),
        (&["--ip", "2001:db8::7"], &["Q02"]),
        (&["--status", "blocked"], &["Q03"]),
        (&["--tenant", "acme"], &["Q03"]),
        (&["--since", "2024-03-01T08:02:00Z"], &["Q03", "Q02"]),
        (&["--since", "2024-03-02"], &[]),
        (&["--limit", "1"], &["Q03"]),
        (
            &[
                "--sender",
                "*.example",
                "--status",
                "clean",
                "--since",
                "2024-03-01",
            ],
            &["Q01"],
        ),
    ];
    for (args, want) in cases {
        assert_eq!(g.history_ids(args), want, "{args:?}");
    }
    // A span back from now: everything here is older than a day.
    assert_eq!(g.history_ids(&["--since", "1d"]), Vec::<String>::new());
    assert_eq!(g.history_ids(&["--since", "3650d"]).len(), 3);
    // The human form filters alike.
    assert_eq!(
        g.ok(&["history", "--ip", "2001:db8::/64"]).lines().count(),
        1
    );
}

#[test]
fn history_with_nothing_recorded_prints_nothing() {
    let g = Gate::new();
    assert_eq!(g.ok(&["history"]), "");
    let v: Value = serde_json::from_str(&g.ok(&["history", "--json"])).unwrap();
    assert_eq!(v, serde_json::json!({ "records": [] }));
}

#[test]
fn history_refuses_bad_filters_with_the_reason() {
    let g = Gate::new();
    let cases: [(&[&str], &str); 10] = [
        (&["--ip", "192.0.2.300"], "--ip: "),
        (&["--ip", "example.com"], "--ip: "),
        (&["--sender", "alice@"], "--sender: "),
        (&["--sender", "not a domain"], "--sender: "),
        (
            &["--status", "delivered"],
            "--status: `delivered` is not a status",
        ),
        (&["--tenant", "Acme!"], "--tenant: "),
        (&["--limit", "0"], "--limit: 0 is not between 1 and 10000"),
        (
            &["--limit", "10001"],
            "--limit: 10001 is not between 1 and 10000",
        ),
        (&["--since", "yesterday"], "`yesterday` is not a time"),
        (&["--since", "100000d"], "at most 100 years"),
    ];
    for (args, want) in cases {
        let mut all = vec!["history"];
        all.extend_from_slice(args);
        let out = g.run(&all);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(want), "{args:?}: {err}");
        assert!(!err.contains("nothing was changed"), "{args:?}: {err}");
        assert!(out.stdout.is_empty(), "{args:?}");
    }
    // The status list names every status.
    let err = stderr(&g.run(&["history", "--status", "x"]));
    for status in [
        "clean",
        "pass",
        "blocked",
        "greylisted",
        "spam",
        "quarantined",
        "rejected",
    ] {
        assert!(err.contains(status), "{err}");
    }
}

/// Stored text comes from mail and MTAs: it is escaped, one message stays one line.
#[test]
fn history_output_escapes_what_it_prints() {
    let g = Gate::new();
    let mut r = history_record(
        1,
        "192.0.2.7",
        Some("\"x y\"@evil.example"),
        &["bob@acme.example\r\nX-Forged: 1"],
    );
    r.queue_id = Some("Q\n2024-03-01T09:00:00Z\tforged".into());
    r.reason = "Pass\u{1b}]0;owned\u{7}".into();
    g.record(&[r]);
    let text = g.ok(&["history"]);
    assert_eq!(text.lines().count(), 1, "{text:?}");
    assert!(!text.contains('\u{1b}') && !text.contains('\r'), "{text:?}");
    assert!(
        text.contains(r"Q\n2024-03-01T09:00:00Z\tforged"),
        "{text:?}"
    );
    assert!(
        text.contains(r"bob@acme.example\r\nX-Forged: 1"),
        "{text:?}"
    );
    assert!(text.contains(r"Pass\u{1b}]0;owned\u{7}"), "{text:?}");
    assert!(text.contains("\t\"x y\"@evil.example → "), "{text:?}");
}

#[test]
fn history_to_a_closed_pipe_ends_quietly() {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;
    let g = Gate::new();
    // Far more than a pipe holds.
    let batch: Vec<_> = (0..2000)
        .map(|i| {
            history_record(
                i % 60,
                "192.0.2.7",
                Some("alice@partner.example"),
                &["b@acme.example"],
            )
        })
        .collect();
    g.record(&batch);
    for args in [
        &["history", "--limit", "2000"][..],
        &["history", "--json", "--limit", "2000"],
    ] {
        let mut child = g
            .command(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut first = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut first)
            .unwrap();
        assert!(!first.is_empty());
        let out = child.wait_with_output().unwrap();
        assert_eq!(out.status.code(), Some(0), "{args:?}: {}", stderr(&out));
        assert_eq!(stderr(&out), "", "{args:?}");
    }
}

#[test]
fn entry_show_prints_the_entry_with_its_hit_count_and_last_hit() {
    let g = Gate::new();
    let added: Value = serde_json::from_str(&g.ok(&[
        "entry",
        "add",
        "--list",
        "allow",
        "--kind",
        "ip",
        "--value",
        "192.0.2.0/24",
        "--bypass",
        "spf,dkim",
        "--comment",
        "partner relays",
        "--json",
    ]))
    .unwrap();
    let id = added["id"].as_i64().unwrap();
    let shown = g.ok(&["entry", "show", &id.to_string()]);
    assert!(
        shown.starts_with(&format!(
            "#{id}\tallow ip 192.0.2.0/24 [global] bypass=spf,dkim"
        )),
        "{shown}"
    );
    assert!(shown.contains("by cli:test"), "{shown}");
    assert!(shown.contains("hits:     none yet"), "{shown}");
    let v: Value =
        serde_json::from_str(&g.ok(&["entry", "show", &format!("#{id}"), "--json"])).unwrap();
    assert_eq!(
        (v["hits"].clone(), v["last_hit"].clone()),
        (0.into(), Value::Null)
    );
    assert_eq!(v["comment"], "partner relays");

    g.record(&[
        exempted(
            history_record(1, "192.0.2.7", None, &["b@acme.example"]),
            id,
        ),
        exempted(
            history_record(9, "192.0.2.8", None, &["b@acme.example"]),
            id,
        ),
    ]);
    g.record(&[exempted(
        history_record(5, "192.0.2.9", None, &["b@acme.example"]),
        id,
    )]);
    let shown = g.ok(&["entry", "show", &id.to_string()]);
    assert!(
        shown.contains("hits:     3, last 2024-03-01T08:09:00Z"),
        "{shown}"
    );
    let v: Value =
        serde_json::from_str(&g.ok(&["entry", "show", &id.to_string(), "--json"])).unwrap();
    assert_eq!(v["hits"], 3);
    assert_eq!(v["last_hit"], "2024-03-01T08:09:00Z");
    assert_eq!(v["id"], id);

    // A missing entry and a bad id: exit 2, read-only (nothing to un-change).
    for (arg, want) in [("999", "no entry #999"), ("x", "`x` is not an entry id")] {
        let out = g.run(&["entry", "show", arg]);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert!(err.contains(want), "{err}");
        assert!(!err.contains("nothing was changed"), "{err}");
    }
}

/// The store accepts exactly the engine's statuses and actions: what the server writes is
/// what `history --status` finds.
#[test]
fn history_statuses_and_actions_are_the_engines() {
    use allowgate_core::{Action, Status};
    use allowgate_store::history::{HISTORY_ACTIONS, HISTORY_STATUSES};
    // A new variant fails to compile here until it is listed.
    let status_listed = |s: Status| match s {
        Status::Clean
        | Status::Pass
        | Status::Blocked
        | Status::Greylisted
        | Status::Spam
        | Status::Quarantined
        | Status::Rejected => s.as_str(),
    };
    let statuses = [
        Status::Clean,
        Status::Pass,
        Status::Blocked,
        Status::Greylisted,
        Status::Spam,
        Status::Quarantined,
        Status::Rejected,
    ];
    let names: Vec<&str> = statuses.into_iter().map(status_listed).collect();
    assert_eq!(names, HISTORY_STATUSES);
    let action_listed = |a: Action| match a {
        Action::Accept | Action::Tag | Action::Quarantine | Action::Defer | Action::Reject => {
            a.as_str()
        }
    };
    let actions = [
        Action::Accept,
        Action::Tag,
        Action::Quarantine,
        Action::Defer,
        Action::Reject,
    ];
    let names: Vec<&str> = actions.into_iter().map(action_listed).collect();
    assert_eq!(names, HISTORY_ACTIONS);
}

// ---------------------------------------------------------------------------------------------
// users and API tokens: what the commands print is checked against the store itself.

impl Gate {
    /// Run `work` on this gate's database through the store's API.
    fn with_store<T>(&self, work: impl AsyncFnOnce(&allowgate_store::Store) -> T) -> T {
        let url = self.url();
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(async {
                let store = allowgate_store::Store::open(&url).await.unwrap();
                let result = work(&store).await;
                store.close().await;
                result
            })
    }

    /// The user `name` authenticates with `password`.
    fn password_works(&self, name: &str, password: &str) -> bool {
        self.with_store(async |s| s.verify_password(name, password).await.is_ok())
    }

    /// The user `token` authenticates as, if any.
    fn token_user(&self, token: &str) -> Option<String> {
        self.with_store(async |s| {
            s.authenticate_token(token)
                .await
                .ok()
                .map(|u| u.name.to_string())
        })
    }
}

/// `one-time password: …` out of `user add`'s output, which must be exactly two lines.
fn one_time_password(stdout: &str) -> String {
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{stdout}");
    lines[1]
        .strip_prefix("one-time password: ")
        .unwrap_or_else(|| panic!("{stdout}"))
        .to_string()
}

#[test]
fn user_add_then_token_add_prints_one_line_the_store_accepts() {
    let g = Gate::new();
    g.ok(&["tenant", "add", "acme", "--domain", "acme.example"]);

    let out = g.run(&[
        "user",
        "add",
        "Bob",
        "--role",
        "tenant-admin",
        "--tenant",
        "acme",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let stdout = String::from_utf8(out.stdout.clone()).unwrap();
    assert!(
        stdout.starts_with("added user bob (role tenant-admin, tenant acme)\n"),
        "{stdout}"
    );
    let password = one_time_password(&stdout);
    assert_eq!(password.len(), 24);
    assert!(stderr(&out).contains("shown only now"), "{}", stderr(&out));
    assert!(g.password_works("bob", &password));
    assert!(!g.password_works("bob", "not the password"));

    // --json: one object with the user and the password.
    let v: Value =
        serde_json::from_str(&g.ok(&["user", "add", "carol", "--role", "viewer", "--json"]))
            .unwrap();
    assert_eq!(v["user"]["name"], "carol");
    assert_eq!(v["user"]["role"], "viewer");
    assert_eq!(v["user"]["tenant"], Value::Null);
    assert_eq!(v["user"]["created_by"], "cli:test");
    assert!(v["user"].get("password_hash").is_none());
    assert!(g.password_works("carol", v["password"].as_str().unwrap()));
    let admin = one_time_password(&g.ok(&["user", "add", "root", "--role", "admin"]));
    assert!(g.password_works("root", &admin));

    // token add: the token alone, one line, on stdout; everything else on stderr.
    let out = g.run(&["token", "add", "--user", "BOB", "--label", "deploy bot"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let stdout = String::from_utf8(out.stdout.clone()).unwrap();
    let token = stdout
        .strip_suffix('\n')
        .unwrap_or_else(|| panic!("{stdout:?}"));
    assert!(!token.contains('\n') && !token.contains(' '), "{stdout:?}");
    assert!(token.starts_with("ag_") && token.len() == 46, "{token}");
    let err = stderr(&out);
    assert!(
        err.contains("token 1 for user bob (label deploy bot)") && !err.contains(token),
        "{err}"
    );
    assert_eq!(g.token_user(token), Some("bob".into()));
    let second = g.ok(&["token", "add", "--user", "carol"]);
    assert_eq!(second.lines().count(), 1);
    assert_eq!(g.token_user(second.trim_end()), Some("carol".into()));

    // Lists, without secrets.
    let users: Value = serde_json::from_str(&g.ok(&["user", "list", "--json"])).unwrap();
    let names: Vec<&str> = users
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["bob", "carol", "root"]);
    let text = g.ok(&["user", "list"]);
    assert!(
        text.starts_with("bob\ttenant-admin\tacme\tadded "),
        "{text}"
    );
    assert!(text.contains("\ncarol\tviewer\t-\tadded "), "{text}");
    let tokens = g.ok(&["token", "list"]);
    assert_eq!(tokens.lines().count(), 2, "{tokens}");
    assert!(
        tokens.starts_with("1\tbob\tdeploy bot\tadded ")
            && tokens.lines().next().unwrap().ends_with("\tactive"),
        "{tokens}"
    );
    let bob_tokens: Value =
        serde_json::from_str(&g.ok(&["token", "list", "--user", "bob", "--json"])).unwrap();
    assert_eq!(bob_tokens.as_array().unwrap().len(), 1);
    assert_eq!(bob_tokens[0]["label"], "deploy bot");
    assert_ne!(bob_tokens[0]["last_used_at"], Value::Null, "used above");

    // Revoked: refused from then on; a second revoke is refused.
    assert_eq!(
        g.ok(&["token", "revoke", "1"]),
        "revoked token 1 of user bob (label deploy bot)\n"
    );
    assert_eq!(g.token_user(token), None);
    assert_eq!(g.token_user(second.trim_end()), Some("carol".into()));
    let out = g.run(&["token", "revoke", "#1"]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(
        err.contains("revoked already") && err.contains("nothing was changed"),
        "{err}"
    );
    assert!(
        g.ok(&["token", "list"])
            .lines()
            .next()
            .unwrap()
            .contains("\trevoked ")
    );

    // Every change audited with its actor, without a revision, and without a secret.
    let audit = g.ok(&["audit"]);
    let lines: Vec<&str> = audit.lines().collect();
    assert!(
        lines[0].ends_with("\trev -\tcli:test\trevoke token #1"),
        "{audit}"
    );
    assert!(
        lines[1].ends_with("\trev -\tcli:test\tadd token #2"),
        "{audit}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.ends_with("\trev -\tcli:test\tadd user #1"))
    );
    let json = g.ok(&["audit", "--json"]);
    for secret in [password.as_str(), admin.as_str(), token, second.trim_end()] {
        assert!(!json.contains(secret));
    }
    assert!(!json.contains("$argon2"));
}

#[test]
fn bad_users_and_tokens_exit_2_with_the_reason_and_change_nothing() {
    let g = Gate::new();
    g.ok(&["tenant", "add", "acme", "--domain", "acme.example"]);
    g.ok(&["user", "add", "alice", "--role", "admin"]);
    let before = sha(&g.db_path());
    let cases: &[(&[&str], &str)] = &[
        (
            &["user", "add", "x", "--role", "admin", "--tenant", "acme"],
            "role admin cannot have a tenant",
        ),
        (
            &["user", "add", "x", "--role", "tenant-admin"],
            "role tenant-admin needs a tenant",
        ),
        (
            &[
                "user",
                "add",
                "x",
                "--role",
                "tenant-admin",
                "--tenant",
                "nobody",
            ],
            "unknown tenant `nobody`",
        ),
        (
            &["user", "add", "x", "--role", "viewer", "--tenant", "nobody"],
            "unknown tenant `nobody`",
        ),
        (
            &["user", "add", "x", "--role", "root"],
            "unknown role `root`",
        ),
        (
            &["user", "add", "x", "--role", "Admin"],
            "unknown role `Admin`",
        ),
        (
            &["user", "add", "bob smith", "--role", "viewer"],
            "invalid user name `bob smith`",
        ),
        (
            &["user", "add", "ALICE", "--role", "viewer"],
            "user `alice` already exists",
        ),
        (&["token", "add", "--user", "nobody"], "no user `nobody`"),
        (
            &["token", "add", "--user", "alice", "--label", "a\u{1b}[2Jb"],
            "invalid token label",
        ),
        (&["token", "revoke", "7"], "no token 7"),
        (&["token", "revoke", "seven"], "not a token id"),
    ];
    for (args, reason) in cases {
        let out = g.run(args);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(reason), "{args:?}: {err}");
        assert!(!err.contains('\u{1b}'), "{args:?}: {err:?}");
        assert!(out.stdout.is_empty(), "{args:?} printed {:?}", out.stdout);
    }
    assert!(
        sha(&g.db_path()) == before,
        "a refused command changed the database"
    );
    // Reading commands refuse without saying they changed nothing.
    let out = g.run(&["token", "list", "--user", "nobody"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        !stderr(&out).contains("nothing was changed"),
        "{}",
        stderr(&out)
    );
}
