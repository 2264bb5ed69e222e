//! The persisted workflow state: what one DynamoDB item holds (docs/architecture.md, "The workflow model").

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::classify::Verdict;
use crate::effect::Effect;
use crate::ids::WorkflowId;
use crate::plan::Window;
use crate::spec::WorkflowSpec;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WorkflowStatus {
    Pending,
    Backfilling,
    Linking,
    Live,
    Degraded,
    Rebuilding,
    /// Resumable with redrive.
    Failed,
    Cancelled,
}

impl WorkflowStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Backfilling => "backfilling",
            Self::Linking => "linking",
            Self::Live => "live",
            Self::Degraded => "degraded",
            Self::Rebuilding => "rebuilding",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
        }
    }

    /// No further progress without an operator (redrive) — or none at all (cancelled).
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Failed | Self::Cancelled)
    }

    /// Statuses the reconciler must look at (kept in the sparse "active" index).
    pub fn is_active(self) -> bool {
        !self.is_terminal()
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BatchStatus {
    Pending,
    Running,
    RetryWait,
    Succeeded,
    Failed,
    /// The run failed for size or time and the window was split in two (`decide::split`): the
    /// halves are batches of their own (`Batch::split_into`), this one never runs again.
    Split,
    /// Never started: its window was re-planned, with the rest of the range, from the record
    /// density the first completed windows observed (`decide::resize`).
    Replanned,
}

impl BatchStatus {
    /// Nothing left to run for this window: it succeeded, or its halves carry it.
    pub fn is_done(self) -> bool {
        matches!(self, Self::Succeeded | Self::Split | Self::Replanned)
    }

    /// A window that runs (or ran) as it is: neither split into halves nor re-planned.
    pub fn is_runnable(self) -> bool {
        !matches!(self, Self::Split | Self::Replanned)
    }
}

/// An AppFlow error as flowpilot judged it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorInfo {
    pub message: String,
    pub transient: bool,
    /// The error table's verdict (`classify`); absent in items stored before verdicts were
    /// kept, which [`ErrorInfo::verdict`] then derives from `transient`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verdict: Option<Verdict>,
}

impl ErrorInfo {
    /// An error with the table's verdict (`transient` follows from it).
    pub fn judged(message: impl Into<String>, verdict: Verdict) -> Self {
        Self {
            message: message.into(),
            transient: verdict.is_transient(),
            verdict: Some(verdict),
        }
    }

    /// The verdict, or for errors stored without one the one `transient` stands for.
    pub fn verdict(&self) -> Verdict {
        self.verdict.unwrap_or(if self.transient {
            Verdict::Transient
        } else {
            Verdict::Permanent
        })
    }
}

/// Records a run read but could not write to Customer Profiles (AppFlow's record-level
/// failures: the End report's `num-of-record-failures`, the execution record's
/// `errorInfo.putFailuresCount` and `executionMessage`). AppFlow says how many and why, never
/// which records.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NotSent {
    /// The run (batch attempt, or live run) that reported them.
    pub execution_id: Option<String>,
    /// For a batch: the attempt; for the live flow: the generation.
    pub attempt: u32,
    /// For the live flow: the run's number among its generation's successful runs (names its
    /// event and its DescribeRun); 0 for a batch.
    #[serde(default)]
    pub run: u64,
    /// For the live flow: the run's flow (a rebuild's retiring flow is the previous
    /// generation's); a batch's flow follows from its index.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flow_name: Option<String>,
    pub records_failed: u64,
    pub records_processed: u64,
    /// AppFlow's message; only the execution record has it, so it may arrive after the count.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// `Records Not Sent` is drafted (with AppFlow's message, or once asking for it failed).
    #[serde(default)]
    pub reported: bool,
    pub at: DateTime<Utc>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Batch {
    pub index: u32,
    pub window: Window,
    pub status: BatchStatus,
    /// Starts issued so far, over the batch's whole life (0 = never started). The current
    /// attempt's client token is `batch_token(wf, index, attempt)`.
    pub attempt: u32,
    /// Attempts the retry budget does not count: those before the last redrive, plus each
    /// attempt the SaaS API limit refused (a pause, see `budget_waits`). The budget counts
    /// `attempt - budget_base`.
    #[serde(default)]
    pub budget_base: u32,
    /// A CreateFlow for this batch's flow is committed (done or in the outbox), so starting it
    /// needs only StartFlow. Set ahead of the batch's turn: the next batch's flow is created
    /// while the current one runs, which keeps CreateFlow off the path from one run's end to
    /// the next run's start.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub flow_ready: bool,
    /// Execution id of the current attempt, once StartFlow answered.
    pub execution_id: Option<String>,
    /// Execution ids of earlier, failed attempts: their late or duplicated end reports must not
    /// count for the current attempt, even before its own execution id is known.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub past_execution_ids: Vec<String>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    /// When a batch in `RetryWait` is due to start again.
    pub retry_at: Option<DateTime<Utc>>,
    /// Records AppFlow reported processed by the successful attempt.
    pub records: u64,
    pub last_error: Option<ErrorInfo>,
    /// The accepted (or, beyond `max_record_failures`, the failed) attempt's record failures;
    /// cleared by an attempt that wrote everything.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_sent: Option<NotSent>,
    /// Waiting in `RetryWait` because the SaaS application's API allowance is spent
    /// (`decide::pause`): a pause, not a retry.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub paused: bool,
    /// Attempts the SaaS API limit refused (each paused the workflow; none counts against the
    /// retry budget).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub budget_waits: u32,
    /// The batch whose window was split to make this one (`decide::split`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub split_from: Option<u32>,
    /// The two halves this batch's window was split into, once `Split`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub split_into: Vec<u32>,
    /// The shared run budget (`decide::slot`) refused this batch a run slot: it waits in
    /// `RetryWait` and asks again. Kept while it asks; cleared once a run starts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slot_wait: Option<SlotWait>,
}

/// Why and since when a batch waits for a run slot of the shared budget.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlotWait {
    /// The limit that refused, as an operator reads it: `profile demo-salesforce`, `account`
    /// or `flows`.
    pub scope: String,
    /// Slots held when the budget last refused, and the (effective) limit.
    pub in_use: u32,
    pub limit: u32,
    /// The last refusal was AppFlow's quota, which lowered the limit to `limit`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub quota: bool,
    /// The first refusal of this wait.
    pub since: DateTime<Utc>,
    /// The refusals so far.
    pub denials: u32,
    /// `Batch Waiting For Run Slot` is drafted for this wait (once past
    /// `Policy::slot_wait_alert`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub reported: bool,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

impl Batch {
    /// A new batch nobody has touched: a planned window, a half of a split (`split_from`) or a
    /// re-planned window.
    pub fn pending(index: u32, window: Window, split_from: Option<u32>) -> Self {
        Self {
            index,
            window,
            status: BatchStatus::Pending,
            attempt: 0,
            budget_base: 0,
            flow_ready: false,
            execution_id: None,
            past_execution_ids: Vec::new(),
            started_at: None,
            finished_at: None,
            retry_at: None,
            records: 0,
            last_error: None,
            not_sent: None,
            paused: false,
            budget_waits: 0,
            split_from,
            split_into: Vec::new(),
            slot_wait: None,
        }
    }

    /// Records the accepted or failed attempt reported not written (0 when none).
    pub fn records_failed(&self) -> u64 {
        self.not_sent.as_ref().map_or(0, |n| n.records_failed)
    }
}

/// The continuous integration created once the backfill is done.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LiveIntegration {
    /// The flow of `generation` (`ids::live_flow_name`); while [`LiveIntegration::retiring`]
    /// is set, still the previous generation's flow, which is being retired.
    pub flow_name: String,
    /// 1 for the first link, +1 per redrive or rebuild.
    pub generation: u32,
    pub first_execution_from: DateTime<Utc>,
    /// Customer Profiles integration URI (the flow ARN), once PutIntegration answered.
    pub uri: Option<String>,
    pub consecutive_failures: u32,
    /// End of the data-pull window of the last successful run: where a rebuild resumes.
    pub last_good_pull_end: Option<DateTime<Utc>>,
    pub runs_succeeded: u64,
    pub runs_failed: u64,
    pub records: u64,
    pub last_error: Option<ErrorInfo>,
    /// Execution ids of the latest live runs counted (bounded), so a duplicated end report is
    /// not counted twice.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub recent_execution_ids: Vec<String>,
    /// A rebuild waiting for the previous generation's flow (`flow_name`, its schedule stopped)
    /// to have no run in progress before it deletes that flow and creates the new one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retiring: Option<Retiring>,
    /// What the pending rebuild had to give up on (a run it cancelled, or could not see), for
    /// its `Integration Rebuilt` event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rebuild_note: Option<String>,
    /// Records the live runs reported not written, over the integration's life.
    #[serde(default, skip_serializing_if = "is_zero_u64")]
    pub records_failed: u64,
    /// The latest live runs with record failures (bounded, oldest first).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_sent: Vec<NotSent>,
}

fn is_zero_u64(n: &u64) -> bool {
    *n == 0
}

/// The previous generation's flow while a rebuild waits for it to go quiet.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Retiring {
    /// When the rebuild stopped the flow's schedule; the wait is bounded from here.
    pub since: DateTime<Utc>,
    /// Runs AppFlow last reported in progress.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub in_progress: Vec<String>,
}

/// One workflow: spec, plan progress, continuous integration, the outbox and the version used
/// for optimistic concurrency.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Workflow {
    pub id: WorkflowId,
    pub spec: WorkflowSpec,
    pub status: WorkflowStatus,
    /// Whether there is a bulk phase (range longer than the bulk threshold).
    pub bulk: bool,
    pub batches: Vec<Batch>,
    pub live: Option<LiveIntegration>,
    /// Effects committed with the last transition and not yet confirmed executed (§4.1).
    pub outbox: Vec<Effect>,
    /// Bumped by every transition that changes anything; the store's conditional write
    /// expects the previous value.
    pub version: u64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// Why the workflow failed or was cancelled.
    pub last_error: Option<ErrorInfo>,
    /// Redrives so far: numbers each failure round (health event ids).
    #[serde(default)]
    pub redrives: u32,
    /// When the continuous integration was first linked (`Workflow Completed`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completed_at: Option<DateTime<Utc>>,
    /// The outbox is stuck on an effect that keeps failing transiently (see `decide::drain`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drain: Option<Drain>,
    /// The one re-plan of the untouched windows by observed record density
    /// (`target_records_per_run`, `decide::resize`), once it happened.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replan: Option<Replan>,
    /// The managed engine's current Customer Profiles workflow (`engine = managed` only;
    /// `decide::managed`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub managed: Option<ManagedRun>,
}

/// One CreateIntegrationWorkflow: the first, or a redrive's with the batches still missing.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManagedRun {
    /// 1 for the first, +1 per redrive: names the FlowDefinition (`ids::managed_flow_name`),
    /// so a redrive's step flows never collide with the previous ones.
    pub generation: u32,
    /// Customer Profiles' `WorkflowId`, once CreateIntegrationWorkflow answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workflow_id: Option<String>,
    /// The batches submitted, in step order: step `n` is batch `steps[n]`.
    pub steps: Vec<u32>,
    /// The workflow status Customer Profiles last reported (`GetWorkflow`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// The steps whose retry (the managed workflow retries transient failures itself) was
    /// reported: once per step. Only those, so a large submission's item stays small.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub retried: Vec<u32>,
    /// The step `Workflow Stalled` was published for (once per step).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stalled_step: Option<u32>,
}

/// What the re-plan by record density saw and did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Replan {
    pub at: DateTime<Utc>,
    /// Records the completed windows reported, and how long those windows were (ms).
    pub observed_records: u64,
    pub observed_ms: u64,
    /// Where the re-planned windows start (the range before it was already taken).
    pub from: DateTime<Utc>,
    /// The new windows' length (the last one clipped at `to`), and how many replaced how many.
    pub window_ms: u64,
    pub windows: u32,
    pub replaced: u32,
}

impl Workflow {
    /// The batches that run a window: every batch but those split into halves or re-planned.
    /// Their windows tile `[from, to)` (property-tested in `crates/core/tests/split_props.rs`).
    pub fn runnable_batches(&self) -> impl Iterator<Item = &Batch> {
        self.batches.iter().filter(|b| b.status.is_runnable())
    }

    /// While a batch waits for the SaaS application's API allowance to refill, the workflow
    /// starts no other batch: until when (the latest such wait), if any batch waits.
    pub fn paused_until(&self) -> Option<DateTime<Utc>> {
        self.batches
            .iter()
            .filter(|b| b.paused && b.status == BatchStatus::RetryWait)
            .filter_map(|b| b.retry_at)
            .max()
    }
}

/// A stuck outbox: which effect, since when, and the one delayed drain scheduled for it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Drain {
    /// The effect the outbox stopped at.
    pub key: crate::effect::EffectKey,
    /// When it first failed (a stall is judged from here).
    pub since: DateTime<Utc>,
    /// Drains scheduled so far: the backoff exponent, and the number the next drain message
    /// carries.
    pub attempts: u32,
    /// When the scheduled drain is due; `None` once its message arrived (the next failure
    /// schedules another). At most one drain message per workflow is ever pending.
    pub due_at: Option<DateTime<Utc>>,
    /// `Workflow Stalled` was published for this stuck period.
    pub stall_reported: bool,
    /// The latest transient error.
    pub last_error: crate::effect::EffectError,
}
