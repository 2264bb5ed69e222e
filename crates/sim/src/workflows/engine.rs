//! Runs one managed workflow in the background, *as its execution role*: every AWS call
//! Customer Profiles makes on the role's behalf is an IAM check of the role's policies (the
//! session is re-assumed, trust policy included, before each step), so a statement the role
//! lacks fails the workflow with an ErrorDescription naming the denied action.
//!
//! Order: the KMS grant via Customer Profiles; then per batch, one at a time: CreateFlow
//! (tagged, connector profile, KMS grant via AppFlow), DescribeFlow, StartFlow, wait,
//! DescribeFlowExecutionRecords — a transient failure is retried up to three times; finally
//! the continuous integration (scheduled flow + PutIntegration, both tagged), started.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use serde_json::{Map, Value, json};
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

use super::{OWNING_TAG_KEY, OWNING_TAG_VALUE, SERVICE_PRINCIPAL, WfStatus, Window, Workflow};
use crate::access::{self, PROFILES_GRANT_OPERATIONS, kms_grant};
use crate::appflow::create_flow_in;
use crate::iam::policy::CtxValue;
use crate::iam::{Caller, Check};
use crate::profiles::flow_request;
use crate::runs;
use crate::state::{ExecStatus, Sim};

/// The session name the simulator gives the execution role's sessions (AWS's is unknown).
pub const SESSION_NAME: &str = "customer-profiles-workflow";
/// One run plus three retries (Connect admin guide: "retries transient failures up to three
/// times").
const MAX_ATTEMPTS: u32 = 4;
/// How often the engine looks at its run; internal to the simulator.
const RUN_POLL: Duration = Duration::from_millis(20);
/// Run errors the simulator treats as permanent (not retried): the connector's credentials
/// were refused, the window exceeds the per-run record limit, something does not exist.
/// Every other run failure is transient. AWS does not document its classification.
const PERMANENT_MARKERS: [&str; 3] = [
    "INVALID_SESSION_ID",
    "maximum number of records",
    "does not exist",
];

/// What the engine needs of the workflow, copied out of the state once.
pub(super) struct Plan {
    pub(super) id: String,
    pub(super) domain: String,
    pub(super) object_type: String,
    pub(super) role_arn: String,
    pub(super) definition: Map<String, Value>,
    pub(super) flow_name: String,
    pub(super) kms_arn: String,
    pub(super) windows: Vec<Window>,
}

pub fn spawn(sim: &Arc<Sim>, id: String, cancel: CancellationToken) {
    let sim2 = Arc::clone(sim);
    let span = tracing::info_span!("workflow", workflow_id = %id);
    sim.tasks.spawn(
        async move {
            let outcome = tokio::select! {
                r = run(&sim2, &id) => r,
                _ = cancel.cancelled() => return,
            };
            let mut st = sim2.state();
            let Some(w) = st.workflows.get_mut(&id) else {
                return;
            };
            w.updated_at = Utc::now();
            match outcome {
                Ok(()) => {
                    w.status = WfStatus::Complete;
                    tracing::info!("integration workflow complete");
                }
                Err(e) => {
                    tracing::warn!(error = %e, "integration workflow failed");
                    w.status = WfStatus::Failed;
                    w.error = Some(e);
                }
            }
        }
        .instrument(span),
    );
}

pub(super) fn owning_tags() -> BTreeMap<String, String> {
    [(OWNING_TAG_KEY.to_owned(), OWNING_TAG_VALUE.to_owned())].into()
}

/// The role's session now (trust policy evaluated again).
pub(super) fn role(sim: &Sim, plan: &Plan) -> Result<Caller, String> {
    sim.iam
        .assume_as_service(SERVICE_PRINCIPAL, &plan.role_arn, SESSION_NAME)
        .map_err(|why| format!("AccessDenied: cannot assume the execution role: {why}"))
}

/// A denial reads "AccessDenied: User: ... is not authorized to perform: ACTION ..."; a KMS
/// grant's denial also names the service it was made through, the one thing that tells the
/// domain key's two grant statements apart.
pub(super) fn authorize(sim: &Sim, caller: &Caller, checks: &[Check]) -> Result<(), String> {
    sim.iam.authorize(caller, checks).map_err(|d| {
        let via = checks
            .iter()
            .find(|c| c.action == d.action && c.shown_resource() == d.resource)
            .and_then(|c| match c.context.get("kms:ViaService") {
                Some(CtxValue::Str(v)) => Some(format!(" (via {v})")),
                _ => None,
            })
            .unwrap_or_default();
        format!("AccessDenied{via}: {d}")
    })
}

fn list_grants(sim: &Sim, key: &str) -> Check {
    Check::new("kms:ListGrants", key).with("kms:ViaService", CtxValue::Str(sim.kms_via("appflow")))
}

fn with_workflow<R>(sim: &Sim, id: &str, f: impl FnOnce(&mut Workflow) -> R) -> Option<R> {
    let mut st = sim.state();
    let w = st.workflows.get_mut(id)?;
    w.updated_at = Utc::now();
    Some(f(w))
}

fn update_step(sim: &Sim, id: &str, n: usize, status: WfStatus, message: &str) {
    with_workflow(sim, id, |w| {
        if let Some(s) = w.steps.get_mut(n) {
            s.status = status;
            s.message = message.to_owned();
            s.updated_at = Utc::now();
        }
        // The workflow shows RETRY while one of its steps waits for a retry.
        w.status = if status == WfStatus::Retry {
            WfStatus::Retry
        } else {
            WfStatus::InProgress
        };
    });
}

async fn run(sim: &Arc<Sim>, id: &str) -> Result<(), String> {
    let plan = {
        let st = sim.state();
        let w = st
            .workflows
            .get(id)
            .ok_or_else(|| "the workflow was deleted".to_owned())?;
        Plan {
            id: w.id.clone(),
            domain: w.domain.clone(),
            object_type: w.object_type.clone(),
            role_arn: w.role_arn.clone(),
            definition: w.definition.clone(),
            flow_name: w.flow_name.clone(),
            kms_arn: w.kms_arn.clone(),
            windows: w.steps.iter().map(|s| (s.from, s.to)).collect(),
        }
    };
    with_workflow(sim, id, |w| w.status = WfStatus::InProgress);
    let caller = role(sim, &plan)?;
    // Customer Profiles' own grant on the domain key, for reading what the flows write.
    authorize(
        sim,
        &caller,
        &[kms_grant(
            &plan.kms_arn,
            sim.kms_via("profile"),
            &PROFILES_GRANT_OPERATIONS,
        )],
    )?;
    for n in 0..plan.windows.len() {
        if let Err(e) = run_step(sim, &plan, n).await {
            let message = format!("Step {n} failed: {e}");
            with_workflow(sim, id, |w| {
                if let Some(s) = w.steps.get_mut(n) {
                    s.status = WfStatus::Failed;
                    s.message = e.clone();
                    s.updated_at = Utc::now();
                }
            });
            return Err(message);
        }
    }
    super::live::continuous_integration(sim, &plan)
}

/// The flow definition with `name`, `trigger` and the owning tag, as AppFlow's CreateFlow
/// request Customer Profiles makes.
pub(super) fn flow(plan: &Plan, name: &str, trigger: Value) -> Map<String, Value> {
    let mut def = plan.definition.clone();
    def.insert("FlowName".into(), Value::from(name));
    def.insert("TriggerConfig".into(), trigger);
    let mut m = flow_request(&Value::Object(def), &plan.domain, Some(&plan.object_type));
    m.insert("tags".into(), json!(owning_tags()));
    m
}

/// Create (or, for a redriven workflow reusing a name, replace) a flow as the role.
pub(super) fn create(
    sim: &Arc<Sim>,
    caller: &Caller,
    plan: &Plan,
    m: &Map<String, Value>,
    name: &str,
) -> Result<(), String> {
    let tags = owning_tags();
    let mut checks = access::create_flow(sim, name, m, &tags);
    checks.push(list_grants(sim, &plan.kms_arn));
    authorize(sim, caller, &checks)?;
    let mut st = sim.state();
    if let Some(old) = st.flows.get(name) {
        let owned = old.tags.get(OWNING_TAG_KEY).map(String::as_str) == Some(OWNING_TAG_VALUE);
        if !owned || old.running > 0 {
            return Err(format!("Flow with name {name} already exists"));
        }
        authorize(
            sim,
            caller,
            &[access::on_flow(
                sim,
                "appflow:DeleteFlow",
                name,
                Some(&old.tags),
            )],
        )?;
        st.flows.remove(name);
    }
    create_flow_in(sim, &mut st, m)
        .map(|_| ())
        .map_err(|e| format!("CreateFlow {name}: {}", e.message))
}

async fn run_step(sim: &Arc<Sim>, plan: &Plan, n: usize) -> Result<(), String> {
    let name = super::step_flow_name(&plan.flow_name, n);
    let (from, to) = plan.windows[n];
    let caller = role(sim, plan)?;
    let m = flow(plan, &name, json!({ "TriggerType": "OnDemand" }));
    create(sim, &caller, plan, &m, &name)?;
    with_workflow(sim, &plan.id, |w| {
        if let Some(s) = w.steps.get_mut(n) {
            s.created_at = Utc::now();
        }
    });
    update_step(sim, &plan.id, n, WfStatus::InProgress, "Flow created");
    let tags = owning_tags();
    let on = |action: &str| access::on_flow(sim, action, &name, Some(&tags));
    authorize(sim, &caller, &[on("appflow:DescribeFlow")])?;
    for attempt in 1..=MAX_ATTEMPTS {
        let caller = role(sim, plan)?;
        authorize(sim, &caller, &[on("appflow:StartFlow")])?;
        let execution = {
            let mut st = sim.state();
            runs::start_run(sim, &mut st, &name, Some((from, to)))
                .ok_or_else(|| format!("Flow {name} does not exist"))?
        };
        with_workflow(sim, &plan.id, |w| {
            if let Some(s) = w.steps.get_mut(n) {
                s.attempts = attempt;
            }
        });
        tracing::info!(workflow_id = %plan.id, batch = n, attempt, execution_id = %execution, "step run started");
        let (status, error, records) = wait(sim, &execution).await?;
        authorize(sim, &caller, &[on("appflow:DescribeFlowExecutionRecords")])?;
        if status == ExecStatus::Successful {
            with_workflow(sim, &plan.id, |w| {
                if let Some(s) = w.steps.get_mut(n) {
                    s.records = records;
                }
            });
            update_step(sim, &plan.id, n, WfStatus::Complete, "Execution Successful");
            return Ok(());
        }
        let error = error.unwrap_or_else(|| format!("Execution {}", status.as_str()));
        let permanent = PERMANENT_MARKERS.iter().any(|p| error.contains(p));
        if permanent || attempt == MAX_ATTEMPTS {
            return Err(format!(
                "flow {name} failed after {attempt} attempt(s): {error}"
            ));
        }
        tracing::info!(workflow_id = %plan.id, batch = n, attempt, %error, "transient step failure: retrying");
        update_step(sim, &plan.id, n, WfStatus::Retry, &error);
    }
    Err(format!("flow {name} failed"))
}

/// Until the run ends: (status, error, records processed).
async fn wait(sim: &Sim, execution: &str) -> Result<(ExecStatus, Option<String>, u64), String> {
    loop {
        {
            let st = sim.state();
            let r = st
                .runs
                .get(execution)
                .ok_or_else(|| format!("execution {execution} vanished"))?;
            if !matches!(r.status, ExecStatus::InProgress | ExecStatus::CancelStarted) {
                return Ok((r.status, r.error.clone(), r.records_processed));
            }
        }
        tokio::time::sleep(RUN_POLL).await;
    }
}
