//! [`AdminError`]: every way a `kcl-admin` command fails, each with an actionable message and an exit code.

use kcl_core::lease::LeaseStoreError;
use kcl_core::retrieve::{ApiError, ApiErrorKind};
use kcl_dynamo_lease::DynamoLeaseError;

/// Exit code for bad arguments (clap uses the same one for the arguments it rejects itself).
pub const EXIT_USAGE: i32 = 2;
/// Exit code for a refused operation: the lease is owned, finished, or changed while the command ran.
pub const EXIT_REFUSED: i32 = 3;
/// Exit code for something that does not exist: a lease key, a table, a stream.
pub const EXIT_NOT_FOUND: i32 = 4;
/// Exit code for an endpoint that cannot be reached.
pub const EXIT_UNREACHABLE: i32 = 5;
/// Exit code for every other failure (a service error, an unusable table).
pub const EXIT_FAILED: i32 = 1;

/// Why a command failed.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// An argument is wrong; the message says which and what is expected.
    #[error("{0}")]
    Usage(String),
    /// The operation could harm a running application; the message says how to do it anyway.
    #[error("refused: {0}")]
    Refused(String),
    /// The lease changed between the read and the fenced write (a worker renewed, took or checkpointed it).
    #[error(
        "lease `{lease_key}` changed while kcl-admin was writing it ({detail}); nothing further was written. \
         Look at it again with `kcl-admin leases` and retry"
    )]
    Conflict {
        /// The lease.
        lease_key: String,
        /// What the store reported.
        detail: String,
    },
    /// No lease with this key.
    #[error("no lease `{lease_key}` in table `{table}` (list the keys with `kcl-admin leases --table {table}`)")]
    LeaseNotFound {
        /// The lease table.
        table: String,
        /// The key asked for.
        lease_key: String,
    },
    /// The table does not exist where the client looked.
    #[error(
        "DynamoDB table `{0}` does not exist (check --table, which is the application name, and --region or \
         --dynamodb-endpoint)"
    )]
    TableNotFound(String),
    /// The stream does not exist where the client looked.
    #[error("Kinesis stream `{0}` does not exist (check --stream and --region or --kinesis-endpoint)")]
    StreamNotFound(String),
    /// The endpoint did not answer.
    #[error("cannot reach {service} at {endpoint}: {message}")]
    Unreachable {
        /// `DynamoDB` or `Kinesis`.
        service: &'static str,
        /// The endpoint URL, or "the AWS endpoint of the region".
        endpoint: String,
        /// What the SDK reported.
        message: String,
    },
    /// A lease store call failed.
    #[error(transparent)]
    Store(#[from] LeaseStoreError),
    /// Opening the lease table failed.
    #[error(transparent)]
    Table(#[from] DynamoLeaseError),
    /// Another DynamoDB or Kinesis call failed.
    #[error("{service} {operation} failed: {message}")]
    Service {
        /// `DynamoDB` or `Kinesis`.
        service: &'static str,
        /// The API call.
        operation: &'static str,
        /// What the service or SDK reported.
        message: String,
    },
    /// Writing the report to stdout failed.
    #[error("cannot write the output: {0}")]
    Output(String),
}

impl AdminError {
    /// The process exit code for this error.
    pub fn exit_code(&self) -> i32 {
        match self {
            Self::Usage(_) => EXIT_USAGE,
            Self::Refused(_) | Self::Conflict { .. } => EXIT_REFUSED,
            Self::LeaseNotFound { .. } | Self::TableNotFound(_) | Self::StreamNotFound(_) => EXIT_NOT_FOUND,
            Self::Unreachable { .. } => EXIT_UNREACHABLE,
            Self::Store(_) | Self::Table(_) | Self::Service { .. } | Self::Output(_) => EXIT_FAILED,
        }
    }

    /// A short machine-readable name for `--json` error documents.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Usage(_) => "usage",
            Self::Refused(_) => "refused",
            Self::Conflict { .. } => "conflict",
            Self::LeaseNotFound { .. } => "lease_not_found",
            Self::TableNotFound(_) => "table_not_found",
            Self::StreamNotFound(_) => "stream_not_found",
            Self::Unreachable { .. } => "unreachable",
            Self::Store(_) => "lease_store",
            Self::Table(_) => "lease_table",
            Self::Service { .. } => "service",
            Self::Output(_) => "output",
        }
    }

    /// A failed fenced write: a lost race becomes [`AdminError::Conflict`], anything else stays a store error.
    pub fn from_write(lease_key: &str, error: LeaseStoreError) -> Self {
        if error.is_condition_failed() {
            Self::Conflict { lease_key: lease_key.to_owned(), detail: error.to_string() }
        } else {
            Self::Store(error)
        }
    }

    /// A failed Kinesis call, classified by kcl-core's polling API.
    pub fn kinesis(operation: &'static str, endpoint: &str, error: ApiError) -> Self {
        match error.kind {
            ApiErrorKind::Dispatch | ApiErrorKind::Timeout => {
                Self::Unreachable { service: "Kinesis", endpoint: endpoint.to_owned(), message: error.message }
            }
            _ => Self::Service { service: "Kinesis", operation, message: error.message },
        }
    }
}
