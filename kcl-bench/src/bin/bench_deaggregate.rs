//! De-aggregation throughput on one core: KPL aggregates of 100 user records × 100 bytes.
//!
//! ```text
//! cargo run --release -p kcl-bench --bin bench_deaggregate [-- SECONDS]
//! ```
//!
//! Prints `deaggregate_throughput: N user_records/s, M MB/s` (MB = 10^6 bytes of aggregated records read), then the
//! same with the shard hash-range check on (every partition key hashed). Single-threaded loop, output vector reused
//! as a retrieval loop would; SECONDS (default 3) per measurement.
//!
//! The rates are per wall-clock second. On a shared machine the thread may not get a whole core, so each line also
//! gives the rate per second of CPU time the thread actually got (Linux: `/proc/thread-self/schedstat`) and that
//! share of a core.

use std::hint::black_box;
use std::time::{Duration, Instant};

use bytes::Bytes;
use kcl_core::deaggregate::{Deaggregated, KinesisRecord, UserRecordInput, aggregate, deaggregate_into_for_shard};
use kcl_core::{HashKeyRange, SequenceNumber};

const RECORDS_PER_AGGREGATE: usize = 100;
const RECORD_BYTES: usize = 100;
/// Distinct aggregates cycled through, so the loop does not just re-read one blob from L1.
const AGGREGATES: usize = 64;

fn main() {
    let seconds: f64 = std::env::args().nth(1).and_then(|s| s.parse().ok()).unwrap_or(3.0);
    let duration = Duration::from_secs_f64(seconds);
    let raws = build_aggregates();
    let blob_len = raws[0].data.len();
    println!(
        "{AGGREGATES} aggregates of {RECORDS_PER_AGGREGATE} user records x {RECORD_BYTES} B \
         ({blob_len} B each, a distinct partition key per user record, every 10th with an explicit hash key)"
    );

    // Warm-up, and a check that the input really is what we measure.
    let mut out = Vec::with_capacity(RECORDS_PER_AGGREGATE);
    for raw in &raws {
        out.clear();
        let outcome = deaggregate_into_for_shard(raw.clone(), None, &mut out);
        assert_eq!(outcome, Deaggregated::Aggregate { user_records: RECORDS_PER_AGGREGATE });
    }

    report("deaggregate_throughput", measure(&raws, None, duration));
    // Not the full range, so every user record's hash key is computed and checked (all are inside).
    let almost_full = HashKeyRange::new(0, u128::MAX - 1);
    report("deaggregate_with_shard_filter_throughput", measure(&raws, almost_full, duration));
}

struct Measurement {
    user_records: u64,
    bytes: u64,
    elapsed: Duration,
    /// CPU time the thread got, when the OS says.
    cpu: Option<Duration>,
}

/// CPU time this thread has run for (Linux), from the first field of `/proc/thread-self/schedstat` (nanoseconds).
fn thread_cpu_time() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    Some(Duration::from_nanos(stat.split_whitespace().next()?.parse().ok()?))
}

fn measure(raws: &[KinesisRecord], range: Option<HashKeyRange>, duration: Duration) -> Measurement {
    let mut out = Vec::with_capacity(RECORDS_PER_AGGREGATE);
    let (mut user_records, mut bytes) = (0u64, 0u64);
    let cpu_start = thread_cpu_time();
    let start = Instant::now();
    while start.elapsed() < duration {
        // Check the clock once per batch of aggregates.
        for raw in raws {
            out.clear();
            bytes += raw.data.len() as u64;
            let outcome = deaggregate_into_for_shard(black_box(raw.clone()), range, &mut out);
            user_records += black_box(outcome).records_appended() as u64;
            black_box(&out);
        }
    }
    let elapsed = start.elapsed();
    let cpu = cpu_start.zip(thread_cpu_time()).map(|(from, to)| to.saturating_sub(from));
    Measurement { user_records, bytes, elapsed, cpu }
}

fn report(name: &str, m: Measurement) {
    let secs = m.elapsed.as_secs_f64();
    let per_cpu = match m.cpu.map(|cpu| cpu.as_secs_f64()).filter(|&cpu| cpu > 0.0) {
        Some(cpu) => format!(
            "; per CPU-second: {:.0} user_records/s, {:.1} MB/s; the thread got {:.0}% of a core",
            m.user_records as f64 / cpu,
            m.bytes as f64 / cpu / 1e6,
            100.0 * cpu / secs
        ),
        None => String::new(),
    };
    println!(
        "{name}: {:.0} user_records/s, {:.1} MB/s ({} user records in {secs:.2} s{per_cpu})",
        m.user_records as f64 / secs,
        m.bytes as f64 / secs / 1e6,
        m.user_records
    );
}

fn build_aggregates() -> Vec<KinesisRecord> {
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    let mut next = move || {
        // xorshift64*: deterministic filler, no dependency on a RNG crate's version.
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        state.wrapping_mul(0x2545_f491_4f6c_dd1d)
    };
    (0..AGGREGATES)
        .map(|a| {
            let keys: Vec<String> = (0..RECORDS_PER_AGGREGATE).map(|i| format!("user-{a}-{i}-{:x}", next())).collect();
            let hash_keys: Vec<String> = (0..RECORDS_PER_AGGREGATE).map(|_| u128::from(next()).to_string()).collect();
            let payloads: Vec<Vec<u8>> =
                (0..RECORDS_PER_AGGREGATE).map(|_| (0..RECORD_BYTES).map(|_| next() as u8).collect()).collect();
            let inputs: Vec<UserRecordInput<'_>> = (0..RECORDS_PER_AGGREGATE)
                .map(|i| {
                    let input = UserRecordInput::new(&keys[i], &payloads[i]);
                    if i % 10 == 0 { input.with_explicit_hash_key(&hash_keys[i]) } else { input }
                })
                .collect();
            let blob: Bytes = aggregate(&inputs);
            KinesisRecord::new(blob, keys[0].as_str(), SequenceNumber::from_u128(1_000_000 + a as u128))
        })
        .collect()
}
