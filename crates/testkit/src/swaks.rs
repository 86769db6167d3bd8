//! What swaks reports: [`SendResult`], built from its transcript.

use std::fmt;
use std::time::Duration;

/// One SMTP reply, possibly of several lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// The three-digit code (`250`, `554`, …).
    pub code: u16,
    /// The enhanced status code of the last line (`5.7.1`), when there is one.
    pub enhanced: Option<String>,
    /// The text after code and enhanced status code; lines of a multi-line reply joined with
    /// `"\n"`.
    pub text: String,
    /// The reply's lines as received (without CRLF).
    pub lines: Vec<String>,
}

impl Reply {
    /// A 2xx or 3xx reply.
    pub fn is_positive(&self) -> bool {
        (200..400).contains(&self.code)
    }

    /// A 4xx reply (try again later).
    pub fn is_transient(&self) -> bool {
        (400..500).contains(&self.code)
    }

    /// A 5xx reply (refused for good).
    pub fn is_permanent(&self) -> bool {
        self.code >= 500
    }

    /// Parse reply lines (`"250-…"`, …, `"250 …"`); `None` unless every line starts with the
    /// same three digits.
    pub(crate) fn from_lines(lines: Vec<String>) -> Option<Reply> {
        let last = lines.last()?;
        let code: u16 = last.get(..3)?.parse().ok()?;
        if lines.iter().any(|l| l.get(..3) != last.get(..3)) {
            return None;
        }
        let mut enhanced = None;
        let mut texts = Vec::with_capacity(lines.len());
        for line in &lines {
            let rest = line.get(4..).unwrap_or("");
            let (status, text) = split_enhanced(rest);
            if status.is_some() {
                enhanced = status.map(str::to_owned);
            }
            texts.push(text);
        }
        Some(Reply {
            code,
            enhanced,
            text: texts.join("\n"),
            lines,
        })
    }
}

/// `"5.7.1 text"` → (`Some("5.7.1")`, `"text"`); no enhanced status code → (`None`, all).
fn split_enhanced(text: &str) -> (Option<&str>, &str) {
    let (first, rest) = text.split_once(' ').unwrap_or((text, ""));
    let parts: Vec<&str> = first.split('.').collect();
    let is_status = parts.len() == 3
        && matches!(parts[0], "2" | "4" | "5")
        && parts[1..]
            .iter()
            .all(|p| (1..=3).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_digit()));
    if is_status {
        (Some(first), rest)
    } else {
        (None, text)
    }
}

impl fmt::Display for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.lines.join("\n"))
    }
}

/// One command swaks sent and the reply it got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exchange {
    /// The command line as sent (`"RCPT TO:<bob@example.test>"`); `""` for the greeting and
    /// `"."` for the end of the message data.
    pub command: String,
    /// The server's reply.
    pub reply: Reply,
}

/// The reply to one `RCPT TO`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RcptReply {
    /// The recipient address (without angle brackets).
    pub recipient: String,
    /// The reply.
    pub reply: Reply,
}

/// What happened when a [`Mail`](crate::Mail) was sent: every reply, the transcript, swaks'
/// exit status.
///
/// A refused mail is a normal result (look at [`SendResult::rcpt`],
/// [`SendResult::end_of_data`], [`SendResult::rejection`]); only failing to run swaks at all is
/// an error. `Display` prints the transcript, so `assert!(r.is_queued(), "{r}")` explains a
/// failure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendResult {
    /// swaks' exit code (`0` all accepted, `24` no recipient accepted, `26` message refused
    /// after DATA, … see `man swaks`); `None` when it was killed by a signal.
    pub exit_code: Option<i32>,
    /// The greeting (`220 gw.example.test ESMTP allowgate-testkit …`).
    pub banner: Option<Reply>,
    /// The reply to `XCLIENT` (`220 …` when Postfix took it).
    pub xclient: Option<Reply>,
    /// The reply to `MAIL FROM`.
    pub mail_from: Option<Reply>,
    /// The replies to `RCPT TO`, one per recipient sent, in order.
    pub rcpt: Vec<RcptReply>,
    /// The reply to the `DATA` command (`354 …`, or a refusal).
    pub data: Option<Reply>,
    /// The reply after the message data, the final word on the message
    /// (`250 2.0.0 Ok: queued as 4F1B29B61BF`, or e.g. `554 5.7.1 …` from an end-of-data policy
    /// or a milter).
    pub end_of_data: Option<Reply>,
    /// Every command and its reply, in order (EHLO twice with XCLIENT, QUIT, …).
    pub exchanges: Vec<Exchange>,
    /// swaks' own error lines (`*** …`, timeouts).
    pub errors: Vec<String>,
    /// The complete transcript swaks printed.
    pub transcript: String,
    /// How long swaks ran.
    pub elapsed: Duration,
}

impl SendResult {
    /// The reply to the first `RCPT TO` (the one to look at when a mail has one recipient).
    pub fn rcpt_reply(&self) -> Option<&Reply> {
        self.rcpt.first().map(|r| &r.reply)
    }

    /// The queue id from `250 … queued as ID` after the message data.
    pub fn queue_id(&self) -> Option<&str> {
        let reply = self.end_of_data.as_ref().filter(|r| r.code == 250)?;
        let (_, id) = reply.text.rsplit_once("queued as ")?;
        id.split_whitespace().next()
    }

    /// Whether Postfix took the message (`250 … queued as …` after the data).
    pub fn is_queued(&self) -> bool {
        self.queue_id().is_some()
    }

    /// The first 4xx or 5xx reply of the session (the refusal a test usually asserts), if any.
    pub fn rejection(&self) -> Option<&Reply> {
        self.exchanges
            .iter()
            .map(|e| &e.reply)
            .find(|r| !r.is_positive())
    }

    /// Build the result from swaks' transcript (`--output-file`, stdout and stderr in order).
    pub(crate) fn parse(transcript: String, exit_code: Option<i32>, elapsed: Duration) -> Self {
        let mut result = SendResult {
            exit_code,
            banner: None,
            xclient: None,
            mail_from: None,
            rcpt: Vec::new(),
            data: None,
            end_of_data: None,
            exchanges: Vec::new(),
            errors: Vec::new(),
            transcript: String::new(),
            elapsed,
        };
        // The command waiting for its reply; the greeting comes first.
        let mut pending: Option<String> = Some(String::new());
        let mut in_data = false;
        let mut reply_lines: Vec<String> = Vec::new();
        for line in transcript.lines() {
            let hint = line.get(..3).unwrap_or(line);
            let content = line.get(4..).unwrap_or("");
            match hint {
                " ->" | "**>" => {
                    if in_data {
                        if content == "." {
                            in_data = false;
                            pending = Some(".".into());
                        }
                    } else {
                        pending = Some(content.to_owned());
                    }
                }
                "<- " | "<**" => {
                    let is_reply_line = content.len() >= 3
                        && content.as_bytes()[..3].iter().all(u8::is_ascii_digit)
                        && matches!(content.as_bytes().get(3), None | Some(b' ' | b'-'));
                    if !is_reply_line {
                        result.errors.push(content.to_owned());
                        continue;
                    }
                    reply_lines.push(content.to_owned());
                    if content.as_bytes().get(3) == Some(&b'-') {
                        continue;
                    }
                    let Some(reply) = Reply::from_lines(std::mem::take(&mut reply_lines)) else {
                        result.errors.push(format!("unparsable reply: {content}"));
                        continue;
                    };
                    let command = pending.take().unwrap_or_default();
                    result.record(&command, &reply);
                    if command.eq_ignore_ascii_case("DATA") && reply.code == 354 {
                        in_data = true;
                    }
                    result.exchanges.push(Exchange { command, reply });
                }
                "***" => result.errors.push(content.to_owned()),
                _ => {}
            }
        }
        result.transcript = transcript;
        result
    }

    fn record(&mut self, command: &str, reply: &Reply) {
        let upper = command.to_ascii_uppercase();
        let slot = if command.is_empty() {
            &mut self.banner
        } else if command == "." {
            &mut self.end_of_data
        } else if upper.starts_with("XCLIENT") {
            &mut self.xclient
        } else if upper.starts_with("MAIL FROM:") {
            &mut self.mail_from
        } else if upper == "DATA" {
            &mut self.data
        } else if upper.starts_with("RCPT TO:") {
            // The prefix matched in ASCII, so the byte offset is a character boundary.
            let address = command["RCPT TO:".len()..].trim_start();
            let address = address
                .strip_prefix('<')
                .and_then(|a| a.split_once('>'))
                .map_or(address, |(a, _)| a);
            self.rcpt.push(RcptReply {
                recipient: address.to_owned(),
                reply: reply.clone(),
            });
            return;
        } else {
            return;
        };
        *slot = Some(reply.clone());
    }
}

impl fmt::Display for SendResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "swaks exit {:?} after {:.2?}; transcript:",
            self.exit_code, self.elapsed
        )?;
        f.write_str(&self.transcript)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const QUEUED: &str = "\
=== Trying 127.0.0.1:2525...
=== Connected to 127.0.0.1.
<-  220 gw.example.test ESMTP allowgate-testkit 1-0
 -> EHLO client.sender.test
<-  250-gw.example.test
<-  250-PIPELINING
<-  250 CHUNKING
 -> XCLIENT ADDR=203.0.113.9 NAME=[UNAVAILABLE]
<-  220 gw.example.test ESMTP allowgate-testkit 1-0
 -> EHLO client.sender.test
<-  250-gw.example.test
<-  250 CHUNKING
 -> MAIL FROM:<alice@sender.test>
<-  250 2.1.0 Ok
 -> RCPT TO:<bob@example.test>
<-  250 2.1.5 Ok
 -> RCPT TO:<evil@foreign.test>
<** 554 5.7.1 <evil@foreign.test>: Relay access denied
 -> DATA
<-  354 End data with <CR><LF>.<CR><LF>
 -> Subject: hi
 -> RCPT TO:<not-a-command@example.test>
 -> 
 -> ..
 -> .
<-  250 2.0.0 Ok: queued as D89059B61BF
 -> QUIT
<-  221 2.0.0 Bye
=== Connection closed with remote host.
";

    #[test]
    fn a_queued_message_with_one_refused_recipient() {
        let r = SendResult::parse(QUEUED.into(), Some(0), Duration::from_millis(50));
        assert_eq!(r.banner.as_ref().unwrap().code, 220);
        assert_eq!(r.xclient.as_ref().unwrap().code, 220);
        assert_eq!(
            r.mail_from.as_ref().unwrap().enhanced.as_deref(),
            Some("2.1.0")
        );
        assert_eq!(r.rcpt.len(), 2);
        assert_eq!(r.rcpt[0].recipient, "bob@example.test");
        assert_eq!(r.rcpt[1].recipient, "evil@foreign.test");
        let refused = &r.rcpt[1].reply;
        assert_eq!(refused.code, 554);
        assert_eq!(refused.enhanced.as_deref(), Some("5.7.1"));
        assert_eq!(refused.text, "<evil@foreign.test>: Relay access denied");
        assert!(refused.is_permanent());
        assert_eq!(r.data.as_ref().unwrap().code, 354);
        assert_eq!(r.queue_id(), Some("D89059B61BF"));
        assert!(r.is_queued());
        assert_eq!(r.rejection(), Some(refused));
        assert_eq!(r.exchanges.len(), 10);
        assert_eq!(
            r.exchanges[1].reply.text,
            "gw.example.test\nPIPELINING\nCHUNKING"
        );
        assert!(r.errors.is_empty());
        assert!(r.to_string().contains("queued as D89059B61BF"));
    }

    #[test]
    fn a_refusal_after_data_and_a_timeout() {
        let transcript = "\
<-  220 gw ESMTP
 -> MAIL FROM:<>
<-  250 2.1.0 Ok
 -> RCPT TO:<b@example.test> NOTIFY=NEVER
<-  250 2.1.5 Ok
 -> DATA
<-  354 go
 -> x
 -> .
<** 550 5.7.1 milter says no
 -> QUIT
<** Timeout (30 secs) waiting for server response
*** Remote host closed connection unexpectedly.
";
        let r = SendResult::parse(transcript.into(), Some(26), Duration::ZERO);
        assert_eq!(r.rcpt[0].recipient, "b@example.test");
        let end = r.end_of_data.as_ref().unwrap();
        assert_eq!((end.code, end.text.as_str()), (550, "milter says no"));
        assert!(!r.is_queued());
        assert_eq!(r.rejection(), Some(end));
        assert_eq!(
            r.errors,
            [
                "Timeout (30 secs) waiting for server response",
                "Remote host closed connection unexpectedly."
            ]
        );
    }

    #[test]
    fn replies_without_enhanced_status() {
        let reply = Reply::from_lines(vec!["421 4.3.2 Service shutting down".into()]).unwrap();
        assert!(reply.is_transient());
        let reply = Reply::from_lines(vec!["220 host ESMTP".into()]).unwrap();
        assert_eq!((reply.enhanced, reply.text.as_str()), (None, "host ESMTP"));
        assert!(Reply::from_lines(vec!["250-a".into(), "251 b".into()]).is_none());
    }
}
