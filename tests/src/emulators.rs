//! Access to the Kinesis (kinesis-mock) and DynamoDB (DynamoDB Local) emulators for tests.
//!
//! The test command starts both emulators once per run on free loopback ports and exports their endpoints in
//! [`KINESIS_ENDPOINT_ENV`] and [`DYNAMODB_ENDPOINT_ENV`].

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_credential_types::Credentials;

/// Environment variable holding the kinesis-mock endpoint (`http://127.0.0.1:PORT`).
pub const KINESIS_ENDPOINT_ENV: &str = "KCL_TEST_KINESIS_ENDPOINT";
/// Environment variable holding the DynamoDB Local endpoint (`http://127.0.0.1:PORT`).
pub const DYNAMODB_ENDPOINT_ENV: &str = "KCL_TEST_DYNAMODB_ENDPOINT";

/// Endpoints of the running emulators.
#[derive(Debug, Clone)]
pub struct Emulators {
    kinesis_endpoint: String,
    dynamodb_endpoint: String,
}

/// The emulators for this test run.
///
/// # Panics
/// When the endpoints are not set: run the tests through the README's test command, which starts the emulators.
pub fn emulators() -> &'static Emulators {
    static EMULATORS: OnceLock<Emulators> = OnceLock::new();
    EMULATORS.get_or_init(|| {
        let read = |name: &str| {
            std::env::var(name).unwrap_or_else(|_| {
                panic!("{name} is not set: run the tests with `scripts/test`, which starts the emulators")
            })
        };
        Emulators { kinesis_endpoint: read(KINESIS_ENDPOINT_ENV), dynamodb_endpoint: read(DYNAMODB_ENDPOINT_ENV) }
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
