//! AppFlow run reports published to the EventBridge default bus with `PutEvents`.
//!
//! Runs hand events to an unbounded channel (never blocking while the state lock is held);
//! one publisher task sends them in order, so a Start report always precedes its End report.

use aws_config::{BehaviorVersion, Region};
use aws_sdk_eventbridge::types::PutEventsRequestEntry;
use aws_smithy_http_client::tls;
use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::Value;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::config::SimConfig;
use crate::error::SimError;

pub const SOURCE: &str = "aws.appflow";
pub const START: &str = "AppFlow Start Flow Run Report";
pub const END: &str = "AppFlow End Flow Run Report";
pub const DEACTIVATED: &str = "AppFlow Scheduled Flow Deactivated";

#[derive(Debug, Clone)]
pub struct Outgoing {
    pub detail_type: &'static str,
    pub detail: Value,
    /// Goes to the envelope's `resources` (real reports carry a 32-hex id, not the flow ARN).
    pub resource: String,
}

/// Where runs hand their events; a no-op sender when events are disabled.
#[derive(Clone)]
pub struct EventSink {
    tx: Option<mpsc::UnboundedSender<Outgoing>>,
}

impl EventSink {
    pub fn disabled() -> Self {
        Self { tx: None }
    }

    pub fn send(&self, event: Outgoing) {
        if let Some(tx) = &self.tx
            && tx.send(event).is_err()
        {
            tracing::warn!("event publisher has stopped; dropping event");
        }
    }
}

/// `2023-08-29T12:55:23.835Z[UTC]`, as AppFlow writes `start-time` / `end-time`.
pub fn report_time(t: DateTime<Utc>) -> String {
    format!("{}[UTC]", t.to_rfc3339_opts(SecondsFormat::Millis, true))
}

/// Resolve the EventBridge endpoint the way the SDK does (explicit config, then
/// `AWS_ENDPOINT_URL_EVENTBRIDGE`, then `AWS_ENDPOINT_URL`) and refuse anything non-loopback.
pub fn resolve_endpoint(cfg: &SimConfig) -> Result<String, SimError> {
    let url = cfg
        .events
        .endpoint_url
        .clone()
        .or_else(|| std::env::var("AWS_ENDPOINT_URL_EVENTBRIDGE").ok())
        .or_else(|| std::env::var("AWS_ENDPOINT_URL").ok())
        .filter(|u| !u.trim().is_empty())
        .ok_or(SimError::NoEventsEndpoint)?;
    if is_loopback_url(&url) {
        Ok(url)
    } else {
        Err(SimError::NonLoopbackEventsEndpoint(url))
    }
}

pub fn is_loopback_url(url: &str) -> bool {
    let Some(rest) = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
    else {
        return false;
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host = if let Some(v6) = authority.strip_prefix('[') {
        v6.split(']').next().unwrap_or("")
    } else {
        authority.rsplit_once(':').map_or(authority, |(h, _)| h)
    };
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// The explicit port of an `http(s)://host:port/...` URL.
pub fn url_port(url: &str) -> Option<u16> {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let port = match authority.rsplit_once(']') {
        Some((_, p)) => p.strip_prefix(':')?,
        None => authority.rsplit_once(':')?.1,
    };
    port.parse().ok()
}

/// Build the publisher; returns the sink and a future to run as a background task.
pub async fn start_publisher(
    cfg: &SimConfig,
    shutdown: CancellationToken,
) -> Result<(EventSink, Option<impl Future<Output = ()> + use<>>), SimError> {
    if cfg.events.disabled {
        return Ok((EventSink::disabled(), None));
    }
    let endpoint = resolve_endpoint(cfg)?;
    // SDK crates are built without a default TLS stack, so supply the HTTP client explicitly.
    let http = aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(
            tls::rustls_provider::CryptoMode::Ring,
        ))
        .build_https();
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .http_client(http)
        .region(Region::new(cfg.region.clone()))
        .endpoint_url(endpoint.clone());
    if let (Some(ak), Some(sk)) = (&cfg.events.access_key_id, &cfg.events.secret_access_key) {
        loader = loader.credentials_provider(aws_sdk_eventbridge::config::Credentials::new(
            ak,
            sk,
            None,
            None,
            "flowpilot-sim-config",
        ));
    }
    let client = aws_sdk_eventbridge::Client::new(&loader.load().await);
    tracing::info!(%endpoint, "publishing AppFlow run reports to EventBridge");
    let (tx, rx) = mpsc::unbounded_channel();
    Ok((
        EventSink { tx: Some(tx) },
        Some(publish_loop(client, rx, shutdown)),
    ))
}

async fn publish_loop(
    client: aws_sdk_eventbridge::Client,
    mut rx: mpsc::UnboundedReceiver<Outgoing>,
    shutdown: CancellationToken,
) {
    loop {
        let ev = tokio::select! {
            _ = shutdown.cancelled() => break,
            ev = rx.recv() => match ev { Some(ev) => ev, None => break },
        };
        let entry = PutEventsRequestEntry::builder()
            .source(SOURCE)
            .detail_type(ev.detail_type)
            .detail(ev.detail.to_string())
            .resources(ev.resource.clone())
            .build();
        match client.put_events().entries(entry).send().await {
            Ok(out) if out.failed_entry_count() > 0 => {
                tracing::warn!(detail_type = ev.detail_type, entries = ?out.entries(), "PutEvents rejected the event");
            }
            Ok(_) => tracing::debug!(detail_type = ev.detail_type, "published"),
            Err(e) => {
                tracing::warn!(detail_type = ev.detail_type, error = %aws_sdk_eventbridge::error::DisplayErrorContext(&e), "PutEvents failed");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_detection() {
        assert!(is_loopback_url("http://127.0.0.1:5000"));
        assert!(is_loopback_url("http://localhost:1/"));
        assert!(is_loopback_url("http://[::1]:8080"));
        assert!(!is_loopback_url("https://events.us-east-1.amazonaws.com"));
        assert!(!is_loopback_url("http://10.0.0.1:5000"));
        assert!(!is_loopback_url("127.0.0.1:5000"));
    }

    #[test]
    fn url_ports() {
        assert_eq!(url_port("http://127.0.0.1:5000/x"), Some(5000));
        assert_eq!(url_port("http://[::1]:8080"), Some(8080));
        assert_eq!(url_port("http://localhost"), None);
    }

    #[test]
    fn report_time_has_zone_suffix() {
        let t = DateTime::from_timestamp_millis(1_693_313_723_835).unwrap();
        assert_eq!(report_time(t), "2023-08-29T12:55:23.835Z[UTC]");
    }
}
