//! Inputs to `decide`: everything that can happen to a workflow.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::effect::Outcome;
use crate::ids::FlowRole;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Input {
    /// Begin: create and start the first batches (or link directly without a bulk phase).
    Start,
    Cancel {
        reason: Option<String>,
    },
    /// Resume a failed workflow from its failed batch(es); succeeded batches never re-run.
    Redrive,
    /// Delete and re-establish the continuous integration, resuming where it last succeeded.
    Rebuild {
        reason: Option<String>,
    },
    /// Periodic check: ask AppFlow about long-running runs, cancel stalled ones, restart lost
    /// retries, nudge stuck phases.
    Reconcile,
    /// A delayed retry came due (ignored unless that batch is waiting for exactly this attempt).
    RetryDue {
        batch: u32,
        attempt: u32,
        due_at: DateTime<Utc>,
    },
    /// A run ended (AppFlow End Flow Run Report, or a reconciled execution record).
    RunEnded(RunReport),
    /// A managed workflow's step flow ended (its AppFlow End report; the report itself is not
    /// trusted for the step's outcome, GetWorkflowSteps is asked instead).
    ManagedStepEnded {
        generation: u32,
        step: u32,
    },
    /// AppFlow deactivated a scheduled flow (`flow_name` tells a retired live generation's flow
    /// from the current one's).
    FlowDeactivated {
        role: FlowRole,
        flow_name: String,
        reason: String,
    },
    /// The outbox stopped at `key`, which failed transiently (the shell reports it after the
    /// commit that left it there): schedule one delayed drain, report a stall.
    Stuck {
        key: crate::effect::EffectKey,
        error: crate::effect::EffectError,
    },
    /// Drain number `attempt` came due (its message arrived; the shell already drained).
    Drain {
        attempt: u32,
    },
    /// Results of executing outbox effects: removes those effects from the outbox and
    /// records what they returned.
    Applied(Vec<Outcome>),
}

/// The end of one AppFlow run, from the event or from DescribeFlowExecutionRecords.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunReport {
    pub flow_name: String,
    pub role: FlowRole,
    pub execution_id: Option<String>,
    pub succeeded: bool,
    /// AppFlow's error message on failure.
    pub error: Option<String>,
    pub records_processed: Option<u64>,
    /// Records read but not written (End report `num-of-record-failures`, execution record
    /// `errorInfo.putFailuresCount`).
    pub record_failures: Option<u64>,
    /// AppFlow's message about those failures on a *successful* run (execution record
    /// `errorInfo.executionMessage`; End reports carry none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub record_failure_message: Option<String>,
    /// Incremental window the run pulled (scheduled flows).
    pub pull_start: Option<DateTime<Utc>>,
    pub pull_end: Option<DateTime<Utc>>,
    pub ended_at: Option<DateTime<Utc>>,
}

/// What DescribeFlowExecutionRecords (every page) says about the runs of one flow: what a
/// rebuild needs to know before it deletes the previous generation's flow.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlowRuns {
    /// Runs not finished yet (`InProgress`, `CancelStarted`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub in_progress: Vec<ActiveRun>,
    /// Of the successful runs, the one whose pull reached furthest (`pull_end`), as a report:
    /// the resume point's fallback when that run's End report is lost. Its `pull_end` is
    /// AppFlow's `dataPullEndTime` (the last record transferred), never later than the end of
    /// the run's window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub furthest_success: Option<RunReport>,
}

/// One run still in progress.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActiveRun {
    pub execution_id: String,
    pub started_at: Option<DateTime<Utc>>,
}
