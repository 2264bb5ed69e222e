//! The end of a managed workflow: the continuous integration it leaves behind, and what
//! DeleteWorkflow removes. Both act as the execution role, like the rest of the engine.

use std::sync::Arc;

use chrono::Utc;
use serde_json::{Value, json};

use super::engine::{Plan, SESSION_NAME, authorize, create, flow, owning_tags, role};
use super::{SERVICE_PRINCIPAL, Workflow, live_flow_name};
use crate::access::{self, APPFLOW_GRANT_OPERATIONS, PROFILES_GRANT_OPERATIONS, kms_grant};
use crate::appflow::activate;
use crate::iam::Check;
use crate::runs;
use crate::state::{Integration, Sim, State};
use crate::wire::epoch;

/// The standard, continuous integration: a scheduled flow pulling from the last batch's end,
/// registered with PutIntegration (carrying this workflow's id) and started.
pub(super) fn continuous_integration(sim: &Arc<Sim>, plan: &Plan) -> Result<(), String> {
    let name = live_flow_name(&plan.flow_name);
    let caller = role(sim, plan)?;
    let mut trigger = plan
        .definition
        .get("TriggerConfig")
        .cloned()
        .unwrap_or_else(|| json!({ "TriggerType": "OnDemand" }));
    let resume = plan.windows.iter().map(|w| w.1).max();
    if let (Some(s), Some(resume)) = (
        trigger
            .pointer_mut("/TriggerProperties/Scheduled")
            .and_then(Value::as_object_mut),
        resume,
    ) {
        s.insert("FirstExecutionFrom".into(), epoch(resume));
    }
    let m = flow(plan, &name, trigger);
    let arn = sim.flow_arn(&name);
    let integration_arn = sim.integration_arn(&plan.domain, &arn);
    let tags = owning_tags();
    let tagged = |c: Check| access::with_request_tags(c, &tags);
    authorize(
        sim,
        &caller,
        &[
            tagged(Check::new(
                "profile:PutIntegration",
                sim.domain_arn(&plan.domain),
            )),
            tagged(Check::new("profile:PutIntegration", &integration_arn)),
            tagged(Check::new("profile:TagResource", &integration_arn)),
            kms_grant(
                &plan.kms_arn,
                sim.kms_via("profile"),
                &PROFILES_GRANT_OPERATIONS,
            ),
            kms_grant(
                &plan.kms_arn,
                sim.kms_via("appflow"),
                &APPFLOW_GRANT_OPERATIONS,
            ),
        ],
    )?;
    create(sim, &caller, plan, &m, &name)?;
    authorize(
        sim,
        &caller,
        &[access::on_flow(
            sim,
            "appflow:StartFlow",
            &name,
            Some(&tags),
        )],
    )?;
    let mut guard = sim.state();
    let st: &mut State = &mut guard;
    let now = Utc::now();
    let d = st
        .domains
        .get_mut(&plan.domain)
        .ok_or_else(|| format!("Domain {} does not exist", plan.domain))?;
    d.integrations.insert(
        arn.clone(),
        Integration {
            uri: arn.clone(),
            domain: plan.domain.clone(),
            object_type_name: Some(plan.object_type.clone()),
            object_type_names: None,
            tags: Some(json!(tags)),
            role_arn: Some(plan.role_arn.clone()),
            workflow_id: Some(plan.id.clone()),
            created_at: now,
            updated_at: now,
        },
    );
    if let Some(f) = st.flows.get_mut(&name) {
        activate(sim, f);
    }
    if let Some(w) = st.workflows.get_mut(&plan.id) {
        w.live_flow = Some(name.clone());
    }
    tracing::info!(workflow_id = %plan.id, flow = %name, "continuous integration created");
    Ok(())
}

/// DeleteWorkflow: cancel the steps' runs and delete their flows, as the execution role (a
/// flow the role may not delete is left in place and logged). The continuous integration,
/// once created, is the product of the workflow and stays.
pub fn delete_step_flows(sim: &Sim, st: &mut State, w: &Workflow) {
    let caller = sim
        .iam
        .assume_as_service(SERVICE_PRINCIPAL, &w.role_arn, SESSION_NAME);
    for s in &w.steps {
        let Some(f) = st.flows.get(&s.flow_name) else {
            continue;
        };
        let check = access::on_flow(sim, "appflow:DeleteFlow", &s.flow_name, Some(&f.tags));
        if let Err(e) = caller
            .as_ref()
            .map_err(Clone::clone)
            .and_then(|c| authorize(sim, c, &[check]))
        {
            tracing::warn!(workflow_id = %w.id, flow = %s.flow_name, error = %e, "step flow not deleted");
            continue;
        }
        let uid = f.uid.clone();
        runs::cancel_runs(st, &uid, None);
        st.flows.remove(&s.flow_name);
        st.start_tokens.retain(|(u, _), _| *u != uid);
    }
}
