//! How one setting's value is read from a file or an environment variable: numbers, flags and choices accept both
//! their TOML form (`10000`, `true`) and text (`"10000"`, as every environment variable is), and an error says the
//! form expected.

use std::fmt;
use std::marker::PhantomData;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::de::{self, Deserializer, Unexpected, Visitor};

use crate::lease::coordinator::RenewalMode;
use crate::process::{Checkpointing, OnExhausted, PartialRetry};
use crate::retrieve::{GetRecordsPath, WireFormat};

/// A setting's value type: how it reads from a whole number, a flag or text, and the form it expects.
pub(super) trait Scalar: Sized {
    /// Completes "expected …" in an error message.
    const EXPECTING: &'static str;
    fn from_integer(_: i64) -> Option<Self> {
        None
    }
    fn from_flag(_: bool) -> Option<Self> {
        None
    }
    fn from_text(text: &str) -> Option<Self>;
}

/// Milliseconds as a whole number.
pub(super) struct Millis(pub(super) Duration);
/// Seconds as a whole number.
pub(super) struct Secs(pub(super) Duration);
/// A count of at least 1.
pub(super) struct Count(pub(super) usize);
/// A count that may be 0.
pub(super) struct Amount(pub(super) usize);
/// `true` or `false`.
pub(super) struct Flag(pub(super) bool);
/// Any non-empty text.
pub(super) struct Text(pub(super) String);

/// `initial_position`, before `initial_position_timestamp_secs` gives `AT_TIMESTAMP` its time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Position {
    TrimHorizon,
    Latest,
    AtTimestamp,
}

/// `retrieval_mode`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Mode {
    Polling,
    FanOut,
}

impl Scalar for Millis {
    const EXPECTING: &'static str = "a whole number of milliseconds, e.g. 10000";
    fn from_integer(n: i64) -> Option<Self> {
        u64::try_from(n).ok().map(|n| Self(Duration::from_millis(n)))
    }
    fn from_text(text: &str) -> Option<Self> {
        text.trim().parse().ok().map(|n| Self(Duration::from_millis(n)))
    }
}

impl Scalar for Secs {
    const EXPECTING: &'static str = "a whole number of seconds, e.g. 3600";
    fn from_integer(n: i64) -> Option<Self> {
        u64::try_from(n).ok().map(|n| Self(Duration::from_secs(n)))
    }
    fn from_text(text: &str) -> Option<Self> {
        text.trim().parse().ok().map(|n| Self(Duration::from_secs(n)))
    }
}

impl Scalar for Count {
    const EXPECTING: &'static str = "a whole number of at least 1";
    fn from_integer(n: i64) -> Option<Self> {
        usize::try_from(n).ok().filter(|n| *n > 0).map(Self)
    }
    fn from_text(text: &str) -> Option<Self> {
        text.trim().parse().ok().filter(|n| *n > 0).map(Self)
    }
}

impl Scalar for Amount {
    const EXPECTING: &'static str = "a whole number, 0 or more";
    fn from_integer(n: i64) -> Option<Self> {
        usize::try_from(n).ok().map(Self)
    }
    fn from_text(text: &str) -> Option<Self> {
        text.trim().parse().ok().map(Self)
    }
}

impl Scalar for Flag {
    const EXPECTING: &'static str = "true or false";
    fn from_flag(flag: bool) -> Option<Self> {
        Some(Self(flag))
    }
    fn from_text(text: &str) -> Option<Self> {
        match text.trim().to_ascii_lowercase().as_str() {
            "true" => Some(Self(true)),
            "false" => Some(Self(false)),
            _ => None,
        }
    }
}

impl Scalar for Text {
    const EXPECTING: &'static str = "non-empty text";
    fn from_text(text: &str) -> Option<Self> {
        let text = text.trim();
        (!text.is_empty()).then(|| Self(text.to_owned()))
    }
}

/// Choices match ignoring case, with `-` or `_` between words (or nothing: Java's `FANOUT`).
fn choice<T: Copy>(text: &str, choices: &[(&str, T)]) -> Option<T> {
    let wanted: String = text.trim().chars().filter(|c| *c != '_' && *c != '-').collect();
    choices.iter().find(|(name, _)| name.replace('_', "").eq_ignore_ascii_case(&wanted)).map(|(_, value)| *value)
}

impl Scalar for Position {
    const EXPECTING: &'static str = "one of LATEST, TRIM_HORIZON, AT_TIMESTAMP";
    fn from_text(text: &str) -> Option<Self> {
        choice(
            text,
            &[("LATEST", Self::Latest), ("TRIM_HORIZON", Self::TrimHorizon), ("AT_TIMESTAMP", Self::AtTimestamp)],
        )
    }
}

impl Scalar for Mode {
    const EXPECTING: &'static str = "one of polling, fan_out";
    fn from_text(text: &str) -> Option<Self> {
        choice(text, &[("polling", Self::Polling), ("fan_out", Self::FanOut)])
    }
}

impl Scalar for RenewalMode {
    const EXPECTING: &'static str = "one of per_lease, worker_heartbeat";
    fn from_text(text: &str) -> Option<Self> {
        choice(text, &[("per_lease", Self::PerLease), ("worker_heartbeat", Self::WorkerHeartbeat)])
    }
}

impl Scalar for GetRecordsPath {
    const EXPECTING: &'static str = "one of lean, lean_cbor, sdk";
    fn from_text(text: &str) -> Option<Self> {
        choice(
            text,
            &[
                ("lean", Self::Lean(WireFormat::Json)),
                ("lean_json", Self::Lean(WireFormat::Json)),
                ("lean_cbor", Self::Lean(WireFormat::Cbor)),
                ("sdk", Self::Sdk),
            ],
        )
    }
}

impl Scalar for Checkpointing {
    const EXPECTING: &'static str = "one of manual, after_each_batch";
    fn from_text(text: &str) -> Option<Self> {
        choice(text, &[("manual", Self::Manual), ("after_each_batch", Self::AfterEachBatch)])
    }
}

impl Scalar for PartialRetry {
    const EXPECTING: &'static str = "one of from_lowest_failure, failed_only";
    fn from_text(text: &str) -> Option<Self> {
        choice(text, &[("from_lowest_failure", Self::FromLowestFailure), ("failed_only", Self::FailedOnly)])
    }
}

impl Scalar for OnExhausted {
    const EXPECTING: &'static str = "one of block, send_to_destination";
    fn from_text(text: &str) -> Option<Self> {
        choice(text, &[("block", Self::Block), ("send_to_destination", Self::SendToDestination)])
    }
}

/// Seconds since the epoch, as Java's `initialPositionInStreamExtended`.
#[derive(Clone, Copy)]
pub(super) struct EpochSecs(pub(super) SystemTime);

impl Scalar for EpochSecs {
    const EXPECTING: &'static str = "seconds since the epoch, e.g. 1700000000";
    fn from_integer(n: i64) -> Option<Self> {
        u64::try_from(n).ok().map(|n| Self(UNIX_EPOCH + Duration::from_secs(n)))
    }
    fn from_text(text: &str) -> Option<Self> {
        text.trim().parse().ok().map(|n: u64| Self(UNIX_EPOCH + Duration::from_secs(n)))
    }
}

struct ScalarVisitor<T>(PhantomData<T>);

impl<T: Scalar> Visitor<'_> for ScalarVisitor<T> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(T::EXPECTING)
    }

    fn visit_i64<E: de::Error>(self, n: i64) -> Result<T, E> {
        T::from_integer(n).ok_or_else(|| E::invalid_value(Unexpected::Signed(n), &self))
    }

    fn visit_u64<E: de::Error>(self, n: u64) -> Result<T, E> {
        i64::try_from(n).ok().and_then(T::from_integer).ok_or_else(|| E::invalid_value(Unexpected::Unsigned(n), &self))
    }

    fn visit_bool<E: de::Error>(self, flag: bool) -> Result<T, E> {
        T::from_flag(flag).ok_or_else(|| E::invalid_value(Unexpected::Bool(flag), &self))
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<T, E> {
        T::from_text(text).ok_or_else(|| E::invalid_value(Unexpected::Str(text), &self))
    }
}

/// Reads an optional setting of type `T` (used with `#[serde(default, deserialize_with = "scalar")]`).
pub(super) fn scalar<'de, T: Scalar, D: Deserializer<'de>>(deserializer: D) -> Result<Option<T>, D::Error> {
    deserializer.deserialize_any(ScalarVisitor(PhantomData)).map(Some)
}
