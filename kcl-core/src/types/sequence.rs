//! Kinesis sequence numbers and KCL-style extended sequence numbers (checkpoint values).
//!
//! Kinesis documents sequence numbers as decimal strings matching `0|([1-9]\d{0,128})`: real ones are 56 digits
//! (about 186 bits), so they do not fit in a `u128`. They are kept as normalised decimal text and ordered numerically
//! (shorter is smaller; equal lengths compare digit by digit), never as plain strings.

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::SystemTime;

/// Longest sequence number Kinesis allows (`[1-9]\d{0,128}`).
pub const MAX_SEQUENCE_DIGITS: usize = 129;

/// A Kinesis sequence number: an unsigned decimal integer of up to 129 digits, ordered numerically.
///
/// Cloning is cheap (reference counted), so every user record of a KPL aggregate shares one allocation.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct SequenceNumber(Arc<str>);

/// Why a string is not a valid sequence number or checkpoint value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseSequenceNumberError {
    /// The string was empty.
    #[error("sequence number is empty")]
    Empty,
    /// The string contained something other than ASCII digits.
    #[error("sequence number contains a non-digit character")]
    NotDecimal,
    /// The string was longer than [`MAX_SEQUENCE_DIGITS`] significant digits.
    #[error("sequence number has more than {MAX_SEQUENCE_DIGITS} digits")]
    TooLong,
}

impl SequenceNumber {
    /// Parses a decimal sequence number. Leading zeros are removed so that equal numbers compare equal.
    pub fn parse(text: &str) -> Result<Self, ParseSequenceNumberError> {
        if text.is_empty() {
            return Err(ParseSequenceNumberError::Empty);
        }
        if !text.bytes().all(|b| b.is_ascii_digit()) {
            return Err(ParseSequenceNumberError::NotDecimal);
        }
        let trimmed = text.trim_start_matches('0');
        let normalised = if trimmed.is_empty() { "0" } else { trimmed };
        if normalised.len() > MAX_SEQUENCE_DIGITS {
            return Err(ParseSequenceNumberError::TooLong);
        }
        Ok(Self(Arc::from(normalised)))
    }

    /// A sequence number from an integer; convenient for tests and in-memory streams.
    pub fn from_u128(value: u128) -> Self {
        Self(Arc::from(value.to_string()))
    }

    /// The normalised decimal text (no leading zeros).
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The value as a `u128`, when it fits (in-memory streams use small numbers; real Kinesis ones do not fit).
    pub fn to_u128(&self) -> Option<u128> {
        self.0.parse().ok()
    }
}

impl Ord for SequenceNumber {
    fn cmp(&self, other: &Self) -> Ordering {
        // Both are normalised, so the longer one is the larger number.
        self.0.len().cmp(&other.0.len()).then_with(|| self.0.as_bytes().cmp(other.0.as_bytes()))
    }
}

impl PartialOrd for SequenceNumber {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl FromStr for SequenceNumber {
    type Err = ParseSequenceNumberError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl fmt::Display for SequenceNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for SequenceNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SequenceNumber({})", self.0)
    }
}

/// A position in a shard as KCL records it in a lease: a sentinel, or a sequence number plus the index of a user
/// record inside a KPL aggregate (the sub-sequence number; 0 for ordinary records).
///
/// The total order matches Java KCL's `ExtendedSequenceNumber.compareTo`:
/// `AtTimestamp < TrimHorizon < Latest < every Sequence < ShardEnd`; sequences compare by number, then sub-sequence.
/// All `AtTimestamp` values compare equal to each other, as in KCL, which does not store the timestamp in the lease.
#[derive(Clone, Debug)]
pub enum ExtendedSequenceNumber {
    /// Start at the given time (`AT_TIMESTAMP`). `None` means "the configured initial-position timestamp", which is
    /// what a Java KCL lease table holds: it stores only the sentinel.
    AtTimestamp(Option<SystemTime>),
    /// Start at the oldest record still in the shard (`TRIM_HORIZON`).
    TrimHorizon,
    /// Start after the newest record at the time of the first read (`LATEST`).
    Latest,
    /// Everything up to and including this user record has been processed.
    Sequence {
        /// The Kinesis sequence number.
        sequence: SequenceNumber,
        /// Index of the user record inside a KPL aggregate; 0 for an ordinary record.
        sub_sequence: u64,
    },
    /// The shard is closed and every record in it has been processed (`SHARD_END`).
    ShardEnd,
}

/// Text KCL writes for the sentinels.
pub mod sentinel {
    /// `TRIM_HORIZON`
    pub const TRIM_HORIZON: &str = "TRIM_HORIZON";
    /// `LATEST`
    pub const LATEST: &str = "LATEST";
    /// `AT_TIMESTAMP`
    pub const AT_TIMESTAMP: &str = "AT_TIMESTAMP";
    /// `SHARD_END`
    pub const SHARD_END: &str = "SHARD_END";
}

impl ExtendedSequenceNumber {
    /// An ordinary record's position (sub-sequence 0).
    pub fn sequence(sequence: SequenceNumber) -> Self {
        Self::Sequence { sequence, sub_sequence: 0 }
    }

    /// A user record's position inside an aggregate.
    pub fn with_sub(sequence: SequenceNumber, sub_sequence: u64) -> Self {
        Self::Sequence { sequence, sub_sequence }
    }

    /// Parses a KCL checkpoint string (a sentinel or a decimal sequence number) with its sub-sequence number.
    pub fn parse(checkpoint: &str, sub_sequence: u64) -> Result<Self, ParseSequenceNumberError> {
        Ok(match checkpoint {
            sentinel::TRIM_HORIZON => Self::TrimHorizon,
            sentinel::LATEST => Self::Latest,
            sentinel::AT_TIMESTAMP => Self::AtTimestamp(None),
            sentinel::SHARD_END => Self::ShardEnd,
            other => Self::Sequence { sequence: SequenceNumber::parse(other)?, sub_sequence },
        })
    }

    /// The checkpoint string KCL stores (`checkpoint` attribute): a sentinel name or the sequence number.
    pub fn checkpoint_str(&self) -> &str {
        match self {
            Self::AtTimestamp(_) => sentinel::AT_TIMESTAMP,
            Self::TrimHorizon => sentinel::TRIM_HORIZON,
            Self::Latest => sentinel::LATEST,
            Self::Sequence { sequence, .. } => sequence.as_str(),
            Self::ShardEnd => sentinel::SHARD_END,
        }
    }

    /// The sub-sequence number KCL stores (`checkpointSubSequenceNumber`): 0 for sentinels.
    pub fn sub_sequence(&self) -> u64 {
        match self {
            Self::Sequence { sub_sequence, .. } => *sub_sequence,
            _ => 0,
        }
    }

    /// The sequence number, when this is not a sentinel.
    pub fn sequence_number(&self) -> Option<&SequenceNumber> {
        match self {
            Self::Sequence { sequence, .. } => Some(sequence),
            _ => None,
        }
    }

    /// Whether this is `SHARD_END`.
    pub fn is_shard_end(&self) -> bool {
        matches!(self, Self::ShardEnd)
    }

    /// Whether this is one of the sentinels (not a real position).
    pub fn is_sentinel(&self) -> bool {
        !matches!(self, Self::Sequence { .. })
    }

    fn rank(&self) -> u8 {
        match self {
            Self::AtTimestamp(_) => 0,
            Self::TrimHorizon => 1,
            Self::Latest => 2,
            Self::Sequence { .. } => 3,
            Self::ShardEnd => 4,
        }
    }
}

impl PartialEq for ExtendedSequenceNumber {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for ExtendedSequenceNumber {}

impl std::hash::Hash for ExtendedSequenceNumber {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        // Consistent with Eq: AT_TIMESTAMP values are all equal.
        self.rank().hash(state);
        if let Self::Sequence { sequence, sub_sequence } = self {
            sequence.hash(state);
            sub_sequence.hash(state);
        }
    }
}

impl Ord for ExtendedSequenceNumber {
    fn cmp(&self, other: &Self) -> Ordering {
        match (self, other) {
            (Self::Sequence { sequence: a, sub_sequence: sa }, Self::Sequence { sequence: b, sub_sequence: sb }) => {
                a.cmp(b).then(sa.cmp(sb))
            }
            _ => self.rank().cmp(&other.rank()),
        }
    }
}

impl PartialOrd for ExtendedSequenceNumber {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for ExtendedSequenceNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Sequence { sequence, sub_sequence } => write!(f, "{sequence}/{sub_sequence}"),
            other => f.write_str(other.checkpoint_str()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn seq(s: &str) -> SequenceNumber {
        SequenceNumber::parse(s).unwrap()
    }

    #[test]
    fn orders_numerically_not_lexically() {
        assert!(seq("9") < seq("10"));
        assert!(seq("49590338271490256608559692538361571095921575989136588898") > seq("999999999999999999999"));
        assert_eq!(seq("007"), seq("7"));
        assert_eq!(seq("000").as_str(), "0");
    }

    #[test]
    fn rejects_bad_text() {
        assert_eq!(SequenceNumber::parse(""), Err(ParseSequenceNumberError::Empty));
        assert_eq!(SequenceNumber::parse("12a"), Err(ParseSequenceNumberError::NotDecimal));
        assert_eq!(SequenceNumber::parse("-1"), Err(ParseSequenceNumberError::NotDecimal));
        assert_eq!(SequenceNumber::parse(&"1".repeat(130)), Err(ParseSequenceNumberError::TooLong));
        assert!(SequenceNumber::parse(&"1".repeat(129)).is_ok());
        assert!(SequenceNumber::parse(&format!("000{}", "1".repeat(129))).is_ok());
    }

    #[test]
    fn sentinel_order_matches_kcl() {
        let order = [
            ExtendedSequenceNumber::AtTimestamp(None),
            ExtendedSequenceNumber::TrimHorizon,
            ExtendedSequenceNumber::Latest,
            ExtendedSequenceNumber::with_sub(seq("1"), 0),
            ExtendedSequenceNumber::with_sub(seq("1"), 5),
            ExtendedSequenceNumber::with_sub(seq("10"), 0),
            ExtendedSequenceNumber::ShardEnd,
        ];
        for w in order.windows(2) {
            assert!(w[0] < w[1], "{} < {}", w[0], w[1]);
        }
        assert_eq!(
            ExtendedSequenceNumber::AtTimestamp(Some(SystemTime::UNIX_EPOCH)),
            ExtendedSequenceNumber::AtTimestamp(None)
        );
    }

    #[test]
    fn checkpoint_strings_round_trip() {
        for text in ["TRIM_HORIZON", "LATEST", "AT_TIMESTAMP", "SHARD_END", "4959033827149025660855969253836"] {
            let parsed = ExtendedSequenceNumber::parse(text, 3).unwrap();
            assert_eq!(parsed.checkpoint_str(), text);
        }
        assert_eq!(ExtendedSequenceNumber::parse("123", 3).unwrap().sub_sequence(), 3);
        assert!(ExtendedSequenceNumber::parse("LATESTX", 0).is_err());
    }

    proptest! {
        #[test]
        fn order_agrees_with_integers(a in any::<u128>(), b in any::<u128>()) {
            prop_assert_eq!(SequenceNumber::from_u128(a).cmp(&SequenceNumber::from_u128(b)), a.cmp(&b));
        }

        #[test]
        fn parse_round_trips(digits in "[1-9][0-9]{0,128}") {
            let parsed = SequenceNumber::parse(&digits).unwrap();
            prop_assert_eq!(parsed.as_str(), digits.as_str());
        }
    }
}
