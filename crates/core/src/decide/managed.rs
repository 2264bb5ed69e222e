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
//! | step `FAILED`/`CANCELLED`, workflow `FAILED`/`CANCELLED` | batch failed, `Batch Failed` (redrive advice) |
//! | step `FAILED` while the workflow runs   | nothing yet: the workflow's own status decides |
//! | workflow `COMPLETE`                     | remaining batches succeeded, `Workflow Completed`, status `live` |
//! | workflow `FAILED` / `CANCELLED`         | `Workflow Failed` with the redrive command  |
//! | no step progress for the maximum run duration | `Workflow Stalled`, once per step      |
//! | `SPLIT`, `ACTIVE`, `IN_PROGRESS`, `NOT_STARTED`, unknown | still running: nothing   |

use super::Ctx;
use super::bulk::{fail_workflow, managed_tags};
use crate::classify::Verdict;
use crate::effect::{EffectKey, EffectKind, FlowDefinition, ManagedStep, PermanentError, Trigger};
use crate::ids::managed_flow_name;
use crate::model::{BatchStatus, ErrorInfo, ManagedRun, WorkflowStatus};
use crate::spec::Engine;

mod integration;
mod steps;

pub(super) use integration::found;
use steps::end_running;
pub(super) use steps::{reconcile, seen, step_ended};

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
        retried: Vec::new(),
        steps,
        status: None,
        stalled_step: None,
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
