//! Every example binary reads `--config FILE` (issue 20): given a file with a key no worker setting has, each one
//! stops before consuming, with an error that names the key. A binary that ignored the flag would run instead.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[test]
fn every_example_refuses_a_config_file_with_an_unknown_key() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("kcl.toml");
    std::fs::write(&config, "lease_duration_ms = 3000\nno_such_setting = 1\n").expect("write the config");
    let db = dir.path().join("leases.db");
    let output_file = dir.path().join("windows.jsonl");
    let examples: [(&str, Vec<&str>); 5] = [
        (env!("CARGO_BIN_EXE_quickstart"), vec![]),
        (env!("CARGO_BIN_EXE_iot-consumer"), vec![]),
        (env!("CARGO_BIN_EXE_iot_windows"), vec!["--output", output_file.to_str().unwrap()]),
        (env!("CARGO_BIN_EXE_prometheus"), vec!["--metrics-port", "0", "--duration-secs", "60"]),
        (env!("CARGO_BIN_EXE_custom-store"), vec!["--db", db.to_str().unwrap()]),
    ];
    for (binary, args) in examples {
        let started = Instant::now();
        let mut child = Command::new(binary)
            .args(&args)
            .arg("--config")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("start {binary}: {e}"));
        // The error comes before any consuming; a binary still running after a minute ignored the file.
        let status = loop {
            if let Some(status) = child.try_wait().expect("wait") {
                break status;
            }
            if started.elapsed() > Duration::from_secs(60) {
                let _ = child.kill();
                panic!("{binary} kept running with an unknown key in --config");
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let mut stderr = String::new();
        std::io::Read::read_to_string(&mut child.stderr.take().expect("stderr"), &mut stderr).expect("read stderr");
        assert!(!status.success(), "{binary} accepted the file: {stderr}");
        assert!(stderr.contains("no_such_setting"), "{binary}: the error names the key: {stderr}");
    }
}
