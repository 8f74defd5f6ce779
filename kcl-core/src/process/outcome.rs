//! What [`RecordProcessor::process_records`](super::RecordProcessor::process_records) reports back:
//! [`BatchResult`] — `Ok(())` when every record was processed, or a [`BatchFailure`] naming the whole batch or
//! only some of its records (AWS Lambda's `ReportBatchItemFailures`).

use std::fmt;

use crate::types::{ExtendedSequenceNumber, Record};

/// An error a processor returns to say "this batch was not processed". The framework retries the batch with
/// backoff; the checkpoint does not move past it.
pub type ProcessorError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// The outcome of one `process_records` call.
///
/// - `Ok(())`: every record of the batch was processed.
/// - `Err(failure)` from `?` or `.into()` on any error: the **whole batch** failed.
/// - `Err(BatchFailure::records(..))`: only the named records failed; the others were processed.
///
/// What the framework does next (retry, bisect, send to the failure destination, block the shard) is set by the
/// consumer's [`RetryPolicy`](super::RetryPolicy).
pub type BatchResult = Result<(), BatchFailure>;

/// A failed batch, or failed records of a batch. Build one with `?`/`.into()` on any error (the whole batch failed)
/// or with [`BatchFailure::records`].
pub struct BatchFailure {
    error: ProcessorError,
    failed: Option<Vec<ExtendedSequenceNumber>>,
}

impl BatchFailure {
    /// The whole batch failed with `error`.
    pub fn batch(error: impl Into<ProcessorError>) -> Self {
        Self { error: error.into(), failed: None }
    }

    /// Only the records at `positions` failed (their sequence and sub-sequence numbers, see
    /// [`Record::extended_sequence_number`]); every other record of the batch was processed.
    ///
    /// As with Lambda, a position that is not in the batch makes the whole batch count as failed (the framework
    /// cannot tell what was meant), and an empty list means the batch succeeded.
    pub fn records(
        positions: impl IntoIterator<Item = ExtendedSequenceNumber>,
        error: impl Into<ProcessorError>,
    ) -> Self {
        Self { error: error.into(), failed: Some(positions.into_iter().collect()) }
    }

    /// Like [`records`](Self::records), naming the failed records themselves.
    pub fn failed_records<'a>(records: impl IntoIterator<Item = &'a Record>, error: impl Into<ProcessorError>) -> Self {
        Self::records(records.into_iter().map(Record::extended_sequence_number), error)
    }

    /// The error the processor gave.
    pub fn error(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
        &*self.error
    }

    /// The failed records' positions, or `None` when the whole batch failed.
    pub fn failed_positions(&self) -> Option<&[ExtendedSequenceNumber]> {
        self.failed.as_deref()
    }

    /// Splits the failure into its error and the failed positions (`None`: the whole batch).
    pub fn into_parts(self) -> (ProcessorError, Option<Vec<ExtendedSequenceNumber>>) {
        (self.error, self.failed)
    }
}

impl<E: Into<ProcessorError>> From<E> for BatchFailure {
    fn from(error: E) -> Self {
        Self::batch(error)
    }
}

impl fmt::Debug for BatchFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BatchFailure")
            .field("error", &self.error.to_string())
            .field("failed", &self.failed.as_ref().map(Vec::len))
            .finish()
    }
}

/// Shows the processor's error, and how many records failed when only some did.
impl fmt::Display for BatchFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.failed {
            None => write!(f, "{}", self.error),
            Some(failed) => write!(f, "{} record(s) failed: {}", failed.len(), self.error),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::SequenceNumber;

    fn fails_with_question_mark() -> BatchResult {
        let _: u32 = "x".parse()?;
        Ok(())
    }

    #[test]
    fn any_error_is_a_whole_batch_failure() {
        let failure = fails_with_question_mark().unwrap_err();
        assert!(failure.failed_positions().is_none());
        let failure: BatchFailure = "plain text".into();
        assert_eq!(failure.to_string(), "plain text");
    }

    #[test]
    fn partial_failures_name_their_records() {
        let record = Record::new("x", "k", SequenceNumber::from_u128(7));
        let failure = BatchFailure::failed_records([&record], "bad payload");
        assert_eq!(failure.failed_positions(), Some(&[record.extended_sequence_number()][..]));
        assert_eq!(failure.to_string(), "1 record(s) failed: bad payload");
    }
}
