//! `allowgate`: manage allow/block/ignore lists and ask what happens to a sender.
//!
//! The command-line contract is DESIGN §5: exit code 0 on success, 2 on invalid input (nothing
//! changed), 1 on other errors.

use std::io::{IsTerminal, Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use allowgate_core::{Context, MessageFacts, PolicyConfig, Snapshot, Verdict, evaluate};
use allowgate_store::{
    EntryFilter, ImportError, ImportFamily, ImportFormat, ImportMode, ImportRequest, Store,
    StoreError,
};
use allowgate_types::{
    Actor, CheckSet, CountryCode, Domain, EmailAddress, Entry, EntryId, EntryKind, EntrySpec, List,
    Scope, TenantName, parse_ip, parse_time,
};
use chrono::{DateTime, Utc};
use clap::{Args, Parser, Subcommand, ValueEnum};

/// Largest message file `check --message` reads.
const MAX_MESSAGE_FILE: u64 = 10 * 1024 * 1024;

#[derive(Parser)]
#[command(
    name = "allowgate",
    version,
    about = "Sender allow/block/ignore lists for an e-mail security gateway"
)]
struct Cli {
    /// Database: sqlite://FILE (the embedded default) or postgres://…
    #[arg(
        long,
        global = true,
        env = "ALLOWGATE_DB",
        default_value = "sqlite://allowgate.db"
    )]
    db: String,
    /// Who makes the change, for the audit log (default: $USER).
    #[arg(long, global = true, env = "ALLOWGATE_ACTOR")]
    actor: Option<String>,
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
    Import(ImportArgs),
    /// Export entries as text, CSV or JSON.
    Export(ExportArgs),
    /// Ask what happens to a message from a sender.
    Check(CheckArgs),
    /// Show the audit log, newest first.
    Audit(AuditArgs),
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
}

#[derive(Subcommand)]
enum EntryCommand {
    /// Add one entry.
    Add(AddArgs),
    /// List entries.
    List {
        #[command(flatten)]
        filter: FilterArgs,
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
    /// Checks this sender may bypass (allow entries): ids, group names or `all`.
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
    /// The file (text: one value per line or separated by `,`/`;`, `value # comment`; .csv; .json).
    file: PathBuf,
    /// The list the entries go on.
    #[arg(long)]
    list: List,
    /// What the file holds: `server` (IPs, ranges, host names) or `email` (addresses, domains);
    /// or one entry kind.
    #[arg(long = "type")]
    family: FamilyArg,
    /// Checks bypassed by every entry (allow lists).
    #[arg(long)]
    bypass: Option<CheckSet>,
    /// `global` or a tenant name.
    #[arg(long, default_value = "global")]
    scope: Scope,
    /// Replace the existing entries of this list, scope and type instead of merging.
    #[arg(long)]
    replace: bool,
    /// File format (default: from the extension; text otherwise).
    #[arg(long)]
    format: Option<FormatArg>,
    /// Entries only count when the sender is authenticated (email imports).
    #[arg(long)]
    require_auth: bool,
    /// Accept over-broad values and bypassing malware.
    #[arg(long)]
    force: bool,
    /// Print the report as JSON.
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
    host: Option<Domain>,
    /// SMTP MAIL FROM (`<>` or empty for the null sender).
    #[arg(long)]
    mail_from: Option<String>,
    /// Recipient (repeat for more).
    #[arg(long = "rcpt", required = true)]
    rcpts: Vec<EmailAddress>,
    /// A message (.eml) for header senders, Received: walking and body lists.
    #[arg(long)]
    message: Option<PathBuf>,
    /// The GeoIP country of the client (until a GeoIP database is configured).
    #[arg(long)]
    country: Option<CountryCode>,
    /// Treat this sender domain as authenticated (aligned SPF/DKIM or DMARC pass); repeatable.
    #[arg(long = "authenticated")]
    authenticated: Vec<Domain>,
    /// Evaluate at this time instead of now (RFC 3339 or YYYY-MM-DD).
    #[arg(long, value_parser = parse_time_arg)]
    at: Option<DateTime<Utc>>,
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

fn parse_time_arg(s: &str) -> Result<DateTime<Utc>, String> {
    parse_time(s).map_err(|e| e.to_string())
}

/// Why a command failed: invalid input (exit 2, nothing changed) or anything else (exit 1).
enum Failure {
    Invalid(Vec<String>),
    Other(anyhow::Error),
}

impl From<anyhow::Error> for Failure {
    fn from(e: anyhow::Error) -> Self {
        Failure::Other(e)
    }
}

impl From<StoreError> for Failure {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Duplicate { .. }
            | StoreError::NotFound { .. }
            | StoreError::UnknownTenant { .. }
            | StoreError::TenantExists { .. }
            | StoreError::DomainTaken { .. } => Failure::Invalid(vec![e.to_string()]),
            other => Failure::Other(anyhow::Error::new(other)),
        }
    }
}

fn invalid(message: impl Into<String>) -> Failure {
    Failure::Invalid(vec![message.into()])
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Invalid(messages)) => {
            for m in messages {
                eprintln!("error: {m}");
            }
            eprintln!("nothing was changed");
            ExitCode::from(2)
        }
        Err(Failure::Other(e)) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}

async fn run(cli: Cli) -> Result<(), Failure> {
    let actor = cli
        .actor
        .clone()
        .or_else(|| std::env::var("USER").ok())
        .unwrap_or_else(|| "cli".into());
    let actor =
        Actor::parse(&format!("cli:{actor}")).map_err(|e| invalid(format!("--actor: {e}")))?;
    let store = Store::open(&cli.db)
        .await
        .map_err(|e| anyhow::anyhow!("cannot open {}: {e}", cli.db))?;
    let result = match cli.command {
        Command::Tenant(cmd) => tenant(&store, cmd, &actor).await,
        Command::Entry(EntryCommand::Add(args)) => entry_add(&store, args, &actor).await,
        Command::Entry(EntryCommand::List { filter, json }) => {
            entry_list(&store, filter.filter(), json).await
        }
        Command::Entry(EntryCommand::Rm { id }) => entry_rm(&store, &id, &actor).await,
        Command::Import(args) => import(&store, args, &actor).await,
        Command::Export(args) => export(&store, args).await,
        Command::Check(args) => check(&store, args).await,
        Command::Audit(args) => audit(&store, args).await,
    };
    store.close().await;
    result
}

fn print_json(value: &impl serde::Serialize) -> Result<(), Failure> {
    let text = serde_json::to_string_pretty(value).map_err(anyhow::Error::new)?;
    println!("{text}");
    Ok(())
}

async fn tenant(store: &Store, cmd: TenantCommand, actor: &Actor) -> Result<(), Failure> {
    match cmd {
        TenantCommand::Add { name, domains } => {
            let t = store.add_tenant(&name, &domains, actor).await?;
            let domains: Vec<String> = t.domains.iter().map(ToString::to_string).collect();
            println!("added tenant {} ({})", t.name, domains.join(", "));
        }
        TenantCommand::List { json } => {
            let tenants = store.tenants().await?;
            if json {
                let v: Vec<serde_json::Value> = tenants
                    .iter()
                    .map(|t| serde_json::json!({ "name": t.name, "domains": t.domains }))
                    .collect();
                return print_json(&v);
            }
            for t in tenants {
                let domains: Vec<String> = t.domains.iter().map(ToString::to_string).collect();
                println!("{}\t{}", t.name, domains.join(","));
            }
        }
    }
    Ok(())
}

async fn entry_add(store: &Store, a: AddArgs, actor: &Actor) -> Result<(), Failure> {
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
        eprintln!("warning: {w}");
    }
    let entry = store.add_entry(&new, actor).await?;
    if a.json {
        return print_json(&allowgate_store::entry_to_json(&entry)?);
    }
    println!("added entry {}: {}", entry.id, describe(&entry));
    Ok(())
}

fn describe(e: &Entry) -> String {
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
    if let Some(t) = n.starts_at {
        s.push_str(&format!(" starts={}", t.to_rfc3339()));
    }
    if let Some(t) = n.expires_at {
        s.push_str(&format!(" expires={}", t.to_rfc3339()));
    }
    if let Some(c) = &n.comment {
        s.push_str(&format!(" # {c}"));
    }
    s
}

async fn entry_list(store: &Store, filter: EntryFilter, json: bool) -> Result<(), Failure> {
    let entries = store.entries(&filter).await?;
    if json {
        let v: Vec<serde_json::Value> = entries
            .iter()
            .map(allowgate_store::entry_to_json)
            .collect::<Result<_, _>>()?;
        return print_json(&v);
    }
    let mut out = std::io::stdout().lock();
    for e in &entries {
        writeln!(out, "{}\t{}", e.id, describe(e)).map_err(anyhow::Error::new)?;
    }
    Ok(())
}

async fn entry_rm(store: &Store, id: &str, actor: &Actor) -> Result<(), Failure> {
    let n: i64 = id
        .trim()
        .trim_start_matches('#')
        .parse()
        .map_err(|_| invalid(format!("`{id}` is not an entry id (a number such as 12)")))?;
    let removed = store.remove_entry(EntryId(n), actor).await?;
    println!("removed entry {}: {}", removed.id, describe(&removed));
    Ok(())
}

async fn import(store: &Store, a: ImportArgs, actor: &Actor) -> Result<(), Failure> {
    let file = std::fs::File::open(&a.file)
        .map_err(|e| anyhow::anyhow!("cannot open {}: {e}", a.file.display()))?;
    let size = file.metadata().map(|m| m.len()).unwrap_or(0);
    if size > allowgate_store::import::MAX_IMPORT_BYTES as u64 {
        return Err(invalid(ImportError::TooLarge { bytes: size }.to_string()));
    }
    let mut data = Vec::with_capacity(size as usize);
    file.take(allowgate_store::import::MAX_IMPORT_BYTES as u64 + 1)
        .read_to_end(&mut data)
        .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", a.file.display()))?;
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
    let report = match result {
        Ok(r) => r,
        Err(ImportError::Invalid(problems)) => {
            let mut messages = vec![format!("{}: {problems}", a.file.display())];
            messages.truncate(1);
            return Err(Failure::Invalid(messages));
        }
        Err(ImportError::Store(e)) => return Err(e.into()),
        Err(
            e @ (ImportError::TooLarge { .. }
            | ImportError::TooManyEntries { .. }
            | ImportError::NotUtf8 { .. }
            | ImportError::WouldEmpty { .. }),
        ) => {
            return Err(invalid(e.to_string()));
        }
        #[allow(unreachable_patterns)]
        Err(e) => return Err(Failure::Other(anyhow::Error::new(e))),
    };
    if a.json {
        return print_json(&report);
    }
    for w in &report.warnings {
        eprintln!("warning: {w}");
    }
    println!(
        "imported {} entries ({} duplicates ignored, {} removed); revision {}",
        report.added, report.duplicates, report.removed, report.revision
    );
    Ok(())
}

async fn export(store: &Store, a: ExportArgs) -> Result<(), Failure> {
    let format = a.format.format();
    let text = store.export(&a.filter.filter(), format).await?;
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes()).map_err(anyhow::Error::new)?;
    Ok(())
}

async fn audit(store: &Store, a: AuditArgs) -> Result<(), Failure> {
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
        return print_json(&v);
    }
    for r in records {
        let id = r.object_id.map(|i| format!(" #{i}")).unwrap_or_default();
        println!(
            "{}\trev {}\t{}\t{} {}{}",
            r.at.to_rfc3339(),
            r.revision,
            r.actor,
            r.action,
            r.object,
            id
        );
    }
    Ok(())
}

async fn check(store: &Store, a: CheckArgs) -> Result<(), Failure> {
    let client_ip = parse_ip(&a.ip).map_err(|e| invalid(format!("--ip: {e}")))?;
    let mail_from = match a.mail_from.as_deref().map(str::trim) {
        None | Some("") | Some("<>") => None,
        Some(m) => Some(EmailAddress::parse(m).map_err(|e| invalid(format!("--mail-from: {e}")))?),
    };
    let message = match &a.message {
        None => None,
        Some(path) => {
            let file = std::fs::File::open(path)
                .map_err(|e| anyhow::anyhow!("cannot open {}: {e}", path.display()))?;
            let mut raw = Vec::new();
            file.take(MAX_MESSAGE_FILE)
                .read_to_end(&mut raw)
                .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
            Some(MessageFacts::parse(&raw))
        }
    };
    let tenants = store.tenants().await?;
    let entries = store.entries(&EntryFilter::default()).await?;
    let revision = store.revision().await?;
    let (snapshot, warnings) = Snapshot::compile(
        revision,
        PolicyConfig::default(),
        &tenants,
        entries,
        &Default::default(),
    );
    for w in warnings {
        eprintln!("warning: entry {}: {}", w.entry, w.message);
    }
    let ctx = Context {
        now: a.at.unwrap_or_else(Utc::now),
        client_ip,
        client_host: a.host,
        helo: a.helo,
        mail_from,
        recipients: a.rcpts,
        message,
        country: a.country,
        authenticated_domains: (!a.authenticated.is_empty()).then_some(a.authenticated),
    };
    let verdict = evaluate(&snapshot, &ctx);
    if a.json {
        return print_json(&verdict);
    }
    print_verdict(&verdict);
    Ok(())
}

fn print_verdict(v: &Verdict) {
    let ids = |ids: &[EntryId]| {
        ids.iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    };
    println!("{}", v.reason());
    println!("action:     {:?} ({:?})", v.action, v.status);
    let tenants: Vec<String> = v
        .tenants
        .iter()
        .map(|t| t.as_ref().map_or("(no tenant)".into(), ToString::to_string))
        .collect();
    println!("tenant:     {}", tenants.join(", "));
    println!(
        "client ip:  {} (connecting {})",
        v.client_ip, v.connecting_ip
    );
    match (&v.sender, v.sender_source) {
        (Some(s), Some(src)) => println!("sender:     {s} (from {src})"),
        _ => println!("sender:     (none)"),
    }
    if v.bypassed.is_empty() {
        println!("bypassed:   (nothing)");
    } else {
        let parts: Vec<String> = v
            .bypassed_by
            .iter()
            .map(|(c, e)| format!("{c} by {}", ids(e)))
            .collect();
        println!("bypassed:   {}", parts.join("; "));
    }
    if !v.blocked_by.is_empty() {
        println!("blocked by: {}", ids(&v.blocked_by));
    }
    if !v.matched.is_empty() {
        println!("matched:");
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
            println!("{line}");
        }
    }
    if v.recipients.len() > 1 {
        println!("recipients:");
        for r in &v.recipients {
            println!("  {} → {:?} ({:?})", r.address, r.action, r.status);
        }
    }
    let checks: Vec<String> = v
        .checks
        .iter()
        .map(|(c, o)| {
            format!(
                "{c}={}",
                serde_json::to_value(o)
                    .ok()
                    .and_then(|x| x.as_str().map(String::from))
                    .unwrap_or_default()
            )
        })
        .collect();
    println!("checks:     {}", checks.join(" "));
    for n in &v.notes {
        println!("note:       {n}");
    }
}
