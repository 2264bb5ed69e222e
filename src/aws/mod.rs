//! AWS plumbing: SDK configuration, the service clients, and mapping SDK errors to the
//! core's [`EffectError`].
//!
//! - [`appflow`]: CreateFlow / StartFlow / DeleteFlow / DescribeFlow /
//!   DescribeFlowExecutionRecords / CancelFlowExecutions.
//! - [`profiles`]: Customer Profiles PutIntegration (linking the live flow) / DeleteIntegration.
//! - [`health`]: the EventBridge health publisher.
//! - [`inspect`]: read-only AppFlow calls for `workflow diagnose` (flow details, execution
//!   records, connector profile).
//! - `flow_parts`: builders of a flow definition's source and tasks.
//! - [`queue`]: the SQS work queue (receive, delete, visibility, delayed commands).
//!
//! Endpoints, region and credentials come only from the SDK's standard chain
//! (`AWS_ENDPOINT_URL*`, `AWS_REGION`, credentials providers). Throttling and 5xx answers are
//! retried by the SDK's standard retry strategy; nothing here adds a second retry loop.

pub mod appflow;
pub mod coalesce;
mod flow_parts;
pub mod health;
pub mod inspect;
pub mod profiles;
pub mod queue;
pub mod tasks;

use std::sync::Arc;

use aws_config::{BehaviorVersion, SdkConfig};
use aws_sdk_appflow::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_appflow::operation::RequestId as _;
use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode};
use flowpilot_core::effect::EffectError;

use crate::metrics::{Metrics, RequestCounter};

/// The HTTPS client every SDK client uses: rustls with ring, because the SDK crates are built
/// without a default TLS stack.
pub fn https_client() -> aws_smithy_runtime_api::client::http::SharedHttpClient {
    aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(CryptoMode::Ring))
        .build_https()
}

/// Stalled-stream protection for responses only. Every request body flowpilot sends is a
/// few KB already in memory, so the upload throughput check has nothing to catch, yet it
/// wraps every request body and was a measurable share of the worker's CPU per message
/// (docs/architecture.md, "Performance"). A response that stalls is still cut off.
fn stalled_stream_protection()
-> aws_smithy_runtime_api::client::stalled_stream_protection::StalledStreamProtectionConfig {
    aws_smithy_runtime_api::client::stalled_stream_protection::StalledStreamProtectionConfig::enabled()
        .upload_enabled(false)
        .build()
}

/// The SDK configuration of the worker and the CLI: the standard provider chain (endpoints,
/// region, credentials) plus [`https_client`].
pub async fn sdk_config() -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .http_client(https_client())
        .stalled_stream_protection(stalled_stream_protection())
        .load()
        .await
}

/// An SDK configuration for the local stack (the demo, the tests): every service at
/// `endpoint_url`, static credentials from the stack's env file, [`https_client`].
pub async fn local_sdk_config(
    endpoint_url: &str,
    region: &str,
    access_key_id: &str,
    secret_access_key: &str,
) -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .region(aws_config::Region::new(region.to_owned()))
        .endpoint_url(endpoint_url)
        .credentials_provider(aws_sdk_sqs::config::Credentials::new(
            access_key_id,
            secret_access_key,
            None,
            None,
            "flowpilot-local-stack",
        ))
        .http_client(https_client())
        .stalled_stream_protection(stalled_stream_protection())
        .load()
        .await
}

/// Every service client flowpilot uses, each counting its requests into `metrics`.
#[derive(Clone, Debug)]
pub struct Clients {
    pub appflow: aws_sdk_appflow::Client,
    pub profiles: aws_sdk_customerprofiles::Client,
    pub sqs: aws_sdk_sqs::Client,
    pub events: aws_sdk_eventbridge::Client,
    pub dynamodb: aws_sdk_dynamodb::Client,
}

impl Clients {
    pub fn new(sdk: &SdkConfig, metrics: &Arc<Metrics>) -> Self {
        let counter = RequestCounter::new(Arc::clone(metrics));
        Self {
            appflow: aws_sdk_appflow::Client::from_conf(
                aws_sdk_appflow::config::Builder::from(sdk)
                    .interceptor(counter.clone())
                    .build(),
            ),
            profiles: aws_sdk_customerprofiles::Client::from_conf(
                aws_sdk_customerprofiles::config::Builder::from(sdk)
                    .interceptor(counter.clone())
                    .build(),
            ),
            sqs: aws_sdk_sqs::Client::from_conf(
                aws_sdk_sqs::config::Builder::from(sdk)
                    .interceptor(counter.clone())
                    .build(),
            ),
            events: aws_sdk_eventbridge::Client::from_conf(
                aws_sdk_eventbridge::config::Builder::from(sdk)
                    .interceptor(counter.clone())
                    .build(),
            ),
            dynamodb: aws_sdk_dynamodb::Client::from_conf(
                aws_sdk_dynamodb::config::Builder::from(sdk)
                    .interceptor(counter)
                    .build(),
            ),
        }
    }
}

/// The HTTP status of a service error response, if the call got that far.
fn http_status<E>(err: &SdkError<E, aws_smithy_runtime_api::http::Response>) -> Option<u16> {
    err.raw_response().map(|r| r.status().as_u16())
}

/// Maps an SDK error (already retried by the SDK where that makes sense) to an
/// [`EffectError`]. Transient: no answer (dispatch failure, timeout, unreadable response),
/// throttling and 5xx. Everything else (validation, not found, access denied, auth, conflict,
/// 402 ServiceQuotaExceeded, which needs a quota increase) is permanent.
pub fn effect_error<E>(err: &SdkError<E, aws_smithy_runtime_api::http::Response>) -> EffectError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    let message = err
        .message()
        .map(str::to_owned)
        .unwrap_or_else(|| error_chain(err));
    match err {
        SdkError::ServiceError(_) => {
            let code = err.code().unwrap_or("Unknown").to_owned();
            let status = http_status(err).unwrap_or(0);
            let transient = status >= 500
                || status == 429
                || code.contains("Throttl")
                || code == "TooManyRequestsException"
                || code == "InternalServerException";
            EffectError {
                code,
                message,
                permanent: !transient,
            }
        }
        SdkError::ConstructionFailure(_) => EffectError {
            code: "InvalidRequest".to_owned(),
            message,
            permanent: true,
        },
        SdkError::TimeoutError(_) => EffectError {
            code: "Timeout".to_owned(),
            message,
            permanent: false,
        },
        // DispatchFailure, ResponseError and future variants: the call may or may not have
        // happened; every effect is idempotent, so trying again later is the safe answer.
        _ => EffectError {
            code: "Transport".to_owned(),
            message,
            permanent: false,
        },
    }
}

/// The error and its sources on one line (SDK errors nest the useful part).
pub fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = vec![err.to_string()];
    let mut source = err.source();
    while let Some(s) = source {
        parts.push(s.to_string());
        source = s.source();
    }
    parts.join(": ")
}

/// Where a failed AWS call can be looked up: the service's error code and the request id,
/// lifted out of the SDK error so an error's own message carries them (the SDK error stays
/// its source, for the rest of the chain).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ErrorRef {
    pub code: Option<String>,
    pub request_id: Option<String>,
}

impl ErrorRef {
    pub fn of<E>(err: &SdkError<E, aws_smithy_runtime_api::http::Response>) -> Self
    where
        E: ProvideErrorMetadata,
    {
        Self {
            code: error_code(err).map(str::to_owned),
            request_id: err.request_id().map(str::to_owned),
        }
    }
}

impl std::fmt::Display for ErrorRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (&self.code, &self.request_id) {
            (Some(code), Some(id)) => write!(f, "{code}, request id {id}"),
            (Some(code), None) => f.write_str(code),
            (None, Some(id)) => write!(f, "request id {id}"),
            // Timeouts, connection failures: the cause is further down the chain.
            (None, None) => f.write_str("no answer from AWS"),
        }
    }
}

/// The service error code, if the SDK error is a service answer.
pub fn error_code<E>(err: &SdkError<E, aws_smithy_runtime_api::http::Response>) -> Option<&str>
where
    E: ProvideErrorMetadata,
{
    match err {
        SdkError::ServiceError(_) => err.code(),
        _ => None,
    }
}

/// A builder rejected a value (a required member missing): the effect can never succeed.
pub fn build_error(err: aws_smithy_types::error::operation::BuildError) -> EffectError {
    EffectError {
        code: "InvalidRequest".to_owned(),
        message: err.to_string(),
        permanent: true,
    }
}
