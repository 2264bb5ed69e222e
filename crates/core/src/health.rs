//! Health events: the public interface alerting subscribes to (docs/architecture.md, "Health events").
//! Published with source [`HEALTH_SOURCE`]; the JSON of [`HealthDetail`] is a compatibility
//! promise (schemas in `infra/schemas/`).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

pub const HEALTH_SOURCE: &str = "flowpilot";

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum HealthKind {
    WorkflowStarted,
    BatchSucceeded,
    BatchRetryScheduled,
    BatchFailed,
    WorkflowCompleted,
    WorkflowFailed,
    WorkflowStalled,
    IntegrationDegraded,
    IntegrationRecovered,
    IntegrationRebuilt,
    WorkflowUnreadable,
    WorkflowStuck,
    RecordsNotSent,
    WorkflowPaused,
    BatchSplit,
    BatchWaitingForSlot,
}

impl HealthKind {
    pub const ALL: [HealthKind; 16] = [
        Self::WorkflowStarted,
        Self::BatchSucceeded,
        Self::BatchRetryScheduled,
        Self::BatchFailed,
        Self::WorkflowCompleted,
        Self::WorkflowFailed,
        Self::WorkflowStalled,
        Self::IntegrationDegraded,
        Self::IntegrationRecovered,
        Self::IntegrationRebuilt,
        Self::WorkflowUnreadable,
        Self::WorkflowStuck,
        Self::RecordsNotSent,
        Self::WorkflowPaused,
        Self::BatchSplit,
        Self::BatchWaitingForSlot,
    ];

    /// The EventBridge `detail-type`.
    pub fn detail_type(self) -> &'static str {
        match self {
            Self::WorkflowStarted => "Workflow Started",
            Self::BatchSucceeded => "Batch Succeeded",
            Self::BatchRetryScheduled => "Batch Retry Scheduled",
            Self::BatchFailed => "Batch Failed",
            Self::WorkflowCompleted => "Workflow Completed",
            Self::WorkflowFailed => "Workflow Failed",
            Self::WorkflowStalled => "Workflow Stalled",
            Self::IntegrationDegraded => "Integration Degraded",
            Self::IntegrationRecovered => "Integration Recovered",
            Self::IntegrationRebuilt => "Integration Rebuilt",
            Self::WorkflowUnreadable => "Workflow Unreadable",
            Self::WorkflowStuck => "Workflow Stuck",
            Self::RecordsNotSent => "Records Not Sent",
            Self::WorkflowPaused => "Workflow Paused",
            Self::BatchSplit => "Batch Split",
            Self::BatchWaitingForSlot => "Batch Waiting For Run Slot",
        }
    }

    /// Short stable slug used in event ids and schema file names (`workflow-started`).
    pub fn slug(self) -> &'static str {
        match self {
            Self::WorkflowStarted => "workflow-started",
            Self::BatchSucceeded => "batch-succeeded",
            Self::BatchRetryScheduled => "batch-retry-scheduled",
            Self::BatchFailed => "batch-failed",
            Self::WorkflowCompleted => "workflow-completed",
            Self::WorkflowFailed => "workflow-failed",
            Self::WorkflowStalled => "workflow-stalled",
            Self::IntegrationDegraded => "integration-degraded",
            Self::IntegrationRecovered => "integration-recovered",
            Self::IntegrationRebuilt => "integration-rebuilt",
            Self::WorkflowUnreadable => "workflow-unreadable",
            Self::WorkflowStuck => "workflow-stuck",
            Self::RecordsNotSent => "records-not-sent",
            Self::WorkflowPaused => "workflow-paused",
            Self::BatchSplit => "batch-split",
            Self::BatchWaitingForSlot => "batch-waiting-for-run-slot",
        }
    }

    pub fn from_detail_type(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.detail_type() == s)
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthEvent {
    pub kind: HealthKind,
    pub detail: HealthDetail,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchRef {
    pub index: u32,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Progress {
    pub batches_done: u32,
    pub batches_total: u32,
    pub records: u64,
}

/// The `detail` of every health event. Optional members are omitted when not relevant.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthDetail {
    /// Stable across re-publication: consumers de-duplicate on it.
    pub event_id: String,
    pub workflow_id: String,
    pub domain: String,
    pub object_type: String,
    pub connector: String,
    /// Workflow status after the transition that emitted this event.
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flow_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch: Option<BatchRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempt: Option<u32>,
    pub progress: Progress,
    /// AppFlow's error message, on failures.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Whether the failure was judged transient.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transient: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_at: Option<DateTime<Utc>>,
    /// The exact command to run next (redrive, rebuild, watch), where one applies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
    /// What to do next, in plain words (names the connector profile to reconnect, the object
    /// type mapping to fix, when a pause ends).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recommendation: Option<String>,
    /// The recommendation for machines: `redrive`, `rebuild`, `reconnect`, `fix_mapping`,
    /// `wait` (`advice::Action`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
    /// The AppFlow connector profile (connection) a `reconnect` or `wait` is about.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connector_profile: Option<String>,
    /// Records the run read but could not write (`Records Not Sent`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub records_failed: Option<u64>,
    /// Records the run read (`Records Not Sent`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub records_processed: Option<u64>,
    /// The workflow's `max_record_failures` (`Records Not Sent`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_record_failures: Option<u32>,
    /// The two batches a split batch's window now runs as (`Batch Split`), in window order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub halves: Option<Vec<BatchRef>>,
    pub time: DateTime<Utc>,
}

/// A stored workflow that does not read back (hand-edited, or written by an incompatible
/// version), with what the item still says. Listings skip it; `Workflow Unreadable` reports it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UnreadableItem {
    /// The item's key, as stored (`wf#{workflow_id}` in DynamoDB).
    pub key: String,
    /// Why it does not read back.
    pub reason: String,
    /// The workflow id the key names (the key itself if it names none).
    pub workflow_id: String,
    /// The item's version, if readable: a rewrite of the item is a new occurrence.
    pub version: Option<u64>,
    /// What the item still says about the workflow, each empty when it says nothing readable.
    pub status: String,
    pub domain: String,
    pub object_type: String,
    pub connector: String,
}

impl UnreadableItem {
    /// `Workflow Unreadable`. With no readable workflow, the common members carry what the
    /// item still says (empty strings where it says nothing) and `progress` is all zeros;
    /// `error` is the reason. Every listing that meets the item reports it again under the
    /// same `event_id` (the version is the occurrence), so consumers de-duplicate.
    pub fn health_event(&self, now: DateTime<Utc>) -> HealthEvent {
        let kind = HealthKind::WorkflowUnreadable;
        let occurrence = self.version.map(|v| format!("/v{v}")).unwrap_or_default();
        HealthEvent {
            kind,
            detail: HealthDetail {
                event_id: format!("{}/{}{occurrence}", self.workflow_id, kind.slug()),
                workflow_id: self.workflow_id.clone(),
                domain: self.domain.clone(),
                object_type: self.object_type.clone(),
                connector: self.connector.clone(),
                status: self.status.clone(),
                flow_name: None,
                batch: None,
                attempt: None,
                progress: Progress {
                    batches_done: 0,
                    batches_total: 0,
                    records: 0,
                },
                error: Some(self.reason.clone()),
                transient: None,
                retry_at: None,
                command: None,
                recommendation: None,
                action: None,
                connector_profile: None,
                records_failed: None,
                records_processed: None,
                max_record_failures: None,
                halves: None,
                time: now,
            },
        }
    }
}
