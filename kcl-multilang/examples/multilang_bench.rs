//! kcl-multilang next to the Java MultiLangDaemon, on the same amazon-kclpy app (kcl-examples/multilang/
//! counting_app.py) and the same kind of stream, runs interleaved: start-up to first record, daemon CPU per record,
//! peak RSS of the daemon process alone (children excluded). Prints one line per run and the medians with ratios.
//!
//! ```text
//! mvn -q -f interop/java-multilang/pom.xml dependency:copy-dependencies    # the Java daemon's jars
//! cargo build --release -p kcl-multilang --bin kcl-multilang --example multilang_bench
//! scripts/test -p kcl-multilang --no-run                                   # installs amazon-kclpy (prints nothing to run)
//! KCL_TEST_KCLPY_PYTHON=target/multilang-clients/venv/bin/python \
//! KCL_TEST_KCLPY_DIR=target/multilang-clients/amazon_kclpy-3.2.0 \
//!   target/debug/emulators run -- target/release/examples/multilang_bench --runs 3
//! ```
//!
//! `--daemon PATH` runs another kcl-multilang build (default `target/release/kcl-multilang`).
//!
//! Each run: a fresh 2-shard stream with 10 records and a fresh lease table; the daemon starts; once the app reports
//! its first record, 4000 more records are put at ~400 records/s; the run ends when the app has counted all of them.
//! CPU per record = the daemon's user + system CPU from the first record to the last, over those 4000 records.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::PutRecordsRequestEntry;
use kcl_tests::kinesis::{create_stream, delete_stream};
use kcl_tests::{emulators, unique_name};

const PRELOADED: usize = 10;

struct Options {
    daemon: Option<PathBuf>,
    runs: usize,
    records: usize,
    rate: usize,
}

#[derive(Clone, Copy, Debug)]
struct Figures {
    startup: Duration,
    cpu_per_record_us: f64,
    peak_rss_mib: f64,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Daemon {
    Rust,
    Java,
}

fn main() {
    let mut options = Options { daemon: None, runs: 3, records: 4000, rate: 400 };
    let args: Vec<String> = std::env::args().skip(1).collect();
    for pair in args.chunks(2) {
        let value =
            |name: &str| pair.get(1).and_then(|v| v.parse().ok()).unwrap_or_else(|| panic!("{name} needs a number"));
        match pair[0].as_str() {
            "--runs" => options.runs = value("--runs"),
            "--records" => options.records = value("--records"),
            "--rate" => options.rate = value("--rate"),
            "--daemon" => {
                options.daemon = pair.get(1).map(|p| std::fs::canonicalize(p).unwrap_or_else(|_| PathBuf::from(p)))
            }
            other => panic!("unknown argument {other}; expected --runs N --records N --rate N --daemon PATH"),
        }
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    runtime.block_on(bench(options));
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace root").to_owned()
}

async fn bench(options: Options) {
    let python =
        std::env::var("KCL_TEST_KCLPY_PYTHON").expect("KCL_TEST_KCLPY_PYTHON: the virtualenv Python (see the doc)");
    let kclpy =
        std::env::var("KCL_TEST_KCLPY_DIR").expect("KCL_TEST_KCLPY_DIR: the unpacked amazon-kclpy (see the doc)");
    let jars = root().join("interop/java-multilang/target/lib");
    assert!(
        jars.is_dir(),
        "{} is missing: mvn -q -f interop/java-multilang/pom.xml dependency:copy-dependencies",
        jars.display()
    );
    let rust = options.daemon.clone().unwrap_or_else(|| root().join("target/release/kcl-multilang"));
    assert!(rust.is_file(), "{} is missing: cargo build --release -p kcl-multilang", rust.display());
    let mut results: Vec<(Daemon, Figures)> = Vec::new();
    println!("daemon  run  start-up to first record  CPU per record  peak RSS (daemon alone)");
    for run in 1..=options.runs {
        for daemon in [Daemon::Rust, Daemon::Java] {
            let figures = one_run(daemon, &options, &python, &kclpy, &rust, &jars).await;
            println!(
                "{:<7} {run:>3}  {:>21.2} s  {:>11.1} µs  {:>13.1} MiB",
                format!("{daemon:?}"),
                figures.startup.as_secs_f64(),
                figures.cpu_per_record_us,
                figures.peak_rss_mib
            );
            results.push((daemon, figures));
        }
    }
    let median = |daemon: Daemon, pick: fn(&Figures) -> f64| {
        let mut values: Vec<f64> = results.iter().filter(|(d, _)| *d == daemon).map(|(_, f)| pick(f)).collect();
        values.sort_by(f64::total_cmp);
        values[values.len() / 2]
    };
    type Row = (&'static str, fn(&Figures) -> f64, &'static str);
    let rows: [Row; 3] = [
        ("start-up to first record (s)", |f| f.startup.as_secs_f64(), "goal ≤ 1 s"),
        ("daemon CPU per record (µs)", |f| f.cpu_per_record_us, "goal ≤ 1/3 of Java"),
        ("daemon peak RSS (MiB)", |f| f.peak_rss_mib, "goal ≤ 1/5 of Java"),
    ];
    println!("\nmedians of {} runs | kcl-multilang | Java MultiLangDaemon | ratio", options.runs);
    for (name, pick, goal) in rows {
        let (r, j) = (median(Daemon::Rust, pick), median(Daemon::Java, pick));
        println!("{name} | {r:.2} | {j:.2} | {:.3} ({goal})", r / j);
    }
}

async fn one_run(daemon: Daemon, options: &Options, python: &str, kclpy: &str, rust: &Path, jars: &Path) -> Figures {
    let kinesis = emulators().kinesis_client().await;
    let stream = unique_name("ml-bench");
    create_stream(&kinesis, &stream, 2).await;
    put(&kinesis, &stream, PRELOADED, "pre").await;
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("out");
    std::fs::create_dir(&out).expect("out dir");
    let base = std::fs::read_to_string(root().join("kcl-examples/multilang/app.properties")).expect("app.properties");
    let properties = dir.path().join("app.properties");
    let app = root().join("kcl-examples/multilang/counting_app.py");
    std::fs::write(
        &properties,
        format!(
            "{base}\nexecutableName = {python} {}\nstreamName = {stream}\napplicationName = {stream}\n\
             kinesisEndpoint = {}\ndynamoDBEndpoint = {}\nmetricsLevel = NONE\n",
            app.display(),
            emulators().kinesis_endpoint(),
            emulators().dynamodb_endpoint()
        ),
    )
    .expect("write properties");
    let mut command = match daemon {
        Daemon::Rust => {
            let mut c = Command::new(rust);
            c.arg("--properties").arg(&properties).env("RUST_LOG", "warn");
            c
        }
        Daemon::Java => {
            let mut c = Command::new("java");
            c.arg("-cp")
                .arg(format!("{}/*", jars.display()))
                .arg("software.amazon.kinesis.multilang.MultiLangDaemon")
                .arg("--properties-file")
                .arg(&properties);
            c
        }
    };
    let started = SystemTime::now();
    let mut child = command
        .current_dir(dir.path())
        .env("AWS_ACCESS_KEY_ID", "LOCAL")
        .env("AWS_SECRET_ACCESS_KEY", "LOCAL")
        .env("AWS_REGION", "us-east-1")
        .env("PYTHONPATH", kclpy)
        .env("KCL_BENCH_OUT", &out)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.path().join("daemon.log")).expect("log"))
        .spawn()
        .expect("start the daemon");
    let pid = child.id();
    let deadline = Instant::now() + Duration::from_secs(240);
    let first = loop {
        if let Some(first) = progress(&out).1 {
            break first;
        }
        check(&mut child, deadline, dir.path(), "the first record");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let cpu_first = cpu_seconds(pid);
    let startup = first.duration_since(started).unwrap_or_default();
    // Steady traffic: `rate` records a second in PutRecords calls every 100 ms.
    let per_call = (options.rate / 10).max(1);
    let mut sent = 0;
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    while sent < options.records {
        tick.tick().await;
        let n = per_call.min(options.records - sent);
        put(&kinesis, &stream, n, &format!("s{sent}")).await;
        sent += n;
    }
    while progress(&out).0 < PRELOADED + options.records {
        check(&mut child, deadline, dir.path(), "every record");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let cpu_done = cpu_seconds(pid);
    let peak_rss_mib = peak_rss_kib(pid) as f64 / 1024.0;
    // SAFETY: SIGTERM to the daemon this function started.
    unsafe { libc::kill(pid as i32, libc::SIGTERM) };
    let stop_deadline = Instant::now() + Duration::from_secs(30);
    while child.try_wait().expect("try_wait").is_none() {
        if Instant::now() > stop_deadline {
            let _ = child.kill();
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = child.wait();
    delete_stream(&kinesis, &stream).await;
    Figures { startup, cpu_per_record_us: (cpu_done - cpu_first) * 1e6 / options.records as f64, peak_rss_mib }
}

fn check(child: &mut Child, deadline: Instant, dir: &Path, waiting_for: &str) {
    let log = || std::fs::read_to_string(dir.join("daemon.log")).unwrap_or_default();
    if let Ok(Some(status)) = child.try_wait() {
        panic!("the daemon exited ({status}) before {waiting_for}; log:\n{}", log());
    }
    if Instant::now() > deadline {
        let _ = child.kill();
        let text = log();
        panic!("timed out waiting for {waiting_for}; log tail:\n{}", &text[text.len().saturating_sub(4000)..]);
    }
}

/// Records counted by the app so far, and when it logged its first batch.
fn progress(out: &Path) -> (usize, Option<SystemTime>) {
    let mut total = 0;
    let mut first: Option<f64> = None;
    for entry in std::fs::read_dir(out).into_iter().flatten().flatten() {
        let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
        for line in text.lines() {
            let mut parts = line.split(' ');
            let (Some(Ok(time)), Some(Ok(count))) =
                (parts.next().map(str::parse::<f64>), parts.next().map(str::parse::<usize>))
            else {
                continue;
            };
            total += count;
            first = Some(first.map_or(time, |f| f.min(time)));
        }
    }
    (total, first.map(|t| UNIX_EPOCH + Duration::from_secs_f64(t)))
}

/// User + system CPU of the process alone (not its children), from /proc/PID/stat.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat.rsplit(')').next().unwrap_or("").split_whitespace().collect();
    // After the command: state is field 3, utime field 14, stime field 15 (1-based in proc(5)).
    let ticks = |i: usize| fields.get(i - 3).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // SAFETY: sysconf is always safe to call.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    (ticks(14) + ticks(15)) / hz
}

/// Peak resident set size (VmHWM) of the process alone.
fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

async fn put(kinesis: &aws_sdk_kinesis::Client, stream: &str, count: usize, tag: &str) {
    let entries: Vec<PutRecordsRequestEntry> = (0..count)
        .map(|i| {
            PutRecordsRequestEntry::builder()
                .partition_key(format!("{tag}-{i}"))
                .data(Blob::new(format!("{{\"reading\": {i}, \"tag\": \"{tag}\"}}")))
                .build()
                .expect("entry")
        })
        .collect();
    let out = kinesis.put_records().stream_name(stream).set_records(Some(entries)).send().await.expect("PutRecords");
    assert_eq!(out.failed_record_count.unwrap_or(0), 0, "PutRecords rejected records");
}
