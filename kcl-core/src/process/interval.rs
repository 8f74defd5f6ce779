//! [`CheckpointInterval`]: how often a checkpoint is written — after every batch, or every N records and/or T — and
//! the one pure decision ([`CheckpointInterval::is_due`]) the framework and processors share.
//!
//! Each checkpoint is one conditional write to the lease table per shard; at high throughput with small batches
//! that is most of a consumer's DynamoDB bill. Checkpointing less often only widens what a crash redelivers (records
//! since the last write), never what is skipped: a checkpoint still names only processed records, and the final
//! checkpoints at shard end, graceful shutdown and hand-over are always written.

use std::time::Duration;

/// How often checkpoints are written: after every batch (the default), or once `records` records were processed
/// since the last write, or once `period` has passed since it — whichever comes first when both are set.
///
/// Java KCL leaves this to the application (its samples checkpoint when a minute has passed in `processRecords`);
/// Lambda checkpoints after every batch. Used by the framework's own checkpointing
/// ([`ProcessingConfig::checkpoint_interval`](super::ProcessingConfig::checkpoint_interval)) and by processors that
/// checkpoint themselves ([`Checkpointer::checkpoint_when_due`](super::Checkpointer::checkpoint_when_due)).
///
/// ```
/// use std::time::Duration;
///
/// use kcl_core::process::CheckpointInterval;
///
/// // At most one lease-table write per 10,000 records or 30 s per shard.
/// let interval = CheckpointInterval::every_batch().records(10_000).period(Duration::from_secs(30));
/// assert!(!interval.is_due(9_999, Duration::from_secs(29)));
/// assert!(interval.is_due(10_000, Duration::ZERO));
/// assert!(interval.is_due(1, Duration::from_secs(30)));
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CheckpointInterval {
    records: Option<u64>,
    period: Option<Duration>,
}

impl CheckpointInterval {
    /// A checkpoint after every batch (the default).
    pub fn every_batch() -> Self {
        Self::default()
    }

    /// Write once this many records were processed since the last write (at least 1).
    pub fn records(mut self, records: u64) -> Self {
        self.records = Some(records);
        self
    }

    /// Write once this long has passed since the last write (and something was processed since; more than 0).
    pub fn period(mut self, period: Duration) -> Self {
        self.period = Some(period);
        self
    }

    /// The record count set with [`records`](Self::records).
    pub fn record_limit(&self) -> Option<u64> {
        self.records
    }

    /// The time set with [`period`](Self::period).
    pub fn period_limit(&self) -> Option<Duration> {
        self.period
    }

    /// Whether this is the default: a checkpoint after every batch.
    pub fn is_every_batch(&self) -> bool {
        self.records.is_none() && self.period.is_none()
    }

    /// Whether a checkpoint is due, with `processed` records completed since the last write, `elapsed` ago. Nothing
    /// processed: never (there is nothing to write).
    pub fn is_due(&self, processed: u64, elapsed: Duration) -> bool {
        if processed == 0 {
            return false;
        }
        if self.is_every_batch() {
            return true;
        }
        self.records.is_some_and(|limit| processed >= limit) || self.period.is_some_and(|limit| elapsed >= limit)
    }

    pub(crate) fn validate(&self) -> Result<(), String> {
        if self.records == Some(0) {
            return Err("CheckpointInterval::records (checkpoint_every_records) must be at least 1".to_owned());
        }
        if self.period == Some(Duration::ZERO) {
            return Err("CheckpointInterval::period (checkpoint_every_ms) must be more than 0".to_owned());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn when_a_checkpoint_is_due() {
        let s = Duration::from_secs;
        let every = CheckpointInterval::every_batch();
        let hundred = CheckpointInterval::every_batch().records(100);
        let minute = CheckpointInterval::every_batch().period(s(60));
        let both = hundred.period(s(60));
        let cases = [
            // (interval, processed since the last write, time since it, due)
            (every, 0, s(0), false),
            (every, 1, s(0), true),
            (hundred, 99, s(3600), false),
            (hundred, 100, s(0), true),
            (minute, 1_000_000, s(59), false),
            (minute, 1, s(60), true),
            (minute, 0, s(600), false),
            (both, 99, s(59), false),
            (both, 100, s(1), true),
            (both, 1, s(61), true),
        ];
        for (interval, processed, elapsed, due) in cases {
            assert_eq!(interval.is_due(processed, elapsed), due, "{interval:?} after {processed} records, {elapsed:?}");
        }
    }

    #[test]
    fn zero_limits_are_refused() {
        assert!(CheckpointInterval::every_batch().records(0).validate().is_err());
        assert!(CheckpointInterval::every_batch().period(Duration::ZERO).validate().is_err());
        assert!(CheckpointInterval::every_batch().records(1).period(Duration::from_millis(1)).validate().is_ok());
    }
}
