//! The emulator runner (`src/bin/emulators.rs`) itself: it hands the command's exit code back and leaves no emulator
//! process behind, whether the command fails or the runner is told to stop. Each test starts its own pair of
//! emulators next to the ones this test run already uses, which also shows that runs do not collide.
#![cfg(target_os = "linux")]

use std::io::{BufRead, BufReader, Read};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const RUNNER: &str = env!("CARGO_BIN_EXE_emulators");

/// `KEY=VALUE` lines printed by the command.
fn value<'a>(output: &'a str, key: &str) -> &'a str {
    output
        .lines()
        .find_map(|line| line.strip_prefix(key).and_then(|rest| rest.strip_prefix('=')))
        .unwrap_or_else(|| panic!("no {key}= line in:\n{output}"))
}

fn assert_gone(pids: &str, endpoints: &[&str]) {
    let deadline = Instant::now() + Duration::from_secs(5);
    for pid in pids.split(',') {
        let proc = format!("/proc/{pid}");
        while Path::new(&proc).exists() {
            assert!(Instant::now() < deadline, "emulator process {pid} still running after the runner exited");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    for endpoint in endpoints {
        let address = endpoint.trim_start_matches("http://");
        assert!(TcpStream::connect(address).is_err(), "{address} still accepts connections");
    }
}

/// A run that failed keeps its emulator logs and says where; remove them.
fn remove_kept_logs(stderr: &str) {
    let dir = stderr
        .lines()
        .find_map(|line| line.strip_prefix("emulators: logs kept in "))
        .unwrap_or_else(|| panic!("a failed run keeps its logs and says where: {stderr}"));
    assert!(dir.contains("kcl-emulators-"), "{dir}");
    std::fs::remove_dir_all(dir).unwrap();
}

const REPORT: &str = "echo pids=$KCL_TEST_EMULATOR_PIDS; echo kinesis=$KCL_TEST_KINESIS_ENDPOINT; \
                      echo dynamodb=$KCL_TEST_DYNAMODB_ENDPOINT; echo tls=$KCL_TEST_KINESIS_TLS_PORT";

#[test]
fn failing_command_exit_code_is_returned_and_emulators_stop() {
    let script = format!("{REPORT}; exit 7");
    let output = Command::new(RUNNER).args(["run", "--", "sh", "-c", &script]).output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(7), "stdout:\n{stdout}\nstderr:\n{stderr}");
    let (kinesis, dynamodb) = (value(&stdout, "kinesis"), value(&stdout, "dynamodb"));
    // Not the emulators of the surrounding test run.
    assert_ne!(Some(kinesis), std::env::var("KCL_TEST_KINESIS_ENDPOINT").ok().as_deref());
    assert_ne!(Some(dynamodb), std::env::var("KCL_TEST_DYNAMODB_ENDPOINT").ok().as_deref());
    assert!(value(&stdout, "tls").parse::<u16>().is_ok(), "{stdout}");
    assert_gone(value(&stdout, "pids"), &[kinesis, dynamodb]);
    remove_kept_logs(&stderr);
}

#[test]
fn sigterm_stops_the_command_and_the_emulators() {
    let script = format!("{REPORT}; echo command=$$; exec sleep 600");
    let mut runner = Command::new(RUNNER)
        .args(["run", "--", "sh", "-c", &script])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = String::new();
    let mut lines = BufReader::new(runner.stdout.take().unwrap()).lines();
    while !stdout.contains("command=") {
        match lines.next() {
            Some(line) => stdout.push_str(&(line.unwrap() + "\n")),
            None => panic!("the runner ended before the command started: {stdout}"),
        }
    }
    let command_pid = value(&stdout, "command");
    assert!(Path::new(&format!("/proc/{command_pid}")).exists());

    // SAFETY: kill(2) on the runner we spawned.
    assert_eq!(unsafe { libc::kill(runner.id() as i32, libc::SIGTERM) }, 0);
    let mut stderr = String::new();
    runner.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
    let status = runner.wait().unwrap();
    assert_eq!(status.code(), Some(128 + libc::SIGTERM), "the runner reports the signal: {stderr}");
    assert!(stderr.contains("got SIGTERM"), "{stderr}");
    remove_kept_logs(&stderr);
    assert_gone(
        &format!("{},{command_pid}", value(&stdout, "pids")),
        &[value(&stdout, "kinesis"), value(&stdout, "dynamodb")],
    );
}
