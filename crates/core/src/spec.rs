//! Workflow spec: the operator's request, validated (docs/architecture.md, "The workflow model").
//!
//! [`SpecInput`] is the raw, all-optional form (CLI flags or a TOML file, same keys);
//! [`SpecInput::validate`] checks every field and reports every problem, each naming the field,
//! the value and what is allowed (the AWS patterns from the AppFlow / Customer Profiles models).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

mod input;
mod validate;

pub use input::{SpecError, SpecInput, parse_millis, parse_timestamp};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Connector {
    Salesforce,
    Marketo,
    Servicenow,
    Zendesk,
    S3,
}

impl Connector {
    /// AppFlow `connectorType` spelling.
    pub fn appflow_type(self) -> &'static str {
        match self {
            Self::Salesforce => "Salesforce",
            Self::Marketo => "Marketo",
            Self::Servicenow => "Servicenow",
            Self::Zendesk => "Zendesk",
            Self::S3 => "S3",
        }
    }

    /// Key inside `sourceConnectorProperties` / `connectorOperator` (note `ServiceNow`).
    pub fn property_key(self) -> &'static str {
        match self {
            Self::Servicenow => "ServiceNow",
            other => other.appflow_type(),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Salesforce => "salesforce",
            Self::Marketo => "marketo",
            Self::Servicenow => "servicenow",
            Self::Zendesk => "zendesk",
            Self::S3 => "s3",
        }
    }

    pub const ALL: [Connector; 5] = [
        Self::Salesforce,
        Self::Marketo,
        Self::Servicenow,
        Self::Zendesk,
        Self::S3,
    ];

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|c| c.as_str().eq_ignore_ascii_case(s.trim()))
    }

    /// The `SourceConnectorType` Customer Profiles' CreateIntegrationWorkflow accepts for this
    /// connector (its model allows Salesforce, Marketo, ServiceNow); None: the managed engine
    /// cannot import from it.
    pub fn managed_source_type(self) -> Option<&'static str> {
        match self {
            Self::Salesforce => Some("Salesforce"),
            Self::Marketo => Some("Marketo"),
            Self::Servicenow => Some("ServiceNow"),
            Self::Zendesk | Self::S3 => None,
        }
    }

    /// Default record-id field, projected together with the timestamp field when no `fields`
    /// are given (S3: `id`, the usual key column of an exported CSV/JSON file).
    pub fn default_id_field(self) -> &'static str {
        match self {
            Self::Salesforce => "Id",
            Self::Servicenow => "sys_id",
            Self::Marketo | Self::Zendesk | Self::S3 => "id",
        }
    }

    /// Default modification-timestamp field (None: S3 has no timestamp filter).
    pub fn default_timestamp_field(self) -> Option<&'static str> {
        match self {
            Self::Salesforce => Some("LastModifiedDate"),
            Self::Servicenow => Some("sys_updated_on"),
            Self::Marketo => Some("updatedAt"),
            Self::Zendesk => Some("updated_at"),
            Self::S3 => None,
        }
    }
}

/// Who runs the batches (docs/architecture.md, "The managed engine").
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Engine {
    /// flowpilot's own: one flow per batch, started and watched from the work queue.
    #[default]
    Flowpilot,
    /// Customer Profiles' CreateIntegrationWorkflow runs the batches flowpilot planned;
    /// flowpilot watches it and adds events, redrive and rebuild.
    Managed,
}

impl Engine {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Flowpilot => "flowpilot",
            Self::Managed => "managed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Self::Flowpilot, Self::Managed]
            .into_iter()
            .find(|e| e.as_str().eq_ignore_ascii_case(s.trim()))
    }

    fn is_default(&self) -> bool {
        *self == Self::Flowpilot
    }
}

/// Where records come from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum SourceObject {
    /// A SaaS object, e.g. Salesforce `Account`.
    Object { name: String },
    S3 {
        bucket: String,
        prefix: Option<String>,
    },
}

/// Retry policy for transient batch failures: exponential backoff with full jitter.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetryPolicy {
    /// Retries after the first attempt (default 3, at most 20).
    pub max_retries: u32,
    /// First backoff step in milliseconds (default 30 000, at most [`Self::MAX_BASE_MS`]).
    pub base_ms: u64,
    /// Backoff cap in milliseconds (default 900 000, at most [`Self::MAX_CAP_MS`]).
    pub cap_ms: u64,
}

impl RetryPolicy {
    /// 1 h: a first retry later than that is an outage, better failed and redriven.
    pub const MAX_BASE_MS: u64 = 3_600_000;
    /// 24 h: a batch holds a concurrency slot while it waits, and its retry timer is a queue
    /// message re-sent every 15 minutes; a day of waiting is already generous.
    pub const MAX_CAP_MS: u64 = 86_400_000;
}

/// The continuous integration created after the backfill.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContinuousSpec {
    /// AppFlow schedule expression (default `rate(1hours)`).
    pub schedule: String,
    pub auto_rebuild: bool,
    /// Consecutive failed runs that make the integration degraded (default 3).
    pub degraded_threshold: u32,
}

/// Longest batch size and bulk threshold (P100Y): no backfill needs longer windows, and the
/// bound keeps every `from + n × duration` the planner computes far inside chrono's range.
pub const MAX_SPEC_DURATION: crate::duration::IsoDuration =
    crate::duration::IsoDuration::months(1200);

/// The largest `max_record_failures`: a million, the size of a large batch run (Salesforce's
/// Bulk API handles up to that per job), so "tolerate everything" is still a number.
pub const MAX_RECORD_FAILURES: u32 = 1_000_000;

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// One hour: the shortest window a run that failed for size or time is split down to
/// (`decide::split`). Below an hour the run's fixed costs (flow creation, the source's job
/// set-up, one API call or more) dominate, and a window that still fails at an hour of data
/// is better retried and reported than cut into ever more runs.
pub const DEFAULT_SPLIT_FLOOR_MS: u64 = 3_600_000;
/// A minute: windows are selected at millisecond precision, but halving below a minute buys
/// nothing a person could act on and multiplies the runs.
pub const MIN_SPLIT_FLOOR_MS: u64 = 60_000;
/// 30 days: a floor longer than the batch size simply means "never split".
pub const MAX_SPLIT_FLOOR_MS: u64 = 30 * 86_400_000;

/// Windows that must have completed before the rest are sized from their density: one
/// window can be an outlier (a quiet holiday month, a bulk update); three rarely all are.
pub const RESIZE_AFTER: usize = 3;
/// 100 million: Salesforce's Bulk API 2.0 query limit per 24 h; no run should aim beyond it.
pub const MAX_TARGET_RECORDS_PER_RUN: u64 = 100_000_000;

fn default_split_floor() -> u64 {
    DEFAULT_SPLIT_FLOOR_MS
}

fn is_default_split_floor(ms: &u64) -> bool {
    *ms == DEFAULT_SPLIT_FLOOR_MS
}

/// A validated workflow spec. Construct through `SpecInput::validate`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkflowSpec {
    pub domain: String,
    pub object_type: String,
    pub connector: Connector,
    pub connector_profile: String,
    pub source: SourceObject,
    /// None only for S3.
    pub timestamp_field: Option<String>,
    /// Fields projected and mapped into the object type.
    pub fields: Vec<String>,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    /// At most [`MAX_SPEC_DURATION`].
    pub batch_size: crate::duration::IsoDuration,
    /// At most [`MAX_SPEC_DURATION`].
    pub bulk_threshold: crate::duration::IsoDuration,
    /// Max batches running (or waiting to retry) at once.
    pub concurrency: u32,
    pub retry: RetryPolicy,
    pub continuous: ContinuousSpec,
    /// Record-level failures a batch run may report and still succeed (default 0, at most
    /// [`MAX_RECORD_FAILURES`]); beyond it the batch fails with a redrive command
    /// (`decide::records`). Specs stored before it existed read as 0, and 0 is not written,
    /// so they write back unchanged.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub max_record_failures: u32,
    /// Shortest window a split may produce, in ms (default [`DEFAULT_SPLIT_FLOOR_MS`], between
    /// [`MIN_SPLIT_FLOOR_MS`] and [`MAX_SPLIT_FLOOR_MS`]). Specs stored before it existed read
    /// the default, which is not written, so they write back unchanged.
    #[serde(
        default = "default_split_floor",
        skip_serializing_if = "is_default_split_floor"
    )]
    pub split_floor_ms: u64,
    /// Records a batch run should carry: once [`RESIZE_AFTER`] windows have completed, the
    /// windows nobody has started yet are re-planned from the record density they observed
    /// (`decide::resize`). `None`: the planned windows stay.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_records_per_run: Option<u64>,
    pub kms_arn: Option<String>,
    pub tags: BTreeMap<String, String>,
    /// Who runs the batches. Specs stored before the managed engine existed read as
    /// `flowpilot`, which is not written, so they write back unchanged.
    #[serde(default, skip_serializing_if = "Engine::is_default")]
    pub engine: Engine,
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    /// A valid Salesforce spec, 2024-01-01 to `now()`.
    pub(crate) fn base_input() -> SpecInput {
        SpecInput {
            domain: Some("acme".into()),
            object_type: Some("Account".into()),
            connector: Some("salesforce".into()),
            connector_profile: Some("sf".into()),
            object: Some("Account".into()),
            from: Some("2024-01-01".into()),
            ..Default::default()
        }
    }

    pub(crate) fn spec_with(edit: impl FnOnce(&mut SpecInput)) -> WorkflowSpec {
        let mut i = base_input();
        edit(&mut i);
        i.validate(now()).unwrap()
    }

    #[test]
    fn spec_round_trips_through_json() {
        let s = spec_with(|_| {});
        let back: WorkflowSpec = serde_json::from_str(&serde_json::to_string(&s).unwrap()).unwrap();
        assert_eq!(back, s);
    }
}
