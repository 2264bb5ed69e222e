//! The continuous integration: linking it after the backfill, watching its runs
//! (live ⇄ degraded), rebuilding it.
//!
//! Every link attempt is a new *generation* (1 for the first link, +1 per redrive or rebuild): its
//! PutIntegration, client token and effect keys carry the number, so a late answer for an older
//! generation is recognisably stale, and so does its flow's name (`ids::live_flow_name`:
//! `fp-{id}-live` for generation 1, `fp-{id}-live-g{N}` after), so a late End report or a
//! deactivation of an older generation's flow never counts for the current one. A rebuild of a
//! linked integration first retires the previous flow ([`super::retire`]): it creates the new
//! generation only once no run of the old flow can still write.

use chrono::{DateTime, Utc};

use super::Ctx;
use super::bulk::{fail_workflow, managed_tags};
use super::health::Draft;
use super::retire;
use crate::advice;
use crate::classify::{ErrorInput, Verdict};
use crate::effect::{EffectKey, EffectKind, FlowDefinition, LiveStep, PermanentError, Trigger};
use crate::health::HealthKind;
use crate::ids::{FlowRole, live_flow_name, live_token};
use crate::input::RunReport;
use crate::model::{ErrorInfo, LiveIntegration, WorkflowStatus};

/// Live execution ids remembered for de-duplication.
const RECENT_RUNS: usize = 32;

/// Where the continuous flow starts: the backfill's end (or `from` without a bulk phase), or,
/// once it has ingested something, the end of its last successful pull.
pub(super) fn link_from(cx: &Ctx) -> DateTime<Utc> {
    let base = if cx.wf.bulk {
        cx.wf.spec.to
    } else {
        cx.wf.spec.from
    };
    cx.wf
        .live
        .as_ref()
        .and_then(|l| l.last_good_pull_end)
        .unwrap_or(base)
}

/// Starts a new link generation. Status becomes Rebuilding once the integration has ever been
/// linked, else Linking. A previous generation that was linked (it has an integration, so its
/// scheduled flow was activated) may have a run in progress: it is retired first, and the new
/// generation's flow is created once that flow is quiet. Otherwise the new flow is created now.
pub(super) fn begin_link(cx: &mut Ctx) {
    let from = link_from(cx);
    let first_name = live_flow_name(&cx.wf.id, 1);
    let live = cx.wf.live.get_or_insert_with(|| LiveIntegration {
        flow_name: first_name,
        generation: 0,
        first_execution_from: from,
        uri: None,
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
    live.generation = live.generation.saturating_add(1);
    live.consecutive_failures = 0;
    live.rebuild_note = None;
    let retire_first = live.uri.is_some();
    cx.wf.status = if cx.wf.completed_at.is_some() {
        WorkflowStatus::Rebuilding
    } else {
        WorkflowStatus::Linking
    };
    if retire_first {
        retire::begin(cx);
    } else {
        create_generation(cx);
    }
}

/// Removes the previous integration and flow (if any) and creates and links the current
/// generation's flow, starting at the end of the last completed pull.
pub(super) fn create_generation(cx: &mut Ctx) {
    let from = link_from(cx);
    let domain = cx.wf.spec.domain.clone();
    let id = cx.wf.id.clone();
    let Some(live) = cx.wf.live.as_mut() else {
        return;
    };
    let g = live.generation;
    let name = live_flow_name(&id, g);
    let old_name = std::mem::replace(&mut live.flow_name, name.clone());
    let old_uri = live.uri.take();
    live.retiring = None;
    live.first_execution_from = from;
    if let Some(uri) = old_uri {
        cx.effect(
            EffectKey::live(g, LiveStep::DeleteIntegration),
            EffectKind::DeleteIntegration {
                domain: domain.clone(),
                uri,
            },
        );
    }
    if g > 1 {
        // The previous generation's flow (it may never have been created: gone is fine).
        cx.effect(
            EffectKey::live(g, LiveStep::DeleteFlow),
            EffectKind::DeleteFlow {
                flow_name: old_name,
            },
        );
    }
    // flowpilot creates the live flow itself (tagged like every flow it owns) and links it by
    // ARN, rather than letting PutIntegration create it from a FlowDefinition: that path makes
    // Customer Profiles call appflow:CreateFlow with the caller's permissions and no request
    // tags, which the worker role's tag-conditioned statements refuse (README, "IAM").
    let flow = live_flow(cx, &name, from, g);
    cx.effect(
        EffectKey::live(g, LiveStep::Create),
        EffectKind::CreateFlow { flow },
    );
    cx.effect(
        EffectKey::live(g, LiveStep::Put),
        EffectKind::PutIntegration {
            domain,
            object_type: cx.wf.spec.object_type.clone(),
            flow_name: name,
            generation: g,
        },
    );
}

fn live_flow(cx: &Ctx, name: &str, from: DateTime<Utc>, generation: u32) -> FlowDefinition {
    let spec = &cx.wf.spec;
    FlowDefinition {
        name: name.to_owned(),
        client_token: live_token(&cx.wf.id, generation),
        description: format!(
            "flowpilot workflow {} continuous integration, generation {generation}",
            cx.wf.id
        ),
        trigger: Trigger::Scheduled {
            expression: spec.continuous.schedule.clone(),
            first_execution_from: from,
            // AppFlow allows 1..=100. Twice the degraded threshold: a degraded integration
            // keeps running and may recover by itself; only a flow that kept failing well past
            // the alert is deactivated by AppFlow (which flowpilot reports as degraded too).
            deactivation_threshold: spec
                .continuous
                .degraded_threshold
                .saturating_mul(2)
                .clamp(1, 100),
        },
        connector: spec.connector,
        connector_profile: spec.connector_profile.clone(),
        source: spec.source.clone(),
        timestamp_field: spec.timestamp_field.clone(),
        fields: spec.fields.clone(),
        filter: None,
        domain: spec.domain.clone(),
        object_type: spec.object_type.clone(),
        kms_arn: spec.kms_arn.clone(),
        tags: managed_tags(&spec.tags),
    }
}

/// PutIntegration answered: the integration exists; activate its scheduled flow.
pub(super) fn linked(cx: &mut Ctx, generation: u32, uri: String) {
    let linking = matches!(
        cx.wf.status,
        WorkflowStatus::Linking | WorkflowStatus::Rebuilding
    );
    let Some(live) = cx.wf.live.as_mut() else {
        return;
    };
    if !linking || live.generation != generation {
        return;
    }
    live.uri = Some(uri);
    live.last_error = None;
    let note = live.rebuild_note.take();
    let name = live.flow_name.clone();
    cx.wf.status = WorkflowStatus::Live;
    cx.effect(
        EffectKey::live(generation, LiveStep::Start),
        EffectKind::StartFlow {
            flow_name: name.clone(),
            client_token: live_token(&cx.wf.id, generation),
            role: FlowRole::Live,
            attempt: generation,
        },
    );
    let mut d = if cx.wf.completed_at.is_none() {
        cx.wf.completed_at = Some(cx.now);
        Draft::new(HealthKind::WorkflowCompleted, "")
    } else {
        let mut d = Draft::new(HealthKind::IntegrationRebuilt, format!("/g{generation}"));
        // What the rebuild had to give up on (a cancelled run's records are pulled again).
        d.error = note.map(|message| ErrorInfo::judged(message, Verdict::Transient));
        d
    };
    d.flow_name = Some(name);
    cx.publish(d);
}

/// Creating the live flow or PutIntegration failed for good: the workflow fails, and a
/// redrive links again with a new generation.
pub(super) fn link_failed(cx: &mut Ctx, generation: u32, error: &PermanentError) {
    let linking = matches!(
        cx.wf.status,
        WorkflowStatus::Linking | WorkflowStatus::Rebuilding
    );
    let Some(live) = cx.wf.live.as_mut() else {
        return;
    };
    if !linking || live.generation != generation {
        return;
    }
    let message = format!(
        "linking the continuous integration (flow `{}`, domain `{}`, object type `{}`): {}: {}",
        live.flow_name, cx.wf.spec.domain, cx.wf.spec.object_type, error.code, error.message
    );
    let err = ErrorInfo::judged(message, effect_verdict(error));
    live.last_error = Some(err.clone());
    fail_workflow(cx, err);
}

/// Activating the live flow failed for good: the integration is linked but will not run.
pub(super) fn start_failed(cx: &mut Ctx, generation: u32, error: &PermanentError) {
    if cx
        .wf
        .live
        .as_ref()
        .is_none_or(|l| l.generation != generation)
    {
        return;
    }
    let message = format!(
        "StartFlow (activate) for the live flow: {}: {}",
        error.code, error.message
    );
    let verdict = effect_verdict(error);
    degrade(cx, ErrorInfo::judged(message, verdict));
}

/// An effect's permanent failure by the error table: the code decides (a
/// `ConnectorAuthenticationException` means reconnect); whatever the table would retry is
/// still permanent here, as the shell already judged it so.
pub(super) fn effect_verdict(error: &PermanentError) -> Verdict {
    match crate::classify::classify(ErrorInput::coded(&error.code, &error.message)) {
        v @ (Verdict::Reconnect | Verdict::SourceBudget) => v,
        Verdict::Transient | Verdict::Permanent => Verdict::Permanent,
    }
}

pub(super) fn run_ended(cx: &mut Ctx, report: &RunReport) {
    let Some(live) = cx.wf.live.as_ref() else {
        return;
    };
    if report.flow_name != live.flow_name {
        // An older generation's flow (its start is fixed, its runs count for nothing now), or
        // the next generation's before it is linked: not this generation's streak.
        return;
    }
    if live.retiring.is_some() {
        retire::run_ended(cx, report);
        return;
    }
    if !matches!(
        cx.wf.status,
        WorkflowStatus::Live | WorkflowStatus::Degraded
    ) {
        return; // before linking
    }
    let threshold = cx.wf.spec.continuous.degraded_threshold.max(1);
    let Some(live) = cx.wf.live.as_mut() else {
        return;
    };
    if !count_run(live, report) {
        return;
    }
    if report.succeeded {
        super::records::live_run(cx, report);
        let Some(live) = cx.wf.live.as_mut() else {
            return;
        };
        live.consecutive_failures = 0;
        live.last_error = None;
        let (g, s, name) = (live.generation, live.runs_succeeded, live.flow_name.clone());
        if cx.wf.status == WorkflowStatus::Degraded {
            cx.wf.status = WorkflowStatus::Live;
            let mut d = Draft::new(HealthKind::IntegrationRecovered, format!("/g{g}/s{s}"));
            d.flow_name = Some(name);
            cx.publish(d);
        }
    } else {
        let message = report
            .error
            .clone()
            .unwrap_or_else(|| "run failed without a message".to_owned());
        let verdict = crate::classify::classify(&message);
        let err = ErrorInfo::judged(message, verdict);
        live.consecutive_failures = live.consecutive_failures.saturating_add(1);
        live.last_error = Some(err.clone());
        if live.consecutive_failures >= threshold {
            degrade(cx, err);
        }
    }
}

/// Records a live run in the totals and the resume point (a successful run wrote its records,
/// whichever generation it belongs to); `false` for a duplicate report.
pub(super) fn count_run(live: &mut LiveIntegration, report: &RunReport) -> bool {
    if let Some(id) = &report.execution_id {
        if live.recent_execution_ids.contains(id) {
            return false;
        }
        live.recent_execution_ids.push(id.clone());
        let excess = live.recent_execution_ids.len().saturating_sub(RECENT_RUNS);
        live.recent_execution_ids.drain(..excess);
    }
    if report.succeeded {
        live.runs_succeeded = live.runs_succeeded.saturating_add(1);
        // Counts come from AppFlow's events: any u64 can arrive.
        live.records = live
            .records
            .saturating_add(report.records_processed.unwrap_or(0));
        if let Some(end) = report.pull_end {
            advance_resume_point(live, end);
        }
    } else {
        live.runs_failed = live.runs_failed.saturating_add(1);
    }
    true
}

/// Everything before `end` was written: a rebuild may resume there (never moves back).
pub(super) fn advance_resume_point(live: &mut LiveIntegration, end: DateTime<Utc>) {
    live.last_good_pull_end = Some(live.last_good_pull_end.map_or(end, |prev| prev.max(end)));
}

/// AppFlow deactivated a scheduled flow: the current generation's degrades; an older (or
/// retiring) generation's flow is being replaced anyway.
pub(super) fn deactivated(cx: &mut Ctx, role: FlowRole, flow_name: &str, reason: String) {
    let current = cx
        .wf
        .live
        .as_ref()
        .is_some_and(|l| l.flow_name == flow_name && l.retiring.is_none());
    if role == FlowRole::Live && current {
        let message = format!("AppFlow deactivated the scheduled flow: {reason}");
        // The reason may name an expired connection: the table still tells reconnect apart.
        let verdict = match crate::classify::classify(&message) {
            Verdict::Reconnect => Verdict::Reconnect,
            _ => Verdict::Permanent,
        };
        degrade(cx, ErrorInfo::judged(message, verdict));
    }
}

/// Live → Degraded with `Integration Degraded` (no-op unless Live); auto-rebuild if enabled.
fn degrade(cx: &mut Ctx, err: ErrorInfo) {
    if cx.wf.status != WorkflowStatus::Live {
        return;
    }
    let Some(live) = cx.wf.live.as_mut() else {
        return;
    };
    live.last_error = Some(err.clone());
    // At most one degradation per (generation, successes so far): recovering needs a success.
    let suffix = format!("/g{}/s{}", live.generation, live.runs_succeeded);
    let name = live.flow_name.clone();
    cx.wf.status = WorkflowStatus::Degraded;
    let mut d = Draft::new(HealthKind::IntegrationDegraded, suffix);
    d.flow_name = Some(name);
    d.advise(advice::degraded(&cx.wf.id, &cx.wf.spec, &err));
    d.error = Some(err);
    cx.publish(d);
    if cx.wf.spec.continuous.auto_rebuild {
        begin_link(cx);
    }
}

/// Operator (or automation) rebuild: from Live or Degraded, or from a workflow that failed
/// while linking. Resumes from the last successful pull, never from "now".
pub(super) fn rebuild(cx: &mut Ctx) {
    let allowed = match cx.wf.status {
        WorkflowStatus::Live | WorkflowStatus::Degraded => true,
        WorkflowStatus::Failed => {
            cx.wf.live.is_some() && cx.wf.batches.iter().all(|b| b.status.is_done())
        }
        _ => false,
    };
    if allowed {
        if cx.wf.status == WorkflowStatus::Failed {
            // A new round: a later failure gets a new event id.
            cx.wf.redrives = cx.wf.redrives.saturating_add(1);
            cx.wf.last_error = None;
        }
        begin_link(cx);
    }
}
