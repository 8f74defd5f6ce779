//! moto in server mode — SQS, SNS and S3 on loopback — for the failure-destination tests. The emulator runner starts
//! it from the virtualenv `scripts/test` creates (`.emulators/moto`, PyPI `moto[server]` at a pinned version) and
//! exports its endpoint in [`MOTO_ENDPOINT_ENV`].

use std::sync::OnceLock;

use crate::Emulators;

/// Environment variable holding the moto endpoint (`http://127.0.0.1:PORT`).
pub const MOTO_ENDPOINT_ENV: &str = "KCL_TEST_MOTO_ENDPOINT";
/// The virtualenv holding moto, relative to the repository root.
pub const MOTO_VENV: &str = ".emulators/moto";
/// The moto version `scripts/test` installs.
pub const MOTO_VERSION: &str = "5.2.5";
/// What to do when moto is missing.
pub const MOTO_INSTALL_HINT: &str = "run scripts/test (it installs it), or by hand: python3 -m venv .emulators/moto && \
                                     .emulators/moto/bin/pip install 'moto[server]==5.2.5' (needs Python 3.9+ with \
                                     venv and pip)";

/// The moto endpoint of this test run.
///
/// # Panics
/// When [`MOTO_ENDPOINT_ENV`] is not set: run the tests with `scripts/test`, which installs and starts moto.
pub fn moto_endpoint() -> &'static str {
    static ENDPOINT: OnceLock<String> = OnceLock::new();
    ENDPOINT.get_or_init(|| match std::env::var(MOTO_ENDPOINT_ENV) {
        Ok(url) if url.starts_with("http://") => url,
        _ => panic!(
            "{MOTO_ENDPOINT_ENV} is not set, so the SQS/SNS/S3 tests have no moto to talk to: {MOTO_INSTALL_HINT}; \
             `cargo run -q -p kcl-tests --bin emulators -- serve` starts it with the other emulators."
        ),
    })
}

/// An SQS client for moto.
pub async fn sqs_client() -> aws_sdk_sqs::Client {
    aws_sdk_sqs::Client::new(&Emulators::sdk_config(moto_endpoint()).await)
}

/// An SNS client for moto.
pub async fn sns_client() -> aws_sdk_sns::Client {
    aws_sdk_sns::Client::new(&Emulators::sdk_config(moto_endpoint()).await)
}

/// An S3 client for moto (path-style addressing: moto serves every bucket on one host).
pub async fn s3_client() -> aws_sdk_s3::Client {
    let config = Emulators::sdk_config(moto_endpoint()).await;
    aws_sdk_s3::Client::from_conf(aws_sdk_s3::config::Builder::from(&config).force_path_style(true).build())
}
