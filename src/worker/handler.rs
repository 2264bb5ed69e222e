//! The imperative shell around `decide` (docs/architecture.md, "The functional core" and "The outbox"): load, drain the outbox, decide,
//! commit conditionally, execute, record the results, until nothing is pending.
//!
//! Crash safety comes from the order of operations: a transition and the effects it asks for
//! are committed in one conditional write before any effect runs; results are committed by a
//! later write. Whoever touches the workflow next first drains what is left.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use flowpilot_core::command::Command;
use flowpilot_core::decide::{Policy, decide};
use flowpilot_core::effect::{Effect, EffectError, EffectKey, EffectKind, Outcome};
use flowpilot_core::health::UnreadableItem;
use flowpilot_core::ids::WorkflowId;
use flowpilot_core::input::Input;
use flowpilot_core::model::Workflow;
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

use super::known::{Known, State};
use super::locks::KeyedLocks;
use super::shell::Shell;
use crate::aws::error_chain;
use crate::aws::queue::QueueError;
use crate::metrics::{self, Metrics};
use crate::store::{Store, StoreError};

/// Conflicting writers tolerated per message before giving up (the message is redelivered).
const MAX_CONFLICTS: u32 = 8;
/// Decide/execute rounds per message; a healthy workflow needs a handful.
const MAX_STEPS: u32 = 64;

/// How handling a message ended (every variant means: delete the message).
#[derive(Debug, PartialEq, Eq)]
pub enum Handled {
    /// Everything committed and executed.
    Done,
    /// Committed, but an effect failed transiently: it waits in the outbox, and the one
    /// drain scheduled for the workflow (`decide::drain`) will come back for it.
    Deferred,
    /// A retry that is not due yet was re-delayed.
    Redelayed,
    /// No such workflow (deleted, or a stray command).
    UnknownWorkflow,
}

/// What a reconcile-all pass did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Pass {
    /// Workflows reconciled (or tried).
    pub workflows: usize,
    /// Of those, how many failed (each is retried by the next pass).
    pub failures: usize,
    /// Stored workflows skipped because they cannot be read.
    pub unreadable: usize,
}

/// Handling failed: keep the message (it is redelivered after its visibility timeout).
#[derive(Debug, thiserror::Error)]
pub enum HandleError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("gave up after {0} conflicting concurrent writes")]
    TooManyConflicts(u32),
    /// `why` says what the delayed command was for.
    #[error("{why}, and the delayed command that finishes it could not be sent")]
    CannotDefer {
        why: String,
        #[source]
        source: QueueError,
    },
}

pub struct Handler<S, X> {
    store: Arc<S>,
    shell: Arc<X>,
    policy: Policy,
    metrics: Arc<Metrics>,
    /// One workflow at a time per process: concurrent handlers of the same workflow would only
    /// produce conditional-write conflicts.
    locks: KeyedLocks<WorkflowId>,
    /// Workflows as this process last wrote or read them, with outcomes not yet written.
    known: Known,
}

impl<S: Store, X: Shell> Handler<S, X> {
    pub fn new(store: Arc<S>, shell: Arc<X>, policy: Policy, metrics: Arc<Metrics>) -> Self {
        Self {
            store,
            shell,
            policy,
            metrics,
            locks: KeyedLocks::default(),
            known: Known::default(),
        }
    }

    /// Applies `input` to workflow `id`.
    pub async fn handle(&self, id: &WorkflowId, input: Input) -> Result<Handled, HandleError> {
        let batch = match &input {
            Input::RetryDue { batch, .. } => Some(*batch),
            Input::RunEnded(r) => match r.role {
                flowpilot_core::ids::FlowRole::Batch(i) => Some(i),
                flowpilot_core::ids::FlowRole::Live => None,
            },
            _ => None,
        };
        let span = tracing::info_span!("workflow", workflow_id = %id, batch);
        let run_ended = matches!(input, Input::RunEnded(_));
        let handling = async {
            let handled = {
                let _guard = self.locks.lock(id.clone()).await;
                self.handle_locked(id, input).await
            };
            self.shell.flush_releases().await;
            handled
        }
        .instrument(span);
        if run_ended {
            metrics::measure_critical_path(handling).await
        } else {
            handling.await
        }
    }

    /// Feeds `Input::Reconcile` to every active workflow (which also drains their outboxes),
    /// stopping between workflows once `stop` is cancelled: the next pass does the rest.
    /// Stored workflows that cannot be read are skipped and reported.
    /// The one reconcile-all pass, whether the scheduled command or the ticker asks for it.
    pub async fn reconcile_all(&self, stop: &CancellationToken) -> Result<Pass, HandleError> {
        let listing = self.store.list_active().await?;
        tracing::info!(
            workflows = listing.workflows.len(),
            unreadable = listing.unreadable.len(),
            "reconciling active workflows"
        );
        let mut pass = Pass {
            unreadable: listing.unreadable.len(),
            ..Pass::default()
        };
        self.report_unreadable(&listing.unreadable).await;
        for wf in listing.workflows {
            if stop.is_cancelled() {
                break;
            }
            pass.workflows += 1;
            if let Err(e) = self.handle(&wf.id, Input::Reconcile).await {
                tracing::warn!(workflow_id = %wf.id, error = %error_chain(&e), "reconcile failed");
                pass.failures += 1;
            }
        }
        Ok(pass)
    }

    /// Log line, metric and `Workflow Unreadable` for each item: nothing else would ever look
    /// at a workflow the reconciler skips. Publishing is best effort; the next pass repeats it.
    async fn report_unreadable(&self, items: &[UnreadableItem]) {
        if items.is_empty() {
            return;
        }
        self.metrics
            .add(metrics::STORE_UNREADABLE, &[], items.len() as u64);
        for item in items {
            tracing::error!(
                key = %item.key,
                version = ?item.version,
                reason = %item.reason,
                "stored workflow is unreadable: skipped by the reconcile pass (fix or delete the item)"
            );
        }
        let now = Utc::now();
        let events: Vec<_> = items.iter().map(|i| i.health_event(now)).collect();
        for (item, result) in items.iter().zip(self.shell.publish(&events).await) {
            if let Err(e) = result {
                tracing::warn!(key = %item.key, code = %e.code, error = %e.message, "cannot publish Workflow Unreadable");
            }
        }
    }

    async fn handle_locked(&self, id: &WorkflowId, input: Input) -> Result<Handled, HandleError> {
        // A retry delayed beyond SQS's 15-minute maximum arrives early: send it on again.
        if let Input::RetryDue {
            batch,
            attempt,
            due_at,
        } = &input
        {
            let remaining = (*due_at - Utc::now()).to_std().unwrap_or(Duration::ZERO);
            if remaining >= Duration::from_secs(1) {
                let cmd = Command::RetryDue {
                    workflow_id: id.clone(),
                    batch: *batch,
                    attempt: *attempt,
                    due_at: *due_at,
                };
                self.shell
                    .send_command(&cmd, remaining)
                    .await
                    .map_err(|source| HandleError::CannotDefer {
                        why: "a retry is not due yet".into(),
                        source,
                    })?;
                self.metrics.inc(metrics::DEFERRED);
                tracing::info!(?remaining, "retry not due yet; re-delayed");
                return Ok(Handled::Redelayed);
            }
        }

        let original = input.clone();
        let mut input = Some(input);
        let mut conflicts = 0;
        let mut trust_memory = true;
        // Outcomes executed by an attempt that lost a race: still valid for whatever of their
        // effects the reloaded outbox holds.
        let mut carried = Vec::new();
        loop {
            let mut st = match self.known.take(id).filter(|_| trust_memory) {
                Some(st) => st,
                None => match self.store.load(id).await? {
                    Some(wf) => State::loaded(wf),
                    None => {
                        self.known.forget(id);
                        tracing::warn!("message for unknown workflow; dropping it");
                        return Ok(Handled::UnknownWorkflow);
                    }
                },
            };
            st.defer(std::mem::take(&mut carried));
            st.keep_pending_of_outbox();
            let result = match self.advance(&mut st, &mut input).await {
                // A remembered workflow on which the input changes nothing may just be behind
                // another worker's write: decide once more on the stored item before the
                // message is let go.
                Ok(p) if p.input_noop && st.remembered => {
                    trust_memory = false;
                    input = Some(original.clone());
                    carried = st.take_pending();
                    continue;
                }
                Ok(Progress { stuck: None, .. }) => Ok(None),
                Ok(Progress {
                    stuck: Some(stuck), ..
                }) => self.stuck(&mut st, stuck).await.map(Some),
                Err(e) => Err(e),
            };
            match result {
                Ok(outcome) => {
                    self.known.put(st);
                    return match outcome {
                        None => Ok(Handled::Done),
                        Some(None) => Ok(Handled::Deferred),
                        // The message stays (redelivered after its visibility timeout), so the
                        // effects are tried again even if the drain never goes out; the
                        // reconcile pass then finds the recorded drain overdue and schedules
                        // it again.
                        Some(Some((why, source))) => Err(HandleError::CannotDefer { why, source }),
                    };
                }
                Err(StoreError::Conflict { expected, .. }) => {
                    conflicts += 1;
                    self.metrics.inc(metrics::CONFLICTS);
                    tracing::info!(
                        expected,
                        conflicts,
                        "conditional write lost a race; reloading"
                    );
                    trust_memory = false;
                    carried = st.take_pending();
                    if conflicts >= MAX_CONFLICTS {
                        return Err(HandleError::TooManyConflicts(conflicts));
                    }
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Writes the outcomes of workflows idle for `idle` with outcomes not yet written, so the
    /// stored item catches up (an operator's `workflow status`, another replica taking over).
    pub async fn flush_idle(&self, idle: Duration) {
        for id in self.known.idle(idle) {
            let _guard = self.locks.lock(id.clone()).await;
            let Some(mut st) = self.known.take(&id) else {
                continue;
            };
            let outcomes = st.take_pending();
            if outcomes.is_empty() {
                self.known.put(st);
                continue;
            }
            match self.write(&mut st.wf, &outcomes, None).await {
                Ok(_) => self.known.put(st),
                // Someone else moved it on: they (or the next drain) run those effects.
                Err(e) => {
                    tracing::info!(workflow_id = %id, error = %error_chain(&e), "flush lost to another writer; forgetting what this process knew")
                }
            }
        }
        // Those writes may have freed run slots; no handled message follows to write them
        // (Lambda freezes right after this).
        self.shell.flush_releases().await;
    }

    /// The outbox stopped at a transient failure: record it (`Input::Stuck`), publish the
    /// health events it produced (`Workflow Stuck`: they do not wait behind the stuck effect),
    /// and send the drain message if the transition scheduled a new one. Everything else
    /// finding the outbox still stuck changes nothing, so at most one drain per workflow is
    /// pending. `Ok(Some((why, e)))`: the drain command could not be sent.
    async fn stuck(
        &self,
        st: &mut State,
        stuck: Stuck,
    ) -> Result<Option<(String, QueueError)>, StoreError> {
        let Stuck { key, error } = stuck;
        let why = format!(
            "effect {key} failed transiently ({}: {})",
            error.code, error.message
        );
        tracing::info!(%key, code = %error.code, error = %error.message, "outbox stuck on a transient failure");
        let scheduled = |w: &Workflow| w.drain.as_ref().map(|d| (d.attempts, d.due_at));
        let before = scheduled(&st.wf);
        self.commit(st, Input::Stuck { key, error }).await?;
        self.publish_pending(st).await?;
        let Some(drain) = st.wf.drain.as_ref() else {
            return Ok(None);
        };
        let Some(due_at) = drain.due_at else {
            return Ok(None);
        };
        if scheduled(&st.wf) == before {
            return Ok(None); // one is already on its way
        }
        let cmd = Command::Drain {
            workflow_id: st.wf.id.clone(),
            attempt: drain.attempts,
        };
        let delay = (due_at - Utc::now()).to_std().unwrap_or(Duration::ZERO);
        match self.shell.send_command(&cmd, delay).await {
            Ok(()) => {
                self.metrics.inc(metrics::DRAINS_SCHEDULED);
                self.metrics.inc(metrics::DEFERRED);
                tracing::info!(attempt = drain.attempts, ?delay, "drain scheduled");
                Ok(None)
            }
            Err(e) => Ok(Some((why, e))),
        }
    }

    /// Publishes the health events waiting in the outbox (they depend on no other effect).
    async fn publish_pending(&self, st: &mut State) -> Result<(), StoreError> {
        let events: Vec<_> = st
            .wf
            .outbox
            .iter()
            .filter(|e| matches!(e.kind, EffectKind::Publish { .. }))
            .filter(|e| !st.pending.iter().any(|o| o.key() == &e.key))
            .cloned()
            .collect();
        if events.is_empty() {
            return Ok(());
        }
        let executed = self.shell.execute(&st.wf, &events).await;
        st.defer(executed.outcomes);
        Ok(())
    }

    /// Drains the outbox and applies `input` (once), alternating until nothing is pending.
    /// `stuck`: stopped at a transient effect failure, with everything needed committed.
    /// On a conflict, `input` is still `Some` if it was not committed yet.
    async fn advance(
        &self,
        st: &mut State,
        input: &mut Option<Input>,
    ) -> Result<Progress, StoreError> {
        let mut progress = Progress::default();
        for _ in 0..MAX_STEPS {
            let todo: Vec<Effect> = st
                .wf
                .outbox
                .iter()
                .filter(|e| !st.pending.iter().any(|o| o.key() == &e.key))
                .cloned()
                .collect();
            if progress.stuck.is_none() && !todo.is_empty() {
                let executed = self.shell.execute(&st.wf, &todo).await;
                st.defer(executed.outcomes);
                if let Some((key, error)) = executed.stopped {
                    progress.stuck = Some(Stuck { key, error });
                }
                self.write_if_outcomes_need_effects(st).await?;
                continue;
            }
            if let Some(next) = input.take() {
                // Even with a stuck outbox the input is committed now (its effects queue up
                // behind the stuck one), so acknowledging the message loses nothing.
                match self.commit(st, next.clone()).await {
                    Ok(changed) => progress.input_noop = !changed,
                    Err(e) => {
                        *input = Some(next);
                        return Err(e);
                    }
                }
                continue;
            }
            return Ok(progress);
        }
        tracing::warn!("workflow still busy after {MAX_STEPS} steps; continuing via a drain");
        progress.stuck = progress.stuck.or_else(|| {
            Stuck::on_first(
                &st.wf,
                "StepLimit",
                format!("more than {MAX_STEPS} steps in one message"),
            )
        });
        Ok(progress)
    }

    /// Outcomes are written with the next transition, unless they lead to new effects (a
    /// linked integration's StartFlow, a failure's health event): an effect runs only once it
    /// is committed, so those are written now.
    async fn write_if_outcomes_need_effects(&self, st: &mut State) -> Result<(), StoreError> {
        if st.pending.is_empty() {
            return Ok(());
        }
        let t = decide(
            &st.wf,
            Input::Applied(st.pending.clone()),
            Utc::now(),
            &self.policy,
        );
        if t.is_noop(&st.wf) {
            // decide ignored them: keeping them would only carry a protocol error along.
            tracing::error!(
                pending = st.pending.len(),
                "decide ignored effect outcomes; dropping them (the outbox keeps their effects)"
            );
            st.take_pending();
            return Ok(());
        }
        if !t.effects.is_empty() {
            let outcomes = st.take_pending();
            self.write(&mut st.wf, &outcomes, None).await?;
        }
        Ok(())
    }

    /// decide(`input`) on top of the outcomes not yet written, and one conditional save of
    /// both. `Ok(false)`: the input changes nothing (the outcomes then wait for the next write).
    async fn commit(&self, st: &mut State, input: Input) -> Result<bool, StoreError> {
        let outcomes = st.pending.clone();
        let changed = self.write(&mut st.wf, &outcomes, Some(input)).await?;
        if changed {
            st.take_pending();
        }
        Ok(changed)
    }

    /// Applies `outcomes` (if any) and `input` (if any) and saves the result conditionally on
    /// the version `wf` was stored at. With an input that changes nothing, nothing is written.
    async fn write(
        &self,
        wf: &mut Workflow,
        outcomes: &[Outcome],
        input: Option<Input>,
    ) -> Result<bool, StoreError> {
        let now = Utc::now();
        let mut next = wf.clone();
        let mut effects = 0;
        if !outcomes.is_empty() {
            let t = decide(&next, Input::Applied(outcomes.to_vec()), now, &self.policy);
            effects += t.effects.len();
            next = t.workflow;
        }
        let kind = input.as_ref().map_or("applied", input_kind);
        if let Some(input) = input {
            let t = decide(&next, input, now, &self.policy);
            if t.is_noop(&next) {
                tracing::debug!(input = kind, "no change");
                return Ok(false);
            }
            effects += t.effects.len();
            next = t.workflow;
        }
        if next.version == wf.version {
            return Ok(false);
        }
        self.store.save(&next, wf.version).await?;
        self.metrics.inc(metrics::TRANSITIONS);
        let ended = left_running(wf, &next);
        if !ended.is_empty() {
            self.shell.release_slots(&next, &ended).await;
        }
        if next.status != wf.status {
            tracing::info!(
                input = kind,
                from = wf.status.as_str(),
                to = next.status.as_str(),
                version = next.version,
                "workflow status changed"
            );
        } else {
            tracing::debug!(
                input = kind,
                version = next.version,
                effects,
                "transition committed"
            );
        }
        *wf = next;
        Ok(true)
    }
}

/// Batches `next` took out of `running`, whose run slot (if any) is free again: the run ended
/// (End report, reconciled record) or failed to start. A cancelled workflow's batches keep
/// their status (nothing reads them again) while CancelRun stops their runs: their slots go
/// with the cancel. A batch the run budget just refused never held a slot, so there is nothing
/// to give back.
fn left_running(wf: &Workflow, next: &Workflow) -> Vec<u32> {
    use flowpilot_core::model::{BatchStatus, WorkflowStatus};
    let denials = |b: &flowpilot_core::model::Batch| b.slot_wait.as_ref().map_or(0, |w| w.denials);
    let cancelled = next.status == WorkflowStatus::Cancelled && wf.status != next.status;
    wf.batches
        .iter()
        .zip(&next.batches)
        .filter(|(old, new)| {
            old.status == BatchStatus::Running
                && (cancelled || new.status != BatchStatus::Running || new.attempt != old.attempt)
                && denials(new) == denials(old)
        })
        .map(|(_, new)| new.index)
        .collect()
}

/// How far `advance` got.
#[derive(Default)]
struct Progress {
    stuck: Option<Stuck>,
    /// The input changed nothing (a duplicate, late or out-of-order input — or a remembered
    /// workflow that is behind the store).
    input_noop: bool,
}

/// Where the outbox stopped, and why.
struct Stuck {
    key: EffectKey,
    error: EffectError,
}

impl Stuck {
    /// The outbox cannot proceed for a reason of the shell's own (no AWS error): treated as
    /// a transient failure of its first effect, so the same drain comes back for it.
    fn on_first(wf: &Workflow, code: &str, message: String) -> Option<Self> {
        Some(Self {
            key: wf.outbox.first()?.key.clone(),
            error: EffectError {
                code: code.to_owned(),
                message,
                permanent: false,
            },
        })
    }
}

fn input_kind(input: &Input) -> &'static str {
    match input {
        Input::Start => "start",
        Input::Cancel { .. } => "cancel",
        Input::Redrive => "redrive",
        Input::Rebuild { .. } => "rebuild",
        Input::Reconcile => "reconcile",
        Input::RetryDue { .. } => "retry_due",
        Input::RunEnded(_) => "run_ended",
        Input::FlowDeactivated { .. } => "flow_deactivated",
        Input::ManagedStepEnded { .. } => "managed_step_ended",
        Input::Applied(_) => "applied",
        Input::Stuck { .. } => "stuck",
        Input::Drain { .. } => "drain",
    }
}

#[cfg(test)]
mod tests;
