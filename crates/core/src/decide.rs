//! The state machine: `decide(workflow, input, now, policy) -> Transition` (DESIGN.md §3–5).
//! Pure: no I/O, no clock, no randomness of its own.
//!
//! CONTRACT:
//! - `pub fn decide(wf: &Workflow, input: Input, now: DateTime<Utc>, policy: &Policy) -> Transition`
//! - A duplicate / late / out-of-order input returns `Transition::unchanged(wf)` (same workflow,
//!   same version, no effects), never an error.
//! - A changed transition has `workflow.version == wf.version + 1` and
//!   `workflow.outbox == (wf.outbox minus effects whose keys appear in Input::Applied) ++ effects`.
//! - `Workflow::new(id, spec, now)` (in this module or model.rs) builds the pending workflow with
//!   its planned batches.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::effect::Effect;
use crate::model::Workflow;

/// Worker-level knobs for `decide` (the spec holds per-workflow ones).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Policy {
    /// Reconcile asks AppFlow about a run once it has been running this long (default 10 min).
    pub describe_after: Duration,
    /// Reconcile cancels and retries a run running longer than this, with `Workflow Stalled`
    /// (default 6 h).
    pub max_run_duration: Duration,
    /// Reconcile restarts a `retry_wait` batch whose retry is this overdue (lost message;
    /// default 5 min).
    pub retry_grace: Duration,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            describe_after: Duration::from_secs(600),
            max_run_duration: Duration::from_secs(6 * 3600),
            retry_grace: Duration::from_secs(300),
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
