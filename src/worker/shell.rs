//! Executing effects against AWS: the I/O half of the imperative shell.
//!
//! [`Shell`] is the seam the handler is written against; [`AwsShell`] is the real thing and
//! unit tests substitute a scripted fake. Every effect is idempotent (deterministic names,
//! client tokens, "already exists"/"already gone" treated as success), so executing an outbox
//! twice after a crash is harmless.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use flowpilot_core::command::Command;
use flowpilot_core::effect::{
    Effect, EffectError, EffectKey, EffectKind, Outcome, Step, outcome_of,
};
use flowpilot_core::health::HealthEvent;
use flowpilot_core::model::Workflow;

use crate::aws::appflow::AppFlow;
use crate::aws::error_chain;
use crate::aws::health::HealthSender;
use crate::aws::profiles::Profiles;
use crate::aws::queue::{MAX_DELAY, Queue, QueueError};
use crate::budget::{RunBudget, Slot, holder};
use crate::metrics::{self, Metrics};
use flowpilot_core::ids::FlowRole;

mod budget;
use budget::{QUOTA_EXCEEDED, Scratch};

/// What [`Shell::execute`] returns; the core defines it because the state machine's property
/// test executes outboxes by the same contract.
pub use flowpilot_core::effect::Executed;

pub trait Shell: Send + Sync + 'static {
    /// Executes `effects` in order, stopping at the first transient failure (the contract is
    /// `effect::outcome_of`).
    fn execute(&self, wf: &Workflow, effects: &[Effect]) -> impl Future<Output = Executed> + Send;

    /// Sends a command to the work queue after `delay` (at most 15 minutes).
    fn send_command(
        &self,
        cmd: &Command,
        delay: Duration,
    ) -> impl Future<Output = Result<(), QueueError>> + Send;

    /// Publishes health events that belong to no workflow transition, so no outbox carries
    /// them (`Workflow Unreadable`); the result for each event is at its index.
    fn publish(
        &self,
        events: &[HealthEvent],
    ) -> impl Future<Output = Vec<Result<(), EffectError>>> + Send;

    /// Gives back the run slots of `batches` of `wf`, which a committed transition took out of
    /// `running` (`crate::budget`): queued, and written with the next ask of the same limit
    /// (most often this workflow's next batch) or by [`flush_releases`](Self::flush_releases).
    /// Best effort: a release whose write fails is not tried again; its lease expires.
    fn release_slots(&self, wf: &Workflow, batches: &[u32]) -> impl Future<Output = ()> + Send {
        let _ = (wf, batches);
        async {}
    }

    /// Writes the slot releases no ask has taken; called once a message is handled.
    fn flush_releases(&self) -> impl Future<Output = ()> + Send {
        async {}
    }
}

/// [`Shell`] over the real AWS clients.
#[derive(Clone)]
pub struct AwsShell {
    pub appflow: AppFlow,
    pub profiles: Profiles,
    pub health: HealthSender,
    pub queue: Queue,
    pub metrics: Arc<Metrics>,
    /// The shared run budget; None: off.
    pub budget: Option<RunBudget>,
    /// The role Customer Profiles assumes for managed workflows (`FLOWPILOT_MANAGED_ROLE_ARN`).
    pub managed_role_arn: Option<String>,
}

impl AwsShell {
    fn record(&self, kind: &'static str, ok: bool) {
        self.metrics.inc_with(
            metrics::EFFECTS,
            &[("kind", kind), ("result", if ok { "ok" } else { "error" })],
        );
    }

    /// Counts the call and maps its result by the core's contract (`outcome_of`).
    fn step<T>(
        &self,
        kind: &'static str,
        key: &EffectKey,
        result: Result<T, EffectError>,
        ok: impl FnOnce(T) -> Outcome,
    ) -> Step {
        self.record(kind, result.is_ok());
        let step = outcome_of(key, result, ok);
        if let Step::Record(Outcome::Failed { error, .. }) = &step {
            tracing::warn!(effect = kind, %key, code = %error.code, error = %error.message, "effect failed permanently");
        }
        step
    }

    /// Executes the first of `effects`, or all the Publish effects it starts a run of (one
    /// PutEvents per 10 events); one step per effect executed.
    async fn run_next(
        &self,
        wf: &Workflow,
        effects: &[Effect],
        scratch: &mut Scratch,
    ) -> Vec<Step> {
        let Some(effect) = effects.first() else {
            return Vec::new();
        };
        let key = &effect.key;
        let done = || Outcome::Done { key: key.clone() };
        let step = match &effect.kind {
            EffectKind::CreateFlow { flow } => {
                return self.create_flow(wf, key, flow, scratch).await;
            }
            EffectKind::StartFlow {
                flow_name,
                client_token,
                role,
                attempt,
            } => {
                if let FlowRole::Batch(i) = role {
                    if let Some(denial) = scratch.refused.get(i) {
                        return vec![Step::Record(Outcome::SlotDenied {
                            key: key.clone(),
                            attempt: *attempt,
                            denial: denial.clone(),
                        })];
                    }
                    match self.slot(wf, *i, *attempt).await {
                        Ok(Slot::Granted) => {}
                        Ok(Slot::Denied(denial)) => {
                            return vec![Step::Record(Outcome::SlotDenied {
                                key: key.clone(),
                                attempt: *attempt,
                                denial,
                            })];
                        }
                        Err(e) => return vec![Step::Stop(e)],
                    }
                }
                let r = self.appflow.start_flow(flow_name, client_token).await;
                if let (FlowRole::Batch(i), Err(e)) = (role, &r)
                    && e.code == QUOTA_EXCEEDED
                {
                    self.record("start_flow", false);
                    let step = match self
                        .quota_refused(
                            wf,
                            budget::Refused::StartFlow,
                            flow_name,
                            Some((*i, *attempt)),
                            e,
                        )
                        .await
                    {
                        Ok(denial) => Step::Record(Outcome::SlotDenied {
                            key: key.clone(),
                            attempt: *attempt,
                            denial,
                        }),
                        Err(e) => Step::Stop(e),
                    };
                    return vec![step];
                }
                if let FlowRole::Batch(i) = role {
                    if r.is_ok() {
                        metrics::critical_path_reached(&self.metrics);
                    } else if r.as_ref().is_err_and(|e| e.permanent) {
                        // Nothing runs: the slot is free again at once, not at expiry.
                        self.release_slots(wf, &[*i]).await;
                    }
                }
                self.step("start_flow", key, r, |execution_id| Outcome::Started {
                    key: key.clone(),
                    role: *role,
                    attempt: *attempt,
                    execution_id,
                })
            }
            EffectKind::CancelRun {
                flow_name,
                execution_id,
            } => {
                let r = self.appflow.cancel_run(flow_name, execution_id).await;
                self.step("cancel_run", key, r, |()| done())
            }
            EffectKind::DeleteFlow { flow_name } => {
                let mut r = self.appflow.delete_flow(flow_name).await;
                if r.is_ok() {
                    // An unwritten release keeps the DeleteFlow in the outbox: repeated, it
                    // finds the flow gone and releases again, so no slot is lost for good.
                    r = self.release_flow(flow_name).await;
                }
                self.step("delete_flow", key, r, |()| done())
            }
            EffectKind::StopFlow { flow_name } => {
                let r = self.appflow.stop_flow(flow_name).await;
                self.step("stop_flow", key, r, |()| done())
            }
            EffectKind::DescribeRuns { flow_name } => {
                let r = self.appflow.describe_runs(flow_name).await;
                self.step("describe_runs", key, r, |runs| Outcome::Runs {
                    key: key.clone(),
                    runs,
                })
            }
            EffectKind::DescribeRun {
                flow_name,
                role,
                attempt,
                execution_id,
            } => {
                let r = self
                    .appflow
                    .describe_run(flow_name, *role, execution_id.as_deref())
                    .await;
                self.step("describe_run", key, r, |run| Outcome::Described {
                    key: key.clone(),
                    role: *role,
                    attempt: *attempt,
                    run,
                })
            }
            EffectKind::PutIntegration {
                domain,
                object_type,
                flow_name,
                generation,
            } => {
                let r = match scratch.arns.get(flow_name) {
                    Some(arn) => Ok(arn.clone()),
                    // Created by an earlier attempt (or the answer was a conflict): ask AppFlow.
                    None => self.appflow.flow_arn(flow_name).await,
                };
                let r = match r {
                    Ok(arn) => {
                        self.profiles
                            .put_integration(domain, object_type, &arn)
                            .await
                    }
                    Err(e) => Err(e),
                };
                self.step("put_integration", key, r, |uri| Outcome::Linked {
                    key: key.clone(),
                    generation: *generation,
                    uri,
                })
            }
            EffectKind::DeleteIntegration { domain, uri } => {
                let r = self.profiles.delete_integration(domain, uri).await;
                self.step("delete_integration", key, r, |()| done())
            }
            EffectKind::CreateIntegrationWorkflow {
                domain,
                object_type,
                generation,
                flow,
                batches,
            } => {
                let r = match &self.managed_role_arn {
                    Some(role_arn) => {
                        let submission = crate::aws::profiles::Submission {
                            domain,
                            object_type,
                            role_arn,
                            flow,
                            batches,
                        };
                        self.profiles.create_integration_workflow(&submission).await
                    }
                    None => Err(EffectError {
                        code: "ManagedRoleNotConfigured".to_owned(),
                        message: "FLOWPILOT_MANAGED_ROLE_ARN is not set: give the worker the \
                                  AppFlowExecutionRole ARN (stack output \
                                  AppFlowExecutionRoleArn) to run --engine managed workflows"
                            .to_owned(),
                        permanent: true,
                    }),
                };
                if let Ok(id) = &r {
                    tracing::info!(workflow = %wf.id, generation, managed_workflow = %id, "managed workflow created");
                }
                self.step("create_integration_workflow", key, r, |workflow_id| {
                    Outcome::ManagedCreated {
                        key: key.clone(),
                        generation: *generation,
                        workflow_id,
                    }
                })
            }
            EffectKind::WatchManaged {
                domain,
                workflow_id,
                generation,
            } => {
                let r = self.profiles.watch_workflow(domain, workflow_id).await;
                self.step("watch_managed", key, r, |view| Outcome::ManagedSeen {
                    key: key.clone(),
                    generation: *generation,
                    view,
                })
            }
            EffectKind::FindManagedIntegration {
                domain,
                workflow_id,
                generation,
            } => {
                let r = self
                    .profiles
                    .find_workflow_integration(domain, workflow_id)
                    .await;
                self.step("find_managed_integration", key, r, |uri| {
                    Outcome::ManagedIntegration {
                        key: key.clone(),
                        generation: *generation,
                        uri,
                    }
                })
            }
            EffectKind::DeleteManaged {
                domain,
                workflow_id,
            } => {
                let r = self.profiles.delete_workflow(domain, workflow_id).await;
                self.step("delete_managed", key, r, |()| done())
            }
            EffectKind::Publish { .. } => {
                let run: Vec<&Effect> = effects
                    .iter()
                    .take_while(|e| matches!(e.kind, EffectKind::Publish { .. }))
                    .collect();
                return self.publish_run(&run).await;
            }
            EffectKind::ScheduleRetry {
                batch,
                attempt,
                due_at,
            } => {
                let cmd = Command::RetryDue {
                    workflow_id: wf.id.clone(),
                    batch: *batch,
                    attempt: *attempt,
                    due_at: *due_at,
                };
                self.schedule_retry(key, &cmd, *due_at).await
            }
        };
        vec![step]
    }

    /// Sends a `retry_due` command delayed until its `due_at` (SQS allows at most 15 minutes;
    /// the handler re-delays one that arrives early).
    async fn schedule_retry(
        &self,
        key: &EffectKey,
        cmd: &Command,
        due_at: chrono::DateTime<Utc>,
    ) -> Step {
        let delay = (due_at - Utc::now())
            .to_std()
            .unwrap_or(Duration::ZERO)
            .min(MAX_DELAY);
        let r = self
            .queue
            .send_command(cmd, delay)
            .await
            .map(|_message_id| ())
            .map_err(|e| EffectError {
                code: e.aws.code.clone().unwrap_or_else(|| "Transport".to_owned()),
                message: error_chain(&e),
                permanent: false,
            });
        if r.is_ok() {
            self.metrics.inc(metrics::RETRIES_SCHEDULED);
        }
        self.step("schedule_retry", key, r, |()| Outcome::Done {
            key: key.clone(),
        })
    }

    /// Publishes a run of consecutive Publish effects with as few PutEvents calls as possible.
    async fn publish_run(&self, effects: &[&Effect]) -> Vec<Step> {
        let events: Vec<HealthEvent> = effects
            .iter()
            .filter_map(|e| match &e.kind {
                EffectKind::Publish { event } => Some(event.clone()),
                _ => None,
            })
            .collect();
        let results = publish(&self.health, events.clone()).await;
        for (event, r) in events.iter().zip(&results) {
            if r.is_ok() {
                metrics::count_published(&self.metrics, event);
            }
        }
        effects
            .iter()
            .zip(results)
            .map(|(e, r)| {
                self.step("publish", &e.key, r, |()| Outcome::Done {
                    key: e.key.clone(),
                })
            })
            .collect()
    }
}

impl Shell for AwsShell {
    async fn release_slots(&self, wf: &Workflow, batches: &[u32]) {
        let Some(budget) = &self.budget else {
            return;
        };
        for i in batches {
            budget.queue_release(&wf.spec.connector_profile, &holder(wf.id.as_str(), *i));
        }
    }

    async fn flush_releases(&self) {
        let Some(budget) = &self.budget else {
            return;
        };
        let r = budget.flush_releases().await;
        let (released, dropped) = budget.take_released();
        // Called after every message: most find nothing to count.
        if released > 0 {
            self.metrics
                .add(metrics::RUN_SLOT_RELEASES, &[("result", "ok")], released);
        }
        if dropped > 0 {
            self.metrics
                .add(metrics::RUN_SLOT_RELEASES, &[("result", "error")], dropped);
            // The flush's own error, if it was the flush that failed (an ask's failure is
            // reported by the ask).
            tracing::warn!(
                dropped,
                error = r.as_ref().err().map(tracing::field::display),
                "run slots not released: they come back when their leases expire"
            );
        }
    }

    async fn execute(&self, wf: &Workflow, effects: &[Effect]) -> Executed {
        let mut executed = Executed::default();
        let mut scratch = Scratch::default();
        let mut i = 0;
        while i < effects.len() {
            let steps = self.run_next(wf, &effects[i..], &mut scratch).await;
            for step in steps {
                if !executed.push(&effects[i].key, step) {
                    if let Some((key, error)) = &executed.stopped {
                        tracing::warn!(%key, code = %error.code, error = %error.message, "effect failed transiently; it stays in the outbox");
                    }
                    return executed;
                }
                i += 1;
            }
        }
        executed
    }

    async fn send_command(&self, cmd: &Command, delay: Duration) -> Result<(), QueueError> {
        self.queue.send_command(cmd, delay).await.map(|_| ())
    }

    async fn publish(&self, events: &[HealthEvent]) -> Vec<Result<(), EffectError>> {
        publish(&self.health, events.to_vec()).await
    }
}

/// Submits `events` to the coalescing sender; an event it could not take (the worker is
/// shutting down) is a transient failure: it stays in the outbox for the next drain.
async fn publish(sender: &HealthSender, events: Vec<HealthEvent>) -> Vec<Result<(), EffectError>> {
    sender
        .submit_all(events)
        .await
        .into_iter()
        .map(|r| {
            r.unwrap_or_else(|| {
                Err(EffectError {
                    code: "PublisherStopped".to_owned(),
                    message: "the health publisher stopped before sending the event".to_owned(),
                    permanent: false,
                })
            })
        })
        .collect()
}
