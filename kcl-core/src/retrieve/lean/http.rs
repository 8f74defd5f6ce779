//! The lean path's transport: requests signed with SigV4 (`aws-sigv4`, with the identity the Kinesis client's own
//! identity cache resolves and the client's region), sent over plain hyper for `http://` endpoints (no TLS set-up at
//! all) or through the client's own HTTP client for `https://` (its TLS, proxy and trust settings apply); the body is
//! read into one buffer.

use std::time::SystemTime;

use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::auth::AuthSchemeId;
use aws_smithy_runtime_api::client::http::{HttpClient, HttpConnector, HttpConnectorSettings, SharedHttpConnector};
use aws_smithy_runtime_api::client::identity::{Identity, ResolveCachedIdentity};
use aws_smithy_runtime_api::client::orchestrator::HttpRequest;
use aws_smithy_runtime_api::client::runtime_components::{GetIdentityResolver, RuntimeComponents};
use aws_smithy_types::body::SdkBody;
use aws_smithy_types::config_bag::ConfigBag;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector as PlainConnector;
use hyper_util::rt::TokioExecutor;

use super::super::api::{ApiError, ApiErrorKind};

/// What the SDK's `GetShardIterator` request showed: where Kinesis is and the client's runtime components.
#[derive(Clone, Debug)]
pub(crate) struct Captured {
    /// Scheme and authority, e.g. `https://kinesis.eu-west-1.amazonaws.com`.
    pub endpoint: String,
    pub components: RuntimeComponents,
}

/// What a response carried.
pub(crate) struct Response {
    pub status: u16,
    /// `x-amzn-ErrorType`, when present.
    pub error_type: Option<String>,
    pub body: Bytes,
}

enum Connection {
    /// `http://`: hyper over TCP, nothing else.
    Plain(Box<Client<PlainConnector, Full<Bytes>>>),
    /// `https://`: the SDK client's HTTP connector.
    Sdk(SharedHttpConnector),
}

/// Signs and sends `POST /` requests to one Kinesis endpoint.
pub(crate) struct Transport {
    endpoint: http::Uri,
    host: String,
    connection: Connection,
    components: RuntimeComponents,
    region: String,
}

fn invalid(why: String) -> ApiError {
    ApiError::new(ApiErrorKind::InvalidArgument, why)
}

impl Transport {
    pub(crate) fn new(captured: Captured, region: String, settings: HttpConnectorSettings) -> Result<Self, ApiError> {
        let endpoint: http::Uri =
            captured.endpoint.parse().map_err(|e| invalid(format!("Kinesis endpoint {:?}: {e}", captured.endpoint)))?;
        let host = endpoint.authority().map(|a| a.as_str().to_owned()).ok_or_else(|| invalid("no host".into()))?;
        let connection = match endpoint.scheme_str() {
            Some("http") => {
                Connection::Plain(Box::new(Client::builder(TokioExecutor::new()).build(PlainConnector::new())))
            }
            _ => {
                let client = captured.components.http_client().ok_or_else(|| {
                    ApiError::new(ApiErrorKind::Other, "the Kinesis client has no HTTP client".to_owned())
                })?;
                Connection::Sdk(client.http_connector(&settings, &captured.components))
            }
        };
        Ok(Self { endpoint, host, connection, components: captured.components, region })
    }

    /// The client's identity, from its identity cache (refreshed before expiry as the SDK does).
    async fn identity(&self) -> Result<Identity, ApiError> {
        let denied = |why: String| ApiError::new(ApiErrorKind::AccessDenied, why);
        let resolver = self
            .components
            .identity_resolver(AuthSchemeId::new("sigv4"))
            .ok_or_else(|| denied("the Kinesis client has no SigV4 credentials".into()))?;
        let bag = ConfigBag::base();
        self.components
            .identity_cache()
            .resolve_cached_identity(resolver, &self.components, &bag)
            .await
            .map_err(|e| denied(format!("could not load AWS credentials for GetRecords: {e}")))
    }

    /// Sends one signed `POST /` with `target` (`Kinesis_20131202.GetRecords`) and reads the whole response.
    pub(crate) async fn post(&self, target: &str, content_type: &str, body: Vec<u8>) -> Result<Response, ApiError> {
        let identity = self.identity().await?;
        let headers = [("content-type", content_type), ("x-amz-target", target), ("host", self.host.as_str())];
        let uri = self.endpoint.to_string();
        let unsignable = |e: &dyn std::fmt::Display| invalid(format!("cannot sign GetRecords: {e}"));
        let signable = SignableRequest::new("POST", &uri, headers.iter().copied(), SignableBody::Bytes(&body))
            .map_err(|e| unsignable(&e))?;
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region(&self.region)
            .name("kinesis")
            .time(SystemTime::now())
            .settings(SigningSettings::default())
            .build()
            .map_err(|e| unsignable(&e))?;
        let (instructions, _signature) = sign(signable, &params.into()).map_err(|e| unsignable(&e))?.into_parts();
        let request = http::Request::post(self.endpoint.clone())
            .header("content-type", content_type)
            .header("x-amz-target", target)
            .body(Bytes::from(body))
            .map_err(|e| invalid(format!("cannot build GetRecords: {e}")))?;
        let (mut parts, body) = request.into_parts();
        let mut headers_only = http::Request::from_parts(parts.clone(), ());
        instructions.apply_to_request_http1x(&mut headers_only);
        parts.headers = headers_only.headers().clone();
        let failed = |e: &dyn std::fmt::Display, timeout: bool| {
            let kind = if timeout { ApiErrorKind::Timeout } else { ApiErrorKind::Dispatch };
            ApiError::new(kind, format!("GetRecords request failed: {e}"))
        };
        let (status, error_type, body) = match &self.connection {
            Connection::Plain(client) => {
                let response = client
                    .request(http::Request::from_parts(parts, Full::new(body)))
                    .await
                    .map_err(|e| failed(&e, false))?;
                let (head, body) = response.into_parts();
                // A body cut short (reset, length mismatch) fails here: retried like the SDK's dispatch errors.
                let body = body.collect().await.map_err(|e| failed(&e, false))?.to_bytes();
                (head.status.as_u16(), error_type(&head.headers), body)
            }
            Connection::Sdk(connector) => {
                let request = HttpRequest::try_from(http::Request::from_parts(parts, SdkBody::from(body)))
                    .map_err(|e| invalid(format!("cannot build GetRecords: {e}")))?;
                let response = connector.call(request).await.map_err(|e| failed(&e, e.is_timeout()))?;
                let status = response.status().as_u16();
                let kind = response.headers().get("x-amzn-errortype").map(str::to_owned);
                let body = response.into_body().collect().await.map_err(|e| failed(&e, false))?.to_bytes();
                (status, kind, body)
            }
        };
        Ok(Response { status, error_type, body })
    }
}

fn error_type(headers: &http::HeaderMap) -> Option<String> {
    headers.get("x-amzn-errortype").and_then(|v| v.to_str().ok()).map(str::to_owned)
}
