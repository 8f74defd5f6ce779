//! Turning a failed batch into the messages SQS and SNS send: split to fit the size limit, records too large for
//! any message handed to the overflow bucket (the message then points at the object), all decided before the
//! first message goes out so a refused batch sends nothing.

use std::time::SystemTime;

use kcl_core::process::FailedRecords;
use serde_json::json;

use crate::invocation::{self, Context};
use crate::plan::{self, Part};
use crate::{DestinationError, RecordFormat, S3Destination};

/// One message, ready to send.
#[derive(Debug)]
pub(crate) struct Message {
    /// The JSON document.
    pub(crate) body: String,
    /// Lambda's `requestId` of the document (also the FIFO deduplication id).
    pub(crate) request_id: String,
}

/// The records of `failed` in `range`, as a batch of their own.
fn slice(failed: &FailedRecords, range: std::ops::Range<usize>) -> FailedRecords {
    failed.clone().with_records(failed.records[range].to_vec())
}

/// The messages for `failed`: records that do not fit any message are first stored in `overflow` (and the message
/// for each names its object).
pub(crate) async fn messages(
    failed: &FailedRecords,
    format: &RecordFormat,
    limit: usize,
    overflow: Option<&S3Destination>,
) -> Result<Vec<Message>, DestinationError> {
    let context = format.context(failed).await;
    let now = SystemTime::now();
    let with_payload = !format.metadata_only;
    let request_id = invocation::uuid_v4();
    let render = |part: &FailedRecords, context: &Context| {
        invocation::invocation_record(part, context, with_payload, &request_id, now).to_string()
    };
    let parts = if with_payload {
        plan::plan(failed.records.len(), limit, &mut |range| render(&slice(failed, range), &context).len())
    } else {
        // Metadata only is a few hundred bytes, whatever the batch size.
        vec![Part::Fits(0..failed.records.len())]
    };
    let too_large = |index: usize| DestinationError::TooLarge {
        shard_id: failed.shard_id.to_string(),
        sequence_number: failed.records[index].sequence_number.to_string(),
        bytes: render(&slice(failed, index..index + 1), &context).len(),
        limit,
    };
    if overflow.is_none()
        && let Some(Part::TooLarge(index)) = parts.iter().find(|part| matches!(part, Part::TooLarge(_)))
    {
        return Err(too_large(*index));
    }
    let mut out = Vec::with_capacity(parts.len());
    for part in parts {
        let request_id = invocation::uuid_v4();
        let body = match part {
            Part::Fits(range) => {
                invocation::invocation_record(&slice(failed, range), &context, with_payload, &request_id, now)
            }
            Part::TooLarge(index) => {
                let single = slice(failed, index..index + 1);
                let Some(overflow) = overflow else { return Err(too_large(index)) };
                let (bucket, key) = overflow.put(&single, &context).await?;
                let mut record = invocation::invocation_record(&single, &context, false, &request_id, now);
                record["payloadLocation"] = json!({"s3Bucket": bucket, "s3Key": key});
                record
            }
        };
        out.push(Message { body: body.to_string(), request_id });
    }
    Ok(out)
}
