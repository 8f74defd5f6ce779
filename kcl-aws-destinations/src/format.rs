//! [`RecordFormat`]: what goes into the records the destinations send besides the failed records themselves (the
//! stream's ARN, the function ARN, the region, whether records ride along), and where the stream ARN comes from.

use std::collections::HashMap;
use std::sync::Arc;

use kcl_core::process::FailedRecords;
use tokio::sync::Mutex;

use crate::invocation::Context;

/// Options of the on-failure record, shared by the three destinations.
///
/// | setting | default | Lambda |
/// |---|---|---|
/// | [`stream_arn`](Self::stream_arn) | resolved (see [`resolve_stream_arn`](Self::resolve_stream_arn)), else the stream name as given to the worker | `KinesisBatchInfo.streamArn` |
/// | [`function_arn`](Self::function_arn) | omitted | `requestContext.functionArn` |
/// | [`region`](Self::region) | the destination client's region | `awsRegion` of each event record |
/// | [`metadata_only`](Self::metadata_only) | off: SQS/SNS messages carry the records under `payload` | Lambda's SQS/SNS messages are metadata only |
#[derive(Clone, Debug, Default)]
pub struct RecordFormat {
    stream_arn: Option<String>,
    resolver: Option<aws_sdk_kinesis::Client>,
    resolved: Arc<Mutex<HashMap<String, String>>>,
    function_arn: Option<String>,
    region: Option<String>,
    pub(crate) metadata_only: bool,
}

impl RecordFormat {
    /// The defaults.
    pub fn new() -> Self {
        Self::default()
    }

    /// The ARN to name as the source stream (single-stream workers that know it).
    pub fn stream_arn(mut self, arn: impl Into<String>) -> Self {
        self.stream_arn = Some(arn.into());
        self
    }

    /// Looks the stream ARN up with `DescribeStreamSummary` (once per stream; multi-stream workers). When the call
    /// fails the record names the stream by its name and a warning is logged: a failed batch is never held back
    /// for its metadata.
    pub fn resolve_stream_arn(mut self, kinesis: aws_sdk_kinesis::Client) -> Self {
        self.resolver = Some(kinesis);
        self
    }

    /// `requestContext.functionArn` (e.g. the name of the consuming application).
    pub fn function_arn(mut self, arn: impl Into<String>) -> Self {
        self.function_arn = Some(arn.into());
        self
    }

    /// `awsRegion` of each event record.
    pub fn region(mut self, region: impl Into<String>) -> Self {
        self.region = Some(region.into());
        self
    }

    /// Send Lambda's metadata-only message to SQS and SNS (no `payload`): the records must then be read from the
    /// stream before they expire. S3 objects always carry the records.
    pub fn metadata_only(mut self) -> Self {
        self.metadata_only = true;
        self
    }

    /// Fills the region from a client's configuration when none was set.
    pub(crate) fn default_region(mut self, region: Option<&aws_types::region::Region>) -> Self {
        if self.region.is_none() {
            self.region = region.map(|r| r.as_ref().to_owned());
        }
        self
    }

    pub(crate) async fn context(&self, failed: &FailedRecords) -> Context {
        Context {
            stream_arn: self.stream_arn_of(&failed.stream).await,
            function_arn: self.function_arn.clone(),
            region: self.region.clone(),
        }
    }

    async fn stream_arn_of(&self, stream: &str) -> String {
        if let Some(arn) = &self.stream_arn {
            return arn.clone();
        }
        if stream.starts_with("arn:") {
            return stream.to_owned();
        }
        let Some(kinesis) = &self.resolver else { return stream.to_owned() };
        let mut resolved = self.resolved.lock().await;
        if let Some(arn) = resolved.get(stream) {
            return arn.clone();
        }
        match kinesis.describe_stream_summary().stream_name(stream).send().await {
            Ok(output) => match output.stream_description_summary() {
                Some(summary) => {
                    resolved.insert(stream.to_owned(), summary.stream_arn().to_owned());
                    summary.stream_arn().to_owned()
                }
                None => stream.to_owned(),
            },
            Err(error) => {
                tracing::warn!(
                    stream,
                    error = %crate::error::describe(&error),
                    "cannot look up the stream ARN for a failure record; naming the stream by its name (check the \
                     worker's kinesis:DescribeStreamSummary permission)"
                );
                stream.to_owned()
            }
        }
    }
}
