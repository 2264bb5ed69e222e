//! The state machine: `decide(workflow, input, now, policy) -> Transition` (docs/architecture.md, "The functional core").
//! Pure: no I/O, no clock, no randomness of its own.
//!
//! - A duplicate / late / out-of-order input returns [`Transition::unchanged`] (same workflow,
//!   same version, no effects), never an error.
//! - A changed transition has `workflow.version == wf.version + 1` and
//!   `workflow.outbox == (wf.outbox minus effects whose keys appear in Input::Applied) ++ effects`.
//!
//! Submodules by phase: [`bulk`] (batches, retries, redrive), [`live`] (linking, the continuous
//! integration, rebuilds), [`retire`] (a rebuild waiting for the previous flow's runs),
//! [`outcome`] (results of executed effects), [`reconcile`] (periodic checks, cancel),
//! [`records`] (record-level failures: the `max_record_failures` policy, `Records Not Sent`),
//! [`pause`] (the SaaS API allowance is spent), [`health`] (health event drafting).
//!
//! Effect keys ([`EffectKey`]) are unique over the workflow's life: a batch attempt's step,
//! a link generation's step, a health event's id, a cancellation's cleanup.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::effect::{Effect, EffectKey, EffectKind};
use crate::ids::WorkflowId;
use crate::input::Input;
use crate::model::{Batch, Workflow, WorkflowStatus};
use crate::spec::WorkflowSpec;

mod bulk;
pub mod drain;
mod health;
mod live;
mod managed;
mod outcome;
pub mod pause;
mod reconcile;
mod records;
mod resize;
mod retire;
mod slot;
mod split;

/// Worker-level knobs for `decide` (the spec holds per-workflow ones).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Policy {
    /// Reconcile asks AppFlow about a run once it has been running this long (default 10 min);
    /// a rebuild waits this long for a finished run's End report before it takes the run's
    /// pull end from AppFlow's execution record instead.
    pub describe_after: Duration,
    /// Reconcile cancels and retries a run running longer than this, with `Workflow Stalled`
    /// (default 6 h); a rebuild cancels the previous live flow's runs still in progress past it
    /// (or once it has waited this long) and goes on.
    pub max_run_duration: Duration,
    /// Reconcile restarts a `retry_wait` batch whose retry is this overdue (lost message;
    /// default 5 min). A drain whose message is this overdue is scheduled again.
    pub retry_grace: Duration,
    /// First delay of the drain scheduled for a stuck outbox; doubles per drain (default 10 s).
    pub drain_base: Duration,
    /// Longest delay between drains (default 5 min; SQS delays at most 15).
    pub drain_cap: Duration,
    /// A workflow whose outbox has been stuck this long gets one `Workflow Stuck`
    /// (default 15 min, `FLOWPILOT_STALL_AFTER`).
    pub stall_after: Duration,
    /// How long a workflow pauses its starts once the SaaS application's API allowance is
    /// spent (Salesforce `REQUEST_LIMIT_EXCEEDED`), before trying again (default 1 h,
    /// `FLOWPILOT_SOURCE_BUDGET_WAIT`; see [`pause`]). Stored workflows of older versions load
    /// with the default.
    #[serde(default = "default_source_budget_wait")]
    pub source_budget_wait: Duration,
    /// How long a batch the shared run budget refused waits before asking again (default
    /// 10 s, `FLOWPILOT_SLOT_RETRY`; see [`slot`]).
    #[serde(default = "default_slot_retry")]
    pub slot_retry: Duration,
    /// A batch waiting this long for a run slot gets one `Batch Waiting For Run Slot` per wait
    /// (default 15 min, `FLOWPILOT_SLOT_WAIT_ALERT`).
    #[serde(default = "default_slot_wait_alert")]
    pub slot_wait_alert: Duration,
}

fn default_slot_wait_alert() -> Duration {
    DEFAULT_SLOT_WAIT_ALERT
}

/// Fifteen minutes: several typical runs' worth of waiting, so a busy profile alone does not
/// alert, a stuck or undersized budget does.
pub const DEFAULT_SLOT_WAIT_ALERT: Duration = Duration::from_secs(900);

/// Ten seconds: a slot frees when any run on the profile ends, and asking costs two small
/// DynamoDB calls.
pub const DEFAULT_SLOT_RETRY: Duration = Duration::from_secs(10);

fn default_slot_retry() -> Duration {
    DEFAULT_SLOT_RETRY
}

/// One hour: Salesforce's allowance is a rolling 24 hours, so capacity comes back call by
/// call as the calls of a day ago age out; an hour lets a meaningful share return without
/// leaving a backfill idle for most of a day, and each refused attempt costs one API call.
pub const DEFAULT_SOURCE_BUDGET_WAIT: Duration = Duration::from_secs(3600);

fn default_source_budget_wait() -> Duration {
    DEFAULT_SOURCE_BUDGET_WAIT
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            describe_after: Duration::from_secs(600),
            max_run_duration: Duration::from_secs(6 * 3600),
            retry_grace: Duration::from_secs(300),
            drain_base: Duration::from_secs(10),
            drain_cap: Duration::from_secs(300),
            stall_after: Duration::from_secs(900),
            source_budget_wait: DEFAULT_SOURCE_BUDGET_WAIT,
            slot_retry: DEFAULT_SLOT_RETRY,
            slot_wait_alert: DEFAULT_SLOT_WAIT_ALERT,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transition {
    /// Next state (its `outbox` holds every pending effect, including `effects`).
    pub workflow: Workflow,
    /// The effects this transition added, in execution order.
    pub effects: Vec<Effect>,
}

impl Transition {
    pub fn unchanged(wf: &Workflow) -> Self {
        Self {
            workflow: wf.clone(),
            effects: Vec::new(),
        }
    }

    pub fn is_noop(&self, before: &Workflow) -> bool {
        self.workflow.version == before.version
    }
}

impl Workflow {
    /// A pending workflow with its planned batches; nothing happens until `Input::Start`.
    pub fn new(id: WorkflowId, spec: WorkflowSpec, now: DateTime<Utc>) -> Self {
        let plan = crate::plan::plan(&spec);
        let batches = (0u32..)
            .zip(plan.batches)
            .map(|(index, window)| Batch::pending(index, window, None))
            .collect();
        Self {
            id,
            spec,
            status: WorkflowStatus::Pending,
            bulk: plan.bulk,
            batches,
            live: None,
            outbox: Vec::new(),
            version: 0,
            created_at: now,
            updated_at: now,
            last_error: None,
            redrives: 0,
            completed_at: None,
            drain: None,
            replan: None,
            managed: None,
        }
    }
}

/// Computes the next state and the effects to run for one input.
pub fn decide(wf: &Workflow, input: Input, now: DateTime<Utc>, policy: &Policy) -> Transition {
    // Cancelled is final, but its cleanup effects can still be stuck and drained.
    let cleanup = matches!(
        input,
        Input::Applied(_) | Input::Stuck { .. } | Input::Drain { .. }
    );
    if wf.status == WorkflowStatus::Cancelled && !cleanup {
        return Transition::unchanged(wf);
    }
    let mut cx = Ctx {
        wf: wf.clone(),
        now,
        policy,
        effects: Vec::new(),
        health: Vec::new(),
    };
    match input {
        Input::Start => bulk::start(&mut cx),
        Input::Cancel { reason } => reconcile::cancel(&mut cx, reason),
        Input::Redrive => bulk::redrive(&mut cx),
        Input::Rebuild { reason: _ } => live::rebuild(&mut cx),
        Input::Reconcile => reconcile::reconcile(&mut cx),
        Input::RetryDue {
            batch,
            attempt,
            due_at: _,
        } => bulk::retry_due(&mut cx, batch, attempt),
        Input::RunEnded(report) => match report.role {
            crate::ids::FlowRole::Batch(i) => bulk::run_ended(&mut cx, i, &report),
            crate::ids::FlowRole::Live => live::run_ended(&mut cx, &report),
        },
        Input::FlowDeactivated {
            role,
            flow_name,
            reason,
        } => live::deactivated(&mut cx, role, &flow_name, reason),
        Input::ManagedStepEnded { generation, step } => {
            managed::step_ended(&mut cx, generation, step)
        }
        Input::Applied(outcomes) => outcome::applied(&mut cx, outcomes),
        Input::Stuck { key, error } => drain::stuck(&mut cx, key, error),
        Input::Drain { attempt } => drain::due(&mut cx, attempt),
    }
    cx.finish(wf)
}

/// A transition being built.
pub(crate) struct Ctx<'p> {
    pub wf: Workflow,
    pub now: DateTime<Utc>,
    pub policy: &'p Policy,
    pub effects: Vec<Effect>,
    health: Vec<health::Draft>,
}

impl Ctx<'_> {
    /// Queues an effect unless one with the same key is already pending (a re-decided input
    /// must not queue its effect twice).
    pub fn effect(&mut self, key: EffectKey, kind: EffectKind) {
        if self.wf.outbox.iter().any(|e| e.key == key) {
            return;
        }
        let e = Effect { key, kind };
        self.wf.outbox.push(e.clone());
        self.effects.push(e);
    }

    /// Whether an effect whose key satisfies `which` is waiting in the outbox.
    pub fn has_pending(&self, which: impl Fn(&EffectKey) -> bool) -> bool {
        self.wf.outbox.iter().any(|e| which(&e.key))
    }

    pub fn batch_index(&self, index: u32) -> Option<usize> {
        let i = usize::try_from(index).ok()?;
        (i < self.wf.batches.len()).then_some(i)
    }

    fn finish(mut self, before: &Workflow) -> Transition {
        // Health events are rendered last so they carry the status and progress *after* the
        // transition, as the schema promises.
        for draft in std::mem::take(&mut self.health) {
            let event = draft.render(&self.wf, self.now);
            let key = EffectKey::Publish {
                event_id: event.detail.event_id.clone(),
            };
            self.effect(key, EffectKind::Publish { event });
        }
        if self.effects.is_empty() && self.wf == *before {
            return Transition::unchanged(before);
        }
        // Only "differs from the stored version" matters to the conditional write, so a
        // wrapped counter is still correct where an overflow would panic.
        self.wf.version = before.version.wrapping_add(1);
        self.wf.updated_at = self.now;
        Transition {
            workflow: self.wf,
            effects: self.effects,
        }
    }
}

#[cfg(test)]
mod tests;
