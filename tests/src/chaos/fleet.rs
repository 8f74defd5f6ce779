//! The fleet of `verify-worker` processes: one slot per worker id, each run of a slot a new process (an
//! *incarnation*) with its own output, journal and log file. Crash = SIGKILL, graceful stop = SIGTERM (its exit is
//! awaited in the background and must be 0), pause = SIGSTOP until SIGCONT (a worker that wakes up as a zombie).
//! Every process is killed if the fleet is dropped (`kill_on_drop`), so a failing test leaves none behind.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::process::{Child, Command};
use tokio::task::JoinHandle;

/// How long a SIGTERMed worker gets to exit before it counts as hung (and is killed).
const TERM_TIMEOUT: Duration = Duration::from_secs(60);

/// What every worker process is started with.
#[derive(Clone, Debug)]
pub struct WorkerSpec {
    /// The `verify-worker` binary.
    pub binary: PathBuf,
    /// Stream and application (lease table).
    pub stream: String,
    /// The application name.
    pub app: String,
    /// Where workers reach Kinesis and DynamoDB (the proxies).
    pub kinesis_endpoint: String,
    /// DynamoDB endpoint.
    pub dynamodb_endpoint: String,
    /// `--lease-duration-ms`.
    pub lease_duration_ms: u64,
    /// `--renewal`: `per-lease` or `heartbeat`.
    pub renewal: &'static str,
    /// Where output, journal and log files go.
    pub dir: PathBuf,
    /// PostgreSQL mode: the URL and the lease table (`--postgres`, `--postgres-table`).
    pub postgres: Option<(String, String)>,
    /// Slot 0's slow processor: every Nth batch waits this many milliseconds (`--slow-every`, `--slow-ms`).
    pub slow_batch: Option<(u64, u64)>,
    /// Workers whose wall clock is off.
    pub skewed_clocks: Option<SkewedClocks>,
}

/// Workers whose wall clock runs off by a few seconds, through libfaketime (`LD_PRELOAD`, `FAKETIME`). Their
/// monotonic clock is left alone (`FAKETIME_DONT_FAKE_MONOTONIC=1`): it is what lease expiry runs on, and the
/// journals' evidence clock.
#[derive(Clone, Debug)]
pub struct SkewedClocks {
    /// libfaketime's shared library.
    pub library: PathBuf,
    /// How far each slot's wall clock is off, in seconds (0: not skewed; slots past the end are not skewed).
    pub seconds: Vec<i64>,
}

impl SkewedClocks {
    /// How far `slot`'s wall clock is off, in seconds.
    pub fn of(&self, slot: usize) -> i64 {
        self.seconds.get(slot).copied().unwrap_or(0)
    }
}

/// The state of one slot.
#[derive(Debug, PartialEq, Eq, Clone, Copy)]
pub enum SlotState {
    /// A process is running.
    Running,
    /// Its process is stopped by SIGSTOP.
    Paused,
    /// SIGTERMed; its exit is being awaited.
    Stopping,
    /// No process.
    Down,
}

/// How a SIGTERMed process ended.
#[derive(Debug, Clone)]
pub struct TermExit {
    /// The worker id.
    pub worker: String,
    /// Exit code (`None`: killed by a signal, or hung and killed after `TERM_TIMEOUT`).
    pub code: Option<i32>,
    /// How long it took.
    pub took: Duration,
}

struct Slot {
    id: String,
    state: SlotState,
    child: Option<Child>,
    stopping: Option<JoinHandle<TermExit>>,
    incarnations: u32,
}

/// The worker processes.
pub struct Fleet {
    spec: WorkerSpec,
    slots: Vec<Slot>,
    /// Every output file written so far.
    pub outputs: Vec<PathBuf>,
    /// Every journal file written so far.
    pub journals: Vec<PathBuf>,
    /// Exits of SIGTERMed processes.
    pub term_exits: Vec<TermExit>,
}

impl Fleet {
    /// `count` slots, none running yet.
    pub fn new(spec: WorkerSpec, count: usize) -> Self {
        let slots = (0..count)
            .map(|i| Slot { id: format!("w{i}"), state: SlotState::Down, child: None, stopping: None, incarnations: 0 })
            .collect();
        Self { spec, slots, outputs: Vec::new(), journals: Vec::new(), term_exits: Vec::new() }
    }

    /// Number of slots.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// Whether there are no slots.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// A slot's worker id.
    pub fn id(&self, slot: usize) -> &str {
        &self.slots[slot].id
    }

    /// A slot's state.
    pub fn state(&self, slot: usize) -> SlotState {
        self.slots[slot].state
    }

    /// Slots in `state`.
    pub fn in_state(&self, state: SlotState) -> Vec<usize> {
        (0..self.slots.len()).filter(|&i| self.slots[i].state == state).collect()
    }

    /// Starts a new process in a `Down` slot (after collecting a finished graceful stop). Returns whether it did.
    pub async fn start(&mut self, slot: usize) -> Result<bool, String> {
        self.collect(slot).await;
        let spec = self.spec.clone();
        let s = &mut self.slots[slot];
        if s.state != SlotState::Down {
            return Ok(false);
        }
        s.incarnations += 1;
        let name = format!("{}.{}", s.id, s.incarnations);
        let (output, journal) =
            (spec.dir.join(format!("{name}.out.jsonl")), spec.dir.join(format!("{name}.journal.jsonl")));
        let log = std::fs::File::create(spec.dir.join(format!("{name}.log"))).map_err(|e| e.to_string())?;
        let mut command = Command::new(&spec.binary);
        if let Some((url, table)) = &spec.postgres {
            command.args(["--postgres", url, "--postgres-table", table]);
        }
        if let Some((every, ms)) = spec.slow_batch.filter(|_| slot == 0) {
            command.args(["--slow-every", &every.to_string(), "--slow-ms", &ms.to_string()]);
        }
        if let Some(skewed) = &spec.skewed_clocks
            && skewed.of(slot) != 0
        {
            command
                .env("LD_PRELOAD", &skewed.library)
                .env("FAKETIME", format!("{:+}s", skewed.of(slot)))
                .env("FAKETIME_DONT_FAKE_MONOTONIC", "1");
        }
        let child = command
            .args(["--stream", &spec.stream, "--app", &spec.app, "--worker-id", &s.id])
            .arg("--output")
            .arg(&output)
            .arg("--journal")
            .arg(&journal)
            .args(["--kinesis-endpoint", &spec.kinesis_endpoint, "--dynamodb-endpoint", &spec.dynamodb_endpoint])
            .args(["--lease-duration-ms", &spec.lease_duration_ms.to_string(), "--renewal", spec.renewal])
            .env("RUST_LOG", std::env::var("KCL_CHAOS_WORKER_LOG").unwrap_or_else(|_| "info,aws=warn".into()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", spec.binary.display()))?;
        s.child = Some(child);
        s.state = SlotState::Running;
        self.outputs.push(output);
        self.journals.push(journal);
        Ok(true)
    }

    /// SIGKILLs a slot's process (also when paused) and reaps it.
    pub async fn kill(&mut self, slot: usize) {
        let s = &mut self.slots[slot];
        if let Some(mut child) = s.child.take() {
            let _ = child.start_kill();
            let _ = child.wait().await;
        }
        s.state = SlotState::Down;
    }

    /// SIGTERMs a running slot's process; its exit is awaited in the background.
    pub fn term(&mut self, slot: usize) {
        let s = &mut self.slots[slot];
        let (Some(mut child), SlotState::Running) = (s.child.take(), s.state) else { return };
        signal(&child, libc::SIGTERM);
        let worker = s.id.clone();
        s.state = SlotState::Stopping;
        s.stopping = Some(tokio::spawn(async move {
            let started = tokio::time::Instant::now();
            let code = match tokio::time::timeout(TERM_TIMEOUT, child.wait()).await {
                Ok(Ok(status)) => status.code(),
                _ => {
                    let _ = child.start_kill();
                    let _ = child.wait().await;
                    None
                }
            };
            TermExit { worker, code, took: started.elapsed() }
        }));
    }

    /// SIGSTOPs a running slot's process.
    pub fn pause(&mut self, slot: usize) {
        let s = &mut self.slots[slot];
        if let (Some(child), SlotState::Running) = (&s.child, s.state) {
            signal(child, libc::SIGSTOP);
            s.state = SlotState::Paused;
        }
    }

    /// SIGCONTs a paused slot's process.
    pub fn resume(&mut self, slot: usize) {
        let s = &mut self.slots[slot];
        if let (Some(child), SlotState::Paused) = (&s.child, s.state) {
            signal(child, libc::SIGCONT);
            s.state = SlotState::Running;
        }
    }

    /// If the slot's graceful stop finished, records its exit and marks the slot `Down`. Returns whether the slot is
    /// still stopping. `wait` waits for the stop to finish.
    async fn collect_inner(&mut self, slot: usize, wait: bool) -> bool {
        let s = &mut self.slots[slot];
        let Some(handle) = &s.stopping else { return false };
        if !wait && !handle.is_finished() {
            return true;
        }
        let Some(handle) = s.stopping.take() else { return false };
        let exit = handle.await.unwrap_or(TermExit { worker: s.id.clone(), code: None, took: Duration::ZERO });
        s.state = SlotState::Down;
        self.term_exits.push(exit);
        false
    }

    async fn collect(&mut self, slot: usize) {
        self.collect_inner(slot, false).await;
    }

    /// Stops every process gracefully and waits for all of them (paused ones are resumed first).
    pub async fn stop_all(&mut self) {
        for slot in 0..self.slots.len() {
            self.resume(slot);
            self.term(slot);
        }
        for slot in 0..self.slots.len() {
            self.collect_inner(slot, true).await;
        }
    }

    /// The directory of the run's files.
    pub fn dir(&self) -> &Path {
        &self.spec.dir
    }
}

fn signal(child: &Child, signal: libc::c_int) {
    if let Some(pid) = child.id() {
        // SAFETY: kill(2) with the pid of a child we have not reaped yet (so the pid cannot be reused).
        unsafe {
            libc::kill(pid as libc::pid_t, signal);
        }
    }
}
