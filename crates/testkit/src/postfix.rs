//! [`Postfix`]: one private, real Postfix instance on loopback with smtp-sink behind it.

use std::io::{BufRead, BufReader, Read as _, Seek as _, SeekFrom, Write as _};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use rustix::process::Signal;

use crate::config::{self, Layout, PostfixConfig};
use crate::error::{Error, Result, tail_lines};
use crate::mail::Mail;
use crate::sink::DeliveredMessage;
use crate::swaks::SendResult;
use crate::sys;

/// Set this environment variable (to anything but `0` or empty) to keep every instance's
/// directory (config, queue, maillog, sink files) after its test; the path is printed.
pub const KEEP_ENV: &str = "ALLOWGATE_TESTKIT_KEEP";

/// How long to wait for Postfix or smtp-sink to answer on their ports after starting them.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(20);
/// How many times to pick new ports when one was taken in the meantime.
const PORT_ATTEMPTS: usize = 5;
/// Where instance directories live, under the system's temporary directory.
const PARENT_DIR: &str = "allowgate-testkit";
/// The file in an instance directory naming the test process that owns it.
const OWNER_FILE: &str = "owner";
/// The file in an instance directory that asks the stale-instance sweep to keep it.
const KEPT_FILE: &str = "kept";

/// The programs the harness runs, found once per instance.
#[derive(Debug, Clone)]
struct Programs {
    postfix: PathBuf,
    postqueue: PathBuf,
    smtp_sink: PathBuf,
    swaks: PathBuf,
}

impl Programs {
    fn find() -> Result<Programs> {
        Ok(Programs {
            postfix: sys::find_program("postfix", "postfix")?,
            postqueue: sys::find_program("postqueue", "postfix")?,
            smtp_sink: sys::find_program("smtp-sink", "postfix")?,
            swaks: sys::find_program("swaks", "swaks")?,
        })
    }
}

/// A private Postfix instance on `127.0.0.1`, relaying [`PostfixConfig::relay_domains`] to an
/// smtp-sink that writes every message to a file.
///
/// Each instance has its own directory (config, queue, data, maillog, sink files) under
/// `$TMPDIR/allowgate-testkit/`, its own smtpd and sink ports (free ports picked at start), and
/// its own master process: any number may run at once, in one test process or many.
///
/// Dropping it stops everything it started, by PID, also when the test panicked: `postfix -c
/// DIR stop`, then `SIGKILL` to any process of the master's session still running in the
/// instance's queue directory, then smtp-sink; then the directory is removed (see
/// [`KEEP_ENV`]). When a test panics, the maillog's last lines are printed to stderr. An
/// instance whose test process died without dropping it (e.g. killed by a timeout) is stopped
/// and removed by the next [`Postfix::start`] on the machine.
///
/// ```no_run
/// use allowgate_testkit::{Mail, Postfix, PostfixConfig};
/// use std::time::Duration;
///
/// let postfix = Postfix::require(PostfixConfig::default());
/// let sent = postfix.send(&Mail::new("alice@sender.test", ["bob@example.test"])
///     .client("203.0.113.9".parse().unwrap()));
/// assert!(sent.is_queued(), "{sent}");
/// let delivered = postfix.wait_delivered(1, Duration::from_secs(10));
/// assert_eq!(delivered.len(), 1, "{}", postfix.diagnostics());
/// assert_eq!(delivered[0].header("Subject"), Some("allowgate test"));
/// ```
#[derive(Debug)]
pub struct Postfix {
    config: PostfixConfig,
    id: String,
    base: PathBuf,
    /// `None` once the directory was handed over (kept) or removed.
    dir: Option<tempfile::TempDir>,
    programs: Programs,
    smtp_port: u16,
    sink_port: u16,
    sink: Option<Child>,
    master_pid: Option<i32>,
    sends: AtomicU64,
}

impl Postfix {
    /// Start an instance and its sink; return when Postfix answers on its port with its own
    /// banner and `postfix status` says it runs (typically 0.2–0.5 s).
    ///
    /// # Errors
    ///
    /// [`Error::NotRoot`] unless the process runs as root (Postfix's master must start as
    /// root); [`Error::MissingProgram`] when `postfix`, `postqueue`, `smtp-sink` or `swaks` is
    /// not installed; [`Error::Startup`] (naming the log to read) when Postfix or smtp-sink do
    /// not come up. A test must fail on any of them, never skip: use [`Postfix::require`].
    pub fn start(config: PostfixConfig) -> Result<Postfix> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let uid = sys::effective_uid();
        if uid != 0 {
            return Err(Error::NotRoot { uid });
        }
        let programs = Programs::find()?;
        let debian_master_cf = std::fs::read_to_string("/etc/postfix/master.cf").map_err(|e| {
            Error::io(
                "reading /etc/postfix/master.cf (installed by Debian's postfix package)",
                e,
            )
        })?;
        let parent = std::env::temp_dir().join(PARENT_DIR);
        std::fs::create_dir_all(&parent)
            .and_then(|()| {
                std::fs::set_permissions(&parent, std::fs::Permissions::from_mode(0o755))
            })
            .map_err(|e| Error::io(format!("creating {}", parent.display()), e))?;
        sweep_stale(&parent);

        let id = format!(
            "{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let dir = tempfile::Builder::new()
            .prefix("pf-")
            .tempdir_in(&parent)
            .map_err(|e| Error::io(format!("creating a directory in {}", parent.display()), e))?;
        let base = dir.path().to_path_buf();
        let mut postfix = Postfix {
            config,
            id,
            base,
            dir: Some(dir),
            programs,
            smtp_port: 0,
            sink_port: 0,
            sink: None,
            master_pid: None,
            sends: AtomicU64::new(0),
        };
        // From here on, an error drops `postfix`, which stops whatever was started.
        postfix.write_owner()?;
        postfix.make_directories()?;
        postfix.start_sink()?;
        postfix.write_owner()?;
        postfix.start_postfix(&debian_master_cf)?;
        Ok(postfix)
    }

    /// [`Postfix::start`], panicking with the reason when the instance cannot start: a test
    /// that needs Postfix fails without it (with or without `CI=true`), it is never skipped.
    ///
    /// # Panics
    ///
    /// When [`Postfix::start`] returns an error.
    #[track_caller]
    pub fn require(config: PostfixConfig) -> Postfix {
        match Postfix::start(config) {
            Ok(postfix) => postfix,
            Err(e) => panic!("allowgate-testkit: cannot start a Postfix test instance: {e}"),
        }
    }

    /// Where Postfix's smtpd listens (`127.0.0.1:PORT`).
    pub fn smtp_addr(&self) -> SocketAddr {
        SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, self.smtp_port))
    }

    /// Where smtp-sink, the "internal mail server" Postfix relays to, listens.
    pub fn sink_addr(&self) -> SocketAddr {
        SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, self.sink_port))
    }

    /// The configuration the instance runs with.
    pub fn config(&self) -> &PostfixConfig {
        &self.config
    }

    /// The instance's directory: `etc/` (`main.cf`, `master.cf`), `queue/`, `data/`, `sink/`
    /// (smtp-sink's files), `mail/` (what swaks sent and printed), `maillog`, `sink.log`.
    pub fn dir(&self) -> &Path {
        &self.base
    }

    /// The configuration directory, for `postconf -c`, `postqueue -c`, `postsuper -c`, ….
    pub fn config_dir(&self) -> PathBuf {
        self.base.join("etc")
    }

    /// The instance's log (`maillog_file`).
    pub fn maillog_path(&self) -> PathBuf {
        self.base.join("maillog")
    }

    /// The PID of the instance's master process.
    pub fn master_pid(&self) -> Option<i32> {
        self.master_pid
    }

    /// The PID of the instance's smtp-sink process.
    pub fn sink_pid(&self) -> Option<u32> {
        self.sink.as_ref().map(Child::id)
    }

    /// Send `mail` with swaks and report every reply.
    ///
    /// # Panics
    ///
    /// When swaks cannot be run (see [`Postfix::try_send`]); a refused mail is a normal
    /// result, not a panic.
    #[track_caller]
    pub fn send(&self, mail: &Mail) -> SendResult {
        match self.try_send(mail) {
            Ok(result) => result,
            Err(e) => panic!("allowgate-testkit: sending a mail failed: {e}"),
        }
    }

    /// Send `mail` with swaks (`--server 127.0.0.1:PORT`, XCLIENT when the mail has a client,
    /// `--data @FILE --no-data-fixup`) and parse its transcript. Takes about 0.1 s when nothing
    /// waits (a policy address where nothing listens adds about 1 s per check).
    ///
    /// # Errors
    ///
    /// The mail cannot be written for swaks (e.g. an empty recipient list), swaks cannot be
    /// run, or swaks rejected its own command line.
    pub fn try_send(&self, mail: &Mail) -> Result<SendResult> {
        let n = self.sends.fetch_add(1, Ordering::Relaxed);
        let data_path = self.base.join("mail").join(format!("{n}.eml"));
        let transcript_path = self.base.join("mail").join(format!("{n}.swaks"));
        std::fs::write(&data_path, mail.smtp_data()?)
            .map_err(|e| Error::io(format!("writing {}", data_path.display()), e))?;
        let mut command = Command::new(&self.programs.swaks);
        // `--config` without a value: no ~/.swaksrc. Values are separate arguments, never
        // parsed by a shell.
        command
            .arg("--config")
            .arg("--server")
            .arg(self.smtp_addr().to_string())
            .args(mail.swaks_args()?)
            .arg("--data")
            .arg(format!("@{}", data_path.display()))
            .arg("--no-data-fixup")
            .arg("--timeout")
            .arg("60")
            .arg("--output-file")
            .arg(&transcript_path)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("SWAKS_") {
                command.env_remove(name);
            }
        }
        let started = Instant::now();
        let output = command
            .output()
            .map_err(|e| Error::io(format!("running {}", self.programs.swaks.display()), e))?;
        let elapsed = started.elapsed();
        let transcript = std::fs::read(&transcript_path)
            .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
            .unwrap_or_default();
        if output.status.code() == Some(1) {
            return Err(Error::Command {
                command: shell_words(&command),
                status: output.status.to_string(),
                output: format!(
                    "\n{transcript}{}{}",
                    String::from_utf8_lossy(&output.stdout),
                    String::from_utf8_lossy(&output.stderr)
                ),
            });
        }
        Ok(SendResult::parse(transcript, output.status.code(), elapsed))
    }

    /// The messages the sink has received completely, oldest first.
    ///
    /// # Panics
    ///
    /// When the sink directory cannot be read (see [`Postfix::try_delivered`]).
    #[track_caller]
    pub fn delivered(&self) -> Vec<DeliveredMessage> {
        match self.try_delivered() {
            Ok(messages) => messages,
            Err(e) => panic!("allowgate-testkit: reading delivered mail failed: {e}"),
        }
    }

    /// The messages the sink has received completely, oldest first (by file time, then name).
    /// A file smtp-sink still has open (a transaction in progress) is left out.
    ///
    /// # Errors
    ///
    /// The sink directory or one of its files cannot be read.
    pub fn try_delivered(&self) -> Result<Vec<DeliveredMessage>> {
        let sink_dir = self.base.join("sink");
        let entries: Vec<std::fs::DirEntry> = std::fs::read_dir(&sink_dir)
            .and_then(|d| d.collect::<Result<_, _>>())
            .map_err(|e| Error::io(format!("reading {}", sink_dir.display()), e))?;
        // The files smtp-sink still has open, read *after* the listing: a file that appeared
        // between the two would otherwise count as complete while smtp-sink is still writing
        // it (a test then saw a message without its last headers).
        let open: Vec<PathBuf> = self
            .sink
            .as_ref()
            .and_then(|child| i32::try_from(child.id()).ok())
            .map(sys::open_files)
            .unwrap_or_default();
        let mut files: Vec<(SystemTime, PathBuf)> = Vec::new();
        for entry in entries {
            let path = entry.path();
            if open.contains(&path) {
                continue;
            }
            let modified = entry
                .metadata()
                .and_then(|m| m.modified())
                .map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
            files.push((modified, path));
        }
        files.sort();
        files
            .into_iter()
            .map(|(_, path)| {
                let bytes = std::fs::read(&path)
                    .map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
                let raw = String::from_utf8_lossy(&bytes).into_owned();
                Ok(DeliveredMessage::parse(path, raw))
            })
            .collect()
    }

    /// Wait until the sink holds at least `n` messages or `timeout` passed, and return what it
    /// holds (possibly fewer than `n`: assert the length, with [`Postfix::diagnostics`] in the
    /// message). Delivery takes a few milliseconds after `250 queued`.
    ///
    /// # Panics
    ///
    /// When the sink directory cannot be read.
    #[track_caller]
    pub fn wait_delivered(&self, n: usize, timeout: Duration) -> Vec<DeliveredMessage> {
        let deadline = Instant::now() + timeout;
        loop {
            let messages = self.delivered();
            if messages.len() >= n || Instant::now() >= deadline {
                return messages;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Every message in the instance's queues (`postqueue -j`).
    ///
    /// # Errors
    ///
    /// postqueue fails or prints something that is not its JSON.
    pub fn try_queue(&self) -> Result<Vec<QueuedMessage>> {
        let output = self.run(
            Command::new(&self.programs.postqueue)
                .arg("-c")
                .arg(self.config_dir())
                .arg("-j"),
        )?;
        String::from_utf8_lossy(&output.stdout)
            .lines()
            .filter(|line| !line.trim().is_empty())
            .map(QueuedMessage::parse)
            .collect()
    }

    /// Every message in the instance's queues.
    ///
    /// # Panics
    ///
    /// When [`Postfix::try_queue`] fails.
    #[track_caller]
    pub fn queue(&self) -> Vec<QueuedMessage> {
        match self.try_queue() {
            Ok(queue) => queue,
            Err(e) => panic!("allowgate-testkit: listing the queue failed: {e}"),
        }
    }

    /// The queue ids in the hold queue (where `HOLD` from a policy service or a milter's
    /// quarantine puts a message; it is there when `250 queued` was sent).
    ///
    /// # Panics
    ///
    /// When [`Postfix::try_queue`] fails.
    #[track_caller]
    pub fn hold_queue(&self) -> Vec<String> {
        self.queue()
            .into_iter()
            .filter(|m| m.queue_name == "hold")
            .map(|m| m.queue_id)
            .collect()
    }

    /// The instance's log so far (empty when there is none yet). Postfix's postlogd writes it
    /// asynchronously, a few milliseconds behind: see [`Postfix::wait_for_log`].
    pub fn maillog(&self) -> String {
        std::fs::read(self.maillog_path())
            .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
            .unwrap_or_default()
    }

    /// Wait until a line of the maillog contains `needle` and return it; `None` after
    /// `timeout`.
    pub fn wait_for_log(&self, needle: &str, timeout: Duration) -> Option<String> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(line) = self.maillog().lines().find(|l| l.contains(needle)) {
                return Some(line.to_owned());
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// What to print when an assertion about this instance fails: where its files are, its
    /// queue, and the maillog's last lines.
    pub fn diagnostics(&self) -> String {
        let queue = match self.try_queue() {
            Ok(queue) if queue.is_empty() => "empty".to_owned(),
            Ok(queue) => queue
                .iter()
                .map(|m| format!("{} {} {:?}", m.queue_name, m.queue_id, m.delay_reasons))
                .collect::<Vec<_>>()
                .join("; "),
            Err(e) => e.to_string(),
        };
        format!(
            "Postfix test instance {} in {} (smtpd {}, sink {}); queue: {queue}{}",
            self.id,
            self.base.display(),
            self.smtp_addr(),
            self.sink_addr(),
            tail_lines("maillog", &self.maillog(), 40)
        )
    }

    /// Point the policy service at `policy` (or remove it) and reload Postfix.
    ///
    /// # Errors
    ///
    /// As [`Postfix::reconfigure`].
    pub fn set_policy(&mut self, policy: Option<SocketAddr>) -> Result<()> {
        let mut config = self.config.clone();
        config.policy = policy;
        self.reconfigure(config)
    }

    /// Point the milter at `milter` (or remove it) and reload Postfix.
    ///
    /// # Errors
    ///
    /// As [`Postfix::reconfigure`].
    pub fn set_milter(&mut self, milter: Option<SocketAddr>) -> Result<()> {
        let mut config = self.config.clone();
        config.milter = milter;
        self.reconfigure(config)
    }

    /// Rewrite `main.cf` and `master.cf` from `config` and reload Postfix; the next connection
    /// gets the new configuration.
    ///
    /// # Errors
    ///
    /// `config` cannot be written, or the reload fails (see [`Postfix::reload`]).
    pub fn reconfigure(&mut self, config: PostfixConfig) -> Result<()> {
        let debian = std::fs::read_to_string("/etc/postfix/master.cf")
            .map_err(|e| Error::io("reading /etc/postfix/master.cf", e))?;
        self.config = config;
        self.write_config(&debian)?;
        self.reload()
    }

    /// `postfix -c DIR reload`, then wait until every smtpd process of the old configuration
    /// has exited (they do at once when idle), so that the next connection is served with the
    /// new one. Policy connections are cached per smtpd process, so they are new too.
    ///
    /// # Errors
    ///
    /// `postfix reload` fails, or an old smtpd is still running after 10 s (a client connection
    /// left open keeps it).
    pub fn reload(&self) -> Result<()> {
        let old_smtpd: Vec<i32> = self
            .master_pid
            .map(sys::session_members)
            .unwrap_or_default()
            .into_iter()
            .filter(|&pid| {
                std::fs::read_to_string(format!("/proc/{pid}/comm"))
                    .is_ok_and(|comm| comm.trim() == "smtpd")
            })
            .collect();
        self.postfix_command("reload")?;
        if !sys::wait_gone(&old_smtpd, Duration::from_secs(10)) {
            return Err(Error::Startup {
                what: format!(
                    "after `postfix reload`, smtpd processes {old_smtpd:?} of the old \
                     configuration still run after 10 s (is a client connection open?)"
                ),
                log: self.maillog_path(),
                tail: tail_lines("maillog", &self.maillog(), 20),
            });
        }
        Ok(())
    }

    // --- starting ---------------------------------------------------------------------------

    fn write_owner(&self) -> Result<()> {
        let me = i32::try_from(std::process::id()).unwrap_or(i32::MAX);
        let start_time = sys::proc_stat(me).map_or(0, |s| s.start_time);
        let sink = self
            .sink
            .as_ref()
            .map_or_else(String::new, |c| c.id().to_string());
        let path = self.base.join(OWNER_FILE);
        std::fs::write(&path, format!("{me} {start_time} {sink}\n"))
            .map_err(|e| Error::io(format!("writing {}", path.display()), e))
    }

    fn make_directories(&self) -> Result<()> {
        let io = |what: &Path, e| Error::io(format!("preparing {}", what.display()), e);
        // Postfix's daemons (user postfix) and smtp-sink (user nobody) work below it.
        std::fs::set_permissions(&self.base, std::fs::Permissions::from_mode(0o755))
            .map_err(|e| io(&self.base, e))?;
        for sub in ["etc", "queue", "data", "sink", "mail"] {
            let path = self.base.join(sub);
            std::fs::create_dir(&path).map_err(|e| io(&path, e))?;
        }
        let (postfix_uid, postfix_gid) = sys::user_ids("postfix")?;
        let (nobody_uid, nobody_gid) = sys::user_ids("nobody")?;
        let data = self.base.join("data");
        std::os::unix::fs::chown(&data, Some(postfix_uid), Some(postfix_gid))
            .map_err(|e| io(&data, e))?;
        let sink = self.base.join("sink");
        std::os::unix::fs::chown(&sink, Some(nobody_uid), Some(nobody_gid))
            .map_err(|e| io(&sink, e))?;
        Ok(())
    }

    fn start_sink(&mut self) -> Result<()> {
        let log_path = self.base.join("sink.log");
        let hostname = format!("sink-{}", self.id);
        let mut last_error = String::new();
        for _ in 0..PORT_ATTEMPTS {
            let port = sys::free_port()?;
            let log = std::fs::File::create(&log_path)
                .map_err(|e| Error::io(format!("creating {}", log_path.display()), e))?;
            let log_err = log
                .try_clone()
                .map_err(|e| Error::io(format!("opening {}", log_path.display()), e))?;
            let template = self.base.join("sink").join("%Y%m%d%H%M%S.");
            let child = Command::new(&self.programs.smtp_sink)
                .arg("-u")
                .arg("nobody")
                .arg("-h")
                .arg(&hostname)
                .arg("-d")
                .arg(&template)
                .arg(format!("127.0.0.1:{port}"))
                .arg("64")
                .stdin(Stdio::null())
                .stdout(log)
                .stderr(log_err)
                .spawn()
                .map_err(|e| {
                    Error::io(format!("starting {}", self.programs.smtp_sink.display()), e)
                })?;
            self.sink = Some(child);
            self.sink_port = port;
            let expected = format!("220 {hostname} ESMTP");
            match wait_banner(port, &expected, STARTUP_TIMEOUT, || self.sink_exited()) {
                Ok(()) => return Ok(()),
                Err(reason) => {
                    self.stop_sink();
                    let log = std::fs::read_to_string(&log_path).unwrap_or_default();
                    last_error = reason;
                    if !(log.contains("Address already in use") || last_error.contains("taken")) {
                        break;
                    }
                }
            }
        }
        let log = std::fs::read_to_string(&log_path).unwrap_or_default();
        Err(Error::Startup {
            what: format!("smtp-sink did not start: {last_error}"),
            tail: tail_lines("sink.log", &log, 20),
            log: log_path,
        })
    }

    fn sink_exited(&mut self) -> bool {
        self.sink
            .as_mut()
            .is_none_or(|child| !matches!(child.try_wait(), Ok(None)))
    }

    fn write_config(&self, debian_master_cf: &str) -> Result<()> {
        let layout = Layout {
            base: &self.base,
            id: &self.id,
        };
        let main = config::main_cf(&self.config, &layout, self.sink_port)?;
        let master = config::master_cf(debian_master_cf, self.smtp_port, &self.config.master_cf)?;
        let etc = self.config_dir();
        // Postfix re-reads a configuration file modified within the current second, 0.3 s
        // apart, until that second has passed (it may be half written): up to 2 s per command.
        // Dating the files back makes every command read them at once.
        let past = SystemTime::now()
            .checked_sub(Duration::from_secs(10))
            .unwrap_or(SystemTime::UNIX_EPOCH);
        for (name, text) in [("main.cf", main), ("master.cf", master)] {
            let path = etc.join(name);
            std::fs::write(&path, text)
                .and_then(|()| std::fs::File::options().write(true).open(&path))
                .and_then(|file| file.set_modified(past))
                .map_err(|e| Error::io(format!("writing {}", path.display()), e))?;
        }
        Ok(())
    }

    fn start_postfix(&mut self, debian_master_cf: &str) -> Result<()> {
        let layout = Layout {
            base: &self.base,
            id: &self.id,
        };
        let tag = layout.banner_tag();
        let mut last_error = String::new();
        for _ in 0..PORT_ATTEMPTS {
            self.smtp_port = sys::free_port()?;
            self.write_config(debian_master_cf)?;
            let log_len = self.maillog().len();
            let start = self.output(&mut self.postfix_verb("start"))?;
            self.master_pid = self.read_master_pid();
            let result = if start.status.success() {
                let master = self.master_pid;
                wait_banner(self.smtp_port, &tag, STARTUP_TIMEOUT, || {
                    !master.is_some_and(sys::is_running)
                })
                .map_err(|reason| format!("smtpd on {}: {reason}", self.smtp_addr()))
            } else {
                Err(format!(
                    "`postfix -c {} start` failed ({}){}{}",
                    self.config_dir().display(),
                    start.status,
                    output_text(&start),
                    self.postfix_says()
                ))
            };
            let reason = match result {
                Ok(()) => {
                    let status = self.output(&mut self.postfix_verb("status"))?;
                    if status.status.success() {
                        return Ok(());
                    }
                    format!(
                        "`postfix status` says it does not run ({}){}",
                        status.status,
                        output_text(&status)
                    )
                }
                Err(reason) => reason,
            };
            self.stop_postfix();
            let log = self.maillog();
            let new_log = log.get(log_len..).unwrap_or(&log);
            last_error = reason;
            if !(new_log.contains("Address already in use") || last_error.contains("taken")) {
                break;
            }
        }
        Err(Error::Startup {
            what: format!("Postfix did not start: {last_error}"),
            log: self.maillog_path(),
            tail: tail_lines("maillog", &self.maillog(), 30),
        })
    }

    /// What Postfix says about its configuration. Its commands print their errors only to a
    /// terminal (and to a log that does not run yet), so a failing `postfix start` is silent:
    /// run `postfix check` on a pseudo-terminal with `script` (util-linux) to hear it.
    fn postfix_says(&self) -> String {
        let Ok(script) = sys::find_program("script", "bsdutils") else {
            return "\n(Postfix prints its reason only on a terminal; install `script` from \
                    bsdutils to see it here, or run `postfix -c DIR check` in a terminal)"
                .to_owned();
        };
        let quote = |p: &Path| format!("'{}'", p.display().to_string().replace('\'', "'\\''"));
        let line = format!(
            "{} -c {} check",
            quote(&self.programs.postfix),
            quote(&self.config_dir())
        );
        let mut command = Command::new(script);
        command.arg("-qec").arg(line).arg("/dev/null");
        match self.output(&mut command) {
            Ok(output) => {
                let text = String::from_utf8_lossy(&output.stdout).replace('\r', "");
                tail_lines("postfix -c DIR check, on a terminal", &text, 20)
            }
            Err(e) => format!("\n(running `postfix check` on a terminal failed: {e})"),
        }
    }

    fn read_master_pid(&self) -> Option<i32> {
        std::fs::read_to_string(self.base.join("queue/pid/master.pid"))
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    /// The command `postfix -c DIR VERB`.
    fn postfix_verb(&self, verb: &str) -> Command {
        let mut command = Command::new(&self.programs.postfix);
        command.arg("-c").arg(self.config_dir()).arg(verb);
        command
    }

    /// `postfix -c DIR VERB`; an error carries its output and the maillog's tail.
    fn postfix_command(&self, verb: &str) -> Result<()> {
        self.run(&mut self.postfix_verb(verb)).map(drop)
    }

    /// Run `command` to completion; non-zero exit is an [`Error::Command`] with its output and
    /// the maillog's tail.
    fn run(&self, command: &mut Command) -> Result<Output> {
        let output = self.output(command)?;
        if output.status.success() {
            return Ok(output);
        }
        Err(Error::Command {
            command: shell_words(command),
            status: output.status.to_string(),
            output: format!(
                "{}\nsee {}{}",
                output_text(&output),
                self.maillog_path().display(),
                tail_lines("maillog", &self.maillog(), 20)
            ),
        })
    }

    /// Run `command` to completion and return what it printed, whatever its exit status.
    ///
    /// Output goes to unnamed files, not pipes: `postfix start` and `postfix reload` leave a
    /// background `postfix-script check-warn` behind that holds stdout open for about 2 s, and
    /// reading a pipe to its end would wait for it.
    fn output(&self, command: &mut Command) -> Result<Output> {
        let words = shell_words(command);
        let io = |e| Error::io(format!("running `{words}`"), e);
        let mut stdout = tempfile::tempfile_in(&self.base).map_err(io)?;
        let mut stderr = tempfile::tempfile_in(&self.base).map_err(io)?;
        let status = command
            .stdin(Stdio::null())
            .stdout(stdout.try_clone().map_err(io)?)
            .stderr(stderr.try_clone().map_err(io)?)
            .status()
            .map_err(io)?;
        let read = |file: &mut std::fs::File| {
            let mut bytes = Vec::new();
            file.seek(SeekFrom::Start(0))
                .and_then(|_| file.read_to_end(&mut bytes))
                .map(|_| bytes)
                .map_err(io)
        };
        Ok(Output {
            status,
            stdout: read(&mut stdout)?,
            stderr: read(&mut stderr)?,
        })
    }

    // --- stopping ---------------------------------------------------------------------------

    /// Stop the master and every process it started; only processes whose working directory is
    /// this instance's are signalled.
    fn stop_postfix(&mut self) {
        // The pid file exists from the moment the master runs (and names it until the next
        // start); no pid file, no master to stop.
        let Some(master) = self.master_pid.take().or_else(|| self.read_master_pid()) else {
            return;
        };
        // Its failure (the master already gone) is fine.
        let _ = self
            .postfix_verb("stop")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        stop_session(master, &self.base, true);
    }

    fn stop_sink(&mut self) {
        if let Some(mut child) = self.sink.take() {
            // Our own child: kill by PID and reap it.
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Postfix {
    fn drop(&mut self) {
        let panicking = std::thread::panicking();
        if panicking {
            eprintln!(
                "allowgate-testkit: the test panicked; Postfix test instance {} in {}{}",
                self.id,
                self.base.display(),
                tail_lines("maillog", &self.maillog(), 40)
            );
        }
        self.stop_postfix();
        self.stop_sink();
        let keep = std::env::var(KEEP_ENV).is_ok_and(|v| !v.is_empty() && v != "0");
        if let Some(dir) = self.dir.take() {
            if keep {
                let _ = std::fs::write(self.base.join(KEPT_FILE), "");
                let path = dir.keep();
                eprintln!(
                    "allowgate-testkit: kept Postfix test instance {} in {} ({KEEP_ENV})",
                    self.id,
                    path.display()
                );
            } else if let Err(e) = dir.close() {
                eprintln!(
                    "allowgate-testkit: could not remove {}: {e}",
                    self.base.display()
                );
            }
        }
    }
}

/// One message in an instance's queue, from `postqueue -j`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuedMessage {
    /// `incoming`, `active`, `deferred`, `hold` or `maildrop`.
    pub queue_name: String,
    /// The queue id.
    pub queue_id: String,
    /// The envelope sender (`""` for `<>`).
    pub sender: String,
    /// The recipients not delivered yet.
    pub recipients: Vec<String>,
    /// Why delivery was deferred, per recipient when Postfix says.
    pub delay_reasons: Vec<String>,
}

impl QueuedMessage {
    fn parse(line: &str) -> Result<QueuedMessage> {
        let parse_error = |detail: String| Error::Parse {
            what: "postqueue -j output".into(),
            detail,
        };
        let value: serde_json::Value =
            serde_json::from_str(line).map_err(|e| parse_error(format!("{e}: {line}")))?;
        let text = |v: &serde_json::Value, key: &str| {
            v.get(key)
                .and_then(serde_json::Value::as_str)
                .map(str::to_owned)
        };
        let recipients = value
            .get("recipients")
            .and_then(serde_json::Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or_default();
        Ok(QueuedMessage {
            queue_name: text(&value, "queue_name")
                .ok_or_else(|| parse_error(format!("no queue_name: {line}")))?,
            queue_id: text(&value, "queue_id")
                .ok_or_else(|| parse_error(format!("no queue_id: {line}")))?,
            sender: text(&value, "sender").unwrap_or_default(),
            recipients: recipients
                .iter()
                .filter_map(|r| text(r, "address"))
                .collect(),
            delay_reasons: recipients
                .iter()
                .filter_map(|r| text(r, "delay_reason"))
                .collect(),
        })
    }
}

/// Wait until `127.0.0.1:port` answers with a greeting starting with (or containing) `expected`.
/// `Err` says why not: `exited()` became true, another server answered ("taken"), or time ran
/// out.
fn wait_banner(
    port: u16,
    expected: &str,
    timeout: Duration,
    mut exited: impl FnMut() -> bool,
) -> std::result::Result<(), String> {
    let addr = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, port));
    let deadline = Instant::now() + timeout;
    let mut last;
    loop {
        match TcpStream::connect_timeout(&addr, Duration::from_secs(1)) {
            Ok(stream) => {
                let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
                let mut line = String::new();
                let mut reader = BufReader::new(&stream);
                match reader.read_line(&mut line) {
                    Ok(_) if line.starts_with("220 ") && line.contains(expected) => {
                        let _ = (&stream).write_all(b"QUIT\r\n");
                        return Ok(());
                    }
                    Ok(_) if line.starts_with("220 ") => {
                        return Err(format!(
                            "port {port} taken by another server, it greeted with {:?}",
                            line.trim_end()
                        ));
                    }
                    Ok(_) => last = format!("{addr} greeted with {:?}", line.trim_end()),
                    Err(e) => last = format!("reading the greeting from {addr}: {e}"),
                }
            }
            Err(e) => last = format!("connecting to {addr}: {e}"),
        }
        if exited() {
            return Err(format!("the process exited ({last})"));
        }
        if Instant::now() >= deadline {
            return Err(format!("no greeting within {timeout:?} ({last})"));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Stop master `master` of the instance in `base`, and whatever it started. `postfix stop` only
/// sends the master SIGTERM; when it already ran (`stop_requested`), give the master 3 s to exit,
/// otherwise send SIGTERM here. Then SIGKILL every process of the master's session that still
/// works in `base` (Postfix's daemons run in the queue directory).
fn stop_session(master: i32, base: &Path, stop_requested: bool) {
    let ours = |pid: i32| sys::cwd(pid).is_some_and(|cwd| cwd.starts_with(base));
    if sys::is_running(master) && ours(master) {
        if !stop_requested {
            sys::signal(master, Signal::TERM);
        }
        if !sys::wait_gone(&[master], Duration::from_secs(3)) {
            sys::signal(master, Signal::KILL);
        }
    }
    let leftovers: Vec<i32> = sys::session_members(master)
        .into_iter()
        .filter(|&pid| ours(pid))
        .collect();
    for &pid in &leftovers {
        sys::signal(pid, Signal::KILL);
    }
    sys::wait_gone(&leftovers, Duration::from_secs(2));
}

/// Stop and remove instances whose test process is gone (killed before it could drop them).
fn sweep_stale(parent: &Path) {
    let Ok(entries) = std::fs::read_dir(parent) else {
        return;
    };
    for entry in entries.flatten() {
        let dir = entry.path();
        let Ok(owner) = std::fs::read_to_string(dir.join(OWNER_FILE)) else {
            // Being created right now (the owner file comes first), or not ours.
            continue;
        };
        let mut fields = owner.split_whitespace();
        let (Some(pid), Some(start_time)) = (
            fields.next().and_then(|f| f.parse::<i32>().ok()),
            fields.next().and_then(|f| f.parse::<u64>().ok()),
        ) else {
            continue;
        };
        let sink = fields.next().and_then(|f| f.parse::<i32>().ok());
        let owner_alive = sys::proc_stat(pid)
            .is_some_and(|s| s.start_time == start_time && !matches!(s.state, 'Z' | 'X' | 'x'));
        if owner_alive {
            continue;
        }
        let master = std::fs::read_to_string(dir.join("queue/pid/master.pid"))
            .ok()
            .and_then(|t| t.trim().parse::<i32>().ok());
        if let Some(master) = master {
            stop_session(master, &dir, false);
        }
        if let Some(sink) = sink {
            let dir_text = dir.to_string_lossy();
            if sys::cmdline(sink).is_some_and(|c| c.contains(dir_text.as_ref())) {
                sys::signal(sink, Signal::KILL);
            }
        }
        if !dir.join(KEPT_FILE).exists() {
            let _ = std::fs::remove_dir_all(&dir);
        }
    }
}

/// What a command printed (stdout, then stderr), each prefixed with a newline; empty when it
/// printed nothing.
fn output_text(output: &Output) -> String {
    let mut text = String::new();
    for stream in [&output.stdout, &output.stderr] {
        let stream = String::from_utf8_lossy(stream);
        if !stream.trim().is_empty() {
            text.push('\n');
            text.push_str(stream.trim_end());
        }
    }
    text
}

/// A command line for messages (arguments separated by spaces).
fn shell_words(command: &Command) -> String {
    std::iter::once(command.get_program())
        .chain(command.get_args())
        .map(|a| a.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn postqueue_json_lines() {
        let line = r#"{"queue_name": "hold", "queue_id": "4F1B29B61BF", "arrival_time": 1764551729, "message_size": 343, "forced_expire": false, "sender": "alice@sender.test", "recipients": [{"address": "bob@example.test"}, {"address": "carol@example.test", "delay_reason": "connect refused"}]}"#;
        let m = QueuedMessage::parse(line).unwrap();
        assert_eq!(m.queue_name, "hold");
        assert_eq!(m.queue_id, "4F1B29B61BF");
        assert_eq!(m.sender, "alice@sender.test");
        assert_eq!(m.recipients, ["bob@example.test", "carol@example.test"]);
        assert_eq!(m.delay_reasons, ["connect refused"]);
        assert!(QueuedMessage::parse("{}").is_err());
        assert!(QueuedMessage::parse("not json").is_err());
    }

    #[test]
    fn nothing_listening_is_reported() {
        let port = sys::free_port().unwrap();
        let err = wait_banner(port, "x", Duration::from_millis(100), || false).unwrap_err();
        assert!(err.contains("no greeting"), "{err}");
        let err = wait_banner(port, "x", Duration::from_secs(5), || true).unwrap_err();
        assert!(err.contains("exited"), "{err}");
    }
}
