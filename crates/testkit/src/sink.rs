//! [`DeliveredMessage`]: one file smtp-sink wrote, parsed enough to look up headers by name.

use std::path::PathBuf;

/// One message Postfix relayed to the sink (one SMTP transaction, all its recipients).
///
/// smtp-sink (`-d`) writes, per transaction, its own lines `X-Client-Addr`, `X-Client-Proto`,
/// `X-Helo-Args`, `X-Mail-Args`, `X-Rcpt-Args`, then its own `Received:` header, then the
/// message as Postfix sent it (LF line ends). The sink's lines and header are taken apart into
/// the envelope fields here; [`DeliveredMessage::headers`] holds only the message's own header,
/// starting with the `Received:` Postfix added.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveredMessage {
    /// The file smtp-sink wrote.
    pub path: PathBuf,
    /// The envelope sender Postfix used (without angle brackets; `""` for `<>`).
    pub mail_from: String,
    /// The envelope recipients, in order (without angle brackets or ESMTP parameters).
    pub rcpt_to: Vec<String>,
    /// smtp-sink's envelope lines as (name, value): `X-Client-Addr`, `X-Mail-Args`, …
    pub sink_fields: Vec<(String, String)>,
    /// The message's header fields in order, unfolded (line breaks removed, the white space
    /// after them kept), value without the space after the colon.
    pub headers: Vec<(String, String)>,
    /// The body as Postfix sent it, with LF line ends (smtp-sink writes one more empty line
    /// at the end; it is not part of the body).
    pub body: String,
    /// The whole file.
    pub raw: String,
}

impl DeliveredMessage {
    /// The first header field called `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Every header field called `name` (any case), in order.
    pub fn header_all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// The queue id the test instance gave the message (from the `Received:` header Postfix
    /// added, `… (Postfix) with ESMTP id ID; …`), to match [`SendResult::queue_id`](crate::SendResult::queue_id).
    pub fn queue_id(&self) -> Option<&str> {
        self.header_all("Received")
            .into_iter()
            .find_map(|received| {
                let (_, after) = received.split_once("(Postfix) with ")?;
                let (_, id) = after.split_once(" id ")?;
                id.split([';', ' ', '\t'])
                    .next()
                    .filter(|id| !id.is_empty())
            })
    }

    /// Parse one smtp-sink file.
    pub(crate) fn parse(path: PathBuf, raw: String) -> DeliveredMessage {
        let (head, body) = match raw.find("\n\n") {
            Some(at) => (&raw[..at], &raw[at + 2..]),
            None => (raw.as_str(), ""),
        };
        let fields = unfold(head);
        // smtp-sink's lines come before any Received header, its own Received is the first one.
        let split = fields
            .iter()
            .position(|(n, _)| n.eq_ignore_ascii_case("Received"))
            .unwrap_or(fields.len());
        let (sink_fields, rest) = fields.split_at(split);
        let headers = match rest.first() {
            Some((_, value)) if value.contains("(smtp-sink)") => &rest[1..],
            _ => rest,
        };
        let address = |args: &str| {
            let args = args.trim();
            args.strip_prefix('<')
                .and_then(|a| a.split_once('>'))
                .map_or(args, |(a, _)| a)
                .to_owned()
        };
        let values = |name: &'static str| {
            sink_fields
                .iter()
                .filter(move |(n, _)| n == name)
                .map(|(_, v)| address(v))
        };
        DeliveredMessage {
            path,
            mail_from: values("X-Mail-Args").next().unwrap_or_default(),
            rcpt_to: values("X-Rcpt-Args").collect(),
            sink_fields: sink_fields.to_vec(),
            headers: headers.to_vec(),
            body: body.strip_suffix('\n').unwrap_or(body).to_owned(),
            raw: raw.clone(),
        }
    }
}

/// Header lines → (name, unfolded value). A line that is neither a field nor a continuation is
/// kept with an empty name, so nothing is lost silently.
fn unfold(head: &str) -> Vec<(String, String)> {
    let mut fields: Vec<(String, String)> = Vec::new();
    for line in head.lines() {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.starts_with([' ', '\t'])
            && let Some((_, value)) = fields.last_mut()
        {
            value.push_str(line);
            continue;
        }
        match line.split_once(':') {
            Some((name, value)) if !name.is_empty() && !name.contains([' ', '\t']) => {
                fields.push((name.to_owned(), value.trim_start().to_owned()));
            }
            _ => fields.push((String::new(), line.to_owned())),
        }
    }
    for (_, value) in &mut fields {
        let trimmed = value.trim_end().len();
        value.truncate(trimmed);
    }
    fields
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = "\
X-Client-Addr: 127.0.0.1
X-Client-Proto: ESMTP
X-Helo-Args: gw.example.test
X-Mail-Args: <alice@sender.test>
X-Rcpt-Args: <bob@example.test> ORCPT=rfc822;bob@example.test
X-Rcpt-Args: <carol@example.test> ORCPT=rfc822;carol@example.test
Received: from gw.example.test ([127.0.0.1])
\tby sink-1-0 (smtp-sink) with ESMTP id 5460d331;
\tTue,  1 Dec 2026 01:15:32 +0000 (UTC)
Received: from mx.sender.test (unknown [203.0.113.9])
\tby gw.example.test (Postfix) with ESMTP id D89059B61BF;
\tTue,  1 Dec 2026 01:15:29 +0000 (UTC)
From: alice@sender.test
X-Allowgate: status=clean
x-allowgate: second
Subject:no space
Message-Id: <20261201011530.D89059B61BF@gw.example.test>

body line
.leading dot

";

    #[test]
    fn sink_file_is_taken_apart() {
        let m = DeliveredMessage::parse("/x".into(), FILE.into());
        assert_eq!(m.mail_from, "alice@sender.test");
        assert_eq!(m.rcpt_to, ["bob@example.test", "carol@example.test"]);
        assert_eq!(m.sink_fields.len(), 6);
        assert_eq!(m.headers.len(), 6);
        assert_eq!(
            m.header("received"),
            Some(
                "from mx.sender.test (unknown [203.0.113.9])\tby gw.example.test (Postfix) \
                 with ESMTP id D89059B61BF;\tTue,  1 Dec 2026 01:15:29 +0000 (UTC)"
            )
        );
        assert_eq!(m.header_all("X-ALLOWGATE"), ["status=clean", "second"]);
        assert_eq!(m.header("Subject"), Some("no space"));
        assert_eq!(m.header("To"), None);
        assert_eq!(m.queue_id(), Some("D89059B61BF"));
        assert_eq!(m.body, "body line\n.leading dot\n");
    }

    #[test]
    fn null_sender_and_no_body() {
        let m = DeliveredMessage::parse(
            "/x".into(),
            "X-Mail-Args: <>\nX-Rcpt-Args: <b@example.test>\nSubject: s\n".into(),
        );
        assert_eq!(m.mail_from, "");
        assert_eq!(m.rcpt_to, ["b@example.test"]);
        assert_eq!(
            m.header("subject"),
            None,
            "no Received: all are sink fields"
        );
        assert_eq!(m.body, "");
    }
}
