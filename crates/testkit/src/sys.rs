//! Small operating-system helpers: finding programs, users, free ports, and processes by PID
//! (Linux `/proc`). Processes are only ever signalled by their PID, never by name.

use std::net::{Ipv4Addr, SocketAddrV4, TcpListener};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal};

use crate::error::{Error, Result};

/// Directories searched after `PATH` (a test runner's `PATH` may lack the sbin directories).
const EXTRA_DIRS: [&str; 4] = ["/usr/sbin", "/usr/bin", "/sbin", "/bin"];

/// The absolute path of `program`, from `PATH` or the usual system directories.
pub(crate) fn find_program(program: &'static str, package: &'static str) -> Result<PathBuf> {
    let path_var = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path_var)
        .chain(EXTRA_DIRS.iter().map(PathBuf::from))
        .map(|dir| dir.join(program))
        .find(|candidate| is_executable(candidate))
        .ok_or(Error::MissingProgram { program, package })
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// This process's effective user id.
pub(crate) fn effective_uid() -> u32 {
    rustix::process::geteuid().as_raw()
}

/// The uid and gid of the local user `name` (from `/etc/passwd`).
pub(crate) fn user_ids(name: &str) -> Result<(u32, u32)> {
    let passwd =
        std::fs::read_to_string("/etc/passwd").map_err(|e| Error::io("reading /etc/passwd", e))?;
    passwd
        .lines()
        .map(|line| line.split(':').collect::<Vec<_>>())
        .find(|fields| fields.first() == Some(&name) && fields.len() >= 4)
        .and_then(|fields| Some((fields[2].parse().ok()?, fields[3].parse().ok()?)))
        .ok_or_else(|| {
            Error::Invalid(format!(
                "no user `{name}` in /etc/passwd (Debian's postfix package creates `postfix`; \
                 `nobody` is a base user)"
            ))
        })
}

/// A TCP port on 127.0.0.1 that was free a moment ago: bind port 0, read the port, release it.
/// Another process may take it before the caller binds it; callers detect that and retry.
pub(crate) fn free_port() -> Result<u16> {
    let listener = TcpListener::bind(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0))
        .map_err(|e| Error::io("binding 127.0.0.1:0 to find a free port", e))?;
    let port = listener
        .local_addr()
        .map_err(|e| Error::io("reading the address of a bound socket", e))?
        .port();
    Ok(port)
}

/// What `/proc/PID/stat` says about a process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ProcStat {
    /// `R`, `S`, `D`, `Z`, …
    pub(crate) state: char,
    /// The session id (Postfix's master calls `setsid`, so its daemons share its PID here).
    pub(crate) session: i32,
    /// Start time in clock ticks after boot: with the PID, it names one process for good.
    pub(crate) start_time: u64,
}

/// Parse the contents of `/proc/PID/stat`.
pub(crate) fn parse_proc_stat(text: &str) -> Option<ProcStat> {
    // "pid (comm) state ppid pgrp session … starttime(22nd field) …"; comm may hold anything,
    // so split after the last ')'.
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    Some(ProcStat {
        state: fields.first()?.chars().next()?,
        session: fields.get(3)?.parse().ok()?,
        start_time: fields.get(19)?.parse().ok()?,
    })
}

/// The process `pid`'s status, or `None` when there is no such process.
pub(crate) fn proc_stat(pid: i32) -> Option<ProcStat> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_proc_stat(&text)
}

/// Whether process `pid` exists and has not exited (a zombie counts as gone: it runs nothing).
pub(crate) fn is_running(pid: i32) -> bool {
    proc_stat(pid).is_some_and(|s| !matches!(s.state, 'Z' | 'X' | 'x'))
}

/// Send `signal` to process `pid`; a process that is already gone is not an error.
pub(crate) fn signal(pid: i32, signal: Signal) {
    if let Some(pid) = Pid::from_raw(pid) {
        // ESRCH (already gone) is the only expected failure; nothing to do about others.
        let _ = rustix::process::kill_process(pid, signal);
    }
}

/// The running processes of session `sid` (the session leader included).
pub(crate) fn session_members(sid: i32) -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&pid| {
            proc_stat(pid).is_some_and(|s| s.session == sid && !matches!(s.state, 'Z' | 'X' | 'x'))
        })
        .collect()
}

/// Wait until none of `pids` runs any more; `false` when `timeout` passed first.
pub(crate) fn wait_gone(pids: &[i32], timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if !pids.iter().any(|&pid| is_running(pid)) {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The file paths process `pid` has open (from `/proc/PID/fd`).
pub(crate) fn open_files(pid: i32) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| std::fs::read_link(entry.ok()?.path()).ok())
        .collect()
}

/// Process `pid`'s working directory.
pub(crate) fn cwd(pid: i32) -> Option<PathBuf> {
    std::fs::read_link(format!("/proc/{pid}/cwd")).ok()
}

/// Process `pid`'s command line, arguments separated by spaces.
pub(crate) fn cmdline(pid: i32) -> Option<String> {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    Some(String::from_utf8_lossy(&raw).replace('\0', " "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_stat_parses_odd_command_names() {
        let text = "4242 (smtp (x) y) S 1 4242 4242 0 -1 4194560 137 0 0 0 0 0 0 0 20 0 1 0 \
                    987654 2000000 300 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0";
        assert_eq!(
            parse_proc_stat(text),
            Some(ProcStat {
                state: 'S',
                session: 4242,
                start_time: 987654
            })
        );
        assert_eq!(parse_proc_stat("garbage"), None);
    }

    #[test]
    fn this_process_runs_and_is_found() {
        let me = i32::try_from(std::process::id()).unwrap();
        assert!(is_running(me));
        assert!(cmdline(me).is_some());
        assert!(find_program("sh", "dash").is_ok());
        assert!(matches!(
            find_program("no-such-program-anywhere", "nothing"),
            Err(Error::MissingProgram { .. })
        ));
    }
}
