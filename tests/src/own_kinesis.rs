//! A private kinesis-mock for one test or benchmark, for when the shared one cannot serve it: above all its TLS port
//! with a certificate generated at start ([`OwnKinesis::start_tls`]), so that `SubscribeToShard` runs over TLS and
//! HTTP/2 as on AWS. The shared instance's certificate is fixed when the runner starts it, and the one kinesis-mock
//! bundles has no subject-alternative name, so rustls rejects it ("certificate not valid for any names").
//!
//! Started like the runner starts its own (`node --require loopback.cjs main.js`, bound to 127.0.0.1 by the
//! preload, short artificial delays) on free loopback ports; killed when [`OwnKinesis::stop`] is called or the
//! value is dropped.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use aws_smithy_http_client::tls::{self, TlsContext, TrustStore, rustls_provider::CryptoMode};
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
    /// The CA that signed the server certificate, when [`start_tls`](Self::start_tls) generated it.
    ca_pem: Option<String>,
    /// Holds the generated certificate file for as long as the process may read it.
    _cert_dir: Option<tempfile::TempDir>,
}

fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// A CA and a server certificate for `localhost` and `127.0.0.1` signed by it: (CA PEM, kinesis-mock's cert JSON
/// `{"server":{"key":PEM,"cert":PEM}}`).
pub fn generate_certificates() -> Result<(String, String), String> {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
    let err = |e: rcgen::Error| e.to_string();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).map_err(err)?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().map_err(err)?).map_err(err)?;
    let server_key = KeyPair::generate().map_err(err)?;
    let server_params = CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).map_err(err)?;
    let server = server_params.signed_by(&server_key, &ca).map_err(err)?;
    let json = serde_json::json!({ "server": { "key": server_key.serialize_pem(), "cert": server.pem() } });
    Ok((ca.pem(), json.to_string()))
}

/// An HTTPS client for the AWS SDK that trusts only `ca_pem`: rustls (aws-lc), ALPN offering HTTP/2 and 1.1.
pub fn https_client_trusting(ca_pem: &str) -> Result<aws_sdk_kinesis::config::SharedHttpClient, String> {
    let trust = TrustStore::empty().with_pem_certificate(ca_pem.as_bytes().to_vec());
    let context = TlsContext::builder().with_trust_store(trust).build().map_err(|e| e.to_string())?;
    Ok(aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(CryptoMode::AwsLc))
        .tls_context(context)
        .build_https())
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
        let own = Self { child, plain_port, tls_port, ca_pem: None, _cert_dir: None };
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        while tokio::net::TcpStream::connect(("127.0.0.1", plain_port)).await.is_err() {
            if tokio::time::Instant::now() > deadline {
                return Err("kinesis-mock did not open its port within 60 s".to_owned());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(own)
    }

    /// Starts kinesis-mock with a freshly generated certificate for `localhost`/`127.0.0.1` on its TLS port; reach
    /// it with [`tls_client`](Self::tls_client).
    pub async fn start_tls() -> Result<Self, String> {
        let (ca_pem, cert_json) = generate_certificates()?;
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let cert_file = dir.path().join("server.json");
        std::fs::write(&cert_file, cert_json).map_err(|e| e.to_string())?;
        let mut own = Self::start(&cert_file).await?;
        own.ca_pem = Some(ca_pem);
        own._cert_dir = Some(dir);
        Ok(own)
    }

    /// `https://127.0.0.1:<tls_port>`.
    pub fn tls_endpoint(&self) -> String {
        format!("https://127.0.0.1:{}", self.tls_port)
    }

    /// `http://127.0.0.1:<plain_port>`.
    pub fn plain_endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.plain_port)
    }

    /// A Kinesis client for the TLS port that trusts the generated CA (region `us-east-1`, dummy credentials),
    /// returned once kinesis-mock answers over TLS (the listener may accept TCP a moment before TLS is ready; at
    /// most 20 s). Only after [`start_tls`](Self::start_tls).
    pub async fn tls_client(&self) -> Result<aws_sdk_kinesis::Client, String> {
        self.tls_client_at(self.tls_port).await
    }

    /// Like [`tls_client`](Self::tls_client), through another port of 127.0.0.1 that leads to the TLS port (a
    /// [`CuttingProxy`](crate::proxy::CuttingProxy), say).
    pub async fn tls_client_at(&self, port: u16) -> Result<aws_sdk_kinesis::Client, String> {
        let ca_pem = self.ca_pem.as_deref().ok_or("no generated certificate: start with OwnKinesis::start_tls")?;
        let endpoint = format!("https://127.0.0.1:{port}");
        let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new("us-east-1"))
            .credentials_provider(aws_credential_types::Credentials::for_tests())
            .endpoint_url(&endpoint)
            .http_client(https_client_trusting(ca_pem)?)
            .load()
            .await;
        let client = aws_sdk_kinesis::Client::new(&sdk);
        let mut last = String::new();
        for _ in 0..100 {
            match client.list_streams().send().await {
                Ok(_) => return Ok(client),
                Err(error) => last = aws_sdk_kinesis::error::DisplayErrorContext(error).to_string(),
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        Err(format!("kinesis-mock does not answer over TLS at {endpoint}: {last}"))
    }

    /// Kills the process and waits for it to exit.
    pub async fn stop(mut self) {
        let _ = self.child.kill().await;
    }
}
