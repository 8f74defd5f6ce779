//! The daemon: AWS clients and the DynamoDB lease store from the settings, a kcl-core [`Worker`] whose processors
//! are child programs, and graceful shutdown on SIGTERM / SIGINT.

use std::sync::Arc;

use aws_config::{BehaviorVersion, Region};
use kcl_core::lease::LeaseCoordinatorConfig;
use kcl_core::retrieve::PollingConfig;
use kcl_core::retrieve::fanout::FanOutConfig;
use kcl_core::{Retrieval, Worker};
use kcl_dynamo_lease::DynamoLeaseStore;
use tokio::signal::unix::{SignalKind, signal};

use crate::config::DaemonConfig;
use crate::error::MultilangError;
use crate::processor::{ChildProcessor, ChildSpec};

/// Runs the daemon until a signal asks it to stop and the graceful shutdown completes (or its grace runs out).
pub async fn run(config: DaemonConfig) -> Result<(), MultilangError> {
    let mut loader = aws_config::defaults(BehaviorVersion::latest());
    if let Some(region) = &config.region {
        loader = loader.region(Region::new(region.clone()));
    }
    let base = loader.load().await;
    let mut kinesis = aws_sdk_kinesis::config::Builder::from(&base);
    if let Some(endpoint) = &config.kinesis_endpoint {
        kinesis = kinesis.endpoint_url(endpoint);
    }
    let mut dynamodb = aws_sdk_dynamodb::config::Builder::from(&base);
    if let Some(endpoint) = &config.dynamodb_endpoint {
        dynamodb = dynamodb.endpoint_url(endpoint);
    }
    let store =
        DynamoLeaseStore::builder(aws_sdk_dynamodb::Client::from_conf(dynamodb.build()), config.table_name.clone())
            .deletion_protection(config.deletion_protection)
            .build()
            .await
            .map_err(|e| MultilangError::LeaseTable(e.to_string()))?;

    let spec = Arc::new(ChildSpec { command: config.executable.clone(), timeout: config.timeout });
    let mut builder = Worker::builder(config.stream_name.clone(), config.application_name.clone())
        .kinesis_client(aws_sdk_kinesis::Client::from_conf(kinesis.build()))
        .lease_store(Arc::new(store))
        .processor_factory(move |shard_id: &str| ChildProcessor::new(spec.clone(), shard_id))
        .initial_position(config.initial_position)
        .lease_config(lease_config(&config)?)
        .retrieval(retrieval(&config))
        .call_process_records_even_for_empty(config.call_process_records_even_for_empty);
    if let Some(worker_id) = &config.worker_id {
        builder = builder.worker_id(worker_id.clone());
    }
    if let Some(interval) = config.shard_sync_interval {
        builder = builder.shard_sync_interval(interval);
    }
    if let Some(interval) = config.parent_shard_poll_interval {
        builder = builder.parent_poll_interval(interval);
    }
    if let Some(base) = config.task_backoff {
        builder = builder.retry_backoff(base, base.max(std::time::Duration::from_secs(30)));
    }
    let worker = builder.build()?;
    let shutdown = worker.shutdown_handle();
    tracing::info!(
        application = %config.application_name,
        stream = %config.stream_name,
        executable = %config.executable.join(" "),
        language = config.processing_language.as_deref().unwrap_or("-"),
        polling = config.polling,
        "kcl-multilang started"
    );

    let mut terminate = signal(SignalKind::terminate()).map_err(MultilangError::Signal)?;
    let mut interrupt = signal(SignalKind::interrupt()).map_err(MultilangError::Signal)?;
    let mut running = tokio::spawn(worker.run());
    let stopped = tokio::select! {
        result = &mut running => Some(result),
        _ = terminate.recv() => None,
        _ = interrupt.recv() => None,
    };
    let result = match stopped {
        Some(result) => result,
        None => {
            tracing::info!(grace = ?config.shutdown_grace, "stopping: record processors are told shutdownRequested");
            shutdown.shutdown();
            tokio::select! {
                result = &mut running => result,
                _ = tokio::time::sleep(config.shutdown_grace) => {
                    running.abort();
                    return Err(MultilangError::ShutdownTimedOut { millis: config.shutdown_grace.as_millis() });
                }
                _ = terminate.recv() => { running.abort(); return Ok(()); }
                _ = interrupt.recv() => { running.abort(); return Ok(()); }
            }
        }
    };
    match result {
        Ok(outcome) => outcome.map_err(MultilangError::from),
        Err(join) => Err(MultilangError::Worker(join.to_string())),
    }
}

fn lease_config(config: &DaemonConfig) -> Result<LeaseCoordinatorConfig, MultilangError> {
    let mut lease = LeaseCoordinatorConfig::builder();
    if let Some(duration) = config.failover_time {
        lease = lease.lease_duration(duration);
    }
    if let Some(n) = config.max_leases_for_worker {
        lease = lease.max_leases_for_worker(n);
    }
    if let Some(n) = config.max_leases_to_steal_at_one_time {
        lease = lease.max_leases_to_steal_at_one_time(n);
    }
    if let Some(timeout) = config.handoff_timeout {
        lease = lease.handoff_timeout(timeout);
    }
    Ok(lease.build()?)
}

fn retrieval(config: &DaemonConfig) -> Retrieval {
    if !config.polling {
        return Retrieval::FanOut { consumer_name: config.consumer_name.clone(), config: FanOutConfig::default() };
    }
    let mut polling = PollingConfig::default();
    if let Some(n) = config.max_records {
        polling.max_records = n;
    }
    if let Some(idle) = config.idle_time_between_reads {
        polling.idle_time_between_reads = idle;
    }
    Retrieval::Polling(polling)
}
