//! [`Mail`]: one SMTP transaction to send through a test instance.

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::{Error, Result};

/// One message and its envelope, as [`Postfix::send`](crate::Postfix::send) hands it to swaks.
///
/// [`Mail::new`] fills in a minimal header (`From`, `To`, `Subject`, `Message-ID`); the fields
/// are public, so a test can replace or clear anything. The message is sent exactly as built:
/// headers in order (`Name: value`, a value may be folded with `"\n\t"`), an empty line, the
/// body. Line ends become CRLF and lines starting with `.` are dot-stuffed; nothing else is
/// added by the harness or by swaks (it runs with `--no-data-fixup`). Postfix's cleanup adds
/// `Received`, and `Date`/`Message-ID` when they are missing.
///
/// ```
/// use allowgate_testkit::Mail;
///
/// let mail = Mail::new("alice@sender.test", ["bob@example.test"])
///     .client("203.0.113.9".parse().unwrap())
///     .header("X-Test", "1")
///     .body("hello\n");
/// assert_eq!(mail.client_name, None); // sent as XCLIENT NAME=[UNAVAILABLE]
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mail {
    /// The client address Postfix should see (sent as `XCLIENT ADDR=…`). `None`: no XCLIENT,
    /// Postfix sees the real client, `localhost[127.0.0.1]` (not trusted: `mynetworks` is
    /// `192.0.2.0/32`).
    pub client_ip: Option<IpAddr>,
    /// The client's host name (`XCLIENT NAME=…`). `None` with a `client_ip`: `[UNAVAILABLE]`
    /// (no reverse name, Postfix logs `unknown[IP]`); `None` without one: not sent.
    pub client_name: Option<String>,
    /// The `EHLO` name; `None`: `client.sender.test`.
    pub helo: Option<String>,
    /// `MAIL FROM`; `""` is the null sender `<>`.
    pub from: String,
    /// `RCPT TO`, one command each, in order.
    pub to: Vec<String>,
    /// The message's header fields, in order: (name, value).
    pub headers: Vec<(String, String)>,
    /// The message body.
    pub body: String,
}

/// The `EHLO` name sent when [`Mail::helo`] is `None`.
pub const DEFAULT_HELO: &str = "client.sender.test";

impl Mail {
    /// A message from `from` to `to` with `From`, `To`, `Subject: allowgate test` and a unique
    /// `Message-ID` header, a one-line body, and no XCLIENT.
    pub fn new<I, S>(from: impl Into<String>, to: I) -> Mail
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let from = from.into();
        let to: Vec<String> = to.into_iter().map(Into::into).collect();
        let message_id = format!(
            "<{}.{}@testkit.allowgate.test>",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let from_header = if from.is_empty() {
            "<>".to_owned()
        } else {
            from.clone()
        };
        Mail {
            client_ip: None,
            client_name: None,
            helo: None,
            headers: vec![
                ("From".into(), from_header),
                ("To".into(), to.join(", ")),
                ("Subject".into(), "allowgate test".into()),
                ("Message-ID".into(), message_id),
            ],
            from,
            to,
            body: "allowgate test message\n".into(),
        }
    }

    /// This mail sent as if from `ip` (XCLIENT).
    #[must_use]
    pub fn client(mut self, ip: IpAddr) -> Mail {
        self.client_ip = Some(ip);
        self
    }

    /// This mail with the client host name `name` (XCLIENT).
    #[must_use]
    pub fn client_name(mut self, name: impl Into<String>) -> Mail {
        self.client_name = Some(name.into());
        self
    }

    /// This mail with the `EHLO` name `name`.
    #[must_use]
    pub fn helo(mut self, name: impl Into<String>) -> Mail {
        self.helo = Some(name.into());
        self
    }

    /// This mail with one more header field, after the others.
    #[must_use]
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Mail {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// This mail with the body `body`.
    #[must_use]
    pub fn body(mut self, body: impl Into<String>) -> Mail {
        self.body = body.into();
        self
    }

    /// The SMTP DATA as sent: CRLF line ends, dot-stuffed, ending with the `.` line (swaks adds
    /// nothing with `--no-data-fixup`).
    pub(crate) fn smtp_data(&self) -> Result<String> {
        let mut text = String::new();
        for (name, value) in &self.headers {
            if name.is_empty() || name.contains(|c: char| c == ':' || c.is_whitespace()) {
                return Err(Error::Invalid(format!("header name {name:?}")));
            }
            text.push_str(name);
            text.push_str(": ");
            text.push_str(value);
            text.push('\n');
        }
        text.push('\n');
        text.push_str(&self.body);
        let mut data = String::with_capacity(text.len() + 64);
        for line in text.lines() {
            if line.starts_with('.') {
                data.push('.');
            }
            data.push_str(line.strip_suffix('\r').unwrap_or(line));
            data.push_str("\r\n");
        }
        data.push('.');
        Ok(data)
    }

    /// The swaks options for this mail's envelope (everything but server, data and output).
    pub(crate) fn swaks_args(&self) -> Result<Vec<String>> {
        if self.to.is_empty() {
            return Err(Error::Invalid("a Mail needs at least one recipient".into()));
        }
        let mut args = Vec::new();
        let mut push = |option: &str, value: &str| -> Result<()> {
            // swaks reads a value that starts with '-' as the next option and prompts.
            if value.starts_with('-') || value.contains(['\n', '\r']) {
                return Err(Error::Invalid(format!("{option} value {value:?}")));
            }
            args.push(option.to_owned());
            args.push(value.to_owned());
            Ok(())
        };
        push(
            "--from",
            if self.from.is_empty() {
                "<>"
            } else {
                &self.from
            },
        )?;
        for to in &self.to {
            if to.is_empty() || to.contains(',') {
                return Err(Error::Invalid(format!("recipient {to:?}")));
            }
        }
        push("--to", &self.to.join(","))?;
        push("--helo", self.helo.as_deref().unwrap_or(DEFAULT_HELO))?;
        if let Some(ip) = self.client_ip {
            push("--xclient-addr", &ip.to_string())?;
        }
        match (&self.client_name, self.client_ip) {
            (Some(name), _) => push("--xclient-name", name)?,
            (None, Some(_)) => push("--xclient-name", "[UNAVAILABLE]")?,
            (None, None) => {}
        }
        Ok(args)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_is_crlf_dot_stuffed_and_terminated() {
        let mail = Mail {
            headers: vec![("Subject".into(), "a\n\tfolded".into())],
            body: ".start\nmiddle\r\n..two\nno newline".into(),
            ..Mail::new("a@b.test", ["c@example.test"])
        };
        assert_eq!(
            mail.smtp_data().unwrap(),
            "Subject: a\r\n\tfolded\r\n\r\n..start\r\nmiddle\r\n...two\r\nno newline\r\n."
        );
    }

    #[test]
    fn envelope_arguments() {
        let mail = Mail::new("", ["b@example.test", "c@example.test"])
            .client("203.0.113.9".parse().unwrap())
            .helo("mx.sender.test");
        assert_eq!(
            mail.swaks_args().unwrap(),
            [
                "--from",
                "<>",
                "--to",
                "b@example.test,c@example.test",
                "--helo",
                "mx.sender.test",
                "--xclient-addr",
                "203.0.113.9",
                "--xclient-name",
                "[UNAVAILABLE]"
            ]
        );
        assert_eq!(mail.headers[0], ("From".into(), "<>".into()));
        let bad = Mail::new("-x", ["b@example.test"]);
        assert!(bad.swaks_args().is_err());
        let none = Mail::new("a@b.test", Vec::<String>::new());
        assert!(none.swaks_args().is_err());
    }

    #[test]
    fn message_ids_differ() {
        let a = Mail::new("a@b.test", ["c@example.test"]);
        let b = Mail::new("a@b.test", ["c@example.test"]);
        assert_ne!(a.headers[3], b.headers[3]);
    }
}
