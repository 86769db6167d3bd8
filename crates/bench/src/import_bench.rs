//! `allowgate-bench import`: 100,000 entries (a ~2 MB text file) through the `allowgate` CLI
//! into a fresh SQLite file, timed end to end (process start, migrations, parsing, validation,
//! one transaction with audit rows, checkpoint on close). Baselines in the same run: the same
//! CLI doing nothing but open the store (fixed cost), and the `sqlite3` shell inserting the
//! same values as bare rows in one transaction (the floor for "write 100k rows to SQLite").

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use crate::data::Rng;
use crate::median;

/// The import cap (2 MB), which the generated file stays under.
const MAX_BYTES: usize = 2 * 1024 * 1024;

struct Options {
    entries: usize,
    rounds: usize,
    bin: PathBuf,
}

fn parse(args: &[String]) -> Result<Options, String> {
    let mut o = Options {
        entries: 100_000,
        rounds: 5,
        bin: PathBuf::from("target/release/allowgate"),
    };
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--entries" => o.entries = value.parse().map_err(|e| format!("--entries: {e}"))?,
            "--rounds" => o.rounds = value.parse().map_err(|e| format!("--rounds: {e}"))?,
            "--bin" => o.bin = PathBuf::from(value),
            other => {
                return Err(format!(
                    "unknown flag {other}\nusage: allowgate-bench import [--entries 100000] [--rounds 5] \
                     [--bin target/release/allowgate]"
                ));
            }
        }
    }
    Ok(o)
}

/// A server-family import file: 60% IPv4 addresses, CIDRs and ranges, 40% host
/// names, one line in three with a comment; as close to 2 MB as the cap allows.
pub fn file(entries: usize, seed: u64) -> (String, Vec<String>) {
    let mut rng = Rng::new(seed);
    let mut text = String::with_capacity(MAX_BYTES);
    let mut values = Vec::with_capacity(entries);
    text.push_str("# allowgate import benchmark: partner relays\n");
    for i in 0..entries {
        let value = match i % 10 {
            0..=3 => {
                let a = rng.next_u32() | 0x0100_0000;
                format!("{}", std::net::Ipv4Addr::from(a))
            }
            4 => {
                let len = rng.between(20, 31);
                let a = rng.next_u32() & (u32::MAX << (32 - len))
                    | 0x0100_0000 & (u32::MAX << (32 - len));
                format!("{}/{len}", std::net::Ipv4Addr::from(a))
            }
            5 => {
                let a = rng.next_u32() | 0x0100_0000;
                let b = a.saturating_add(rng.between(1, 500));
                format!(
                    "{}-{}",
                    std::net::Ipv4Addr::from(a),
                    std::net::Ipv4Addr::from(b)
                )
            }
            _ => format!("h{i}.example"),
        };
        text.push_str(&value);
        if i % 3 == 0 {
            let _ = write!(text, " # t{}", rng.below(100_000));
        }
        text.push('\n');
        values.push(value);
    }
    (text, values)
}

fn run_timed(cmd: &mut Command) -> Result<f64, String> {
    let started = Instant::now();
    let out = cmd
        .output()
        .map_err(|e| format!("cannot run {cmd:?}: {e}"))?;
    let secs = started.elapsed().as_secs_f64();
    if !out.status.success() {
        return Err(format!(
            "{cmd:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(secs)
}

fn fresh_dir(base: &Path, name: &str) -> Result<PathBuf, String> {
    let dir = base.join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    Ok(dir)
}

/// Runs the import benchmark and prints a markdown table.
pub fn run(args: &[String]) -> Result<(), String> {
    let o = parse(args)?;
    if !o.bin.exists() {
        return Err(format!(
            "{} not found: build it first with `cargo build --release -p allowgate`",
            o.bin.display()
        ));
    }
    let base = std::env::temp_dir().join(format!("allowgate-import-bench-{}", std::process::id()));
    let (text, values) = file(o.entries, 0x1A9_0A7E);
    if text.len() > MAX_BYTES {
        return Err(format!(
            "generated file is {} bytes, over the cap",
            text.len()
        ));
    }
    std::fs::create_dir_all(&base).map_err(|e| e.to_string())?;
    let input = base.join("relays.txt");
    std::fs::write(&input, &text).map_err(|e| e.to_string())?;
    // The same values as bare SQL for the sqlite3 baseline.
    let mut sql = String::from("CREATE TABLE t (value TEXT PRIMARY KEY);\nBEGIN;\n");
    for v in &values {
        let _ = writeln!(sql, "INSERT OR IGNORE INTO t VALUES ('{v}');");
    }
    sql.push_str("COMMIT;\n");
    let sql_file = base.join("rows.sql");
    std::fs::write(&sql_file, &sql).map_err(|e| e.to_string())?;
    let have_sqlite3 = Command::new("sqlite3")
        .arg("-version")
        .output()
        .is_ok_and(|o| o.status.success());

    let (mut ours, mut open_only, mut raw) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..o.rounds {
        eprintln!("[import] round {}/{}", round + 1, o.rounds);
        let dir = fresh_dir(&base, "open")?;
        open_only.push(run_timed(
            Command::new(&o.bin)
                .arg("--db")
                .arg(format!("sqlite://{}", dir.join("a.db").display()))
                .args(["entry", "list"]),
        )?);
        let dir = fresh_dir(&base, "import")?;
        let db = format!("sqlite://{}", dir.join("a.db").display());
        ours.push(run_timed(
            Command::new(&o.bin)
                .arg("--db")
                .arg(&db)
                .arg("import")
                .arg(&input)
                .args([
                    "--list",
                    "allow",
                    "--type",
                    "server",
                    "--bypass",
                    "spf,rbl,greylisting",
                ]),
        )?);
        let count = Command::new(&o.bin)
            .arg("--db")
            .arg(&db)
            .args(["entry", "list"])
            .output()
            .map_err(|e| e.to_string())?
            .stdout
            .iter()
            .filter(|&&b| b == b'\n')
            .count();
        if count != values.len() {
            return Err(format!(
                "imported {count} entries, expected {}",
                values.len()
            ));
        }
        if have_sqlite3 {
            let dir = fresh_dir(&base, "raw")?;
            raw.push(run_timed(
                Command::new("sqlite3")
                    .arg(dir.join("raw.db"))
                    .arg(format!(".read {}", sql_file.display())),
            )?);
        }
    }
    let _ = std::fs::remove_dir_all(&base);

    let ours_s = median(&ours);
    println!(
        "### Import: {} entries, {} bytes, text, `--type server` (median of {} rounds)\n",
        values.len(),
        text.len(),
        o.rounds
    );
    println!("| what | median s | ours / this |");
    println!("|---|---:|---:|");
    println!("| **allowgate import** (CLI, end to end) | {ours_s:.3} | 1.00× |");
    let open_s = median(&open_only);
    println!(
        "| allowgate entry list on an empty store (process + open + migrations) | {open_s:.3} | {:.1}× |",
        ours_s / open_s
    );
    if have_sqlite3 {
        let raw_s = median(&raw);
        println!(
            "| sqlite3 shell: the same values as bare one-column rows, one transaction | {raw_s:.3} | {:.2}× |",
            ours_s / raw_s
        );
    }
    println!(
        "\nGoal: under 2 s. allowgate validates and normalises every value, writes 13 columns \
         plus one audit row per entry and a revision, in one transaction."
    );
    Ok(())
}
