//! The managed engine (`engine = managed`, docs/architecture.md, "The managed engine"):
//! Customer Profiles' CreateIntegrationWorkflow runs the batches flowpilot planned; flowpilot
//! watches it (GetWorkflow, GetWorkflowSteps) and turns what it sees into the same batch and
//! workflow health events its own engine publishes, and adds redrive and cancel.
//!
//! A managed workflow never starts a flow of its own during the backfill: its batches go
//! `Pending → Running` when they are submitted and leave `Running` only by what
//! GetWorkflowSteps / GetWorkflow report. Status mapping (step or workflow → event):
//!
//! | Customer Profiles                       | flowpilot                                   |
//! |-----------------------------------------|---------------------------------------------|
//! | step `COMPLETE`                         | batch succeeded, `Batch Succeeded`          |
//! | step `RETRY`                            | `Batch Retry Scheduled` (once per step and submission) |
//! | step `FAILED`/`CANCELLED`, workflow ended | batch failed, `Batch Failed` (redrive advice) |
//! | step `FAILED` while the workflow runs   | nothing yet: the workflow's own status decides |
//! | workflow `COMPLETE`                     | remaining batches succeeded, `Workflow Completed`, status `live` |
//! | workflow `FAILED` / `CANCELLED`         | `Workflow Failed` with the redrive command  |
//! | `SPLIT`, `ACTIVE`, `IN_PROGRESS`, `NOT_STARTED`, unknown | still running: nothing   |

use super::Ctx;
use super::bulk::{fail_workflow, managed_tags};
use super::health::Draft;
use crate::advice;
use crate::classify::{Verdict, classify};
use crate::effect::{
    EffectKey, EffectKind, FlowDefinition, ManagedStep, ManagedView, PermanentError, Trigger,
};
use crate::health::HealthKind;
use crate::ids::managed_flow_name;
use crate::model::{BatchStatus, ErrorInfo, LiveIntegration, ManagedRun, WorkflowStatus};
use crate::spec::Engine;

pub(super) fn is_managed(cx: &Ctx) -> bool {
    cx.wf.spec.engine == Engine::Managed
}

/// Submits every batch not done yet as one CreateIntegrationWorkflow (a new generation, so
/// the FlowDefinition and its step flows get names of their own): the first submission, or a
/// redrive's with only the batches that did not complete.
pub(super) fn submit(cx: &mut Ctx) {
    let generation = cx
        .wf
        .managed
        .as_ref()
        .map_or(1, |m| m.generation.saturating_add(1));
    let now = cx.now;
    let mut order: Vec<usize> = (0..cx.wf.batches.len())
        .filter(|&i| !cx.wf.batches[i].status.is_done())
        .collect();
    order.sort_by_key(|&i| (cx.wf.batches[i].window.start, i));
    let mut steps = Vec::with_capacity(order.len());
    let mut windows = Vec::with_capacity(order.len());
    for &i in &order {
        let b = &mut cx.wf.batches[i];
        b.attempt = b.attempt.saturating_add(1);
        b.status = BatchStatus::Running;
        b.started_at = Some(now);
        b.finished_at = None;
        b.retry_at = None;
        b.execution_id = None;
        steps.push(b.index);
        windows.push(b.window);
    }
    cx.wf.status = WorkflowStatus::Backfilling;
    cx.wf.managed = Some(ManagedRun {
        generation,
        workflow_id: None,
        retries: vec![0; steps.len()],
        steps,
        status: None,
    });
    let spec = &cx.wf.spec;
    let name = managed_flow_name(&cx.wf.id, generation);
    let flow = FlowDefinition {
        client_token: format!("{}:managed:{generation}", cx.wf.id),
        // AppFlow's description pattern allows no ':' or brackets.
        description: format!(
            "flowpilot workflow {} managed import {generation} of {} batches",
            cx.wf.id,
            windows.len()
        ),
        name,
        // The steps run on demand (Customer Profiles starts them); this trigger is the
        // continuous integration's, which starts where the last batch ends.
        trigger: Trigger::Scheduled {
            expression: spec.continuous.schedule.clone(),
            first_execution_from: super::live::link_from(cx),
            deactivation_threshold: spec
                .continuous
                .degraded_threshold
                .saturating_mul(2)
                .min(100),
        },
        connector: spec.connector,
        connector_profile: spec.connector_profile.clone(),
        source: spec.source.clone(),
        timestamp_field: spec.timestamp_field.clone(),
        fields: spec.fields.clone(),
        // The batches are the windows: Customer Profiles filters each step by its batch.
        filter: None,
        domain: spec.domain.clone(),
        object_type: spec.object_type.clone(),
        kms_arn: spec.kms_arn.clone(),
        tags: managed_tags(&spec.tags),
    };
    let effect = EffectKind::CreateIntegrationWorkflow {
        domain: spec.domain.clone(),
        object_type: spec.object_type.clone(),
        generation,
        flow,
        batches: windows,
    };
    cx.effect(
        EffectKey::Managed {
            generation,
            step: ManagedStep::Create,
        },
        effect,
    );
}

fn current(cx: &Ctx, generation: u32) -> bool {
    is_managed(cx)
        && cx
            .wf
            .managed
            .as_ref()
            .is_some_and(|m| m.generation == generation)
}

/// CreateIntegrationWorkflow answered: remember the workflow id (step End reports and the
/// reconcile tick then ask about it). Answered after a cancel: delete what it created.
pub(super) fn created(cx: &mut Ctx, generation: u32, workflow_id: String) {
    if !current(cx, generation) {
        return;
    }
    if let Some(m) = cx.wf.managed.as_mut() {
        m.workflow_id.get_or_insert(workflow_id);
    }
    if cx.wf.status == WorkflowStatus::Cancelled {
        cancel(cx);
    }
}

/// CreateIntegrationWorkflow failed for good (role missing or not assumable, validation): the
/// submitted batches fail, and so does the workflow, with the redrive command.
pub(super) fn create_failed(cx: &mut Ctx, generation: u32, error: &PermanentError) {
    if !current(cx, generation) || cx.wf.status != WorkflowStatus::Backfilling {
        return;
    }
    let message = format!(
        "CreateIntegrationWorkflow: {}: {} (check the managed execution role \
         FLOWPILOT_MANAGED_ROLE_ARN and its trust policy, then `{}`)",
        error.code,
        error.message,
        cx.redrive_command()
    );
    let err = ErrorInfo::judged(message, Verdict::Permanent);
    end_running(cx, &err);
    fail_workflow(cx, err);
}

/// Asks Customer Profiles about the current managed workflow, unless an answer is pending.
pub(super) fn watch(cx: &mut Ctx) {
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
pub(super) fn step_ended(cx: &mut Ctx, generation: u32, step: u32) {
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
pub(super) fn reconcile(cx: &mut Ctx) {
    match cx.wf.status {
        WorkflowStatus::Backfilling => watch(cx),
        WorkflowStatus::Live | WorkflowStatus::Degraded => find(cx),
        _ => {}
    }
}

/// What GetWorkflow and GetWorkflowSteps said (see the module's table).
pub(super) fn seen(cx: &mut Ctx, generation: u32, view: ManagedView) {
    if !current(cx, generation) || cx.wf.status != WorkflowStatus::Backfilling {
        return;
    }
    let Some(m) = cx.wf.managed.clone() else {
        return;
    };
    let base = managed_flow_name(&cx.wf.id, generation);
    let ended = matches!(view.status.as_str(), "COMPLETE" | "FAILED" | "CANCELLED");
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
    let Some(seen) = m.retries.get_mut(step) else {
        return;
    };
    if *seen > 0 {
        return;
    }
    *seen = 1;
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
fn end_running(cx: &mut Ctx, err: &ErrorInfo) {
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

/// Asks Customer Profiles which integration the completed workflow created, until it is
/// known (then watched like flowpilot's own live flow: `decide::live`).
fn find(cx: &mut Ctx) {
    if !matches!(
        cx.wf.status,
        WorkflowStatus::Live | WorkflowStatus::Degraded
    ) || cx.wf.live.is_some()
    {
        return;
    }
    let Some(m) = &cx.wf.managed else {
        return;
    };
    let Some(workflow_id) = m.workflow_id.clone() else {
        return;
    };
    let generation = m.generation;
    let asking = cx.has_pending(|k| {
        matches!(
            k,
            EffectKey::Managed {
                step: ManagedStep::Find { .. },
                ..
            }
        )
    });
    if asking {
        return;
    }
    cx.effect(
        EffectKey::Managed {
            generation,
            step: ManagedStep::Find {
                at_ms: cx.now.timestamp_millis(),
            },
        },
        EffectKind::FindManagedIntegration {
            domain: cx.wf.spec.domain.clone(),
            workflow_id,
            generation,
        },
    );
}

/// ListIntegrations answered. The integration's URI is its flow's ARN, whose last segment
/// names the flow; from here on the integration is generation 1 of the continuous
/// integration, and a rebuild replaces it with flowpilot's own flow (generation 2).
pub(super) fn found(cx: &mut Ctx, generation: u32, uri: Option<String>) {
    if !current(cx, generation) || cx.wf.live.is_some() {
        return;
    }
    let Some(uri) = uri else {
        return; // not there yet: the reconcile tick asks again
    };
    let flow_name = uri
        .rsplit_once('/')
        .map_or_else(|| uri.clone(), |(_, n)| n.to_owned());
    let from = super::live::link_from(cx);
    cx.wf.live = Some(LiveIntegration {
        flow_name,
        generation: 1,
        first_execution_from: from,
        uri: Some(uri),
        consecutive_failures: 0,
        last_good_pull_end: None,
        runs_succeeded: 0,
        runs_failed: 0,
        records: 0,
        last_error: None,
        recent_execution_ids: Vec::new(),
        retiring: None,
        rebuild_note: None,
        records_failed: 0,
        not_sent: Vec::new(),
    });
}

/// Redrive of a failed managed workflow: the batches that did not complete get a fresh
/// submission (a new generation); succeeded ones never run again.
pub(super) fn redrive(cx: &mut Ctx) {
    for b in &mut cx.wf.batches {
        if !b.status.is_done() {
            b.status = BatchStatus::Pending;
            b.budget_base = b.attempt;
        }
    }
    submit(cx);
}

/// Cancel: the managed workflow is deleted (its step flows are Customer Profiles').
pub(super) fn cancel(cx: &mut Ctx) {
    let Some(m) = &cx.wf.managed else {
        return;
    };
    let Some(workflow_id) = m.workflow_id.clone() else {
        return;
    };
    let generation = m.generation;
    cx.effect(
        EffectKey::Managed {
            generation,
            step: ManagedStep::Delete,
        },
        EffectKind::DeleteManaged {
            domain: cx.wf.spec.domain.clone(),
            workflow_id,
        },
    );
}

#[cfg(test)]
mod tests;
