//! The five workflow operations. Each is authorized for its caller as `profile:<Operation>` on
//! the domain ARN (the Service Authorization Reference's `domains*` resource type);
//! CreateIntegrationWorkflow also needs `iam:PassRole` on `RoleArn` (with
//! `iam:PassedToService` = `profile.amazonaws.com`) and a role Customer Profiles may assume.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Extension, Path, RawQuery, State};
use chrono::{DateTime, Months, Utc};
use serde_json::{Map, Value, json};

use super::{
    SERVICE_PRINCIPAL, Step, WORKFLOW_TYPE, WfStatus, Window, Workflow, engine, step_flow_name,
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
/// Without `Batches`, the admin guide's batch size.
const DEFAULT_BATCH_MONTHS: u32 = 2;
/// The simulator's guard against a runaway request (AWS documents no limit).
const MAX_STEPS: usize = 10_000;

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

fn valid_object_type(t: &str) -> bool {
    (1..=255).contains(&t.len())
        && t.chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && t.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

fn valid_role_arn(arn: &str) -> bool {
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    arn.len() <= 512
        && parts.len() == 6
        && parts[0] == "arn"
        && parts[2] == "iam"
        && !parts[4].is_empty()
        && parts[4].bytes().all(|b| b.is_ascii_digit())
}

/// The batches of the request, or two-month batches from `FirstExecutionFrom` to now.
fn batches(
    integration: &Map<String, Value>,
    def: &Map<String, Value>,
    now: DateTime<Utc>,
) -> Result<Vec<Window>, ApiError> {
    if let Some(list) = integration.get("Batches").filter(|v| !v.is_null()) {
        let list = list
            .as_array()
            .ok_or_else(|| invalid(S, "Batches must be a list"))?;
        let out = list
            .iter()
            .map(|b| {
                let t = |k: &str| {
                    b.get(k)
                        .and_then(parse_epoch)
                        .ok_or_else(|| invalid(S, format!("Batch {k} is required (epoch seconds)")))
                };
                let (from, to) = (t("StartTime")?, t("EndTime")?);
                if from >= to {
                    return Err(invalid(S, "Batch StartTime must be before EndTime"));
                }
                Ok((from, to))
            })
            .collect::<Result<Vec<_>, _>>()?;
        if out.is_empty() {
            return Err(invalid(S, "Batches must not be empty"));
        }
        return Ok(out);
    }
    let first = def
        .get("TriggerConfig")
        .and_then(|t| t.get("TriggerProperties"))
        .and_then(|t| t.get("Scheduled"))
        .and_then(|s| s.get("FirstExecutionFrom"))
        .and_then(parse_epoch)
        .ok_or_else(|| {
            invalid(
                S,
                "without Batches, TriggerConfig.TriggerProperties.Scheduled.FirstExecutionFrom is required",
            )
        })?;
    let mut out = Vec::new();
    let mut from = first;
    while from < now && out.len() < MAX_STEPS {
        let to = from
            .checked_add_months(Months::new(DEFAULT_BATCH_MONTHS))
            .unwrap_or(now)
            .min(now);
        out.push((from, to));
        from = to;
    }
    if out.is_empty() {
        return Err(invalid(S, "FirstExecutionFrom is not in the past"));
    }
    Ok(out)
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
    engine::delete_step_flows(&sim, &mut st, &w);
    tracing::info!(workflow_id = %id, "integration workflow deleted");
    Ok(Json(json!({})))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().to_utc()
    }

    #[test]
    fn without_batches_two_month_batches_up_to_now() {
        let def = json!({"TriggerConfig": {"TriggerType": "Scheduled", "TriggerProperties":
            {"Scheduled": {"ScheduleExpression": "rate(1hours)", "FirstExecutionFrom": 1_704_067_200}}}});
        let b = batches(
            &Map::new(),
            def.as_object().unwrap(),
            at("2024-06-15T00:00:00Z"),
        )
        .unwrap();
        assert_eq!(b.len(), 3);
        assert_eq!(
            b[0],
            (at("2024-01-01T00:00:00Z"), at("2024-03-01T00:00:00Z"))
        );
        assert_eq!(
            b[2],
            (at("2024-05-01T00:00:00Z"), at("2024-06-15T00:00:00Z"))
        );
    }

    #[test]
    fn given_batches_are_kept_and_validated() {
        let i = json!({"Batches": [{"StartTime": 1_704_067_200, "EndTime": 1_704_153_600.5}]});
        let b = batches(i.as_object().unwrap(), &Map::new(), Utc::now()).unwrap();
        assert_eq!(b.len(), 1);
        let bad = json!({"Batches": [{"StartTime": 5, "EndTime": 5}]});
        assert!(batches(bad.as_object().unwrap(), &Map::new(), Utc::now()).is_err());
        assert!(valid_role_arn("arn:aws:iam::123456789012:role/x"));
        assert!(!valid_role_arn("arn:aws:iam::acct:role/x"));
    }
}
