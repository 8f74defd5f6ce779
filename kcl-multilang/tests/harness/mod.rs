//! Shared harness of the real-client tests: the installed clients (amazon-kclpy, aws-kcl), a `kcl-multilang`
//! process with its log, records put with their sequence numbers, and the lease table's checkpoints.

#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use aws_sdk_kinesis::primitives::Blob;
use kcl_tests::emulators;

/// The repository root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace root").to_owned()
}

/// A MultiLangDaemon client and how to run its sample record processor.
pub struct Client {
    /// `executableName`.
    pub executable: String,
    /// Extra environment for the children.
    pub env: Vec<(String, String)>,
    /// What precedes a record's sequence number in the child's log.
    pub sequence_marker: &'static str,
    /// What the child logs when told `shutdownRequested`.
    pub shutdown_marker: &'static str,
}

fn installed(var: &str, what: &str) -> String {
    match std::env::var(var) {
        Ok(value) if !value.is_empty() => value,
        _ => panic!(
            "{var} is not set: {what} is not installed for this test. Run the tests with scripts/test, which \
             installs it (see its `kcl-multilang clients` block), or set {var} yourself"
        ),
    }
}

/// amazon-kclpy's unmodified `samples/sample_kclpy_app.py`, on the virtualenv's Python with the package on
/// `PYTHONPATH` (scripts/test exports both).
pub fn kclpy() -> Client {
    let python = installed("KCL_TEST_KCLPY_PYTHON", "the virtualenv Python for amazon-kclpy");
    let dir = installed("KCL_TEST_KCLPY_DIR", "amazon-kclpy 3.2.0 (its unpacked source distribution)");
    let sample = Path::new(&dir).join("samples/sample_kclpy_app.py");
    assert!(sample.is_file(), "{} is missing: re-run scripts/test to reinstall amazon-kclpy", sample.display());
    Client {
        executable: format!("{python} {}", sample.display()),
        env: vec![("PYTHONPATH".into(), dir), ("PYTHONUNBUFFERED".into(), "1".into())],
        sequence_marker: "Sequence Number: ",
        shutdown_marker: "Shutdown has been requested",
    }
}

/// The aws-kcl (npm) record processor of kcl-examples/multilang/node.
pub fn aws_kcl() -> Client {
    let dir = repo_root().join("kcl-examples/multilang/node");
    assert!(
        dir.join("node_modules/aws-kcl/index.js").is_file(),
        "aws-kcl is not installed in {}: run scripts/test (it runs `npm ci` there), or `npm ci --prefix {}`",
        dir.display(),
        dir.display()
    );
    Client {
        executable: format!("node {}", dir.join("sample_kcl_app.js").display()),
        env: vec![],
        sequence_marker: "SequenceNumber: ",
        shutdown_marker: "Checkpoint on shutdown",
    }
}

/// The properties file of kcl-examples/multilang with this test's settings appended (the last entry wins).
pub fn properties(app: &str, stream: &str, executable: &str, extra: &str) -> String {
    let base =
        std::fs::read_to_string(repo_root().join("kcl-examples/multilang/app.properties")).expect("app.properties");
    format!(
        "{base}\n# test settings\nexecutableName = {executable}\nstreamName = {stream}\napplicationName = {app}\n\
         kinesisEndpoint = {}\ndynamoDBEndpoint = {}\ntaskBackoffTimeMillis = 100\n{extra}\n",
        emulators().kinesis_endpoint(),
        emulators().dynamodb_endpoint()
    )
}

/// A running `kcl-multilang`, its stderr in a file.
pub struct Daemon {
    pub child: Child,
    pub log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Daemon {
    pub fn start(properties: &str, env: &[(String, String)]) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("app.properties");
        std::fs::write(&file, properties).expect("write properties");
        let log = dir.path().join("daemon.log");
        let child = Command::new(env!("CARGO_BIN_EXE_kcl-multilang"))
            .arg("--properties")
            .arg(&file)
            .current_dir(dir.path())
            .env("AWS_ACCESS_KEY_ID", "LOCAL")
            .env("AWS_SECRET_ACCESS_KEY", "LOCAL")
            .env("AWS_REGION", "us-east-1")
            .env("RUST_LOG", "info")
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .spawn()
            .expect("start kcl-multilang");
        Self { child, log, _dir: dir }
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until `done(log)` holds, or panics with the log after `limit`.
    pub fn wait_for(&self, what: &str, limit: Duration, done: impl Fn(&str) -> bool) {
        let deadline = Instant::now() + limit;
        loop {
            let log = self.log_text();
            if done(&log) {
                return;
            }
            if Instant::now() > deadline {
                panic!("timed out waiting for {what}; daemon log:\n{}", tail(&log, 80));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    pub fn signal(&self, signal: i32) {
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(self.pid(), signal) };
    }

    /// Waits for the daemon to exit, at most `limit`.
    pub fn wait_exit(&mut self, limit: Duration) -> ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("kcl-multilang did not exit within {limit:?}; log:\n{}", tail(&self.log_text(), 80));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Sequence numbers following `marker` anywhere in `text`, with the `pid=` of their log line.
pub fn logged_sequences(text: &str, marker: &str) -> Vec<(String, u32)> {
    let mut found = Vec::new();
    for line in text.lines() {
        let pid = field(line, "pid=").and_then(|p| p.parse().ok()).unwrap_or(0);
        let mut rest = line;
        while let Some(at) = rest.find(marker) {
            rest = &rest[at + marker.len()..];
            let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
            if !digits.is_empty() {
                found.push((digits, pid));
            }
        }
    }
    found
}

/// The value after `name` on a log line, up to the next space.
pub fn field<'a>(line: &'a str, name: &str) -> Option<&'a str> {
    let at = line.find(name)? + name.len();
    line[at..].split_whitespace().next()
}

/// The pid of the newest child started for `shard_id`, from the daemon's log.
pub fn child_pid(log: &str, shard_id: &str) -> Option<i32> {
    log.lines()
        .filter(|l| l.contains("started record processor") && l.contains(&format!("shard_id={shard_id}")))
        .filter_map(|l| field(l, "pid=")?.parse().ok())
        .next_back()
}

/// Puts `count` records with the given explicit hash key (or random partition keys); their sequence numbers per shard.
pub async fn put(
    kinesis: &aws_sdk_kinesis::Client,
    stream: &str,
    count: usize,
    tag: &str,
    hash_key: Option<&str>,
) -> BTreeMap<String, Vec<String>> {
    let mut by_shard: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for i in 0..count {
        let mut request = kinesis
            .put_record()
            .stream_name(stream)
            .partition_key(format!("key-{tag}-{i}"))
            .data(Blob::new(format!("{tag} record {i}")));
        if let Some(hash_key) = hash_key {
            request = request.explicit_hash_key(hash_key);
        }
        let out = request.send().await.expect("PutRecord");
        by_shard.entry(out.shard_id).or_default().push(out.sequence_number);
    }
    by_shard
}

pub fn merge(into: &mut BTreeMap<String, Vec<String>>, from: BTreeMap<String, Vec<String>>) {
    for (shard, seqs) in from {
        into.entry(shard).or_default().extend(seqs);
    }
}

/// The lease table's checkpoints: lease key → checkpoint.
pub async fn checkpoints(table: &str) -> BTreeMap<String, String> {
    let dynamodb = emulators().dynamodb_client().await;
    let items = dynamodb.scan().table_name(table).send().await.expect("Scan lease table").items.unwrap_or_default();
    items
        .into_iter()
        .filter_map(|item| {
            let key = item.get("leaseKey")?.as_s().ok()?.clone();
            let checkpoint = item.get("checkpoint")?.as_s().ok()?.clone();
            Some((key, checkpoint))
        })
        .collect()
}

/// Whether process `pid` is alive (and not a zombie).
pub fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat.rsplit(')').next().is_some_and(|rest| rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

/// Every sequence number in `expected` appears in `logged`.
pub fn missing(expected: &BTreeMap<String, Vec<String>>, logged: &[(String, u32)]) -> Vec<String> {
    let seen: BTreeSet<&str> = logged.iter().map(|(s, _)| s.as_str()).collect();
    expected.values().flatten().filter(|s| !seen.contains(s.as_str())).cloned().collect()
}
