//! # kcl-aws-destinations
//!
//! [`FailureDestination`](kcl_core::process::FailureDestination)s on Amazon SQS, SNS and S3 for kcl-core — the
//! on-failure destinations of Lambda's Kinesis event source mapping. Each sends the document Lambda itself sends
//! (`requestContext` with `condition` and `approximateInvokeCount`, `responseContext`, `version`, `timestamp`,
//! `KinesisBatchInfo` with shard, start and end sequence numbers, arrival times, batch size and stream ARN), so
//! tooling written for Lambda's failure messages reads these unchanged. The records themselves ride under
//! `payload` as Lambda's Kinesis event (`{"Records":[{"kinesis":{..,"data":"<base64>"},..}]}`), and kcl-rs adds
//! `kclContext` (the processor's last error, the first failure's time, KPL sub-sequence numbers).
//!
//! | destination | sends | size |
//! |---|---|---|
//! | [`SqsDestination`] | one message per failed batch; with the records under `payload` unless [`RecordFormat::metadata_only`] | 256 KiB per message: larger batches are split into several messages, each with its own `KinesisBatchInfo`; a single record too large for a message goes to the [`overflow`](SqsDestination::overflow) bucket, the message then names the object (`payloadLocation`) |
//! | [`SnsDestination`] | the same, published to a topic | as SQS |
//! | [`S3Destination`] | one object per failed batch, records included (Lambda's S3 destination), key `aws/lambda/<mapping id>/<shard id>/YYYY/MM/DD/YYYY-MM-DDTHH.MM.SS-<uuid>` | no limit that matters (5 GB per object) |
//!
//! Records are never dropped: `send` returns `Ok` only after the service acknowledged every message or object;
//! a record that fits no message and has no overflow bucket makes `send` fail (before anything is sent) with an
//! error that says to configure one — the shard waits, as kcl-core does for any destination error.
//!
//! ```no_run
//! # async fn example(config: aws_types::SdkConfig) -> Result<(), kcl_core::KclError> {
//! use std::sync::Arc;
//! use kcl_aws_destinations::{RecordFormat, S3Destination, SqsDestination};
//! use kcl_core::process::{OnExhausted, RetryPolicy};
//!
//! let overflow = S3Destination::new(aws_sdk_s3::Client::new(&config), "failed-readings");
//! let destination = SqsDestination::new(aws_sdk_sqs::Client::new(&config), "https://sqs…/readings-dlq")
//!     .format(RecordFormat::new().resolve_stream_arn(aws_sdk_kinesis::Client::new(&config)))
//!     .overflow(overflow);
//! let worker = kcl_core::Worker::builder("readings", "iot-app")
//!     .retry_policy(RetryPolicy::default().max_attempts(Some(3)).on_exhausted(OnExhausted::SendToDestination))
//!     .failure_destination(Arc::new(destination))
//!     .processor_factory(|_: &str| MyProcessor);
//! # let _ = worker; Ok(()) }
//! # struct MyProcessor;
//! # #[async_trait::async_trait]
//! # impl kcl_core::RecordProcessor for MyProcessor {
//! #     async fn process_records(&mut self, _: &kcl_core::Batch, _: &mut kcl_core::Checkpointer) -> kcl_core::BatchResult {
//! #         Ok(())
//! #     }
//! # }
//! ```
#![deny(missing_docs)]

mod error;
mod format;
mod invocation;
mod message;
mod plan;
mod s3;
mod sns;
mod sqs;

pub use error::DestinationError;
pub use format::RecordFormat;
pub use s3::S3Destination;
pub use sns::SnsDestination;
pub use sqs::SqsDestination;

/// The largest SQS message body and SNS message: 256 KiB.
pub const MAX_MESSAGE_BYTES: usize = 256 * 1024;
