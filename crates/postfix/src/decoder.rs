//! The request decoder of one connection: bytes in, whole requests out, with hard caps.

use std::collections::VecDeque;
use std::mem;

use crate::error::shown;
use crate::{PolicyRequest, ProtocolError};

/// A line buffer that grew past this is freed after its line rather than kept for the next one,
/// so that one long line does not pin its memory for the rest of a persistent connection.
const KEPT_LINE_CAPACITY: usize = 4 * 1024;

/// Hard caps on one request. Past either one the request is refused and the connection must be
/// closed without an answer (DESIGN §5.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Most bytes in one request, counted as they arrive: every line with its `\n` (and `\r`,
    /// if any) and the empty line that ends the request. Default 64 KiB (65,536): a request of
    /// exactly this many bytes is accepted, one more byte is refused — as soon as it arrives,
    /// even in the middle of a line.
    pub max_request_bytes: usize,
    /// Most attribute lines in one request, a repeated name counting each time. Default 256.
    pub max_attributes: usize,
}

impl Default for Limits {
    /// 64 KiB and 256 attributes. Postfix's largest requests are a few KiB and about 30
    /// attributes.
    fn default() -> Limits {
        Limits {
            max_request_bytes: 64 * 1024,
            max_attributes: 256,
        }
    }
}

/// Decodes the requests of one policy connection, sans I/O: [`feed`](Self::feed) it the bytes
/// read from the socket, then call [`next_request`](Self::next_request) until it returns
/// `Ok(None)`, answering each request in turn.
///
/// Requests may arrive split across any number of reads, and several may arrive in one read.
/// Each line ends in `\n`, with an optional `\r` before it that is removed (only one: the value
/// of `a=b\r\r\n` is `b\r`); a request ends with an empty line.
///
/// Lines are checked as they end, and every byte is counted against [`Limits`] as it arrives,
/// so an error comes as soon as the input shows it: a never-ending line is refused on the byte
/// that passes `max_request_bytes`. Requests completed before the error are still returned
/// first, in order. Then the decoder stays failed: every later call of `next_request` returns
/// the same error and `feed` ignores its input; the connection must be closed without an
/// answer.
///
/// A stray empty line where a request should start (`\n` before or between requests) is
/// refused ([`ProtocolError::EmptyRequest`]): Postfix never sends one, and it is not
/// `name=value`.
///
/// Memory: the decoder keeps the unfinished request (at most `max_request_bytes` bytes, as
/// text and as the current line) and the finished requests not yet taken by `next_request`
/// (those of one read, when the caller drains after every read). After draining,
/// [`buffered`](Self::buffered) is never more than `max_request_bytes`.
#[derive(Debug)]
pub struct Decoder {
    limits: Limits,
    /// The current line, until its `\n` arrives (only when it spans several reads).
    line: Vec<u8>,
    /// The attributes of the unfinished request.
    current: PolicyRequest,
    /// Attribute lines of the unfinished request.
    lines: usize,
    /// Bytes of the unfinished request so far, never more than `limits.max_request_bytes`.
    request_bytes: usize,
    /// Finished requests not yet returned.
    ready: VecDeque<PolicyRequest>,
    /// Set once the input broke a rule; returned after the requests in `ready`.
    failed: Option<ProtocolError>,
}

impl Decoder {
    /// A decoder for a new connection, with these caps.
    pub fn new(limits: Limits) -> Decoder {
        Decoder {
            limits,
            line: Vec::new(),
            current: PolicyRequest::empty(),
            lines: 0,
            request_bytes: 0,
            ready: VecDeque::new(),
            failed: None,
        }
    }

    /// Append bytes read from the connection. Ignored once the decoder has failed.
    pub fn feed(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() && self.failed.is_none() {
            let (piece, ends_line) = match bytes.iter().position(|&b| b == b'\n') {
                Some(i) => (&bytes[..=i], true),
                None => (bytes, false),
            };
            bytes = &bytes[piece.len()..];
            let room = self.limits.max_request_bytes - self.request_bytes;
            if piece.len() > room {
                self.fail(ProtocolError::RequestTooLarge {
                    bytes: self.limits.max_request_bytes.saturating_add(1),
                });
                return;
            }
            self.request_bytes += piece.len();
            if !ends_line {
                self.line.extend_from_slice(piece);
                return;
            }
            let ended = &piece[..piece.len() - 1];
            if self.line.is_empty() {
                self.end_line(ended);
            } else {
                let mut line = mem::take(&mut self.line);
                line.extend_from_slice(ended);
                self.end_line(&line);
                line.clear();
                if line.capacity() <= KEPT_LINE_CAPACITY && self.failed.is_none() {
                    self.line = line;
                }
            }
        }
    }

    /// The next complete request, if one is buffered; `Ok(None)` when more bytes are needed.
    ///
    /// After an `Err` the connection must be closed without an answer: the decoder stays in
    /// the error state and returns the same error from then on.
    pub fn next_request(&mut self) -> Result<Option<PolicyRequest>, ProtocolError> {
        if let Some(request) = self.ready.pop_front() {
            return Ok(Some(request));
        }
        match &self.failed {
            Some(error) => Err(error.clone()),
            None => Ok(None),
        }
    }

    /// Bytes buffered that do not yet form a complete request: `0` between requests (and once
    /// failed), more while a request is arriving; never more than `max_request_bytes`. For
    /// idle and partial-request checks.
    pub fn buffered(&self) -> usize {
        self.request_bytes
    }

    /// One line has ended (`line` is without its `\n`).
    fn end_line(&mut self, line: &[u8]) {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            if self.lines == 0 {
                self.fail(ProtocolError::EmptyRequest);
            } else {
                let next = PolicyRequest::with_room_of(&self.current);
                self.ready.push_back(mem::replace(&mut self.current, next));
                self.lines = 0;
                self.request_bytes = 0;
            }
            return;
        }
        self.lines += 1;
        if self.lines > self.limits.max_attributes {
            self.fail(ProtocolError::TooManyAttributes { count: self.lines });
            return;
        }
        match name_value(line, self.lines) {
            Ok((name, value)) => self.current.insert(name, value),
            Err(error) => self.fail(error),
        }
    }

    /// Enter the error state and let go of the unfinished request.
    fn fail(&mut self, error: ProtocolError) {
        self.failed = Some(error);
        self.line = Vec::new();
        self.current = PolicyRequest::empty();
        self.lines = 0;
        self.request_bytes = 0;
    }
}

/// Split an attribute line (without its line end) at its first `=`.
fn name_value(line: &[u8], number: usize) -> Result<(&str, &str), ProtocolError> {
    let text = std::str::from_utf8(line).map_err(|_| ProtocolError::NotUtf8 {
        line: number,
        text: shown(&String::from_utf8_lossy(line)),
    })?;
    match text.split_once('=') {
        None => Err(ProtocolError::NotNameValue {
            line: number,
            text: shown(text),
        }),
        Some(("", _)) => Err(ProtocolError::EmptyName {
            line: number,
            text: shown(text),
        }),
        Some(pair) => Ok(pair),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Attributes<'a> = &'a [(&'a str, &'a str)];

    /// What a whole input decodes to: the requests before the first error, the error (if
    /// any), and the bytes of the unfinished request.
    #[derive(Debug, PartialEq)]
    struct Outcome {
        requests: Vec<Vec<(String, String)>>,
        error: Option<ProtocolError>,
        buffered: usize,
    }

    fn outcome(
        requests: &[Attributes<'_>],
        error: Option<ProtocolError>,
        buffered: usize,
    ) -> Outcome {
        Outcome {
            requests: requests
                .iter()
                .map(|attributes| {
                    attributes
                        .iter()
                        .map(|(n, v)| (n.to_string(), v.to_string()))
                        .collect()
                })
                .collect(),
            error,
            buffered,
        }
    }

    /// Feed `input` in pieces of `chunk` bytes (0: all at once), draining after every piece.
    fn decode(input: &[u8], limits: Limits, chunk: usize) -> Outcome {
        let mut decoder = Decoder::new(limits);
        let mut requests = Vec::new();
        let mut error = None;
        let pieces: Vec<&[u8]> = if chunk == 0 {
            vec![input]
        } else {
            input.chunks(chunk).collect()
        };
        for piece in pieces {
            decoder.feed(piece);
            loop {
                match decoder.next_request() {
                    Ok(Some(request)) => requests.push(
                        request
                            .attributes()
                            .map(|(n, v)| (n.to_string(), v.to_string()))
                            .collect(),
                    ),
                    Ok(None) => break,
                    Err(e) => {
                        // Sticky: the same error again, and more input changes nothing.
                        assert_eq!(decoder.next_request(), Err(e.clone()));
                        decoder.feed(b"a=1\n\n");
                        assert_eq!(decoder.next_request(), Err(e.clone()));
                        assert_eq!(decoder.buffered(), 0);
                        error = Some(e);
                        break;
                    }
                }
            }
            assert!(decoder.buffered() <= limits.max_request_bytes);
            if error.is_some() {
                break;
            }
        }
        Outcome {
            requests,
            error,
            buffered: decoder.buffered(),
        }
    }

    /// Decoded whole, one byte at a time and in pieces of several sizes: always the same.
    fn check(name: &str, input: &[u8], limits: Limits, expected: &Outcome) {
        for chunk in [0, 1, 2, 3, 5, 7, 64] {
            assert_eq!(
                &decode(input, limits, chunk),
                expected,
                "{name}, chunk {chunk}"
            );
        }
    }

    fn not_name_value(line: usize, text: &str) -> Option<ProtocolError> {
        Some(ProtocolError::NotNameValue {
            line,
            text: text.into(),
        })
    }

    #[test]
    fn decodes_requests_and_refuses_bad_lines() {
        #[rustfmt::skip]
        let cases: &[(&str, &[u8], Outcome)] = &[
            ("one request", b"a=1\nb=2\n\n",
                outcome(&[&[("a", "1"), ("b", "2")]], None, 0)),
            ("CRLF", b"a=1\r\nb=2\r\n\r\n",
                outcome(&[&[("a", "1"), ("b", "2")]], None, 0)),
            ("LF and CRLF mixed", b"a=1\r\nb=2\n\r\n",
                outcome(&[&[("a", "1"), ("b", "2")]], None, 0)),
            ("only one CR is removed", b"a=1\r\r\n\n",
                outcome(&[&[("a", "1\r")]], None, 0)),
            ("a CR inside a value is kept", b"a=x\ry\n\n",
                outcome(&[&[("a", "x\ry")]], None, 0)),
            ("values may hold =", b"a=b=c==\n\n",
                outcome(&[&[("a", "b=c==")]], None, 0)),
            ("values may be empty", b"sender=\n\n",
                outcome(&[&[("sender", "")]], None, 0)),
            ("duplicates: first place, last value", b"a=1\nb=2\na=3\n\n",
                outcome(&[&[("a", "3"), ("b", "2")]], None, 0)),
            ("unknown names are kept", b"x-custom=1\nrequest=smtpd_access_policy\n\n",
                outcome(&[&[("x-custom", "1"), ("request", "smtpd_access_policy")]], None, 0)),
            ("names and values are not trimmed", b" a = b \n\n",
                outcome(&[&[(" a ", " b ")]], None, 0)),
            ("UTF-8 values", "helo_name=bücher.example\n\n".as_bytes(),
                outcome(&[&[("helo_name", "bücher.example")]], None, 0)),
            ("two requests in one read", b"a=1\n\nb=2\r\n\r\n",
                outcome(&[&[("a", "1")], &[("b", "2")]], None, 0)),
            ("many requests in one read", b"a=1\n\na=2\n\na=3\n\na=4\n\na=5\n\n",
                outcome(&[&[("a", "1")], &[("a", "2")], &[("a", "3")], &[("a", "4")], &[("a", "5")]], None, 0)),
            ("a request and part of the next", b"a=1\n\nb=2\nc",
                outcome(&[&[("a", "1")]], None, 5)),
            ("an unfinished request counts its CRs", b"a=1\r\n",
                outcome(&[], None, 5)),
            ("nothing", b"",
                outcome(&[], None, 0)),
            ("a line without =", b"a=1\nhello\n\n",
                outcome(&[], not_name_value(2, "hello"), 0)),
            ("=value", b"=x\n\n",
                outcome(&[], Some(ProtocolError::EmptyName { line: 1, text: "=x".into() }), 0)),
            ("= alone", b"a=1\n=\n\n",
                outcome(&[], Some(ProtocolError::EmptyName { line: 2, text: "=".into() }), 0)),
            ("empty request", b"\n",
                outcome(&[], Some(ProtocolError::EmptyRequest), 0)),
            ("empty request, CRLF", b"\r\n",
                outcome(&[], Some(ProtocolError::EmptyRequest), 0)),
            ("a stray empty line after a request", b"a=1\n\n\nb=2\n\n",
                outcome(&[&[("a", "1")]], Some(ProtocolError::EmptyRequest), 0)),
            ("a line that is one CR after the CR is removed", b"a=1\n\r\r\n\n",
                outcome(&[], not_name_value(2, "\\r"), 0)),
            ("invalid UTF-8 in a value", b"a=1\nb=\xff\n\n",
                outcome(&[], Some(ProtocolError::NotUtf8 { line: 2, text: "b=\u{fffd}".into() }), 0)),
            ("invalid UTF-8 in a name", b"\xc3=1\n\n",
                outcome(&[], Some(ProtocolError::NotUtf8 { line: 1, text: "\u{fffd}=1".into() }), 0)),
            ("an error quotes the line escaped", b"\x1b[2J\n",
                outcome(&[], not_name_value(1, "\\u{1b}[2J"), 0)),
            ("requests before an error still come out", b"a=1\n\nbad\nb=2\n\n",
                outcome(&[&[("a", "1")]], not_name_value(1, "bad"), 0)),
            ("line numbers count within the request", b"a=1\nb=2\n\nc=3\nd=4\nbad\n",
                outcome(&[&[("a", "1"), ("b", "2")]], not_name_value(3, "bad"), 0)),
            ("an error needs the line to end", b"bad",
                outcome(&[], None, 3)),
        ];
        for (name, input, expected) in cases {
            check(name, input, Limits::default(), expected);
        }
    }

    #[test]
    fn caps_exactly_at_the_limit_and_one_over() {
        let small = |max_request_bytes, max_attributes| Limits {
            max_request_bytes,
            max_attributes,
        };
        let too_large = |bytes| Some(ProtocolError::RequestTooLarge { bytes });
        let too_many = |count| Some(ProtocolError::TooManyAttributes { count });
        #[rustfmt::skip]
        let cases: &[(&str, &[u8], Limits, Outcome)] = &[
            ("10 bytes, cap 10", b"a=123456\n\n", small(10, 256),
                outcome(&[&[("a", "123456")]], None, 0)),
            ("11 bytes, cap 10", b"a=1234567\n\n", small(10, 256),
                outcome(&[], too_large(11), 0)),
            ("CRs count: 7 bytes, cap 7", b"a=1\r\n\r\n", small(7, 256),
                outcome(&[&[("a", "1")]], None, 0)),
            ("CRs count: 7 bytes, cap 6", b"a=1\r\n\r\n", small(6, 256),
                outcome(&[], too_large(7), 0)),
            ("the cap is per request", b"a=123456\n\nb=123456\n\n", small(10, 256),
                outcome(&[&[("a", "123456")], &[("b", "123456")]], None, 0)),
            ("a line that never ends is refused at cap + 1", b"xxxxxxxxxxx", small(10, 256),
                outcome(&[], too_large(11), 0)),
            ("a line that never ends, at the cap", b"xxxxxxxxxx", small(10, 256),
                outcome(&[], None, 10)),
            ("cap 0", b"a", small(0, 256),
                outcome(&[], too_large(1), 0)),
            ("2 attributes, cap 2", b"a=1\nb=2\n\n", small(100, 2),
                outcome(&[&[("a", "1"), ("b", "2")]], None, 0)),
            ("3 attributes, cap 2", b"a=1\nb=2\nc=3\n\n", small(100, 2),
                outcome(&[], too_many(3), 0)),
            ("repeated names count", b"a=1\na=2\na=3\n\n", small(100, 2),
                outcome(&[], too_many(3), 0)),
            ("the count is per request", b"a=1\nb=2\n\nc=3\nd=4\n\n", small(100, 2),
                outcome(&[&[("a", "1"), ("b", "2")], &[("c", "3"), ("d", "4")]], None, 0)),
            ("the attribute cap comes before the line's own check", b"a=1\nb=2\nbad\n", small(100, 2),
                outcome(&[], too_many(3), 0)),
        ];
        for (name, input, limits, expected) in cases {
            check(name, input, *limits, expected);
        }
    }

    #[test]
    fn default_caps_exactly_at_the_limit_and_one_over() {
        let limits = Limits::default();
        assert_eq!(limits.max_request_bytes, 65_536);
        assert_eq!(limits.max_attributes, 256);

        // "a=" + value + "\n\n" is exactly 64 KiB.
        let value = "x".repeat(65_536 - 4);
        let at_cap = format!("a={value}\n\n");
        assert_eq!(at_cap.len(), 65_536);
        check(
            "64 KiB",
            at_cap.as_bytes(),
            limits,
            &outcome(&[&[("a", &value)]], None, 0),
        );
        let over = format!("a={value}x\n\n");
        let refused = ProtocolError::RequestTooLarge { bytes: 65_537 };
        check(
            "64 KiB + 1",
            over.as_bytes(),
            limits,
            &outcome(&[], Some(refused.clone()), 0),
        );

        // A line that never ends: refused on the byte that passes the cap, not at its end.
        let mut decoder = Decoder::new(limits);
        decoder.feed(&vec![b'x'; 65_536]);
        assert_eq!(decoder.next_request(), Ok(None));
        assert_eq!(decoder.buffered(), 65_536);
        decoder.feed(b"x");
        assert_eq!(decoder.next_request(), Err(refused.clone()));
        assert_eq!(decoder.buffered(), 0);
        assert_eq!(decoder.line.capacity(), 0, "the long line is let go");

        // One huge read: refused without copying it.
        let mut decoder = Decoder::new(limits);
        decoder.feed(&vec![b'x'; 1 << 20]);
        assert_eq!(decoder.next_request(), Err(refused));
        assert_eq!(decoder.line.capacity(), 0);

        // 256 attributes, then 257.
        let lines: String = (0..256).map(|i| format!("n{i}=v\n")).collect();
        let attributes: Vec<(String, String)> = (0..256)
            .map(|i| (format!("n{i}"), "v".to_string()))
            .collect();
        let expected = Outcome {
            requests: vec![attributes],
            error: None,
            buffered: 0,
        };
        check(
            "256 attributes",
            format!("{lines}\n").as_bytes(),
            limits,
            &expected,
        );
        let refused = Some(ProtocolError::TooManyAttributes { count: 257 });
        let input = format!("{lines}n256=v\n\n");
        check(
            "257 attributes",
            input.as_bytes(),
            limits,
            &outcome(&[], refused, 0),
        );
    }

    #[test]
    fn a_long_line_does_not_keep_its_buffer() {
        let mut decoder = Decoder::new(Limits::default());
        let long = format!("a={}", "x".repeat(10_000));
        decoder.feed(&long.as_bytes()[..5_000]);
        decoder.feed(&long.as_bytes()[5_000..]);
        decoder.feed(b"\n\n");
        assert!(decoder.next_request().is_ok_and(|r| r.is_some()));
        assert_eq!(decoder.line.capacity(), 0);
        // A short line split across reads keeps its (small) buffer for the next one.
        decoder.feed(b"a=");
        decoder.feed(b"1\n\n");
        assert!(decoder.next_request().is_ok_and(|r| r.is_some()));
        assert!(decoder.line.capacity() > 0);
        assert!(decoder.line.capacity() <= KEPT_LINE_CAPACITY);
    }
}
