//! Access to the Kinesis (kinesis-mock) and DynamoDB (DynamoDB Local) emulators for tests.
//!
//! The test command (`scripts/test`, or the runner directly:
//! `cargo run -q -p kcl-tests --bin emulators -- run -- cargo test ...`) starts both emulators once per run on free
//! loopback ports and exports their endpoints in [`KINESIS_ENDPOINT_ENV`] and [`DYNAMODB_ENDPOINT_ENV`], and
//! kinesis-mock's TLS port in [`KINESIS_TLS_PORT_ENV`]. For a test loop in an IDE, `... --bin emulators -- serve`
//! starts them and prints the `export` lines to paste.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_credential_types::Credentials;

/// Environment variable holding the kinesis-mock endpoint (`http://127.0.0.1:PORT`).
pub const KINESIS_ENDPOINT_ENV: &str = "KCL_TEST_KINESIS_ENDPOINT";
/// Environment variable holding the DynamoDB Local endpoint (`http://127.0.0.1:PORT`).
pub const DYNAMODB_ENDPOINT_ENV: &str = "KCL_TEST_DYNAMODB_ENDPOINT";
/// Environment variable holding kinesis-mock's TLS port on 127.0.0.1 (HTTP/2 via ALPN; for enhanced fan-out tests).
pub const KINESIS_TLS_PORT_ENV: &str = "KCL_TEST_KINESIS_TLS_PORT";

/// Endpoints of the running emulators.
#[derive(Debug, Clone)]
pub struct Emulators {
    kinesis_endpoint: String,
    dynamodb_endpoint: String,
    kinesis_tls_port: Option<u16>,
}

/// The emulators for this test run.
///
/// # Panics
/// When the endpoints are not set (or not `http://` URLs): run the tests through the README's test command,
/// `scripts/test`, which starts the emulators.
pub fn emulators() -> &'static Emulators {
    static EMULATORS: OnceLock<Emulators> = OnceLock::new();
    EMULATORS.get_or_init(|| {
        let read = |name: &str| match std::env::var(name) {
            Ok(url) if url.starts_with("http://") || url.starts_with("https://") => url,
            Ok(other) => panic!("{name}={other:?} is not an http:// URL"),
            Err(_) => panic!(
                "{name} is not set, so this test has no emulator to talk to. Run the tests with `scripts/test` \
                 (or `cargo run -q -p kcl-tests --bin emulators -- run -- cargo test ...`), which starts kinesis-mock \
                 and DynamoDB Local and sets {KINESIS_ENDPOINT_ENV} and {DYNAMODB_ENDPOINT_ENV}; \
                 `cargo run -q -p kcl-tests --bin emulators -- serve` starts them for an IDE and prints the exports."
            ),
        };
        let kinesis_tls_port = std::env::var(KINESIS_TLS_PORT_ENV).ok().map(|port| {
            port.parse().unwrap_or_else(|_| panic!("{KINESIS_TLS_PORT_ENV}={port:?} is not a port number"))
        });
        Emulators {
            kinesis_endpoint: read(KINESIS_ENDPOINT_ENV),
            dynamodb_endpoint: read(DYNAMODB_ENDPOINT_ENV),
            kinesis_tls_port,
        }
    })
}

impl Emulators {
    /// The kinesis-mock endpoint URL.
    pub fn kinesis_endpoint(&self) -> &str {
        &self.kinesis_endpoint
    }

    /// The DynamoDB Local endpoint URL.
    pub fn dynamodb_endpoint(&self) -> &str {
        &self.dynamodb_endpoint
    }

    /// kinesis-mock's TLS port on 127.0.0.1, when the runner exported [`KINESIS_TLS_PORT_ENV`]. It serves its
    /// bundled certificate unless the runner was given another (`--kinesis-cert`).
    pub fn kinesis_tls_port(&self) -> Option<u16> {
        self.kinesis_tls_port
    }

    /// SDK configuration for a local endpoint: region `us-east-1`, static dummy credentials.
    pub async fn sdk_config(endpoint: &str) -> SdkConfig {
        aws_config::defaults(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .credentials_provider(Credentials::for_tests())
            .endpoint_url(endpoint)
            .load()
            .await
    }

    /// A Kinesis client for the emulator.
    pub async fn kinesis_client(&self) -> aws_sdk_kinesis::Client {
        aws_sdk_kinesis::Client::new(&Self::sdk_config(&self.kinesis_endpoint).await)
    }

    /// A DynamoDB client for the emulator.
    pub async fn dynamodb_client(&self) -> aws_sdk_dynamodb::Client {
        aws_sdk_dynamodb::Client::new(&Self::sdk_config(&self.dynamodb_endpoint).await)
    }
}

/// A name unique within this test run (process id, a counter and a random suffix), valid as a stream or table name.
pub fn unique_name(prefix: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!("{prefix}-{}-{n}-{:08x}", std::process::id(), rand::random::<u32>())
}
