//! Reaching DynamoDB and Kinesis: the standard AWS configuration with optional endpoint overrides (emulators), and
//! the checks that turn "table missing", "stream missing" and "endpoint unreachable" into clear errors before any
//! lease is touched.

use aws_config::{BehaviorVersion, Region};
use aws_sdk_dynamodb::error::{DisplayErrorContext, SdkError};
use kcl_core::retrieve::KinesisPollingApi;
use kcl_dynamo_lease::DynamoLeaseStore;

use crate::cli::Common;
use crate::error::AdminError;

/// The two service clients, and where they point (for error messages).
pub struct Aws {
    dynamodb: aws_sdk_dynamodb::Client,
    kinesis: aws_sdk_kinesis::Client,
    dynamodb_endpoint: String,
    kinesis_endpoint: String,
}

/// A lease table opened as a [`DynamoLeaseStore`].
pub struct OpenedTable {
    /// The store over the table.
    pub store: DynamoLeaseStore,
    /// Whether this command created the table.
    pub created: bool,
}

impl Aws {
    /// Clients from the standard credential chain and region (`--region` overrides it). With an endpoint override and
    /// no `AWS_ACCESS_KEY_ID` in the environment, static dummy credentials and `us-east-1` are used, as the
    /// emulators only check that a request is signed.
    pub async fn connect(common: &Common) -> Self {
        let mut loader = aws_config::defaults(BehaviorVersion::latest());
        if let Some(region) = &common.region {
            loader = loader.region(Region::new(region.clone()));
        }
        let local = common.kinesis_endpoint.is_some() || common.dynamodb_endpoint.is_some();
        if local && std::env::var_os("AWS_ACCESS_KEY_ID").is_none() {
            loader = loader.credentials_provider(aws_sdk_kinesis::config::Credentials::new(
                "LOCAL",
                "LOCAL",
                None,
                None,
                "kcl-admin",
            ));
            if common.region.is_none() {
                loader = loader.region(Region::new("us-east-1"));
            }
        }
        let base = loader.load().await;
        let mut dynamodb = aws_sdk_dynamodb::config::Builder::from(&base);
        if let Some(endpoint) = &common.dynamodb_endpoint {
            dynamodb = dynamodb.endpoint_url(endpoint);
        }
        let mut kinesis = aws_sdk_kinesis::config::Builder::from(&base);
        if let Some(endpoint) = &common.kinesis_endpoint {
            kinesis = kinesis.endpoint_url(endpoint);
        }
        let region = base.region().map_or_else(|| "(no region configured)".to_owned(), |r| r.to_string());
        let default_endpoint = |service: &str| format!("the AWS {service} endpoint of region {region}");
        Self {
            dynamodb: aws_sdk_dynamodb::Client::from_conf(dynamodb.build()),
            kinesis: aws_sdk_kinesis::Client::from_conf(kinesis.build()),
            dynamodb_endpoint: common.dynamodb_endpoint.clone().unwrap_or_else(|| default_endpoint("DynamoDB")),
            kinesis_endpoint: common.kinesis_endpoint.clone().unwrap_or_else(|| default_endpoint("Kinesis")),
        }
    }

    /// Where Kinesis calls go, for error messages.
    pub fn kinesis_endpoint(&self) -> &str {
        &self.kinesis_endpoint
    }

    /// The polling calls (GetShardIterator, GetRecords) over this Kinesis client.
    pub fn polling_api(&self) -> KinesisPollingApi {
        KinesisPollingApi::new(self.kinesis.clone())
    }

    /// Opens a lease table. A missing table is an error unless `create` is set, in which case it is created as a
    /// worker would create it (with the owner index). An existing table is never altered: the owner index is not
    /// added to it.
    pub async fn open_table(&self, table: &str, create: bool) -> Result<OpenedTable, AdminError> {
        let exists = match self.dynamodb.describe_table().table_name(table).send().await {
            Ok(_) => true,
            Err(SdkError::ServiceError(e)) if e.err().is_resource_not_found_exception() => false,
            Err(error) => return Err(self.dynamodb_error("DescribeTable", error)),
        };
        if !exists && !create {
            return Err(AdminError::TableNotFound(table.to_owned()));
        }
        let builder = DynamoLeaseStore::builder(self.dynamodb.clone(), table);
        let store = if exists {
            builder.create_table_if_missing(false).create_owner_index(false).build().await?
        } else {
            builder.build().await?
        };
        Ok(OpenedTable { store, created: !exists })
    }

    /// Checks that the stream (a name, or an ARN starting with `arn:`) exists (`DescribeStreamSummary`), so that a
    /// typo is reported as such.
    pub async fn check_stream(&self, stream: &str) -> Result<(), AdminError> {
        let request = self.kinesis.describe_stream_summary();
        let request = if stream.starts_with("arn:") { request.stream_arn(stream) } else { request.stream_name(stream) };
        match request.send().await {
            Ok(_) => Ok(()),
            Err(SdkError::ServiceError(e)) if e.err().is_resource_not_found_exception() => {
                Err(AdminError::StreamNotFound(stream.to_owned()))
            }
            Err(error) => Err(match error {
                SdkError::DispatchFailure(_) | SdkError::TimeoutError(_) => AdminError::Unreachable {
                    service: "Kinesis",
                    endpoint: self.kinesis_endpoint.clone(),
                    message: aws_sdk_kinesis::error::DisplayErrorContext(&error).to_string(),
                },
                other => AdminError::Service {
                    service: "Kinesis",
                    operation: "DescribeStreamSummary",
                    message: aws_sdk_kinesis::error::DisplayErrorContext(&other).to_string(),
                },
            }),
        }
    }

    fn dynamodb_error<E, R>(&self, operation: &'static str, error: SdkError<E, R>) -> AdminError
    where
        E: std::error::Error + 'static,
        R: std::fmt::Debug,
    {
        let message = DisplayErrorContext(&error).to_string();
        match error {
            SdkError::DispatchFailure(_) | SdkError::TimeoutError(_) => {
                AdminError::Unreachable { service: "DynamoDB", endpoint: self.dynamodb_endpoint.clone(), message }
            }
            _ => AdminError::Service { service: "DynamoDB", operation, message },
        }
    }
}
