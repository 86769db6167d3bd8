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
            current: PolicyRequest::default(),
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
                self.ready.push_back(mem::take(&mut self.current));
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
        self.current = PolicyRequest::default();
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
