//! A fleet mixing kcl-rs `verify-worker` processes and Java KCL peers on one stream and application. Each start is
//! a new process with its own output, journal and log file in the fleet's directory; `kill` is SIGKILL, `term` is
//! SIGTERM and waits for the exit code. Every process is killed when the fleet is dropped.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use tokio::process::{Child, Command};

use super::peer::{JavaBuild, java_peer};

/// How long a SIGTERMed worker gets before it counts as hung.
const TERM_TIMEOUT: Duration = Duration::from_secs(60);

/// What kind of worker a process is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// kcl-rs (`verify-worker`).
    Rust,
    /// The Java KCL peer, 2.x build.
    Java2,
    /// The Java KCL peer, 3.x build in `CLIENT_VERSION_CONFIG_COMPATIBLE_WITH_2X` mode.
    Java3Compatible,
    /// The Java KCL peer, 3.x build in `CLIENT_VERSION_CONFIG_3X` mode (leader-based assignment).
    Java3,
}

impl Kind {
    /// Whether it is a Java KCL worker.
    pub fn is_java(self) -> bool {
        self != Self::Rust
    }
}

/// What every worker is started with.
#[derive(Clone, Debug)]
pub struct Spec {
    /// The stream.
    pub stream: String,
    /// The application (lease table).
    pub app: String,
    /// kinesis-mock.
    pub kinesis_endpoint: String,
    /// DynamoDB Local.
    pub dynamodb_endpoint: String,
    /// Lease duration (`failoverTimeMillis`).
    pub lease_duration_ms: u64,
    /// Where the files go.
    pub dir: PathBuf,
    /// The `verify-worker` binary; `None`: the one next to the test executable (built when missing).
    pub verify_worker: Option<PathBuf>,
}

struct Proc {
    id: String,
    kind: Kind,
    child: Option<Child>,
}

/// The processes of one test.
pub struct Fleet {
    spec: Spec,
    procs: Vec<Proc>,
    /// Every output file.
    pub outputs: Vec<PathBuf>,
    /// Every journal file.
    pub journals: Vec<PathBuf>,
}

impl Fleet {
    /// An empty fleet.
    pub fn new(spec: Spec) -> Self {
        Self { spec, procs: Vec::new(), outputs: Vec::new(), journals: Vec::new() }
    }

    /// Starts worker `id` of `kind` with `extra` arguments; returns its index.
    pub fn start(&mut self, kind: Kind, id: &str, extra: &[&str]) -> Result<usize, String> {
        let n = self.procs.len();
        let name = format!("{id}.{n}");
        let spec = &self.spec;
        let (output, journal) =
            (spec.dir.join(format!("{name}.out.jsonl")), spec.dir.join(format!("{name}.journal.jsonl")));
        let log = std::fs::File::create(spec.dir.join(format!("{name}.log"))).map_err(|e| e.to_string())?;
        let mut command =
            match kind {
                Kind::Rust => {
                    let binary = match &spec.verify_worker {
                        Some(binary) => binary.clone(),
                        None => crate::chaos::verify_worker()?,
                    };
                    let mut command = Command::new(binary);
                    command.env("RUST_LOG", "info,aws=warn");
                    command
                }
                Kind::Java2 | Kind::Java3Compatible | Kind::Java3 => {
                    let build = if kind == Kind::Java2 { JavaBuild::Kcl2 } else { JavaBuild::Kcl3 };
                    let mut command = Command::new("java");
                    command
                        .args(["-XX:+UseSerialGC", "-Xmx384m", "-Dorg.slf4j.simpleLogger.defaultLogLevel=info"])
                        .args(["-cp", &java_peer(build)?, "dev.kclrs.interop.Peer"]);
                    match kind {
                        Kind::Java3 => {
                            command.args(["--client-version", "3x"]);
                        }
                        Kind::Java3Compatible => {
                            command.args(["--client-version", "compatible-with-2x"]);
                        }
                        _ => {}
                    }
                    command
                }
            };
        command
            .args(["--stream", &spec.stream, "--app", &spec.app, "--worker-id", id])
            .arg("--output")
            .arg(&output)
            .arg("--journal")
            .arg(&journal)
            .args(["--kinesis-endpoint", &spec.kinesis_endpoint, "--dynamodb-endpoint", &spec.dynamodb_endpoint])
            .args(["--lease-duration-ms", &spec.lease_duration_ms.to_string()])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .kill_on_drop(true);
        let child = command.spawn().map_err(|e| format!("cannot start {kind:?} worker {id}: {e}"))?;
        self.procs.push(Proc { id: id.to_owned(), kind, child: Some(child) });
        self.outputs.push(output);
        self.journals.push(journal);
        Ok(n)
    }

    /// The worker id of process `n`.
    pub fn id(&self, n: usize) -> &str {
        &self.procs[n].id
    }

    /// The kind of process `n`.
    pub fn kind(&self, n: usize) -> Kind {
        self.procs[n].kind
    }

    /// SIGKILLs process `n` and reaps it.
    pub async fn kill(&mut self, n: usize) {
        if let Some(mut child) = self.procs[n].child.take() {
            let _ = child.start_kill();
            let _ = child.wait().await;
        }
    }

    /// Sends SIGTERM to process `n` without waiting (a later [`term`](Self::term) or `stop_all` collects it).
    pub fn signal_term(&self, n: usize) {
        if let Some(pid) = self.procs[n].child.as_ref().and_then(Child::id) {
            // SAFETY: kill(2) on a child not yet reaped, so the pid cannot have been reused.
            unsafe {
                libc::kill(pid as libc::pid_t, libc::SIGTERM);
            }
        }
    }

    /// SIGTERMs process `n` and waits for it; its exit code (`None`: killed after hanging).
    pub async fn term(&mut self, n: usize) -> Option<i32> {
        self.signal_term(n);
        let mut child = self.procs[n].child.take()?;
        match tokio::time::timeout(TERM_TIMEOUT, child.wait()).await {
            Ok(Ok(status)) => status.code(),
            _ => {
                let _ = child.start_kill();
                let _ = child.wait().await;
                None
            }
        }
    }

    /// Whether process `n` exited on its own; its exit code if so.
    pub fn exited(&mut self, n: usize) -> Option<Option<i32>> {
        let child = self.procs[n].child.as_mut()?;
        match child.try_wait() {
            Ok(Some(status)) => Some(status.code()),
            _ => None,
        }
    }

    /// The log file of process `n`.
    pub fn log(&self, n: usize) -> String {
        let name = format!("{}.{n}.log", self.procs[n].id);
        std::fs::read_to_string(self.spec.dir.join(name)).unwrap_or_default()
    }

    /// The last `lines` lines of process `n`'s log, for failure messages: CI truncates long output from the top.
    pub fn log_tail(&self, n: usize, lines: usize) -> String {
        let log = self.log(n);
        let all: Vec<&str> = log.lines().collect();
        let skipped = all.len().saturating_sub(lines);
        let tail = all[skipped..].join("\n");
        if skipped == 0 { tail } else { format!("[{skipped} earlier lines of {} not shown]\n{tail}", self.procs[n].id) }
    }

    /// Stops every running process gracefully; the exit codes by worker id.
    pub async fn stop_all(&mut self) -> Vec<(String, Option<i32>)> {
        let mut exits = Vec::new();
        for n in 0..self.procs.len() {
            if self.procs[n].child.is_some() {
                let code = self.term(n).await;
                exits.push((self.procs[n].id.clone(), code));
            }
        }
        exits
    }

    /// The directory of the files.
    pub fn dir(&self) -> &std::path::Path {
        &self.spec.dir
    }
}
