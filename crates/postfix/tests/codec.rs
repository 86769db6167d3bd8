//! The codec end to end: a full request as Postfix sends it, split every way, and properties
//! over random requests, random bytes and random reply text.

use allowgate_postfix::{
    Decoder, Limits, MAX_REPLY_TEXT, PolicyAction, PolicyRequest, ProtocolError, ProtocolState,
    encode_reply,
};
use proptest::prelude::*;

/// A `RCPT` request with every attribute of SMTPD_POLICY_README, in Postfix's order, as
/// Postfix 3.8 sends it for an authenticated TLS client. Postfix 3.7 sends the same but for the
/// last two (`compatibility_level` and `mail_version` came with 3.8).
const FULL_RCPT: &[u8] = b"request=smtpd_access_policy
protocol_state=RCPT
protocol_name=ESMTP
helo_name=mail.example.org
queue_id=4XyZ1k2QmRz9
sender=alice@example.org
recipient=bob@example.net
recipient_count=0
client_address=192.0.2.25
client_name=mail.example.org
reverse_client_name=mail.example.org
instance=a1b2.66f0c3d4.5e6f7.0
sasl_method=plain
sasl_username=alice
sasl_sender=
size=20480
ccert_subject=mail.example.org
ccert_issuer=Example+20CA
ccert_fingerprint=3A:1F:9C:00:7B:E2:54:11:AB:CD:EF:01:23:45:67:89
encryption_protocol=TLSv1.3
encryption_cipher=TLS_AES_256_GCM_SHA384
encryption_keysize=256
etrn_domain=
stress=
ccert_pubkey_fingerprint=9E:77:01:C4:2B:5A:90:D3:6F:18:E0:4B:C2:7D:33:A8
client_port=49152
policy_context=submission
server_address=198.51.100.10
server_port=587
compatibility_level=3.6
mail_version=3.8.6

";

/// What [`FULL_RCPT`] decodes to, attribute by attribute.
#[rustfmt::skip]
const FULL_RCPT_ATTRIBUTES: &[(&str, &str)] = &[
    ("request", "smtpd_access_policy"),
    ("protocol_state", "RCPT"),
    ("protocol_name", "ESMTP"),
    ("helo_name", "mail.example.org"),
    ("queue_id", "4XyZ1k2QmRz9"),
    ("sender", "alice@example.org"),
    ("recipient", "bob@example.net"),
    ("recipient_count", "0"),
    ("client_address", "192.0.2.25"),
    ("client_name", "mail.example.org"),
    ("reverse_client_name", "mail.example.org"),
    ("instance", "a1b2.66f0c3d4.5e6f7.0"),
    ("sasl_method", "plain"),
    ("sasl_username", "alice"),
    ("sasl_sender", ""),
    ("size", "20480"),
    ("ccert_subject", "mail.example.org"),
    ("ccert_issuer", "Example+20CA"),
    ("ccert_fingerprint", "3A:1F:9C:00:7B:E2:54:11:AB:CD:EF:01:23:45:67:89"),
    ("encryption_protocol", "TLSv1.3"),
    ("encryption_cipher", "TLS_AES_256_GCM_SHA384"),
    ("encryption_keysize", "256"),
    ("etrn_domain", ""),
    ("stress", ""),
    ("ccert_pubkey_fingerprint", "9E:77:01:C4:2B:5A:90:D3:6F:18:E0:4B:C2:7D:33:A8"),
    ("client_port", "49152"),
    ("policy_context", "submission"),
    ("server_address", "198.51.100.10"),
    ("server_port", "587"),
    ("compatibility_level", "3.6"),
    ("mail_version", "3.8.6"),
];

/// Every request `input` holds, fed in pieces of the given sizes (cycled; all at once when
/// empty), draining after every piece and checking the buffer bound as it goes.
fn decode_in_pieces(
    input: &[u8],
    limits: Limits,
    sizes: &[usize],
) -> (Vec<PolicyRequest>, Option<ProtocolError>, usize) {
    let mut decoder = Decoder::new(limits);
    let mut requests = Vec::new();
    let mut rest = input;
    let mut sizes = sizes.iter().copied().cycle();
    while !rest.is_empty() {
        let size = sizes.next().unwrap_or(rest.len()).clamp(1, rest.len());
        let (piece, after) = rest.split_at(size);
        rest = after;
        decoder.feed(piece);
        loop {
            match decoder.next_request() {
                Ok(Some(request)) => requests.push(request),
                Ok(None) => break,
                Err(error) => {
                    assert_eq!(decoder.next_request(), Err(error.clone()), "sticky");
                    return (requests, Some(error), decoder.buffered());
                }
            }
        }
        assert!(decoder.buffered() <= limits.max_request_bytes);
    }
    (requests, None, decoder.buffered())
}

/// A small deterministic generator (xorshift64*) for chunk sizes.
fn chunk_sizes(seed: u64, count: usize, max: usize) -> Vec<usize> {
    let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..count)
        .map(|_| {
            state ^= state >> 12;
            state ^= state << 25;
            state ^= state >> 27;
            let r = state.wrapping_mul(0x2545_f491_4f6c_dd1d);
            1 + (r % max as u64) as usize
        })
        .collect()
}

fn crlf(input: &[u8]) -> Vec<u8> {
    input
        .iter()
        .flat_map(|&b| {
            if b == b'\n' {
                vec![b'\r', b'\n']
            } else {
                vec![b]
            }
        })
        .collect()
}

#[test]
fn a_full_rcpt_request_as_postfix_sends_it() {
    let request = PolicyRequest::parse(FULL_RCPT, &Limits::default()).unwrap();
    assert_eq!(
        request.attributes().collect::<Vec<_>>(),
        FULL_RCPT_ATTRIBUTES
    );
    for (name, value) in FULL_RCPT_ATTRIBUTES {
        assert_eq!(request.get(name), Some(*value), "{name}");
    }
    assert_eq!(request.request(), Some("smtpd_access_policy"));
    assert_eq!(request.protocol_state(), Some(ProtocolState::Rcpt));
    assert_eq!(request.client_address(), Some("192.0.2.25"));
    assert_eq!(request.client_name(), Some("mail.example.org"));
    assert_eq!(request.reverse_client_name(), Some("mail.example.org"));
    assert_eq!(request.helo_name(), Some("mail.example.org"));
    assert_eq!(request.sender(), Some("alice@example.org"));
    assert_eq!(request.recipient(), Some("bob@example.net"));
    assert_eq!(request.recipient_count(), Some(0));
    assert_eq!(request.queue_id(), Some("4XyZ1k2QmRz9"));
    assert_eq!(request.instance(), Some("a1b2.66f0c3d4.5e6f7.0"));
    assert_eq!(request.size(), Some(20480));
    assert_eq!(request.sasl_username(), Some("alice"));
    assert_eq!(request.get("sasl_sender"), Some(""));
    assert_eq!(request.get("no_such_attribute"), None);

    // The same with CRLF line ends.
    let with_crlf = PolicyRequest::parse(&crlf(FULL_RCPT), &Limits::default()).unwrap();
    assert_eq!(with_crlf, request);
}

#[test]
fn an_unverified_client_and_the_null_sender() {
    let input = b"request=smtpd_access_policy\nprotocol_state=MAIL\nclient_name=unknown\n\
                  reverse_client_name=unknown\nsender=\nsize=0\n\n";
    let request = PolicyRequest::parse(input, &Limits::default()).unwrap();
    assert_eq!(request.protocol_state(), Some(ProtocolState::Mail));
    assert_eq!(request.client_name(), Some("unknown"));
    assert_eq!(request.reverse_client_name(), Some("unknown"));
    assert_eq!(request.sender(), Some(""));
    assert_eq!(request.recipient(), None);
    assert_eq!(request.size(), Some(0));
    assert_eq!(request.sasl_username(), None);
}

#[test]
fn the_full_request_split_at_every_byte_boundary() {
    let expected = PolicyRequest::parse(FULL_RCPT, &Limits::default()).unwrap();
    for input in [FULL_RCPT.to_vec(), crlf(FULL_RCPT)] {
        // One byte at a time.
        let (requests, error, buffered) = decode_in_pieces(&input, Limits::default(), &[1]);
        assert_eq!(
            (requests, error, buffered),
            (vec![expected.clone()], None, 0)
        );
        // In two pieces, split at every boundary.
        for split in 1..input.len() {
            let sizes = [split, input.len() - split];
            let (requests, error, _) = decode_in_pieces(&input, Limits::default(), &sizes);
            assert_eq!((requests, error), (vec![expected.clone()], None), "{split}");
        }
        // In random pieces.
        for seed in 0..200 {
            let sizes = chunk_sizes(seed, 64, 40);
            let (requests, error, _) = decode_in_pieces(&input, Limits::default(), &sizes);
            assert_eq!(
                (requests, error),
                (vec![expected.clone()], None),
                "seed {seed}"
            );
        }
    }
}

#[test]
fn many_requests_in_one_read_and_in_random_pieces() {
    let expected = PolicyRequest::parse(FULL_RCPT, &Limits::default()).unwrap();
    let many: Vec<u8> = FULL_RCPT.repeat(50);
    let (requests, error, buffered) = decode_in_pieces(&many, Limits::default(), &[]);
    assert_eq!(requests.len(), 50);
    assert!(requests.iter().all(|r| *r == expected));
    assert_eq!((error, buffered), (None, 0));
    for seed in 0..50 {
        let sizes = chunk_sizes(seed, 32, 3 * FULL_RCPT.len());
        let (requests, error, buffered) = decode_in_pieces(&many, Limits::default(), &sizes);
        assert_eq!(requests.len(), 50, "seed {seed}");
        assert!(requests.iter().all(|r| *r == expected));
        assert_eq!((error, buffered), (None, 0));
    }
}

/// A request's lines, as a sender would write them: `name=value` and a line end each, then the
/// empty line. A value that ends in CR needs CRLF (the decoder removes one CR).
fn encode_request(attributes: &[(String, String)], use_crlf: bool) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, value) in attributes {
        out.extend_from_slice(name.as_bytes());
        out.push(b'=');
        out.extend_from_slice(value.as_bytes());
        if use_crlf || value.ends_with('\r') {
            out.push(b'\r');
        }
        out.push(b'\n');
    }
    out.extend_from_slice(if use_crlf { b"\r\n" } else { b"\n" });
    out
}

/// The naive reading of duplicates: each name once, at its first place, with its last value.
fn last_wins(attributes: &[(String, String)]) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for (name, value) in attributes {
        match out.iter_mut().find(|(n, _)| n == name) {
            Some(existing) => existing.1 = value.clone(),
            None => out.push((name.clone(), value.clone())),
        }
    }
    out
}

fn attribute() -> impl Strategy<Value = (String, String)> {
    let name = prop_oneof![
        "[a-z_]{1,12}",
        prop::sample::select(vec!["sender", "recipient", "size", "protocol_state"])
            .prop_map(String::from),
        "[^=\n]{1,8}",
    ];
    let value = prop_oneof!["[ -~]{0,30}", "[^\n]{0,12}", "[=\r]{0,4}"];
    (name, value)
}

/// Bytes biased towards the protocol's syntax.
fn protocol_bytes() -> impl Strategy<Value = Vec<u8>> {
    let byte = prop_oneof![
        4 => prop::sample::select(b"=\n\r".to_vec()),
        4 => prop::sample::select(b"ab_".to_vec()),
        1 => any::<u8>(),
    ];
    prop::collection::vec(byte, 0..600)
}

proptest! {
    #[test]
    fn valid_requests_decode_to_themselves_in_any_pieces(
        requests in prop::collection::vec(prop::collection::vec(attribute(), 1..20), 1..6),
        use_crlf in any::<bool>(),
        sizes in prop::collection::vec(1usize..50, 1..20),
    ) {
        let input: Vec<u8> = requests.iter().flat_map(|r| encode_request(r, use_crlf)).collect();
        let (decoded, error, buffered) = decode_in_pieces(&input, Limits::default(), &sizes);
        prop_assert_eq!(error, None);
        prop_assert_eq!(buffered, 0);
        let decoded: Vec<Vec<(String, String)>> = decoded
            .iter()
            .map(|r| r.attributes().map(|(n, v)| (n.to_owned(), v.to_owned())).collect())
            .collect();
        let expected: Vec<_> = requests.iter().map(|r| last_wins(r)).collect();
        prop_assert_eq!(decoded, expected);
    }

    #[test]
    fn any_bytes_never_panic_and_stay_bounded(
        input in protocol_bytes(),
        max_request_bytes in 0usize..200,
        max_attributes in 0usize..10,
        sizes in prop::collection::vec(1usize..40, 1..10),
    ) {
        let limits = Limits { max_request_bytes, max_attributes };
        // decode_in_pieces checks the bound after every piece.
        let whole = decode_in_pieces(&input, limits, &[]);
        let pieces = decode_in_pieces(&input, limits, &sizes);
        let bytewise = decode_in_pieces(&input, limits, &[1]);
        // However the input is split, the same requests and the same error.
        prop_assert_eq!(&whole, &pieces);
        prop_assert_eq!(&whole, &bytewise);
        for request in &whole.0 {
            let attributes: Vec<(String, String)> =
                request.attributes().map(|(n, v)| (n.to_owned(), v.to_owned())).collect();
            let again = PolicyRequest::parse(
                &encode_request(&attributes, true),
                &Limits { max_request_bytes: usize::MAX, max_attributes: usize::MAX },
            );
            prop_assert_eq!(again.as_ref(), Ok(request));
        }
    }

    #[test]
    fn replies_are_one_line_whatever_the_text(text in "\\PC{0,40}|[\r\n a-z:=-]{0,40}|.{0,1200}") {
        for action in [
            PolicyAction::Reject(text.clone()),
            PolicyAction::DeferIfPermit(text.clone()),
            PolicyAction::Hold(text.clone()),
            PolicyAction::Prepend(text.clone()),
            PolicyAction::Prepend(format!("X-Test: {text}")),
        ] {
            let mut out = Vec::new();
            if encode_reply(&action, &mut out).is_err() {
                prop_assert!(matches!(action, PolicyAction::Prepend(_)));
                prop_assert!(out.is_empty());
                continue;
            }
            prop_assert!(out.ends_with(b"\n\n"));
            prop_assert_eq!(out.iter().filter(|&&b| b == b'\n').count(), 2);
            prop_assert!(!out.contains(&b'\r'));
            prop_assert!(out.len() <= "action=DEFER_IF_PERMIT ".len() + MAX_REPLY_TEXT + 2);
            // Read back with the request decoder: exactly one `action=` attribute.
            let reply = PolicyRequest::parse(&out, &Limits::default()).unwrap();
            prop_assert_eq!(reply.attributes().count(), 1);
            prop_assert!(reply.get("action").is_some());
        }
    }
}
