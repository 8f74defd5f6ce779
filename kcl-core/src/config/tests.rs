//! Reading settings from TOML and the environment: what parses, what is refused and what the message says, and
//! which source wins.

use std::time::{Duration, UNIX_EPOCH};

use super::file::KEYS;
use super::load::snake_case;
use super::{Retrieval, WorkerConfig};
use crate::KclError;
use crate::lease::coordinator::RenewalMode;
use crate::process::{CheckpointInterval, Checkpointing, OnExhausted, PartialRetry};
use crate::retrieve::{GetRecordsPath, WireFormat};
use crate::types::InitialPosition;

/// Environment variables of a case.
type Env<'a> = &'a [(&'a str, &'a str)];

fn vars(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
}

fn load(toml: &str, env: &[(&str, &str)]) -> Result<WorkerConfig, String> {
    WorkerConfig::default().with_toml_and_vars(Some(toml), "kcl.toml", vars(env)).map_err(|error| match error {
        KclError::InvalidConfig(message) => message,
        other => panic!("expected InvalidConfig, got {other}"),
    })
}

fn polling(config: &WorkerConfig) -> &crate::retrieve::PollingConfig {
    match &config.retrieval {
        Retrieval::Polling(polling) => polling,
        other => panic!("expected polling, got {other:?}"),
    }
}

#[test]
fn empty_input_gives_the_defaults() {
    let config = load("", &[]).unwrap();
    let defaults = WorkerConfig::default();
    assert_eq!(format!("{config:?}"), format!("{defaults:?}"));
}

/// Each case: TOML text, and a check of the setting it changes.
#[test]
fn each_key_parses_into_its_setting() {
    type Check = fn(&WorkerConfig) -> bool;
    let cases: &[(&str, Check)] = &[
        ("worker_id = \"w-1\"", |c| c.worker_id.as_deref() == Some("w-1")),
        ("workerId = \"w-2\"", |c| c.worker_id.as_deref() == Some("w-2")),
        ("initial_position = \"TRIM_HORIZON\"", |c| c.initial_position == InitialPosition::TrimHorizon),
        ("initialPositionInStream = \"trim_horizon\"", |c| c.initial_position == InitialPosition::TrimHorizon),
        ("initial_position = \"AT_TIMESTAMP\"\ninitial_position_timestamp_secs = 1700000000", |c| {
            c.initial_position == InitialPosition::AtTimestamp(UNIX_EPOCH + Duration::from_secs(1_700_000_000))
        }),
        ("lease_duration_ms = 20000", |c| c.lease.lease_duration() == Duration::from_secs(20)),
        ("failoverTimeMillis = 30000", |c| c.lease.lease_duration() == Duration::from_secs(30)),
        ("lease_renewal_interval_ms = 2000", |c| c.lease.renewal_interval() == Duration::from_secs(2)),
        ("lease_take_interval_ms = 5000", |c| c.lease.take_interval() == Duration::from_secs(5)),
        ("maxLeasesForWorker = 7", |c| c.lease.max_leases_for_worker() == Some(7)),
        ("max_leases_to_steal_at_one_time = 0", |c| c.lease.max_leases_to_steal_at_one_time() == 0),
        ("lease_renewal_mode = \"worker_heartbeat\"", |c| c.lease.renewal_mode() == RenewalMode::WorkerHeartbeat),
        ("gracefulLeaseHandoffTimeoutMillis = 9000", |c| c.lease.handoff_timeout() == Duration::from_secs(9)),
        ("maxRecords = 250", |c| polling(c).max_records == 250),
        ("idleTimeBetweenReadsInMillis = 700", |c| polling(c).idle_time_between_reads == Duration::from_millis(700)),
        (
            "retrievalMode = \"FANOUT\"\nconsumerName = \"c\"",
            |c| matches!(&c.retrieval, Retrieval::FanOut { consumer_name: Some(name), .. } if name == "c"),
        ),
        ("get_records_path = \"sdk\"", |c| c.get_records_path == GetRecordsPath::Sdk),
        ("get_records_path = \"lean_cbor\"", |c| c.get_records_path == GetRecordsPath::Lean(WireFormat::Cbor)),
        ("shardSyncIntervalMillis = 1234", |c| c.shard_sync_interval == Duration::from_millis(1234)),
        ("finished_lease_grace_ms = 1000", |c| c.finished_lease_grace == Duration::from_secs(1)),
        ("give_up_after_ms = 5000", |c| c.give_up_after == Some(Duration::from_secs(5))),
        ("parentShardPollIntervalMillis = 10000", |c| c.parent_poll_interval == Duration::from_secs(10)),
        ("taskBackoffTimeMillis = 100\nretry_cap_ms = 400", |c| {
            c.retry_base == Duration::from_millis(100) && c.retry_cap == Duration::from_millis(400)
        }),
        ("callProcessRecordsEvenForEmptyRecordList = true", |c| c.call_process_records_even_for_empty),
        ("batch_max_records = 10\nbatch_max_bytes = 2048", |c| {
            c.processing.max_records == Some(10) && c.processing.max_bytes == Some(2048)
        }),
        ("batching_window_ms = 250\nparallelism = 4", |c| {
            c.processing.batching_window == Duration::from_millis(250) && c.processing.parallelism == 4
        }),
        ("checkpointing = \"after_each_batch\"", |c| c.processing.checkpointing == Checkpointing::AfterEachBatch),
        ("checkpointing = \"after_each_batch\"\ncheckpoint_every_records = 5000\ncheckpoint_every_ms = 30000", |c| {
            c.processing.checkpoint_interval
                == CheckpointInterval::every_batch().records(5000).period(Duration::from_secs(30))
        }),
        ("parallelism = 2\ncheckpoint_every_ms = 100", |c| {
            c.processing.checkpoint_interval == CheckpointInterval::every_batch().period(Duration::from_millis(100))
        }),
        ("max_attempts = 3\nbisect_on_error = true\nmax_record_age_secs = 60", |c| {
            let p = c.effective_retry_policy();
            p.max_attempts == Some(3) && p.bisect_on_error && p.max_record_age == Some(Duration::from_secs(60))
        }),
        ("partial_retry = \"failed_only\"", |c| c.effective_retry_policy().partial_retry == PartialRetry::FailedOnly),
        ("on_exhausted = \"block\"", |c| c.effective_retry_policy().on_exhausted == OnExhausted::Block),
        ("retry_base_ms = 20\nmax_attempts = 2", |c| {
            c.effective_retry_policy().backoff_base == Duration::from_millis(20)
        }),
        ("stream_discovery_interval_ms = 5000\nremoved_stream_grace_ms = 60000", |c| {
            c.stream_discovery_interval == Duration::from_secs(5) && c.removed_stream_grace == Duration::from_secs(60)
        }),
        ("lease_duration_ms = \"15000\"", |c| c.lease.lease_duration() == Duration::from_secs(15)),
    ];
    for (toml, check) in cases {
        let config = load(toml, &[]).unwrap_or_else(|error| panic!("{toml:?} was refused: {error}"));
        assert!(check(&config), "{toml:?} did not set its setting: {config:?}");
    }
}

/// Each case: TOML text, environment, and words the error must contain (the key or variable, the expected form).
#[test]
fn bad_input_is_refused_naming_the_key_and_the_form() {
    let cases: &[(&str, Env<'_>, &[&str])] = &[
        ("lease_duraton_ms = 1", &[], &["unknown key", "lease_duraton_ms", "kcl.toml"]),
        ("[lease]\nduration = 1", &[], &["unknown key", "lease"]),
        ("lease_duration_ms = \"ten\"", &[], &["lease_duration_ms", "kcl.toml", "whole number of milliseconds"]),
        ("failoverTimeMillis = -5", &[], &["lease_duration_ms", "whole number of milliseconds"]),
        ("max_records = 0", &[], &["max_records", "at least 1"]),
        ("max_records = 20000", &[], &["max_records", "1..=10000"]),
        ("initial_position = \"OLDEST\"", &[], &["initial_position", "LATEST, TRIM_HORIZON, AT_TIMESTAMP"]),
        ("initial_position = \"AT_TIMESTAMP\"", &[], &["initial_position", "initial_position_timestamp_secs"]),
        ("bisect_on_error = \"yes\"", &[], &["bisect_on_error", "true or false"]),
        ("retrieval_mode = \"push\"", &[], &["retrieval_mode", "polling, fan_out"]),
        ("retrieval_mode = \"fan_out\"\nmax_records = 10", &[], &["max_records", "polling only"]),
        ("consumer_name = \"c\"", &[], &["consumer_name", "fan_out"]),
        ("lease_duration_ms = 1000\nfailoverTimeMillis = 2000", &[], &["failoverTimeMillis", "another name"]),
        ("lease_duration_ms = 0", &[], &["lease_duration_ms", "positive"]),
        ("retry_base_ms = 500\nretry_cap_ms = 100", &[], &["retry_backoff"]),
        ("parallelism = 65", &[], &["parallelism"]),
        ("checkpoint_every_records = 100", &[], &["checkpoint_every_records", "checkpoint_when_due"]),
        ("parallelism = 2\ncheckpoint_every_ms = 0", &[], &["checkpoint_every_ms", "more than 0"]),
        ("worker_id = [1]", &[], &["worker_id", "non-empty text"]),
        ("not toml at all", &[], &["kcl.toml", "not valid TOML"]),
        ("", &[("KCL_LEASE_DURATION_MS", "soon")], &["KCL_LEASE_DURATION_MS", "whole number of milliseconds"]),
        (
            "",
            &[("KCL_CALL_PROCESS_RECORDS_EVEN_FOR_EMPTY_RECORD_LIST", "1")],
            &["KCL_CALL_PROCESS_RECORDS_EVEN_FOR_EMPTY_RECORD_LIST", "true or false"],
        ),
    ];
    for (toml, env, words) in cases {
        let error = match load(toml, env) {
            Ok(config) => panic!("{toml:?} {env:?} was accepted: {config:?}"),
            Err(error) => error,
        };
        for word in *words {
            assert!(error.contains(word), "{toml:?} {env:?}: {error:?} should mention {word:?}");
        }
    }
}

#[test]
fn the_environment_wins_over_the_file_whatever_names_they_use() {
    // Each case: file, environment, expected lease duration in ms.
    let cases: &[(&str, Env<'_>, u64)] = &[
        ("lease_duration_ms = 20000", &[], 20_000),
        ("", &[("KCL_LEASE_DURATION_MS", "30000")], 30_000),
        ("lease_duration_ms = 20000", &[("KCL_LEASE_DURATION_MS", "30000")], 30_000),
        ("failoverTimeMillis = 20000", &[("KCL_LEASE_DURATION_MS", "30000")], 30_000),
        ("lease_duration_ms = 20000", &[("KCL_FAILOVER_TIME_MILLIS", "40000")], 40_000),
        ("lease_duration_ms = 20000", &[("kcl_lease_duration_ms", "30000")], 20_000),
        ("lease_duration_ms = 20000", &[("KCL_TEST_KINESIS_ENDPOINT", "http://127.0.0.1:1")], 20_000),
    ];
    for (toml, env, expected) in cases {
        let config = load(toml, env).unwrap_or_else(|error| panic!("{toml:?} {env:?}: {error}"));
        assert_eq!(config.lease.lease_duration(), Duration::from_millis(*expected), "{toml:?} {env:?}");
    }
    // Text, flags and choices from the environment.
    let config = load(
        "",
        &[
            ("KCL_WORKER_ID", "12345"),
            ("KCL_INITIAL_POSITION_IN_STREAM", "trim_horizon"),
            ("KCL_CALL_PROCESS_RECORDS_EVEN_FOR_EMPTY", "true"),
            ("KCL_MAX_RECORDS", "100"),
        ],
    )
    .unwrap();
    assert_eq!(config.worker_id.as_deref(), Some("12345"));
    assert_eq!(config.initial_position, InitialPosition::TrimHorizon);
    assert!(config.call_process_records_even_for_empty);
    assert_eq!(polling(&config).max_records, 100);
}

#[test]
fn every_listed_key_and_alias_is_a_field_and_documented() {
    let doc = include_str!("mod.rs");
    for (key, aliases) in KEYS {
        for name in std::iter::once(key).chain(aliases.iter()) {
            // An unknown field would be refused as unknown; a known one with a wrong value as a bad value.
            let toml = format!("{name} = [[]]");
            let error = load(&toml, &[]).unwrap_err();
            assert!(!error.contains("unknown"), "{name}: {error}");
            assert!(error.contains(key), "{name} should be reported as {key}: {error}");
            assert!(doc.contains(&format!("`{name}`")), "{name} is missing from the table in config/mod.rs");
            let var = format!("KCL_{}", snake_case(name).to_ascii_uppercase());
            let error = load("", &[(var.as_str(), "[[]]")]);
            if let Err(error) = error {
                assert!(error.contains(&var), "{var}: {error}");
            }
        }
    }
}

#[test]
fn a_file_overrides_the_code_defaults_it_is_laid_over_and_keeps_the_rest() {
    let base = WorkerConfig {
        worker_id: Some("from-code".to_owned()),
        initial_position: InitialPosition::TrimHorizon,
        retrieval: Retrieval::Polling(crate::retrieve::PollingConfig { max_records: 77, ..Default::default() }),
        filter: Some(crate::process::RecordFilter::new(|_| true)),
        ..WorkerConfig::default()
    };
    let toml = "idle_time_between_reads_ms = 50\nfailoverTimeMillis = 4000\non_exhausted = \"send_to_destination\"";
    let config = base.with_toml_and_vars(Some(toml), "kcl.toml", vars(&[("KCL_INITIAL_POSITION", "LATEST")])).unwrap();
    assert_eq!(config.worker_id.as_deref(), Some("from-code"));
    assert_eq!(config.initial_position, InitialPosition::Latest, "the environment wins over the code's choice");
    assert_eq!(polling(&config).max_records, 77, "a polling key changes only itself");
    assert_eq!(polling(&config).idle_time_between_reads, Duration::from_millis(50));
    assert_eq!(config.lease.lease_duration(), Duration::from_secs(4));
    assert!(config.lease.renewal_interval() < Duration::from_secs(2), "derived intervals follow the lease duration");
    assert!(config.filter.is_some(), "code-only settings stay");
    // The destination is set in code after loading; building checks for it.
    assert_eq!(config.effective_retry_policy().on_exhausted, OnExhausted::SendToDestination);
}
