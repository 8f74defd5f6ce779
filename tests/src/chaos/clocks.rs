//! The clock-skew fault class: some workers run with their wall clock a few seconds off (libfaketime), and the run
//! checks afterwards, from what each process journaled at start, that the skew really applied.
//!
//! Lease expiry never compares wall clocks (each worker judges from its own monotonic clock), so a skewed worker
//! must change nothing: the verifier's usual checks are the proof. What a wall clock does feed — SigV4 request
//! dates, record ages — stays within what the emulators accept at ±5 s (real AWS refuses requests more than five
//! minutes off).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::Value;

use super::fleet::SkewedClocks;
use crate::verify::evidence_now_us;

/// How far the skewed workers' wall clocks are off: slot 1 ahead, slot 2 behind.
pub const SKEW_SECS: i64 = 5;

/// Where Debian and Ubuntu put libfaketime.
const LIBRARY_PATHS: [&str; 3] = [
    "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1",
    "/usr/lib/aarch64-linux-gnu/faketime/libfaketime.so.1",
    "/usr/lib/faketime/libfaketime.so.1",
];

/// The skew plan for a fleet of `workers`: slot 1 at +[`SKEW_SECS`], slot 2 at −[`SKEW_SECS`], the others (slot 0
/// has the slow processor) on time. libfaketime comes from `KCL_FAKETIME_LIB` or the Debian location.
///
/// # Errors
/// When libfaketime is not installed, with the install hint.
pub fn plan(workers: usize) -> Result<SkewedClocks, String> {
    let library = match std::env::var_os("KCL_FAKETIME_LIB") {
        Some(path) => PathBuf::from(path),
        None => LIBRARY_PATHS.iter().map(PathBuf::from).find(|p| p.exists()).unwrap_or_default(),
    };
    if !library.is_file() {
        return Err(format!(
            "libfaketime is missing (looked for {}): install it (Debian: apt-get install libfaketime), set \
             KCL_FAKETIME_LIB to libfaketime.so.1, or run without the clock-skew fault class (KCL_CHAOS_SKEW=off)",
            if library.as_os_str().is_empty() { LIBRARY_PATHS.join(", ") } else { library.display().to_string() }
        ));
    }
    let seconds = (0..workers)
        .map(|slot| match slot {
            1 => SKEW_SECS,
            2 => -SKEW_SECS,
            _ => 0,
        })
        .collect();
    Ok(SkewedClocks { library, seconds })
}

/// How far each worker's wall clock was off at each of its starts, in milliseconds, measured against this process's
/// clocks: a `start` line carries the worker's wall clock (`wall_us`) and the shared monotonic one (`t`).
///
/// # Errors
/// When a journal cannot be read or a start line lacks those fields.
pub fn measured(journals: &[impl AsRef<Path>]) -> Result<BTreeMap<String, Vec<i64>>, String> {
    let reference = offset(wall_now_us(), evidence_now_us());
    let mut skews: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    for path in journals {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        for line in text.lines().filter(|line| line.contains("\"start\"")) {
            let v: Value = serde_json::from_str(line).map_err(|e| format!("{}: {e}", path.display()))?;
            if v.get("ev").and_then(Value::as_str) != Some("start") {
                continue;
            }
            let field = |name: &str| {
                v.get(name).and_then(Value::as_u64).ok_or_else(|| format!("{}: start without {name}", path.display()))
            };
            let worker = v.get("worker").and_then(Value::as_str).unwrap_or("?").to_owned();
            let skew_us = offset(field("wall_us")?, field("t")?) - reference;
            skews.entry(worker).or_default().push((skew_us as f64 / 1e3).round() as i64);
        }
    }
    Ok(skews)
}

/// Problems with the skew: a worker whose measured skew is more than a second from the plan (libfaketime did not
/// apply, or applied to the wrong clock), or a skewed worker that never started.
pub fn problems(plan: &SkewedClocks, ids: &[String], measured: &BTreeMap<String, Vec<i64>>) -> Vec<String> {
    let mut problems = Vec::new();
    for (slot, id) in ids.iter().enumerate() {
        let want_ms = plan.of(slot) * 1000;
        let starts = measured.get(id).map(Vec::as_slice).unwrap_or_default();
        if want_ms != 0 && starts.is_empty() {
            problems.push(format!("{id} was to run {want_ms} ms off but journaled no start"));
        }
        for &got_ms in starts {
            if (got_ms - want_ms).abs() > 1000 {
                problems.push(format!("{id}'s wall clock was off by {got_ms} ms at a start, planned {want_ms} ms"));
            }
        }
    }
    problems
}

/// Wall minus monotonic, in µs.
fn offset(wall_us: u64, monotonic_us: u64) -> i64 {
    wall_us as i64 - monotonic_us as i64
}

fn wall_now_us() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_micros() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn journal(dir: &Path, name: &str, lines: &[String]) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, lines.join("\n")).unwrap();
        path
    }

    #[test]
    fn measures_each_start_against_this_process_and_flags_a_skew_that_did_not_apply() {
        let dir = std::env::temp_dir().join(format!("kcl-clocks-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (wall, mono) = (wall_now_us(), evidence_now_us());
        let start = |worker: &str, skew_us: i64| {
            format!(
                r#"{{"ev":"start","worker":"{worker}","pid":1,"wall_us":{},"t":{mono}}}"#,
                (wall as i64 + skew_us) as u64
            )
        };
        let journals = [
            journal(&dir, "w0", &[start("w0", 0)]),
            journal(&dir, "w1", &[start("w1", 5_000_000), r#"{"ev":"exit","t":1}"#.to_owned()]),
            journal(&dir, "w2", &[start("w2", 0)]),
        ];
        let measured = measured(&journals).unwrap();
        let near = |worker: &str, ms: i64| measured[worker].iter().all(|got| (got - ms).abs() < 200);
        assert!(near("w0", 0) && near("w1", 5000) && near("w2", 0), "{measured:?}");
        let plan = SkewedClocks { library: PathBuf::new(), seconds: vec![0, 5, -5] };
        let ids: Vec<String> = ["w0", "w1", "w2"].map(String::from).to_vec();
        let problems = problems(&plan, &ids, &measured);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].starts_with("w2's wall clock"), "{problems:?}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
