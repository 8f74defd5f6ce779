//! [`LeanPollingApi`]: `GetRecords` without the SDK's deserialiser — our own signed request and decoder
//! ([`WireFormat`]), records handed out as slices of one buffer. `GetShardIterator` stays on the SDK client.

use std::sync::{Arc, OnceLock};

use async_trait::async_trait;
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::http::HttpConnectorSettings;
use aws_smithy_runtime_api::client::interceptors::context::BeforeTransmitInterceptorContextRef;
use aws_smithy_runtime_api::client::interceptors::{Intercept, SharedInterceptor};
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::ConfigBag;

use super::ShardSpec;
use super::api::{ApiError, ApiErrorKind, GetRecordsOutput, IteratorPosition, PollingApi};
use super::kinesis::KinesisPollingApi;
use super::wire::WireFormat;

mod http;

use http::{Captured, Transport};

const GET_RECORDS_TARGET: &str = "Kinesis_20131202.GetRecords";

/// The polling calls with `GetRecords` decoded by kcl-rs, the default of
/// [`Retrieval::Polling`](crate::Retrieval::Polling) with a Kinesis client (see
/// [`GetRecordsPath`](crate::retrieve::GetRecordsPath)).
///
/// * `GetShardIterator` goes through the SDK client as usual; its request tells this API the endpoint the SDK
///   resolved (region, FIPS, dual-stack, `endpoint_url` overrides all apply).
/// * `GetRecords` is signed with SigV4 using the client's identity cache and region, sent over plain hyper for
///   `http://` endpoints (no TLS set-up) or through the client's own HTTP client for `https://`, and its body decoded
///   by [`WireFormat`] into records that are slices of one buffer.
/// * Errors are classified exactly as on the SDK path (same codes, same [`ApiErrorKind`]s); a body that cannot be
///   decoded is a retryable [`ApiErrorKind::Dispatch`]. Like [`KinesisPollingApi`], one service call per method call.
///
/// Not covered (choose [`GetRecordsPath::Sdk`](crate::retrieve::GetRecordsPath::Sdk)): SDK interceptors the
/// application added to the client do not see `GetRecords`, and streams named by ARN in other accounts (each with
/// its own endpoint) — the endpoint of the first `GetShardIterator` serves every `GetRecords`.
pub struct LeanPollingApi {
    sdk: KinesisPollingApi,
    format: WireFormat,
    captured: Arc<OnceLock<Captured>>,
    transport: OnceLock<Result<Transport, ApiError>>,
}

impl std::fmt::Debug for LeanPollingApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LeanPollingApi")
            .field("format", &self.format)
            .field("endpoint", &self.captured.get().map(|c| &c.endpoint))
            .finish()
    }
}

impl LeanPollingApi {
    /// `GetRecords` in `format` for the shards of `client` (its credentials, region and endpoint).
    pub fn new(client: aws_sdk_kinesis::Client, format: WireFormat) -> Self {
        Self {
            sdk: KinesisPollingApi::new(client),
            format,
            captured: Arc::new(OnceLock::new()),
            transport: OnceLock::new(),
        }
    }

    fn transport(&self) -> Result<&Transport, ApiError> {
        let captured = self.captured.get().ok_or_else(|| {
            ApiError::new(ApiErrorKind::Other, "GetRecords before any GetShardIterator: the endpoint is not known yet")
        })?;
        let transport = self.transport.get_or_init(|| {
            let config = self.sdk.client().config();
            let region = config.region().map(|r| r.as_ref().to_owned()).ok_or_else(|| {
                ApiError::new(ApiErrorKind::InvalidArgument, "the Kinesis client has no region".to_owned())
            })?;
            let timeouts = config.timeout_config();
            let mut settings = HttpConnectorSettings::builder();
            settings.set_connect_timeout(timeouts.and_then(|t| t.connect_timeout()));
            settings.set_read_timeout(timeouts.and_then(|t| t.read_timeout()));
            let settings = settings.build();
            Transport::new(captured.clone(), region, settings)
        });
        transport.as_ref().map_err(Clone::clone)
    }
}

/// Notes the scheme and authority of the SDK's `GetShardIterator` request — the endpoint `GetRecords` goes to — and
/// the client's runtime components (identity cache and resolver, HTTP client).
#[derive(Debug)]
struct EndpointCapture(Arc<OnceLock<Captured>>);

impl Intercept for EndpointCapture {
    fn name(&self) -> &'static str {
        "kcl-rs GetRecords endpoint capture"
    }

    fn read_before_transmit(
        &self,
        context: &BeforeTransmitInterceptorContextRef<'_>,
        components: &RuntimeComponents,
        _config: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        if self.0.get().is_none() {
            let uri: ::http::Uri = context.request().uri().parse()?;
            if let (Some(scheme), Some(authority)) = (uri.scheme_str(), uri.authority()) {
                let endpoint = format!("{scheme}://{authority}");
                let _ = self.0.set(Captured { endpoint, components: components.clone() });
            }
        }
        Ok(())
    }
}

#[async_trait]
impl PollingApi for LeanPollingApi {
    type Iterator = Arc<str>;

    async fn get_shard_iterator(
        &self,
        shard: &ShardSpec,
        position: &IteratorPosition,
    ) -> Result<Option<Arc<str>>, ApiError> {
        let capture =
            self.captured.get().is_none().then(|| SharedInterceptor::new(EndpointCapture(self.captured.clone())));
        self.sdk.get_shard_iterator_with(shard, position, capture).await
    }

    async fn get_records(&self, iterator: &Arc<str>, limit: usize) -> Result<GetRecordsOutput<Arc<str>>, ApiError> {
        let transport = self.transport()?;
        let body = self.format.get_records_request(iterator, limit);
        let response = transport.post(GET_RECORDS_TARGET, self.format.content_type(), body).await?;
        if !(200..300).contains(&response.status) {
            return Err(self.format.decode_error(response.status, response.error_type.as_deref(), &response.body));
        }
        self.format.decode_get_records(response.body)
    }
}
