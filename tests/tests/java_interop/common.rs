//! Set-up shared by the interop tests: a stream, an application name, a fleet directory.

use std::collections::BTreeMap;
use std::time::Duration;

use kcl_core::ExtendedSequenceNumber;
use kcl_tests::interop::{Fleet, Judged, Spec};
use kcl_tests::verify::{Entry, Event};
use kcl_tests::{emulators, kinesis, unique_name};

/// Lease duration of every worker: short, so that takeovers happen within the test's budget.
pub const LEASE_MS: u64 = 3_000;

/// One test's stream, application, clients and fleet.
pub struct Setup {
    pub kinesis: aws_sdk_kinesis::Client,
    pub dynamodb: aws_sdk_dynamodb::Client,
    pub stream: String,
    pub app: String,
    pub fleet: Fleet,
    /// Kept (not deleted) when the test fails.
    pub dir: tempfile::TempDir,
}

impl Setup {
    /// A new stream with `shards` shards and an empty fleet.
    pub async fn new(prefix: &str, shards: i32) -> Self {
        let emulators = emulators();
        let kinesis = emulators.kinesis_client().await;
        let dynamodb = emulators.dynamodb_client().await;
        let stream = unique_name(prefix);
        let app = unique_name(&format!("{prefix}-app"));
        kinesis::create_stream(&kinesis, &stream, shards).await;
        let dir = tempfile::Builder::new().prefix(&format!("{prefix}-")).tempdir().expect("temporary directory");
        let fleet = Fleet::new(Spec {
            stream: stream.clone(),
            app: app.clone(),
            kinesis_endpoint: emulators.kinesis_endpoint().to_owned(),
            dynamodb_endpoint: emulators.dynamodb_endpoint().to_owned(),
            lease_duration_ms: LEASE_MS,
            dir: dir.path().to_owned(),
        });
        Self { kinesis, dynamodb, stream, app, fleet, dir }
    }

    /// Asserts the verdict; on failure keeps the files and names them.
    pub fn assert_passed(self, judged: &Judged) {
        let Setup { dir, .. } = self;
        if !judged.report.passed() {
            let kept = dir.keep();
            panic!("interop run failed; files kept in {}\n{}", kept.display(), judged.report);
        }
        eprintln!("{}", judged.report);
    }

    /// Keeps the files and panics with `message`.
    pub fn fail(self, message: &str) -> ! {
        let kept = self.dir.keep();
        panic!("{message}; files kept in {}", kept.display());
    }
}

/// Per shard: the checkpoint each processor instance of `worker` started from, in start order.
pub fn init_checkpoints(journal: &[Entry], worker: &str) -> BTreeMap<String, Vec<ExtendedSequenceNumber>> {
    let mut inits: BTreeMap<String, Vec<ExtendedSequenceNumber>> = BTreeMap::new();
    for entry in journal.iter().filter(|e| e.worker == worker) {
        if let Event::Init { shard, checkpoint, .. } = &entry.event {
            inits.entry(shard.clone()).or_default().push(checkpoint.clone());
        }
    }
    inits
}

/// Generous bound for a phase that waits on Java KCL's start-up (10–30 s on a loaded 2-core machine).
pub const JAVA_START: Duration = Duration::from_secs(120);
