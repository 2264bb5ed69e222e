//! The shared run budget refused a batch a run slot (`Outcome::SlotDenied`).
//!
//! The budget itself (leases with expiry in DynamoDB, across workflows and worker replicas) is
//! the shell's: only it can see the other workflows. The shell asks for a slot right before a
//! batch's StartFlow and, when refused, reports the refusal instead of starting. What the
//! refusal *means* is decided here:
//! - the batch waits in `RetryWait` for `Policy::slot_retry` and asks again through the
//!   ordinary retry timer (the reconciler restarts it if that message is lost);
//! - the refused attempt is free: the retry budget counts attempts above `budget_base`, which
//!   moves past it, so a long wait never fails the batch;
//! - the batch keeps its place among the workflow's `concurrency` (waiting is in flight), and
//!   `slot_wait` says for which limit, how full it was, and since when (`workflow status`).
//!
//! Which waiting batch gets a freed slot is the budget's order (oldest first wait), not this
//! module's: here a refusal only schedules the next question.
//!
//! The same holds for the flow limit (`FLOWPILOT_FLOW_LIMIT`: a batch's CreateFlow refused a
//! flow slot, [`flow_denied`]) and for AppFlow's own `ServiceQuotaExceededException` on a
//! batch's StartFlow or CreateFlow, which the shell reports as a refusal with `quota` set after
//! lowering the budget's limit: AppFlow saying "not now" is no reason to fail a workflow.

use super::Ctx;
use super::health::Draft;
use super::pause::resume_at;
use crate::advice;
use crate::classify::Verdict;
use crate::effect::{AttemptStep, EffectKey, EffectKind, SlotDenial};
use crate::health::HealthKind;
use crate::ids::{FlowRole, flow_name};
use crate::model::ErrorInfo;
use crate::model::{BatchStatus, SlotWait, WorkflowStatus};

/// Batch `index`'s CreateFlow for `attempt` was refused (a flow slot, or AppFlow's quota): the
/// flow does not exist, so the batch's next start must create it. A batch whose turn it is
/// waits like one refused a run slot; a flow created ahead of its batch's turn is simply
/// created again when the turn comes.
pub(super) fn flow_denied(cx: &mut Ctx, index: u32, attempt: u32, denial: SlotDenial) {
    let Some(idx) = cx.batch_index(index) else {
        return;
    };
    cx.wf.batches[idx].flow_ready = false;
    denied(cx, index, attempt, denial);
}

/// Batch `index`'s StartFlow for `attempt` was refused a slot.
pub(super) fn denied(cx: &mut Ctx, index: u32, attempt: u32, denial: SlotDenial) {
    let Some(idx) = cx.batch_index(index) else {
        return;
    };
    let now = cx.now;
    let until = resume_at(now, cx.policy.slot_retry);
    let b = &mut cx.wf.batches[idx];
    if b.attempt != attempt || b.status != BatchStatus::Running || b.execution_id.is_some() {
        return;
    }
    b.status = BatchStatus::RetryWait;
    b.retry_at = Some(until);
    b.started_at = None;
    b.budget_base = b.budget_base.saturating_add(1).min(b.attempt);
    let (since, denials, reported) = b
        .slot_wait
        .as_ref()
        .map_or((now, 0, false), |w| (w.since, w.denials, w.reported));
    let alert = !reported && now >= resume_at(since, cx.policy.slot_wait_alert);
    b.slot_wait = Some(SlotWait {
        scope: denial.scope.clone(),
        in_use: denial.in_use,
        limit: denial.limit,
        since,
        denials: denials.saturating_add(1),
        reported: reported || alert,
        quota: denial.quota,
    });
    if alert {
        // Once per wait: the wait's first refusal names it.
        let mut d = Draft::new(
            HealthKind::BatchWaitingForSlot,
            format!("/b{index}/w{}", since.timestamp()),
        );
        d.batch = Some(idx);
        d.attempt = Some(attempt);
        d.flow_name = Some(flow_name(&cx.wf.id, FlowRole::Batch(index)));
        d.error = Some(ErrorInfo::judged(
            format!(
                "waiting for a run slot on {}: {}, since {}",
                denial.scope,
                usage(&denial),
                crate::plan::rfc3339(since)
            ),
            Verdict::Transient,
        ));
        d.retry_at = Some(until);
        d.advise(advice::slot_wait(&cx.wf.id, &denial.scope, since));
        cx.publish(d);
    }
    // A failing workflow starts nothing more: the batch waits for a redrive, like any other
    // batch in `RetryWait`.
    if cx.wf.status != WorkflowStatus::Backfilling {
        return;
    }
    cx.effect(
        EffectKey::attempt(index, attempt, AttemptStep::Retry),
        EffectKind::ScheduleRetry {
            batch: index,
            attempt,
            due_at: until,
        },
    );
}

/// How full the refusing limit was, as status and events say it.
fn usage(d: &SlotDenial) -> String {
    if d.quota && d.limit == 0 {
        "AppFlow refused: quota (that limit of flowpilot's is off: nothing to lower)".to_owned()
    } else if d.quota {
        format!(
            "AppFlow refused: quota; effective limit lowered to {} ({} in use)",
            d.limit, d.in_use
        )
    } else {
        format!("{}/{} in use", d.in_use, d.limit)
    }
}
