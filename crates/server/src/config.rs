//! The configuration of `allowgate serve`: a TOML file whose every key is optional (no file is
//! needed), checked strictly (an unknown key is an error, not a silent no-op).
//!
//! ```
//! use allowgate_server::config::Config;
//! let config = Config::from_toml("[listen]\npolicy = \"127.0.0.1:0\"\n").unwrap();
//! assert_eq!(config.listen.policy.port(), 0);
//! assert_eq!(config.store.url, "sqlite://allowgate.db");
//! assert!(Config::from_toml("[listen]\npolicy_port = 1\n").is_err());
//! ```

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use allowgate_core::{BlockAction, PolicyConfig};
use allowgate_types::{CheckSet, shown};
use serde::Deserialize;

/// Largest configuration file read.
pub const MAX_CONFIG_BYTES: u64 = 1024 * 1024;

/// Everything `allowgate serve` can be told.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Where the entries live.
    pub store: StoreConfig,
    /// Where the listeners bind.
    pub listen: ListenConfig,
    /// What matches do.
    pub policy: PolicySettings,
    /// The Postfix policy server.
    pub policy_server: PolicyServerConfig,
    /// The milter.
    pub milter: MilterConfig,
    /// The email history.
    pub history: HistoryConfig,
    /// How changes made elsewhere (the CLI, another node) are picked up.
    pub reload: ReloadConfig,
    /// Logging.
    pub log: LogConfig,
    /// The async runtime.
    pub runtime: RuntimeConfig,
}

/// `[runtime]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct RuntimeConfig {
    /// Threads that serve the listeners. Default 0: one per core. On a gateway whose cores
    /// Postfix and the content filters keep busy, fewer threads wake each other less often
    /// (BENCHMARKS.md measures 1 against one per core).
    pub worker_threads: usize,
}

/// `[store]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// The database: `sqlite://PATH` (created if missing). Default `sqlite://allowgate.db`.
    pub url: String,
    /// How long a change waits for another to finish, in seconds. Default 10.
    pub busy_timeout_s: f64,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            url: "sqlite://allowgate.db".into(),
            busy_timeout_s: 10.0,
        }
    }
}

/// `[listen]`: loopback by default; port 0 picks a free port.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ListenConfig {
    /// The Postfix policy server. Default `127.0.0.1:10040`.
    pub policy: SocketAddr,
    /// The milter. Default `127.0.0.1:10041`.
    pub milter: SocketAddr,
    /// Health and metrics (the HTTP API and admin UI come later). Default `127.0.0.1:8040`.
    pub http: SocketAddr,
}

impl Default for ListenConfig {
    fn default() -> Self {
        ListenConfig {
            policy: SocketAddr::from(([127, 0, 0, 1], 10040)),
            milter: SocketAddr::from(([127, 0, 0, 1], 10041)),
            http: SocketAddr::from(([127, 0, 0, 1], 8040)),
        }
    }
}

/// What a block match (or a spam verdict) does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BlockActionSetting {
    /// Refuse at SMTP time.
    Reject,
    /// Accept into quarantine (Postfix's hold queue).
    Quarantine,
    /// Deliver marked as spam.
    Tag,
}

impl From<BlockActionSetting> for BlockAction {
    fn from(a: BlockActionSetting) -> BlockAction {
        match a {
            BlockActionSetting::Reject => BlockAction::Reject,
            BlockActionSetting::Quarantine => BlockAction::Quarantine,
            BlockActionSetting::Tag => BlockAction::Tag,
        }
    }
}

/// `[policy]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PolicySettings {
    /// What a block entry does: `reject` (default), `quarantine` or `tag`.
    pub block_action: BlockActionSetting,
    /// What a spam verdict and a country block do: `quarantine` (default), `reject` or `tag`.
    pub spam_action: BlockActionSetting,
    /// Checks no entry may ever bypass (check ids or group ids), e.g. `["malware"]`. Default
    /// none.
    pub never_bypass: Vec<String>,
    /// Checks whose failure rejects the message when not bypassed. Default none: installing
    /// allowgate rejects nothing the lists do not say.
    pub reject_on_fail: Vec<String>,
}

impl Default for PolicySettings {
    fn default() -> Self {
        PolicySettings {
            block_action: BlockActionSetting::Reject,
            spam_action: BlockActionSetting::Quarantine,
            never_bypass: Vec::new(),
            reject_on_fail: Vec::new(),
        }
    }
}

/// `[policy_server]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PolicyServerConfig {
    /// Largest request, in bytes. Default 65536.
    pub max_request_bytes: usize,
    /// Most attributes in a request. Default 256.
    pub max_attributes: usize,
    /// An idle connection is closed after this many seconds. Default 600 (longer than
    /// Postfix's `smtpd_policy_service_max_idle`, 300 s, so Postfix closes first).
    pub idle_timeout_s: u64,
    /// A request not complete this many seconds after its first byte closes the connection
    /// (however slowly it trickles in).
    /// Default 30.
    pub read_timeout_s: u64,
    /// The text of a refusal: status code, then words that name no entry. Default
    /// `5.7.1 Message refused by the recipient's mail policy`.
    pub reject_text: String,
    /// Most connections served at once; more wait to be accepted. Default 1024.
    pub max_connections: usize,
    /// Which of its answers the policy server records in the email history. Default
    /// `refusals`: the recipients it rejects or defers, which never reach the milter; the
    /// milter records every message that gets past RCPT, once. `all`: every answer, for a
    /// Postfix that uses the policy server without the milter.
    pub history: PolicyHistory,
}

/// `policy_server.history`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PolicyHistory {
    /// Rejections and deferrals only.
    Refusals,
    /// Every answer.
    All,
}

impl Default for PolicyServerConfig {
    fn default() -> Self {
        PolicyServerConfig {
            max_request_bytes: 64 * 1024,
            max_attributes: 256,
            idle_timeout_s: 600,
            read_timeout_s: 30,
            reject_text: "5.7.1 Message refused by the recipient's mail policy".into(),
            max_connections: 1024,
            history: PolicyHistory::Refusals,
        }
    }
}

/// Which extra headers the milter adds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HeaderProfile {
    /// `X-Allowgate` only.
    Standard,
    /// Also Exchange Online's: `X-MS-Exchange-Organization-SCL: -1` when `spam` is bypassed,
    /// `…-BypassClutter: true` for `graymail`, `…-SkipSafeLinksProcessing: 1` for
    /// `safe-links`, `…-SkipSafeAttachmentProcessing: 1` for `safe-attachments`.
    Exchange,
}

/// `[milter]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MilterConfig {
    /// Extra headers: `standard` (default) or `exchange`.
    pub header_profile: HeaderProfile,
    /// The text of a refusal (5.x.x code and words that name no entry). Default as the policy
    /// server's.
    pub reject_text: String,
    /// Most bytes of a message kept for matching (headers and body); the rest passes unread.
    /// Default 10 MiB.
    pub max_message_bytes: usize,
    /// Most headers kept per message. Default 1000.
    pub max_headers: usize,
    /// An idle connection is closed after this many seconds. Default 600.
    pub idle_timeout_s: u64,
    /// Most connections served at once. Default 1024.
    pub max_connections: usize,
}

impl Default for MilterConfig {
    fn default() -> Self {
        MilterConfig {
            header_profile: HeaderProfile::Standard,
            reject_text: PolicyServerConfig::default().reject_text,
            max_message_bytes: 10 * 1024 * 1024,
            max_headers: 1000,
            idle_timeout_s: 600,
            max_connections: 1024,
        }
    }
}

/// `[history]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HistoryConfig {
    /// Record every decision. Default true.
    pub enabled: bool,
    /// Decisions waiting to be written at most; more are dropped and counted (mail never
    /// waits for history). Default 10000.
    pub queue: usize,
    /// Records are deleted after this many days. Default 30.
    pub retention_days: u32,
    /// This gateway's name in the records. Default: the host name.
    pub node: String,
}

impl Default for HistoryConfig {
    fn default() -> Self {
        HistoryConfig {
            enabled: true,
            queue: 10_000,
            retention_days: 30,
            node: String::new(),
        }
    }
}

/// `[reload]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReloadConfig {
    /// How often the store's revision is read, in milliseconds (a change is served within this
    /// plus the compile time). Default 250.
    pub poll_interval_ms: u64,
}

impl Default for ReloadConfig {
    fn default() -> Self {
        ReloadConfig {
            poll_interval_ms: 250,
        }
    }
}

/// Log format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// One readable line per event (default).
    Human,
    /// One JSON object per line.
    Json,
}

/// `[log]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// `human` (default) or `json`.
    pub format: LogFormat,
    /// A filter such as `info` (default), `debug`, or `info,allowgate_server=debug`; the
    /// `RUST_LOG` environment variable overrides it.
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            format: LogFormat::Human,
            level: "info".into(),
        }
    }
}

/// Why a configuration was refused: every problem found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid configuration{}:\n  {}", .source_name.as_deref().map(|p| format!(" in {p}")).unwrap_or_default(), .problems.join("\n  "))]
pub struct ConfigError {
    /// The file, if one was read.
    pub source_name: Option<String>,
    /// Each problem, naming its key.
    pub problems: Vec<String>,
}

impl Config {
    /// Parse and check a configuration text, reporting every problem found: each section is
    /// read on its own (a bad key in one does not hide the others), then every value is checked.
    pub fn from_toml(text: &str) -> Result<Config, ConfigError> {
        let bad = |problems: Vec<String>| ConfigError {
            source_name: None,
            problems,
        };
        let table: toml::Table =
            toml::from_str(text).map_err(|e| bad(vec![toml_message(&e.to_string())]))?;
        let mut problems = Vec::new();
        let mut config = Config::default();
        for (section, value) in table {
            let result = match section.as_str() {
                "store" => value.try_into().map(|v| config.store = v),
                "listen" => value.try_into().map(|v| config.listen = v),
                "policy" => value.try_into().map(|v| config.policy = v),
                "policy_server" => value.try_into().map(|v| config.policy_server = v),
                "milter" => value.try_into().map(|v| config.milter = v),
                "history" => value.try_into().map(|v| config.history = v),
                "reload" => value.try_into().map(|v| config.reload = v),
                "log" => value.try_into().map(|v| config.log = v),
                "runtime" => value.try_into().map(|v| config.runtime = v),
                other => {
                    problems.push(format!(
                        "[{}]: unknown section; known: store, listen, policy, policy_server, milter, history, reload, log, runtime",
                        shown(other, 40)
                    ));
                    continue;
                }
            };
            if let Err(e) = result {
                problems.push(format!("[{section}]: {}", toml_message(&e.to_string())));
            }
        }
        problems.extend(config.problems());
        if problems.is_empty() {
            Ok(config)
        } else {
            Err(bad(problems))
        }
    }

    /// Read, parse and check a configuration file (at most 1 MiB).
    pub fn from_file(path: &Path) -> Result<Config, ConfigError> {
        let name = path.display().to_string();
        let fail = |problem: String| ConfigError {
            source_name: Some(name.clone()),
            problems: vec![problem],
        };
        let meta = std::fs::metadata(path).map_err(|e| fail(format!("cannot read it: {e}")))?;
        if meta.len() > MAX_CONFIG_BYTES {
            return Err(fail(format!(
                "it is {} bytes; the limit is {MAX_CONFIG_BYTES}",
                meta.len()
            )));
        }
        let text =
            std::fs::read_to_string(path).map_err(|e| fail(format!("cannot read it: {e}")))?;
        Config::from_toml(&text).map_err(|mut e| {
            e.source_name = Some(name);
            e
        })
    }

    /// Every problem the types cannot express, each naming its key.
    fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if !self.store.url.starts_with("sqlite:") {
            problems.push(format!(
                "store.url: `{}` is not a sqlite: URL (PostgreSQL comes in a later release)",
                shown(&self.store.url, 80)
            ));
        }
        if !(0.0..=3600.0).contains(&self.store.busy_timeout_s) {
            problems.push("store.busy_timeout_s: must be between 0 and 3600".into());
        }
        for (key, list) in [
            ("policy.never_bypass", &self.policy.never_bypass),
            ("policy.reject_on_fail", &self.policy.reject_on_fail),
        ] {
            if let Err(e) = list.join(",").parse::<CheckSet>() {
                problems.push(format!("{key}: {e}"));
            }
        }
        let ps = &self.policy_server;
        if !(1024..=16 * 1024 * 1024).contains(&ps.max_request_bytes) {
            problems
                .push("policy_server.max_request_bytes: must be between 1024 and 16 MiB".into());
        }
        if !(16..=65536).contains(&ps.max_attributes) {
            problems.push("policy_server.max_attributes: must be between 16 and 65536".into());
        }
        if ps.idle_timeout_s == 0 || ps.read_timeout_s == 0 {
            problems
                .push("policy_server: idle_timeout_s and read_timeout_s must be positive".into());
        }
        if ps.max_connections == 0 {
            problems.push("policy_server.max_connections: must be positive".into());
        }
        for (key, text) in [
            ("policy_server.reject_text", &ps.reject_text),
            ("milter.reject_text", &self.milter.reject_text),
        ] {
            let ok = text.len() <= 200
                && !text.chars().any(char::is_control)
                && text.starts_with("5.")
                && !text.contains('%');
            if !ok {
                problems.push(format!(
                    "{key}: a 5.x.x status code and words, at most 200 characters, no control \
                     characters and no `%`"
                ));
            }
        }
        let m = &self.milter;
        if !(64 * 1024..=100 * 1024 * 1024).contains(&m.max_message_bytes) {
            problems.push("milter.max_message_bytes: must be between 64 KiB and 100 MiB".into());
        }
        if !(16..=100_000).contains(&m.max_headers) {
            problems.push("milter.max_headers: must be between 16 and 100000".into());
        }
        if m.idle_timeout_s == 0 || m.max_connections == 0 {
            problems.push("milter: idle_timeout_s and max_connections must be positive".into());
        }
        let h = &self.history;
        if !(1..=10_000_000).contains(&h.queue) {
            problems.push("history.queue: must be between 1 and 10000000".into());
        }
        if !(1..=3650).contains(&h.retention_days) {
            problems.push("history.retention_days: must be between 1 and 3650".into());
        }
        if h.node.len() > 64 || h.node.chars().any(|c| c.is_control() || c.is_whitespace()) {
            problems.push(
                "history.node: at most 64 characters, no spaces or control characters".into(),
            );
        }
        if self.runtime.worker_threads > 256 {
            problems.push("runtime.worker_threads: at most 256 (0: one per core)".into());
        }
        if !(10..=60_000).contains(&self.reload.poll_interval_ms) {
            problems.push("reload.poll_interval_ms: must be between 10 and 60000".into());
        }
        problems
    }

    /// The engine's settings.
    pub fn policy_config(&self) -> PolicyConfig {
        let set = |list: &[String]| list.join(",").parse::<CheckSet>().unwrap_or_default();
        PolicyConfig {
            never_bypass: set(&self.policy.never_bypass),
            block_action: self.policy.block_action.into(),
            spam_action: self.policy.spam_action.into(),
            reject_on_fail: set(&self.policy.reject_on_fail),
        }
    }

    /// The reload poll interval.
    pub fn poll_interval(&self) -> Duration {
        Duration::from_millis(self.reload.poll_interval_ms)
    }
}

/// A TOML error on one line (its own lines joined).
fn toml_message(text: &str) -> String {
    text.split('\n')
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_file_needed_and_every_key_has_a_default() {
        let empty = Config::from_toml("").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(empty, Config::default());
        assert_eq!(empty.listen.policy.to_string(), "127.0.0.1:10040");
        assert_eq!(empty.listen.http.to_string(), "127.0.0.1:8040");
        assert_eq!(empty.policy_config(), PolicyConfig::default());
    }

    #[test]
    fn every_bad_key_is_named() {
        let err = Config::from_toml(
            "[policy]\nnever_bypass = [\"malwar\"]\nreject_on_fail = [\"spff\"]\n\
             [reload]\npoll_interval_ms = 0\n[policy_server]\nreject_text = \"ok\\r\\nX\"\n",
        )
        .err()
        .unwrap_or_else(|| panic!("accepted"));
        let text = err.to_string();
        for key in [
            "policy.never_bypass",
            "policy.reject_on_fail",
            "reload.poll_interval_ms",
            "policy_server.reject_text",
        ] {
            assert!(text.contains(key), "{key} missing from {text}");
        }
        // A bad value in one section and an unknown key in another: both are named.
        let err = Config::from_toml(
            "[listen]\npolicy = \"nowhere\"\n[log]\nformat = \"json\"\nlevl = \"debug\"\n[listn]\n",
        )
        .err()
        .unwrap_or_else(|| panic!("accepted"));
        let text = err.to_string();
        assert_eq!(err.problems.len(), 3, "{text}");
        assert!(
            text.contains("[listen]") && text.contains("socket address"),
            "{text}"
        );
        assert!(text.contains("[log]") && text.contains("levl"), "{text}");
        assert!(text.contains("[listn]"), "{text}");
    }

    #[test]
    fn settings_reach_the_engine() {
        let config = Config::from_toml(
            "[policy]\nblock_action = \"quarantine\"\nnever_bypass = [\"malware\"]\n",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let p = config.policy_config();
        assert_eq!(p.block_action, BlockAction::Quarantine);
        assert_eq!(p.never_bypass.to_string(), "malware");
    }
}
