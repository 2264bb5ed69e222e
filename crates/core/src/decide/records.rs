//! Record-level failures (issue 10): a run can end `Execution Successful` and still not have
//! written some of its records to Customer Profiles (End report `num-of-record-failures`,
//! execution record `errorInfo.putFailuresCount` / `executionMessage`). They are never silent:
//! they are recorded on the batch or the live integration, and `Records Not Sent` carries the
//! counts and AppFlow's message.
//!
//! The policy is the workflow's `max_record_failures` (default 0):
//! - **within it** the batch succeeds, marked with what was not sent;
//! - **beyond it** the batch fails and the workflow fails with a redrive command. flowpilot
//!   does not re-run the batch by itself: AppFlow says how many records failed, never which,
//!   so the only way to send them is to run the whole window again, which writes the records
//!   already written a second time (duplicate writes), and record failures usually come from
//!   the data or the object type mapping, so an unchanged re-run would most likely fail the
//!   same records again. The operator fixes the cause, then redrives, and the events say what
//!   the redrive rewrites.
//!
//! Live runs cannot be re-run (the incremental flow has moved past their window): their record
//! failures are recorded and reported, whatever the budget.
//!
//! AppFlow puts the message in the execution record only, so when a report has a count but no
//! message, a DescribeRun (`b{i}/a{n}/details`, `live/g{g}/details/{run}`) asks for it before
//! the event goes out; the batch's fate does not wait for it. A batch's DescribeRun is queued
//! before its flow's DeleteFlow, which would make the record unreachable.

use super::Ctx;
use super::health::Draft;
use crate::advice;
use crate::classify::Verdict;
use crate::effect::{AttemptStep, EffectKey, EffectKind, LiveStep};
use crate::health::HealthKind;
use crate::ids::{FlowRole, flow_name};
use crate::input::RunReport;
use crate::model::{BatchStatus, ErrorInfo, NotSent};

/// Live runs with record failures remembered for status and diagnosis (the count is a total).
const LIVE_NOT_SENT: usize = 8;

/// The failures a successful run of batch `idx`'s current attempt reported, if any.
pub(super) fn of_batch_run(cx: &Ctx, idx: usize, report: &RunReport) -> Option<NotSent> {
    let failed = report.record_failures.filter(|n| *n > 0)?;
    let b = cx.wf.batches.get(idx)?;
    Some(NotSent {
        execution_id: report
            .execution_id
            .clone()
            .or_else(|| b.execution_id.clone()),
        attempt: b.attempt,
        run: 0,
        flow_name: None,
        records_failed: failed,
        records_processed: report.records_processed.unwrap_or(0),
        message: report.record_failure_message.clone(),
        reported: false,
        at: cx.now,
    })
}

/// Whether `ns` is within the workflow's `max_record_failures`.
pub(super) fn within_budget(cx: &Ctx, ns: &NotSent) -> bool {
    ns.records_failed <= u64::from(cx.wf.spec.max_record_failures)
}

/// Why a batch failed beyond its budget, with AppFlow's message once known.
pub(super) fn beyond_budget_error(cx: &Ctx, index: u32, ns: &NotSent) -> ErrorInfo {
    let appflow = ns
        .message
        .as_deref()
        .map_or_else(String::new, |m| format!(": {m}"));
    ErrorInfo::judged(
        format!(
            "batch {index}: {} of {} records were not written to Customer Profiles, more than \
             --max-record-failures {}{appflow}",
            ns.records_failed, ns.records_processed, cx.wf.spec.max_record_failures
        ),
        Verdict::Permanent,
    )
}

/// Batch `idx` has settled (succeeded within budget, or failed beyond it) with record
/// failures: report them now if AppFlow's message is known, else ask for it.
pub(super) fn report_or_ask(cx: &mut Ctx, idx: usize) {
    let Some(b) = cx.wf.batches.get(idx) else {
        return;
    };
    let Some(ns) = b.not_sent.as_ref().filter(|n| !n.reported) else {
        return;
    };
    if ns.message.is_some() {
        report_batch(cx, idx);
        return;
    }
    let (i, attempt) = (b.index, ns.attempt);
    let execution_id = ns.execution_id.clone();
    cx.effect(
        EffectKey::attempt(i, attempt, AttemptStep::Details),
        EffectKind::DescribeRun {
            flow_name: flow_name(&cx.wf.id, FlowRole::Batch(i)),
            role: FlowRole::Batch(i),
            attempt,
            execution_id,
        },
    );
}

/// DescribeRun answered for batch `index`'s attempt (`run` is `None` when the record was not
/// found or the call failed for good): report with AppFlow's message, or without one.
pub(super) fn batch_details(cx: &mut Ctx, index: u32, attempt: u32, run: Option<&RunReport>) {
    let Some(idx) = cx.batch_index(index) else {
        return;
    };
    let old_error = (cx.wf.batches[idx].status == BatchStatus::Failed)
        .then(|| cx.wf.batches[idx].last_error.clone())
        .flatten();
    let Some(ns) = cx.wf.batches[idx]
        .not_sent
        .as_mut()
        .filter(|n| n.attempt == attempt && !n.reported)
    else {
        return;
    };
    if let Some(m) = run.and_then(|r| r.record_failure_message.clone()) {
        ns.message = Some(m);
    }
    // A failed batch's error now carries AppFlow's words too (status and diagnose show it).
    let ns = ns.clone();
    if let Some(old) = old_error {
        let new = beyond_budget_error(cx, index, &ns);
        if cx.wf.last_error.as_ref() == Some(&old) {
            cx.wf.last_error = Some(new.clone());
        }
        cx.wf.batches[idx].last_error = Some(new);
    }
    report_batch(cx, idx);
}

/// `Records Not Sent` for batch `idx` (once per attempt: its event id names it).
fn report_batch(cx: &mut Ctx, idx: usize) {
    let id = cx.wf.id.clone();
    let b = &mut cx.wf.batches[idx];
    let Some(ns) = b.not_sent.as_mut() else {
        return;
    };
    ns.reported = true;
    let ns = ns.clone();
    let (i, failed) = (b.index, b.status == BatchStatus::Failed);
    let advice = if failed {
        advice::records_beyond_budget(&id, &cx.wf.spec, i, &ns)
    } else {
        advice::records_accepted(&cx.wf.spec, Some(i), &ns)
    };
    let mut d = Draft::new(HealthKind::RecordsNotSent, format!("/b{i}/a{}", ns.attempt));
    d.batch = Some(idx);
    d.attempt = Some(ns.attempt);
    d.flow_name = Some(flow_name(&id, FlowRole::Batch(i)));
    d.error = Some(ErrorInfo::judged(
        message_or_default(&ns),
        Verdict::Permanent,
    ));
    d.not_sent = Some(ns);
    d.advise(advice);
    cx.publish(d);
}

/// A live run that was counted (not a duplicate; the current generation's flow or a rebuild's
/// retiring one) reported record failures: add them to the integration's total and report
/// them.
pub(super) fn live_run(cx: &mut Ctx, report: &RunReport) {
    let Some(failed) = report.record_failures.filter(|n| *n > 0) else {
        return;
    };
    let now = cx.now;
    let Some(live) = cx.wf.live.as_mut() else {
        return;
    };
    live.records_failed = live.records_failed.saturating_add(failed);
    let (g, run) = (live.generation, live.runs_succeeded);
    let ns = NotSent {
        execution_id: report.execution_id.clone(),
        attempt: g,
        run,
        flow_name: Some(report.flow_name.clone()),
        records_failed: failed,
        records_processed: report.records_processed.unwrap_or(0),
        message: report.record_failure_message.clone(),
        reported: false,
        at: now,
    };
    let ask = ns.message.is_none();
    let execution_id = ns.execution_id.clone();
    let flow = report.flow_name.clone();
    live.not_sent.push(ns);
    let excess = live.not_sent.len().saturating_sub(LIVE_NOT_SENT);
    live.not_sent.drain(..excess);
    if ask {
        cx.effect(
            EffectKey::live(g, LiveStep::Details { run }),
            EffectKind::DescribeRun {
                flow_name: flow,
                role: FlowRole::Live,
                attempt: g,
                execution_id,
            },
        );
    } else {
        report_live(cx, g, run);
    }
}

/// DescribeRun answered for the live run numbered `run` of generation `generation`.
pub(super) fn live_details(cx: &mut Ctx, generation: u32, run: u64, answer: Option<&RunReport>) {
    let Some(ns) = cx.wf.live.as_mut().and_then(|l| {
        l.not_sent
            .iter_mut()
            .find(|n| n.attempt == generation && n.run == run && !n.reported)
    }) else {
        return;
    };
    if let Some(m) = answer.and_then(|r| r.record_failure_message.clone()) {
        ns.message = Some(m);
    }
    report_live(cx, generation, run);
}

fn report_live(cx: &mut Ctx, generation: u32, run: u64) {
    let Some(live) = cx.wf.live.as_mut() else {
        return;
    };
    let Some(ns) = live
        .not_sent
        .iter_mut()
        .find(|n| n.attempt == generation && n.run == run)
    else {
        return;
    };
    ns.reported = true;
    let ns = ns.clone();
    let flow = ns
        .flow_name
        .clone()
        .unwrap_or_else(|| crate::ids::live_flow_name(&cx.wf.id, generation));
    let mut d = Draft::new(HealthKind::RecordsNotSent, format!("/g{generation}/s{run}"));
    d.flow_name = Some(flow);
    d.error = Some(ErrorInfo::judged(
        message_or_default(&ns),
        Verdict::Permanent,
    ));
    let advice = advice::records_accepted(&cx.wf.spec, None, &ns);
    d.not_sent = Some(ns);
    d.advise(advice);
    cx.publish(d);
}

/// AppFlow's message, or what to say when it gave none.
fn message_or_default(ns: &NotSent) -> String {
    ns.message.clone().unwrap_or_else(|| {
        format!(
            "{} records were not written to Customer Profiles; AppFlow gave no message",
            ns.records_failed
        )
    })
}
