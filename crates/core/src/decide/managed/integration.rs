//! The continuous integration a completed managed workflow created: found by its
//! `WorkflowId`, then watched and rebuilt by `decide::live` like flowpilot's own.

use super::super::Ctx;
use super::current;
use crate::effect::{EffectKey, EffectKind, ManagedStep};
use crate::model::{LiveIntegration, WorkflowStatus};

/// Asks Customer Profiles which integration the completed workflow created, until it is
/// known (then watched like flowpilot's own live flow: `decide::live`).
pub(super) fn find(cx: &mut Ctx) {
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
pub(in crate::decide) fn found(cx: &mut Ctx, generation: u32, uri: Option<String>) {
    if !current(cx, generation) || cx.wf.live.is_some() {
        return;
    }
    let Some(uri) = uri else {
        return; // not there yet: the reconcile tick asks again
    };
    let flow_name = uri
        .rsplit_once('/')
        .map_or_else(|| uri.clone(), |(_, n)| n.to_owned());
    let from = super::super::live::link_from(cx);
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
