//! A minimal, allocation-free protobuf wire-format reader, just enough for the KPL messages.
//!
//! It works on positions in the original blob so that decoded `bytes` fields can become zero-copy
//! [`Bytes`](bytes::Bytes) slices. Unknown fields, and known fields with an unexpected wire type, are skipped as
//! protobuf-java does (it treats them as unknown fields); groups are skipped up to a fixed nesting depth.

use std::ops::Range;

use super::MalformedKind;

/// Protobuf wire types.
pub(super) const VARINT: u8 = 0;
const FIXED64: u8 = 1;
pub(super) const LEN: u8 = 2;
const START_GROUP: u8 = 3;
const END_GROUP: u8 = 4;
const FIXED32: u8 = 5;

/// Deepest group nesting skipped before the message is declared malformed (protobuf-java allows 100).
const MAX_GROUP_DEPTH: u32 = 100;

/// A field key: field number and wire type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Key {
    pub field: u32,
    pub wire_type: u8,
}

/// Reads one message, `blob[range]`. Positions are indices into the whole blob.
pub(super) struct Reader<'a> {
    /// The blob, cut at the end of the message.
    buf: &'a [u8],
    /// Next byte to read; never beyond `buf.len()`.
    pos: usize,
}

impl<'a> Reader<'a> {
    /// A reader for `blob[range]`; the part of the range outside the blob reads as empty.
    pub fn new(blob: &'a [u8], range: Range<usize>) -> Self {
        let end = range.end.min(blob.len());
        Self { buf: &blob[..end], pos: range.start.min(end) }
    }

    /// Whether the whole message has been read.
    pub fn is_done(&self) -> bool {
        self.pos >= self.buf.len()
    }

    fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// The current position (an index into the blob).
    pub fn pos(&self) -> usize {
        self.pos
    }

    /// Reads a base-128 varint of at most 10 bytes that fits in a `u64`.
    #[inline]
    pub fn varint(&mut self) -> Result<u64, MalformedKind> {
        // Fast path: the single-byte varints that dominate KPL records (indices, keys, short lengths).
        match self.buf.get(self.pos) {
            Some(&b) if b < 0x80 => {
                self.pos += 1;
                Ok(u64::from(b))
            }
            _ => self.varint_slow(),
        }
    }

    #[cold]
    #[inline(never)]
    fn varint_slow(&mut self) -> Result<u64, MalformedKind> {
        let mut value: u64 = 0;
        for i in 0..10 {
            let Some(&b) = self.buf.get(self.pos) else {
                return Err(MalformedKind::Truncated);
            };
            self.pos += 1;
            if i == 9 && b > 1 {
                return Err(MalformedKind::VarintOverflow);
            }
            value |= u64::from(b & 0x7f) << (7 * i);
            if b < 0x80 {
                return Ok(value);
            }
        }
        Err(MalformedKind::VarintOverflow)
    }

    /// Reads a field key. Field number 0, numbers above 2^29 − 1 and wire types 6 and 7 are invalid.
    #[inline]
    pub fn key(&mut self) -> Result<Key, MalformedKind> {
        let raw = self.varint()?;
        let raw = u32::try_from(raw).map_err(|_| MalformedKind::InvalidKey)?;
        let key = Key { field: raw >> 3, wire_type: (raw & 7) as u8 };
        if key.field == 0 || key.wire_type > FIXED32 {
            return Err(MalformedKind::InvalidKey);
        }
        Ok(key)
    }

    /// Reads a length-delimited field's length and returns the range of its contents, which it steps over.
    #[inline]
    pub fn len_delimited(&mut self) -> Result<Range<usize>, MalformedKind> {
        let len = self.varint()?;
        let remaining = self.remaining();
        let len = usize::try_from(len).ok().filter(|&len| len <= remaining).ok_or(MalformedKind::Truncated)?;
        let start = self.pos;
        self.pos += len;
        Ok(start..self.pos)
    }

    /// Steps over the value of a field whose key has just been read.
    pub fn skip(&mut self, key: Key) -> Result<(), MalformedKind> {
        self.skip_nested(key, 0)
    }

    fn skip_nested(&mut self, key: Key, depth: u32) -> Result<(), MalformedKind> {
        match key.wire_type {
            VARINT => self.varint().map(drop),
            FIXED64 => self.advance(8),
            LEN => self.len_delimited().map(drop),
            FIXED32 => self.advance(4),
            START_GROUP => {
                if depth >= MAX_GROUP_DEPTH {
                    return Err(MalformedKind::NestingTooDeep);
                }
                loop {
                    if self.is_done() {
                        return Err(MalformedKind::Truncated);
                    }
                    let inner = self.key()?;
                    if inner.wire_type == END_GROUP {
                        return if inner.field == key.field { Ok(()) } else { Err(MalformedKind::InvalidKey) };
                    }
                    self.skip_nested(inner, depth + 1)?;
                }
            }
            // An end-group key without a matching start.
            _ => Err(MalformedKind::InvalidKey),
        }
    }

    fn advance(&mut self, n: usize) -> Result<(), MalformedKind> {
        if self.remaining() < n {
            return Err(MalformedKind::Truncated);
        }
        self.pos += n;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_varint(bytes: &[u8]) -> Result<u64, MalformedKind> {
        Reader::new(bytes, 0..bytes.len()).varint()
    }

    #[test]
    fn varints() {
        assert_eq!(read_varint(&[0]), Ok(0));
        assert_eq!(read_varint(&[0x7f]), Ok(127));
        assert_eq!(read_varint(&[0x80, 0x01]), Ok(128));
        assert_eq!(read_varint(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]), Ok(u64::MAX));
        assert_eq!(
            read_varint(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02]),
            Err(MalformedKind::VarintOverflow)
        );
        assert_eq!(read_varint(&[0x80; 11]), Err(MalformedKind::VarintOverflow));
        assert_eq!(read_varint(&[0x80]), Err(MalformedKind::Truncated));
        assert_eq!(read_varint(&[]), Err(MalformedKind::Truncated));
    }

    #[test]
    fn respects_the_message_end() {
        let bytes = [0x0a, 0x02, b'a', b'b', 0x08];
        let mut reader = Reader::new(&bytes, 0..3);
        assert_eq!(reader.key(), Ok(Key { field: 1, wire_type: LEN }));
        assert_eq!(reader.len_delimited(), Err(MalformedKind::Truncated));
        let mut reader = Reader::new(&bytes, 4..5);
        assert_eq!(reader.key(), Ok(Key { field: 1, wire_type: VARINT }));
        assert_eq!(reader.varint(), Err(MalformedKind::Truncated));
        assert!(Reader::new(&bytes, 9..20).is_done());
    }

    #[test]
    fn rejects_bad_keys() {
        for bytes in [&[0x00][..], &[0x0e], &[0x0f], &[0x80, 0x80, 0x80, 0x80, 0x10]] {
            assert_eq!(Reader::new(bytes, 0..bytes.len()).key(), Err(MalformedKind::InvalidKey), "{bytes:?}");
        }
    }

    #[test]
    fn skips_every_wire_type_and_groups() {
        // field 5 fixed64, field 6 fixed32, field 7 group { field 1 varint, field 8 group {} }, field 9 varint
        let bytes = [0x29, 1, 2, 3, 4, 5, 6, 7, 8, 0x35, 1, 2, 3, 4, 0x3b, 0x08, 0x01, 0x43, 0x44, 0x3c, 0x48, 0x05];
        let mut reader = Reader::new(&bytes, 0..bytes.len());
        for _ in 0..3 {
            let key = reader.key().unwrap();
            reader.skip(key).unwrap();
        }
        assert_eq!(reader.key(), Ok(Key { field: 9, wire_type: VARINT }));
        assert_eq!(reader.varint(), Ok(5));
        assert!(reader.is_done());
    }

    #[test]
    fn rejects_bad_groups() {
        let mismatched = [0x3b, 0x44];
        let mut reader = Reader::new(&mismatched, 0..2);
        let key = reader.key().unwrap();
        assert_eq!(reader.skip(key), Err(MalformedKind::InvalidKey));

        let unterminated = [0x3b, 0x08, 0x01];
        let mut reader = Reader::new(&unterminated, 0..3);
        let key = reader.key().unwrap();
        assert_eq!(reader.skip(key), Err(MalformedKind::Truncated));

        let deep = [0x0b; 200];
        let mut reader = Reader::new(&deep, 0..200);
        let key = reader.key().unwrap();
        assert_eq!(reader.skip(key), Err(MalformedKind::NestingTooDeep));

        let lone_end = [0x0c];
        let mut reader = Reader::new(&lone_end, 0..1);
        let key = reader.key().unwrap();
        assert_eq!(reader.skip(key), Err(MalformedKind::InvalidKey));
    }
}
