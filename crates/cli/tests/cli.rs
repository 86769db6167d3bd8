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

    fn run(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_allowgate"))
            .arg("--db")
            .arg(format!("sqlite://{}", self.db_path().display()))
            .args(args)
            .env("ALLOWGATE_ACTOR", "test")
            .env_remove("ALLOWGATE_DB")
            .output()
            .unwrap()
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
