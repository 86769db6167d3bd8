//! The command decoder of one connection: bytes in, whole commands out, with a hard cap on the
//! packet size.

use std::collections::VecDeque;

use crate::{Command, ProtocolError};

/// A packet buffer that grew past this (a packet larger than a full body chunk) is freed after
/// its packet rather than kept for the next one.
const KEPT_PACKET_CAPACITY: usize = 4 + 1 + crate::flags::MILTER_CHUNK_SIZE;

/// Hard caps of the decoder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Most bytes in one packet, counted as its length field counts them: the command byte and
    /// the data (not the four length bytes). Default 1 MiB (1,048,576): a packet of exactly this
    /// length is accepted; a longer one is refused as soon as its length field has arrived,
    /// before any of its data. Postfix's largest packets are body chunks of 65,536 (the code
    /// and [`MILTER_CHUNK_SIZE`](crate::flags::MILTER_CHUNK_SIZE) bytes); headers, envelope
    /// arguments and macros are bounded by its own line and command limits.
    pub max_packet: usize,
}

impl Default for Limits {
    /// 1 MiB per packet.
    fn default() -> Limits {
        Limits {
            max_packet: 1024 * 1024,
        }
    }
}

/// Decodes the commands of one milter connection, sans I/O: [`feed`](Self::feed) it the bytes
/// read from the socket, then call [`next_command`](Self::next_command) until it returns
/// `Ok(None)`, answering each command in turn.
///
/// Packets may arrive split across any number of reads, and several may arrive in one read.
/// Each packet is checked as soon as it is complete; the length field as soon as its four bytes
/// are there, so a packet over [`Limits::max_packet`] is refused before its data arrives.
/// Commands completed before an error are still returned first, in order. Then the decoder
/// stays failed: every later call of `next_command` returns the same error and `feed` ignores
/// its input; the connection must be closed (Postfix then applies its `milter_default_action`).
///
/// Memory: the decoder keeps the unfinished packet (at most 4 + `max_packet` bytes) and the
/// finished commands not yet taken by `next_command` (those of one read, when the caller drains
/// after every read). After draining, [`buffered`](Self::buffered) is never more than
/// 4 + `max_packet`.
#[derive(Debug)]
pub struct Decoder {
    limits: Limits,
    /// The unfinished packet: its length field (once complete), then its code and data.
    packet: Vec<u8>,
    /// The unfinished packet's length (code and data), once its length field is complete.
    length: Option<usize>,
    /// Finished commands not yet returned.
    ready: VecDeque<Command>,
    /// Set once the input broke a rule; returned after the commands in `ready`.
    failed: Option<ProtocolError>,
}

impl Decoder {
    /// A decoder for a new connection, with these caps.
    pub fn new(limits: Limits) -> Decoder {
        Decoder {
            limits,
            packet: Vec::new(),
            length: None,
            ready: VecDeque::new(),
            failed: None,
        }
    }

    /// Append bytes read from the connection. Ignored once the decoder has failed.
    pub fn feed(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() && self.failed.is_none() {
            let Some(length) = self.length else {
                // The length field, possibly over several reads.
                let take = (4 - self.packet.len()).min(bytes.len());
                self.packet.extend_from_slice(&bytes[..take]);
                bytes = &bytes[take..];
                if let Ok(field) = <[u8; 4]>::try_from(self.packet.as_slice()) {
                    self.start_packet(u32::from_be_bytes(field));
                }
                continue;
            };
            let have = self.packet.len() - 4;
            let take = (length - have).min(bytes.len());
            if have == 0 && take == length {
                // The whole packet is in this read: no copy.
                self.end_packet(&bytes[..take]);
            } else {
                self.packet.extend_from_slice(&bytes[..take]);
                if have + take == length {
                    let mut packet = std::mem::take(&mut self.packet);
                    self.end_packet(&packet[4..]);
                    packet.clear();
                    if packet.capacity() <= KEPT_PACKET_CAPACITY && self.failed.is_none() {
                        self.packet = packet;
                    }
                }
            }
            bytes = &bytes[take..];
        }
    }

    /// The next complete command, if one is buffered; `Ok(None)` when more bytes are needed.
    ///
    /// After an `Err` the connection must be closed: the decoder stays in the error state and
    /// returns the same error from then on.
    pub fn next_command(&mut self) -> Result<Option<Command>, ProtocolError> {
        if let Some(command) = self.ready.pop_front() {
            return Ok(Some(command));
        }
        match &self.failed {
            Some(error) => Err(error.clone()),
            None => Ok(None),
        }
    }

    /// Bytes buffered that do not yet form a complete packet (its length field included): `0`
    /// between packets (and once failed); never more than 4 + `max_packet`. For idle and
    /// partial-packet checks.
    pub fn buffered(&self) -> usize {
        self.packet.len()
    }

    /// The length field is complete: check it.
    fn start_packet(&mut self, length: u32) {
        let Ok(length_usize) = usize::try_from(length) else {
            self.fail(ProtocolError::PacketTooLarge {
                length,
                max: self.limits.max_packet,
            });
            return;
        };
        if length == 0 {
            self.fail(ProtocolError::EmptyPacket);
        } else if length_usize > self.limits.max_packet {
            self.fail(ProtocolError::PacketTooLarge {
                length,
                max: self.limits.max_packet,
            });
        } else {
            self.length = Some(length_usize);
        }
    }

    /// A whole packet (code and data) has arrived.
    fn end_packet(&mut self, packet: &[u8]) {
        self.length = None;
        self.packet.clear();
        let Some((&code, data)) = packet.split_first() else {
            // start_packet refuses length 0.
            self.fail(ProtocolError::EmptyPacket);
            return;
        };
        match Command::parse(code, data) {
            Ok(command) => self.ready.push_back(command),
            Err(error) => self.fail(error),
        }
    }

    /// Enter the error state and let go of the unfinished packet.
    fn fail(&mut self, error: ProtocolError) {
        self.failed = Some(error);
        self.packet = Vec::new();
        self.length = None;
    }
}
