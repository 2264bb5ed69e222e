//! Customer Profiles' managed bulk import: `CreateIntegrationWorkflow` and its companions
//! (`GetWorkflow`, `GetWorkflowSteps`, `ListWorkflows`, `DeleteWorkflow`).
//!
//! - this module — a workflow and its steps as the simulator keeps them, and their wire shapes;
//! - `api`        — the five operations (restJson1, PascalCase, IAM-authorized for the caller);
//! - `request`    — CreateIntegrationWorkflow's members and batches;
//! - `engine`     — the background task that runs a workflow *as its execution role*: one flow
//!   per batch, one batch at a time, retries;
//! - `live`       — then the continuous integration; and what DeleteWorkflow removes.
//!
//! crates/sim/README.md ("Managed workflows") says which behaviours AWS documents and which
//! are the simulator's assumptions (flow names, step listing, time formats).

pub mod api;
mod engine;
mod live;
mod request;

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Map, Value, json};
use tokio_util::sync::CancellationToken;

use crate::wire::epoch;

/// The only `WorkflowType` the model defines.
pub const WORKFLOW_TYPE: &str = "APPFLOW_INTEGRATION";
/// The tag every flow (and the integration) the workflow creates carries: the execution role
/// policy's `aws:RequestTag` / `aws:ResourceTag` conditions name it.
pub const OWNING_TAG_KEY: &str = "awsOwningService";
pub const OWNING_TAG_VALUE: &str = "customer-profiles-integration-workflow";
/// The service principal that assumes the execution role.
pub const SERVICE_PRINCIPAL: &str = "profile.amazonaws.com";

/// Step `n`'s flow (0-based): the simulator's naming, a contract with flowpilot's engine.
pub fn step_flow_name(flow_name: &str, n: usize) -> String {
    format!("{flow_name}-s{n}")
}

/// The continuous integration's scheduled flow.
pub fn live_flow_name(flow_name: &str) -> String {
    format!("{flow_name}-live")
}

/// A batch's `[StartTime, EndTime)`.
pub type Window = (DateTime<Utc>, DateTime<Utc>);

/// The model's `Status` enum (workflows and steps share it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WfStatus {
    NotStarted,
    InProgress,
    Complete,
    Failed,
    Split,
    Retry,
    Cancelled,
}

impl WfStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            WfStatus::NotStarted => "NOT_STARTED",
            WfStatus::InProgress => "IN_PROGRESS",
            WfStatus::Complete => "COMPLETE",
            WfStatus::Failed => "FAILED",
            WfStatus::Split => "SPLIT",
            WfStatus::Retry => "RETRY",
            WfStatus::Cancelled => "CANCELLED",
        }
    }

    pub fn terminal(self) -> bool {
        matches!(
            self,
            WfStatus::Complete | WfStatus::Failed | WfStatus::Cancelled
        )
    }
}

/// One batch: its flow, its window and how its runs went.
#[derive(Debug, Clone)]
pub struct Step {
    pub flow_name: String,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub status: WfStatus,
    pub message: String,
    pub records: u64,
    /// Runs started for this step (1 + retries).
    pub attempts: u32,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

pub struct Workflow {
    pub id: String,
    pub domain: String,
    pub object_type: String,
    pub role_arn: String,
    /// The request's `FlowDefinition` (PascalCase), the template of every flow created.
    pub definition: Map<String, Value>,
    pub flow_name: String,
    pub source_type: String,
    pub profile: String,
    pub kms_arn: String,
    pub tags: Option<Value>,
    pub status: WfStatus,
    pub error: Option<String>,
    pub steps: Vec<Step>,
    /// The continuous integration's flow, once created.
    pub live_flow: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// Cancelled by DeleteWorkflow, `/_sim/reset` and shutdown: the engine task stops.
    pub cancel: CancellationToken,
}

/// `BatchRecordsStartTime` / `BatchRecordsEndTime` are strings in the model with no documented
/// format: ISO-8601 UTC is the simulator's assumption.
pub fn batch_time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// Clip to the model's 1..255 characters (on a character boundary).
pub fn clip(s: &str) -> String {
    let s = if s.is_empty() { "-" } else { s };
    s.chars().take(255).collect()
}

impl Workflow {
    pub fn records(&self) -> u64 {
        self.steps.iter().map(|s| s.records).sum()
    }

    pub fn steps_completed(&self) -> usize {
        self.steps
            .iter()
            .filter(|s| s.status == WfStatus::Complete)
            .count()
    }

    /// GetWorkflow's response.
    pub fn get_json(&self) -> Value {
        let mut v = json!({
            "WorkflowId": self.id,
            "WorkflowType": WORKFLOW_TYPE,
            "Status": self.status.as_str(),
            "StartDate": epoch(self.created_at),
            "LastUpdatedAt": epoch(self.updated_at),
            "Attributes": { "AppflowIntegration": {
                "SourceConnectorType": self.source_type,
                "ConnectorProfileName": self.profile,
                "RoleArn": self.role_arn,
            }},
            "Metrics": { "AppflowIntegration": {
                "RecordsProcessed": self.records(),
                "StepsCompleted": self.steps_completed(),
                "TotalSteps": self.steps.len(),
            }},
        });
        if let Some(e) = &self.error {
            v["ErrorDescription"] = Value::from(clip(e));
        }
        v
    }

    /// One ListWorkflows item.
    pub fn list_item_json(&self) -> Value {
        let description = match &self.error {
            Some(e) => clip(e),
            None => format!(
                "{} of {} steps completed",
                self.steps_completed(),
                self.steps.len()
            ),
        };
        json!({
            "WorkflowType": WORKFLOW_TYPE,
            "WorkflowId": self.id,
            "Status": self.status.as_str(),
            "StatusDescription": description,
            "CreatedAt": epoch(self.created_at),
            "LastUpdatedAt": epoch(self.updated_at),
        })
    }
}

impl Step {
    /// One GetWorkflowSteps item.
    pub fn json(&self) -> Value {
        json!({ "AppflowIntegration": {
            "FlowName": self.flow_name,
            "Status": self.status.as_str(),
            "ExecutionMessage": clip(&self.message),
            "RecordsProcessed": self.records,
            "BatchRecordsStartTime": batch_time(self.from),
            "BatchRecordsEndTime": batch_time(self.to),
            "CreatedAt": epoch(self.created_at),
            "LastUpdatedAt": epoch(self.updated_at),
        }})
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_times_and_clipping() {
        assert_eq!(step_flow_name("fp-x", 2), "fp-x-s2");
        assert_eq!(live_flow_name("fp-x"), "fp-x-live");
        let t = DateTime::from_timestamp(1_704_067_200, 0).unwrap();
        assert_eq!(batch_time(t), "2024-01-01T00:00:00Z");
        assert_eq!(clip(&"é".repeat(300)).chars().count(), 255);
        assert_eq!(clip(""), "-");
        assert!(WfStatus::Cancelled.terminal() && !WfStatus::Retry.terminal());
    }
}
