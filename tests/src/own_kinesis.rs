//! A private kinesis-mock for one test, for when the shared one cannot serve it: e.g. the TLS port with a
//! certificate the test generated (the shared instance's certificate is fixed when the runner starts it).
//!
//! Started like the runner starts its own (`node --require loopback.cjs main.js`, bound to 127.0.0.1 by the
//! preload, short artificial delays) on free loopback ports; killed when [`OwnKinesis::stop`] is called or the
//! value is dropped.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::process::{Child, Command};

/// The workspace root, where `npm ci` put `node_modules`.
const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
/// The preload that binds kinesis-mock to 127.0.0.1 (kinesis-mock has no option for it).
const PRELOAD: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/emulators/loopback.cjs");

/// A running private kinesis-mock.
#[derive(Debug)]
pub struct OwnKinesis {
    child: Child,
    /// Its plain HTTP port on 127.0.0.1.
    pub plain_port: u16,
    /// Its TLS port on 127.0.0.1 (HTTP/2 via ALPN).
    pub tls_port: u16,
}

fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

impl OwnKinesis {
    /// Starts kinesis-mock serving `cert_file` (its JSON format: `{"server":{"key":PEM,"cert":PEM}}`) on its TLS
    /// port, and waits until its plain port accepts connections (at most 60 s).
    pub async fn start(cert_file: &Path) -> Result<Self, String> {
        let main: PathBuf = Path::new(ROOT).join("node_modules/kinesis-local/main.js");
        if !main.is_file() {
            return Err(format!("{} is missing: run `npm ci` (scripts/test does)", main.display()));
        }
        let (plain_port, tls_port) = (free_port().map_err(|e| e.to_string())?, free_port().map_err(|e| e.to_string())?);
        let mut cmd = Command::new("node");
        cmd.arg("--require")
            .arg(PRELOAD)
            .arg(&main)
            .env("KINESIS_MOCK_PLAIN_PORT", plain_port.to_string())
            .env("KINESIS_MOCK_TLS_PORT", tls_port.to_string())
            .env("KINESIS_MOCK_CERT_PATH", cert_file)
            .env("LOG_LEVEL", "WARN")
            .env("CREATE_STREAM_DURATION", "10ms")
            .env("DELETE_STREAM_DURATION", "10ms")
            .env("REGISTER_STREAM_CONSUMER_DURATION", "10ms")
            .env("DEREGISTER_STREAM_CONSUMER_DURATION", "10ms")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true);
        let child = cmd.spawn().map_err(|e| format!("cannot start node: {e}"))?;
        let own = Self { child, plain_port, tls_port };
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        while tokio::net::TcpStream::connect(("127.0.0.1", plain_port)).await.is_err() {
            if tokio::time::Instant::now() > deadline {
                return Err("kinesis-mock did not open its port within 60 s".to_owned());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(own)
    }

    /// Kills the process and waits for it to exit.
    pub async fn stop(mut self) {
        let _ = self.child.kill().await;
    }
}
