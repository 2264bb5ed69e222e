//! The bulk phase: starting batches within the concurrency limit, their outcomes, retries with
//! backoff, failure and redrive.
//!
//! "In flight" means `Running` or `RetryWait`: a batch waiting for its retry keeps its slot, so
//! at most `concurrency` batches ever compete for the source's API limits.

use std::collections::BTreeMap;

use chrono::{DateTime, TimeDelta, Utc};

use super::Ctx;
use super::health::Draft;
use super::{pause, records};
use crate::advice::{self, Advice};
use crate::backoff::retry_delay;
use crate::classify::{Verdict, classify};
use crate::effect::{AttemptStep, EffectKey, EffectKind, FlowDefinition, Trigger};
use crate::health::HealthKind;
use crate::ids::{FlowRole, MANAGED_TAG_KEY, MANAGED_TAG_VALUE, batch_token, flow_name};
use crate::input::RunReport;
use crate::model::{BatchStatus, ErrorInfo, Workflow, WorkflowStatus};
use crate::plan::filter_for;

pub(super) fn start(cx: &mut Ctx) {
    if cx.wf.status != WorkflowStatus::Pending {
        return;
    }
    cx.publish(Draft::new(HealthKind::WorkflowStarted, ""));
    if cx.wf.bulk && !cx.wf.batches.is_empty() && super::managed::is_managed(cx) {
        super::managed::submit(cx);
    } else if cx.wf.bulk && !cx.wf.batches.is_empty() {
        cx.wf.status = WorkflowStatus::Backfilling;
        fill_slots(cx);
    } else {
        super::live::begin_link(cx);
    }
}

pub(super) fn in_flight(wf: &Workflow) -> usize {
    wf.batches
        .iter()
        .filter(|b| matches!(b.status, BatchStatus::Running | BatchStatus::RetryWait))
        .count()
}

/// Starts pending batches (index order) into free slots; links once every batch succeeded.
pub(super) fn fill_slots(cx: &mut Ctx) {
    if cx.wf.status != WorkflowStatus::Backfilling {
        return;
    }
    let limit = cx.wf.spec.concurrency.max(1) as usize;
    // A batch waiting for the SaaS API allowance holds every start (`pause`).
    let holding = pause::holding(cx);
    while !holding && in_flight(&cx.wf) < limit {
        let Some(idx) = earliest(&cx.wf, |b| b.status == BatchStatus::Pending) else {
            break;
        };
        start_batch(cx, idx);
    }
    if cx.wf.batches.iter().all(|b| b.status.is_done()) {
        super::live::begin_link(cx);
    }
}

/// The position of the batch matching `which` whose window starts first. Planned batches are
/// in window order already; the halves of a split batch are appended, and must still run
/// before the windows after them (`split`).
fn earliest(wf: &Workflow, which: impl Fn(&crate::model::Batch) -> bool) -> Option<usize> {
    wf.batches
        .iter()
        .enumerate()
        .filter(|(_, b)| which(b))
        .min_by_key(|(i, b)| (b.window.start, *i))
        .map(|(i, _)| i)
}

/// One more attempt: start the flow with this attempt's client token — creating it first
/// unless it is ready — then get the next pending batch's flow ready, so that when this run
/// ends the next one needs only StartFlow.
pub(super) fn start_batch(cx: &mut Ctx, idx: usize) {
    let now = cx.now;
    let Some(b) = cx.wf.batches.get_mut(idx) else {
        return;
    };
    b.attempt = b.attempt.saturating_add(1);
    b.status = BatchStatus::Running;
    b.paused = false;
    b.execution_id = None;
    b.started_at = Some(now);
    b.finished_at = None;
    b.retry_at = None;
    let (i, attempt) = (b.index, b.attempt);
    create_flow(cx, idx, attempt);
    cx.effect(
        EffectKey::attempt(i, attempt, AttemptStep::Start),
        EffectKind::StartFlow {
            flow_name: flow_name(&cx.wf.id, FlowRole::Batch(i)),
            client_token: batch_token(&cx.wf.id, i, attempt),
            role: FlowRole::Batch(i),
            attempt,
        },
    );
    // At most `concurrency` flows ready ahead: as many as could start at once.
    let limit = cx.wf.spec.concurrency.max(1) as usize;
    let ahead = cx
        .wf
        .batches
        .iter()
        .filter(|b| b.status == BatchStatus::Pending && b.flow_ready)
        .count();
    let next = earliest(&cx.wf, |b| {
        b.status == BatchStatus::Pending && !b.flow_ready
    });
    if let (Some(next), true) = (next, ahead < limit) {
        let attempt = cx.wf.batches[next].attempt.saturating_add(1);
        create_flow(cx, next, attempt);
    }
}

/// Queues CreateFlow for batch `idx` under `attempt`'s key and token, unless its flow is
/// ready already (a conflict with a flow of the same name means an earlier attempt made it).
fn create_flow(cx: &mut Ctx, idx: usize, attempt: u32) {
    let Some(b) = cx.wf.batches.get_mut(idx) else {
        return;
    };
    if b.flow_ready {
        return;
    }
    b.flow_ready = true;
    let i = b.index;
    if let Some(flow) = batch_flow(&cx.wf, idx, attempt) {
        cx.effect(
            EffectKey::attempt(i, attempt, AttemptStep::Create),
            EffectKind::CreateFlow { flow },
        );
    }
}

fn batch_flow(wf: &Workflow, idx: usize, attempt: u32) -> Option<FlowDefinition> {
    let b = wf.batches.get(idx)?;
    let spec = &wf.spec;
    Some(FlowDefinition {
        name: flow_name(&wf.id, FlowRole::Batch(b.index)),
        client_token: format!("{}:create", batch_token(&wf.id, b.index, attempt)),
        // AppFlow's description pattern allows no ':' or brackets: epoch ms, not RFC 3339.
        // Batches are numbered from 0 everywhere, as in the flow name (`-b0002` is batch 2).
        description: format!(
            "flowpilot workflow {} batch {} of batches 0 to {}, window {} to {} epoch ms",
            wf.id,
            b.index,
            wf.batches.len().saturating_sub(1),
            b.window.start.timestamp_millis(),
            b.window.end.timestamp_millis()
        ),
        trigger: Trigger::OnDemand,
        connector: spec.connector,
        connector_profile: spec.connector_profile.clone(),
        source: spec.source.clone(),
        timestamp_field: spec.timestamp_field.clone(),
        fields: spec.fields.clone(),
        filter: filter_for(spec, &b.window),
        domain: spec.domain.clone(),
        object_type: spec.object_type.clone(),
        kms_arn: spec.kms_arn.clone(),
        tags: managed_tags(&spec.tags),
    })
}

pub(super) fn managed_tags(user: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    let mut tags = user.clone();
    tags.insert(MANAGED_TAG_KEY.to_owned(), MANAGED_TAG_VALUE.to_owned());
    tags
}

/// An end report for batch `index` (from the event or a reconciled execution record). Counts
/// only for the running attempt (docs/architecture.md, "Names and idempotency").
pub(super) fn run_ended(cx: &mut Ctx, index: u32, report: &RunReport) {
    let Some(idx) = cx.batch_index(index) else {
        return;
    };
    let b = &cx.wf.batches[idx];
    if b.status != BatchStatus::Running {
        return;
    }
    if let Some(id) = &report.execution_id {
        let current = b.execution_id.as_ref().is_none_or(|cur| cur == id);
        if !current || b.past_execution_ids.contains(id) {
            return;
        }
    }
    if report.succeeded {
        // Records the run read but could not write decide whether it counts (`records`).
        let not_sent = records::of_batch_run(cx, idx, report);
        match not_sent {
            Some(ns) if !records::within_budget(cx, &ns) => {
                let err = records::beyond_budget_error(cx, index, &ns);
                let advice = advice::records_beyond_budget(&cx.wf.id, &cx.wf.spec, index, &ns);
                // `records` stays the accepted attempt's count (progress counts those); what
                // this attempt read is on `not_sent`.
                cx.wf.batches[idx].not_sent = Some(ns);
                failed_advised(cx, idx, err, Some(advice));
                records::report_or_ask(cx, idx);
            }
            ns => {
                cx.wf.batches[idx].not_sent = ns;
                succeeded(cx, idx, report.records_processed.unwrap_or(0));
            }
        }
    } else {
        let message = report
            .error
            .clone()
            .unwrap_or_else(|| "run failed without a message".to_owned());
        let err = ErrorInfo::judged(message.clone(), classify(&message));
        // Too big or too long for one run: run the window's halves instead (`split`).
        if !super::split::try_split(cx, idx, &err) {
            failed(cx, idx, err);
        }
    }
}

fn succeeded(cx: &mut Ctx, idx: usize, records: u64) {
    let now = cx.now;
    let b = &mut cx.wf.batches[idx];
    b.status = BatchStatus::Succeeded;
    b.records = records;
    b.finished_at = Some(now);
    b.retry_at = None;
    b.flow_ready = false;
    let (i, attempt) = (b.index, b.attempt);
    let name = flow_name(&cx.wf.id, FlowRole::Batch(i));
    // Sizes the windows not started yet by the density observed so far, before choosing the
    // next one (`resize`).
    super::resize::resize(cx);
    // The next batch's StartFlow first: it is what the source is waiting for; deleting the
    // finished flow and the health event can come after it. Asking AppFlow why records were
    // not sent must come before the delete, which makes the run's record unreachable.
    fill_slots(cx);
    records::report_or_ask(cx, idx);
    cx.effect(
        EffectKey::BatchFlowDelete { batch: i },
        EffectKind::DeleteFlow {
            flow_name: name.clone(),
        },
    );
    let mut d = Draft::new(HealthKind::BatchSucceeded, format!("/b{i}"));
    d.batch = Some(idx);
    d.attempt = Some(attempt);
    d.flow_name = Some(name);
    cx.publish(d);
}

/// The current attempt of batch `idx` failed: by the error's verdict, pause for the source's
/// API allowance, retry with backoff within the budget (while the workflow is backfilling),
/// or fail the batch and the workflow (permanent, reconnect, out of retries).
pub(super) fn failed(cx: &mut Ctx, idx: usize, err: ErrorInfo) {
    failed_advised(cx, idx, err, None);
}

/// [`failed`], with the advice the failure events carry when the batch fails (default: the
/// one for the error's verdict).
pub(super) fn failed_advised(cx: &mut Ctx, idx: usize, err: ErrorInfo, advice: Option<Advice>) {
    let now = cx.now;
    let max_retries = cx.wf.spec.retry.max_retries;
    let backfilling = cx.wf.status == WorkflowStatus::Backfilling;
    let verdict = err.verdict();
    let b = &mut cx.wf.batches[idx];
    b.last_error = Some(err.clone());
    b.finished_at = Some(now);
    if let Some(id) = b.execution_id.take()
        && !b.past_execution_ids.contains(&id)
    {
        b.past_execution_ids.push(id);
    }
    if verdict == Verdict::SourceBudget && backfilling {
        pause::pause(cx, idx, err);
        return;
    }
    let b = &cx.wf.batches[idx];
    let (i, attempt) = (b.index, b.attempt);
    let starts_this_round = attempt.saturating_sub(b.budget_base);
    let name = flow_name(&cx.wf.id, FlowRole::Batch(i));
    let mut d = Draft::new(HealthKind::BatchFailed, format!("/b{i}/a{attempt}"));
    d.batch = Some(idx);
    d.attempt = Some(attempt);
    d.flow_name = Some(name);
    d.error = Some(err.clone());
    // Reconnect needs a person: retrying an expired connection only burns the budget.
    if verdict.retry_with_backoff()
        && backfilling
        && starts_this_round < max_retries.saturating_add(1)
    {
        let delay = retry_delay(&cx.wf.spec.retry, &cx.wf.id, i, attempt);
        // The delay is at most a day, so this saturates only within a day of chrono's last
        // instant: "never" is the only due time left there.
        let due = TimeDelta::from_std(delay)
            .ok()
            .and_then(|d| now.checked_add_signed(d))
            .unwrap_or(DateTime::<Utc>::MAX_UTC);
        let b = &mut cx.wf.batches[idx];
        b.status = BatchStatus::RetryWait;
        b.retry_at = Some(due);
        cx.effect(
            EffectKey::attempt(i, attempt, AttemptStep::Retry),
            EffectKind::ScheduleRetry {
                batch: i,
                attempt,
                due_at: due,
            },
        );
        d.kind = HealthKind::BatchRetryScheduled;
        d.retry_at = Some(due);
        cx.publish(d);
    } else {
        cx.wf.batches[idx].status = BatchStatus::Failed;
        let advice = advice.unwrap_or_else(|| advice::after_failure(&cx.wf.id, &cx.wf.spec, &err));
        d.advise(advice.clone());
        cx.publish(d);
        fail_workflow_advised(cx, err, advice);
    }
}

/// Marks the workflow failed (once per round); running batches may still finish.
pub(super) fn fail_workflow(cx: &mut Ctx, err: ErrorInfo) {
    let advice = advice::after_failure(&cx.wf.id, &cx.wf.spec, &err);
    fail_workflow_advised(cx, err, advice);
}

fn fail_workflow_advised(cx: &mut Ctx, err: ErrorInfo, advice: Advice) {
    if cx.wf.status == WorkflowStatus::Failed {
        return;
    }
    cx.wf.status = WorkflowStatus::Failed;
    cx.wf.last_error = Some(err.clone());
    let mut d = Draft::new(HealthKind::WorkflowFailed, format!("/r{}", cx.wf.redrives));
    d.error = Some(err);
    d.advise(advice);
    cx.publish(d);
}

pub(super) fn retry_due(cx: &mut Ctx, index: u32, attempt: u32) {
    if cx.wf.status != WorkflowStatus::Backfilling {
        return;
    }
    let Some(idx) = cx.batch_index(index) else {
        return;
    };
    let b = &cx.wf.batches[idx];
    // Early deliveries are ignored: the shell re-delays them, and the reconciler restarts a
    // retry whose message was lost.
    let due = b.retry_at.is_none_or(|at| at <= cx.now);
    if b.status == BatchStatus::RetryWait && b.attempt == attempt && due {
        start_batch(cx, idx);
        // A pause ending frees the starts it held back.
        fill_slots(cx);
    }
}

/// Resumes a failed workflow: failed and waiting batches get a fresh retry budget (their
/// attempt counter keeps counting so client tokens stay unique); succeeded batches never re-run.
/// A workflow that failed while linking retries the link.
pub(super) fn redrive(cx: &mut Ctx) {
    if cx.wf.status != WorkflowStatus::Failed {
        return;
    }
    cx.wf.redrives = cx.wf.redrives.saturating_add(1);
    cx.wf.last_error = None;
    let missing = cx.wf.batches.iter().any(|b| !b.status.is_done());
    if cx.wf.bulk && missing && super::managed::is_managed(cx) {
        super::managed::redrive(cx);
    } else if cx.wf.bulk && missing {
        for b in &mut cx.wf.batches {
            if matches!(b.status, BatchStatus::Failed | BatchStatus::RetryWait) {
                b.status = BatchStatus::Pending;
                b.budget_base = b.attempt;
                b.retry_at = None;
                b.paused = false;
            }
        }
        cx.wf.status = WorkflowStatus::Backfilling;
        fill_slots(cx);
    } else {
        super::live::begin_link(cx);
    }
}
