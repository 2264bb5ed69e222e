//! The five workflow operations. Each is authorized for its caller as `profile:<Operation>` on
//! the domain ARN (the Service Authorization Reference's `domains*` resource type);
//! CreateIntegrationWorkflow also needs `iam:PassRole` on `RoleArn` (with
//! `iam:PassedToService` = `profile.amazonaws.com`) and a role Customer Profiles may assume.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Extension, Path, RawQuery, State};
use chrono::Utc;
use serde_json::{Map, Value, json};

use super::request::{batches, valid_object_type, valid_role_arn};
use super::{
    SERVICE_PRINCIPAL, Step, WORKFLOW_TYPE, WfStatus, Workflow, engine, live, step_flow_name,
};
use crate::access::{self, tag_map};
use crate::error::{ApiError, ErrorKind, Service};
use crate::flow::parse_spec;
use crate::iam::policy::CtxValue;
use crate::iam::{Caller, Check};
use crate::profiles::{domain_tags, flow_request};
use crate::state::Sim;
use crate::wire::{self, invalid, parse_epoch, req, req_str};

const S: Service = Service::Profiles;
const SOURCE_TYPES: [&str; 5] = ["Salesforce", "Marketo", "Zendesk", "Servicenow", "S3"];

type Res = Result<Json<Value>, ApiError>;

fn not_found(id: &str, domain: &str) -> ApiError {
    ApiError::profiles(
        ErrorKind::NotFound,
        format!("Workflow {id} does not exist in domain {domain}"),
    )
}

/// `action` on the domain, with the domain's tags.
fn on_domain(sim: &Sim, st: &crate::state::State, action: &str, domain: &str) -> Check {
    access::with_resource_tags(
        Check::new(action, sim.domain_arn(domain)),
        Some(&domain_tags(st, domain)),
    )
}

fn object<'a>(m: &'a Map<String, Value>, key: &str) -> Result<&'a Map<String, Value>, ApiError> {
    req(S, m, key)?
        .as_object()
        .ok_or_else(|| invalid(S, format!("{key} must be a structure")))
}

pub async fn create_integration_workflow(
    State(sim): State<Arc<Sim>>,
    Extension(caller): Extension<Caller>,
    Path(domain): Path<String>,
    body: Bytes,
) -> Res {
    let m = wire::body(S, &body)?;
    if req_str(S, &m, "WorkflowType")? != WORKFLOW_TYPE {
        return Err(invalid(S, "WorkflowType must be APPFLOW_INTEGRATION"));
    }
    let object_type = req_str(S, &m, "ObjectTypeName")?.to_owned();
    if !valid_object_type(&object_type) {
        return Err(invalid(
            S,
            format!("ObjectTypeName {object_type:?} must match ^[a-zA-Z_][a-zA-Z_0-9-]*$"),
        ));
    }
    let role_arn = req_str(S, &m, "RoleArn")?.to_owned();
    if !valid_role_arn(&role_arn) {
        return Err(invalid(
            S,
            format!("RoleArn {role_arn:?} must match arn:aws:iam:.*:[0-9]+:.*"),
        ));
    }
    let integration = object(object(&m, "IntegrationConfig")?, "AppflowIntegration")?;
    let def = object(integration, "FlowDefinition")?.clone();
    let flow_name = req_str(S, &def, "FlowName")?.to_owned();
    let kms_arn = req_str(S, &def, "KmsArn")?.to_owned();
    let source = object(&def, "SourceFlowConfig")?;
    let source_type = req_str(S, source, "ConnectorType")?.to_owned();
    if !SOURCE_TYPES.contains(&source_type.as_str()) {
        return Err(invalid(
            S,
            format!("SourceFlowConfig.ConnectorType must be one of {SOURCE_TYPES:?}"),
        ));
    }
    let profile = wire::opt_str(source, "ConnectorProfileName")
        .unwrap_or_default()
        .to_owned();
    req(S, &def, "Tasks")?;
    req(S, &def, "TriggerConfig")?;
    let now = Utc::now();
    let windows = batches(integration, &def, now)?;
    let longest = step_flow_name(&flow_name, windows.len());
    if !wire::valid_flow_name(&longest) {
        return Err(invalid(
            S,
            format!(
                "FlowName {flow_name:?} must be a valid AppFlow flow name with room for the step suffix"
            ),
        ));
    }
    // The definition must make a flow AppFlow accepts (checked once, before anything runs).
    let probe = flow_request(&Value::Object(def.clone()), &domain, Some(&object_type));
    parse_spec(&probe).map_err(|e| invalid(S, format!("FlowDefinition: {}", e.message)))?;
    let tags = tag_map(m.get("Tags"));

    let mut st = sim.state();
    let checks = [
        access::with_request_tags(
            on_domain(&sim, &st, "profile:CreateIntegrationWorkflow", &domain),
            &tags,
        ),
        Check::new("iam:PassRole", &role_arn).with(
            "iam:PassedToService",
            CtxValue::Str(SERVICE_PRINCIPAL.to_owned()),
        ),
    ];
    sim.authorize(S, &caller, &checks)?;
    if !st.domains.contains_key(&domain) {
        return Err(ApiError::profiles(
            ErrorKind::NotFound,
            format!("Domain {domain} does not exist"),
        ));
    }
    // The simulator's choice: a role Customer Profiles cannot assume is refused at once
    // (AccessDenied) rather than failing the workflow later.
    sim.iam
        .assume_as_service(SERVICE_PRINCIPAL, &role_arn, engine::SESSION_NAME)
        .map_err(|why| {
            ApiError::profiles(
                ErrorKind::AccessDenied,
                format!("Customer Profiles cannot assume the role {role_arn}: {why}"),
            )
        })?;
    let busy = st
        .workflows
        .values()
        .any(|w| w.domain == domain && w.flow_name == flow_name && !w.status.terminal());
    if busy {
        return Err(invalid(
            S,
            format!("a workflow with FlowName {flow_name} is already running in domain {domain}"),
        ));
    }
    let id = uuid::Uuid::new_v4().simple().to_string();
    let steps = windows
        .iter()
        .enumerate()
        .map(|(n, (from, to))| Step {
            flow_name: step_flow_name(&flow_name, n),
            from: *from,
            to: *to,
            status: WfStatus::NotStarted,
            message: "Not started".to_owned(),
            records: 0,
            attempts: 0,
            created_at: now,
            updated_at: now,
        })
        .collect();
    let cancel = sim.shutdown.child_token();
    st.workflows.insert(
        id.clone(),
        Workflow {
            id: id.clone(),
            domain,
            object_type,
            role_arn,
            definition: def,
            flow_name,
            source_type,
            profile,
            kms_arn,
            tags: m.get("Tags").filter(|v| !v.is_null()).cloned(),
            status: WfStatus::NotStarted,
            error: None,
            steps,
            live_flow: None,
            created_at: now,
            updated_at: now,
            cancel: cancel.clone(),
        },
    );
    drop(st);
    tracing::info!(workflow_id = %id, batches = windows.len(), "integration workflow created");
    engine::spawn(&sim, id.clone(), cancel);
    Ok(Json(json!({
        "WorkflowId": id,
        "Message": "Integration workflow created; it runs asynchronously",
    })))
}

pub async fn get_workflow(
    State(sim): State<Arc<Sim>>,
    Extension(caller): Extension<Caller>,
    Path((domain, id)): Path<(String, String)>,
) -> Res {
    let st = sim.state();
    let check = on_domain(&sim, &st, "profile:GetWorkflow", &domain);
    sim.authorize(S, &caller, &[check])?;
    let w = st
        .workflows
        .get(&id)
        .filter(|w| w.domain == domain)
        .ok_or_else(|| not_found(&id, &domain))?;
    Ok(Json(w.get_json()))
}

/// `max-results` / `next-token` from the query string.
fn paging(q: Option<&str>) -> Result<(Option<Value>, Option<String>), ApiError> {
    let max = wire::query_values(q, "max-results")
        .first()
        .map(|s| s.parse::<u64>().map(Value::from))
        .transpose()
        .map_err(|_| invalid(S, "max-results must be an integer"))?;
    let token = wire::query_values(q, "next-token").into_iter().next();
    Ok((max, token))
}

pub async fn get_workflow_steps(
    State(sim): State<Arc<Sim>>,
    Extension(caller): Extension<Caller>,
    Path((domain, id)): Path<(String, String)>,
    RawQuery(q): RawQuery,
) -> Res {
    let (max, token) = paging(q.as_deref())?;
    let st = sim.state();
    let check = on_domain(&sim, &st, "profile:GetWorkflowSteps", &domain);
    sim.authorize(S, &caller, &[check])?;
    let w = st
        .workflows
        .get(&id)
        .filter(|w| w.domain == domain)
        .ok_or_else(|| not_found(&id, &domain))?;
    let items: Vec<Value> = w.steps.iter().map(Step::json).collect();
    let (page, next) = wire::page(S, &items, max.as_ref(), 100, token.as_deref())?;
    let mut out = json!({ "WorkflowId": w.id, "WorkflowType": WORKFLOW_TYPE, "Items": page });
    if let Some(n) = next {
        out["NextToken"] = Value::from(n);
    }
    Ok(Json(out))
}

pub async fn list_workflows(
    State(sim): State<Arc<Sim>>,
    Extension(caller): Extension<Caller>,
    Path(domain): Path<String>,
    RawQuery(q): RawQuery,
    body: Bytes,
) -> Res {
    let (max, token) = paging(q.as_deref())?;
    let m = wire::body(S, &body)?;
    let st = sim.state();
    let check = on_domain(&sim, &st, "profile:ListWorkflows", &domain);
    sim.authorize(S, &caller, &[check])?;
    let status = wire::opt_str(&m, "Status");
    let kind = wire::opt_str(&m, "WorkflowType");
    let after = m.get("QueryStartDate").and_then(parse_epoch);
    let before = m.get("QueryEndDate").and_then(parse_epoch);
    let mut selected: Vec<&Workflow> = st
        .workflows
        .values()
        .filter(|w| w.domain == domain)
        .filter(|w| status.is_none_or(|s| s == w.status.as_str()))
        .filter(|_| kind.is_none_or(|k| k == WORKFLOW_TYPE))
        .filter(|w| after.is_none_or(|a| w.created_at >= a))
        .filter(|w| before.is_none_or(|b| w.created_at <= b))
        .collect();
    selected.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
    let items: Vec<Value> = selected.iter().map(|w| w.list_item_json()).collect();
    let (page, next) = wire::page(S, &items, max.as_ref(), 100, token.as_deref())?;
    let mut out = json!({ "Items": page });
    if let Some(n) = next {
        out["NextToken"] = Value::from(n);
    }
    Ok(Json(out))
}

pub async fn delete_workflow(
    State(sim): State<Arc<Sim>>,
    Extension(caller): Extension<Caller>,
    Path((domain, id)): Path<(String, String)>,
) -> Res {
    let mut st = sim.state();
    let check = on_domain(&sim, &st, "profile:DeleteWorkflow", &domain);
    sim.authorize(S, &caller, &[check])?;
    let exists = st.workflows.get(&id).is_some_and(|w| w.domain == domain);
    if !exists {
        return Err(not_found(&id, &domain));
    }
    let Some(w) = st.workflows.remove(&id) else {
        return Err(not_found(&id, &domain));
    };
    w.cancel.cancel();
    live::delete_step_flows(&sim, &mut st, &w);
    tracing::info!(workflow_id = %id, "integration workflow deleted");
    Ok(Json(json!({})))
}
