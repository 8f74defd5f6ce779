//! The `custom-store` example as a fleet: two processes share one SQLite lease file and one multi-shard stream on
//! kinesis-mock (the in-memory stream cannot be shared between processes). Both hold leases, every record put is
//! processed, a process killed with SIGKILL has its shards taken over by the other, and after a graceful stop the
//! checkpoints in the SQLite file cover every record. Once per renewal mode. Plus the in-memory single-process run.
//!
//! Waits have deadlines only so that a broken fleet fails instead of hanging; nothing asserts how fast it is.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use kcl_core::ExtendedSequenceNumber;
use kcl_core::lease::{Lease, LeaseStore};
use kcl_examples::kinesis::{self, PutRecord};
use kcl_examples::sqlite_store::SqliteLeaseStore;

const SHARDS: usize = 4;
const RECORDS_PER_PHASE: usize = 200;
const DEADLINE: Duration = Duration::from_secs(120);

/// A `custom-store` process; killed when dropped, so a failing test leaves none behind.
struct Worker {
    name: &'static str,
    child: Child,
    output: PathBuf,
    log: PathBuf,
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Worker {
    fn start(name: &'static str, dir: &Path, args: &[&str]) -> Self {
        let (output, log) = (dir.join(format!("{name}.out")), dir.join(format!("{name}.log")));
        let log_file = File::create(&log).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_custom-store"))
            .args(["--worker-id", name, "--output", output.to_str().unwrap()])
            .args(args)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().unwrap())
            .stderr(log_file)
            .spawn()
            .expect("start custom-store");
        Worker { name, child, output, log }
    }

    /// The `(shard, sequence number)` of every line of its output so far.
    fn processed(&self) -> BTreeSet<(String, String)> {
        processed(&self.output)
    }

    fn log(&self) -> String {
        format!("--- {} log ---\n{}", self.name, std::fs::read_to_string(&self.log).unwrap_or_default())
    }

    /// Waits for the process to exit on its own.
    async fn exit_status(&mut self) -> ExitStatus {
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(started.elapsed() < DEADLINE, "{} did not exit\n{}", self.name, self.log());
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

fn processed(output: &Path) -> BTreeSet<(String, String)> {
    let text = std::fs::read_to_string(output).unwrap_or_default();
    text.lines()
        .map(|line| {
            let mut fields = line.splitn(3, ' ');
            let (shard, sequence, key) = (fields.next(), fields.next(), fields.next());
            match (shard, sequence, key) {
                (Some(shard), Some(sequence), Some(_key)) => (shard.to_owned(), sequence.to_owned()),
                _ => panic!("malformed output line {line:?} in {}", output.display()),
            }
        })
        .collect()
}

/// Polls `condition` every 200 ms; panics with the workers' logs when it still fails at the deadline.
async fn wait_for<F: AsyncFnMut() -> bool>(what: &str, workers: &[&Worker], mut condition: F) {
    let started = Instant::now();
    while !condition().await {
        if started.elapsed() > DEADLINE {
            let logs: Vec<String> = workers.iter().map(|w| w.log()).collect();
            panic!("timed out waiting for {what}\n{}", logs.join("\n"));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// How many leases each worker owns.
async fn owners(store: &SqliteLeaseStore) -> BTreeMap<String, usize> {
    let mut owners = BTreeMap::new();
    for lease in store.list_all_leases().await.unwrap() {
        *owners.entry(lease.lease_owner.unwrap_or_default()).or_default() += 1;
    }
    owners
}

async fn put(kinesis: &aws_sdk_kinesis::Client, stream: &str, phase: &str) -> Vec<PutRecord> {
    let records = (0..RECORDS_PER_PHASE).map(|i| (format!("{phase}-key-{i}"), format!("{phase} {i}").into_bytes()));
    kinesis::put_records(kinesis, stream, records.collect()).await.unwrap()
}

fn keys(records: &[PutRecord]) -> BTreeSet<(String, String)> {
    records.iter().map(|r| (r.shard_id.clone(), r.sequence_number.clone())).collect()
}

async fn two_processes_share_one_sqlite_file(heartbeats: bool) {
    let kinesis = kcl_tests::emulators().kinesis_client().await;
    let stream = kcl_tests::unique_name("custom-store");
    kinesis::create_stream(&kinesis, &stream, SHARDS as i32, false).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("leases.db");
    let mut args = vec![
        "--db",
        db.to_str().unwrap(),
        "--kinesis-endpoint",
        kcl_tests::emulators().kinesis_endpoint(),
        "--stream",
        &stream,
        "--lease-duration-ms",
        "2000",
    ];
    if heartbeats {
        args.push("--heartbeats");
    }
    let mut a = Worker::start("a", dir.path(), &args);
    let mut b = Worker::start("b", dir.path(), &args);
    let store = SqliteLeaseStore::builder(&db).open().await.unwrap();

    // Both hold leases: the fleet balances the four shards two and two through the shared file.
    wait_for("both processes to hold two leases each", &[&a, &b], async || {
        let owners = owners(&store).await;
        owners.get("a") == Some(&2) && owners.get("b") == Some(&2)
    })
    .await;

    let first = keys(&put(&kinesis, &stream, "first").await);
    let shards: BTreeSet<&String> = first.iter().map(|(shard, _)| shard).collect();
    assert_eq!(shards.len(), SHARDS, "the first records must reach every shard");
    wait_for("every first-phase record processed by one of the two", &[&a, &b], async || {
        let mut seen = a.processed();
        seen.extend(b.processed());
        first.is_subset(&seen)
    })
    .await;
    for worker in [&a, &b] {
        assert!(!worker.processed().is_empty(), "{} processed nothing\n{}", worker.name, worker.log());
    }

    // SIGKILL one process midway: no graceful handoff, its leases simply stop being renewed.
    let orphaned: BTreeSet<String> = store
        .list_all_leases()
        .await
        .unwrap()
        .into_iter()
        .filter(|lease| lease.lease_owner.as_deref() == Some("a"))
        .map(|lease| lease.lease_key)
        .collect();
    assert_eq!(orphaned.len(), 2, "a held two leases before it was killed");
    a.child.kill().unwrap();
    a.child.wait().unwrap();

    let second_put = put(&kinesis, &stream, "second").await;
    let second = keys(&second_put);
    wait_for("the survivor to process every second-phase record", &[&a, &b], async || second.is_subset(&b.processed()))
        .await;
    for shard in &orphaned {
        assert!(
            second.iter().any(|(s, _)| s == shard),
            "the second records must reach the killed process's shard {shard}"
        );
    }
    assert_eq!(owners(&store).await, BTreeMap::from([("b".to_owned(), SHARDS)]), "b took over a's shards");

    // A graceful stop writes the final checkpoints.
    assert_eq!(unsafe { libc::kill(b.child.id() as libc::pid_t, libc::SIGTERM) }, 0);
    let status = b.exit_status().await;
    assert!(status.success(), "b exited with {status}\n{}", b.log());

    let mut everything = first.clone();
    everything.extend(second.iter().cloned());
    let mut seen = a.processed();
    seen.extend(b.processed());
    let missing: Vec<_> = everything.difference(&seen).collect();
    assert!(missing.is_empty(), "records never processed: {missing:?}");

    let leases: BTreeMap<String, Lease> =
        store.list_all_leases().await.unwrap().into_iter().map(|l| (l.lease_key.clone(), l)).collect();
    assert_eq!(leases.len(), SHARDS);
    for (shard, sequence) in &everything {
        let last = ExtendedSequenceNumber::parse(sequence, 0).unwrap();
        let checkpoint = &leases[shard].checkpoint;
        assert!(checkpoint >= &last, "{shard}: checkpoint {checkpoint} does not cover record {sequence}");
    }
    let _ = kinesis.delete_stream().stream_name(&stream).send().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_share_one_sqlite_file_renewing_every_lease() {
    two_processes_share_one_sqlite_file(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_share_one_sqlite_file_with_worker_heartbeats() {
    two_processes_share_one_sqlite_file(true).await;
}

/// The README's in-memory run: one process puts 1000 readings, processes them all, exits 0, and the SQLite file
/// holds each shard's checkpoint at the last record the process wrote for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_memory_run_processes_and_checkpoints_everything() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("leases.db");
    let mut worker =
        Worker::start("memory", dir.path(), &["--db", db.to_str().unwrap(), "--lease-duration-ms", "2000"]);
    let status = worker.exit_status().await;
    assert!(status.success(), "in-memory run exited with {status}\n{}", worker.log());
    let seen = worker.processed();
    assert_eq!(seen.len(), 1000, "distinct records in the output\n{}", worker.log());

    let mut last: BTreeMap<&str, ExtendedSequenceNumber> = BTreeMap::new();
    for (shard, sequence) in &seen {
        let position = ExtendedSequenceNumber::parse(sequence, 0).unwrap();
        let entry = last.entry(shard.as_str()).or_insert(position.clone());
        *entry = entry.clone().max(position);
    }
    let store = SqliteLeaseStore::builder(&db).open().await.unwrap();
    let leases = store.list_all_leases().await.unwrap();
    assert_eq!(leases.len(), last.len(), "one lease per shard that had records");
    for lease in leases {
        assert_eq!(Some(&lease.checkpoint), last.get(lease.lease_key.as_str()), "{}", lease.lease_key);
        assert_eq!(lease.lease_owner, None, "a graceful stop releases the lease");
    }
}
