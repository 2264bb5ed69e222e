//! Watching a managed workflow: GetWorkflow / GetWorkflowSteps answers become batch progress
//! and the health events of the module's table (`super`), and a step that stops moving is
//! reported.

use super::super::Ctx;
use super::super::bulk::fail_workflow;
use super::super::health::Draft;
use super::integration::find;
use super::{current, is_managed};
use crate::advice;
use crate::classify::{Verdict, classify};
use crate::effect::{EffectKey, EffectKind, ManagedStep, ManagedView};
use crate::health::HealthKind;
use crate::ids::managed_flow_name;
use crate::model::{BatchStatus, ErrorInfo, WorkflowStatus};

/// Asks Customer Profiles about the current managed workflow, unless an answer is pending.
pub(in crate::decide) fn watch(cx: &mut Ctx) {
    if !is_managed(cx) || cx.wf.status != WorkflowStatus::Backfilling {
        return;
    }
    let Some(m) = &cx.wf.managed else {
        return;
    };
    let Some(workflow_id) = m.workflow_id.clone() else {
        return; // CreateIntegrationWorkflow is still in the outbox
    };
    let generation = m.generation;
    let asking = cx.has_pending(|k| {
        matches!(k, EffectKey::Managed { generation: g, step: ManagedStep::Watch { .. } } if *g == generation)
    });
    if asking {
        return;
    }
    cx.effect(
        EffectKey::Managed {
            generation,
            step: ManagedStep::Watch {
                at_ms: cx.now.timestamp_millis(),
            },
        },
        EffectKind::WatchManaged {
            domain: cx.wf.spec.domain.clone(),
            workflow_id,
            generation,
        },
    );
}

/// A step flow's End report: its outcome is what GetWorkflowSteps says, so ask.
pub(in crate::decide) fn step_ended(cx: &mut Ctx, generation: u32, step: u32) {
    let known = cx
        .wf
        .managed
        .as_ref()
        .is_some_and(|m| (step as usize) < m.steps.len());
    if current(cx, generation) && known {
        watch(cx);
    }
}

/// The reconcile tick: a Pending managed workflow is started by the generic path; a running
/// one is asked about (lost End reports, and the states no flow reports).
pub(in crate::decide) fn reconcile(cx: &mut Ctx) {
    match cx.wf.status {
        WorkflowStatus::Backfilling => {
            stalled(cx);
            watch(cx);
        }
        WorkflowStatus::Live | WorkflowStatus::Degraded => find(cx),
        _ => {}
    }
}

/// What GetWorkflow and GetWorkflowSteps said (see the module's table).
pub(in crate::decide) fn seen(cx: &mut Ctx, generation: u32, view: ManagedView) {
    if !current(cx, generation) || cx.wf.status != WorkflowStatus::Backfilling {
        return;
    }
    let Some(m) = cx.wf.managed.clone() else {
        return;
    };
    let base = managed_flow_name(&cx.wf.id, generation);
    // Steps fail with the workflow only: a `COMPLETE` workflow listing a failed step (an
    // earlier attempt's, or a listing racing the status) completed every batch.
    let ended = matches!(view.status.as_str(), "FAILED" | "CANCELLED");
    for s in &view.steps {
        let Some(n) = s
            .flow_name
            .strip_prefix(base.as_str())
            .and_then(|r| r.strip_prefix("-s"))
            .and_then(|d| d.parse::<usize>().ok())
        else {
            continue;
        };
        let Some(idx) = m.steps.get(n).and_then(|&b| cx.batch_index(b)) else {
            continue;
        };
        if cx.wf.batches[idx].status != BatchStatus::Running {
            continue;
        }
        match s.status.as_str() {
            "COMPLETE" => succeeded(cx, idx, s.records, &s.flow_name),
            "FAILED" | "CANCELLED" if ended => {
                let err = step_error(s.message.as_deref(), &s.status, &s.flow_name);
                batch_failed(cx, idx, err, &s.flow_name);
            }
            "RETRY" => retrying(cx, n, idx, s.message.as_deref(), &s.flow_name),
            _ => {}
        }
    }
    if let Some(run) = cx.wf.managed.as_mut() {
        run.status = Some(view.status.clone());
    }
    match view.status.as_str() {
        "COMPLETE" => complete(cx, &base),
        "FAILED" | "CANCELLED" => {
            let message = view.error.clone().unwrap_or_else(|| {
                format!(
                    "the managed workflow ended {} without an error description",
                    view.status
                )
            });
            let err = ErrorInfo::judged(
                format!("managed workflow {}: {message}", base),
                Verdict::Permanent,
            );
            end_running(cx, &err);
            fail_workflow(cx, err);
        }
        _ => {}
    }
}

/// The step under way (the first submitted batch still running) has made no progress for the
/// maximum run duration — since the submission or the previous step's end, whichever is
/// later: one `Workflow Stalled` per step. Customer Profiles retries and fails the step on its
/// own, so nothing is cancelled; the event tells an operator to look.
fn stalled(cx: &mut Ctx) {
    let Some(m) = cx.wf.managed.clone() else {
        return;
    };
    let Some((n, idx)) = m.steps.iter().enumerate().find_map(|(n, &b)| {
        cx.batch_index(b)
            .filter(|&i| cx.wf.batches[i].status == BatchStatus::Running)
            .map(|i| (n, i))
    }) else {
        return;
    };
    let step = u32::try_from(n).unwrap_or(u32::MAX);
    if m.stalled_step == Some(step) {
        return;
    }
    let previous_end = m
        .steps
        .iter()
        .take(n)
        .filter_map(|&b| cx.batch_index(b))
        .filter_map(|i| cx.wf.batches[i].finished_at)
        .max();
    let b = &cx.wf.batches[idx];
    let Some(since) = b.started_at.max(previous_end) else {
        return;
    };
    let age = cx.now - since;
    if age <= super::super::reconcile::delta(cx.policy.max_run_duration) {
        return;
    }
    let (i, attempt) = (b.index, b.attempt);
    let flow = format!("{}-s{n}", managed_flow_name(&cx.wf.id, m.generation));
    if let Some(run) = cx.wf.managed.as_mut() {
        run.stalled_step = Some(step);
    }
    let message = format!(
        "managed workflow step {n} (batch {i}, flow {flow}) has made no progress for {} min; \
         Customer Profiles retries and fails steps on its own: check it in the console, or \
         `flowpilot workflow cancel {}` and create it again",
        age.num_minutes(),
        cx.wf.id
    );
    let mut d = Draft::new(HealthKind::WorkflowStalled, format!("/b{i}/a{attempt}"));
    d.batch = Some(idx);
    d.attempt = Some(attempt);
    d.flow_name = Some(flow);
    d.error = Some(ErrorInfo::judged(message, Verdict::Transient));
    cx.publish(d);
}

fn step_error(message: Option<&str>, status: &str, flow_name: &str) -> ErrorInfo {
    let message = message
        .map(str::to_owned)
        .unwrap_or_else(|| format!("step flow {flow_name} ended {status}"));
    let verdict = classify(&message);
    ErrorInfo::judged(message, verdict)
}

fn succeeded(cx: &mut Ctx, idx: usize, records: u64, flow_name: &str) {
    let now = cx.now;
    let b = &mut cx.wf.batches[idx];
    b.status = BatchStatus::Succeeded;
    b.records = records;
    b.finished_at = Some(now);
    b.last_error = None;
    let (i, attempt) = (b.index, b.attempt);
    let mut d = Draft::new(HealthKind::BatchSucceeded, format!("/b{i}"));
    d.batch = Some(idx);
    d.attempt = Some(attempt);
    d.flow_name = Some(flow_name.to_owned());
    cx.publish(d);
}

/// Customer Profiles retries a step itself (up to three times): reported once per step and
/// submission, without a due time flowpilot cannot know.
fn retrying(cx: &mut Ctx, step: usize, idx: usize, message: Option<&str>, flow_name: &str) {
    let Some(m) = cx.wf.managed.as_mut() else {
        return;
    };
    let step = u32::try_from(step).unwrap_or(u32::MAX);
    if m.retried.contains(&step) {
        return;
    }
    m.retried.push(step);
    let err = step_error(message, "RETRY", flow_name);
    let b = &mut cx.wf.batches[idx];
    b.last_error = Some(err.clone());
    let (i, attempt) = (b.index, b.attempt);
    let mut d = Draft::new(HealthKind::BatchRetryScheduled, format!("/b{i}/a{attempt}"));
    d.batch = Some(idx);
    d.attempt = Some(attempt);
    d.flow_name = Some(flow_name.to_owned());
    d.error = Some(err);
    cx.publish(d);
}

fn batch_failed(cx: &mut Ctx, idx: usize, err: ErrorInfo, flow_name: &str) {
    let now = cx.now;
    let b = &mut cx.wf.batches[idx];
    b.status = BatchStatus::Failed;
    b.finished_at = Some(now);
    b.last_error = Some(err.clone());
    let (i, attempt) = (b.index, b.attempt);
    let mut d = Draft::new(HealthKind::BatchFailed, format!("/b{i}/a{attempt}"));
    d.batch = Some(idx);
    d.attempt = Some(attempt);
    d.flow_name = Some(flow_name.to_owned());
    d.advise(advice::after_failure(&cx.wf.id, &cx.wf.spec, &err));
    d.error = Some(err);
    cx.publish(d);
}

/// The managed workflow ended without completing: every batch it had not finished is failed
/// (a redrive submits exactly those again).
pub(super) fn end_running(cx: &mut Ctx, err: &ErrorInfo) {
    let base = cx
        .wf
        .managed
        .as_ref()
        .map(|m| managed_flow_name(&cx.wf.id, m.generation));
    let steps = cx
        .wf
        .managed
        .as_ref()
        .map(|m| m.steps.clone())
        .unwrap_or_default();
    for (n, b) in steps.into_iter().enumerate() {
        let Some(idx) = cx.batch_index(b) else {
            continue;
        };
        if cx.wf.batches[idx].status == BatchStatus::Running {
            let flow = base
                .as_ref()
                .map(|b| format!("{b}-s{n}"))
                .unwrap_or_default();
            batch_failed(cx, idx, err.clone(), &flow);
        }
    }
}

/// The managed workflow completed: every submitted batch is done (those whose step view was
/// missing count as succeeded, as Customer Profiles says), and the workflow completes.
fn complete(cx: &mut Ctx, base: &str) {
    let steps = cx
        .wf
        .managed
        .as_ref()
        .map(|m| m.steps.clone())
        .unwrap_or_default();
    for (n, b) in steps.into_iter().enumerate() {
        let Some(idx) = cx.batch_index(b) else {
            continue;
        };
        if cx.wf.batches[idx].status == BatchStatus::Running {
            succeeded(cx, idx, 0, &format!("{base}-s{n}"));
        }
    }
    if !cx.wf.batches.iter().all(|b| b.status.is_done()) {
        return;
    }
    cx.wf.status = WorkflowStatus::Live;
    if cx.wf.completed_at.is_none() {
        cx.wf.completed_at = Some(cx.now);
        let mut d = Draft::new(HealthKind::WorkflowCompleted, "");
        d.flow_name = Some(format!("{base}-live"));
        cx.publish(d);
    }
    find(cx);
}
