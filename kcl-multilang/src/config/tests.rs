//! Table-driven tests of reading properties files.

use super::*;

const BASE: &str = "executableName = python3 app.py\napplicationName = app\nstreamName = s\n";

fn parse(extra: &str) -> Result<(DaemonConfig, Vec<Notice>), MultilangError> {
    DaemonConfig::parse(&format!("{BASE}{extra}"), "app.properties")
}

#[test]
fn reads_the_java_sample_file() {
    let text = "executableName = sample_kclpy_app.py\nstreamArn = arn:aws:kinesis:us-east-5:000000000000:stream/kclpysample\n\
        streamName = other\napplicationName = PythonKCLSample\nAwsCredentialsProvider = DefaultCredentialsProvider\n\
        processingLanguage = python/3.8\ninitialPositionInStream = TRIM_HORIZON\nregionName = us-east-1\n";
    let (config, notices) = DaemonConfig::parse(text, "sample.properties").unwrap();
    assert_eq!(config.executable, vec!["sample_kclpy_app.py"]);
    assert_eq!(config.stream_name, "kclpysample", "streamArn takes precedence");
    assert_eq!(config.table_name, "PythonKCLSample");
    assert_eq!(config.initial_position, InitialPosition::TrimHorizon);
    assert!(!config.polling, "no polling key: fan-out, as Java's DEFAULT");
    assert!(matches!(&notices[..], [Notice::WithoutEffect { key, .. }] if key == "AwsCredentialsProvider"));
}

#[test]
fn bad_values_name_the_key_and_line() {
    let cases = [
        ("maxRecords = lots\n", "maxRecords", 4),
        ("\n\nmaxRecords = 0\n", "maxRecords", 6),
        ("failoverTimeMillis = -1\n", "failoverTimeMillis", 4),
        ("initialPositionInStream = OLDEST\n", "initialPositionInStream", 4),
        ("initialPositionInStream = AT_TIMESTAMP\n", "initialPositionInStream", 4),
        ("retrievalMode = SOMETIMES\n", "retrievalMode", 4),
        ("callProcessRecordsEvenForEmptyRecordList = yes\n", "callProcessRecordsEvenForEmptyRecordList", 4),
        ("kinesisEndpoint = localhost:4567\n", "kinesisEndpoint", 4),
        ("streamArn = kclpysample\n", "streamArn", 4),
        ("timeoutInSeconds = 0\n", "timeoutInSeconds", 4),
    ];
    for (extra, key, line) in cases {
        match parse(extra) {
            Err(MultilangError::BadValue { key: k, line: l, ref origin, .. }) => {
                assert_eq!((k, l, origin.as_str()), (key, line, "app.properties"), "{extra}");
                let message = parse(extra).unwrap_err().to_string();
                assert!(message.contains(key) && message.contains(&format!("app.properties:{line}")), "{message}");
            }
            other => panic!("{extra}: expected a bad value error, got {other:?}"),
        }
    }
}

#[test]
fn missing_required_keys_are_named() {
    for (text, key) in [
        ("applicationName = a\nstreamName = s\n", "executableName"),
        ("executableName = x\nstreamName = s\n", "applicationName"),
        ("executableName = x\napplicationName = a\n", "streamName"),
    ] {
        match DaemonConfig::parse(text, "f") {
            Err(MultilangError::MissingKey { key: k, .. }) => assert_eq!(k, key),
            other => panic!("expected {key} missing, got {other:?}"),
        }
    }
}

#[test]
fn unknown_keys_are_warnings_naming_them() {
    let (_, notices) = parse("streamNmae = typo\nmetricsLevel = NONE\n").unwrap();
    assert_eq!(
        notices,
        vec![
            Notice::UnknownKey { key: "streamNmae".into(), line: 4 },
            Notice::WithoutEffect { key: "metricsLevel".into(), reason: "no CloudWatch metrics" },
        ]
    );
    assert!(notices[0].to_string().contains("`streamNmae`"));
}

#[test]
fn honoured_values() {
    let (c, _) = parse(
        "regionName = eu-west-1\nkinesisEndpoint = http://127.0.0.1:4567\ndynamoDBEndpoint = http://127.0.0.1:8000\n\
         tableName = leases\nworkerId = w1\nmaxRecords = 500\nidleTimeBetweenReadsInMillis = 250\n\
         failoverTimeMillis = 6000\nshardSyncIntervalMillis = 1000\nparentShardPollIntervalMillis = 300\n\
         taskBackoffTimeMillis = 100\ncallProcessRecordsEvenForEmptyRecordList = TRUE\nmaxLeasesForWorker = 3\n\
         maxLeasesToStealAtOneTime = 2\ntimeoutInSeconds = 7\nshutdownGraceMillis = 5000\n\
         initialPositionInStreamExtended = 1636609142\nINITIALPOSITIONINSTREAM = AT_TIMESTAMP\n",
    )
    .unwrap();
    assert_eq!(c.region.as_deref(), Some("eu-west-1"));
    assert_eq!(c.kinesis_endpoint.as_deref(), Some("http://127.0.0.1:4567"));
    assert_eq!(c.dynamodb_endpoint.as_deref(), Some("http://127.0.0.1:8000"));
    assert_eq!((c.table_name.as_str(), c.worker_id.as_deref()), ("leases", Some("w1")));
    assert_eq!(c.max_records, Some(500));
    assert!(c.polling, "maxRecords selects polling under DEFAULT");
    assert_eq!(c.idle_time_between_reads, Some(Duration::from_millis(250)));
    assert_eq!(c.failover_time, Some(Duration::from_secs(6)));
    assert_eq!(c.shard_sync_interval, Some(Duration::from_secs(1)));
    assert_eq!(c.parent_shard_poll_interval, Some(Duration::from_millis(300)));
    assert_eq!(c.task_backoff, Some(Duration::from_millis(100)));
    assert!(c.call_process_records_even_for_empty);
    assert_eq!((c.max_leases_for_worker, c.max_leases_to_steal_at_one_time), (Some(3), Some(2)));
    assert_eq!(c.timeout, Some(Duration::from_secs(7)));
    assert_eq!(c.shutdown_grace, Duration::from_secs(5));
    assert_eq!(
        c.initial_position,
        InitialPosition::AtTimestamp(std::time::UNIX_EPOCH + Duration::from_secs(1_636_609_142))
    );
}

#[test]
fn retrieval_mode_decision() {
    let table = [
        (RetrievalMode::Default, false, false),
        (RetrievalMode::Default, true, true),
        (RetrievalMode::Polling, false, true),
        (RetrievalMode::Polling, true, true),
        (RetrievalMode::FanOut, false, false),
        (RetrievalMode::FanOut, true, false),
    ];
    for (mode, polling_key_set, expected) in table {
        assert_eq!(uses_polling(mode, polling_key_set), expected, "{mode:?} {polling_key_set}");
    }
}
