//! A stuck outbox: an effect that keeps failing transiently (AppFlow down, throttled for
//! minutes) stays in the outbox, and something must come back to drain it.
//!
//! At most one drain message per workflow is ever pending: [`Drain::due_at`] records it in the
//! item, so a transition that schedules one is a conditional write like any other, and every
//! other message, reconcile pass or retry that finds the outbox still stuck changes nothing
//! here (it only re-tries the effect on its way through). Drains back off exponentially from
//! `Policy::drain_base` to `Policy::drain_cap`; a drain whose message was lost (due long ago,
//! never arrived) is scheduled again. Once the outbox has been stuck for `Policy::stall_after`,
//! one `Workflow Stuck` says so: an alerting system hears about a workflow that silently
//! stopped moving. The outcome of the stuck effect ends the stuck period (`outcome::applied`).

use chrono::{DateTime, TimeDelta, Utc};

use super::Ctx;
use super::health::Draft;
use crate::effect::{EffectError, EffectKey, EffectKind};
use crate::health::HealthKind;
use crate::model::Drain;

/// The shell reports that the outbox stopped at `key` with a transient `error`.
pub(super) fn stuck(cx: &mut Ctx, key: EffectKey, error: EffectError) {
    // Only the effect the outbox actually waits on: a report about an effect that has since
    // left the outbox (a late or duplicated report) changes nothing.
    if !cx.wf.outbox.iter().any(|e| e.key == key) {
        return;
    }
    let now = cx.now;
    let grace = delta(cx.policy.retry_grace);
    let drain = cx.wf.drain.get_or_insert_with(|| Drain {
        key: key.clone(),
        since: now,
        attempts: 0,
        due_at: None,
        stall_reported: false,
        last_error: error.clone(),
    });
    drain.key = key;
    drain.last_error = error;
    // A drain whose message never came (lost, or the send failed after the commit) is
    // replaced once it is overdue by the same grace a lost retry gets.
    let lost = drain
        .due_at
        .is_some_and(|due| due.checked_add_signed(grace).is_none_or(|late| now > late));
    if drain.due_at.is_none() || lost {
        drain.attempts = drain.attempts.saturating_add(1);
        let delay = drain_delay(cx.policy.drain_base, cx.policy.drain_cap, drain.attempts);
        drain.due_at = Some(
            now.checked_add_signed(delay)
                .unwrap_or(DateTime::<Utc>::MAX_UTC),
        );
    }
    let stalled = now
        .signed_duration_since(drain.since)
        .to_std()
        .is_ok_and(|age| age >= cx.policy.stall_after);
    if stalled && !drain.stall_reported {
        drain.stall_reported = true;
        let (key, since, err) = (drain.key.clone(), drain.since, drain.last_error.clone());
        report_stall(cx, &key, since, &err);
    }
}

/// Drain number `attempt` came due: its message is consumed, so the next failure may schedule
/// another. (The shell drained the outbox before this input; had that worked, the stuck
/// period would already be over.)
pub(super) fn due(cx: &mut Ctx, attempt: u32) {
    if let Some(drain) = cx.wf.drain.as_mut()
        && drain.attempts == attempt
    {
        drain.due_at = None;
    }
}

/// `base · 2^(attempt−1)`, at most `cap`.
pub fn drain_delay(base: std::time::Duration, cap: std::time::Duration, attempt: u32) -> TimeDelta {
    let factor = 1u32
        .checked_shl(attempt.saturating_sub(1))
        .unwrap_or(u32::MAX);
    let delay = base.checked_mul(factor).unwrap_or(cap).min(cap);
    delta(delay)
}

fn delta(d: std::time::Duration) -> TimeDelta {
    TimeDelta::from_std(d).unwrap_or(TimeDelta::MAX)
}

fn report_stall(cx: &mut Ctx, key: &EffectKey, since: DateTime<Utc>, err: &EffectError) {
    let mut d = Draft::new(
        HealthKind::WorkflowStuck,
        format!("/stuck/{}", since.timestamp_millis()),
    );
    if let Some(effect) = cx.wf.outbox.iter().find(|e| &e.key == key) {
        d.flow_name = flow_of(&effect.kind).map(str::to_owned);
    }
    if let EffectKey::Attempt { batch, attempt, .. } = key {
        d.batch = cx.batch_index(*batch);
        d.attempt = Some(*attempt);
    }
    d.error = Some(crate::model::ErrorInfo::judged(
        format!(
            "effect {key} has been failing since {}: {}: {} (it is retried with backoff; \
             nothing is lost, the workflow resumes when AWS answers again)",
            crate::plan::rfc3339(since),
            err.code,
            err.message
        ),
        crate::classify::Verdict::Transient,
    ));
    cx.publish(d);
}

fn flow_of(kind: &EffectKind) -> Option<&str> {
    match kind {
        EffectKind::CreateFlow { flow } => Some(&flow.name),
        EffectKind::StartFlow { flow_name, .. }
        | EffectKind::CancelRun { flow_name, .. }
        | EffectKind::DeleteFlow { flow_name }
        | EffectKind::DescribeRun { flow_name, .. }
        | EffectKind::PutIntegration { flow_name, .. } => Some(flow_name),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::drain_delay;

    #[test]
    fn drains_back_off_exponentially_up_to_the_cap() {
        let (base, cap) = (Duration::from_secs(10), Duration::from_secs(300));
        let secs: Vec<i64> = (1..=8)
            .map(|a| drain_delay(base, cap, a).num_seconds())
            .collect();
        assert_eq!(secs, [10, 20, 40, 80, 160, 300, 300, 300]);
        assert_eq!(drain_delay(base, cap, u32::MAX).num_seconds(), 300);
    }
}
