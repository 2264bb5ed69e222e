//! Amazon Connect Customer Profiles operations (restJson1, PascalCase, error member `Message`).

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Extension, Path, RawQuery, State};
use chrono::Utc;
use serde_json::{Map, Value, json};

use crate::access::{self, PROFILES_GRANT_OPERATIONS, kms_grant, tag_map};
use crate::appflow::create_flow_in;
use crate::error::{ApiError, ErrorKind, Service};
use crate::iam::{Caller, Check};
use crate::state::{Domain, Integration, ObjectType, Sim, State as St};
use crate::wire::{self, epoch, invalid, opt_str, req, req_str};

const S: Service = Service::Profiles;

type Res = Result<Json<Value>, ApiError>;

fn not_found(msg: impl Into<String>) -> ApiError {
    ApiError::profiles(ErrorKind::NotFound, msg)
}

fn integration_not_found(uri: &str, domain: &str) -> ApiError {
    not_found(format!(
        "Integration {uri} does not exist in domain {domain}"
    ))
}

fn domain_mut<'a>(st: &'a mut St, name: &str) -> Result<&'a mut Domain, ApiError> {
    st.domains
        .get_mut(name)
        .ok_or_else(|| not_found(format!("Domain {name} does not exist")))
}

fn check_domain_name(name: &str) -> Result<(), ApiError> {
    if wire::valid_domain_name(name) {
        Ok(())
    } else {
        Err(invalid(
            S,
            format!("DomainName {name:?} must match ^[a-zA-Z0-9_-]+$ and be 1..64 characters"),
        ))
    }
}

fn domain_json(d: &Domain, object_count: Option<u64>) -> Value {
    let mut v = Value::Object(d.request.clone());
    v["DomainName"] = Value::from(d.name.clone());
    v["DefaultExpirationDays"] = Value::from(d.default_expiration_days);
    v["CreatedAt"] = epoch(d.created_at);
    v["LastUpdatedAt"] = epoch(d.updated_at);
    if let Some(n) = object_count {
        v["Stats"] = json!({ "ProfileCount": n, "MeteringProfileCount": n, "ObjectCount": n, "TotalSize": n * 512 });
    }
    v
}

/// `action` on `arn` with the resource's tags, if it has any.
fn on(action: &str, arn: String, tags: &BTreeMap<String, String>) -> Check {
    access::with_resource_tags(Check::new(action, arn), Some(tags))
}

pub(crate) fn domain_tags(st: &St, domain: &str) -> BTreeMap<String, String> {
    st.domains
        .get(domain)
        .map(|d| tag_map(d.request.get("Tags")))
        .unwrap_or_default()
}

fn integration_tags(st: &St, domain: &str, uri: &str) -> BTreeMap<String, String> {
    st.domains
        .get(domain)
        .and_then(|d| d.integrations.get(uri))
        .map(|i| tag_map(i.tags.as_ref()))
        .unwrap_or_default()
}

pub async fn create_domain(
    State(sim): State<Arc<Sim>>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    body: Bytes,
) -> Res {
    check_domain_name(&name)?;
    let m = wire::body(S, &body)?;
    let tags = tag_map(m.get("Tags"));
    let arn = sim.domain_arn(&name);
    let mut checks = vec![access::with_request_tags(
        Check::new("profile:CreateDomain", &arn),
        &tags,
    )];
    if !tags.is_empty() {
        checks.push(access::with_request_tags(
            Check::new("profile:TagResource", &arn),
            &tags,
        ));
    }
    sim.authorize(S, &caller, &checks)?;
    let days = req(S, &m, "DefaultExpirationDays")?
        .as_u64()
        .filter(|d| (1..=1098).contains(d))
        .ok_or_else(|| {
            invalid(
                S,
                "DefaultExpirationDays must be an integer between 1 and 1098",
            )
        })?;
    let mut st = sim.state();
    if st.domains.contains_key(&name) {
        return Err(invalid(S, format!("Domain {name} already exists")));
    }
    let now = Utc::now();
    let d = Domain {
        name: name.clone(),
        default_expiration_days: days,
        request: m,
        created_at: now,
        updated_at: now,
        object_types: BTreeMap::new(),
        integrations: BTreeMap::new(),
    };
    let out = domain_json(&d, None);
    st.domains.insert(name, d);
    Ok(Json(out))
}

pub async fn get_domain(
    State(sim): State<Arc<Sim>>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
) -> Res {
    let mut st = sim.state();
    let check = on(
        "profile:GetDomain",
        sim.domain_arn(&name),
        &domain_tags(&st, &name),
    );
    sim.authorize(S, &caller, &[check])?;
    let count = st.ledger.domain_object_count(&name);
    let d = domain_mut(&mut st, &name)?;
    Ok(Json(domain_json(d, Some(count))))
}

pub async fn put_profile_object_type(
    State(sim): State<Arc<Sim>>,
    Extension(caller): Extension<Caller>,
    Path((domain, type_name)): Path<(String, String)>,
    body: Bytes,
) -> Res {
    let m = wire::body(S, &body)?;
    req_str(S, &m, "Description")?;
    let valid_type = !type_name.is_empty()
        && type_name.len() <= 255
        && type_name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && type_name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if !valid_type {
        return Err(invalid(
            S,
            format!("ObjectTypeName {type_name:?} must match ^[a-zA-Z_][a-zA-Z_0-9-]*$"),
        ));
    }
    let mut st = sim.state();
    // Both resource types are required by the SAR; request tags apply to the object type.
    let tags = tag_map(m.get("Tags"));
    let ot_arn = sim.object_type_arn(&domain, &type_name);
    let mut checks = vec![
        on(
            "profile:PutProfileObjectType",
            sim.domain_arn(&domain),
            &domain_tags(&st, &domain),
        ),
        access::with_request_tags(Check::new("profile:PutProfileObjectType", &ot_arn), &tags),
    ];
    if !tags.is_empty() {
        checks.push(access::with_request_tags(
            Check::new("profile:TagResource", &ot_arn),
            &tags,
        ));
    }
    sim.authorize(S, &caller, &checks)?;
    let d = domain_mut(&mut st, &domain)?;
    let now = Utc::now();
    let created_at = d.object_types.get(&type_name).map_or(now, |o| o.created_at);
    d.object_types
        .insert(type_name.clone(), ObjectType { created_at });
    let mut v = Value::Object(m);
    v["ObjectTypeName"] = Value::from(type_name);
    v["CreatedAt"] = epoch(created_at);
    v["LastUpdatedAt"] = epoch(now);
    Ok(Json(v))
}

fn integration_json(i: &Integration) -> Value {
    let mut v = json!({
        "DomainName": i.domain,
        "Uri": i.uri,
        "CreatedAt": epoch(i.created_at),
        "LastUpdatedAt": epoch(i.updated_at),
    });
    if let Some(t) = &i.object_type_name {
        v["ObjectTypeName"] = Value::from(t.clone());
    }
    if let Some(t) = &i.object_type_names {
        v["ObjectTypeNames"] = t.clone();
    }
    if let Some(t) = &i.tags {
        v["Tags"] = t.clone();
    }
    if let Some(r) = &i.role_arn {
        v["RoleArn"] = Value::from(r.clone());
    }
    if let Some(w) = &i.workflow_id {
        v["WorkflowId"] = Value::from(w.clone());
    }
    v
}

/// PascalCase FlowDefinition → AppFlow's camelCase CreateFlow members. Union keys
/// (`Salesforce`, `Scheduled`, ...) and enum-valued map keys (`LOWER_BOUND`) keep their case.
fn camel_case(v: &Value) -> Value {
    const KEEP: [&str; 6] = [
        "Salesforce",
        "Marketo",
        "ServiceNow",
        "Zendesk",
        "S3",
        "Scheduled",
    ];
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, v)| {
                    let keep =
                        KEEP.contains(&k.as_str()) || !k.chars().any(|c| c.is_ascii_lowercase());
                    let key = if keep {
                        k.clone()
                    } else {
                        let mut c = k.chars();
                        c.next()
                            .map(|f| f.to_ascii_lowercase().to_string() + c.as_str())
                            .unwrap_or_default()
                    };
                    (key, camel_case(v))
                })
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(camel_case).collect()),
        other => other.clone(),
    }
}

/// The checks PutIntegration makes: `profile:PutIntegration` on the domain and the
/// integration (the Uri is a flow ARN, embedded in the integration ARN), `profile:TagResource`
/// when Tags are given, and with a `FlowDefinition` what Customer Profiles does with the
/// caller's permissions: AppFlow's CreateFlow (without tags: a FlowDefinition has none) and
/// the grant on the flow's key via Customer Profiles (`kms:GrantOperations` = Decrypt).
fn put_integration_checks(
    sim: &Sim,
    st: &St,
    domain: &str,
    uri: &str,
    m: &Map<String, Value>,
    flow: Option<&Map<String, Value>>,
) -> Vec<Check> {
    let tags = tag_map(m.get("Tags"));
    let arn = sim.integration_arn(domain, uri);
    let mut checks = vec![
        on(
            "profile:PutIntegration",
            sim.domain_arn(domain),
            &domain_tags(st, domain),
        ),
        access::with_request_tags(
            access::with_resource_tags(
                Check::new("profile:PutIntegration", &arn),
                Some(&integration_tags(st, domain, uri)),
            ),
            &tags,
        ),
    ];
    if !tags.is_empty() {
        checks.push(access::with_request_tags(
            Check::new("profile:TagResource", &arn),
            &tags,
        ));
    }
    if let Some(flow) = flow
        && let Some(name) = flow.get("flowName").and_then(Value::as_str)
    {
        checks.extend(access::create_flow(sim, name, flow, &BTreeMap::new()));
        if let Some(key) = flow.get("kmsArn").and_then(Value::as_str) {
            checks.push(kms_grant(
                key,
                sim.kms_via("profile"),
                &PROFILES_GRANT_OPERATIONS,
            ));
        }
    }
    checks
}

/// The CreateFlow request Customer Profiles makes for a FlowDefinition: camelCase members and
/// a CustomerProfiles destination in this domain.
pub(crate) fn flow_request(
    def: &Value,
    domain: &str,
    object_type_name: Option<&str>,
) -> Map<String, Value> {
    let mut flow: Map<String, Value> = camel_case(def).as_object().cloned().unwrap_or_default();
    let mut dest = json!({ "domainName": domain });
    if let Some(t) = object_type_name {
        dest["objectTypeName"] = Value::from(t);
    }
    flow.insert(
        "destinationFlowConfigList".into(),
        json!([{ "connectorType": "CustomerProfiles", "destinationConnectorProperties": { "CustomerProfiles": dest } }]),
    );
    flow
}

pub async fn put_integration(
    State(sim): State<Arc<Sim>>,
    Extension(caller): Extension<Caller>,
    Path(domain): Path<String>,
    body: Bytes,
) -> Res {
    let m = wire::body(S, &body)?;
    let object_type_name = opt_str(&m, "ObjectTypeName").map(str::to_owned);
    let object_type_names = m.get("ObjectTypeNames").filter(|v| !v.is_null()).cloned();
    if object_type_name.is_none() && object_type_names.is_none() {
        return Err(invalid(S, "ObjectTypeName or ObjectTypeNames is required"));
    }
    let flow = m
        .get("FlowDefinition")
        .filter(|v| !v.is_null())
        .map(|def| flow_request(def, &domain, object_type_name.as_deref()));
    let uri = match (&flow, opt_str(&m, "Uri")) {
        (Some(flow), _) => {
            let name = req_str(Service::AppFlow, flow, "flowName")
                .map_err(|e| invalid(S, format!("FlowDefinition: {}", e.message)))?;
            sim.flow_arn(name)
        }
        (None, Some(uri)) => uri.to_owned(),
        (None, None) => return Err(invalid(S, "Uri or FlowDefinition is required")),
    };
    let mut guard = sim.state();
    let st = &mut *guard;
    let checks = put_integration_checks(&sim, st, &domain, &uri, &m, flow.as_ref());
    sim.authorize(S, &caller, &checks)?;
    domain_mut(st, &domain)?;
    match &flow {
        Some(flow) => {
            let name =
                req_str(Service::AppFlow, flow, "flowName").map_err(|e| invalid(S, e.message))?;
            match st
                .flows
                .get(name)
                .map(|f| f.spec.dest_domain.as_deref() == Some(domain.as_str()))
            {
                // A retried PutIntegration for the flow it already created: keep it.
                Some(true) => {}
                Some(false) => {
                    return Err(invalid(S, format!("Flow {name} already exists")));
                }
                None => {
                    create_flow_in(&sim, st, flow).map_err(|e| {
                        let kind = if e.kind == ErrorKind::NotFound {
                            ErrorKind::NotFound
                        } else {
                            ErrorKind::BadRequest
                        };
                        ApiError::profiles(kind, e.message)
                    })?;
                }
            }
        }
        None if uri.starts_with("arn:aws:appflow:") => {
            let f = st
                .flows
                .values()
                .find(|f| f.arn == uri)
                .ok_or_else(|| not_found(format!("Flow {uri} does not exist")))?;
            let into_domain = f.spec.dest_type.eq_ignore_ascii_case("CustomerProfiles")
                && f.spec.dest_domain.as_deref() == Some(domain.as_str());
            if !into_domain {
                return Err(invalid(
                    S,
                    format!("Flow {uri} does not write to Customer Profiles domain {domain}"),
                ));
            }
        }
        None => {}
    }
    let d = domain_mut(st, &domain)?;
    let now = Utc::now();
    let created_at = d.integrations.get(&uri).map_or(now, |i| i.created_at);
    let i = Integration {
        uri: uri.clone(),
        domain: domain.clone(),
        object_type_name,
        object_type_names,
        tags: m.get("Tags").filter(|v| !v.is_null()).cloned(),
        role_arn: opt_str(&m, "RoleArn").map(str::to_owned),
        workflow_id: d.integrations.get(&uri).and_then(|i| i.workflow_id.clone()),
        created_at,
        updated_at: now,
    };
    let out = integration_json(&i);
    d.integrations.insert(uri, i);
    Ok(Json(out))
}

/// Get / Delete: the action on the domain and on the integration (both required by the SAR).
fn integration_checks(sim: &Sim, st: &St, action: &str, domain: &str, uri: &str) -> [Check; 2] {
    [
        on(action, sim.domain_arn(domain), &domain_tags(st, domain)),
        on(
            action,
            sim.integration_arn(domain, uri),
            &integration_tags(st, domain, uri),
        ),
    ]
}

pub async fn get_integration(
    State(sim): State<Arc<Sim>>,
    Extension(caller): Extension<Caller>,
    Path(domain): Path<String>,
    body: Bytes,
) -> Res {
    let m = wire::body(S, &body)?;
    let uri = req_str(S, &m, "Uri")?;
    let mut st = sim.state();
    let checks = integration_checks(&sim, &st, "profile:GetIntegration", &domain, uri);
    sim.authorize(S, &caller, &checks)?;
    let d = domain_mut(&mut st, &domain)?;
    let i = d
        .integrations
        .get(uri)
        .ok_or_else(|| integration_not_found(uri, &domain))?;
    Ok(Json(integration_json(i)))
}

pub async fn delete_integration(
    State(sim): State<Arc<Sim>>,
    Extension(caller): Extension<Caller>,
    Path(domain): Path<String>,
    body: Bytes,
) -> Res {
    let m = wire::body(S, &body)?;
    let uri = req_str(S, &m, "Uri")?;
    let mut st = sim.state();
    let checks = integration_checks(&sim, &st, "profile:DeleteIntegration", &domain, uri);
    sim.authorize(S, &caller, &checks)?;
    let d = domain_mut(&mut st, &domain)?;
    d.integrations
        .remove(uri)
        .ok_or_else(|| integration_not_found(uri, &domain))?;
    Ok(Json(
        json!({ "Message": format!("Integration {uri} deleted") }),
    ))
}

pub async fn list_integrations(
    State(sim): State<Arc<Sim>>,
    Extension(caller): Extension<Caller>,
    Path(domain): Path<String>,
    RawQuery(q): RawQuery,
) -> Res {
    let max = wire::query_values(q.as_deref(), "max-results")
        .first()
        .map(|s| s.parse::<u64>().map(Value::from))
        .transpose()
        .map_err(|_| invalid(S, "max-results must be an integer"))?;
    let token = wire::query_values(q.as_deref(), "next-token")
        .into_iter()
        .next();
    let mut st = sim.state();
    let check = on(
        "profile:ListIntegrations",
        sim.domain_arn(&domain),
        &domain_tags(&st, &domain),
    );
    sim.authorize(S, &caller, &[check])?;
    let d = domain_mut(&mut st, &domain)?;
    let items: Vec<Value> = d.integrations.values().map(integration_json).collect();
    let (page, next) = wire::page(S, &items, max.as_ref(), 100, token.as_deref())?;
    let mut out = json!({ "Items": page });
    if let Some(n) = next {
        out["NextToken"] = Value::from(n);
    }
    Ok(Json(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flow_definition_is_camel_cased_except_union_and_enum_keys() {
        let v = json!({"FlowName":"f","SourceFlowConfig":{"ConnectorType":"Salesforce",
            "SourceConnectorProperties":{"Salesforce":{"Object":"Account"}}},
            "Tasks":[{"TaskType":"Filter","ConnectorOperator":{"Salesforce":"BETWEEN"},
                      "TaskProperties":{"LOWER_BOUND":"1","UPPER_BOUND":"2"},"SourceFields":["LastModifiedDate"]}],
            "TriggerConfig":{"TriggerType":"Scheduled","TriggerProperties":{"Scheduled":{"ScheduleExpression":"rate(1hours)"}}}});
        let c = camel_case(&v);
        assert_eq!(
            c["sourceFlowConfig"]["sourceConnectorProperties"]["Salesforce"]["object"],
            "Account"
        );
        assert_eq!(c["tasks"][0]["taskProperties"]["LOWER_BOUND"], "1");
        assert_eq!(c["tasks"][0]["connectorOperator"]["Salesforce"], "BETWEEN");
        assert_eq!(
            c["triggerConfig"]["triggerProperties"]["Scheduled"]["scheduleExpression"],
            "rate(1hours)"
        );
    }
}
