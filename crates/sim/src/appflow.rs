//! Amazon AppFlow operations (restJson1, camelCase members, error member `message`).

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Extension, Path, RawQuery, State};
use chrono::{Duration, Utc};
use serde_json::{Map, Value, json};

use crate::access;
use crate::appflow_profiles;
use crate::error::{ApiError, ErrorKind, Service};
use crate::flow::{FlowSpec, Trigger, parse_spec};
use crate::iam::{Caller, Check};
use crate::runs;
use crate::state::{CreateToken, ExecStatus, Flow, FlowStatus, Sim, StartToken, State as St};
use crate::wire::{self, epoch, invalid, opt_str, req, req_str};

const S: Service = Service::AppFlow;
/// AppFlow keeps idempotency tokens for 8 hours.
const TOKEN_TTL_HOURS: i64 = 8;

type Res = Result<Json<Value>, ApiError>;

fn not_found(msg: impl Into<String>) -> ApiError {
    ApiError::appflow(ErrorKind::NotFound, msg)
}

fn flow_not_found(name: &str) -> ApiError {
    not_found(format!("Flow {name} does not exist"))
}

/// Authorize `action` on flow `name` with its tags (if the flow exists) as resource tags. As
/// in AWS, authorization comes first: a caller who may not act on a flow learns nothing about
/// whether it exists.
fn authorize_on_flow(
    sim: &Sim,
    caller: &Caller,
    st: &St,
    action: &str,
    name: &str,
) -> Result<(), ApiError> {
    let tags = st.flows.get(name).map(|f| &f.tags);
    sim.authorize(S, caller, &[access::on_flow(sim, action, name, tags)])
}

pub(crate) fn expire_tokens(st: &mut St) {
    let cutoff = Utc::now() - Duration::hours(TOKEN_TTL_HOURS);
    st.create_tokens.retain(|_, t| t.at > cutoff);
    st.start_tokens.retain(|_, t| t.at > cutoff);
    st.profile_tokens.retain(|_, t| t.at > cutoff);
}

pub(crate) fn opt_token(m: &Map<String, Value>) -> Result<Option<String>, ApiError> {
    match m.get("clientToken") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(t)) if (1..=256).contains(&t.len()) => Ok(Some(t.clone())),
        Some(_) => Err(invalid(
            S,
            "clientToken must be 1..256 printable ASCII characters",
        )),
    }
}

/// Members DescribeFlow echoes back from the create / update request.
const DEFINITION_KEYS: [&str; 7] = [
    "description",
    "kmsArn",
    "triggerConfig",
    "sourceFlowConfig",
    "destinationFlowConfigList",
    "tasks",
    "metadataCatalogConfig",
];

fn definition_of(m: &Map<String, Value>) -> Map<String, Value> {
    DEFINITION_KEYS
        .iter()
        .filter_map(|k| m.get(*k).map(|v| ((*k).to_owned(), v.clone())))
        .collect()
}

fn parse_tags(m: &Map<String, Value>) -> Result<BTreeMap<String, String>, ApiError> {
    let Some(tags) = m.get("tags").filter(|v| !v.is_null()) else {
        return Ok(BTreeMap::new());
    };
    let obj = tags
        .as_object()
        .ok_or_else(|| invalid(S, "tags must be a map"))?;
    if obj.len() > 50 {
        return Err(invalid(S, "tags must have at most 50 entries"));
    }
    obj.iter()
        .map(|(k, v)| {
            let v = v
                .as_str()
                .ok_or_else(|| invalid(S, "tag values must be strings"))?;
            if k.is_empty() || k.len() > 128 || k.starts_with("aws:") || v.len() > 256 {
                return Err(invalid(S, format!("invalid tag {k:?}")));
            }
            Ok((k.clone(), v.to_owned()))
        })
        .collect()
}

/// The flow's connector profile exists (ResourceNotFoundException, wording from
/// terraform-provider-aws #27707) and its credentials still authenticate.
fn check_source_profile(sim: &Sim, st: &mut St, spec: &FlowSpec) -> Result<(), ApiError> {
    let Some(name) = &spec.source_profile else {
        return Ok(());
    };
    let p = st
        .profiles
        .get_mut(name)
        .ok_or_else(|| not_found(format!("Connector Profile with name {name} does not exist")))?;
    appflow_profiles::ensure_authenticates(sim, p)
}

/// Shared by CreateFlow and Customer Profiles' PutIntegration (which creates flows too).
pub fn create_flow_in(sim: &Sim, st: &mut St, m: &Map<String, Value>) -> Result<Value, ApiError> {
    let name = req_str(S, m, "flowName")?;
    if !wire::valid_flow_name(name) {
        return Err(invalid(
            S,
            format!(
                "1 validation error detected: Value '{name}' at 'flowName' failed to satisfy constraint: Member must satisfy regular expression pattern: [a-zA-Z0-9][\\w!@#.-]+ and have length at most 256"
            ),
        ));
    }
    let spec = parse_spec(m)?;
    let tags = parse_tags(m)?;
    check_source_profile(sim, st, &spec)?;
    if st.flows.contains_key(name) {
        return Err(ApiError::appflow(
            ErrorKind::Conflict,
            format!("Flow with name {name} already exists"),
        ));
    }
    if let Some(max) = sim.faults().max_flows
        && st.flows.len() >= max as usize
    {
        *st.quota_refusals.entry("create_flow").or_insert(0) += 1;
        // The wording is assumed: AWS documents the error, not its text for this quota.
        return Err(ApiError::appflow(
            ErrorKind::ServiceQuotaExceeded,
            format!(
                "Unable to create flow {name}: the account has reached the maximum number of flows ({max})"
            ),
        ));
    }
    let now = Utc::now();
    let status = match spec.trigger {
        Trigger::OnDemand => FlowStatus::Active,
        // Scheduled and event flows wait for StartFlow to activate them.
        _ => FlowStatus::Draft,
    };
    let arn = sim.flow_arn(name);
    st.flows.insert(
        name.to_owned(),
        Flow {
            name: name.to_owned(),
            arn: arn.clone(),
            uid: uuid::Uuid::new_v4().simple().to_string(),
            spec,
            definition: definition_of(m),
            tags,
            status,
            status_message: None,
            created_at: now,
            updated_at: now,
            last_run: None,
            runs_started: 0,
            consecutive_failures: 0,
            cursor: None,
            activation: 0,
            running: 0,
        },
    );
    st.max_flows_at_once = st
        .max_flows_at_once
        .max(u32::try_from(st.flows.len()).unwrap_or(u32::MAX));
    tracing::info!(flow = name, "flow created");
    Ok(json!({ "flowArn": arn, "flowStatus": status.as_str() }))
}

pub async fn create_flow(
    State(sim): State<Arc<Sim>>,
    Extension(caller): Extension<Caller>,
    body: Bytes,
) -> Res {
    let mut m = wire::body(S, &body)?;
    let token = opt_token(&m)?;
    m.remove("clientToken");
    let name = req_str(S, &m, "flowName")?.to_owned();
    let tags = parse_tags(&m)?;
    sim.authorize(S, &caller, &access::create_flow(&sim, &name, &m, &tags))?;
    let mut st = sim.state();
    expire_tokens(&mut st);
    if let Some(t) = &token
        && let Some(prev) = st.create_tokens.get(t)
    {
        if prev.request == m {
            return Ok(Json(prev.response.clone()));
        }
        return Err(ApiError::appflow(
            ErrorKind::Conflict,
            format!("clientToken {t} was already used with different parameters"),
        ));
    }
    let resp = create_flow_in(&sim, &mut st, &m)?;
    if let Some(t) = token {
        st.create_tokens.insert(
            t,
            CreateToken {
                request: m,
                response: resp.clone(),
                at: Utc::now(),
            },
        );
    }
    Ok(Json(resp))
}

fn last_run_json(f: &Flow) -> Value {
    match &f.last_run {
        Some(l) => json!({
            "mostRecentExecutionMessage": l.message,
            "mostRecentExecutionTime": epoch(l.time),
            "mostRecentExecutionStatus": l.status.as_str(),
        }),
        None => json!({}),
    }
}

pub fn describe_flow_json(sim: &Sim, f: &Flow) -> Value {
    let mut v = Value::Object(f.definition.clone());
    v["flowArn"] = Value::from(f.arn.clone());
    v["flowName"] = Value::from(f.name.clone());
    v["flowStatus"] = Value::from(f.status.as_str());
    if let Some(msg) = &f.status_message {
        v["flowStatusMessage"] = Value::from(msg.clone());
    }
    v["tags"] = json!(f.tags);
    v["schemaVersion"] = Value::from(1);
    v["createdAt"] = epoch(f.created_at);
    v["lastUpdatedAt"] = epoch(f.updated_at);
    v["createdBy"] = Value::from(sim.caller_arn());
    v["lastUpdatedBy"] = Value::from(sim.caller_arn());
    v["lastRunExecutionDetails"] = last_run_json(f);
    v
}

pub async fn describe_flow(
    State(sim): State<Arc<Sim>>,
    Extension(caller): Extension<Caller>,
    body: Bytes,
) -> Res {
    let m = wire::body(S, &body)?;
    let name = req_str(S, &m, "flowName")?;
    let st = sim.state();
    authorize_on_flow(&sim, &caller, &st, "appflow:DescribeFlow", name)?;
    let f = st.flows.get(name).ok_or_else(|| flow_not_found(name))?;
    Ok(Json(describe_flow_json(&sim, f)))
}

pub async fn list_flows(
    State(sim): State<Arc<Sim>>,
    Extension(caller): Extension<Caller>,
    body: Bytes,
) -> Res {
    let m = wire::body(S, &body)?;
    // The SAR prints `flow*` for ListFlows, but a list names no single flow: `*`.
    sim.authorize(S, &caller, &[Check::new("appflow:ListFlows", "*")])?;
    let st = sim.state();
    let items: Vec<Value> = st
        .flows
        .values()
        .map(|f| {
            json!({
                "flowArn": f.arn,
                "flowName": f.name,
                "description": f.definition.get("description"),
                "flowStatus": f.status.as_str(),
                "sourceConnectorType": f.spec.source_type,
                "destinationConnectorType": f.spec.dest_type,
                "triggerType": f.spec.trigger.api_name(),
                "createdAt": epoch(f.created_at),
                "lastUpdatedAt": epoch(f.updated_at),
                "createdBy": sim.caller_arn(),
                "lastUpdatedBy": sim.caller_arn(),
                "tags": f.tags,
                "lastRunExecutionDetails": last_run_json(f),
            })
        })
        .collect();
    let (page, next) = wire::page(
        S,
        &items,
        m.get("maxResults"),
        100,
        opt_str(&m, "nextToken"),
    )?;
    let mut out = json!({ "flows": page });
    if let Some(n) = next {
        out["nextToken"] = Value::from(n);
    }
    Ok(Json(out))
}

pub async fn update_flow(
    State(sim): State<Arc<Sim>>,
    Extension(caller): Extension<Caller>,
    body: Bytes,
) -> Res {
    let m = wire::body(S, &body)?;
    let name = req_str(S, &m, "flowName")?;
    let spec = parse_spec(&m)?;
    let mut st = sim.state();
    let mut checks = vec![access::on_flow(
        &sim,
        "appflow:UpdateFlow",
        name,
        st.flows.get(name).map(|f| &f.tags),
    )];
    // UNCONFIRMED dependent action (CloudFormation's update handler lists it).
    checks.extend(access::use_profile(&sim, &m));
    sim.authorize(S, &caller, &checks)?;
    check_source_profile(&sim, &mut st, &spec)?;
    let f = st.flows.get_mut(name).ok_or_else(|| flow_not_found(name))?;
    if (&spec.dest_domain, &spec.dest_object_type, &spec.dest_type)
        != (
            &f.spec.dest_domain,
            &f.spec.dest_object_type,
            &f.spec.dest_type,
        )
    {
        return Err(invalid(
            S,
            "Destination object for the destination connector can not be updated",
        ));
    }
    let kms = f.definition.get("kmsArn").cloned();
    f.definition = definition_of(&m);
    // kmsArn cannot be changed by UpdateFlow.
    match kms {
        Some(k) => {
            f.definition.insert("kmsArn".into(), k);
        }
        None => {
            f.definition.remove("kmsArn");
        }
    }
    let was_scheduled = matches!(f.spec.trigger, Trigger::Scheduled(_));
    f.spec = spec;
    if was_scheduled != matches!(f.spec.trigger, Trigger::Scheduled(_)) {
        f.status = match f.spec.trigger {
            Trigger::OnDemand => FlowStatus::Active,
            _ => FlowStatus::Draft,
        };
        f.activation += 1;
    }
    f.updated_at = Utc::now();
    Ok(Json(json!({ "flowStatus": f.status.as_str() })))
}

pub async fn delete_flow(
    State(sim): State<Arc<Sim>>,
    Extension(caller): Extension<Caller>,
    body: Bytes,
) -> Res {
    let m = wire::body(S, &body)?;
    let name = req_str(S, &m, "flowName")?;
    let force = m
        .get("forceDelete")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let mut st = sim.state();
    authorize_on_flow(&sim, &caller, &st, "appflow:DeleteFlow", name)?;
    let f = st.flows.get(name).ok_or_else(|| flow_not_found(name))?;
    if f.running > 0 && !force {
        return Err(ApiError::appflow(
            ErrorKind::Conflict,
            format!("Flow {name} has runs in progress; use forceDelete to delete it anyway"),
        ));
    }
    let uid = f.uid.clone();
    st.flows.remove(name);
    st.start_tokens.retain(|(u, _), _| *u != uid);
    tracing::info!(flow = name, "flow deleted");
    Ok(Json(json!({})))
}

pub async fn start_flow(
    State(sim): State<Arc<Sim>>,
    Extension(caller): Extension<Caller>,
    body: Bytes,
) -> Res {
    let m = wire::body(S, &body)?;
    let name = req_str(S, &m, "flowName")?.to_owned();
    let token = opt_token(&m)?;
    let mut guard = sim.state();
    let st = &mut *guard;
    authorize_on_flow(&sim, &caller, st, "appflow:StartFlow", &name)?;
    expire_tokens(st);
    let in_progress = runs::runs_in_progress(st);
    let f = st
        .flows
        .get_mut(&name)
        .ok_or_else(|| flow_not_found(&name))?;
    let key = token.clone().map(|t| (f.uid.clone(), t));
    if let Some(k) = &key
        && let Some(prev) = st.start_tokens.get(k)
    {
        return Ok(Json(prev.response.clone()));
    }
    let resp = match &f.spec.trigger {
        Trigger::OnDemand => {
            let arn = f.arn.clone();
            if let Some(max) = sim.faults().max_concurrent_runs_per_account
                && in_progress >= max
            {
                *st.quota_refusals.entry("start_flow").or_insert(0) += 1;
                // The wording is assumed, as for CreateFlow's quota.
                return Err(ApiError::appflow(
                    ErrorKind::ServiceQuotaExceeded,
                    format!(
                        "Unable to start flow {name}: the account has reached the maximum number of concurrent flow runs ({max})"
                    ),
                ));
            }
            let id = runs::start_run(&sim, st, &name, None).ok_or_else(|| flow_not_found(&name))?;
            json!({ "flowArn": arn, "flowStatus": "Active", "executionId": id })
        }
        Trigger::Scheduled(_) | Trigger::Event => {
            activate(&sim, f);
            json!({ "flowArn": f.arn, "flowStatus": "Active", "executionId": null })
        }
    };
    if let Some(k) = key {
        st.start_tokens.insert(
            k,
            StartToken {
                response: resp.clone(),
                at: Utc::now(),
            },
        );
    }
    Ok(Json(resp))
}

/// StartFlow on a scheduled or event flow: activate it (a scheduled flow starts its
/// scheduler). Shared with the managed workflow's continuous integration.
pub(crate) fn activate(sim: &Arc<Sim>, f: &mut Flow) {
    if f.status == FlowStatus::Active {
        return;
    }
    f.status = FlowStatus::Active;
    f.status_message = None;
    f.consecutive_failures = 0;
    f.activation += 1;
    if matches!(f.spec.trigger, Trigger::Scheduled(_)) {
        runs::spawn_scheduler(sim, f.name.clone(), f.uid.clone(), f.activation);
    }
    tracing::info!(flow = %f.name, "flow activated");
}

pub async fn stop_flow(
    State(sim): State<Arc<Sim>>,
    Extension(caller): Extension<Caller>,
    body: Bytes,
) -> Res {
    let m = wire::body(S, &body)?;
    let name = req_str(S, &m, "flowName")?;
    let mut st = sim.state();
    authorize_on_flow(&sim, &caller, &st, "appflow:StopFlow", name)?;
    let f = st.flows.get_mut(name).ok_or_else(|| flow_not_found(name))?;
    if f.spec.trigger == Trigger::OnDemand {
        return Err(ApiError::appflow(
            ErrorKind::UnsupportedOperation,
            format!("StopFlow is not supported for OnDemand flow {name}"),
        ));
    }
    if f.status == FlowStatus::Active {
        f.status = FlowStatus::Suspended;
        f.activation += 1;
        tracing::info!(flow = name, "flow deactivated by StopFlow");
    }
    Ok(Json(
        json!({ "flowArn": f.arn, "flowStatus": f.status.as_str() }),
    ))
}

pub async fn cancel_flow_executions(
    State(sim): State<Arc<Sim>>,
    Extension(caller): Extension<Caller>,
    body: Bytes,
) -> Res {
    let m = wire::body(S, &body)?;
    let name = req_str(S, &m, "flowName")?;
    let ids: Option<Vec<String>> = match m.get("executionIds") {
        None | Some(Value::Null) => None,
        Some(Value::Array(a)) if a.len() <= 100 => Some(
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect(),
        ),
        Some(_) => return Err(invalid(S, "executionIds must be a list of at most 100 ids")),
    };
    let mut guard = sim.state();
    let st = &mut *guard;
    authorize_on_flow(&sim, &caller, st, "appflow:CancelFlowExecutions", name)?;
    let f = st.flows.get(name).ok_or_else(|| flow_not_found(name))?;
    let uid = f.uid.clone();
    let invalid_ids = runs::cancel_runs(st, &uid, ids.as_deref());
    Ok(Json(json!({ "invalidExecutions": invalid_ids })))
}

pub async fn describe_flow_execution_records(
    State(sim): State<Arc<Sim>>,
    Extension(caller): Extension<Caller>,
    body: Bytes,
) -> Res {
    let m = wire::body(S, &body)?;
    let name = req_str(S, &m, "flowName")?;
    let st = sim.state();
    authorize_on_flow(
        &sim,
        &caller,
        &st,
        "appflow:DescribeFlowExecutionRecords",
        name,
    )?;
    let f = st.flows.get(name).ok_or_else(|| flow_not_found(name))?;
    let mut records: Vec<(&String, Value)> = st
        .runs
        .values()
        .filter(|r| r.flow_uid == f.uid)
        .map(|r| {
            let mut result = json!({
                "bytesProcessed": r.records_processed * 512,
                "bytesWritten": r.records_written * 512,
                "recordsProcessed": r.records_processed,
            });
            // A failed run, or a successful one whose records were not all written.
            let message = match r.status {
                ExecStatus::Error => Some(r.error.clone().unwrap_or_default()),
                _ => r.record_failure_message.clone(),
            };
            if let Some(message) = message {
                result["errorInfo"] = json!({
                    "putFailuresCount": r.record_failures,
                    "executionMessage": message,
                });
            }
            let mut v = json!({
                "executionId": r.execution_id,
                "executionStatus": r.status.as_str(),
                "executionResult": result,
                "startedAt": epoch(r.started_at),
                "lastUpdatedAt": epoch(r.updated_at),
            });
            if let Some(ts) = r.pull_first {
                v["dataPullStartTime"] = epoch(crate::source::ms_to_datetime(ts));
            }
            if let Some(ts) = r.pull_last {
                v["dataPullEndTime"] = epoch(crate::source::ms_to_datetime(ts));
            }
            (&r.execution_id, v)
        })
        .collect();
    // Deliberately ordered by (random) execution id, not by time: callers must paginate and
    // match on executionId, as with the real service.
    records.sort_by(|a, b| a.0.cmp(b.0));
    let items: Vec<Value> = records.into_iter().map(|(_, v)| v).collect();
    let (page, next) = wire::page(S, &items, m.get("maxResults"), 20, opt_str(&m, "nextToken"))?;
    let mut out = json!({ "flowExecutions": page });
    if let Some(n) = next {
        out["nextToken"] = Value::from(n);
    }
    Ok(Json(out))
}

enum Tagged {
    Flow(String),
    Profile,
}

fn find_tagged(st: &St, arn: &str) -> Result<Tagged, ApiError> {
    if let Some(f) = st.flows.values().find(|f| f.arn == arn) {
        return Ok(Tagged::Flow(f.name.clone()));
    }
    if st.profiles.values().any(|p| p.arn == arn) {
        return Ok(Tagged::Profile);
    }
    Err(not_found(format!("Resource {arn} does not exist")))
}

fn flow_tags_by_arn<'a>(st: &'a St, arn: &str) -> Option<&'a BTreeMap<String, String>> {
    st.flows.values().find(|f| f.arn == arn).map(|f| &f.tags)
}

pub async fn list_tags(
    State(sim): State<Arc<Sim>>,
    Extension(caller): Extension<Caller>,
    Path(arn): Path<String>,
) -> Res {
    let st = sim.state();
    let check = access::with_resource_tags(
        Check::new("appflow:ListTagsForResource", &arn),
        flow_tags_by_arn(&st, &arn),
    );
    sim.authorize(S, &caller, &[check])?;
    let tags = match find_tagged(&st, &arn)? {
        Tagged::Flow(n) => st.flows.get(&n).map(|f| json!(f.tags)).unwrap_or(json!({})),
        Tagged::Profile => json!({}),
    };
    Ok(Json(json!({ "tags": tags })))
}

pub async fn tag_resource(
    State(sim): State<Arc<Sim>>,
    Extension(caller): Extension<Caller>,
    Path(arn): Path<String>,
    body: Bytes,
) -> Res {
    let m = wire::body(S, &body)?;
    req(S, &m, "tags")?;
    let tags = parse_tags(&m)?;
    let mut st = sim.state();
    let check = access::with_resource_tags(
        access::with_request_tags(Check::new("appflow:TagResource", &arn), &tags),
        flow_tags_by_arn(&st, &arn),
    );
    sim.authorize(S, &caller, &[check])?;
    if let Tagged::Flow(n) = find_tagged(&st, &arn)?
        && let Some(f) = st.flows.get_mut(&n)
    {
        f.tags.extend(tags);
        if f.tags.len() > 50 {
            return Err(invalid(S, "a resource can have at most 50 tags"));
        }
    }
    Ok(Json(json!({})))
}

pub async fn untag_resource(
    State(sim): State<Arc<Sim>>,
    Extension(caller): Extension<Caller>,
    Path(arn): Path<String>,
    RawQuery(q): RawQuery,
) -> Res {
    let keys = wire::query_values(q.as_deref(), "tagKeys");
    if keys.is_empty() {
        return Err(invalid(S, "tagKeys is required"));
    }
    let mut st = sim.state();
    let check = access::with_resource_tags(
        Check::new("appflow:UntagResource", &arn).with(
            "aws:TagKeys",
            crate::iam::policy::CtxValue::List(keys.clone()),
        ),
        flow_tags_by_arn(&st, &arn),
    );
    sim.authorize(S, &caller, &[check])?;
    if let Tagged::Flow(n) = find_tagged(&st, &arn)?
        && let Some(f) = st.flows.get_mut(&n)
    {
        for k in keys {
            f.tags.remove(&k);
        }
    }
    Ok(Json(json!({})))
}
