//! The README's first command must keep its promise: the quickstart runs and its verdict is true, in memory and
//! against the emulators.

use std::process::Command;

fn run_quickstart(extra: &[&str]) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_quickstart"))
        .args(["--records", "3000", "--devices", "30"])
        .args(extra)
        .output()
        .expect("run the quickstart binary");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "quickstart failed ({}):\n{stdout}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

fn assert_verdict(stdout: &str) {
    for line in ["records put:        3000", "missing:            0", "order violations:   0", "verdict: PASS"] {
        assert!(stdout.contains(line), "expected `{line}` in the quickstart output:\n{stdout}");
    }
    let finished = stdout.lines().find(|l| l.starts_with("shards finished:")).expect("a shards-finished line");
    assert!(
        finished.starts_with("shards finished:    3 "),
        "the split and merge parents must reach SHARD_END: {finished}"
    );
}

#[test]
fn quickstart_in_memory_passes() {
    assert_verdict(&run_quickstart(&[]));
}

#[test]
fn quickstart_against_the_emulators_passes() {
    let emulators = kcl_tests::emulators();
    assert_verdict(&run_quickstart(&[
        "--kinesis-endpoint",
        emulators.kinesis_endpoint(),
        "--dynamodb-endpoint",
        emulators.dynamodb_endpoint(),
    ]));
}
