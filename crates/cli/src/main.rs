//! `allowgate`: manage allow/block/ignore lists and ask what happens to a sender.
//!
//! The command-line contract is DESIGN §5: exit code 0 on success, 2 on invalid input (nothing
//! changed), 1 on other errors. Everything printed on stdout goes through one writer ([`Out`]):
//! when stdout is a pipe that was closed (`allowgate entry list | head -1`), the command ends
//! quietly, with the exit code of what it did.

use std::fmt;
use std::io::{BufWriter, IsTerminal, Read, StdoutLock, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

/// mimalloc rather than glibc's malloc: the server's worker threads allocate and free for every
/// request, and with glibc's arenas they waited on each other's locks (a profile of the policy
/// server at 100,000 requests/s spent about 8% in those waits; BENCHMARKS.md has the figures).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use allowgate_core::{PolicyConfig, Verdict};
use allowgate_server::evaluate::{EvaluateRequest, InvalidRequest};
use allowgate_server::policy;
use allowgate_store::{
    EntryFilter, ErrorKind, HistoryFilter, HistoryRecord, ImportError, ImportFamily, ImportFormat,
    ImportMode, ImportRequest, Role, Store, StoreError, StoreOptions, TokenId, TokenInfo,
    TokenLabel, User, UserName,
};
use allowgate_types::{
    Actor, CheckGroup, CheckId, CheckSet, Domain, Entry, EntryId, EntryKind, EntrySpec, List,
    Printable, Scope, TenantName, parse_time,
};
use chrono::{DateTime, SecondsFormat, Utc};
use clap::{Args, Parser, Subcommand, ValueEnum};

mod serve;

/// Largest message `check --message` reads (a file or stdin).
const MAX_MESSAGE_BYTES: u64 = 10 * 1024 * 1024;
/// Longest `--busy-timeout`.
const MAX_BUSY_TIMEOUT_S: f64 = 3600.0;

#[derive(Parser)]
#[command(
    name = "allowgate",
    version,
    about = "Sender allow/block/ignore lists for an e-mail security gateway"
)]
struct Cli {
    /// Database URL: sqlite://FILE (created if missing) or sqlite::memory:. PostgreSQL support
    /// comes in a later release.
    /// [default: sqlite://allowgate.db, or the config file's `store.url` for `serve`]
    #[arg(long, global = true, env = "ALLOWGATE_DB", hide_env_values = true)]
    db: Option<String>,
    /// Who makes the change, for the audit log (default: $USER; at most 128 characters, no
    /// control characters).
    #[arg(long, global = true, env = "ALLOWGATE_ACTOR")]
    actor: Option<String>,
    /// How long a change waits for another change to finish, in seconds, before it gives up.
    #[arg(long, global = true, env = "ALLOWGATE_BUSY_TIMEOUT", value_name = "SECONDS",
          default_value = "10", value_parser = parse_busy_timeout)]
    busy_timeout: Duration,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Manage tenants (customer organisations and their recipient domains).
    #[command(subcommand)]
    Tenant(TenantCommand),
    /// Add, list and remove entries.
    #[command(subcommand)]
    Entry(EntryCommand),
    /// Import a list from a text, CSV or JSON file (all or nothing).
    #[command(after_help = bypass_help())]
    Import(ImportArgs),
    /// Export entries as text, CSV or JSON.
    Export(ExportArgs),
    /// Ask what happens to a message from a sender.
    Check(CheckArgs),
    /// Show the audit log, newest first.
    Audit(AuditArgs),
    /// Show the email history, newest first: why each message was delivered or not.
    History(HistoryArgs),
    /// Manage the users who administer allowgate (roles admin, tenant-admin, viewer).
    #[command(subcommand)]
    User(UserCommand),
    /// Manage API tokens (for `Authorization: Bearer …`).
    #[command(subcommand)]
    Token(TokenCommand),
    /// Run the server: the Postfix policy server and the health/metrics listener, serving the
    /// store's entries and picking up every change within a second.
    Serve(ServeArgs),
    /// Work with configuration files.
    #[command(subcommand)]
    Config(ConfigCommand),
}

#[derive(Args)]
struct ServeArgs {
    /// A TOML configuration file (every key is optional; see docs/configuration.md).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// The policy server's address (default 127.0.0.1:10040; port 0 picks a free port).
    #[arg(long, value_name = "ADDR")]
    policy: Option<std::net::SocketAddr>,
    /// The milter's address (default 127.0.0.1:10041; the milter arrives in a later release).
    #[arg(long, value_name = "ADDR")]
    milter: Option<std::net::SocketAddr>,
    /// The HTTP listener's address (default 127.0.0.1:8040).
    #[arg(long, value_name = "ADDR")]
    http: Option<std::net::SocketAddr>,
    /// Log format: `human` (default) or `json`.
    #[arg(long, value_name = "FORMAT")]
    log_format: Option<LogFormatArg>,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormatArg {
    Human,
    Json,
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Check a configuration file: every bad key is named; exit 0 when it is valid.
    Check {
        /// The file.
        file: PathBuf,
    },
}

impl Command {
    /// Whether the command changes the configuration (its refusals then say that nothing was
    /// changed).
    fn changes(&self) -> bool {
        match self {
            Command::Tenant(TenantCommand::List { .. })
            | Command::Entry(EntryCommand::List { .. } | EntryCommand::Show { .. })
            | Command::Export(_)
            | Command::Check(_)
            | Command::Audit(_)
            | Command::History(_)
            | Command::User(UserCommand::List { .. })
            | Command::Token(TokenCommand::List { .. })
            | Command::Serve(_)
            | Command::Config(_) => false,
            Command::Tenant(_)
            | Command::Entry(_)
            | Command::Import(_)
            | Command::User(_)
            | Command::Token(_) => true,
        }
    }
}

#[derive(Subcommand)]
enum TenantCommand {
    /// Add a tenant owning one or more recipient domains.
    Add {
        /// Tenant name (lower-case letters, digits, `-`, `_`, `.`).
        name: TenantName,
        /// A recipient domain the tenant owns (repeat for more).
        #[arg(long = "domain", required = true)]
        domains: Vec<Domain>,
    },
    /// List tenants.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Give a tenant more recipient domains, or take one away.
    #[command(subcommand)]
    Domain(DomainCommand),
    /// Remove a tenant and its domains. A tenant that still has entries is only removed with
    /// --with-entries, which removes them too (each one audited).
    Rm {
        /// The tenant.
        name: TenantName,
        /// Remove the tenant's entries with it.
        #[arg(long)]
        with_entries: bool,
    },
}

#[derive(Subcommand)]
enum UserCommand {
    /// Add a user; prints a one-time password, shown only this once (the store keeps only a
    /// hash of it).
    Add {
        /// The user name: 1 to 64 of a-z, 0-9, `.`, `_`, `@`, `-`, starting with a letter or
        /// digit (upper case is lowered).
        name: UserName,
        /// admin (every tenant and the global entries; no --tenant), tenant-admin (one tenant;
        /// needs --tenant) or viewer (read-only: one tenant, or every tenant without --tenant).
        #[arg(long)]
        role: Role,
        /// The user's tenant.
        #[arg(long)]
        tenant: Option<TenantName>,
        /// Print `{"user": {…}, "password": "…"}`.
        #[arg(long)]
        json: bool,
    },
    /// List users.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Make an API token for a user: the token alone is printed on stdout, only this once
    /// (the store keeps only a hash of it).
    Add {
        /// The user the token acts as.
        #[arg(long)]
        user: UserName,
        /// What the token is for (at most 64 printable characters).
        #[arg(long)]
        label: Option<TokenLabel>,
    },
    /// List API tokens (never the tokens themselves).
    List {
        /// Only this user's tokens.
        #[arg(long)]
        user: Option<UserName>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Revoke an API token by id (as `token list` shows it).
    Revoke {
        /// The token id.
        id: String,
    },
}

#[derive(Subcommand)]
enum DomainCommand {
    /// Add recipient domains to a tenant: `tenant domain add acme acme.net acme.org`.
    Add {
        /// The tenant.
        name: TenantName,
        /// The domains (none may belong to a tenant yet).
        #[arg(required = true)]
        domains: Vec<Domain>,
    },
    /// Take a recipient domain away from a tenant: `tenant domain rm acme acme.net`.
    Rm {
        /// The tenant.
        name: TenantName,
        /// The domain.
        domain: Domain,
    },
}

#[derive(Subcommand)]
enum EntryCommand {
    /// Add one entry.
    #[command(after_help = bypass_help())]
    Add(AddArgs),
    /// List entries (expired and not yet active ones are marked).
    List {
        #[command(flatten)]
        filter: FilterArgs,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show one entry, with how often it took effect and when last.
    Show {
        /// The entry id (`12` or `#12`).
        id: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Remove an entry by id.
    Rm {
        /// The entry id (`12` or `#12`).
        id: String,
    },
}

/// The text after `entry add --help` and `import --help`: what `--bypass` accepts, from the
/// check ids and groups themselves.
fn bypass_help() -> String {
    let mut text =
        String::from("Checks for --bypass (comma-separated check ids, group names, or `all`):\n");
    let width = CheckGroup::ALL
        .iter()
        .map(|g| g.id().len())
        .max()
        .unwrap_or(0);
    for group in CheckGroup::ALL {
        let ids: Vec<&str> = group.checks().iter().map(CheckId::id).collect();
        text.push_str(&format!(
            "  {:width$}  {} ({})\n",
            group.id(),
            ids.join(", "),
            group.label()
        ));
    }
    text.push_str(&format!(
        "  {:width$}  every check the deployment can bypass\n\n",
        "all"
    ));
    text.push_str(&format!(
        "Bypassing `{malware}` (by name, through `{group}` or through `all`) needs --force: \
         infected files may be delivered.\n\
         The values `*` and `*@*` are refused, even with --force.",
        malware = CheckId::Malware.id(),
        group = CheckId::Malware.group().id(),
    ));
    text
}

#[derive(Args)]
struct AddArgs {
    /// allow, block or ignore.
    #[arg(long)]
    list: List,
    /// ip, host, email, domain, spf-domain, country, body-domain or body-ip.
    #[arg(long)]
    kind: EntryKind,
    /// The value (`192.0.2.0/24`, `*.example.com`, `user@example.com`, `CN`, …).
    #[arg(long)]
    value: String,
    /// `global` (every tenant, the default) or a tenant name.
    #[arg(long, default_value = "global")]
    scope: Scope,
    /// Checks this sender may bypass (allow entries): ids, group names or `all` (listed below).
    #[arg(long)]
    bypass: Option<CheckSet>,
    /// A comment (at most 128 characters).
    #[arg(long)]
    comment: Option<String>,
    /// Only count when the sender's domain is authenticated (allow email/domain entries).
    #[arg(long)]
    require_auth: bool,
    /// The address is our own infrastructure / a trusted relay (ignore ip entries).
    #[arg(long)]
    internal: bool,
    /// Valid from (RFC 3339 or YYYY-MM-DD, UTC).
    #[arg(long, value_parser = parse_time_arg)]
    starts: Option<DateTime<Utc>>,
    /// Valid until (RFC 3339 or YYYY-MM-DD, UTC).
    #[arg(long, value_parser = parse_time_arg)]
    expires: Option<DateTime<Utc>>,
    /// Store the entry disabled.
    #[arg(long)]
    disabled: bool,
    /// Accept over-broad values and bypassing malware.
    #[arg(long)]
    force: bool,
    /// Print the new entry as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Clone, Copy, ValueEnum)]
enum FamilyArg {
    /// IP addresses, CIDRs and ranges, and host names.
    Server,
    /// E-mail addresses and domains.
    Email,
    Ip,
    Host,
    #[value(name = "email-address")]
    EmailAddress,
    Domain,
    SpfDomain,
    Country,
    BodyDomain,
    BodyIp,
}

impl FamilyArg {
    fn family(self) -> ImportFamily {
        match self {
            FamilyArg::Server => ImportFamily::Server,
            FamilyArg::Email => ImportFamily::Email,
            FamilyArg::Ip => ImportFamily::Kind(EntryKind::Ip),
            FamilyArg::Host => ImportFamily::Kind(EntryKind::Host),
            FamilyArg::EmailAddress => ImportFamily::Kind(EntryKind::Email),
            FamilyArg::Domain => ImportFamily::Kind(EntryKind::Domain),
            FamilyArg::SpfDomain => ImportFamily::Kind(EntryKind::SpfDomain),
            FamilyArg::Country => ImportFamily::Kind(EntryKind::Country),
            FamilyArg::BodyDomain => ImportFamily::Kind(EntryKind::BodyDomain),
            FamilyArg::BodyIp => ImportFamily::Kind(EntryKind::BodyIp),
        }
    }
}

#[derive(Clone, Copy, ValueEnum)]
enum FormatArg {
    Text,
    Csv,
    Json,
}

impl FormatArg {
    fn format(self) -> ImportFormat {
        match self {
            FormatArg::Text => ImportFormat::Text,
            FormatArg::Csv => ImportFormat::Csv,
            FormatArg::Json => ImportFormat::Json,
        }
    }
}

#[derive(Args)]
struct ImportArgs {
    /// The file (text: one value per line or separated by `,`/`;`, `value # comment`, the
    /// section headers of a text export; .csv; .json).
    file: PathBuf,
    /// The list the entries go on.
    #[arg(long)]
    list: List,
    /// What the file holds: `server` (IPs, ranges, host names) or `email` (addresses, domains);
    /// or one entry kind.
    #[arg(long = "type")]
    family: FamilyArg,
    /// Checks bypassed by every entry (allow lists; listed below).
    #[arg(long)]
    bypass: Option<CheckSet>,
    /// `global` or a tenant name.
    #[arg(long, default_value = "global")]
    scope: Scope,
    /// Replace the existing entries of this list, scope and type instead of merging.
    #[arg(long)]
    replace: bool,
    /// With --replace: a file without entries may empty the list (refused otherwise).
    #[arg(long, requires = "replace")]
    allow_empty: bool,
    /// File format (default: from the extension; text otherwise).
    #[arg(long)]
    format: Option<FormatArg>,
    /// Entries only count when the sender is authenticated (email imports).
    #[arg(long)]
    require_auth: bool,
    /// Accept over-broad values and bypassing malware.
    #[arg(long)]
    force: bool,
    /// Print the report as JSON (also when the import is refused: `{"error": …}`).
    #[arg(long)]
    json: bool,
}

/// Which entries `entry list` and `export` show.
#[derive(Args)]
struct FilterArgs {
    /// Only this list.
    #[arg(long)]
    list: Option<List>,
    /// Only this scope (`global` or a tenant).
    #[arg(long)]
    scope: Option<Scope>,
    /// Only this kind.
    #[arg(long)]
    kind: Option<EntryKind>,
}

impl FilterArgs {
    fn filter(self) -> EntryFilter {
        EntryFilter {
            list: self.list,
            scope: self.scope,
            kind: self.kind,
        }
    }
}

#[derive(Args)]
struct ExportArgs {
    #[command(flatten)]
    filter: FilterArgs,
    /// text, csv or json.
    #[arg(long, default_value = "text")]
    format: FormatArg,
}

#[derive(Args)]
struct CheckArgs {
    /// The connecting client IP.
    #[arg(long)]
    ip: String,
    /// HELO/EHLO name.
    #[arg(long)]
    helo: Option<String>,
    /// The client's forward-confirmed host name.
    #[arg(long)]
    host: Option<String>,
    /// SMTP MAIL FROM (`<>` or empty for the null sender).
    #[arg(long)]
    mail_from: Option<String>,
    /// Recipient (repeat for more).
    #[arg(long = "rcpt", required = true)]
    rcpts: Vec<String>,
    /// A message (.eml, or `-` for standard input) for header senders, Received: walking and
    /// body lists.
    #[arg(long)]
    message: Option<PathBuf>,
    /// The GeoIP country of the client (until a GeoIP database is configured).
    #[arg(long)]
    country: Option<String>,
    /// Treat this sender domain as authenticated (aligned SPF/DKIM or DMARC pass); repeatable.
    #[arg(long = "authenticated")]
    authenticated: Vec<String>,
    /// Evaluate at this time instead of now (RFC 3339 or YYYY-MM-DD).
    #[arg(long)]
    at: Option<String>,
    /// Print one JSON object.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct AuditArgs {
    /// How many records.
    #[arg(long, default_value_t = 50)]
    limit: u32,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct HistoryArgs {
    /// Only this sender: an address (`alice@example.com`), a domain (`example.com` or
    /// `@example.com`: that domain only), or a domain and all below it (`*.example.com`).
    #[arg(long)]
    sender: Option<String>,
    /// Only this client IP: an address, a CIDR (`192.0.2.0/24`) or a range
    /// (`192.0.2.10-192.0.2.99`).
    #[arg(long)]
    ip: Option<String>,
    /// Only this status: clean, pass, blocked, greylisted, spam, quarantined or rejected.
    #[arg(long)]
    status: Option<String>,
    /// Only this tenant's messages.
    #[arg(long)]
    tenant: Option<String>,
    /// Only messages since this time: RFC 3339, YYYY-MM-DD (UTC), or a span back from now
    /// (`30m`, `12h`, `7d`).
    #[arg(long, value_parser = parse_since)]
    since: Option<DateTime<Utc>>,
    /// At most this many messages (1 to 10000).
    #[arg(long, default_value_t = allowgate_store::history::DEFAULT_HISTORY_LIMIT)]
    limit: u32,
    /// Print JSON: `{"records": […]}`.
    #[arg(long)]
    json: bool,
}

/// Longest span `--since` goes back: 100 years, in seconds.
const MAX_SINCE_SECONDS: i64 = 100 * 366 * 86_400;

/// `--since`: a time (as `parse_time` reads it), or a span back from now: a number and `s`,
/// `m`, `h` or `d`.
fn parse_since(s: &str) -> Result<DateTime<Utc>, String> {
    let text = s.trim();
    if let Ok(t) = parse_time(text) {
        return Ok(t);
    }
    let span = text
        .char_indices()
        .last()
        .and_then(|(i, unit)| {
            let n: i64 = text[..i].parse().ok().filter(|n| *n >= 0)?;
            let seconds = match unit {
                's' => Some(1),
                'm' => Some(60),
                'h' => Some(3600),
                'd' => Some(86_400),
                _ => None,
            }?;
            n.checked_mul(seconds).filter(|s| *s <= MAX_SINCE_SECONDS)
        })
        .ok_or_else(|| {
            format!(
                "`{}` is not a time (RFC 3339 or YYYY-MM-DD) or a span back from now (30m, 12h, 7d; at most 100 years)",
                allowgate_types::shown(s, 60)
            )
        })?;
    Ok(Utc::now() - chrono::Duration::seconds(span))
}

fn parse_time_arg(s: &str) -> Result<DateTime<Utc>, String> {
    parse_time(s).map_err(|e| e.to_string())
}

fn parse_busy_timeout(s: &str) -> Result<Duration, String> {
    let seconds: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("`{}` is not a number of seconds", Printable(s)))?;
    if !(0.0..=MAX_BUSY_TIMEOUT_S).contains(&seconds) {
        return Err(format!(
            "the busy timeout must be between 0 and {MAX_BUSY_TIMEOUT_S} seconds"
        ));
    }
    Ok(Duration::from_secs_f64(seconds))
}

/// Why a command failed: invalid input (exit 2, nothing changed), stdout closed under us (exit
/// 0 when the command did what it was asked: nothing more to say), or anything else (exit 1).
enum Failure {
    /// Messages, each possibly of several lines.
    Invalid(Vec<String>),
    /// stdout is a pipe whose reader has gone.
    StdoutClosed,
    Other(anyhow::Error),
}

impl From<anyhow::Error> for Failure {
    fn from(e: anyhow::Error) -> Self {
        Failure::Other(e)
    }
}

impl From<StoreError> for Failure {
    fn from(e: StoreError) -> Self {
        match e.kind() {
            ErrorKind::InvalidInput | ErrorKind::Conflict | ErrorKind::NotFound => {
                Failure::Invalid(vec![e.to_string()])
            }
            // "another change is in progress; retry …" says it all; the database's own words
            // ("database is locked") would only confuse.
            ErrorKind::Busy => Failure::Other(anyhow::anyhow!("{e}")),
            ErrorKind::Unavailable | ErrorKind::Corrupt | ErrorKind::Internal => {
                Failure::Other(anyhow::Error::new(e))
            }
        }
    }
}

impl From<ImportError> for Failure {
    fn from(e: ImportError) -> Self {
        match e {
            ImportError::Store(e) => e.into(),
            other => Failure::Invalid(vec![other.to_string()]),
        }
    }
}

fn invalid(message: impl Into<String>) -> Failure {
    Failure::Invalid(vec![message.into()])
}

/// stdout, buffered. Every write goes through [`Out::line`]/[`Out::text`]: a closed pipe
/// becomes [`Failure::StdoutClosed`] instead of a panic.
struct Out {
    writer: BufWriter<StdoutLock<'static>>,
}

impl Out {
    fn new() -> Out {
        Out {
            writer: BufWriter::new(std::io::stdout().lock()),
        }
    }

    /// Write a line.
    fn line(&mut self, args: fmt::Arguments<'_>) -> Result<(), Failure> {
        let written = self
            .writer
            .write_fmt(args)
            .and_then(|()| self.writer.write_all(b"\n"));
        written.map_err(stdout_error)
    }

    /// Write text as it is.
    fn text(&mut self, text: &str) -> Result<(), Failure> {
        self.writer.write_all(text.as_bytes()).map_err(stdout_error)
    }

    fn flush(&mut self) -> Result<(), Failure> {
        self.writer.flush().map_err(stdout_error)
    }
}

fn stdout_error(e: std::io::Error) -> Failure {
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        Failure::StdoutClosed
    } else {
        Failure::Other(anyhow::anyhow!("cannot write to stdout: {e}"))
    }
}

/// `outln!(out, "format", args…)`: one line on stdout through [`Out`], `?` on failure.
macro_rules! outln {
    ($out:expr, $($arg:tt)*) => {
        $out.line(format_args!($($arg)*))?
    };
}

/// A line on stderr; a closed stderr is ignored (there is nowhere left to complain).
fn err_line(args: fmt::Arguments<'_>) {
    let _ = writeln!(std::io::stderr().lock(), "{args}");
}

/// `warning: …` on stderr.
fn warn(args: fmt::Arguments<'_>) {
    err_line(format_args!("warning: {args}"));
}

/// The database when `--db` (or `$ALLOWGATE_DB`) is not given.
const DEFAULT_DB: &str = "sqlite://allowgate.db";

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => return serve::main(cli.db, args),
        Command::Config(ConfigCommand::Check { file }) => return serve::config_check(&file),
        _ => {}
    }
    let changes = cli.command.changes();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            err_line(format_args!("error: cannot start the runtime: {e}"));
            return ExitCode::from(1);
        }
    };
    let mut out = Out::new();
    let result = runtime
        .block_on(run(cli, &mut out))
        .and_then(|()| out.flush());
    match result {
        Ok(()) | Err(Failure::StdoutClosed) => ExitCode::SUCCESS,
        Err(Failure::Invalid(messages)) => {
            for m in messages {
                print_error(&m);
            }
            if changes {
                err_line(format_args!("nothing was changed"));
            }
            ExitCode::from(2)
        }
        Err(Failure::Other(e)) => {
            print_error(&format!("{e:#}"));
            ExitCode::from(1)
        }
    }
}

/// `error: …` on stderr, each line printable (a value with ESC or CR cannot reach the
/// terminal), the lines after the first as they are indented.
fn print_error(message: &str) {
    for (i, line) in message.lines().enumerate() {
        if i == 0 {
            err_line(format_args!("error: {}", Printable(line)));
        } else {
            err_line(format_args!("{}", Printable(line)));
        }
    }
}

/// The audit actor: `cli:` and `--actor` (or $USER), validated.
fn actor(cli: &Cli) -> Result<Actor, Failure> {
    let name = cli
        .actor
        .clone()
        .or_else(|| std::env::var("USER").ok())
        .unwrap_or_else(|| "cli".into());
    Actor::parse(&format!("cli:{name}")).map_err(|e| invalid(format!("--actor: {e}")))
}

async fn run(cli: Cli, out: &mut Out) -> Result<(), Failure> {
    let actor = actor(&cli)?;
    let options = StoreOptions {
        busy_timeout: cli.busy_timeout,
    };
    let db = cli.db.as_deref().unwrap_or(DEFAULT_DB);
    let store = Store::open_with(db, &options).await.map_err(|e| {
        let shown = allowgate_store::redact_url(db);
        match Failure::from(e) {
            Failure::Other(e) => Failure::Other(e.context(format!("cannot open {shown}"))),
            other => other,
        }
    })?;
    let result = match cli.command {
        Command::Tenant(cmd) => tenant(&store, cmd, &actor, out).await,
        Command::Entry(EntryCommand::Add(args)) => entry_add(&store, args, &actor, out).await,
        Command::Entry(EntryCommand::List { filter, json }) => {
            entry_list(&store, filter.filter(), json, out).await
        }
        Command::Entry(EntryCommand::Show { id, json }) => entry_show(&store, &id, json, out).await,
        Command::Entry(EntryCommand::Rm { id }) => entry_rm(&store, &id, &actor, out).await,
        Command::Import(args) => import(&store, args, &actor, out).await,
        Command::Export(args) => export(&store, args, out).await,
        Command::Check(args) => check(&store, args, out).await,
        Command::Audit(args) => audit(&store, args, out).await,
        Command::History(args) => history(&store, args, out).await,
        Command::User(cmd) => user(&store, cmd, &actor, out).await,
        Command::Token(cmd) => token(&store, cmd, &actor, out).await,
        Command::Serve(_) | Command::Config(_) => Ok(()),
    };
    store.close().await;
    result
}

fn print_json(out: &mut Out, value: &impl serde::Serialize) -> Result<(), Failure> {
    let text = serde_json::to_string_pretty(value).map_err(anyhow::Error::new)?;
    outln!(out, "{text}");
    Ok(())
}

fn domain_list(domains: &[Domain]) -> String {
    domains
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

async fn tenant(
    store: &Store,
    cmd: TenantCommand,
    actor: &Actor,
    out: &mut Out,
) -> Result<(), Failure> {
    match cmd {
        TenantCommand::Add { name, domains } => {
            let t = store.add_tenant(&name, &domains, actor).await?;
            outln!(out, "added tenant {} ({})", t.name, domain_list(&t.domains));
        }
        TenantCommand::List { json } => {
            let tenants = store.tenants().await?;
            if json {
                let v: Vec<serde_json::Value> = tenants
                    .iter()
                    .map(|t| serde_json::json!({ "name": t.name, "domains": t.domains }))
                    .collect();
                return print_json(out, &v);
            }
            for t in tenants {
                let domains: Vec<String> = t.domains.iter().map(ToString::to_string).collect();
                outln!(out, "{}\t{}", t.name, domains.join(","));
            }
        }
        TenantCommand::Domain(DomainCommand::Add { name, domains }) => {
            let t = store.add_tenant_domains(&name, &domains, actor).await?;
            outln!(
                out,
                "tenant {} now owns {}",
                t.name,
                domain_list(&t.domains)
            );
        }
        TenantCommand::Domain(DomainCommand::Rm { name, domain }) => {
            let t = store.remove_tenant_domain(&name, &domain, actor).await?;
            outln!(
                out,
                "removed {domain} from tenant {}; it owns {}",
                t.name,
                if t.domains.is_empty() {
                    "no domains".to_string()
                } else {
                    domain_list(&t.domains)
                }
            );
        }
        TenantCommand::Rm { name, with_entries } => {
            let removed = store.remove_tenant(&name, with_entries, actor).await?;
            outln!(
                out,
                "removed tenant {} ({}) and {} entries; revision {}",
                removed.tenant.name,
                domain_list(&removed.tenant.domains),
                removed.entries_removed,
                removed.revision
            );
        }
    }
    Ok(())
}

async fn entry_add(store: &Store, a: AddArgs, actor: &Actor, out: &mut Out) -> Result<(), Failure> {
    let spec = EntrySpec {
        list: Some(a.list),
        scope: a.scope,
        kind: Some(a.kind),
        value: a.value,
        checks: a.bypass,
        comment: a.comment,
        require_auth: a.require_auth,
        internal: a.internal,
        starts_at: a.starts,
        expires_at: a.expires,
        disabled: a.disabled,
        force: a.force,
    };
    let (new, warnings) = spec
        .validate()
        .map_err(|errs| Failure::Invalid(errs.iter().map(ToString::to_string).collect()))?;
    for w in &warnings {
        warn(format_args!("{w}"));
    }
    let entry = store.add_entry(&new, actor).await?;
    if a.json {
        return print_json(out, &allowgate_store::entry_to_json(&entry)?);
    }
    outln!(
        out,
        "added entry {}: {}",
        entry.id,
        describe(&entry, Utc::now())
    );
    Ok(())
}

/// An entry in one line, marked `expired` or `not yet active` at `now`.
fn describe(e: &Entry, now: DateTime<Utc>) -> String {
    let n = &e.entry;
    let mut s = format!("{} {} {} [{}]", n.list, n.kind(), n.value, n.scope);
    if n.list == List::Allow {
        s.push_str(&format!(" bypass={}", n.checks));
    }
    if n.require_auth {
        s.push_str(" require-auth");
    }
    if n.internal {
        s.push_str(" internal");
    }
    if !n.enabled {
        s.push_str(" disabled");
    }
    if n.expires_at.is_some_and(|t| t <= now) {
        s.push_str(" expired");
    } else if n.starts_at.is_some_and(|t| t > now) {
        s.push_str(" not-yet-active");
    }
    if let Some(t) = n.starts_at {
        s.push_str(&format!(" starts={}", t.to_rfc3339()));
    }
    if let Some(t) = n.expires_at {
        s.push_str(&format!(" expires={}", t.to_rfc3339()));
    }
    if let Some(c) = &n.comment {
        s.push_str(&format!(" # {}", Printable(c.as_str())));
    }
    s
}

async fn entry_list(
    store: &Store,
    filter: EntryFilter,
    json: bool,
    out: &mut Out,
) -> Result<(), Failure> {
    let entries = store.entries(&filter).await?;
    if json {
        let v: Vec<serde_json::Value> = entries
            .iter()
            .map(allowgate_store::entry_to_json)
            .collect::<Result<_, _>>()?;
        return print_json(out, &v);
    }
    let now = Utc::now();
    for e in &entries {
        outln!(out, "{}\t{}", e.id, describe(e, now));
    }
    Ok(())
}

/// An entry id as typed: `12` or `#12`.
fn parse_entry_id(id: &str) -> Result<EntryId, Failure> {
    let n: i64 = id.trim().trim_start_matches('#').parse().map_err(|_| {
        invalid(format!(
            "`{}` is not an entry id (a number such as 12)",
            allowgate_types::shown(id, 40)
        ))
    })?;
    Ok(EntryId(n))
}

async fn entry_show(store: &Store, id: &str, json: bool, out: &mut Out) -> Result<(), Failure> {
    let id = parse_entry_id(id)?;
    let entry = store.entry(id).await?;
    let hits = store.entry_hits(id).await?;
    if json {
        let mut v = allowgate_store::entry_to_json(&entry)?;
        if let Some(map) = v.as_object_mut() {
            map.insert("hits".into(), hits.map_or(0, |h| h.hits).into());
            map.insert(
                "last_hit".into(),
                hits.map_or(serde_json::Value::Null, |h| history_time(h.last_hit).into()),
            );
        }
        return print_json(out, &v);
    }
    outln!(out, "{}\t{}", entry.id, describe(&entry, Utc::now()));
    outln!(
        out,
        "created:  {} by {}",
        history_time(entry.created_at),
        Printable(&entry.created_by)
    );
    match hits {
        Some(h) => outln!(
            out,
            "hits:     {}, last {}",
            h.hits,
            history_time(h.last_hit)
        ),
        None => outln!(out, "hits:     none yet"),
    }
    Ok(())
}

async fn entry_rm(store: &Store, id: &str, actor: &Actor, out: &mut Out) -> Result<(), Failure> {
    let removed = store.remove_entry(parse_entry_id(id)?, actor).await?;
    outln!(
        out,
        "removed entry {}: {}",
        removed.id,
        describe(&removed, Utc::now())
    );
    Ok(())
}

async fn import(store: &Store, a: ImportArgs, actor: &Actor, out: &mut Out) -> Result<(), Failure> {
    let json = a.json;
    let file = a.file.clone();
    match import_file(store, a, actor, out).await {
        Ok(()) => Ok(()),
        Err(ImportFailure::Refused(e)) => {
            if json {
                // The report goes to stdout even so (a closed stdout changes nothing about the
                // refusal, so its error is not ours to report).
                let _ = print_json(out, &serde_json::json!({ "error": &e }));
            }
            Err(refusal(&file, e))
        }
        Err(ImportFailure::Other(failure)) => {
            if json && let Failure::Other(e) = &failure {
                let error = serde_json::json!({
                    "error": { "code": "error", "message": format!("{e:#}") }
                });
                let _ = print_json(out, &error);
            }
            Err(failure)
        }
    }
}

/// What a refused import tells the user: the file, how many lines are bad, each problem once.
fn refusal(file: &Path, e: ImportError) -> Failure {
    match e {
        ImportError::Invalid(problems) => {
            let noun = match (problems.unit, problems.bad_lines) {
                (allowgate_store::LineUnit::Element, 1) => "JSON array element",
                (allowgate_store::LineUnit::Element, _) => "JSON array elements",
                (_, 1) => "line",
                _ => "lines",
            };
            let mut text = format!(
                "{}: {} invalid {noun}; the import was refused:",
                file.display(),
                problems.bad_lines
            );
            for p in &problems.problems {
                text.push_str("\n  ");
                text.push_str(&p.describe(problems.unit));
            }
            if problems.unlisted > 0 {
                text.push_str(&format!(
                    "\n  … and {} more problems, not listed",
                    problems.unlisted
                ));
            }
            Failure::Invalid(vec![text])
        }
        other => other.into(),
    }
}

/// Why `import` did not import: the file or the store refused it (with a report), or
/// something else went wrong.
enum ImportFailure {
    Refused(ImportError),
    Other(Failure),
}

impl From<Failure> for ImportFailure {
    fn from(f: Failure) -> Self {
        ImportFailure::Other(f)
    }
}

async fn import_file(
    store: &Store,
    a: ImportArgs,
    actor: &Actor,
    out: &mut Out,
) -> Result<(), ImportFailure> {
    let data = read_import_file(&a.file)?;
    let format = a
        .format
        .map_or_else(|| ImportFormat::from_path(&a.file), FormatArg::format);
    let mut req = ImportRequest::new(a.list, a.family.family());
    req.scope = a.scope;
    req.checks = a.bypass;
    req.format = format;
    req.mode = if a.replace {
        ImportMode::Replace
    } else {
        ImportMode::Merge
    };
    req.allow_empty = a.allow_empty;
    req.force = a.force;
    req.require_auth = a.require_auth;
    let bar = (std::io::stderr().is_terminal() && data.len() > 64 * 1024).then(|| {
        let bar = indicatif::ProgressBar::new(1);
        bar.set_style(
            indicatif::ProgressStyle::with_template("{msg} [{bar:40}] {pos}/{len} ({eta})")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        bar.set_message("importing");
        bar
    });
    let progress = |done: u64, total: u64| {
        if let Some(b) = &bar {
            b.set_length(total);
            b.set_position(done);
        }
    };
    let result = store.import(&req, &data, actor, &progress).await;
    if let Some(b) = &bar {
        b.finish_and_clear();
    }
    let report = result.map_err(ImportFailure::Refused)?;
    if a.json {
        return Ok(print_json(out, &report)?);
    }
    for w in &report.warnings {
        warn(format_args!("{w}"));
    }
    outln!(
        out,
        "imported {} entries ({} duplicates ignored, {} removed); revision {}",
        report.added,
        report.duplicates,
        report.removed,
        report.revision
    );
    Ok(())
}

/// Read an import file, at most the import cap (a larger one is refused unread).
fn read_import_file(path: &Path) -> Result<Vec<u8>, ImportFailure> {
    let max = allowgate_store::import::MAX_IMPORT_BYTES as u64;
    let file = std::fs::File::open(path)
        .map_err(|e| Failure::Other(anyhow::anyhow!("cannot open {}: {e}", path.display())))?;
    let size = file.metadata().map(|m| m.len()).unwrap_or(0);
    if size > max {
        return Err(ImportFailure::Refused(ImportError::TooLarge {
            bytes: size,
        }));
    }
    let mut data = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
    file.take(max + 1)
        .read_to_end(&mut data)
        .map_err(|e| Failure::Other(anyhow::anyhow!("cannot read {}: {e}", path.display())))?;
    Ok(data)
}

async fn export(store: &Store, a: ExportArgs, out: &mut Out) -> Result<(), Failure> {
    let format = a.format.format();
    let text = store.export(&a.filter.filter(), format).await?;
    out.text(&text)
}

async fn audit(store: &Store, a: AuditArgs, out: &mut Out) -> Result<(), Failure> {
    let records = store.audit(a.limit).await?;
    if a.json {
        let v: Vec<serde_json::Value> = records
            .iter()
            .map(|r| {
                serde_json::json!({
                    "id": r.id, "revision": r.revision, "at": r.at.to_rfc3339(), "actor": r.actor,
                    "action": r.action, "object": r.object, "object_id": r.object_id,
                    "before": r.before, "after": r.after,
                })
            })
            .collect();
        return print_json(out, &v);
    }
    for r in records {
        let id = r.object_id.map(|i| format!(" #{i}")).unwrap_or_default();
        // Users and tokens are not part of the policy: their changes have no revision.
        let revision = r
            .revision
            .map_or_else(|| "-".to_string(), |n| n.to_string());
        // Stored text is shown escaped: an old row cannot forge lines or move the cursor.
        outln!(
            out,
            "{}\trev {}\t{}\t{} {}{}",
            r.at.to_rfc3339(),
            revision,
            Printable(&r.actor),
            Printable(&r.action),
            Printable(&r.object),
            id
        );
    }
    Ok(())
}

async fn user(
    store: &Store,
    cmd: UserCommand,
    actor: &Actor,
    out: &mut Out,
) -> Result<(), Failure> {
    match cmd {
        UserCommand::Add {
            name,
            role,
            tenant,
            json,
        } => {
            let (user, password) = store.add_user(&name, role, tenant.as_ref(), actor).await?;
            if json {
                let v = serde_json::json!({ "user": user, "password": password.as_str() });
                print_json(out, &v)?;
            } else {
                let tenant = user
                    .tenant
                    .as_ref()
                    .map(|t| format!(", tenant {t}"))
                    .unwrap_or_default();
                outln!(out, "added user {} (role {}{tenant})", user.name, user.role);
                outln!(out, "one-time password: {}", password.as_str());
            }
            err_line(format_args!(
                "the password is shown only now: allowgate keeps only a hash of it"
            ));
        }
        UserCommand::List { json } => {
            let users = store.list_users().await?;
            if json {
                return print_json(out, &users);
            }
            for u in &users {
                outln!(out, "{}", user_line(u));
            }
        }
    }
    Ok(())
}

/// A user in one line: name, role, tenant (`-` for none), when and by whom it was added, and
/// whether it is disabled or locked.
fn user_line(u: &User) -> String {
    let tenant = u
        .tenant
        .as_ref()
        .map_or("-".to_string(), ToString::to_string);
    let mut line = format!(
        "{}\t{}\t{tenant}\tadded {} by {}",
        u.name,
        u.role,
        history_time(u.created_at),
        Printable(&u.created_by)
    );
    if u.disabled {
        line.push_str("\tdisabled");
    }
    if let Some(t) = u.locked_until.filter(|t| *t > Utc::now()) {
        line.push_str(&format!("\tlocked until {}", history_time(t)));
    }
    line
}

async fn token(
    store: &Store,
    cmd: TokenCommand,
    actor: &Actor,
    out: &mut Out,
) -> Result<(), Failure> {
    match cmd {
        TokenCommand::Add { user, label } => {
            let (info, token) = store.add_token(&user, label.as_ref(), actor).await?;
            // stdout holds the token and nothing else: `TOKEN=$(allowgate token add …)`.
            outln!(out, "{}", token.as_str());
            err_line(format_args!(
                "added token {} for user {}{}; it is shown only now: allowgate keeps only a hash \
                 of it",
                info.id,
                info.user,
                label_text(&info)
            ));
        }
        TokenCommand::List { user, json } => {
            let tokens = store.list_tokens(user.as_ref()).await?;
            if json {
                return print_json(out, &tokens);
            }
            for t in &tokens {
                outln!(out, "{}", token_line(t));
            }
        }
        TokenCommand::Revoke { id } => {
            let id = parse_token_id(&id)?;
            let info = store.revoke_token(id, actor).await?;
            outln!(
                out,
                "revoked token {} of user {}{}",
                info.id,
                info.user,
                label_text(&info)
            );
        }
    }
    Ok(())
}

/// ` (label …)`, escaped, or nothing.
fn label_text(t: &TokenInfo) -> String {
    t.label
        .as_ref()
        .map(|l| format!(" (label {})", Printable(l.as_str())))
        .unwrap_or_default()
}

/// A token in one line: id, user, label (`-` for none), when and by whom it was made, its
/// last use, and whether it is revoked.
fn token_line(t: &TokenInfo) -> String {
    let label = t
        .label
        .as_ref()
        .map_or("-".to_string(), |l| Printable(l.as_str()).to_string());
    let used = t.last_used_at.map_or("never used".to_string(), |u| {
        format!("last used {}", history_time(u))
    });
    let state = t.revoked_at.map_or("active".to_string(), |r| {
        format!("revoked {}", history_time(r))
    });
    format!(
        "{}\t{}\t{label}\tadded {} by {}\t{used}\t{state}",
        t.id,
        t.user,
        history_time(t.created_at),
        Printable(&t.created_by)
    )
}

/// A token id as typed: `3` or `#3`.
fn parse_token_id(id: &str) -> Result<TokenId, Failure> {
    let n: i64 = id.trim().trim_start_matches('#').parse().map_err(|_| {
        invalid(format!(
            "`{}` is not a token id (a number, as `token list` shows)",
            allowgate_types::shown(id, 40)
        ))
    })?;
    Ok(TokenId(n))
}

/// A time as history prints it: `2026-12-01T08:00:00Z` (fractions of a second only when
/// there are any).
fn history_time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

async fn history(store: &Store, a: HistoryArgs, out: &mut Out) -> Result<(), Failure> {
    let filter = HistoryFilter {
        sender: a.sender,
        ip: a.ip,
        status: a.status,
        tenant: a.tenant,
        since: a.since,
        limit: a.limit,
    };
    let records = store.history(&filter).await.map_err(|e| match e {
        // The filter's fields are the command's flags.
        StoreError::InvalidHistoryFilter { field, reason } => {
            invalid(format!("--{field}: {reason}"))
        }
        other => other.into(),
    })?;
    if a.json {
        return print_json(out, &serde_json::json!({ "records": records }));
    }
    for r in &records {
        outln!(out, "{}", history_line(r));
    }
    Ok(())
}

/// One message in one line, every stored text escaped: time, queue id, client IP, sender →
/// recipients (the first, and how many more), and the reason (which starts with the status),
/// followed by `(at RCPT)` for the policy server's decisions.
fn history_line(r: &HistoryRecord) -> String {
    let queue_id = r.queue_id.as_deref().unwrap_or("-");
    let sender = r.sender.as_deref().unwrap_or("<>");
    let recipients = match r.recipients.as_slice() {
        [] => "-".to_string(),
        [one] => Printable(one).to_string(),
        [first, rest @ ..] => format!("{} (+{} more)", Printable(first), rest.len()),
    };
    let status = r.status.as_str();
    let reason = if r
        .reason
        .get(..status.len())
        .is_some_and(|head| head.eq_ignore_ascii_case(status))
    {
        Printable(&r.reason).to_string()
    } else if r.reason.is_empty() {
        Printable(status).to_string()
    } else {
        format!("{}: {}", Printable(status), Printable(&r.reason))
    };
    // A refusal at RCPT: that recipient's delivery ended before the message was sent.
    let at = if r.stage == "rcpt" { " (at RCPT)" } else { "" };
    format!(
        "{}\t{}\t{}\t{} → {recipients}\t{reason}{at}",
        history_time(r.time),
        Printable(queue_id),
        Printable(&r.client_ip),
        Printable(sender),
    )
}

/// A message for `check --message`: a file, or stdin for `-`; at most 10 MiB.
fn read_message(path: &Path) -> Result<Vec<u8>, Failure> {
    let mut raw = Vec::new();
    let read = if path == Path::new("-") {
        std::io::stdin()
            .lock()
            .take(MAX_MESSAGE_BYTES + 1)
            .read_to_end(&mut raw)
            .map_err(|e| anyhow::anyhow!("cannot read the message from stdin: {e}"))
    } else {
        let file = std::fs::File::open(path)
            .map_err(|e| anyhow::anyhow!("cannot open {}: {e}", path.display()))?;
        file.take(MAX_MESSAGE_BYTES + 1)
            .read_to_end(&mut raw)
            .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))
    };
    read?;
    if raw.len() as u64 > MAX_MESSAGE_BYTES {
        return Err(invalid(format!(
            "--message: the message is larger than {} MiB",
            MAX_MESSAGE_BYTES / (1024 * 1024)
        )));
    }
    Ok(raw)
}

async fn check(store: &Store, a: CheckArgs, out: &mut Out) -> Result<(), Failure> {
    let raw_message = match &a.message {
        None => None,
        Some(path) => Some(read_message(path)?),
    };
    let request = EvaluateRequest {
        ip: a.ip,
        helo: a.helo,
        host: a.host,
        mail_from: a.mail_from,
        rcpt: a.rcpts,
        message: None,
        raw_message,
        country: a.country,
        authenticated: a.authenticated,
        at: a.at,
    };
    // Refuse a bad request before reading the whole policy.
    request.context(Utc::now()).map_err(invalid_request)?;
    let loaded = policy::load(store, &PolicyConfig::default(), &Default::default()).await?;
    for e in &loaded.unreadable {
        warn(format_args!("{e}; left out"));
    }
    for w in &loaded.warnings {
        warn(format_args!("entry {}: {}", w.entry, w.message));
    }
    let verdict = request
        .evaluate(&loaded.snapshot, Utc::now())
        .map_err(invalid_request)?;
    if a.json {
        return print_json(out, &verdict);
    }
    print_verdict(out, &verdict)
}

/// The flags behind a request's invalid fields: `rcpt[1]` → `--rcpt` (the 2nd).
fn invalid_request(e: InvalidRequest) -> Failure {
    Failure::Invalid(
        e.0.iter()
            .map(|f| {
                let (name, index) = match f.field.split_once('[') {
                    Some((name, rest)) => (name, rest.trim_end_matches(']').parse::<usize>().ok()),
                    None => (f.field.as_str(), None),
                };
                let flag = match name {
                    "rcpt" => "rcpt".to_string(),
                    other => other.replace('_', "-"),
                };
                match index {
                    Some(i) => format!("--{flag} (#{}): {}", i + 1, f.reason),
                    None => format!("--{flag}: {}", f.reason),
                }
            })
            .collect(),
    )
}

fn print_verdict(out: &mut Out, v: &Verdict) -> Result<(), Failure> {
    let ids = |ids: &[EntryId]| {
        ids.iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    };
    outln!(out, "{}", v.reason());
    outln!(out, "action:     {} ({})", v.action, v.status);
    let tenants: Vec<String> = v
        .tenants
        .iter()
        .map(|t| t.as_ref().map_or("(no tenant)".into(), ToString::to_string))
        .collect();
    outln!(out, "tenant:     {}", tenants.join(", "));
    outln!(
        out,
        "client ip:  {} (connecting {})",
        v.client_ip,
        v.connecting_ip
    );
    match (&v.sender, v.sender_source) {
        (Some(s), Some(src)) => outln!(out, "sender:     {s} (from {src})"),
        _ => outln!(out, "sender:     (none)"),
    }
    if v.bypassed.is_empty() {
        outln!(out, "bypassed:   (nothing)");
    } else {
        let parts: Vec<String> = v
            .bypassed_by
            .iter()
            .map(|(c, e)| format!("{c} by {}", ids(e)))
            .collect();
        outln!(out, "bypassed:   {}", parts.join("; "));
    }
    if !v.blocked_by.is_empty() {
        outln!(out, "blocked by: {}", ids(&v.blocked_by));
    }
    if !v.matched.is_empty() {
        outln!(out, "matched:");
        for m in &v.matched {
            let mut line = format!(
                "  {} {} {} {} [{}] on {}",
                m.id, m.list, m.kind, m.value, m.scope, m.matched_on
            );
            if m.list == List::Allow {
                line.push_str(&format!(" bypass={}", m.checks));
            }
            if let Some(n) = &m.note {
                line.push_str(&format!(" ({n})"));
            }
            outln!(out, "{line}");
        }
    }
    if v.recipients.len() > 1 {
        outln!(out, "recipients:");
        for r in &v.recipients {
            outln!(out, "  {} → {} ({})", r.address, r.action, r.status);
        }
    }
    let checks: Vec<String> = v.checks.iter().map(|(c, o)| format!("{c}={o}")).collect();
    outln!(out, "checks:     {}", checks.join(" "));
    for (c, reason) in &v.check_reasons {
        outln!(out, "  {c}: {reason}");
    }
    for n in &v.notes {
        outln!(out, "note:       {n}");
    }
    Ok(())
}
