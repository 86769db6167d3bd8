//! The product under test: the release `allowgate serve` binary (beside the bench binary in
//! `target/release/`), started on a database with every listener on a free loopback port,
//! stopped with SIGTERM (then killed, by its PID) when dropped.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// `allowgate serve` (the release binary beside this one); stopped with SIGTERM on drop.
pub struct Serve {
    child: Child,
    /// The policy server's address.
    pub policy: SocketAddr,
    /// The milter's address.
    pub milter: SocketAddr,
    /// The health and metrics listener's address.
    pub http: SocketAddr,
}

impl Serve {
    /// Start it on `db` with `threads` worker threads (0: its default, one per core); wait
    /// for its `listening` line.
    pub fn start_with_threads(db: &str, threads: usize, dir: &Path) -> Result<Serve, String> {
        if threads == 0 {
            return Serve::start(db, &[]);
        }
        let config = dir.join("serve.toml");
        std::fs::write(&config, format!("[runtime]\nworker_threads = {threads}\n"))
            .map_err(|e| e.to_string())?;
        let config = config.display().to_string();
        Serve::start(db, &["--config", &config])
    }

    /// Start it on `db` with `extra` arguments; wait for its `listening` line.
    pub fn start(db: &str, extra: &[&str]) -> Result<Serve, String> {
        let exe = std::env::current_exe().map_err(|e| e.to_string())?;
        let binary = exe.with_file_name("allowgate");
        if !binary.exists() {
            return Err(format!(
                "{} is missing: cargo build --release -p allowgate -p allowgate-bench",
                binary.display()
            ));
        }
        let mut child = Command::new(&binary)
            .args(["--db", db, "serve", "--policy", "127.0.0.1:0", "--milter"])
            .args(["127.0.0.1:0", "--http", "127.0.0.1:0"])
            .args(extra)
            .env_remove("ALLOWGATE_DB")
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot run {}: {e}", binary.display()))?;
        let stderr = child.stderr.take().ok_or("no stderr")?;
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let field = |name: &str| {
                    line.split_whitespace()
                        .find_map(|w| w.strip_prefix(name))
                        .and_then(|a| a.parse::<SocketAddr>().ok())
                };
                if line.contains("listening")
                    && let (Some(p), Some(m), Some(h)) =
                        (field("policy="), field("milter="), field("http="))
                {
                    let _ = tx.send((p, m, h));
                }
            }
        });
        match rx.recv_timeout(Duration::from_secs(60)) {
            Ok((policy, milter, http)) => Ok(Serve {
                child,
                policy,
                milter,
                http,
            }),
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                Err("allowgate serve did not say `listening` within 60 s".into())
            }
        }
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Its resident memory (`VmRSS`), in KiB.
    pub fn rss_kib(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).ok()?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
    }

    /// `GET /metrics`: the Prometheus text.
    pub fn metrics(&self) -> Result<String, String> {
        let mut s = std::net::TcpStream::connect_timeout(&self.http, Duration::from_secs(5))
            .map_err(|e| e.to_string())?;
        s.set_read_timeout(Some(Duration::from_secs(10)))
            .map_err(|e| e.to_string())?;
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            .map_err(|e| e.to_string())?;
        let mut text = String::new();
        s.read_to_string(&mut text).map_err(|e| e.to_string())?;
        let (_, body) = text.split_once("\r\n\r\n").ok_or("no HTTP body")?;
        Ok(body.to_string())
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let deadline = Instant::now() + Duration::from_secs(15);
        while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
