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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Family, OptNeg, encode_command};

    /// What a whole input decodes to: the commands before the first error, the error (if
    /// any), and the bytes of the unfinished packet.
    type Outcome = (Vec<Command>, Option<ProtocolError>, usize);

    /// Feed `input` in pieces whose sizes `next_size` picks, draining after each piece, checking
    /// the bound after each drain and that an error is sticky.
    fn decode(input: &[u8], limits: Limits, next_size: &mut dyn FnMut() -> usize) -> Outcome {
        let mut decoder = Decoder::new(limits);
        let mut commands = Vec::new();
        let mut rest = input;
        while !rest.is_empty() {
            let (piece, after) = rest.split_at(next_size().clamp(1, rest.len()));
            rest = after;
            decoder.feed(piece);
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

    /// Decoded whole, one byte at a time, in pieces of several fixed sizes, in pseudo-random
    /// pieces, and split in two at every byte: always `expected`.
    fn check(name: &str, input: &[u8], limits: Limits, expected: &Outcome) {
        for size in [usize::MAX, 1, 2, 3, 4, 5, 7, 13, 64] {
            let got = decode(input, limits, &mut || size);
            assert_eq!(&got, expected, "{name}, pieces of {size}");
        }
        let mut seed = 0x9e37_79b9_u32;
        let got = decode(input, limits, &mut || {
            seed ^= seed << 13;
            seed ^= seed >> 17;
            seed ^= seed << 5;
            1 + (seed % 23) as usize
        });
        assert_eq!(&got, expected, "{name}, random pieces");
        if input.len() <= 4096 {
            for cut in 1..input.len() {
                let mut sizes = [cut, usize::MAX].into_iter();
                let got = decode(input, limits, &mut || sizes.next().unwrap_or(usize::MAX));
                assert_eq!(&got, expected, "{name}, split at {cut}");
            }
        }
    }

    fn encoded(commands: &[Command]) -> Vec<u8> {
        let mut out = Vec::new();
        for command in commands {
            encode_command(command, &mut out).unwrap();
        }
        out
    }

    /// A session as Postfix sends it, every command kind.
    fn session() -> Vec<Command> {
        let macros = |stage, pairs: &[(&str, &str)]| Command::Macros {
            stage,
            pairs: pairs
                .iter()
                .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
                .collect(),
        };
        vec![
            Command::OptNeg(OptNeg {
                version: 6,
                actions: 0x1ff,
                protocol: 0x1f_ffff,
            }),
            macros(
                b'C',
                &[("j", "gw.example.test"), ("{daemon_addr}", "127.0.0.1")],
            ),
            Command::Connect(crate::Connect {
                hostname: "[203.0.113.9]".into(),
                family: Family::Inet,
                port: 4711,
                address: "203.0.113.9".into(),
            }),
            macros(b'H', &[]),
            Command::Helo("mx.sender.test".into()),
            Command::Mail(vec!["<alice@sender.test>".into(), "SIZE=12".into()]),
            Command::Rcpt(vec!["<bob@example.test>".into()]),
            macros(b'T', &[("i", "4F1B29B61BF")]),
            Command::Data,
            Command::Header {
                name: "Subject".into(),
                value: "hi".into(),
            },
            Command::Header {
                name: "X-Folded".into(),
                value: "a\n\tb".into(),
            },
            Command::EndOfHeaders,
            Command::Body(b"hello\r\n".to_vec()),
            Command::Body(vec![0, 1, 2, 255]),
            Command::EndOfBody,
            Command::Abort,
            Command::Unknown("HELP".into()),
            Command::QuitNewConnection,
            Command::Quit,
        ]
    }

    #[test]
    fn a_whole_session_split_anywhere() {
        let commands = session();
        let input = encoded(&commands);
        check("session", &input, Limits::default(), &(commands, None, 0));
    }

    #[test]
    fn unfinished_packets_are_buffered_and_count_their_length_field() {
        let commands = session();
        let input = encoded(&commands[..3]);
        #[rustfmt::skip]
        let cases: &[(&str, &[u8], Outcome)] = &[
            ("nothing", b"", (vec![], None, 0)),
            ("half a length field", b"\0\0", (vec![], None, 2)),
            ("a length field", b"\0\0\0\x05", (vec![], None, 4)),
            ("a length field and part of the packet", b"\0\0\0\x05Hmx", (vec![], None, 7)),
            ("a packet and part of the next", b"\0\0\0\x01T\0\0\0\x02H",
                (vec![Command::Data], None, 5)),
        ];
        for (name, input, expected) in cases {
            check(name, input, Limits::default(), expected);
        }
        check(
            "three packets",
            &input,
            Limits::default(),
            &(commands[..3].to_vec(), None, 0),
        );
    }

    #[test]
    fn errors_come_after_the_commands_before_them_and_stay() {
        #[rustfmt::skip]
        let cases: &[(&str, &[u8], Outcome)] = &[
            ("zero length", b"\0\0\0\0", (vec![], Some(ProtocolError::EmptyPacket), 0)),
            ("zero length after a command", b"\0\0\0\x01T\0\0\0\0\0\0\0\x01T",
                (vec![Command::Data], Some(ProtocolError::EmptyPacket), 0)),
            ("an unknown command between two known", b"\0\0\0\x01T\0\0\0\x01Z\0\0\0\x01N",
                (vec![Command::Data], Some(ProtocolError::UnknownCommand { code: b'Z' }), 0)),
            ("a malformed packet", b"\0\0\0\x01N\0\0\0\x03Hmx\0\0\0\x01N",
                (vec![Command::EndOfHeaders],
                 Some(ProtocolError::Unterminated { command: b'H', field: "helo name" }), 0)),
            // The whole length field: 0x4F4B3F3F, a text protocol spoken to a milter.
            ("an SMTP greeting", b"OK??",
                (vec![], Some(ProtocolError::PacketTooLarge { length: 0x4f4b_3f3f, max: 1 << 20 }), 0)),
            ("the largest length", b"\xff\xff\xff\xff",
                (vec![], Some(ProtocolError::PacketTooLarge { length: u32::MAX, max: 1 << 20 }), 0)),
        ];
        for (name, input, expected) in cases {
            check(name, input, Limits::default(), expected);
        }
    }

    #[test]
    fn the_packet_cap_exactly_and_one_over() {
        let small = Limits { max_packet: 10 };
        let too_large = |length| Some(ProtocolError::PacketTooLarge { length, max: 10 });
        #[rustfmt::skip]
        let cases: &[(&str, &[u8], Limits, Outcome)] = &[
            ("10 bytes, cap 10", b"\0\0\0\x0aHabcdefgh\0", small,
                (vec![Command::Helo("abcdefgh".into())], None, 0)),
            ("11 bytes, cap 10", b"\0\0\0\x0bHabcdefghi\0", small, (vec![], too_large(11), 0)),
            // Refused on the length field alone: none of the data needs to arrive.
            ("11 bytes announced, nothing sent", b"\0\0\0\x0b", small, (vec![], too_large(11), 0)),
            ("the cap is per packet", b"\0\0\0\x0aHabcdefgh\0\0\0\0\x0aHabcdefgh\0", small,
                (vec![Command::Helo("abcdefgh".into()), Command::Helo("abcdefgh".into())], None, 0)),
            ("cap 1: commands without data only", b"\0\0\0\x01T\0\0\0\x02H\0", Limits { max_packet: 1 },
                (vec![Command::Data], Some(ProtocolError::PacketTooLarge { length: 2, max: 1 }), 0)),
            ("cap 0", b"\0\0\0\x01T", Limits { max_packet: 0 },
                (vec![], Some(ProtocolError::PacketTooLarge { length: 1, max: 0 }), 0)),
        ];
        for (name, input, limits, expected) in cases {
            check(name, input, *limits, expected);
        }
    }

    #[test]
    fn default_cap_exactly_and_one_over() {
        let limits = Limits::default();
        assert_eq!(limits.max_packet, 1_048_576);
        // A body chunk of exactly 1 MiB with its code, then one byte more.
        let body = vec![b'x'; limits.max_packet - 1];
        let at_cap = encoded(&[Command::Body(body.clone())]);
        assert_eq!(&at_cap[..5], b"\0\x10\0\0B");
        check(
            "1 MiB",
            &at_cap,
            limits,
            &(vec![Command::Body(body.clone())], None, 0),
        );
        let over = encoded(&[Command::Body(vec![b'x'; limits.max_packet])]);
        let refused = ProtocolError::PacketTooLarge {
            length: 1_048_577,
            max: 1_048_576,
        };
        check(
            "1 MiB + 1",
            &over,
            limits,
            &(vec![], Some(refused.clone()), 0),
        );

        // Postfix's body chunks: 65,535 bytes.
        let chunk = vec![b'y'; crate::flags::MILTER_CHUNK_SIZE];
        let input = encoded(&[Command::Body(chunk.clone()), Command::Body(chunk.clone())]);
        let expected = (
            vec![Command::Body(chunk.clone()), Command::Body(chunk)],
            None,
            0,
        );
        check("two full body chunks", &input, limits, &expected);

        // Refused as soon as the length field is in; the decoder holds nothing.
        let mut decoder = Decoder::new(limits);
        decoder.feed(&over[..3]);
        assert_eq!(decoder.next_command(), Ok(None));
        assert_eq!(decoder.buffered(), 3);
        decoder.feed(&over[3..4]);
        assert_eq!(decoder.next_command(), Err(refused));
        assert_eq!(decoder.buffered(), 0);
        assert_eq!(decoder.packet.capacity(), 0);
    }

    #[test]
    fn a_large_packet_does_not_keep_its_buffer() {
        let mut decoder = Decoder::new(Limits::default());
        let large = encoded(&[Command::Body(vec![b'x'; 200_000])]);
        for piece in large.chunks(4096) {
            decoder.feed(piece);
        }
        assert!(matches!(decoder.next_command(), Ok(Some(Command::Body(b))) if b.len() == 200_000));
        assert_eq!(decoder.packet.capacity(), 0);
        // A small packet split across reads keeps its (small) buffer for the next one.
        decoder.feed(b"\0\0\0\x03H");
        decoder.feed(b"a\0");
        assert_eq!(decoder.next_command(), Ok(Some(Command::Helo("a".into()))));
        assert!(decoder.packet.capacity() > 0);
        assert!(decoder.packet.capacity() <= KEPT_PACKET_CAPACITY);
    }

    mod properties {
        use proptest::prelude::*;

        use super::*;
        use crate::Connect;

        fn text() -> impl Strategy<Value = String> {
            "[^\0]{0,12}"
        }

        fn connect() -> impl Strategy<Value = Command> {
            let family = prop_oneof![
                Just(Family::Inet),
                Just(Family::Inet6),
                Just(Family::Unix),
                Just(Family::Unknown),
            ];
            (text(), family, any::<u16>(), text()).prop_map(|(hostname, family, port, address)| {
                let (port, address) = match family {
                    Family::Unknown => (0, String::new()),
                    _ => (port, address),
                };
                Command::Connect(Connect {
                    hostname,
                    family,
                    port,
                    address,
                })
            })
        }

        fn command() -> impl Strategy<Value = Command> {
            prop_oneof![
                (any::<u32>(), any::<u32>(), any::<u32>()).prop_map(
                    |(version, actions, protocol)| {
                        Command::OptNeg(OptNeg {
                            version,
                            actions,
                            protocol,
                        })
                    }
                ),
                (any::<u8>(), prop::collection::vec((text(), text()), 0..4))
                    .prop_map(|(stage, pairs)| Command::Macros { stage, pairs }),
                connect(),
                text().prop_map(Command::Helo),
                prop::collection::vec(text(), 1..4).prop_map(Command::Mail),
                prop::collection::vec(text(), 1..4).prop_map(Command::Rcpt),
                Just(Command::Data),
                (text(), text()).prop_map(|(name, value)| Command::Header { name, value }),
                Just(Command::EndOfHeaders),
                prop::collection::vec(any::<u8>(), 0..64).prop_map(Command::Body),
                Just(Command::EndOfBody),
                Just(Command::Abort),
                Just(Command::Quit),
                Just(Command::QuitNewConnection),
                text().prop_map(Command::Unknown),
            ]
        }

        proptest! {
            /// Any sequence of valid commands, encoded and fed in arbitrary pieces, decodes to
            /// the same commands.
            #[test]
            fn commands_round_trip_in_any_pieces(
                commands in prop::collection::vec(command(), 0..24),
                sizes in prop::collection::vec(1usize..40, 1..16),
            ) {
                let input = encoded(&commands);
                let mut next = sizes.iter().copied().cycle();
                let got = decode(&input, Limits::default(), &mut || next.next().unwrap_or(1));
                prop_assert_eq!(got, (commands, None, 0));
            }

            /// Any bytes: no panic, and the same outcome however they are split.
            #[test]
            fn arbitrary_bytes_decode_alike_in_any_pieces(
                input in prop::collection::vec(any::<u8>(), 0..256),
                size in 1usize..17,
                max_packet in 0usize..64,
            ) {
                let limits = Limits { max_packet };
                let whole = decode(&input, limits, &mut || usize::MAX);
                prop_assert_eq!(&decode(&input, limits, &mut || size), &whole);
                prop_assert_eq!(&decode(&input, limits, &mut || 1), &whole);
            }
        }
    }
}
