//! `reset-checkpoint --to`: the target positions, and how each becomes a checkpoint the lease table can hold.
//!
//! A checkpoint means "every record up to and including this one is processed". Java KCL's lease table stores
//! `AT_TIMESTAMP` as a bare sentinel, without the time (`ExtendedSequenceNumber::AtTimestamp(None)` after a read,
//! meaning "the application's configured initial timestamp"), so `AT_TIMESTAMP:<time>` cannot be stored as such.
//! It is resolved against the shard instead: the checkpoint becomes the **last record that arrived before the
//! time**, so that the worker resumes with the first record at or after it (what an `AT_TIMESTAMP` iterator would
//! return), or `TRIM_HORIZON` when no retained record arrived before it. Finding that record reads the shard
//! forward from a little before the time (1 minute, then 1 hour, then 1 day earlier, then the trim horizon) up to
//! the first record at or after it; at most 1,000,000 records are read. If that record is a KPL aggregate, its user
//! records after the first are delivered again: at-least-once errs on the side of redelivery.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_sdk_kinesis::primitives::{DateTime, DateTimeFormat};
use kcl_core::retrieve::IteratorPosition;
use kcl_core::types::{ExtendedSequenceNumber, SequenceNumber};

use crate::error::AdminError;
use crate::kinesis::{MAX_EMPTY_PAGES, StreamReader};

/// Records read at most while resolving `AT_TIMESTAMP`.
const MAX_SCANNED_RECORDS: usize = 1_000_000;
/// How far before the time the search starts, widening until a record is found; then the trim horizon.
const WINDOWS: [Duration; 3] = [Duration::from_secs(60), Duration::from_secs(3600), Duration::from_secs(86_400)];

/// Where `--to` moves a checkpoint.
#[derive(Clone, Debug)]
pub enum Target {
    /// The oldest retained record: everything in the shard is processed again.
    TrimHorizon,
    /// After the newest record at the time a worker first reads the shard: everything before is skipped.
    Latest,
    /// The first record that arrived at or after this time (rounded down to the millisecond).
    AtTimestamp(SystemTime),
    /// Everything up to and including this (user) record counts as processed.
    Sequence {
        /// The sequence number.
        sequence: SequenceNumber,
        /// The KPL sub-sequence number (0 for a whole record).
        sub_sequence: u64,
    },
}

const EXPECTED: &str = "expected TRIM_HORIZON, LATEST, AT_TIMESTAMP:<RFC 3339 time, e.g. 2024-05-01T12:00:00Z>, \
                        or a sequence number (digits, optionally <sequence>/<sub-sequence>)";

impl Target {
    /// Parses the `--to` argument (clap reports the error with exit code 2).
    pub fn parse_arg(text: &str) -> Result<Self, String> {
        let text = text.trim();
        // Sentinels are matched without regard to case; Java KCL writes them in capitals.
        let upper = text.to_ascii_uppercase();
        match upper.as_str() {
            "TRIM_HORIZON" => return Ok(Self::TrimHorizon),
            "LATEST" => return Ok(Self::Latest),
            "AT_TIMESTAMP" => {
                return Err(format!(
                    "AT_TIMESTAMP needs a time (AT_TIMESTAMP:2024-05-01T12:00:00Z): the lease table cannot hold one, \
                     so kcl-admin resolves it to a sequence number; {EXPECTED}"
                ));
            }
            "SHARD_END" => {
                return Err(format!(
                    "SHARD_END is written by the worker that finished the shard, not by kcl-admin; {EXPECTED}"
                ));
            }
            _ => {}
        }
        if upper.starts_with("AT_TIMESTAMP:") {
            let time = &text["AT_TIMESTAMP:".len()..];
            let parsed = DateTime::from_str(time, DateTimeFormat::DateTimeWithOffset)
                .map_err(|e| format!("`{time}` is not an RFC 3339 time ({e}); {EXPECTED}"))?;
            let at = SystemTime::try_from(parsed).map_err(|_| format!("`{time}` is before 1970; {EXPECTED}"))?;
            return Ok(Self::AtTimestamp(truncate_to_millis(at)));
        }
        let (sequence, sub) = match text.split_once('/') {
            Some((sequence, sub)) => (sequence, Some(sub)),
            None => (text, None),
        };
        let sequence = SequenceNumber::parse(sequence).map_err(|e| format!("`{text}`: {e}; {EXPECTED}"))?;
        let sub_sequence = match sub {
            Some(sub) => sub.parse().map_err(|_| format!("`{sub}` is not a sub-sequence number; {EXPECTED}"))?,
            None => 0,
        };
        Ok(Self::Sequence { sequence, sub_sequence })
    }

    /// Whether resolving the target needs the stream.
    pub fn needs_stream(&self) -> bool {
        matches!(self, Self::AtTimestamp(_))
    }

    /// The target as the user wrote it (normalised).
    pub fn describe(&self) -> String {
        match self {
            Self::TrimHorizon => "TRIM_HORIZON".to_owned(),
            Self::Latest => "LATEST".to_owned(),
            Self::AtTimestamp(at) => format!("AT_TIMESTAMP:{}", rfc3339(*at)),
            Self::Sequence { sequence, sub_sequence } => format!("{sequence}/{sub_sequence}"),
        }
    }

    /// The checkpoint to write for this target in `shard_id`. `reader` is the shard's stream when known; it is
    /// required for `AT_TIMESTAMP` and, when present, checks that a sequence number belongs to the shard.
    pub async fn resolve(
        &self,
        reader: Option<&StreamReader<'_>>,
        shard_id: &str,
    ) -> Result<ExtendedSequenceNumber, AdminError> {
        match self {
            Self::TrimHorizon => Ok(ExtendedSequenceNumber::TrimHorizon),
            Self::Latest => Ok(ExtendedSequenceNumber::Latest),
            Self::Sequence { sequence, sub_sequence } => {
                if let Some(reader) = reader {
                    reader.check_sequence(shard_id, sequence).await?;
                }
                Ok(ExtendedSequenceNumber::with_sub(sequence.clone(), *sub_sequence))
            }
            Self::AtTimestamp(at) => {
                let reader = reader.ok_or_else(|| {
                    AdminError::Usage("AT_TIMESTAMP needs the lease's stream: pass --stream <name>".to_owned())
                })?;
                resolve_timestamp(reader, shard_id, *at).await
            }
        }
    }
}

/// The checkpoint just before the first record at or after `at` (see the module documentation).
async fn resolve_timestamp(
    reader: &StreamReader<'_>,
    shard_id: &str,
    at: SystemTime,
) -> Result<ExtendedSequenceNumber, AdminError> {
    if at > SystemTime::now() {
        return Err(AdminError::Usage(format!(
            "AT_TIMESTAMP:{} is in the future; to skip everything up to now use --to LATEST",
            rfc3339(at)
        )));
    }
    // Kinesis' own answer to "the first record at or after `at`" bounds the scan exactly.
    let first_at = reader.probe(shard_id, &IteratorPosition::AtTimestamp(at)).await?.next.map(|(seq, _)| seq);
    let mut scanned = 0;
    let starts = WINDOWS
        .iter()
        .filter_map(|window| at.checked_sub(*window).map(IteratorPosition::AtTimestamp))
        .chain([IteratorPosition::TrimHorizon]);
    for start in starts {
        if let Some(last) = last_before(reader, shard_id, &start, at, first_at.as_ref(), &mut scanned).await? {
            return Ok(ExtendedSequenceNumber::sequence(last));
        }
    }
    // No retained record arrived before `at`: everything retained is at or after it.
    Ok(ExtendedSequenceNumber::TrimHorizon)
}

/// Reads forward from `start` and returns the last record before `first_at` (or, when Kinesis found none at or
/// after `at`, before the first record that arrived at or after `at` while reading).
async fn last_before(
    reader: &StreamReader<'_>,
    shard_id: &str,
    start: &IteratorPosition,
    at: SystemTime,
    first_at: Option<&SequenceNumber>,
    scanned: &mut usize,
) -> Result<Option<SequenceNumber>, AdminError> {
    let Some(mut iterator) = reader.iterator(shard_id, start).await? else {
        return Ok(None);
    };
    let mut last = None;
    let mut empty_pages = 0;
    loop {
        let page = reader.page(&iterator, 10_000).await?;
        for record in &page.records {
            let reached = first_at.is_some_and(|first| record.sequence_number >= *first)
                || record.approximate_arrival_timestamp.is_some_and(|arrived| arrived >= at);
            if reached {
                return Ok(last);
            }
            last = Some(record.sequence_number.clone());
        }
        *scanned += page.records.len();
        if *scanned > MAX_SCANNED_RECORDS {
            return Err(AdminError::Usage(format!(
                "more than {MAX_SCANNED_RECORDS} records to read in shard {shard_id} to find the last one before \
                 AT_TIMESTAMP:{}; give the checkpoint as a sequence number instead",
                rfc3339(at)
            )));
        }
        empty_pages = if page.records.is_empty() { empty_pages + 1 } else { 0 };
        match page.next_iterator {
            None => return Ok(last),
            Some(_) if page.records.is_empty() && page.millis_behind_latest.unwrap_or(0) == 0 => return Ok(last),
            Some(_) if empty_pages >= MAX_EMPTY_PAGES => return Ok(last),
            Some(next) => iterator = next,
        }
    }
}

/// `at` without its sub-millisecond part: Kinesis compares arrival times in milliseconds.
fn truncate_to_millis(at: SystemTime) -> SystemTime {
    match at.duration_since(UNIX_EPOCH) {
        Ok(since) => UNIX_EPOCH + Duration::from_millis(u64::try_from(since.as_millis()).unwrap_or(u64::MAX)),
        Err(_) => at,
    }
}

/// RFC 3339 text of a time (UTC).
pub fn rfc3339(at: SystemTime) -> String {
    DateTime::from(at).fmt(DateTimeFormat::DateTime).unwrap_or_else(|_| format!("{at:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_target_form() {
        assert!(matches!(Target::parse_arg("TRIM_HORIZON"), Ok(Target::TrimHorizon)));
        assert!(matches!(Target::parse_arg(" latest "), Ok(Target::Latest)));
        let Ok(Target::Sequence { sequence, sub_sequence }) = Target::parse_arg("00123/7") else { panic!() };
        assert_eq!((sequence.as_str(), sub_sequence), ("123", 7));
        let Ok(Target::AtTimestamp(at)) = Target::parse_arg("at_timestamp:2024-05-01T14:00:00.123456+02:00") else {
            panic!()
        };
        assert_eq!(rfc3339(at), "2024-05-01T12:00:00.123Z", "offset applied, rounded down to the millisecond");
    }

    #[test]
    fn rejects_what_a_lease_cannot_hold_with_the_reason() {
        for (text, reason) in [
            ("AT_TIMESTAMP", "needs a time"),
            ("SHARD_END", "written by the worker"),
            ("AT_TIMESTAMP:yesterday", "not an RFC 3339 time"),
            ("12a", "non-digit"),
            ("123/x", "not a sub-sequence number"),
            ("", "empty"),
        ] {
            let error = Target::parse_arg(text).unwrap_err();
            assert!(error.contains(reason) && error.contains("expected TRIM_HORIZON"), "{text}: {error}");
        }
    }
}
