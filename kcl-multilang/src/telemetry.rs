//! Metric names kcl-multilang emits through the `metrics` facade (on top of kcl-core's catalogue,
//! `kcl_core::telemetry`). Install any `metrics` recorder to collect them.

/// Counter: child processes started (one per shard, plus one per restart after a failure).
pub const CHILD_STARTS: &str = "kcl_multilang_child_starts_total";
/// Counter: child failures (exited, hung past `timeoutInSeconds`, broke the protocol); each is followed by a retry of
/// the same work on a fresh child.
pub const CHILD_FAILURES: &str = "kcl_multilang_child_failures_total";
/// Counter: lines a child wrote to stdout that were not protocol messages (skipped, logged as errors).
pub const CHILD_GARBAGE_LINES: &str = "kcl_multilang_child_garbage_lines_total";
