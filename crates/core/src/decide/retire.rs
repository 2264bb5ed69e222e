//! A rebuild's first phase: retiring the previous generation's flow so that no run of it writes
//! after the new generation has fixed its start (README, "The integration degraded").
//!
//! 1. StopFlow: the scheduled flow starts no further run (runs in progress continue).
//! 2. DescribeRuns (DescribeFlowExecutionRecords, every page): which runs are still in
//!    progress. Asked again on every End report of that flow and on every reconcile tick, until
//!    none is.
//! 3. Then [`super::live::create_generation`] deletes the old integration and flow and creates
//!    the new flow from the end of the last *completed* pull, which includes the runs that were
//!    in flight: their End reports advance the resume point while the flow retires.
//!
//! The wait is bounded: runs still in progress past the policy's maximum run duration are
//! cancelled (CancelFlowExecutions) and the rebuild goes on; whatever those runs wrote before
//! they stopped is pulled again by the new generation, and its `Integration Rebuilt` event says
//! so.

use super::Ctx;
use super::live::{advance_resume_point, count_run, create_generation, link_from};
use super::reconcile::delta;
use crate::effect::{EffectKey, EffectKind, LiveStep, PermanentError};
use crate::input::{ActiveRun, FlowRuns, RunReport};
use crate::model::Retiring;

/// Stops the previous generation's flow (still `live.flow_name`) and asks about its runs.
pub(super) fn begin(cx: &mut Ctx) {
    let now = cx.now;
    let Some(live) = cx.wf.live.as_mut() else {
        return;
    };
    live.retiring = Some(Retiring {
        since: now,
        in_progress: Vec::new(),
    });
    let (g, flow_name) = (live.generation, live.flow_name.clone());
    cx.effect(
        EffectKey::live(g, LiveStep::Stop),
        EffectKind::StopFlow { flow_name },
    );
    ask(cx);
}

/// Asks AppFlow about the retiring flow's runs, unless a question is already waiting in the
/// outbox (its answer comes after everything that happened so far). No-op when nothing retires.
pub(super) fn ask(cx: &mut Ctx) {
    let Some(live) = cx.wf.live.as_ref().filter(|l| l.retiring.is_some()) else {
        return;
    };
    let (g, flow_name) = (live.generation, live.flow_name.clone());
    let asking = cx.has_pending(|k| {
        matches!(k, EffectKey::Live { generation, step: LiveStep::Runs { .. } } if *generation == g)
    });
    if !asking {
        let at_ms = cx.now.timestamp_millis();
        cx.effect(
            EffectKey::live(g, LiveStep::Runs { at_ms }),
            EffectKind::DescribeRuns { flow_name },
        );
    }
}

/// An End report of the retiring flow: it never touches the streak or the status (the flow is
/// being replaced), but a successful run wrote its records, so it moves the resume point; then
/// ask again whether anything still runs.
pub(super) fn run_ended(cx: &mut Ctx, report: &RunReport) {
    let Some(live) = cx.wf.live.as_mut() else {
        return;
    };
    if !count_run(live, report) {
        return;
    }
    if let (Some(r), Some(id)) = (live.retiring.as_mut(), &report.execution_id) {
        r.in_progress.retain(|x| x != id);
    }
    if report.succeeded {
        super::records::live_run(cx, report);
    }
    ask(cx);
}

/// DescribeRuns of generation `generation`'s retiring flow answered.
pub(super) fn described(cx: &mut Ctx, generation: u32, runs: FlowRuns) {
    let Some(live) = cx.wf.live.as_ref() else {
        return;
    };
    let Some(since) = live.retiring.as_ref().map(|r| r.since) else {
        return; // already retired: a late answer
    };
    if live.generation != generation {
        return;
    }
    // A run whose End report was counted has ended, whatever an answer given before that
    // report says.
    let active: Vec<ActiveRun> = runs
        .in_progress
        .into_iter()
        .filter(|r| !live.recent_execution_ids.contains(&r.execution_id))
        .collect();
    let max_run = delta(cx.policy.max_run_duration);
    let stuck = |r: &ActiveRun| {
        cx.now - since > max_run || r.started_at.is_some_and(|s| cx.now - s > max_run)
    };
    let cancelled = !active.is_empty() && active.iter().all(stuck);
    if cancelled {
        cancel_stuck(cx, &active);
    } else if !active.is_empty() {
        // Still writing: wait for its End report (or the next tick's question).
        if let Some(r) = cx.wf.live.as_mut().and_then(|l| l.retiring.as_mut()) {
            r.in_progress = active.into_iter().map(|r| r.execution_id).collect();
        }
        return;
    }
    if let Some(s) = runs.furthest_success
        && let Some(end) = s.pull_end.filter(|end| *end > link_from(cx))
    {
        // A successful run pulled beyond the resume point, and its End report has not moved it
        // (yet). The End report carries the run's exact window: give it the time a lost event
        // is given elsewhere (`describe_after`), then settle for AppFlow's record of the last
        // record transferred (a pull from there may write that record again, never miss one).
        let counted = s
            .execution_id
            .as_ref()
            .is_some_and(|id| live_ids(cx).contains(id));
        let ended = s.ended_at.unwrap_or(since);
        if !counted && !cancelled && cx.now - ended < delta(cx.policy.describe_after) {
            if let Some(r) = cx.wf.live.as_mut().and_then(|l| l.retiring.as_mut()) {
                r.in_progress.clear();
            }
            return;
        }
        if let Some(live) = cx.wf.live.as_mut() {
            advance_resume_point(live, end);
        }
    }
    create_generation(cx);
}

fn live_ids<'a>(cx: &'a Ctx) -> &'a [String] {
    cx.wf
        .live
        .as_ref()
        .map_or(&[], |l| l.recent_execution_ids.as_slice())
}

/// Cancels every run of the retiring flow still in progress past the maximum run duration; the
/// rebuild then goes on, and its `Integration Rebuilt` event says what that costs.
fn cancel_stuck(cx: &mut Ctx, active: &[ActiveRun]) {
    let Some(live) = cx.wf.live.as_mut() else {
        return;
    };
    let (g, flow_name) = (live.generation, live.flow_name.clone());
    let ids: Vec<&str> = active.iter().map(|r| r.execution_id.as_str()).collect();
    live.rebuild_note = Some(format!(
        "cancelled run(s) {} of `{flow_name}`, still in progress past the maximum run duration \
         ({} min): the records they wrote before stopping are pulled again by generation {g} \
         (possible duplicate writes)",
        ids.join(", "),
        delta(cx.policy.max_run_duration).num_minutes()
    ));
    for (run, r) in (0u32..).zip(active) {
        cx.effect(
            EffectKey::live(g, LiveStep::Cancel { run }),
            EffectKind::CancelRun {
                flow_name: flow_name.clone(),
                execution_id: r.execution_id.clone(),
            },
        );
    }
}

/// DescribeRuns failed for good (e.g. access denied): nothing tells whether a run still writes.
/// The next reconcile tick asks again; once the wait has lasted the maximum run duration the
/// rebuild goes on, saying what it could not check.
pub(super) fn describe_failed(cx: &mut Ctx, generation: u32, error: &PermanentError) {
    let max_run = delta(cx.policy.max_run_duration);
    let Some(live) = cx.wf.live.as_mut() else {
        return;
    };
    let Some(since) = live.retiring.as_ref().map(|r| r.since) else {
        return;
    };
    if live.generation != generation || cx.now - since <= max_run {
        return;
    }
    live.rebuild_note = Some(format!(
        "could not learn whether `{}` still had a run in progress ({}: {}); gave up waiting \
         after the maximum run duration: a run still in progress may write records generation \
         {generation} pulls again (possible duplicate writes)",
        live.flow_name, error.code, error.message
    ));
    create_generation(cx);
}
