//! Every properties key kcl-multilang reads, with its meaning, its Java MultiLangDaemon default and how its value is
//! parsed; and the Java keys it accepts without effect. `kcl-multilang --help-keys` prints this table.

use std::time::{Duration, UNIX_EPOCH};

use super::{Draft, InitialPositionKey, RetrievalMode};

/// A key kcl-multilang honours.
pub(crate) struct Key {
    /// The key as the Java daemon spells it.
    pub(crate) name: &'static str,
    /// What it does, its default and the Java name when it differs.
    pub(crate) meaning: &'static str,
    /// Stores the parsed value in the draft, or says what is wrong with it.
    pub(crate) apply: fn(&mut Draft, &str) -> Result<(), String>,
    /// Whether setting it makes `retrievalMode = DEFAULT` choose polling (Java's rule).
    pub(crate) polling: bool,
}

const fn key(name: &'static str, meaning: &'static str, apply: fn(&mut Draft, &str) -> Result<(), String>) -> Key {
    Key { name, meaning, apply, polling: false }
}

const fn polling_key(
    name: &'static str,
    meaning: &'static str,
    apply: fn(&mut Draft, &str) -> Result<(), String>,
) -> Key {
    Key { name, meaning, apply, polling: true }
}

/// The honoured keys. Names match exactly or ignoring case.
pub(crate) static KEYS: &[Key] = &[
    key(
        "executableName",
        "Required. The record processor program, run once per shard: the value is split at spaces \
        into the program and its arguments (`python3 sample_kclpy_app.py`); run in kcl-multilang's working directory",
        |d, v| {
            let words: Vec<String> = v.split(' ').filter(|w| !w.is_empty()).map(str::to_owned).collect();
            if words.is_empty() {
                return Err("expected a program, e.g. `executableName = python3 app.py`".into());
            }
            d.executable = Some(words);
            Ok(())
        },
    ),
    key(
        "applicationName",
        "Required. The application name: the lease table's name (unless `tableName` is set) and \
        the fan-out consumer's name",
        |d, v| text(v).map(|v| d.application_name = Some(v)),
    ),
    key("streamName", "The stream to consume (required unless `streamArn` is set)", |d, v| {
        text(v).map(|v| d.stream_name = Some(v))
    }),
    key(
        "streamArn",
        "The stream as an ARN, `arn:aws:kinesis:REGION:ACCOUNT:stream/NAME`; takes precedence over \
        `streamName`",
        |d, v| stream_name_from_arn(v).map(|name| d.stream_from_arn = Some(name)),
    ),
    key(
        "regionName",
        "AWS region of Kinesis and DynamoDB (default: the SDK's region chain, e.g. `AWS_REGION`)",
        |d, v| text(v).map(|v| d.region = Some(v)),
    ),
    key("kinesisEndpoint", "Kinesis endpoint URL override (local emulators, VPC endpoints)", |d, v| {
        url(v).map(|v| d.kinesis_endpoint = Some(v))
    }),
    key("dynamoDBEndpoint", "DynamoDB endpoint URL override", |d, v| url(v).map(|v| d.dynamodb_endpoint = Some(v))),
    key("tableName", "Lease table name (default: `applicationName`)", |d, v| text(v).map(|v| d.table_name = Some(v))),
    key(
        "workerId",
        "This worker's id, unique in the fleet (default: host name + random suffix; Java: a random UUID)",
        |d, v| text(v).map(|v| d.worker_id = Some(v)),
    ),
    key(
        "initialPositionInStream",
        "Where shards without a checkpoint start: `TRIM_HORIZON`, `LATEST` (default) or \
        `AT_TIMESTAMP` (then `initialPositionInStreamExtended` gives the time)",
        |d, v| {
            d.initial_position = Some(match v.trim().to_ascii_uppercase().as_str() {
                "TRIM_HORIZON" => InitialPositionKey::TrimHorizon,
                "LATEST" => InitialPositionKey::Latest,
                "AT_TIMESTAMP" => InitialPositionKey::AtTimestamp,
                _ => return Err("expected TRIM_HORIZON, LATEST or AT_TIMESTAMP".into()),
            });
            Ok(())
        },
    ),
    key(
        "initialPositionInStreamExtended",
        "Start shards without a checkpoint at this time, in seconds since the \
        epoch (`AT_TIMESTAMP`)",
        |d, v| {
            let seconds: u64 = number(v)?;
            d.timestamp = Some(UNIX_EPOCH + Duration::from_secs(seconds));
            Ok(())
        },
    ),
    polling_key("maxRecords", "Most records per `GetRecords` call, 1..=10000 (default 10000)", |d, v| {
        let n: usize = number(v)?;
        if !(1..=10_000).contains(&n) {
            return Err("expected a number between 1 and 10000".into());
        }
        d.max_records = Some(n);
        Ok(())
    }),
    polling_key(
        "idleTimeBetweenReadsInMillis",
        "Longest wait between reads of a caught-up shard (default 1500 ms in \
        kcl-rs, which reads again at once while behind; Java 1000 ms)",
        |d, v| millis(v).map(|v| d.idle_time_between_reads = Some(v)),
    ),
    polling_key(
        "retryGetRecordsInSeconds",
        "Accepted for compatibility (kcl-rs retries reads with backoff); selects \
        polling like in Java",
        |_, v| number::<u64>(v).map(drop),
    ),
    polling_key(
        "maxGetRecordsThreadPool",
        "Accepted for compatibility (no thread pool); selects polling like in \
        Java",
        |_, v| number::<u64>(v).map(drop),
    ),
    polling_key(
        "millisBehindLatestThresholdForReducedTps",
        "Accepted for compatibility (kcl-rs adapts its read rate \
        itself); selects polling like in Java",
        |_, v| number::<u64>(v).map(drop),
    ),
    key(
        "retrievalMode",
        "`POLLING`, `FANOUT` or `DEFAULT` (default: fan-out, unless a polling key such as \
        `maxRecords` is set, as in Java)",
        |d, v| {
            d.retrieval_mode = match v.trim().to_ascii_uppercase().as_str() {
                "POLLING" => RetrievalMode::Polling,
                "FANOUT" => RetrievalMode::FanOut,
                "DEFAULT" => RetrievalMode::Default,
                _ => return Err("expected POLLING, FANOUT or DEFAULT".into()),
            };
            Ok(())
        },
    ),
    key("consumerName", "Fan-out consumer name (default: `applicationName`)", |d, v| {
        text(v).map(|v| d.consumer_name = Some(v))
    }),
    key(
        "failoverTimeMillis",
        "Lease duration: a lease not renewed for this long is taken over (default 10000)",
        |d, v| millis(v).map(|v| d.failover_time = Some(v)),
    ),
    key("shardSyncIntervalMillis", "How often shards are listed to find new ones (default 60000)", |d, v| {
        millis(v).map(|v| d.shard_sync_interval = Some(v))
    }),
    key(
        "parentShardPollIntervalMillis",
        "How often a child shard checks whether its parents are finished (default \
        1000 in kcl-rs; Java 10000)",
        |d, v| millis(v).map(|v| d.parent_shard_poll_interval = Some(v)),
    ),
    key(
        "taskBackoffTimeMillis",
        "Backoff before a failed batch is retried on a fresh child, doubling up to 30 s \
        (default 500)",
        |d, v| millis(v).map(|v| d.task_backoff = Some(v)),
    ),
    key(
        "callProcessRecordsEvenForEmptyRecordList",
        "Send `processRecords` with no records too (default false)",
        |d, v| boolean(v).map(|v| d.call_process_records_even_for_empty = v),
    ),
    key("maxLeasesForWorker", "Most leases this worker holds (default unlimited)", |d, v| {
        positive(v).map(|v| d.max_leases_for_worker = Some(v))
    }),
    key("maxLeasesToStealAtOneTime", "Most leases taken from other workers at once (default 1)", |d, v| {
        positive(v).map(|v| d.max_leases_to_steal_at_one_time = Some(v))
    }),
    key(
        "gracefulLeaseHandoffTimeoutMillis",
        "How long a lease handed to another worker waits for this worker's \
        checkpoint (default 30000)",
        |d, v| millis(v).map(|v| d.handoff_timeout = Some(v)),
    ),
    key(
        "leaseTableDeletionProtectionEnabled",
        "Create the lease table with deletion protection (default false)",
        |d, v| boolean(v).map(|v| d.deletion_protection = v),
    ),
    key(
        "timeoutInSeconds",
        "How long to wait for each reply of a child; a child silent for longer is killed and the \
        batch retried on a fresh child (default: wait forever, as Java; Java halts the whole daemon instead)",
        |d, v| {
            let seconds: u64 = number(v)?;
            if seconds == 0 {
                return Err("expected a positive number of seconds".into());
            }
            d.timeout = Some(Duration::from_secs(seconds));
            Ok(())
        },
    ),
    key(
        "shutdownGraceMillis",
        "After SIGTERM, how long the graceful shutdown (children told `shutdownRequested`, \
        checkpoints written) may take before kcl-multilang gives up and exits with status 1 (default 30000)",
        |d, v| millis(v).map(|v| d.shutdown_grace = Some(v)),
    ),
    key("processingLanguage", "Shown in the start-up log (Java adds it to the user agent)", |d, v| {
        text(v).map(|v| d.processing_language = Some(v))
    }),
];

/// Java MultiLangDaemon keys accepted without effect (reported at INFO, not as unknown), with the reason.
pub(crate) const WITHOUT_EFFECT: &[(&str, &str)] = &[
    ("AwsCredentialsProvider", "credentials come from the AWS SDK's default chain (environment, profile, IMDS)"),
    ("AwsCredentialsProviderDynamoDB", "credentials come from the AWS SDK's default chain"),
    ("AwsCredentialsProviderCloudWatch", "no CloudWatch metrics; kcl-rs emits `metrics` counters instead"),
    ("metricsLevel", "no CloudWatch metrics"),
    ("metricsBufferTimeMillis", "no CloudWatch metrics"),
    ("metricsMaxQueueSize", "no CloudWatch metrics"),
    ("metricsEnabledDimensions", "no CloudWatch metrics"),
    ("maxActiveThreads", "no thread pool: one task per shard on a small async runtime"),
    ("validateSequenceNumberBeforeCheckpointing", "checkpoints are validated against the delivered records"),
    ("cleanupLeasesUponShardCompletion", "finished leases are always deleted after a grace period"),
    ("clientVersionConfig", "kcl-rs reads Java KCL 2.x and 3.x lease tables as they are"),
    ("maxLeaseRenewalThreads", "no thread pool"),
    ("initialLeaseTableReadCapacity", "the lease table is created on demand (PAY_PER_REQUEST)"),
    ("initialLeaseTableWriteCapacity", "the lease table is created on demand (PAY_PER_REQUEST)"),
    ("isGracefulLeaseHandoffEnabled", "leases are always handed over gracefully"),
    ("skipShardSyncAtWorkerInitializationIfLeasesExist", "shard sync is cheap and always runs"),
    ("logWarningForTaskAfterMillis", "not implemented"),
];

/// The honoured key named `name` (exactly, or else ignoring case).
pub(crate) fn find(name: &str) -> Option<&'static Key> {
    KEYS.iter().find(|k| k.name == name).or_else(|| KEYS.iter().find(|k| k.name.eq_ignore_ascii_case(name)))
}

/// Why a Java key has no effect, if `name` is one.
pub(crate) fn without_effect(name: &str) -> Option<&'static str> {
    WITHOUT_EFFECT.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, why)| *why)
}

fn text(value: &str) -> Result<String, String> {
    let value = value.trim();
    if value.is_empty() { Err("expected a value, found nothing".into()) } else { Ok(value.to_owned()) }
}

fn url(value: &str) -> Result<String, String> {
    let value = text(value)?;
    if value.starts_with("http://") || value.starts_with("https://") {
        Ok(value)
    } else {
        Err("expected a URL starting with http:// or https://".into())
    }
}

fn number<T: std::str::FromStr>(value: &str) -> Result<T, String> {
    value.trim().parse().map_err(|_| "expected a whole number".to_owned())
}

fn positive(value: &str) -> Result<usize, String> {
    match number::<usize>(value)? {
        0 => Err("expected a number above 0".into()),
        n => Ok(n),
    }
}

fn millis(value: &str) -> Result<Duration, String> {
    number::<u64>(value).map(Duration::from_millis)
}

fn boolean(value: &str) -> Result<bool, String> {
    match value.trim().to_ascii_lowercase().as_str() {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err("expected true or false".into()),
    }
}

fn stream_name_from_arn(value: &str) -> Result<String, String> {
    let value = value.trim();
    let parts: Vec<&str> = value.splitn(6, ':').collect();
    match parts.as_slice() {
        ["arn", _, "kinesis", _, _, resource] => match resource.strip_prefix("stream/") {
            Some(name) if !name.is_empty() && !name.contains('/') => Ok(name.to_owned()),
            _ => Err("expected arn:aws:kinesis:REGION:ACCOUNT:stream/NAME".into()),
        },
        _ => Err("expected arn:aws:kinesis:REGION:ACCOUNT:stream/NAME".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_unique_and_findable_ignoring_case() {
        for k in KEYS {
            assert!(std::ptr::eq(find(k.name).unwrap(), k), "{}", k.name);
            assert!(std::ptr::eq(find(&k.name.to_ascii_uppercase()).unwrap(), k), "{}", k.name);
            assert!(without_effect(k.name).is_none(), "{} is both honoured and without effect", k.name);
        }
    }

    #[test]
    fn stream_arns() {
        let cases = [
            ("arn:aws:kinesis:us-east-1:123456789012:stream/orders", Ok("orders")),
            ("arn:aws-cn:kinesis:cn-north-1:123456789012:stream/a-b", Ok("a-b")),
            ("arn:aws:kinesis:us-east-1:123456789012:stream/", Err(())),
            ("arn:aws:sqs:us-east-1:123456789012:queue", Err(())),
            ("orders", Err(())),
        ];
        for (arn, expected) in cases {
            assert_eq!(stream_name_from_arn(arn).map_err(drop), expected.map(str::to_owned), "{arn}");
        }
    }
}
