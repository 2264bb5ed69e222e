//! Effects: what `decide` asks the shell to do, carrying everything needed to do it
//! idempotently (docs/architecture.md, "The outbox"); an [`EffectKey`] names each one, and [`outcome_of`] is the
//! one contract for what executing it comes to.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::health::HealthEvent;
use crate::ids::FlowRole;
use crate::spec::{Connector, SourceObject};

mod key;
mod outcome;

pub use key::{AttemptStep, CancelStep, EffectKey, InvalidEffectKey, LiveStep, ManagedStep};
pub use outcome::{
    EffectError, Executed, ManagedStepView, ManagedView, Outcome, PermanentError, SlotDenial, Step,
    outcome_of,
};

/// One pending action. `key` is unique within a workflow's life and stable across re-execution,
/// so the shell can report which effects it completed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Effect {
    pub key: EffectKey,
    pub kind: EffectKind,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum EffectKind {
    /// AppFlow CreateFlow. `ConflictException` for this name means it already exists: fine.
    CreateFlow { flow: FlowDefinition },
    /// AppFlow StartFlow with a client token (same token → same run).
    StartFlow {
        flow_name: String,
        client_token: String,
        role: FlowRole,
        attempt: u32,
    },
    /// AppFlow CancelFlowExecutions for one run.
    CancelRun {
        flow_name: String,
        execution_id: String,
    },
    /// AppFlow DeleteFlow (force). `ResourceNotFoundException` means already gone: fine.
    DeleteFlow { flow_name: String },
    /// AppFlow StopFlow: deactivates a scheduled flow, so it starts no further run (runs in
    /// progress continue). `ResourceNotFoundException` means already gone: fine.
    StopFlow { flow_name: String },
    /// AppFlow DescribeFlowExecutionRecords (every page, no ordering assumed): which runs of
    /// the flow are still in progress, and its furthest successful pull. The result comes back
    /// as [`Outcome::Runs`]; a flow that no longer exists has no runs.
    DescribeRuns { flow_name: String },
    /// AppFlow DescribeFlowExecutionRecords (paginated), matched by execution id; the result
    /// comes back as [`Outcome::Described`].
    DescribeRun {
        flow_name: String,
        role: FlowRole,
        attempt: u32,
        execution_id: Option<String>,
    },
    /// Customer Profiles PutIntegration linking the live flow, which the preceding `CreateFlow`
    /// of the same generation created (tagged, so the worker role may create and run it), by
    /// its ARN (`Uri`). The shell reports the integration URI as [`Outcome::Linked`].
    PutIntegration {
        domain: String,
        object_type: String,
        flow_name: String,
        generation: u32,
    },
    /// Customer Profiles DeleteIntegration. Not found means already gone: fine.
    DeleteIntegration { domain: String, uri: String },
    /// Customer Profiles CreateIntegrationWorkflow (`WorkflowType` `APPFLOW_INTEGRATION`): one
    /// managed workflow running `batches` in order, each through a flow made from `flow` (no
    /// filter: the batch window is the filter). The shell adds the execution role
    /// (`FLOWPILOT_MANAGED_ROLE_ARN`) and answers [`Outcome::ManagedCreated`].
    CreateIntegrationWorkflow {
        domain: String,
        object_type: String,
        generation: u32,
        flow: FlowDefinition,
        batches: Vec<crate::plan::Window>,
    },
    /// Customer Profiles GetWorkflow plus GetWorkflowSteps (every page) of a managed workflow;
    /// the shell answers [`Outcome::ManagedSeen`].
    WatchManaged {
        domain: String,
        workflow_id: String,
        generation: u32,
    },
    /// Customer Profiles ListIntegrations (every page): the integration whose `WorkflowId` is
    /// `workflow_id`, which the completed managed workflow created. Answered as
    /// [`Outcome::ManagedIntegration`].
    FindManagedIntegration {
        domain: String,
        workflow_id: String,
        generation: u32,
    },
    /// Customer Profiles DeleteWorkflow. Not found means already gone: fine.
    DeleteManaged { domain: String, workflow_id: String },
    /// EventBridge PutEvents on the health bus.
    Publish { event: HealthEvent },
    /// A delayed `retry_due` command on the work queue (re-delayed on arrival past 15 min).
    ScheduleRetry {
        batch: u32,
        attempt: u32,
        due_at: DateTime<Utc>,
    },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Trigger {
    OnDemand,
    Scheduled {
        /// e.g. `rate(1hours)`
        expression: String,
        first_execution_from: DateTime<Utc>,
        /// Consecutive failed runs before AppFlow deactivates the flow.
        deactivation_threshold: u32,
    },
}

/// Date-window filter on the source's timestamp field. Bounds are epoch milliseconds and
/// exclusive, as AppFlow's BETWEEN / GREATER_THAN treat them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "operator", rename_all = "SCREAMING_SNAKE_CASE")]
pub enum FilterTask {
    Between {
        field: String,
        lower_exclusive_ms: i64,
        upper_exclusive_ms: i64,
    },
    GreaterThan {
        field: String,
        value_exclusive_ms: i64,
    },
}

/// Everything needed to create one AppFlow flow (a batch flow or the live flow).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlowDefinition {
    pub name: String,
    pub client_token: String,
    pub description: String,
    pub trigger: Trigger,
    pub connector: Connector,
    pub connector_profile: String,
    pub source: SourceObject,
    /// Field used for incremental pulls / date filtering (None for S3).
    pub timestamp_field: Option<String>,
    /// Fields projected and mapped 1:1 into the destination.
    pub fields: Vec<String>,
    pub filter: Option<FilterTask>,
    pub domain: String,
    pub object_type: String,
    pub kms_arn: Option<String>,
    /// Always includes the managed tag (`ids::MANAGED_TAG_KEY`).
    pub tags: BTreeMap<String, String>,
}
