//! The SaaS application's API allowance is spent (Salesforce `REQUEST_LIMIT_EXCEEDED`, a
//! rolling 24-hour allowance; Marketo's daily quota): the error table's
//! [`Verdict::SourceBudget`](crate::classify::Verdict::SourceBudget).
//!
//! Retrying with backoff would spend the 3 retries in minutes, each one also an API call
//! against the spent allowance, and fail a multi-day backfill for something that heals by
//! itself. Instead the workflow *pauses*:
//! - the refused batch waits `Policy::source_budget_wait` (`FLOWPILOT_SOURCE_BUDGET_WAIT`,
//!   default 1 h) in `RetryWait`, marked `paused`, then starts again through the ordinary
//!   retry timer (and the reconciler restarts it if that message is lost);
//! - the refused attempt does not count against the retry budget (`budget_base` moves past
//!   it; `budget_waits` counts it), so a long pause never fails the batch;
//! - while any batch is paused no other batch starts ([`crate::model::Workflow::paused_until`]):
//!   runs already going finish, and a run refused meanwhile pauses too, from its own refusal;
//! - `Workflow Paused` says why, for which connector profile, and when it resumes
//!   (`retry_at`). The workflow's status stays `backfilling`; it continues by itself.
//!
//! Only a backfilling workflow pauses: a batch refused while the workflow is already failing
//! fails with it (`bulk::failed`), and a redrive resumes it.

use chrono::{DateTime, Utc};

use super::Ctx;
use super::health::Draft;
use super::reconcile::delta;
use crate::advice;
use crate::effect::{AttemptStep, EffectKey, EffectKind};
use crate::health::HealthKind;
use crate::ids::{FlowRole, flow_name};
use crate::model::ErrorInfo;

/// Batch `idx`'s current attempt was refused for the source's API allowance: wait, without
/// spending a retry.
pub(super) fn pause(cx: &mut Ctx, idx: usize, err: ErrorInfo) {
    let until = resume_at(cx.now, cx.policy.source_budget_wait);
    let Some(b) = cx.wf.batches.get_mut(idx) else {
        return;
    };
    b.status = crate::model::BatchStatus::RetryWait;
    b.paused = true;
    b.retry_at = Some(until);
    // The refused attempt is free: the budget counts attempts above `budget_base`.
    b.budget_base = b.budget_base.saturating_add(1).min(b.attempt);
    b.budget_waits = b.budget_waits.saturating_add(1);
    let (i, attempt) = (b.index, b.attempt);
    cx.effect(
        EffectKey::attempt(i, attempt, AttemptStep::Retry),
        EffectKind::ScheduleRetry {
            batch: i,
            attempt,
            due_at: until,
        },
    );
    let mut d = Draft::new(HealthKind::WorkflowPaused, format!("/b{i}/a{attempt}"));
    d.batch = Some(idx);
    d.attempt = Some(attempt);
    d.flow_name = Some(flow_name(&cx.wf.id, FlowRole::Batch(i)));
    d.error = Some(err);
    d.retry_at = Some(until);
    d.advise(advice::paused(&cx.wf.id, &cx.wf.spec, until));
    cx.publish(d);
}

/// Whether the workflow is holding its starts at `now`.
pub(super) fn holding(cx: &Ctx) -> bool {
    cx.wf.paused_until().is_some_and(|until| until > cx.now)
}

/// `now + wait`, saturating at chrono's last instant ("never" is all that is left there).
pub fn resume_at(now: DateTime<Utc>, wait: std::time::Duration) -> DateTime<Utc> {
    now.checked_add_signed(delta(wait))
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}
