//! The zero-setup quickstart. Placeholder until the consumer pipeline exists: it says so instead of pretending.

const STATUS: &str = "\
kcl-rs quickstart: the consumer pipeline is not built yet, so there is nothing to consume with. This binary will
run a worker against an in-memory stream and lease store once shard sync, polling retrieval, the record processor
and the worker exist. What exists today: kcl-core's vocabulary (sequence numbers and checkpoint values, shards,
records, the Lease type and the LeaseStore trait), and a test harness that runs the integration tests against
kinesis-mock and DynamoDB Local (`scripts/test`). KPL de-aggregation, the lease stores and the lease coordinator are
in progress; see the status table in README.md.";

fn main() {
    println!("{STATUS}");
}
