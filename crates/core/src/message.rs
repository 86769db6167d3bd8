//! Facts read from a message: header sender addresses, `Received:` hops, body domains and IPs.

use std::collections::BTreeSet;
use std::net::IpAddr;

use allowgate_types::{
    Domain, EmailAddress, SenderSource, normalize_ip, parse_ip, sender_domain_of, shown,
};
use mail_parser::decoders::html::html_to_text;
use mail_parser::{HeaderForm, HeaderName, HeaderValue, Message, MessageParser, PartType};

/// Largest message parsed (bigger input is cut; the head still parses).
pub const MAX_MESSAGE_BYTES: usize = 10 * 1024 * 1024;
/// Largest body text scanned for domains and IPs.
pub const MAX_BODY_SCAN: usize = 1024 * 1024;
/// Body parts scanned at most (the rest are not read).
pub const MAX_BODY_PARTS: usize = 256;
/// Most `Received:` headers read.
pub const MAX_RECEIVED: usize = 64;
/// Most distinct body domains (and, separately, body IPs) kept.
pub const MAX_BODY_ITEMS: usize = 1000;
/// Most addresses kept per sender header.
pub const MAX_ADDRESSES_PER_HEADER: usize = 32;
/// Most sender addresses kept from all headers together (a message may repeat a header).
pub const MAX_HEADER_SENDERS: usize = 64;

/// A sender address found in a header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SenderAddress {
    /// The whole address could be read.
    Address(EmailAddress),
    /// Only the domain could be read (e.g. `"x y"@evil.example`, whose quoted local part the
    /// header parser drops). Block entries on the domain still see it; allow matching does not
    /// use it.
    DomainOnly(Domain),
    /// Nothing usable: not even the domain parses. Kept (printable, cut to 80 characters) so
    /// that the verdict can say a sender could not be checked.
    Unreadable(String),
}

/// A sender address of the message and the header it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderSender {
    /// The header.
    pub source: SenderSource,
    /// The address.
    pub address: SenderAddress,
}

/// What the policy needs from a message, normalised with the same functions as entry values.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MessageFacts {
    /// Sender addresses found in headers, in the order of [`SenderSource::PRIORITY`]
    /// (`MAIL FROM` is not a header and is not here).
    pub header_senders: Vec<HeaderSender>,
    /// The connecting IP of each `Received:` header, most recent (topmost) first; headers without
    /// a parseable IP are left out.
    pub received_ips: Vec<IpAddr>,
    /// Host names of URLs and bare domains in the body (ending in a known public suffix).
    pub body_domains: Vec<Domain>,
    /// IP literals in the body and in URLs.
    pub body_ips: Vec<IpAddr>,
}

impl MessageFacts {
    /// Parse a raw RFC 5322 message (at most [`MAX_MESSAGE_BYTES`] are read). Never fails: what
    /// cannot be read is left out. When the message is also parsed for something else (DKIM,
    /// DMARC), parse it once and use [`MessageFacts::from_message`].
    pub fn parse(raw: &[u8]) -> MessageFacts {
        let raw = &raw[..raw.len().min(MAX_MESSAGE_BYTES)];
        MessageParser::default()
            .parse(raw)
            .map_or_else(MessageFacts::default, |m| MessageFacts::from_message(&m))
    }

    /// The facts of an already parsed message.
    pub fn from_message(message: &Message<'_>) -> MessageFacts {
        let mut facts = MessageFacts::default();
        for source in &SenderSource::PRIORITY[1..] {
            let name = match source {
                SenderSource::ReturnPath => HeaderName::ReturnPath,
                SenderSource::From => HeaderName::From,
                SenderSource::Sender => HeaderName::Sender,
                SenderSource::XEnvSender => HeaderName::Other("X-Env-Sender".into()),
                SenderSource::XApparentlyFrom => HeaderName::Other("X-Apparently-From".into()),
                SenderSource::MailFrom => continue,
            };
            for value in message.header_as(name, HeaderForm::Addresses) {
                let HeaderValue::Address(list) = value else {
                    continue;
                };
                for addr in list.iter().take(MAX_ADDRESSES_PER_HEADER) {
                    if facts.header_senders.len() >= MAX_HEADER_SENDERS {
                        break;
                    }
                    let Some(text) = addr.address.as_deref() else {
                        continue;
                    };
                    if let Some(address) = sender_address(text) {
                        facts.header_senders.push(HeaderSender {
                            source: *source,
                            address,
                        });
                    }
                }
            }
        }
        facts.received_ips = message
            .header_values(HeaderName::Received)
            .take(MAX_RECEIVED)
            .filter_map(|v| match v {
                HeaderValue::Received(r) => r.from_ip().map(normalize_ip),
                _ => None,
            })
            .collect();
        // Each body part once, as it came: a text part as text, an HTML part as its markup
        // (links and all) and as the text it shows (entities decoded). mail-parser lists a
        // plain-text message's part as its HTML body too; converting it to HTML would only
        // scan the same words twice.
        let mut scanner = BodyScanner::default();
        let mut budget = MAX_BODY_SCAN;
        let mut seen: Vec<u32> = Vec::new();
        for &id in message.text_body.iter().chain(&message.html_body) {
            if budget == 0 || seen.len() >= MAX_BODY_PARTS {
                break;
            }
            if seen.contains(&id) {
                continue;
            }
            seen.push(id);
            let (first, second): (&str, Option<String>) = match message.part(id).map(|p| &p.body) {
                Some(PartType::Text(text)) => (text, None),
                Some(PartType::Html(html)) => (html, Some(html_to_text(html))),
                _ => continue,
            };
            for part in [Some(first), second.as_deref()].into_iter().flatten() {
                let take = floor_char_boundary(part, budget);
                scanner.scan(&part[..take]);
                budget -= take;
            }
        }
        facts.body_domains = scanner.domains.into_iter().collect();
        facts.body_ips = scanner.ips.into_iter().collect();
        facts
    }
}

/// A header address as a sender: the whole address, else its domain, else the text itself.
/// `None` for an empty address (the null sender `<>`).
fn sender_address(text: &str) -> Option<SenderAddress> {
    let text = text.trim();
    if text.is_empty() || text == "<>" {
        return None;
    }
    if let Ok(address) = EmailAddress::parse(text) {
        return Some(SenderAddress::Address(address));
    }
    Some(match sender_domain_of(text) {
        Some(d) => SenderAddress::DomainOnly(d),
        None => SenderAddress::Unreadable(shown(text, 80)),
    })
}

fn floor_char_boundary(s: &str, max: usize) -> usize {
    if max >= s.len() {
        return s.len();
    }
    (0..=max)
        .rev()
        .find(|i| s.is_char_boundary(*i))
        .unwrap_or(0)
}

#[derive(Default)]
struct BodyScanner {
    domains: BTreeSet<Domain>,
    ips: BTreeSet<IpAddr>,
}

impl BodyScanner {
    /// Split text into tokens at white space and markup punctuation; each token that is a URL, an
    /// address, a host name or an IP literal contributes its host.
    fn scan(&mut self, text: &str) {
        let tokens = text.split(|c: char| c.is_whitespace() || "<>\"'(){},;|\\^`".contains(c));
        for token in tokens {
            if self.domains.len() >= MAX_BODY_ITEMS && self.ips.len() >= MAX_BODY_ITEMS {
                return;
            }
            if token.len() < 4 || token.len() > 2048 || !token.contains(['.', ':']) {
                continue;
            }
            self.token(token);
        }
    }

    fn token(&mut self, token: &str) {
        // Strip an href= prefix and a URL scheme.
        let mut rest = token.rsplit_once("href=").map_or(token, |(_, r)| r);
        if let Some((scheme, after)) = rest.split_once("://") {
            if !scheme
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'-' || b == b'.')
            {
                return;
            }
            rest = after;
        } else if let Some(after) = rest.strip_prefix("mailto:") {
            rest = after;
        }
        // Host part: before path, query, fragment; after userinfo.
        let host = rest.split(['/', '?', '#']).next().unwrap_or("");
        let host = host.rsplit_once('@').map_or(host, |(_, h)| h);
        let host = host.trim_matches(|c: char| matches!(c, '.' | ',' | ':' | '!' | '*' | '='));
        if host.is_empty() {
            return;
        }
        // `[v6]:port`, `v4:port`, or a bare v6 literal.
        let bracketed = host
            .strip_prefix('[')
            .and_then(|h| h.split_once(']'))
            .map(|(h, _)| h);
        let candidate = bracketed.unwrap_or(host);
        if let Ok(ip) = parse_ip(candidate) {
            if self.ips.len() < MAX_BODY_ITEMS {
                self.ips.insert(ip);
            }
            return;
        }
        let without_port = match candidate.rsplit_once(':') {
            Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
            _ => candidate,
        };
        if let Ok(ip) = parse_ip(without_port) {
            if self.ips.len() < MAX_BODY_ITEMS {
                self.ips.insert(ip);
            }
            return;
        }
        if !without_port.contains('.') || without_port.contains(':') {
            return;
        }
        // As seen in mail: an invalid IDNA label does not hide a name from its parents' entries.
        if let Ok(domain) = Domain::parse_from_mail(without_port)
            && domain.has_known_suffix()
            && !domain.is_public_suffix()
            && self.domains.len() < MAX_BODY_ITEMS
        {
            self.domains.insert(domain);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MESSAGE: &str = "Received: from relay.internal (relay.internal [10.0.0.5])\r\n\tby gw.example.test (Postfix) with ESMTP id 1; Mon, 1 Jan 2026 00:00:00 +0000\r\n\
Received: from mail.sender.test (mail.sender.test [203.0.113.9])\r\n\tby relay.internal with ESMTPS; Mon, 1 Jan 2026 00:00:00 +0000\r\n\
Received: from unknown (HELO x) by nowhere\r\n\
Return-Path: <bounce@lists.sender.test>\r\n\
From: \"Alice\" <Alice@Sender.Test>, bob@other.test\r\n\
Sender: sec@sender.test\r\n\
X-Env-Sender: env@sender.test\r\n\
X-Apparently-From: app@sender.test\r\n\
Subject: hi\r\n\
\r\n\
Visit https://www.Example.com/path?x=1 or http://[2001:db8::7]:8080/ and http://192.0.2.55/x.\r\n\
Mail me at someone@shop.example.co.uk, see evil.example.net. Not a domain: foo.bar.notatld\r\n";

    #[test]
    fn headers_and_body() {
        let f = MessageFacts::parse(MESSAGE.as_bytes());
        let senders: Vec<String> = f
            .header_senders
            .iter()
            .map(|h| match &h.address {
                SenderAddress::Address(a) => format!("{}={a}", h.source),
                other => format!("{}={other:?}", h.source),
            })
            .collect();
        assert_eq!(
            senders,
            [
                "Return-Path=bounce@lists.sender.test",
                "X-Env-Sender=env@sender.test",
                "From=alice@sender.test",
                "From=bob@other.test",
                "Sender=sec@sender.test",
                "X-Apparently-From=app@sender.test"
            ]
        );
        assert_eq!(
            f.received_ips,
            [
                "10.0.0.5".parse::<IpAddr>().unwrap(),
                "203.0.113.9".parse().unwrap()
            ]
        );
        let domains: Vec<&str> = f.body_domains.iter().map(Domain::as_str).collect();
        assert_eq!(
            domains,
            ["evil.example.net", "shop.example.co.uk", "www.example.com"]
        );
        let ips: Vec<String> = f.body_ips.iter().map(ToString::to_string).collect();
        assert_eq!(ips, ["192.0.2.55", "2001:db8::7"]);
    }

    #[test]
    fn quoted_local_part_keeps_its_domain_for_block_matching() {
        let f = MessageFacts::parse(
            b"From: \"x y\"@evil.example\r\nSender: bad@@\xff\r\nReturn-Path: <>\r\n\r\nx\r\n",
        );
        let evil = Domain::parse("evil.example").unwrap();
        assert_eq!(
            f.header_senders,
            [
                HeaderSender {
                    source: SenderSource::From,
                    address: SenderAddress::DomainOnly(evil)
                },
                HeaderSender {
                    source: SenderSource::Sender,
                    address: SenderAddress::Unreadable("bad@@\u{fffd}".into())
                },
            ]
        );
    }

    #[test]
    fn garbage_does_not_panic() {
        for input in [
            &b""[..],
            b"\xff\xfe",
            b"From: <>\r\n\r\n",
            b"Received: from [999.1.1.1]\r\n\r\nhttp://[::",
        ] {
            let _ = MessageFacts::parse(input);
        }
    }

    #[test]
    fn every_body_part_is_scanned_once_as_it_came() {
        let raw = "From: a@sender.test\r\nMIME-Version: 1.0\r\n\
Content-Type: multipart/alternative; boundary=b\r\n\r\n\
--b\r\nContent-Type: text/plain\r\n\r\nSee plain-site.com and 192.0.2.80\r\n\
--b\r\nContent-Type: text/html\r\n\r\n\
<p>See <a href=\"https://link-site.net/x\">here</a> and shown-site&#46;org</p>\r\n\
--b--\r\n";
        let facts = MessageFacts::parse(raw.as_bytes());
        let domains: Vec<String> = facts.body_domains.iter().map(ToString::to_string).collect();
        // The text part; the link in the markup; the HTML's text, entities decoded.
        for d in ["plain-site.com", "link-site.net", "shown-site.org"] {
            assert!(
                domains.contains(&d.to_string()),
                "{d} missing from {domains:?}"
            );
        }
        assert_eq!(
            facts.body_ips,
            vec!["192.0.2.80".parse::<IpAddr>().unwrap()]
        );
        // A plain-text message: its one part, read as text.
        let plain = MessageFacts::parse(b"From: a@sender.test\r\n\r\nvisit only-site.com now\r\n");
        let domains: Vec<String> = plain.body_domains.iter().map(ToString::to_string).collect();
        assert_eq!(domains, ["only-site.com"]);
    }
}
