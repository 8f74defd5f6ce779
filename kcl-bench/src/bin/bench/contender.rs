//! `e2e` contenders: the consumer processes `bench e2e` compares, each a command run as a child process, and the
//! measurement of one run of it (wall time, CPU and peak RSS from `wait4`, time to first record).
//!
//! A contender is any command. Before it runs, the placeholders `{stream}`, `{table}`, `{expect}`, `{region}`,
//! `{kinesis_endpoint}` and `{dynamodb_endpoint}` in its words are replaced. The protocol with the child is its
//! standard output, read line by line:
//!
//! * a line `{"milestone":"first_record"}` (any JSON object with a `milestone` field) is stamped with the time it
//!   arrives, counted from the spawn — the parent's clock, so every contender is timed the same way;
//! * the last line that is a JSON object with a `records` field is the child's result; its other fields (the child's
//!   own milestones with CPU, see `milestone.rs`) are passed on;
//! * exit status 0 means the child consumed what it was asked to.
//!
//! Built in: `bare` (`bench e2e-bare`: the AWS SDK `GetRecords` loop) and `kcl-rs` (`bench e2e-consume`). Another
//! consumer (e.g. a Java KCL application) joins with `--contender 'NAME=COMMAND WITH {placeholders}'`.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::emulator::Endpoints;
use crate::report::Usage;

/// A consumer command to compare.
#[derive(Clone, Debug)]
pub struct Contender {
    /// Short name used in metric names (`e2e_<name>_...`).
    pub name: String,
    /// Program and arguments, with placeholders.
    pub words: Vec<String>,
}

/// What one run of a contender is given.
pub struct RunInput<'a> {
    pub endpoints: &'a Endpoints,
    pub stream: &'a str,
    pub table: &'a str,
    pub expect: u64,
    pub timeout: Duration,
}

/// The figures of one run.
#[derive(Debug)]
pub struct ChildRun {
    /// Spawn to exit.
    pub wall: Duration,
    /// CPU and peak RSS of the child (and of its own waited-for children), from `wait4`.
    pub usage: Usage,
    /// Milestones the child announced, stamped on arrival (since the spawn).
    pub milestones: BTreeMap<String, Duration>,
    /// The child's result line.
    pub result: Value,
}

impl Contender {
    /// A contender from `NAME=COMMAND` (the command split at spaces).
    pub fn parse(spec: &str) -> Result<Self, String> {
        let (name, command) = spec.split_once('=').ok_or_else(|| format!("expected NAME=COMMAND, got {spec:?}"))?;
        let words: Vec<String> = command.split_whitespace().map(str::to_owned).collect();
        if name.is_empty() || words.is_empty() {
            return Err(format!("expected NAME=COMMAND, got {spec:?}"));
        }
        Ok(Self { name: name.to_owned(), words })
    }

    /// A contender that runs this benchmark binary with `args` (placeholders allowed), optionally under `wrapper`.
    pub fn this_binary(name: &str, args: &[&str], wrapper: Option<&str>) -> Result<Self, String> {
        let exe = std::env::current_exe().map_err(|e| format!("cannot find the benchmark binary: {e}"))?;
        let mut words: Vec<String> = wrapper.unwrap_or_default().split_whitespace().map(str::to_owned).collect();
        words.push(exe.to_string_lossy().into_owned());
        words.extend(args.iter().map(|a| (*a).to_owned()));
        Ok(Self { name: name.to_owned(), words })
    }

    fn command_line(&self, input: &RunInput<'_>) -> Vec<String> {
        let expect = input.expect.to_string();
        let substitutions = [
            ("{stream}", input.stream),
            ("{table}", input.table),
            ("{expect}", expect.as_str()),
            ("{region}", crate::emulator::REGION),
            ("{kinesis_endpoint}", input.endpoints.kinesis.as_str()),
            ("{dynamodb_endpoint}", input.endpoints.dynamodb.as_str()),
        ];
        self.words
            .iter()
            .map(|word| substitutions.iter().fold(word.clone(), |w, (from, to)| w.replace(from, to)))
            .collect()
    }

    /// Runs the contender once and waits for it (blocking: nothing else runs in the parent meanwhile).
    pub fn run(&self, input: &RunInput<'_>) -> Result<ChildRun, String> {
        let words = self.command_line(input);
        let (program, args) = words.split_first().ok_or("empty command")?;
        let started = Instant::now();
        let mut child = Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("{}: cannot start {program}: {e}", self.name))?;
        let pid = child.id() as libc::pid_t;
        let stdout = child.stdout.take().ok_or("no stdout pipe")?;
        let reader = std::thread::spawn(move || read_protocol(stdout, started));
        let exited = Arc::new(AtomicBool::new(false));
        let watchdog = {
            let exited = exited.clone();
            let timeout = input.timeout;
            std::thread::spawn(move || {
                let deadline = Instant::now() + timeout;
                while !exited.load(Ordering::Acquire) {
                    if Instant::now() >= deadline {
                        // The child is not reaped before `wait4` below returns, so `pid` still names it.
                        // SAFETY: kill has no memory effects.
                        unsafe { libc::kill(pid, libc::SIGKILL) };
                        return true;
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
                false
            })
        };
        let (status, usage) = wait4(pid).map_err(|e| format!("{}: wait4 failed: {e}", self.name))?;
        let wall = started.elapsed();
        exited.store(true, Ordering::Release);
        let timed_out = watchdog.join().unwrap_or(false);
        // `child` was reaped by wait4; dropping it neither waits nor kills.
        drop(child);
        let (milestones, result) = reader.join().map_err(|_| "the stdout reader panicked")?;
        if timed_out {
            return Err(format!("{}: killed after {:?} without finishing", self.name, input.timeout));
        }
        if !(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0) {
            return Err(format!("{}: the consumer process failed (wait status {status:#x})", self.name));
        }
        let result = result.ok_or_else(|| format!("{}: printed no result line", self.name))?;
        Ok(ChildRun { wall, usage, milestones, result })
    }
}

fn read_protocol(stdout: std::process::ChildStdout, started: Instant) -> (BTreeMap<String, Duration>, Option<Value>) {
    let mut milestones = BTreeMap::new();
    let mut result = None;
    for line in BufReader::new(stdout).lines() {
        let Ok(line) = line else { break };
        let Ok(Value::Object(object)) = serde_json::from_str::<Value>(line.trim()) else { continue };
        if let Some(name) = object.get("milestone").and_then(Value::as_str) {
            milestones.entry(name.to_owned()).or_insert_with(|| started.elapsed());
        } else if object.contains_key("records") {
            result = Some(Value::Object(object));
        }
    }
    (milestones, result)
}

/// Waits for `pid` and returns its wait status and resource usage (its own, plus its waited-for descendants').
fn wait4(pid: libc::pid_t) -> std::io::Result<(libc::c_int, Usage)> {
    loop {
        let mut status: libc::c_int = 0;
        // SAFETY: wait4 writes a status and a whole `rusage` into the zeroed locals it is given, and nothing else.
        let (returned, usage) = unsafe {
            let mut usage: libc::rusage = std::mem::zeroed();
            (libc::wait4(pid, &mut status, 0, &mut usage), usage)
        };
        if returned == pid {
            return Ok((status, Usage::from_rusage(&usage)));
        }
        let error = std::io::Error::last_os_error();
        if error.kind() != std::io::ErrorKind::Interrupted {
            return Err(error);
        }
    }
}
