//! The periodic reconcile tick and cancellation.
//!
//! EventBridge delivery is best effort, so a run can end without an event and a delayed retry
//! message can be lost. The reconciler (driven by `now` only) asks AppFlow about runs that have
//! been going a while, gives up on stalled ones, restarts overdue retries and fills free
//! slots; during a rebuild it asks again whether the previous live flow still runs. (Effects that failed transiently need nothing from it: they are still in the outbox,
//! which the shell drains before every input, this one included.)

use chrono::TimeDelta;

use super::Ctx;
use super::bulk::{failed, fill_slots, start_batch};
use super::health::Draft;
use crate::classify::Verdict;
use crate::effect::{AttemptStep, CancelStep, EffectKey, EffectKind};
use crate::health::HealthKind;
use crate::ids::{FlowRole, flow_name};
use crate::model::{BatchStatus, ErrorInfo, WorkflowStatus};

pub(super) fn reconcile(cx: &mut Ctx) {
    match cx.wf.status {
        // The start command was lost (or `workflow create` died before sending it): a workflow
        // nobody started would otherwise wait forever. A late start is then a no-op.
        WorkflowStatus::Pending if cx.now - cx.wf.created_at > delta(cx.policy.retry_grace) => {
            super::bulk::start(cx)
        }
        // A rebuild waiting for the previous flow's runs: ask AppFlow again (an End report may
        // have been lost, and a stuck run is cancelled once past the maximum run duration).
        WorkflowStatus::Linking | WorkflowStatus::Rebuilding => super::retire::ask(cx),
        // Customer Profiles runs the batches: ask it, never start or describe flows here.
        WorkflowStatus::Backfilling
        | WorkflowStatus::Failed
        | WorkflowStatus::Live
        | WorkflowStatus::Degraded
            if super::managed::is_managed(cx) =>
        {
            super::managed::reconcile(cx)
        }
        WorkflowStatus::Backfilling | WorkflowStatus::Failed => {
            check_running(cx);
            if cx.wf.status == WorkflowStatus::Backfilling {
                restart_lost_retries(cx);
                fill_slots(cx);
            }
        }
        _ => {}
    }
}

pub(super) fn delta(d: std::time::Duration) -> TimeDelta {
    TimeDelta::from_std(d).unwrap_or(TimeDelta::MAX)
}

fn check_running(cx: &mut Ctx) {
    let describe_after = delta(cx.policy.describe_after);
    let max_run = delta(cx.policy.max_run_duration);
    for idx in 0..cx.wf.batches.len() {
        let b = &cx.wf.batches[idx];
        if b.status != BatchStatus::Running {
            continue;
        }
        let age = cx.now - b.started_at.unwrap_or(cx.now);
        let (i, attempt, exec) = (b.index, b.attempt, b.execution_id.clone());
        let name = flow_name(&cx.wf.id, FlowRole::Batch(i));
        if age > max_run {
            if let Some(execution_id) = exec {
                cx.effect(
                    EffectKey::attempt(i, attempt, AttemptStep::Cancel),
                    EffectKind::CancelRun {
                        flow_name: name.clone(),
                        execution_id,
                    },
                );
            }
            let message = format!(
                "run of batch {i} attempt {attempt} still not finished after {} minutes: cancelled",
                age.num_minutes()
            );
            let err = ErrorInfo::judged(message, Verdict::Transient);
            let mut d = Draft::new(HealthKind::WorkflowStalled, format!("/b{i}/a{attempt}"));
            d.batch = Some(idx);
            d.attempt = Some(attempt);
            d.flow_name = Some(name);
            d.error = Some(err.clone());
            cx.publish(d);
            failed(cx, idx, err);
        } else if age > describe_after && !cx.has_pending(|k| is_describe(k, i, attempt)) {
            let at_ms = cx.now.timestamp_millis();
            cx.effect(
                EffectKey::attempt(i, attempt, AttemptStep::Describe { at_ms }),
                EffectKind::DescribeRun {
                    flow_name: name,
                    role: FlowRole::Batch(i),
                    attempt,
                    execution_id: exec,
                },
            );
        }
    }
}

/// A DescribeRun of this batch attempt, whenever it was asked.
fn is_describe(key: &EffectKey, batch: u32, attempt: u32) -> bool {
    matches!(key, EffectKey::Attempt { batch: b, attempt: a, step: AttemptStep::Describe { .. } }
        if *b == batch && *a == attempt)
}

fn restart_lost_retries(cx: &mut Ctx) {
    let grace = delta(cx.policy.retry_grace);
    for idx in 0..cx.wf.batches.len() {
        let b = &cx.wf.batches[idx];
        let overdue = b.retry_at.is_some_and(|at| cx.now - at > grace);
        if b.status == BatchStatus::RetryWait && overdue {
            start_batch(cx, idx);
        }
    }
}

/// Stops everything: cancels running runs, deletes every flow flowpilot created for this
/// workflow that still exists, and the integration. Final.
pub(super) fn cancel(cx: &mut Ctx, reason: Option<String>) {
    cx.wf.status = WorkflowStatus::Cancelled;
    let message = reason.unwrap_or_else(|| "cancelled by operator".to_owned());
    cx.wf.last_error = Some(ErrorInfo::judged(message, Verdict::Permanent));
    // The managed engine's batch flows are Customer Profiles': deleting its workflow is the
    // whole cleanup of the backfill.
    let own_batches = !super::managed::is_managed(cx);
    if !own_batches {
        super::managed::cancel(cx);
    }
    for idx in (0..cx.wf.batches.len()).filter(|_| own_batches) {
        let b = &cx.wf.batches[idx];
        if (b.attempt == 0 && !b.flow_ready) || b.status.is_done() {
            continue; // never created, or already deleted (a split batch's with the split)
        }
        let (i, status, exec) = (b.index, b.status, b.execution_id.clone());
        let name = flow_name(&cx.wf.id, FlowRole::Batch(i));
        if let (BatchStatus::Running, Some(execution_id)) = (status, exec) {
            cx.effect(
                EffectKey::Cancel(CancelStep::BatchRun { batch: i }),
                EffectKind::CancelRun {
                    flow_name: name.clone(),
                    execution_id,
                },
            );
        }
        cx.effect(
            EffectKey::Cancel(CancelStep::BatchFlow { batch: i }),
            EffectKind::DeleteFlow { flow_name: name },
        );
    }
    if let Some(live) = cx.wf.live.clone() {
        if let Some(uri) = live.uri {
            let domain = cx.wf.spec.domain.clone();
            cx.effect(
                EffectKey::Cancel(CancelStep::LiveIntegration),
                EffectKind::DeleteIntegration { domain, uri },
            );
        }
        cx.effect(
            EffectKey::Cancel(CancelStep::LiveFlow),
            EffectKind::DeleteFlow {
                flow_name: live.flow_name,
            },
        );
    }
}
