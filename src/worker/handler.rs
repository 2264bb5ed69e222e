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
use flowpilot_core::effect::{EffectError, EffectKey};
use flowpilot_core::health::UnreadableItem;
use flowpilot_core::ids::WorkflowId;
use flowpilot_core::input::Input;
use flowpilot_core::model::Workflow;
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

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
}

impl<S: Store, X: Shell> Handler<S, X> {
    pub fn new(store: Arc<S>, shell: Arc<X>, policy: Policy, metrics: Arc<Metrics>) -> Self {
        Self {
            store,
            shell,
            policy,
            metrics,
            locks: KeyedLocks::default(),
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
        async {
            let _guard = self.locks.lock(id.clone()).await;
            self.handle_locked(id, input).await
        }
        .instrument(span)
        .await
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

        let mut input = Some(input);
        let mut conflicts = 0;
        loop {
            let Some(mut wf) = self.store.load(id).await? else {
                tracing::warn!("message for unknown workflow; dropping it");
                return Ok(Handled::UnknownWorkflow);
            };
            let stuck = match self.advance(&mut wf, &mut input).await {
                Ok(None) => return Ok(Handled::Done),
                Ok(Some(stuck)) => self.stuck(&mut wf, stuck).await,
                Err(e) => Err(e),
            };
            match stuck {
                Ok(None) => return Ok(Handled::Deferred),
                // The message stays (redelivered after its visibility timeout), so the effects
                // are tried again even if the drain never goes out; the reconcile pass then
                // finds the recorded drain overdue and schedules it again.
                Ok(Some((why, source))) => {
                    return Err(HandleError::CannotDefer { why, source });
                }
                Err(StoreError::Conflict { expected, .. }) => {
                    conflicts += 1;
                    self.metrics.inc(metrics::CONFLICTS);
                    tracing::info!(
                        expected,
                        conflicts,
                        "conditional write lost a race; reloading"
                    );
                    if conflicts >= MAX_CONFLICTS {
                        return Err(HandleError::TooManyConflicts(conflicts));
                    }
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// The outbox stopped at a transient failure: record it (`Input::Stuck`), publish the
    /// health events it produced (`Workflow Stuck`: they do not wait behind the stuck effect), and send the drain
    /// message if the transition scheduled a new one. Everything else finding the outbox still
    /// stuck changes nothing, so at most one drain per workflow is pending.
    /// `Ok(Some((why, e)))`: the drain command could not be sent.
    async fn stuck(
        &self,
        wf: &mut Workflow,
        stuck: Stuck,
    ) -> Result<Option<(String, QueueError)>, StoreError> {
        let Stuck { key, error } = stuck;
        let why = format!(
            "effect {key} failed transiently ({}: {})",
            error.code, error.message
        );
        tracing::info!(%key, code = %error.code, error = %error.message, "outbox stuck on a transient failure");
        let scheduled = |w: &Workflow| w.drain.as_ref().map(|d| (d.attempts, d.due_at));
        let before = scheduled(wf);
        self.commit(wf, Input::Stuck { key, error }).await?;
        self.publish_pending(wf).await?;
        let Some(drain) = wf.drain.as_ref() else {
            return Ok(None);
        };
        let Some(due_at) = drain.due_at else {
            return Ok(None);
        };
        if scheduled(wf) == before {
            return Ok(None); // one is already on its way
        }
        let cmd = Command::Drain {
            workflow_id: wf.id.clone(),
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
    async fn publish_pending(&self, wf: &mut Workflow) -> Result<(), StoreError> {
        let events: Vec<_> = wf
            .outbox
            .iter()
            .filter(|e| matches!(e.kind, flowpilot_core::effect::EffectKind::Publish { .. }))
            .cloned()
            .collect();
        if events.is_empty() {
            return Ok(());
        }
        let executed = self.shell.execute(wf, &events).await;
        if !executed.outcomes.is_empty() {
            self.commit(wf, Input::Applied(executed.outcomes)).await?;
        }
        Ok(())
    }

    /// Drains the outbox and applies `input` (once), alternating until nothing is pending.
    /// `Ok(Some(stuck))`: stopped at a transient effect failure, with everything committed.
    /// On a conflict, `input` is still `Some` if it was not committed yet.
    async fn advance(
        &self,
        wf: &mut Workflow,
        input: &mut Option<Input>,
    ) -> Result<Option<Stuck>, StoreError> {
        let mut stuck: Option<Stuck> = None;
        for _ in 0..MAX_STEPS {
            if stuck.is_none() && !wf.outbox.is_empty() {
                let pending = wf.outbox.clone();
                let executed = self.shell.execute(wf, &pending).await;
                if !executed.outcomes.is_empty() {
                    let applied = executed.outcomes.len();
                    if !self.commit(wf, Input::Applied(executed.outcomes)).await? {
                        // decide ignored our results: executing again would loop forever.
                        tracing::error!(
                            applied,
                            "decide ignored effect outcomes; leaving the outbox for reconcile"
                        );
                        return Ok(Stuck::on_first(
                            wf,
                            "OutcomesIgnored",
                            "decide did not record executed effects".to_owned(),
                        ));
                    }
                }
                if let Some((key, error)) = executed.stopped {
                    stuck = Some(Stuck { key, error });
                }
                continue;
            }
            if let Some(next) = input.take() {
                // Even with a stuck outbox the input is committed now (its effects queue up
                // behind the stuck one), so acknowledging the message loses nothing.
                if let Err(e) = self.commit(wf, next.clone()).await {
                    *input = Some(next);
                    return Err(e);
                }
                continue;
            }
            return Ok(stuck);
        }
        tracing::warn!("workflow still busy after {MAX_STEPS} steps; continuing via reconcile");
        Ok(stuck.or_else(|| {
            Stuck::on_first(
                wf,
                "StepLimit",
                format!("more than {MAX_STEPS} steps in one message"),
            )
        }))
    }

    /// decide + conditional save. `Ok(false)`: decide changed nothing.
    async fn commit(&self, wf: &mut Workflow, input: Input) -> Result<bool, StoreError> {
        let kind = input_kind(&input);
        let t = decide(wf, input, Utc::now(), &self.policy);
        if t.is_noop(wf) {
            tracing::debug!(input = kind, "no change");
            return Ok(false);
        }
        self.store.save(&t.workflow, wf.version).await?;
        self.metrics.inc(metrics::TRANSITIONS);
        if t.workflow.status != wf.status {
            tracing::info!(
                input = kind,
                from = wf.status.as_str(),
                to = t.workflow.status.as_str(),
                version = t.workflow.version,
                "workflow status changed"
            );
        } else {
            tracing::debug!(
                input = kind,
                version = t.workflow.version,
                effects = t.effects.len(),
                "transition committed"
            );
        }
        *wf = t.workflow;
        Ok(true)
    }
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
        Input::Applied(_) => "applied",
        Input::Stuck { .. } => "stuck",
        Input::Drain { .. } => "drain",
    }
}

#[cfg(test)]
mod tests;
