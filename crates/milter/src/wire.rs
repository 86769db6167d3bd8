//! The wire format's pieces: reading a packet's fields, writing a packet.
//!
//! A packet is a 32-bit big-endian length (of what follows: the code byte and the data), the
//! code byte, and the data. Fields in the data: 32-bit and 16-bit big-endian numbers, single
//! bytes, NUL-terminated strings, and raw bytes (a body chunk: the rest of the data).

use crate::EncodeError;
use crate::error::ProtocolError;

/// The fields of one packet's data, read front to back.
pub(crate) struct Fields<'a> {
    code: u8,
    rest: &'a [u8],
}

impl<'a> Fields<'a> {
    pub(crate) fn new(code: u8, data: &'a [u8]) -> Fields<'a> {
        Fields { code, rest: data }
    }

    fn take<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N], ProtocolError> {
        let Some((head, rest)) = self.rest.split_first_chunk::<N>() else {
            return Err(ProtocolError::Truncated {
                command: self.code,
                field,
            });
        };
        self.rest = rest;
        Ok(*head)
    }

    pub(crate) fn u8(&mut self, field: &'static str) -> Result<u8, ProtocolError> {
        self.take::<1>(field).map(|[b]| b)
    }

    pub(crate) fn u16(&mut self, field: &'static str) -> Result<u16, ProtocolError> {
        self.take(field).map(u16::from_be_bytes)
    }

    pub(crate) fn u32(&mut self, field: &'static str) -> Result<u32, ProtocolError> {
        self.take(field).map(u32::from_be_bytes)
    }

    /// A NUL-terminated string, decoded lossily.
    pub(crate) fn string(&mut self, field: &'static str) -> Result<String, ProtocolError> {
        let Some(nul) = self.rest.iter().position(|&b| b == 0) else {
            return Err(ProtocolError::Unterminated {
                command: self.code,
                field,
            });
        };
        let text = String::from_utf8_lossy(&self.rest[..nul]).into_owned();
        self.rest = &self.rest[nul + 1..];
        Ok(text)
    }

    /// Every remaining byte as NUL-terminated strings (none when nothing remains).
    pub(crate) fn strings(mut self, field: &'static str) -> Result<Vec<String>, ProtocolError> {
        let mut strings = Vec::new();
        while !self.rest.is_empty() {
            strings.push(self.string(field)?);
        }
        Ok(strings)
    }

    /// Nothing may follow the last field.
    pub(crate) fn end(self) -> Result<(), ProtocolError> {
        if self.rest.is_empty() {
            Ok(())
        } else {
            Err(ProtocolError::TrailingData {
                command: self.code,
                bytes: self.rest.len(),
            })
        }
    }
}

/// A packet being appended to a buffer. Dropped without [`Packet::finish`] (an error on the
/// way), it takes back everything it wrote, so a refused packet leaves the buffer as it was.
pub(crate) struct Packet<'a> {
    out: &'a mut Vec<u8>,
    start: usize,
    finished: bool,
}

impl<'a> Packet<'a> {
    /// Start a packet of command or response `code`: a length to be filled in, the code.
    pub(crate) fn start(out: &'a mut Vec<u8>, code: u8) -> Packet<'a> {
        let start = out.len();
        out.extend_from_slice(&[0, 0, 0, 0, code]);
        Packet {
            out,
            start,
            finished: false,
        }
    }

    pub(crate) fn u8(&mut self, value: u8) {
        self.out.push(value);
    }

    pub(crate) fn u16(&mut self, value: u16) {
        self.out.extend_from_slice(&value.to_be_bytes());
    }

    pub(crate) fn u32(&mut self, value: u32) {
        self.out.extend_from_slice(&value.to_be_bytes());
    }

    pub(crate) fn bytes(&mut self, bytes: &[u8]) {
        self.out.extend_from_slice(bytes);
    }

    /// A string and its NUL; refused when it holds a NUL itself.
    pub(crate) fn string(&mut self, text: &str, field: &'static str) -> Result<(), EncodeError> {
        if text.as_bytes().contains(&0) {
            return Err(EncodeError::NulInString {
                command: self.out[self.start + 4],
                field,
            });
        }
        self.out.extend_from_slice(text.as_bytes());
        self.out.push(0);
        Ok(())
    }

    /// Fill in the length; refused when it does not fit 32 bits.
    pub(crate) fn finish(mut self) -> Result<(), EncodeError> {
        let bytes = self.out.len() - self.start - 4;
        let length = u32::try_from(bytes).map_err(|_| EncodeError::PacketTooLarge { bytes })?;
        self.out[self.start..self.start + 4].copy_from_slice(&length.to_be_bytes());
        self.finished = true;
        Ok(())
    }
}

impl Drop for Packet<'_> {
    fn drop(&mut self) {
        if !self.finished {
            self.out.truncate(self.start);
        }
    }
}
