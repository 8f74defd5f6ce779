//! Failure classes end to end. DynamoDB Local never throttles or fails, so an SDK interceptor injects throttling,
//! server errors and connection failures into the store's client.

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use aws_sdk_dynamodb::config::interceptors::{
    BeforeDeserializationInterceptorContextMut, BeforeTransmitInterceptorContextMut,
};
use aws_sdk_dynamodb::config::retry::RetryConfig;
use aws_sdk_dynamodb::config::timeout::TimeoutConfig;
use aws_sdk_dynamodb::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_sdk_dynamodb::error::BoxError;
use kcl_core::lease::{LeaseStore, LeaseStoreError};
use kcl_dynamo_lease::{DynamoLeaseError, DynamoLeaseStore};

use crate::common::*;

const PASS: u8 = 0;
const THROTTLE: u8 = 1;
const SERVER_ERROR: u8 = 2;
const ACCESS_DENIED: u8 = 3;
const CONNECTION_REFUSED: u8 = 4;

#[derive(Debug, Clone, Default)]
struct Faults(Arc<AtomicU8>);

impl Faults {
    fn set(&self, mode: u8) {
        self.0.store(mode, Ordering::SeqCst);
    }
}

impl Intercept for Faults {
    fn name(&self) -> &'static str {
        "Faults"
    }

    fn modify_before_transmit(
        &self,
        context: &mut BeforeTransmitInterceptorContextMut<'_>,
        _: &RuntimeComponents,
        _: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        if self.0.load(Ordering::SeqCst) == CONNECTION_REFUSED {
            // Port 1 on loopback: nothing listens there.
            context.request_mut().set_uri("http://127.0.0.1:1/")?;
        }
        Ok(())
    }

    /// Replaces the real response (the request did reach DynamoDB Local: the outcome of a write is then truly
    /// unknown to the caller, as with a real lost response).
    fn modify_before_deserialization(
        &self,
        context: &mut BeforeDeserializationInterceptorContextMut<'_>,
        _: &RuntimeComponents,
        _: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let (status, code) = match self.0.load(Ordering::SeqCst) {
            THROTTLE => (400, "ProvisionedThroughputExceededException"),
            SERVER_ERROR => (500, "InternalServerError"),
            ACCESS_DENIED => (400, "AccessDeniedException"),
            _ => return Ok(()),
        };
        let response = context.response_mut();
        *response.status_mut() = status.try_into()?;
        response.headers_mut().insert("x-amzn-errortype", code);
        *response.body_mut() =
            format!(r#"{{"__type":"com.amazonaws.dynamodb.v20120810#{code}","message":"injected"}}"#).into();
        Ok(())
    }
}

async fn faulty_client(faults: &Faults, timeouts: Option<TimeoutConfig>) -> aws_sdk_dynamodb::Client {
    let sdk = kcl_tests::Emulators::sdk_config(kcl_tests::emulators().dynamodb_endpoint()).await;
    // No SDK retries: each store call is one attempt, so the injected failure is what the store sees.
    let mut config = aws_sdk_dynamodb::config::Builder::from(&sdk).retry_config(RetryConfig::disabled());
    if let Some(timeouts) = timeouts {
        config = config.timeout_config(timeouts);
    }
    aws_sdk_dynamodb::Client::from_conf(config.interceptor(faults.clone()).build())
}

#[tokio::test]
async fn throttling_server_errors_and_connection_failures_are_transient() {
    let faults = Faults::default();
    let table = kcl_tests::unique_name("ddb-faults");
    let store = DynamoLeaseStore::builder(faulty_client(&faults, None).await, &table).build().await.unwrap();
    create(&store, &owned("s", "a", 0)).await;

    for mode in [THROTTLE, SERVER_ERROR, CONNECTION_REFUSED] {
        faults.set(mode);
        for (what, result) in [
            ("get", store.get_lease("s").await.map(|_| ())),
            ("list", store.list_leases(None, 10).await.map(|_| ())),
            ("take", store.take_lease("s", 99, "b").await.map(|_| ())),
        ] {
            match result {
                Err(err @ LeaseStoreError::Transient { .. }) => assert!(err.is_retryable()),
                other => panic!("mode {mode} {what}: expected Transient, got {other:?}"),
            }
        }
    }

    // A renew whose response is lost: Transient, and the write may have happened — re-reading tells.
    faults.set(SERVER_ERROR);
    let lost = store.renew_lease(&fence("s", "a", 0)).await;
    assert!(matches!(lost, Err(LeaseStoreError::Transient { .. })), "{lost:?}");
    faults.set(PASS);
    assert_eq!(get(&store, "s").await.lease_counter, 1, "the write reached the table; only its answer was lost");

    faults.set(ACCESS_DENIED);
    assert!(matches!(store.get_lease("s").await, Err(LeaseStoreError::Fatal { .. })));
    faults.set(PASS);
    assert_eq!(store.renew_lease(&fence("s", "a", 1)).await.unwrap(), 2);
}

#[tokio::test]
async fn build_failures_say_whether_retrying_helps() {
    let faults = Faults::default();
    let table = kcl_tests::unique_name("ddb-faults-build");
    let client = faulty_client(&faults, None).await;
    faults.set(THROTTLE);
    match DynamoLeaseStore::builder(client.clone(), &table).build().await {
        Err(err @ DynamoLeaseError::DynamoDb { .. }) => assert!(err.is_retryable(), "{err}"),
        other => panic!("expected DynamoDb error, got {other:?}"),
    }
    faults.set(ACCESS_DENIED);
    match DynamoLeaseStore::builder(client.clone(), &table).build().await {
        Err(err @ DynamoLeaseError::DynamoDb { .. }) => assert!(!err.is_retryable(), "{err}"),
        other => panic!("expected DynamoDb error, got {other:?}"),
    }
    // A timeout (an impossible deadline) is retryable.
    faults.set(PASS);
    let hurried =
        faulty_client(&faults, Some(TimeoutConfig::builder().operation_timeout(Duration::from_nanos(1)).build())).await;
    match DynamoLeaseStore::builder(hurried, &table).build().await {
        Err(err @ DynamoLeaseError::DynamoDb { .. }) => assert!(err.is_retryable(), "{err}"),
        other => panic!("expected DynamoDb error, got {other:?}"),
    }
}
