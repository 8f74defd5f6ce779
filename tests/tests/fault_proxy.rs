//! The fault-injecting proxy, seen from the SDK clients the workers use: every fault kind reaches the client as the
//! error a real service (or network) would produce, and the DynamoDB lease store classifies them as transient.
//! Clients here have SDK retries off, so each call makes exactly one request.

use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::ShardIteratorType;
use kcl_core::lease::LeaseStore;
use kcl_dynamo_lease::DynamoLeaseStore;
use kcl_tests::emulators::Emulators;
use kcl_tests::proxy::{FaultKind, FaultPlan, FaultProxy, Flavor};
use kcl_tests::{emulators, unique_name};

const CLIENT_TIMEOUT: Duration = Duration::from_millis(800);
const DELAY: Duration = Duration::from_millis(2500);

async fn config(endpoint: &str) -> aws_config::SdkConfig {
    Emulators::sdk_config(endpoint)
        .await
        .into_builder()
        .retry_config(RetryConfig::disabled())
        .timeout_config(TimeoutConfig::builder().operation_attempt_timeout(CLIENT_TIMEOUT).build())
        .build()
}

/// How a failed call looked to the client.
#[derive(Debug, PartialEq, Eq)]
enum Seen {
    Service { status: u16, code: Option<String> },
    Timeout,
    Broken,
}

fn seen<E: ProvideErrorMetadata + std::fmt::Debug, R: std::fmt::Debug>(
    error: SdkError<E, R>,
    status: impl Fn(&R) -> u16,
) -> Seen {
    match error {
        SdkError::ServiceError(e) => Seen::Service { status: status(e.raw()), code: e.err().code().map(str::to_owned) },
        SdkError::TimeoutError(_) => Seen::Timeout,
        // The response ended early: the SDK reports the truncated body as a response (or dispatch) failure.
        SdkError::ResponseError(_) | SdkError::DispatchFailure(_) => Seen::Broken,
        other => panic!("unexpected SDK error: {other:?}"),
    }
}

#[tokio::test]
async fn kinesis_clients_see_each_fault_kind() {
    let proxy = FaultProxy::start(emulators().kinesis_endpoint(), Flavor::Kinesis, 1).await.unwrap();
    let kinesis = aws_sdk_kinesis::Client::new(&config(&proxy.endpoint()).await);
    let stream = unique_name("proxy");
    // Faults off: everything passes through, so the stream can be set up through the proxy.
    kinesis.create_stream().stream_name(&stream).shard_count(1).send().await.unwrap();
    // kinesis-mock lists the shard once the stream is ACTIVE (it takes a moment after CreateStream).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let shard = loop {
        let shards = kinesis.list_shards().stream_name(&stream).send().await;
        if let Ok(listed) = &shards
            && let Some(shard) = listed.shards().first()
        {
            break shard.shard_id().to_owned();
        }
        assert!(tokio::time::Instant::now() < deadline, "stream {stream} listed no shard within 30 s: {shards:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    kinesis
        .put_record()
        .stream_name(&stream)
        .partition_key("k")
        .data(Blob::new(b"through the proxy".to_vec()))
        .send()
        .await
        .unwrap();
    let iterator = kinesis
        .get_shard_iterator()
        .stream_name(&stream)
        .shard_id(&shard)
        .shard_iterator_type(ShardIteratorType::TrimHorizon)
        .send()
        .await
        .unwrap()
        .shard_iterator
        .unwrap();
    let get = || kinesis.get_records().shard_iterator(&iterator).send();
    assert_eq!(get().await.unwrap().records().len(), 1);

    let control = proxy.control();
    control.set(Some(FaultPlan::always(FaultKind::ProvisionedThroughputExceeded, DELAY)));
    let error = get().await.unwrap_err();
    assert!(error.as_service_error().is_some_and(|e| e.is_provisioned_throughput_exceeded_exception()), "{error:?}");
    let status = |r: &aws_sdk_kinesis::config::http::HttpResponse| r.status().as_u16();
    for (kind, expected) in [
        (FaultKind::InternalError, Seen::Service { status: 500, code: Some("InternalFailure".into()) }),
        (FaultKind::ServiceUnavailable, Seen::Service { status: 503, code: Some("ServiceUnavailable".into()) }),
        (FaultKind::Delay, Seen::Timeout),
        (FaultKind::DropMidResponse, Seen::Broken),
    ] {
        control.set(Some(FaultPlan::always(kind, DELAY)));
        assert_eq!(seen(get().await.unwrap_err(), status), expected, "{kind:?}");
    }
    control.set(None);
    assert_eq!(get().await.unwrap().records().len(), 1, "faults off: the proxy passes everything again");
    let stats = control.stats();
    assert_eq!(stats.total_injected(), 5);
    let drawn = FaultKind::ALL.iter().filter(|k| {
        !matches!(k, FaultKind::Throttling | FaultKind::ShortRecordsAnswer | FaultKind::ConditionalCheckFailed)
    });
    assert!(drawn.map(|k| stats.injected[k]).all(|n| n == 1));
    kinesis.delete_stream().stream_name(&stream).send().await.unwrap();
}

#[tokio::test]
async fn dynamodb_clients_and_the_lease_store_see_each_fault_kind() {
    let proxy = FaultProxy::start(emulators().dynamodb_endpoint(), Flavor::DynamoDb, 2).await.unwrap();
    let client = aws_sdk_dynamodb::Client::new(&config(&proxy.endpoint()).await);
    let table = unique_name("proxy");
    let store = DynamoLeaseStore::builder(client.clone(), &table).build().await.unwrap();
    let get = || client.get_item().table_name(&table).key("leaseKey", AttributeValue::S("shard-1".into())).send();
    assert!(get().await.unwrap().item().is_none());

    let control = proxy.control();
    let status = |r: &aws_sdk_dynamodb::config::http::HttpResponse| r.status().as_u16();
    control.set(Some(FaultPlan::always(FaultKind::ProvisionedThroughputExceeded, DELAY)));
    let error = get().await.unwrap_err();
    assert!(error.as_service_error().is_some_and(|e| e.is_provisioned_throughput_exceeded_exception()), "{error:?}");
    for (kind, expected) in [
        (FaultKind::Throttling, Seen::Service { status: 400, code: Some("ThrottlingException".into()) }),
        (FaultKind::InternalError, Seen::Service { status: 500, code: Some("InternalServerError".into()) }),
        (FaultKind::ServiceUnavailable, Seen::Service { status: 503, code: Some("ServiceUnavailable".into()) }),
        (FaultKind::Delay, Seen::Timeout),
        (FaultKind::DropMidResponse, Seen::Broken),
    ] {
        control.set(Some(FaultPlan::always(kind, DELAY)));
        assert_eq!(seen(get().await.unwrap_err(), status), expected, "{kind:?}");
        // What the lease coordinator sees: a transient error, never a lost race or a fatal one.
        let error = store.get_lease("shard-1").await.unwrap_err();
        assert!(error.is_retryable(), "{kind:?}: {error}");
    }

    // A delayed write was carried out although the client timed out: the outcome really is unknown.
    control.set(Some(FaultPlan::always(FaultKind::Delay, DELAY)));
    let lease = kcl_core::lease::Lease::new_for_shard("shard-1", kcl_core::ExtendedSequenceNumber::TrimHorizon);
    assert!(store.create_lease_if_not_exists(&lease).await.unwrap_err().is_retryable());
    control.set(None);
    // The proxy forwarded the write before the client gave up; on a loaded machine DynamoDB Local may apply it only
    // after the client's timeout, so wait (bounded) for it rather than read once.
    let deadline = tokio::time::Instant::now() + DELAY * 4;
    while store.get_lease("shard-1").await.unwrap().is_none() {
        assert!(tokio::time::Instant::now() < deadline, "the delayed write never took effect");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // A conditional-check storm: the store reports a conditional write as a lost race, and nothing was written;
    // reads pass.
    control.set(Some(FaultPlan::condition_storm(1.0)));
    let stored = store.get_lease("shard-1").await.unwrap().expect("created above");
    let error = store.take_lease("shard-1", stored.lease_counter, "w9").await.unwrap_err();
    assert!(error.is_condition_failed(), "{error}");
    control.set(None);
    let after = store.get_lease("shard-1").await.unwrap().expect("still there");
    assert_eq!((after.lease_counter, after.lease_owner), (stored.lease_counter, None), "nothing was written");
    assert_eq!(control.stats().injected.get(&FaultKind::ConditionalCheckFailed), Some(&1));
    client.delete_table().table_name(&table).send().await.unwrap();
}

/// A conditional write whose first attempt was carried out but whose answer was lost, and which the SDK then
/// retried (its standard retry policy retries a broken response), fails its condition on the retry: the lease moved
/// on because of the write itself. The store must not call that a lost race (`ConditionFailed` promises nothing was
/// changed); the outcome is unknown.
#[tokio::test]
async fn a_write_retried_by_the_sdk_after_a_lost_answer_is_not_reported_as_refused() {
    let proxy = FaultProxy::start(emulators().dynamodb_endpoint(), Flavor::DynamoDb, 3).await.unwrap();
    // The SDK's default retry policy (3 attempts), as workers use it.
    let client = aws_sdk_dynamodb::Client::new(&Emulators::sdk_config(&proxy.endpoint()).await);
    let table = unique_name("proxy-retry");
    let store = DynamoLeaseStore::builder(client.clone(), &table).build().await.unwrap();
    let lease = kcl_core::lease::Lease::new_for_shard("shard-1", kcl_core::ExtendedSequenceNumber::TrimHorizon);
    store.create_lease_if_not_exists(&lease).await.unwrap();
    let taken = store.take_lease("shard-1", 0, "w1").await.unwrap();
    let fence = taken.fence().unwrap();

    let drop_once = || FaultPlan::always(FaultKind::DropMidResponse, DELAY).limited(1);
    proxy.control().set(Some(drop_once()));
    let renewed = store.renew_lease(&fence).await;
    assert!(renewed.as_ref().is_err_and(|e| e.is_retryable()) || renewed.is_ok(), "renew: {renewed:?}");
    let now = store.get_lease("shard-1").await.unwrap().unwrap();
    assert_eq!(now.lease_counter, fence.counter + 1, "the first attempt was carried out");

    proxy.control().set(Some(drop_once()));
    let checkpoint = kcl_core::ExtendedSequenceNumber::sequence(kcl_core::SequenceNumber::from_u128(7));
    let written = store.update_checkpoint(&now.fence().unwrap(), &checkpoint).await;
    assert!(written.as_ref().is_err_and(|e| e.is_retryable()) || written.is_ok(), "checkpoint: {written:?}");

    proxy.control().set(Some(drop_once()));
    let taken = store.take_lease("shard-1", now.lease_counter + 1, "w2").await;
    assert!(taken.as_ref().is_err_and(|e| e.is_retryable()) || taken.is_ok(), "take: {taken:?}");
    let now = store.get_lease("shard-1").await.unwrap().unwrap();
    assert_eq!((now.lease_owner.as_deref(), now.checkpoint), (Some("w2"), checkpoint));
    assert_eq!(proxy.control().stats().total_injected(), 3);
    client.delete_table().table_name(&table).send().await.unwrap();
}
