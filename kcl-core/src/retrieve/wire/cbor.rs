//! `GetRecords` in CBOR (`application/x-amz-cbor-1.1`): the request, the response and the fields of an error body,
//! over a small CBOR reader (RFC 8949) that borrows from the body.
//!
//! Accepted forms, as AWS and the emulators send them: maps and arrays of definite or indefinite length; `Data` as a
//! byte string (AWS: handed out as a slice of the body, zero-copy) or as base64 text (kinesis-mock); text and byte
//! strings in chunks (indefinite length); `ApproximateArrivalTimestamp` as tag 1 with seconds (integer or float) or
//! untagged as milliseconds (what the Java SDK writes and kinesis-mock sends); unknown keys skipped.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::SystemTime;

use super::super::api::GetRecordsOutput;
use super::{Assembler, DataRef, RawRecord, child_shard, lag, time_from_secs};

/// Nesting deeper than this is refused (a hostile body must not exhaust the stack).
const MAX_DEPTH: u32 = 16;

pub(super) fn get_records_request(iterator: &str, limit: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(iterator.len() + 32);
    head(&mut out, 5, 2);
    text(&mut out, "ShardIterator");
    text(&mut out, iterator);
    text(&mut out, "Limit");
    head(&mut out, 0, limit as u64);
    out
}

fn head(out: &mut Vec<u8>, major: u8, value: u64) {
    let major = major << 5;
    match value {
        0..=23 => out.push(major | value as u8),
        24..=0xff => out.extend_from_slice(&[major | 24, value as u8]),
        0x100..=0xffff => {
            out.push(major | 25);
            out.extend_from_slice(&(value as u16).to_be_bytes());
        }
        0x1_0000..=0xffff_ffff => {
            out.push(major | 26);
            out.extend_from_slice(&(value as u32).to_be_bytes());
        }
        _ => {
            out.push(major | 27);
            out.extend_from_slice(&value.to_be_bytes());
        }
    }
}

fn text(out: &mut Vec<u8>, value: &str) {
    head(out, 3, value.len() as u64);
    out.extend_from_slice(value.as_bytes());
}

/// A decoded data item head: major type and argument (`None` = indefinite length).
#[derive(Clone, Copy)]
struct Head {
    major: u8,
    info: u8,
    arg: Option<u64>,
}

/// A string value: borrowed when definite, joined when sent in chunks.
enum Str<'a> {
    /// Offset and bytes within the body.
    Slice(usize, &'a [u8]),
    Joined(Vec<u8>),
}

impl<'a> Str<'a> {
    fn bytes(&self) -> &[u8] {
        match self {
            Self::Slice(_, b) => b,
            Self::Joined(v) => v,
        }
    }

    fn into_text(self) -> Result<Cow<'a, str>, String> {
        match self {
            Self::Slice(_, b) => std::str::from_utf8(b).map(Cow::Borrowed).map_err(|_| "text is not UTF-8".into()),
            Self::Joined(v) => String::from_utf8(v).map(Cow::Owned).map_err(|_| "text is not UTF-8".into()),
        }
    }
}

struct Reader<'a> {
    body: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self.at.checked_add(n).filter(|&end| end <= self.body.len()).ok_or("truncated CBOR body")?;
        let bytes = &self.body[self.at..end];
        self.at = end;
        Ok(bytes)
    }

    fn byte(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }

    fn peek_break(&self) -> bool {
        self.body.get(self.at) == Some(&0xff)
    }

    fn head(&mut self) -> Result<Head, String> {
        let first = self.byte()?;
        let (major, info) = (first >> 5, first & 0x1f);
        let arg = match info {
            0..=23 => Some(u64::from(info)),
            24 => Some(u64::from(self.byte()?)),
            25 => Some(u64::from(u16::from_be_bytes(self.array()?))),
            26 => Some(u64::from(u32::from_be_bytes(self.array()?))),
            27 => Some(u64::from_be_bytes(self.array()?)),
            31 if matches!(major, 2..=5 | 7) => None,
            _ => return Err(format!("invalid CBOR head byte {first:#04x}")),
        };
        Ok(Head { major, info, arg })
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], String> {
        let mut out = [0; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    fn length(&self, arg: u64) -> Result<usize, String> {
        usize::try_from(arg)
            .ok()
            .filter(|&n| n <= self.body.len() - self.at)
            .ok_or_else(|| "truncated CBOR body".into())
    }

    /// A text (major 3) or byte (major 2) string, whichever `head` announced.
    fn string(&mut self, head: Head) -> Result<Str<'a>, String> {
        match head.arg {
            Some(n) => {
                let n = self.length(n)?;
                let at = self.at;
                Ok(Str::Slice(at, self.take(n)?))
            }
            None => {
                let mut joined = Vec::new();
                while !self.peek_break() {
                    let chunk = self.head()?;
                    if chunk.major != head.major || chunk.arg.is_none() {
                        return Err("invalid chunk in an indefinite-length string".into());
                    }
                    let n = self.length(chunk.arg.unwrap_or(0))?;
                    joined.extend_from_slice(self.take(n)?);
                }
                self.at += 1;
                Ok(Str::Joined(joined))
            }
        }
    }

    fn text(&mut self) -> Result<Cow<'a, str>, String> {
        let head = self.head()?;
        if head.major != 3 {
            return Err(format!("expected text, found CBOR major type {}", head.major));
        }
        self.string(head)?.into_text()
    }

    /// A text value, or `None` for null/undefined.
    fn optional_text(&mut self) -> Result<Option<Cow<'a, str>>, String> {
        if matches!(self.body.get(self.at), Some(0xf6 | 0xf7)) {
            self.at += 1;
            return Ok(None);
        }
        self.text().map(Some)
    }

    /// Calls `entry` for each element of an array (none when the value is null).
    fn each(&mut self, mut entry: impl FnMut(&mut Self) -> Result<(), String>) -> Result<(), String> {
        let head = self.head()?;
        if head.major == 7 && matches!(head.info, 22 | 23) {
            return Ok(());
        }
        if head.major != 4 {
            return Err(format!("expected an array, found CBOR major type {}", head.major));
        }
        self.items(head.arg, &mut entry)
    }

    /// `count` items (`None`: until a break), each read by `item`.
    fn items(
        &mut self,
        count: Option<u64>,
        item: &mut impl FnMut(&mut Self) -> Result<(), String>,
    ) -> Result<(), String> {
        let mut left = count;
        loop {
            match left {
                Some(0) => return Ok(()),
                Some(n) => left = Some(n - 1),
                None if self.peek_break() => {
                    self.at += 1;
                    return Ok(());
                }
                None => {}
            }
            // Each item takes at least one byte: a count beyond the body is truncation, not a long loop.
            if self.at >= self.body.len() {
                return Err("truncated CBOR body".into());
            }
            item(self)?;
        }
    }

    /// Calls `field(key, reader)` for each entry of a map; `field` reads (or skips) the value.
    fn map(&mut self, depth: u32, mut field: impl FnMut(&str, &mut Self) -> Result<(), String>) -> Result<(), String> {
        if depth > MAX_DEPTH {
            return Err("CBOR nested too deeply".into());
        }
        let head = self.head()?;
        if head.major != 5 {
            return Err(format!("expected a map, found CBOR major type {}", head.major));
        }
        let mut entry = |reader: &mut Self| -> Result<(), String> {
            let key = reader.text()?;
            field(&key, reader)
        };
        self.items(head.arg, &mut entry)
    }

    /// Skips one data item of any kind.
    fn skip(&mut self, depth: u32) -> Result<(), String> {
        if depth > MAX_DEPTH {
            return Err("CBOR nested too deeply".into());
        }
        let head = self.head()?;
        match (head.major, head.arg) {
            (0 | 1, _) | (7, _) => {
                if head.major == 7 && head.arg.is_none() {
                    return Err("unexpected CBOR break".into());
                }
                Ok(())
            }
            (2 | 3, _) => self.string(head).map(|_| ()),
            (6, _) => self.skip(depth + 1),
            (4 | 5, count) => {
                let count = if head.major == 5 { count.map(|n| n.saturating_mul(2)) } else { count };
                self.items(count, &mut |r: &mut Self| r.skip(depth + 1))
            }
            _ => Err(format!("invalid CBOR major type {}", head.major)),
        }
    }

    /// An integer (negative ones as `i64`), with the float forms accepted for robustness.
    fn number(&mut self) -> Result<f64, String> {
        let head = self.head()?;
        match (head.major, head.info) {
            (0, _) => Ok(head.arg.unwrap_or(0) as f64),
            (1, _) => Ok(-1.0 - head.arg.unwrap_or(0) as f64),
            (7, 25) => Ok(half_to_f64(head.arg.unwrap_or(0) as u16)),
            (7, 26) => Ok(f64::from(f32::from_bits(head.arg.unwrap_or(0) as u32))),
            (7, 27) => Ok(f64::from_bits(head.arg.unwrap_or(0))),
            _ => Err(format!("expected a number, found CBOR major type {}", head.major)),
        }
    }

    /// A timestamp: tag 1 = seconds since the epoch, untagged = milliseconds; null = none.
    fn timestamp(&mut self) -> Result<Option<SystemTime>, String> {
        if matches!(self.body.get(self.at), Some(0xf6 | 0xf7)) {
            self.at += 1;
            return Ok(None);
        }
        if self.body.get(self.at).is_some_and(|b| b >> 5 == 6) {
            let tag = self.head()?;
            let value = self.number()?;
            return Ok(if tag.arg == Some(1) { time_from_secs(value) } else { None });
        }
        let millis = self.number()?;
        Ok(time_from_secs(millis / 1000.0))
    }
}

/// IEEE 754 half precision to `f64` (RFC 8949 appendix D).
fn half_to_f64(half: u16) -> f64 {
    let exponent = (half >> 10) & 0x1f;
    let mantissa = f64::from(half & 0x3ff);
    let value = match exponent {
        0 => mantissa * 2f64.powi(-24),
        31 if mantissa == 0.0 => f64::INFINITY,
        31 => f64::NAN,
        e => (mantissa + 1024.0) * 2f64.powi(i32::from(e) - 25),
    };
    if half & 0x8000 != 0 { -value } else { value }
}

pub(super) fn decode_get_records(body: &bytes::Bytes) -> Result<GetRecordsOutput<Arc<str>>, String> {
    let mut reader = Reader { body, at: 0 };
    let mut assembler = Assembler::default();
    reader.map(0, |key, r| match key {
        "Records" => r.each(|r| record(r, &mut assembler)),
        "NextShardIterator" => {
            assembler.next_iterator = r.optional_text()?;
            Ok(())
        }
        "MillisBehindLatest" => {
            let millis = r.number()?;
            assembler.millis_behind_latest = Some(lag(millis as i64));
            Ok(())
        }
        "ChildShards" => r.each(|r| {
            let child = child(r)?;
            assembler.child_shards.push(child);
            Ok(())
        }),
        _ => r.skip(1),
    })?;
    if reader.at != body.len() {
        return Err(format!("{} bytes after the CBOR response", body.len() - reader.at));
    }
    assembler.finish(body)
}

fn record<'a>(r: &mut Reader<'a>, assembler: &mut Assembler<'a>) -> Result<(), String> {
    let (mut data, mut partition_key, mut sequence_number, mut arrival) = (None, None, None, None);
    r.map(2, |key, r| {
        match key {
            "Data" => {
                let head = r.head()?;
                if head.major != 2 && head.major != 3 {
                    return Err(format!("record Data has CBOR major type {}", head.major));
                }
                data = Some(match (head.major, r.string(head)?) {
                    (2, Str::Slice(at, bytes)) => DataRef::Body(at, at + bytes.len()),
                    (2, Str::Joined(bytes)) => {
                        let start = assembler.decoded.len();
                        assembler.decoded.extend_from_slice(&bytes);
                        DataRef::Decoded(start, assembler.decoded.len())
                    }
                    (_, text) => assembler.decode_base64(text.bytes())?,
                });
            }
            "PartitionKey" => partition_key = Some(r.text()?),
            "SequenceNumber" => sequence_number = Some(r.text()?),
            "ApproximateArrivalTimestamp" => arrival = r.timestamp()?,
            _ => r.skip(3)?,
        }
        Ok(())
    })?;
    assembler.records.push(RawRecord {
        data: data.ok_or("a record has no Data")?,
        partition_key: partition_key.ok_or("a record has no PartitionKey")?,
        sequence_number: sequence_number.ok_or("a record has no SequenceNumber")?,
        arrival,
    });
    Ok(())
}

fn child(r: &mut Reader<'_>) -> Result<super::ChildShard, String> {
    let (mut shard_id, mut parents, mut range) = (None, Vec::new(), None);
    r.map(2, |key, r| {
        match key {
            "ShardId" => shard_id = r.optional_text()?.map(|s| Cow::Owned(s.into_owned())),
            "ParentShards" => r.each(|r| {
                parents.push(r.text()?.into_owned());
                Ok(())
            })?,
            "HashKeyRange" => {
                let (mut start, mut end) = (None, None);
                r.map(3, |key, r| {
                    match key {
                        "StartingHashKey" => start = Some(r.text()?.into_owned()),
                        "EndingHashKey" => end = Some(r.text()?.into_owned()),
                        _ => r.skip(4)?,
                    }
                    Ok(())
                })?;
                range = start.zip(end).map(|(s, e)| (Cow::Owned(s), Cow::Owned(e)));
            }
            _ => r.skip(3)?,
        }
        Ok(())
    })?;
    child_shard(shard_id, parents, range)
}

/// `__type` and `message` of an error body, when it is a CBOR map.
pub(super) fn error_fields(body: &[u8]) -> (Option<String>, Option<String>) {
    let mut reader = Reader { body, at: 0 };
    let (mut code, mut message) = (None, None);
    let _ = reader.map(0, |key, r| {
        match key {
            "__type" | "code" => code = r.optional_text()?.map(Cow::into_owned),
            "message" | "Message" => message = r.optional_text()?.map(Cow::into_owned),
            _ => r.skip(1)?,
        }
        Ok(())
    });
    (code, message)
}
