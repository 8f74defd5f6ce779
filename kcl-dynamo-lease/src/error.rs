//! Errors: [`DynamoLeaseError`] for building the store, and the mapping of DynamoDB failures onto the
//! [`LeaseStoreError`] classes the lease coordinator acts on.

use std::error::Error as StdError;
use std::time::Duration;

use aws_sdk_dynamodb::config::http::HttpResponse;
use aws_sdk_dynamodb::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use kcl_core::lease::LeaseStoreError;

/// Errors from building a [`DynamoLeaseStore`](crate::DynamoLeaseStore): configuration, table setup and schema checks.
#[derive(Debug, thiserror::Error)]
pub enum DynamoLeaseError {
    /// A builder option cannot work; the message names it.
    #[error("invalid DynamoDB lease store configuration: {0}")]
    InvalidConfig(String),
    /// The table does not exist and the builder was told not to create it.
    #[error(
        "DynamoDB table `{table}` does not exist and table creation is disabled \
         (enable `create_table_if_missing(true)` or create it with hash key `{hash_key}` (S))"
    )]
    TableNotFound {
        /// The missing table.
        table: String,
        /// The hash key the table needs.
        hash_key: &'static str,
    },
    /// The table exists but its key schema is not the one this store (and Java KCL) needs. The store refuses to use
    /// it rather than write leases a Java KCL worker could not read, or fail on every write.
    #[error("DynamoDB table `{table}` cannot be used: {reason}")]
    IncompatibleTable {
        /// The table.
        table: String,
        /// What is wrong with it and what is expected instead.
        reason: String,
    },
    /// The table did not become `ACTIVE` within the configured wait.
    #[error("DynamoDB table `{table}` was still `{status}` after waiting {waited:?} for it to become ACTIVE")]
    TableNotActive {
        /// The table.
        table: String,
        /// Its last observed status.
        status: String,
        /// How long the builder waited.
        waited: Duration,
    },
    /// The table belongs to a Java KCL 3.x fleet running leader-based lease assignment (its `Migration3.0` state
    /// says `CLIENT_VERSION_3X` or `CLIENT_VERSION_3X_WITH_ROLLBACK`); kcl-rs speaks the 2.x lease protocol and
    /// refuses to join rather than fight the leader over leases. The message names the Java setting to change.
    #[error("{remedy} (found `{client_version}` in table `{found_in}`)")]
    Kcl3Fleet {
        /// The lease table.
        table: String,
        /// The fleet's client version (`cv`).
        client_version: String,
        /// The table holding the migration state: the lease table (KCL 3.5) or `<table>-CoordinatorState`.
        found_in: String,
        /// What to change.
        remedy: String,
    },
    /// A DynamoDB call made while setting up the store failed.
    #[error("DynamoDB {operation} on table `{table}` failed: {message}")]
    DynamoDb {
        /// The API call, e.g. `CreateTable`.
        operation: &'static str,
        /// The table it was for.
        table: String,
        /// What DynamoDB or the SDK reported.
        message: String,
        /// Whether retrying the build may succeed (throttling, 5xx, timeouts, connection failures).
        retryable: bool,
        /// The SDK error.
        #[source]
        source: Option<Box<dyn StdError + Send + Sync>>,
    },
}

impl DynamoLeaseError {
    /// Whether building again later may succeed (a throttled or failed call, or a table still being created).
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::DynamoDb { retryable, .. } => *retryable,
            Self::TableNotActive { .. } => true,
            Self::InvalidConfig(_)
            | Self::TableNotFound { .. }
            | Self::IncompatibleTable { .. }
            | Self::Kcl3Fleet { .. } => false,
        }
    }

    pub(crate) fn from_sdk<E>(operation: &'static str, table: &str, err: SdkError<E, HttpResponse>) -> Self
    where
        E: ProvideErrorMetadata + StdError + Send + Sync + 'static,
    {
        let retryable = classify(&err) == ErrorClass::Transient;
        Self::DynamoDb {
            operation,
            table: table.to_owned(),
            message: DisplayErrorContext(&err).to_string(),
            retryable,
            source: Some(Box::new(err)),
        }
    }
}

impl From<DynamoLeaseError> for LeaseStoreError {
    fn from(err: DynamoLeaseError) -> Self {
        let message = err.to_string();
        if err.is_retryable() {
            LeaseStoreError::Transient { operation: "build", message, source: Some(Box::new(err)) }
        } else {
            LeaseStoreError::Fatal { operation: "build", message, source: Some(Box::new(err)) }
        }
    }
}

/// How a failed DynamoDB call is treated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ErrorClass {
    /// The write's condition did not hold.
    ConditionFailed,
    /// Retrying may succeed; the outcome of a write is unknown.
    Transient,
    /// Retrying will not help.
    Fatal,
}

impl ErrorClass {
    /// The `outcome` label of the request metric.
    pub(crate) fn outcome(self) -> &'static str {
        match self {
            Self::ConditionFailed => "condition_failed",
            Self::Transient => "transient",
            Self::Fatal => "fatal",
        }
    }
}

/// Error codes retrying can fix. DynamoDB reports throttling as HTTP 400, so the status alone is not enough.
const TRANSIENT_CODES: &[&str] = &[
    "ProvisionedThroughputExceededException",
    "ThrottlingException",
    "RequestLimitExceeded",
    "InternalServerError",
    "ServiceUnavailable",
    "TransactionConflictException",
    // Control-plane concurrency limit (too many tables being created/updated at once): it clears by itself.
    "LimitExceededException",
    // Temporary credentials expired between refreshes; the credentials provider renews them, so a retry signs with
    // fresh ones. Invalid or missing credentials are different codes and stay fatal.
    "ExpiredTokenException",
];

/// Error codes that describe the request or the account, not the moment: retrying sends the same mistake again.
const FATAL_CODES: &[&str] = &[
    "ValidationException",
    "ResourceNotFoundException",
    "AccessDeniedException",
    "UnrecognizedClientException",
    "InvalidSignatureException",
    "MissingAuthenticationTokenException",
    "SerializationException",
];

const CONDITIONAL_CHECK_FAILED: &str = "ConditionalCheckFailedException";

/// Classifies a failed call by what retrying it would do.
pub(crate) fn classify<E: ProvideErrorMetadata>(err: &SdkError<E, HttpResponse>) -> ErrorClass {
    match err {
        // The SDK could not even build the request: a bug or bad input, the same next time.
        SdkError::ConstructionFailure(_) => ErrorClass::Fatal,
        SdkError::TimeoutError(_) => ErrorClass::Transient,
        // A "user" dispatch failure is a misconfigured client (bad endpoint URL, TLS setup); IO errors, connect
        // failures and timeouts are the network's and may pass.
        SdkError::DispatchFailure(failure) if failure.is_user() => ErrorClass::Fatal,
        SdkError::DispatchFailure(_) => ErrorClass::Transient,
        // A response arrived but could not be read: the call may or may not have been applied.
        SdkError::ResponseError(_) => ErrorClass::Transient,
        SdkError::ServiceError(context) => {
            let status = context.raw().status().as_u16();
            classify_service_error(context.err().code(), status)
        }
        // `SdkError` is non-exhaustive; an unknown failure mode gets the conservative "outcome unknown".
        _ => ErrorClass::Transient,
    }
}

fn classify_service_error(code: Option<&str>, status: u16) -> ErrorClass {
    match code {
        Some(CONDITIONAL_CHECK_FAILED) => ErrorClass::ConditionFailed,
        Some(code) if TRANSIENT_CODES.contains(&code) => ErrorClass::Transient,
        Some(code) if FATAL_CODES.contains(&code) => ErrorClass::Fatal,
        _ if status >= 500 => ErrorClass::Transient,
        // 429 is not a DynamoDB code today, but it means "slow down" everywhere.
        _ if status == 429 => ErrorClass::Transient,
        _ => ErrorClass::Fatal,
    }
}

/// Converts a failed call into the contract's error, keeping the SDK error as the source.
///
/// `api` is the DynamoDB call (`UpdateItem`), `operation` the store method (`renew_lease`); `key` is the lease or
/// worker the write was for. Messages carry codes and DynamoDB's text, never item contents.
pub(crate) fn to_store_error<E>(
    operation: &'static str,
    api: &'static str,
    key: &str,
    condition: &'static str,
    err: SdkError<E, HttpResponse>,
) -> LeaseStoreError
where
    E: ProvideErrorMetadata + StdError + Send + Sync + 'static,
{
    match classify(&err) {
        ErrorClass::ConditionFailed => LeaseStoreError::condition_failed(key, condition),
        class => {
            let mut message = format!("DynamoDB {api} for `{key}` failed: {}", DisplayErrorContext(&err));
            if err.code() == Some("ResourceNotFoundException") {
                message.push_str(" (the table or index does not exist: was it deleted?)");
            }
            let source: Option<Box<dyn StdError + Send + Sync>> = Some(Box::new(err));
            if class == ErrorClass::Transient {
                LeaseStoreError::Transient { operation, message, source }
            } else {
                LeaseStoreError::Fatal { operation, message, source }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_dynamodb::error::{ConnectorError, ErrorMetadata};
    use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
    use aws_smithy_runtime_api::http::StatusCode;
    use aws_smithy_types::body::SdkBody;

    fn service_error(code: &str, status: u16) -> SdkError<UpdateItemError, HttpResponse> {
        let err = UpdateItemError::generic(ErrorMetadata::builder().code(code).message("test").build());
        let status = StatusCode::try_from(status).expect("valid status in test");
        SdkError::service_error(err, HttpResponse::new(status, SdkBody::empty()))
    }

    #[test]
    fn conditional_check_failures_are_lost_races() {
        assert_eq!(classify(&service_error("ConditionalCheckFailedException", 400)), ErrorClass::ConditionFailed);
        let mapped = to_store_error(
            "renew_lease",
            "UpdateItem",
            "k",
            "owner and counter",
            service_error("ConditionalCheckFailedException", 400),
        );
        assert!(mapped.is_condition_failed());
    }

    #[test]
    fn throttling_and_server_errors_are_transient() {
        for code in ["ProvisionedThroughputExceededException", "ThrottlingException", "RequestLimitExceeded"] {
            assert_eq!(classify(&service_error(code, 400)), ErrorClass::Transient, "{code}");
        }
        assert_eq!(classify(&service_error("InternalServerError", 500)), ErrorClass::Transient);
        assert_eq!(classify(&service_error("SomethingNew", 503)), ErrorClass::Transient);
        let mapped = to_store_error("renew_lease", "UpdateItem", "k", "c", service_error("ThrottlingException", 400));
        assert!(mapped.is_retryable());
    }

    #[test]
    fn bad_requests_and_missing_tables_are_fatal() {
        for code in ["ValidationException", "ResourceNotFoundException", "AccessDeniedException", "SomethingNew"] {
            assert_eq!(classify(&service_error(code, 400)), ErrorClass::Fatal, "{code}");
        }
        let mapped = to_store_error("get_lease", "GetItem", "k", "c", service_error("ResourceNotFoundException", 400));
        assert!(matches!(mapped, LeaseStoreError::Fatal { .. }));
        assert!(mapped.to_string().contains("deleted"), "{mapped}");
    }

    #[test]
    fn timeouts_and_io_failures_are_transient_but_client_misconfiguration_is_fatal() {
        let timeout: SdkError<UpdateItemError, HttpResponse> = SdkError::timeout_error("slow");
        assert_eq!(classify(&timeout), ErrorClass::Transient);
        let io: SdkError<UpdateItemError, HttpResponse> =
            SdkError::dispatch_failure(ConnectorError::io("connection reset".into()));
        assert_eq!(classify(&io), ErrorClass::Transient);
        let connect_timeout: SdkError<UpdateItemError, HttpResponse> =
            SdkError::dispatch_failure(ConnectorError::timeout("connect".into()));
        assert_eq!(classify(&connect_timeout), ErrorClass::Transient);
        let user: SdkError<UpdateItemError, HttpResponse> =
            SdkError::dispatch_failure(ConnectorError::user("bad endpoint".into()));
        assert_eq!(classify(&user), ErrorClass::Fatal);
        let construction: SdkError<UpdateItemError, HttpResponse> = SdkError::construction_failure("missing key");
        assert_eq!(classify(&construction), ErrorClass::Fatal);
    }
}
