//! One child process and its three pipes: messages go to its stdin, replies come from its stdout (one JSON object a
//! line), and its stderr goes to `tracing` with the shard id. Every wait is bounded by `timeoutInSeconds` when set.

use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

use crate::error::MultilangError;
use crate::protocol::{self, Incoming, LineProblem, Outgoing};

/// Longest line read from a child's stdout; a longer one is not a protocol message.
const MAX_LINE: u64 = 1 << 20;
/// How long a child may take to exit after its stdin is closed, before it is killed.
pub(crate) const EXIT_GRACE: Duration = Duration::from_secs(10);

/// A running record processor program.
pub(crate) struct ChildProcess {
    shard_id: Arc<str>,
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
    timeout: Option<Duration>,
    lines_read: u64,
}

impl ChildProcess {
    /// Starts `command` for `shard_id` (killed when dropped).
    pub(crate) fn spawn(
        command: &[String],
        shard_id: &Arc<str>,
        timeout: Option<Duration>,
    ) -> Result<Self, MultilangError> {
        let spawn_error = |source| MultilangError::Spawn {
            program: command.first().cloned().unwrap_or_default(),
            shard_id: shard_id.to_string(),
            source,
        };
        let (program, args) = command
            .split_first()
            .ok_or_else(|| spawn_error(std::io::Error::new(std::io::ErrorKind::InvalidInput, "empty command")))?;
        let mut child = Command::new(program)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(spawn_error)?;
        let missing = || spawn_error(std::io::Error::other("a pipe to the child was not created"));
        let stdin = child.stdin.take().ok_or_else(missing)?;
        let stdout = child.stdout.take().ok_or_else(missing)?;
        let stderr = child.stderr.take().ok_or_else(missing)?;
        tokio::spawn(forward_stderr(stderr, shard_id.clone(), child.id().unwrap_or(0)));
        metrics::counter!(crate::telemetry::CHILD_STARTS).increment(1);
        tracing::info!(shard_id = %shard_id, pid = child.id().unwrap_or(0), "started record processor");
        Ok(Self {
            shard_id: shard_id.clone(),
            child,
            stdin: Some(stdin),
            stdout: BufReader::new(stdout),
            timeout,
            lines_read: 0,
        })
    }

    /// The child's process id, while it runs.
    pub(crate) fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// Writes one message to the child's stdin.
    pub(crate) async fn send(&mut self, message: &Outgoing<'_>, during: &'static str) -> Result<(), MultilangError> {
        let line = message.to_line();
        let Some(stdin) = self.stdin.as_mut() else {
            return Err(self.failure(during, "its stdin is already closed".into()));
        };
        let write = async {
            stdin.write_all(&line).await?;
            stdin.flush().await
        };
        match bounded(self.timeout, write).await {
            Some(Ok(())) => Ok(()),
            Some(Err(error)) => {
                let status = self.exit_status().await;
                Err(self.failure(
                    during,
                    format!("could not write `{}` to its stdin ({error}); {status}", message.action()),
                ))
            }
            None => Err(self.failure(during, self.timeout_text("to read its stdin"))),
        }
    }

    /// Reads the child's next message, skipping blank lines and reporting (then skipping, as the Java daemon does)
    /// lines that are not protocol messages.
    pub(crate) async fn next_message(&mut self, during: &'static str) -> Result<Incoming, MultilangError> {
        loop {
            let mut line = Vec::new();
            let timeout = self.timeout;
            let mut limited = (&mut self.stdout).take(MAX_LINE);
            let outcome = match bounded(timeout, limited.read_until(b'\n', &mut line)).await {
                Some(outcome) => outcome,
                None => return Err(self.failure(during, self.timeout_text("to reply"))),
            };
            match outcome {
                Ok(0) => {
                    let status = self.exit_status().await;
                    return Err(self.failure(during, format!("its stdout closed before it replied; {status}")));
                }
                Ok(_) => {}
                Err(error) => return Err(self.failure(during, format!("reading its stdout failed: {error}"))),
            }
            self.lines_read += 1;
            if line.len() as u64 >= MAX_LINE && line.last() != Some(&b'\n') {
                // Drop the rest of the overlong line so the next read starts on a fresh one.
                let _ = self.stdout.read_until(b'\n', &mut Vec::new()).await;
            }
            match protocol::parse_line(&line) {
                Ok(message) => return Ok(message),
                Err(LineProblem::Blank) => {}
                Err(LineProblem::NotAMessage(why)) => {
                    metrics::counter!(crate::telemetry::CHILD_GARBAGE_LINES).increment(1);
                    tracing::error!(
                        shard_id = %self.shard_id,
                        line = self.lines_read,
                        bytes = line.len(),
                        "the record processor wrote a line to stdout that is not a MultiLangDaemon message: {why}; \
                         it is skipped. Stdout carries only the protocol's JSON lines: write logs and prints to stderr"
                    );
                }
            }
        }
    }

    /// Closes stdin (the child's cue to exit), drains stdout, and waits up to [`EXIT_GRACE`] for the child to exit
    /// before killing it.
    pub(crate) async fn close(mut self) {
        self.stdin = None;
        let drain = async {
            let mut sink = Vec::new();
            let _ = (&mut self.stdout).take(64 << 20).read_to_end(&mut sink).await;
            self.child.wait().await
        };
        match tokio::time::timeout(EXIT_GRACE, drain).await {
            Ok(Ok(status)) => tracing::debug!(shard_id = %self.shard_id, %status, "record processor exited"),
            Ok(Err(error)) => {
                tracing::warn!(shard_id = %self.shard_id, %error, "could not wait for the record processor")
            }
            Err(_) => {
                tracing::warn!(shard_id = %self.shard_id, "record processor still running {EXIT_GRACE:?} after its stdin closed; killing it");
                let _ = self.child.kill().await;
            }
        }
    }

    async fn exit_status(&mut self) -> String {
        match tokio::time::timeout(Duration::from_millis(500), self.child.wait()).await {
            Ok(Ok(status)) => format!("it exited with {status}"),
            _ => "it is still running".into(),
        }
    }

    fn timeout_text(&self, what: &str) -> String {
        let seconds = self.timeout.map_or(0, |t| t.as_secs());
        format!("no progress within timeoutInSeconds = {seconds} while waiting for it {what}; it is killed")
    }

    /// A failure of this child during `action`, counted.
    pub(crate) fn failure(&self, action: &'static str, problem: String) -> MultilangError {
        metrics::counter!(crate::telemetry::CHILD_FAILURES).increment(1);
        MultilangError::Child { shard_id: self.shard_id.to_string(), action, problem }
    }
}

/// `future`, cut off after `timeout` when one is set (`None` then).
async fn bounded<T>(timeout: Option<Duration>, future: impl Future<Output = T>) -> Option<T> {
    match timeout {
        Some(limit) => tokio::time::timeout(limit, future).await.ok(),
        None => Some(future.await),
    }
}

/// Logs the child's stderr, a line at a time, with its shard id. Text without a newline (amazon-kclpy's sample
/// writes its log that way) is logged as soon as it was read, so nothing waits for a newline that never comes.
async fn forward_stderr(stderr: tokio::process::ChildStderr, shard_id: Arc<str>, pid: u32) {
    let mut reader = BufReader::with_capacity(64 << 10, stderr);
    loop {
        let chunk = match reader.fill_buf().await {
            Ok([]) | Err(_) => return,
            Ok(chunk) => chunk,
        };
        let length = chunk.len();
        let text = String::from_utf8_lossy(chunk);
        for line in text.split_terminator('\n') {
            let line = line.trim_end_matches('\r');
            if !line.is_empty() {
                tracing::info!(target: "kcl_multilang::child", shard_id = %shard_id, pid, "{line}");
            }
        }
        reader.consume(length);
    }
}
