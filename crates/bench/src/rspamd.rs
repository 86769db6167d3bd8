//! The baseline of `allowgate-bench policy`: Debian's rspamd on loopback, answering `/checkv2`
//! with one IP-list rule over the same entries.
//!
//! rspamd runs with its packaged configuration (`/etc/rspamd/rspamd.conf`) and a private
//! `LOCAL_CONFDIR` that adds two `multimap` rules of type `ip` — `ALLOWGATE_ALLOW` over the
//! allow and ignore entries, `ALLOWGATE_BLOCK` over the block entries (ranges split into
//! CIDRs, which is all an rspamd IP map takes) — binds its workers to free loopback ports,
//! points DNS at a dead loopback port (nothing leaves the machine), and logs errors only (as
//! allowgate logs no per-request line at its default level). Its normal worker runs one
//! process per core. Each request carries `Settings: {"symbols_enabled": [the two rules]}`:
//! rspamd runs only the IP-list rule, the fairest baseline for a decision on the client IP.
//!
//! The process is started as root with `-u _rspamd -g _rspamd` (as the Debian service does)
//! and killed by its PID when [`Rspamd`] is dropped.

use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::data::{self, Family};

/// The two rules' symbols.
pub const SYMBOLS: [&str; 2] = ["ALLOWGATE_ALLOW", "ALLOWGATE_BLOCK"];

/// A running rspamd; killed when dropped.
pub struct Rspamd {
    child: Child,
    /// The normal worker's address (`/checkv2`).
    pub addr: SocketAddr,
    dir: PathBuf,
}

impl Drop for Rspamd {
    fn drop(&mut self) {
        // The main process stops its workers on SIGTERM; SIGKILL would orphan them.
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> Result<u16, String> {
    let l = TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    Ok(l.local_addr().map_err(|e| e.to_string())?.port())
}

/// The CIDRs that cover `start..=end` exactly (`start <= end`), in a family of `bits` bits.
pub fn cidrs(start: u128, end: u128, bits: u32) -> Vec<(u128, u32)> {
    // The last address of a block of 2^host addresses that starts at `at`.
    let last_of = |at: u128, host: u32| {
        let span_minus_1 = if host >= 128 {
            u128::MAX
        } else {
            (1u128 << host) - 1
        };
        at.checked_add(span_minus_1)
    };
    let mut out = Vec::new();
    let mut at = start;
    loop {
        // The largest block aligned at `at` that ends within `end` (one address always does).
        let mut host = if at == 0 {
            bits
        } else {
            at.trailing_zeros().min(bits)
        };
        while host > 0 && last_of(at, host).is_none_or(|last| last > end) {
            host -= 1;
        }
        out.push((at, bits - host));
        let last = last_of(at, host).unwrap_or(end);
        if last >= end {
            return out;
        }
        at = last + 1;
    }
}

fn map_line(out: &mut String, e: &data::Entry) {
    let (bits, show): (u32, fn(u128) -> String) = match e.family {
        Family::V4 => (32, |k| Ipv4Addr::from(k as u32).to_string()),
        Family::V6 => (128, |k| Ipv6Addr::from(k).to_string()),
    };
    for (net, len) in cidrs(e.start, e.end, bits) {
        let _ = writeln!(out, "{}/{len}", show(net));
    }
}

/// One `/checkv2` request for client `ip`: the envelope in headers, a small message.
pub fn request(ip: IpAddr, i: usize) -> Vec<u8> {
    let body = format!(
        "From: <news{i}@sender.test>\r\nTo: <bob@example.test>\r\nSubject: hello {i}\r\n\
         Message-ID: <{i}@sender.test>\r\nDate: Tue, 01 Dec 2026 08:00:00 +0000\r\n\r\nHello.\r\n"
    );
    let settings = format!(
        "{{\"symbols_enabled\":[\"{}\",\"{}\"]}}",
        SYMBOLS[0], SYMBOLS[1]
    );
    format!(
        "POST /checkv2 HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: keep-alive\r\nIP: {ip}\r\n\
         From: news{i}@sender.test\r\nRcpt: bob@example.test\r\nHelo: mx{i}.sender.test\r\n\
         Settings: {settings}\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// Start rspamd in `dir` over these entries (allow and ignore in one map, block in the
/// other) and wait until it answers and its maps are loaded: a request from the first allow
/// entry's first address shows `ALLOWGATE_ALLOW`.
pub fn start(dir: &Path, allow: &[data::Entry], block: &[data::Entry]) -> Result<Rspamd, String> {
    let first = allow.first().ok_or("no allow entries")?;
    let probe = data::to_ip(first.family, first.start);
    let io = |e: std::io::Error| format!("rspamd set-up in {}: {e}", dir.display());
    for sub in ["local/override.d", "local/local.d", "db", "run", "log"] {
        std::fs::create_dir_all(dir.join(sub)).map_err(io)?;
    }
    let mut allow_map = String::new();
    for e in allow {
        map_line(&mut allow_map, e);
    }
    let mut block_map = String::new();
    for e in block {
        map_line(&mut block_map, e);
    }
    std::fs::write(dir.join("allow.map"), allow_map).map_err(io)?;
    std::fs::write(dir.join("block.map"), block_map).map_err(io)?;
    let port = free_port()?;
    let files = [
        (
            "local/override.d/worker-normal.inc",
            format!("bind_socket = \"127.0.0.1:{port}\";\ncount = 2;\n"),
        ),
        (
            "local/override.d/worker-controller.inc",
            format!(
                "bind_socket = \"127.0.0.1:{}\";\ncount = 1;\n",
                free_port()?
            ),
        ),
        (
            "local/override.d/worker-proxy.inc",
            format!(
                "bind_socket = \"127.0.0.1:{}\";\ncount = 1;\n",
                free_port()?
            ),
        ),
        (
            "local/override.d/logging.inc",
            format!(
                "type = \"file\";\nfilename = \"{}\";\nlevel = \"error\";\n",
                dir.join("log/rspamd.log").display()
            ),
        ),
        (
            "local/local.d/options.inc",
            "dns { nameserver = [\"127.0.0.1:9\"]; timeout = 1s; retransmits = 1; }\n".into(),
        ),
        (
            "local/local.d/multimap.conf",
            format!(
                "ALLOWGATE_ALLOW {{ type = \"ip\"; map = \"file://{}\"; symbol = \"ALLOWGATE_ALLOW\"; \
                 description = \"allow list\"; score = -10.0; }}\n\
                 ALLOWGATE_BLOCK {{ type = \"ip\"; map = \"file://{}\"; symbol = \"ALLOWGATE_BLOCK\"; \
                 description = \"block list\"; score = 20.0; }}\n",
                dir.join("allow.map").display(),
                dir.join("block.map").display()
            ),
        ),
    ];
    for (path, text) in files {
        std::fs::write(dir.join(path), text).map_err(io)?;
    }
    let status = Command::new("chown")
        .args(["-R", "_rspamd:_rspamd"])
        .arg(dir)
        .status()
        .map_err(|e| format!("chown: {e}"))?;
    if !status.success() {
        return Err("chown _rspamd failed (the rspamd baseline needs root)".into());
    }
    let var = |name: &str, sub: &str| format!("--var={name}={}", dir.join(sub).display());
    let child = Command::new("rspamd")
        .args([
            "-f",
            "-u",
            "_rspamd",
            "-g",
            "_rspamd",
            "-c",
            "/etc/rspamd/rspamd.conf",
        ])
        .arg(var("LOCAL_CONFDIR", "local"))
        .arg(var("DBDIR", "db"))
        .arg(var("RUNDIR", "run"))
        .arg(var("LOGDIR", "log"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot run rspamd (apt-get install rspamd): {e}"))?;
    let rspamd = Rspamd {
        child,
        addr: SocketAddr::from(([127, 0, 0, 1], port)),
        dir: dir.to_path_buf(),
    };
    let deadline = Instant::now() + Duration::from_secs(90);
    let probe_request = request(probe, 0);
    loop {
        if let Ok(reply) = check_blocking(rspamd.addr, &probe_request)
            && reply.contains(SYMBOLS[0])
        {
            return Ok(rspamd);
        }
        if Instant::now() > deadline {
            let log =
                std::fs::read_to_string(rspamd.dir.join("log/rspamd.log")).unwrap_or_default();
            return Err(format!(
                "rspamd did not answer with its maps loaded within 90 s; log:\n{log}"
            ));
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// One request on a new connection, blocking: the reply's body.
fn check_blocking(addr: SocketAddr, request: &[u8]) -> Result<String, String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(1))
        .map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(|e| e.to_string())?;
    s.write_all(request).map_err(|e| e.to_string())?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = s.read(&mut chunk).map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("closed".into());
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some((body, _)) = complete_response(&buf)? {
            return Ok(String::from_utf8_lossy(body).into_owned());
        }
    }
}

/// A complete HTTP/1.1 response in `buf`: its body, and whether the server keeps the
/// connection open (`None`: not all there yet); `Err` for a status other than 200 or no
/// `Content-Length`.
pub fn complete_response(buf: &[u8]) -> Result<Option<(&[u8], bool)>, String> {
    let Some(head_end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        return Ok(None);
    };
    let head = std::str::from_utf8(&buf[..head_end]).map_err(|e| e.to_string())?;
    if !head.starts_with("HTTP/1.1 200") && !head.starts_with("HTTP/1.0 200") {
        return Err(format!(
            "rspamd answered {:?}",
            head.lines().next().unwrap_or_default()
        ));
    }
    let length: usize = head
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse().ok())?
        })
        .ok_or("no Content-Length in rspamd's reply")?;
    // rspamd answers `Connection: close` unless the request asked for keep-alive and it
    // agrees; HTTP/1.0 closes unless it says keep-alive.
    let connection = head.lines().find_map(|l| {
        let (name, value) = l.split_once(':')?;
        name.eq_ignore_ascii_case("connection")
            .then(|| value.trim().to_ascii_lowercase())
    });
    let keep_alive = match connection.as_deref() {
        Some("close") => false,
        Some("keep-alive") => true,
        _ => head.starts_with("HTTP/1.1"),
    };
    let body = head_end + 4;
    Ok((buf.len() >= body + length).then(|| (&buf[body..body + length], keep_alive)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidrs_cover_ranges_exactly() {
        assert_eq!(cidrs(0, u32::MAX as u128, 32), vec![(0, 0)]);
        assert_eq!(cidrs(10, 10, 32), vec![(10, 32)]);
        // 192.0.2.10-192.0.2.99
        let start = u128::from(u32::from(Ipv4Addr::new(192, 0, 2, 10)));
        let end = u128::from(u32::from(Ipv4Addr::new(192, 0, 2, 99)));
        let blocks = cidrs(start, end, 32);
        let mut at = start;
        for (net, len) in &blocks {
            assert_eq!(*net, at);
            at += 1u128 << (32 - len);
        }
        assert_eq!(at, end + 1);
        assert_eq!(cidrs(0, u128::MAX, 128), vec![(0, 0)]);
        assert_eq!(cidrs(u128::MAX, u128::MAX, 128), vec![(u128::MAX, 128)]);
    }

    #[test]
    fn responses_are_complete_only_with_their_whole_body() {
        let r = b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nab";
        assert_eq!(complete_response(r), Ok(None));
        let r = b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\nabcd";
        assert_eq!(complete_response(r), Ok(Some((&b"abcd"[..], true))));
        let r = b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n";
        assert_eq!(complete_response(r), Ok(Some((&b""[..], false))));
        assert!(complete_response(b"HTTP/1.1 500 Oops\r\nContent-Length: 0\r\n\r\n").is_err());
    }
}
