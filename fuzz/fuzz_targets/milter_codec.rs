//! The milter codec (`allowgate_milter`), fed an arbitrary MTA stream.
//!
//! Input: byte 0 picks the cap (bit 0: a small `max_packet` from byte 1, else the default
//! 1 MiB) and seeds the read sizes; the rest is what the MTA sends.
//!
//! Properties:
//! - decoding never panics, and after every read (drained) the decoder buffers at most
//!   4 + `max_packet` bytes;
//! - the outcome (commands, then the error, and the bytes of an unfinished packet) is the same
//!   whether the stream arrives whole, in pieces or one byte at a time;
//! - an error is sticky: the same error again, more input ignored, nothing buffered;
//! - every decoded command encodes with `encode_command`, and decodes back to itself (its
//!   encoding is canonical: encoding it again gives the same bytes);
//! - the helpers agree with the commands: `macro_value` finds each macro's last definition under
//!   both spellings, `Connect::ip` only for IP families, `negotiate` answers version 6 with a
//!   subset of the offered actions or refuses;
//! - responses made from decoded text either are refused without writing anything, or are one
//!   well-formed packet; an accepted header holds no control character but TAB and a valid
//!   name; an accepted reply passes Postfix's own checks (milter8.c) and reads back, `%%`
//!   undone, as the text given.
#![no_main]

use allowgate_milter::{
    Command, Decoder, Family, Limits, NEEDED_ACTIONS, OptNeg, ProtocolError, Response,
    WANTED_PROTOCOL, encode_command, encode_response, macro_value, negotiate,
};
use libfuzzer_sys::fuzz_target;

/// Commands, the error (if any) and the bytes left unfinished.
type Outcome = (Vec<Command>, Option<ProtocolError>, usize);

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let (limits, stream) = match rest.split_first() {
        Some((&cap, stream)) if flags & 1 == 1 => (
            Limits {
                max_packet: usize::from(cap),
            },
            stream,
        ),
        _ => (Limits::default(), rest),
    };

    let whole = decode(stream, limits, &mut || stream.len());
    let mut seed = u32::from(flags) | 0x100;
    let pieces = decode(stream, limits, &mut || {
        seed ^= seed << 13;
        seed ^= seed >> 17;
        seed ^= seed << 5;
        1 + (seed % 97) as usize
    });
    let bytewise = decode(stream, limits, &mut || 1);
    assert_eq!(whole, pieces, "split into pieces");
    assert_eq!(whole, bytewise, "one byte at a time");

    for command in &whole.0 {
        round_trip(command);
        helpers(command);
        responses(command);
    }
    // The raw stream as response text, too (its control characters, long text, cut UTF-8).
    let text = String::from_utf8_lossy(stream);
    respond(&Response::ReplyCode(text.to_string()));
    respond(&Response::ReplyCode(format!("550 5.7.1 {text}")));
    respond(&Response::AddHeader {
        name: "X-Fuzz".into(),
        value: text.to_string(),
    });
});

/// Feed `stream` in reads of `next_size()` bytes, draining after each, checking the bound and
/// that an error is sticky.
fn decode(stream: &[u8], limits: Limits, next_size: &mut dyn FnMut() -> usize) -> Outcome {
    let mut decoder = Decoder::new(limits);
    let mut commands = Vec::new();
    let mut rest = stream;
    while !rest.is_empty() {
        let (read, after) = rest.split_at(next_size().clamp(1, rest.len()));
        rest = after;
        decoder.feed(read);
        loop {
            match decoder.next_command() {
                Ok(Some(command)) => commands.push(command),
                Ok(None) => break,
                Err(error) => {
                    assert_eq!(decoder.buffered(), 0);
                    decoder.feed(b"\0\0\0\x01E");
                    assert_eq!(decoder.next_command(), Err(error.clone()));
                    assert_eq!(decoder.buffered(), 0);
                    return (commands, Some(error), 0);
                }
            }
        }
        assert!(decoder.buffered() <= 4 + limits.max_packet);
    }
    (commands, None, decoder.buffered())
}

/// The command encodes, decodes back to itself, and encodes to the same bytes again.
fn round_trip(command: &Command) {
    let mut bytes = Vec::new();
    let encoded = encode_command(command, &mut bytes);
    assert_eq!(encoded, Ok(()), "{command:?}");
    assert_eq!(
        u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) as usize,
        bytes.len() - 4
    );
    assert_eq!(bytes[4], command.code());
    let mut decoder = Decoder::new(Limits {
        max_packet: usize::MAX,
    });
    decoder.feed(&bytes);
    assert_eq!(decoder.next_command().as_ref(), Ok(&Some(command.clone())));
    assert_eq!(decoder.next_command(), Ok(None));
    assert_eq!(decoder.buffered(), 0);
    let parsed = Command::parse(bytes[4], &bytes[5..]);
    assert_eq!(parsed.as_ref(), Ok(command));
    let mut again = Vec::new();
    assert_eq!(encode_command(command, &mut again), Ok(()));
    assert_eq!(again, bytes);
}

/// `{name}` → `name`.
fn bare(name: &str) -> &str {
    name.strip_prefix('{')
        .and_then(|n| n.strip_suffix('}'))
        .unwrap_or(name)
}

fn helpers(command: &Command) {
    match command {
        Command::Macros { pairs, .. } => {
            for (name, _) in pairs {
                let last = pairs
                    .iter()
                    .rev()
                    .find(|(n, _)| bare(n) == bare(name))
                    .map(|(_, v)| v.as_str());
                assert!(last.is_some());
                assert_eq!(macro_value(pairs, name), last, "{name:?}");
                assert_eq!(macro_value(pairs, bare(name)), last, "{name:?}");
                assert_eq!(
                    macro_value(pairs, &format!("{{{}}}", bare(name))),
                    last,
                    "{name:?}"
                );
            }
        }
        Command::Connect(connect) => {
            if let Some(ip) = connect.ip() {
                assert!(matches!(connect.family, Family::Inet | Family::Inet6));
                assert!(connect.family == Family::Inet6 || ip.is_ipv4());
            }
            if let Some(name) = connect.host_name() {
                assert_eq!(name, connect.hostname);
                assert!(!name.is_empty() && name != "unknown");
                assert!(!(name.starts_with('[') && name.ends_with(']')));
            }
            if connect.family == Family::Unknown {
                assert_eq!((connect.port, connect.address.as_str()), (0, ""));
            }
        }
        Command::OptNeg(offer) => match negotiate(offer) {
            Ok(ours) => {
                assert!(offer.version >= 6);
                assert_eq!(
                    ours,
                    OptNeg {
                        version: 6,
                        actions: NEEDED_ACTIONS,
                        protocol: WANTED_PROTOCOL & offer.protocol
                    }
                );
                assert_eq!(ours.actions & !offer.actions, 0);
            }
            Err(_) => assert!(offer.version < 6 || NEEDED_ACTIONS & !offer.actions != 0),
        },
        Command::Mail(args) | Command::Rcpt(args) => assert!(!args.is_empty()),
        _ => {}
    }
}

/// Responses built from the command's text.
fn responses(command: &Command) {
    let texts: Vec<&str> = match command {
        Command::Macros { pairs, .. } => pairs
            .iter()
            .flat_map(|(n, v)| [n.as_str(), v.as_str()])
            .collect(),
        Command::Connect(connect) => vec![&connect.hostname, &connect.address],
        Command::Helo(text) | Command::Unknown(text) => vec![text],
        Command::Mail(args) | Command::Rcpt(args) => args.iter().map(String::as_str).collect(),
        Command::Header { name, value } => {
            respond(&Response::AddHeader {
                name: name.clone(),
                value: value.clone(),
            });
            respond(&Response::ChangeHeader {
                index: 1,
                name: name.clone(),
                value: value.clone(),
            });
            vec![name, value]
        }
        _ => vec![],
    };
    for text in texts {
        respond(&Response::ReplyCode(text.to_owned()));
        respond(&Response::ReplyCode(format!("451 4.7.1 {text}")));
        respond(&Response::Quarantine(text.to_owned()));
        respond(&Response::InsertHeader {
            index: 0,
            name: text.to_owned(),
            value: text.to_owned(),
        });
        respond(&Response::AddHeader {
            name: "X-Allowgate".into(),
            value: text.to_owned(),
        });
    }
}

/// Encode `response`; refused: nothing written; accepted: one well-formed packet whose texts are
/// safe. Whether it was accepted.
fn respond(response: &Response) -> bool {
    let mut out = b"kept".to_vec();
    if encode_response(response, &mut out).is_err() {
        assert_eq!(out, b"kept", "{response:?}");
        return false;
    }
    let packet = &out[4..];
    let length = u32::from_be_bytes([packet[0], packet[1], packet[2], packet[3]]) as usize;
    assert_eq!(length, packet.len() - 4, "{response:?}");
    assert_eq!(packet[4], response.code());
    let data = &packet[5..];
    match response {
        Response::ReplyCode(text) => {
            // Postfix's checks (milter8.c), on the bytes it receives.
            assert!(matches!(data[0], b'4' | b'5'), "{text:?}");
            assert!(
                data[1].is_ascii_digit() && data[2].is_ascii_digit(),
                "{text:?}"
            );
            assert_eq!(data[3], b' ', "{text:?}");
            assert!(!data[4].is_ascii_digit() || data[4] == data[0], "{text:?}");
            assert_eq!(data.last(), Some(&0));
            let wire = &data[..data.len() - 1];
            assert!(!wire.contains(&0) && !wire.contains(&b'\r') && !wire.contains(&b'\n'));
            // Postfix replaces `%%` by `%`: the client sees the text given.
            let seen = String::from_utf8(wire.to_vec()).map(|w| w.replace("%%", "%"));
            assert_eq!(seen.as_deref(), Ok(text.as_str()));
            assert!(text.len() <= allowgate_milter::MAX_REPLY_LENGTH);
        }
        Response::Quarantine(reason) => {
            assert!(!reason.is_empty() && !reason.chars().any(char::is_control));
        }
        Response::AddHeader { name, value }
        | Response::InsertHeader { name, value, .. }
        | Response::ChangeHeader { name, value, .. } => {
            assert!(!name.is_empty());
            assert!(
                name.bytes().all(|b| b.is_ascii_graphic() && b != b':'),
                "{name:?}"
            );
            assert!(
                !value.chars().any(|c| c.is_control() && c != '\t'),
                "{value:?}"
            );
            // Exactly two NULs: after the name and after the value.
            let strings = if matches!(response, Response::AddHeader { .. }) {
                data
            } else {
                &data[4..]
            };
            assert_eq!(strings.iter().filter(|&&b| b == 0).count(), 2);
        }
        _ => {}
    }
    true
}
