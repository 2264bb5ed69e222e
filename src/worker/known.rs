//! What this process knows of workflows beyond the store: each workflow as it last wrote or
//! read it, plus the outcomes of effects it executed since and has not written yet.
//!
//! Two writes per batch become one, and the read disappears: a handler starts from what it
//! knows instead of a `GetItem` (its conditional write still checks the version, so a stale
//! entry costs one failed write and a reload, never a wrong decision that sticks), and the
//! outcomes of a transition's effects are written together with the next transition — or by
//! the flusher once the workflow has been idle for a while. Outcomes not yet written are safe
//! to lose: their effects are still in the stored outbox and idempotent, so whoever touches
//! the workflow next runs them again (docs/architecture.md, "The outbox").

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use flowpilot_core::effect::Outcome;
use flowpilot_core::ids::WorkflowId;
use flowpilot_core::model::Workflow;

/// Entries kept at most; beyond it, entries with nothing unwritten are forgotten (they are in
/// the store as they are here).
const MAX_ENTRIES: usize = 10_000;

/// One workflow as a handler works on it.
#[derive(Debug)]
pub struct State {
    /// The workflow as stored at `wf.version` (written or read by this process).
    pub wf: Workflow,
    /// Outcomes of effects of `wf.outbox` executed and not yet written.
    pub pending: Vec<Outcome>,
    /// When the oldest of `pending` was recorded (for the flusher).
    pub pending_since: Option<Instant>,
    /// Taken from this process's memory rather than read from the store just now.
    pub remembered: bool,
}

impl State {
    pub fn loaded(wf: Workflow) -> Self {
        Self {
            wf,
            pending: Vec::new(),
            pending_since: None,
            remembered: false,
        }
    }

    /// Adds outcomes not yet written.
    pub fn defer(&mut self, outcomes: Vec<Outcome>) {
        if outcomes.is_empty() {
            return;
        }
        self.pending.extend(outcomes);
        self.pending_since.get_or_insert_with(Instant::now);
    }

    /// The outcomes are written now (or dropped).
    pub fn take_pending(&mut self) -> Vec<Outcome> {
        self.pending_since = None;
        std::mem::take(&mut self.pending)
    }

    /// Keeps only outcomes of effects still in the outbox (after a reload, others may have
    /// written them, or different effects may be pending).
    pub fn keep_pending_of_outbox(&mut self) {
        let outbox = &self.wf.outbox;
        self.pending
            .retain(|o| outbox.iter().any(|e| &e.key == o.key()));
        if self.pending.is_empty() {
            self.pending_since = None;
        }
    }
}

#[derive(Default)]
pub struct Known {
    // A std mutex: held only to move an entry in or out, never across an await.
    entries: Mutex<HashMap<WorkflowId, State>>,
}

impl Known {
    /// What this process knows of `id`, taken out (the handler holds the workflow's lock and
    /// puts it back when done).
    pub fn take(&self, id: &WorkflowId) -> Option<State> {
        let mut s = self.lock().remove(id)?;
        s.remembered = true;
        Some(s)
    }

    pub fn put(&self, state: State) {
        let mut entries = self.lock();
        if entries.len() >= MAX_ENTRIES {
            entries.retain(|_, s| !s.pending.is_empty());
        }
        entries.insert(state.wf.id.clone(), state);
    }

    pub fn forget(&self, id: &WorkflowId) {
        self.lock().remove(id);
    }

    /// Workflows with outcomes unwritten for at least `idle`.
    pub fn idle(&self, idle: Duration) -> Vec<WorkflowId> {
        self.lock()
            .iter()
            .filter(|(_, s)| s.pending_since.is_some_and(|t| t.elapsed() >= idle))
            .map(|(id, _)| id.clone())
            .collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<WorkflowId, State>> {
        // A panic elsewhere while holding it leaves plain data behind: keep using it.
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }
}
