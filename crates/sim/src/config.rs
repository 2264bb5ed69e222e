//! Simulator configuration (JSON or TOML; every field has a default).

use std::net::{IpAddr, Ipv4Addr};

use chrono::{DateTime, TimeZone, Utc};
use serde::{Deserialize, Serialize};

use crate::faults::FaultPlan;
use crate::iam::IamConfig;

/// Everything the simulator needs to start. `SimConfig::default()` binds 127.0.0.1 on a free
/// port and publishes events to the SDK-configured EventBridge endpoint.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct SimConfig {
    /// Loopback address to bind; anything else is refused at start.
    pub bind: IpAddr,
    /// 0 picks a free port.
    pub port: u16,
    /// Account id used in ARNs.
    pub account_id: String,
    /// Region used in ARNs and for the EventBridge client.
    pub region: String,
    /// Seed for fault decisions and run durations, so a test run can be replayed.
    pub seed: u64,
    /// Real milliseconds per scheduled-flow tick (one schedule interval of sim time).
    pub tick_ms: u64,
    /// `flowErrorDeactivationThreshold` used when a scheduled flow does not set one.
    pub default_deactivation_threshold: u32,
    pub source: SourceConfig,
    pub events: EventsConfig,
    pub faults: FaultPlan,
    /// IAM enforcement, identities and the front's upstream.
    pub iam: IamConfig,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            bind: IpAddr::V4(Ipv4Addr::LOCALHOST),
            port: 0,
            account_id: "123456789012".to_owned(),
            region: "us-east-1".to_owned(),
            seed: 42,
            tick_ms: 1000,
            default_deactivation_threshold: 5,
            source: SourceConfig::default(),
            events: EventsConfig::default(),
            faults: FaultPlan::default(),
            iam: IamConfig::default(),
        }
    }
}

/// Shape of every synthetic source object.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct SourceConfig {
    /// Records per UTC day in every object.
    pub records_per_day: u32,
    /// First day that has records (records exist from here up to wall-clock now).
    pub start: DateTime<Utc>,
}

impl Default for SourceConfig {
    fn default() -> Self {
        Self {
            records_per_day: 50,
            // 2020-01-01T00:00:00Z is a valid, unambiguous UTC instant.
            start: Utc
                .with_ymd_and_hms(2020, 1, 1, 0, 0, 0)
                .single()
                .unwrap_or(DateTime::UNIX_EPOCH),
        }
    }
}

/// Where AppFlow run reports go.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct EventsConfig {
    /// Do not publish to EventBridge at all (events are still listed at `/_sim/events`).
    pub disabled: bool,
    /// Overrides `AWS_ENDPOINT_URL_EVENTBRIDGE` / `AWS_ENDPOINT_URL`. Must be loopback.
    pub endpoint_url: Option<String>,
    /// Static credentials for PutEvents; otherwise the SDK's default chain is used.
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
}
