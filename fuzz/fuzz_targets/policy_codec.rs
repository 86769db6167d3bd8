//! The Postfix policy codec (`allowgate_postfix`), fed an arbitrary connection stream.
//!
//! Input: byte 0 picks the caps (bit 0: small caps from byte 1, else the defaults) and seeds
//! the read sizes; the rest is what the client sends.
//!
//! Properties:
//! - decoding never panics, and after every read (drained) the decoder buffers at most
//!   `max_request_bytes`;
//! - the outcome (requests, then the error, and the bytes of an unfinished request) is the
//!   same whether the stream arrives whole, in pieces or one byte at a time;
//! - an error is sticky: the same error again, more input ignored, nothing buffered;
//! - every decoded request, written back as `name=value` lines (with LF and with CRLF),
//!   decodes to itself, and its typed accessors agree with its attributes;
//! - every reply made from decoded text is one `action=…` line and the empty line, with no
//!   stray `\n\n` (or any other line end) before its end, and decodes as a one-attribute
//!   request; a `PREPEND` of `name: value` is refused only when `name` is no header name.
#![no_main]

use allowgate_postfix::{
    Decoder, Limits, MAX_REPLY_TEXT, PolicyAction, PolicyRequest, ProtocolError, ProtocolState,
    encode_reply,
};
use libfuzzer_sys::fuzz_target;

/// Requests, the error (if any) and the bytes left unfinished.
type Outcome = (Vec<PolicyRequest>, Option<ProtocolError>, usize);

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let (limits, stream) = match rest.split_first() {
        Some((&caps, stream)) if flags & 1 == 1 => (
            Limits {
                max_request_bytes: usize::from(caps) * 2,
                max_attributes: usize::from(caps % 12),
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

    for request in &whole.0 {
        round_trip(request);
        accessors(request);
        for (name, value) in request.attributes() {
            reply(PolicyAction::Reject(value.to_owned()));
            reply(PolicyAction::DeferIfPermit(name.to_owned()));
            reply(PolicyAction::Hold(value.to_owned()));
            reply(PolicyAction::Prepend(value.to_owned()));
            let prepended = reply(PolicyAction::Prepend(format!("{name}: {value}")));
            assert_eq!(prepended, is_header_name(name), "PREPEND {name:?}: …");
        }
    }
    // The raw stream as reply text, too (its control characters, long text, cuts in UTF-8).
    let text = String::from_utf8_lossy(stream);
    reply(PolicyAction::Reject(text.to_string()));
    reply(PolicyAction::Prepend(format!("X-Fuzz: {text}")));
});

/// Feed `stream` in reads of `next_size()` bytes, draining after each, checking the bound and
/// that an error is sticky.
fn decode(stream: &[u8], limits: Limits, next_size: &mut dyn FnMut() -> usize) -> Outcome {
    let mut decoder = Decoder::new(limits);
    let mut requests = Vec::new();
    let mut rest = stream;
    while !rest.is_empty() {
        let (read, after) = rest.split_at(next_size().clamp(1, rest.len()));
        rest = after;
        decoder.feed(read);
        loop {
            match decoder.next_request() {
                Ok(Some(request)) => requests.push(request),
                Ok(None) => break,
                Err(error) => {
                    assert_eq!(decoder.buffered(), 0);
                    decoder.feed(b"request=smtpd_access_policy\n\n");
                    assert_eq!(decoder.next_request(), Err(error.clone()));
                    assert_eq!(decoder.buffered(), 0);
                    return (requests, Some(error), 0);
                }
            }
        }
        assert!(decoder.buffered() <= limits.max_request_bytes);
    }
    (requests, None, decoder.buffered())
}

/// The request written back as `name=value` lines decodes to itself.
fn round_trip(request: &PolicyRequest) {
    let unlimited = Limits {
        max_request_bytes: usize::MAX,
        max_attributes: usize::MAX,
    };
    for crlf in [false, true] {
        let mut bytes = Vec::new();
        for (name, value) in request.attributes() {
            assert!(!name.is_empty() && !name.contains(['=', '\n']), "{name:?}");
            assert!(!value.contains('\n'), "{value:?}");
            bytes.extend_from_slice(name.as_bytes());
            bytes.push(b'=');
            bytes.extend_from_slice(value.as_bytes());
            // The decoder removes one CR before a LF: a value ending in CR needs one more.
            if crlf || value.ends_with('\r') {
                bytes.push(b'\r');
            }
            bytes.push(b'\n');
        }
        bytes.extend_from_slice(if crlf { b"\r\n" } else { b"\n" });
        let again = PolicyRequest::parse(&bytes, &unlimited);
        assert_eq!(again.as_ref(), Ok(request), "written back with crlf={crlf}");
    }
}

/// The typed accessors read the attributes they name.
fn accessors(request: &PolicyRequest) {
    let text: [(Option<&str>, &str); 10] = [
        (request.request(), "request"),
        (request.client_address(), "client_address"),
        (request.client_name(), "client_name"),
        (request.reverse_client_name(), "reverse_client_name"),
        (request.helo_name(), "helo_name"),
        (request.sender(), "sender"),
        (request.recipient(), "recipient"),
        (request.queue_id(), "queue_id"),
        (request.instance(), "instance"),
        (request.sasl_username(), "sasl_username"),
    ];
    for (value, name) in text {
        assert_eq!(value, request.get(name), "{name}");
    }
    for (number, name) in [
        (request.size(), "size"),
        (request.recipient_count(), "recipient_count"),
    ] {
        // A decimal number of ASCII digits only, that fits in a u64.
        let raw = request.get(name);
        let expected = raw
            .filter(|raw| !raw.is_empty() && raw.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|raw| raw.parse::<u64>().ok());
        assert_eq!(number, expected, "{name}={raw:?}");
    }
    const KNOWN_STATES: [&str; 9] = [
        "CONNECT",
        "EHLO",
        "HELO",
        "MAIL",
        "RCPT",
        "DATA",
        "END-OF-MESSAGE",
        "VRFY",
        "ETRN",
    ];
    match (request.protocol_state(), request.get("protocol_state")) {
        (None, None) => {}
        (Some(ProtocolState::Other), Some(raw)) => assert!(!KNOWN_STATES.contains(&raw)),
        (Some(_), Some(raw)) => assert!(KNOWN_STATES.contains(&raw)),
        (state, raw) => panic!("protocol_state {state:?} from {raw:?}"),
    }
}

/// Whether `name: …` is a header once made safe (control characters to spaces, leading spaces
/// removed): what comes before its first colon (the attribute name's own, if it has one) is a
/// header name, and that colon is within the text cap.
fn is_header_name(name: &str) -> bool {
    let spaced: String = name
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let name = spaced.trim_start_matches(' ');
    let header_name = name.split(':').next().unwrap_or_default();
    !header_name.is_empty()
        && header_name.len() < MAX_REPLY_TEXT
        && header_name.bytes().all(|b| (b'!'..=b'~').contains(&b))
}

/// Encode `action`; on success the reply is one line and the empty line. Whether it encoded.
fn reply(action: PolicyAction) -> bool {
    let mut out = Vec::new();
    if encode_reply(&action, &mut out).is_err() {
        assert!(matches!(action, PolicyAction::Prepend(_)), "{action:?}");
        assert!(out.is_empty());
        return false;
    }
    assert!(out.starts_with(b"action="));
    assert!(out.ends_with(b"\n\n"), "{out:?}");
    let body = &out[..out.len() - 2];
    assert!(!body.contains(&b'\n') && !body.contains(&b'\r'), "{out:?}");
    assert!(body.len() <= "action=DEFER_IF_PERMIT ".len() + MAX_REPLY_TEXT);
    assert!(std::str::from_utf8(&out).is_ok());
    let read_back = PolicyRequest::parse(&out, &Limits::default());
    let Ok(read_back) = read_back else {
        panic!("reply {out:?} does not read back: {read_back:?}");
    };
    assert_eq!(read_back.attributes().count(), 1);
    assert!(read_back.get("action").is_some());
    true
}
