//! What a test instance looks like: [`PostfixConfig`], and the `main.cf` and `master.cf` written
//! from it.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use crate::error::{Error, Result};

/// How to configure a test instance. `PostfixConfig::default()` is an instance with neither a
/// policy service nor a milter that relays `example.test` to its sink.
///
/// ```
/// use allowgate_testkit::PostfixConfig;
///
/// let config = PostfixConfig::default()
///     .with_policy("127.0.0.1:10040".parse().unwrap())
///     .with_main_cf("milter_command_timeout", "5s");
/// assert_eq!(config.relay_domains, ["example.test"]);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PostfixConfig {
    /// A Postfix policy service (an IPv4 address: the instance runs `inet_protocols = ipv4`).
    /// When set, `check_policy_service { inet:ADDR, timeout=…, default_action=DUNNO }` is asked
    /// at `RCPT` (after `reject_unauth_destination`) and at `END-OF-MESSAGE`.
    pub policy: Option<SocketAddr>,
    /// The policy service's `timeout` (how long Postfix waits for a reply before it applies
    /// `default_action=DUNNO`), rounded up to whole seconds. Default 10 s. Measured with
    /// Postfix 3.7: a server that accepts but never answers costs about 5 s per message at
    /// `timeout=1s` (two tries 1 s apart at RCPT, again at END-OF-MESSAGE), so 10 s only ever
    /// matters to a test that hangs its policy server. A policy address where nothing listens
    /// costs about 1 s per check whatever the timeout (two connection attempts, 1 s apart: 1 s
    /// is Postfix's minimum `retry_delay`), about 2 s per message.
    pub policy_timeout: Duration,
    /// A milter (IPv4): `smtpd_milters = inet:ADDR`, `milter_default_action = accept`,
    /// `milter_protocol = 6`. No milter setting is written when this is `None`.
    pub milter: Option<SocketAddr>,
    /// The domains the instance accepts mail for and relays to its sink (`relay_domains`).
    /// Default `["example.test"]`; mail to any other domain is refused at `RCPT` with
    /// `554 5.7.1 <…>: Relay access denied`.
    pub relay_domains: Vec<String>,
    /// More `main.cf` settings, written after the harness's own: a name the harness already
    /// sets is replaced in place (for example `("smtpd_milters", "inet:… inet:…")`).
    pub main_cf: Vec<(String, String)>,
    /// More `master.cf` lines, appended as they are (for example a `content_filter` service).
    pub master_cf: Vec<String>,
}

impl Default for PostfixConfig {
    fn default() -> Self {
        PostfixConfig {
            policy: None,
            policy_timeout: Duration::from_secs(10),
            milter: None,
            relay_domains: vec!["example.test".to_owned()],
            main_cf: Vec::new(),
            master_cf: Vec::new(),
        }
    }
}

impl PostfixConfig {
    /// This configuration with the policy service at `addr`.
    #[must_use]
    pub fn with_policy(mut self, addr: SocketAddr) -> Self {
        self.policy = Some(addr);
        self
    }

    /// This configuration with the milter at `addr`.
    #[must_use]
    pub fn with_milter(mut self, addr: SocketAddr) -> Self {
        self.milter = Some(addr);
        self
    }

    /// This configuration with one more `main.cf` setting (see [`PostfixConfig::main_cf`]).
    #[must_use]
    pub fn with_main_cf(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.main_cf.push((name.into(), value.into()));
        self
    }
}

/// The host name every instance announces (`myhostname`). Instances tell themselves apart by
/// their banner: `220 gw.example.test ESMTP allowgate-testkit <PID>-<N>`.
pub const MYHOSTNAME: &str = "gw.example.test";

/// Where one instance keeps its files, and what tells it apart from the others.
#[derive(Debug, Clone)]
pub(crate) struct Layout<'a> {
    /// The instance's directory: `etc/`, `queue/`, `data/`, `sink/`, `maillog`, …
    pub(crate) base: &'a Path,
    /// A name unique on this machine: `PID-COUNTER` of the test process.
    pub(crate) id: &'a str,
}

impl Layout<'_> {
    /// The text after `ESMTP` in the instance's banner; the harness checks it, so a port taken
    /// by another server in the meantime is never mistaken for this instance.
    pub(crate) fn banner_tag(&self) -> String {
        format!("allowgate-testkit {}", self.id)
    }
}

/// The `main.cf` of an instance listening on `smtp_port` and relaying to `sink_port`.
pub(crate) fn main_cf(
    config: &PostfixConfig,
    layout: &Layout<'_>,
    sink_port: u16,
) -> Result<String> {
    let base = path_value(layout.base)?;
    for domain in &config.relay_domains {
        if domain.is_empty() || domain.contains(|c: char| c.is_whitespace() || c == ',') {
            return Err(Error::Invalid(format!("relay domain `{domain}`")));
        }
    }
    let mut settings: Vec<(String, String)> = Vec::new();
    let mut set = |name: &str, value: String| settings.push((name.to_owned(), value));
    set("compatibility_level", "3.6".into());
    set("queue_directory", format!("{base}/queue"));
    set("data_directory", format!("{base}/data"));
    set("mail_owner", "postfix".into());
    set("setgid_group", "postdrop".into());
    set("myhostname", MYHOSTNAME.into());
    set("mydestination", String::new());
    // Debian's defaults name /etc/aliases and NIS: neither exists here (smtpd logs errors).
    set("alias_maps", String::new());
    set("alias_database", String::new());
    set("inet_interfaces", "loopback-only".into());
    set("inet_protocols", "ipv4".into());
    // Loopback is not trusted: the policy and milter paths run for mail sent from 127.0.0.1.
    set("mynetworks", "192.0.2.0/32".into());
    set("relay_domains", config.relay_domains.join(", "));
    set("relay_transport", format!("smtp:[127.0.0.1]:{sink_port}"));
    // Bounces and anything else not for relay_domains fail at once: nothing leaves the host.
    set(
        "default_transport",
        "error:allowgate-testkit delivers only to relay_domains".into(),
    );
    set("smtp_dns_support_level", "disabled".into());
    set("maillog_file", format!("{base}/maillog"));
    set("maillog_file_prefixes", base.clone());
    set(
        "smtpd_banner",
        format!("$myhostname ESMTP {}", layout.banner_tag()),
    );
    set("smtpd_authorized_xclient_hosts", "127.0.0.0/8".into());
    // Refuse relaying with a permanent 554 at once (Postfix's default defers with 454 first).
    set(
        "smtpd_relay_restrictions",
        "permit_mynetworks, reject_unauth_destination".into(),
    );
    match config.policy {
        Some(addr) => {
            let secs = config.policy_timeout.as_secs()
                + u64::from(config.policy_timeout.subsec_nanos() > 0);
            let policy = format!(
                "check_policy_service {{ inet:{addr}, timeout={}s, default_action=DUNNO }}",
                secs.max(1)
            );
            set(
                "smtpd_recipient_restrictions",
                format!("reject_unauth_destination, {policy}"),
            );
            set("smtpd_end_of_data_restrictions", policy);
        }
        None => set(
            "smtpd_recipient_restrictions",
            "reject_unauth_destination".into(),
        ),
    }
    if let Some(addr) = config.milter {
        set("smtpd_milters", format!("inet:{addr}"));
        set("milter_default_action", "accept".into());
        set("milter_protocol", "6".into());
    }
    // Fast tests: no sleep after a rejected command, no in-flow throttling, deferred mail is
    // retried within seconds, a crashed daemon is restarted after 1 s instead of 60 s.
    set("smtpd_error_sleep_time", "0s".into());
    set("in_flow_delay", "0s".into());
    set("queue_run_delay", "1s".into());
    set("minimal_backoff_time", "1s".into());
    set("maximal_backoff_time", "2s".into());
    set("service_throttle_time", "1s".into());
    set("biff", "no".into());
    set("append_dot_mydomain", "no".into());
    set("readme_directory", "no".into());

    for (name, value) in &config.main_cf {
        if name.is_empty() || name.contains(|c: char| c.is_whitespace() || c == '=') {
            return Err(Error::Invalid(format!("main.cf parameter name `{name}`")));
        }
        match settings.iter_mut().find(|(n, _)| n == name) {
            Some(existing) => existing.1.clone_from(value),
            None => settings.push((name.clone(), value.clone())),
        }
    }

    let mut out = format!(
        "# Written by allowgate-testkit for test instance {}; removed when the test ends.\n",
        layout.id
    );
    for (name, value) in &settings {
        if value.contains(['\n', '\r']) {
            return Err(Error::Invalid(format!(
                "main.cf value of `{name}` has a line break: {value:?}"
            )));
        }
        // Infallible: writing to a String.
        let _ = writeln!(out, "{name} = {value}");
    }
    Ok(out)
}

/// `master.cf` from Debian's: every `chroot` column `n` (the instance's queue is no chroot
/// jail), every `inet` service replaced by one smtpd on `127.0.0.1:smtp_port`, a `postlog`
/// service (for `maillog_file`) added when missing, then `extra` lines.
pub(crate) fn master_cf(debian: &str, smtp_port: u16, extra: &[String]) -> Result<String> {
    let smtpd = format!("127.0.0.1:{smtp_port} inet n - n - - smtpd");
    let mut out = String::from(
        "# Written by allowgate-testkit from Debian's master.cf: chroot off, one smtpd on \
         loopback.\n",
    );
    let mut smtpd_written = false;
    let mut has_postlog = false;
    let mut dropping = false;
    for line in debian.lines() {
        if line.starts_with([' ', '\t']) && !line.trim().is_empty() {
            // A continuation of the service line above.
            if !dropping {
                out.push_str(line);
                out.push('\n');
            }
            continue;
        }
        if line.trim().is_empty() || line.starts_with('#') {
            dropping = false;
            out.push_str(line);
            out.push('\n');
            continue;
        }
        let (fields, command) = split_service_line(line).ok_or_else(|| {
            Error::Invalid(format!(
                "unexpected line in /etc/postfix/master.cf: {line:?}"
            ))
        })?;
        if fields[1] == "inet" {
            dropping = true;
            if !smtpd_written {
                out.push_str(&smtpd);
                out.push('\n');
                smtpd_written = true;
            }
            continue;
        }
        dropping = false;
        if fields[0] == "postlog" && fields[1] == "unix-dgram" {
            has_postlog = true;
        }
        let mut fields = fields;
        fields[4] = "n";
        out.push_str(&fields.join(" "));
        out.push(' ');
        out.push_str(command);
        out.push('\n');
    }
    if !smtpd_written {
        out.push_str(&smtpd);
        out.push('\n');
    }
    if !has_postlog {
        out.push_str("postlog unix-dgram n - n - 1 postlogd\n");
    }
    for line in extra {
        if line.contains(['\n', '\r']) && !line.lines().skip(1).all(|l| l.starts_with([' ', '\t']))
        {
            return Err(Error::Invalid(format!(
                "master.cf line with a line break not followed by white space: {line:?}"
            )));
        }
        out.push_str(line);
        out.push('\n');
    }
    Ok(out)
}

/// The seven columns of a `master.cf` service line, and the rest (command and arguments) as
/// written.
fn split_service_line(line: &str) -> Option<([&str; 7], &str)> {
    let mut fields = [""; 7];
    let mut rest = line;
    for field in &mut fields {
        rest = rest.trim_start();
        let end = rest.find(char::is_whitespace)?;
        *field = &rest[..end];
        rest = &rest[end..];
    }
    let command = rest.trim();
    (!command.is_empty()).then_some((fields, command))
}

/// A path as a `main.cf` value: absolute, UTF-8, no white space or commas (Postfix would split
/// it).
fn path_value(path: &Path) -> Result<String> {
    let text = path
        .to_str()
        .filter(|t| t.starts_with('/') && !t.contains(|c: char| c.is_whitespace() || c == ','))
        .ok_or_else(|| {
            Error::Invalid(format!(
                "instance directory {} must be an absolute UTF-8 path without spaces or commas \
                 (set TMPDIR to one)",
                path.display()
            ))
        })?;
    Ok(text.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEBIAN: &str = "\
# comment
smtp      inet  n       -       y       -       -       smtpd
#submission inet n       -       y       -       -       smtpd
#  -o syslog_name=postfix/submission
pickup    unix  n       -       y       60      1       pickup
relay     unix  -       -       y       -       -       smtp
        -o syslog_name=postfix/$service_name
smtps     inet  n       -       y       -       -       smtpd
  -o smtpd_tls_wrappermode=yes
maildrop  unix  -       n       n       -       -       pipe
  flags=DRXhu user=vmail argv=/usr/bin/maildrop -d ${recipient}
";

    #[test]
    fn master_cf_turns_chroot_off_and_keeps_one_loopback_smtpd() {
        let out = master_cf(DEBIAN, 2525, &["extra unix - - n - - smtp".into()]).unwrap();
        let services: Vec<&str> = out
            .lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
            .collect();
        assert_eq!(
            services,
            [
                "127.0.0.1:2525 inet n - n - - smtpd",
                "pickup unix n - n 60 1 pickup",
                "relay unix - - n - - smtp",
                "        -o syslog_name=postfix/$service_name",
                "maildrop unix - n n - - pipe",
                "  flags=DRXhu user=vmail argv=/usr/bin/maildrop -d ${recipient}",
                "postlog unix-dgram n - n - 1 postlogd",
                "extra unix - - n - - smtp",
            ]
        );
    }

    #[test]
    fn master_cf_of_the_installed_postfix_parses() {
        // Only where Debian's postfix is installed (the integration tests require it anyway).
        if let Ok(debian) = std::fs::read_to_string("/etc/postfix/master.cf") {
            let out = master_cf(&debian, 2525, &[]).unwrap();
            let services: Vec<Vec<&str>> = out
                .lines()
                .filter(|l| !l.starts_with(['#', ' ', '\t']) && !l.trim().is_empty())
                .map(|l| l.split_whitespace().collect())
                .collect();
            let inet: Vec<&str> = services
                .iter()
                .filter(|f| f[1] == "inet")
                .map(|f| f[0])
                .collect();
            assert_eq!(inet, ["127.0.0.1:2525"], "{out}");
            assert!(services.iter().all(|f| f[4] == "n"), "{out}");
            let postlog = services.iter().filter(|f| f[0] == "postlog").count();
            assert_eq!(postlog, 1, "{out}");
        }
    }

    #[test]
    fn main_cf_wires_policy_and_milter_only_when_given() {
        let layout = Layout {
            base: Path::new("/tmp/x/pf-1"),
            id: "1-0",
        };
        let plain = main_cf(&PostfixConfig::default(), &layout, 2600).unwrap();
        assert!(plain.contains("smtpd_recipient_restrictions = reject_unauth_destination\n"));
        assert!(!plain.contains("check_policy_service"));
        assert!(!plain.contains("milter"));
        assert!(plain.contains("relay_transport = smtp:[127.0.0.1]:2600\n"));
        assert!(plain.contains("queue_directory = /tmp/x/pf-1/queue\n"));
        assert!(plain.contains("smtpd_banner = $myhostname ESMTP allowgate-testkit 1-0\n"));

        let config = PostfixConfig {
            policy_timeout: Duration::from_millis(1500),
            ..PostfixConfig::default()
        }
        .with_policy("127.0.0.1:10040".parse().unwrap())
        .with_milter("127.0.0.1:10041".parse().unwrap())
        .with_main_cf("milter_protocol", "2")
        .with_main_cf("header_checks", "regexp:/x");
        let full = main_cf(&config, &layout, 2600).unwrap();
        let policy = "check_policy_service { inet:127.0.0.1:10040, timeout=2s, \
                      default_action=DUNNO }";
        assert!(full.contains(&format!(
            "smtpd_recipient_restrictions = reject_unauth_destination, {policy}\n"
        )));
        assert!(full.contains(&format!("smtpd_end_of_data_restrictions = {policy}\n")));
        assert!(full.contains("smtpd_milters = inet:127.0.0.1:10041\n"));
        assert!(full.contains("milter_protocol = 2\n"));
        assert!(!full.contains("milter_protocol = 6"));
        assert!(full.ends_with("header_checks = regexp:/x\n"));
    }

    #[test]
    fn main_cf_refuses_what_postfix_would_misread() {
        let layout = Layout {
            base: Path::new("/tmp/x/pf-1"),
            id: "1-0",
        };
        let broken = PostfixConfig::default().with_main_cf("x", "a\nb");
        assert!(matches!(
            main_cf(&broken, &layout, 1),
            Err(Error::Invalid(_))
        ));
        let spaced = Layout {
            base: Path::new("/tmp/a b"),
            id: "1-0",
        };
        assert!(matches!(
            main_cf(&PostfixConfig::default(), &spaced, 1),
            Err(Error::Invalid(_))
        ));
    }
}
