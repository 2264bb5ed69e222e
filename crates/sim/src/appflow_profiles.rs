//! AppFlow connector profile operations: CreateConnectorProfile, DescribeConnectorProfiles,
//! UpdateConnectorProfile (which renews expired credentials, see [`crate::connector`]).

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Extension, State};
use chrono::Utc;
use serde_json::{Map, Value, json};

use crate::access;
use crate::appflow::{expire_tokens, opt_token};
use crate::connector::SaasState;
use crate::error::{ApiError, ErrorKind, Service};
use crate::iam::{Caller, Check};
use crate::state::{ConnectorProfile, CreateToken, Sim};
use crate::wire::{self, epoch, invalid, opt_str, req, req_str};

const S: Service = Service::AppFlow;

type Res = Result<Json<Value>, ApiError>;

/// `connectionMode` per the model's enum.
fn connection_mode(m: &Map<String, Value>) -> Result<&str, ApiError> {
    let mode = req_str(S, m, "connectionMode")?;
    if matches!(mode, "Public" | "Private") {
        Ok(mode)
    } else {
        Err(invalid(
            S,
            format!("connectionMode {mode:?} is not one of Public, Private"),
        ))
    }
}

fn profile_config(m: &Map<String, Value>) -> Result<&Map<String, Value>, ApiError> {
    req(S, m, "connectorProfileConfig")?
        .as_object()
        .ok_or_else(|| invalid(S, "connectorProfileConfig must be a structure"))
}

pub async fn create_connector_profile(
    State(sim): State<Arc<Sim>>,
    Extension(caller): Extension<Caller>,
    body: Bytes,
) -> Res {
    let m = wire::body(S, &body)?;
    let name = req_str(S, &m, "connectorProfileName")?;
    let connector_type = req_str(S, &m, "connectorType")?;
    let connection_mode = req_str(S, &m, "connectionMode")?;
    let cfg = req(S, &m, "connectorProfileConfig")?;
    if name.is_empty()
        || name.len() > 256
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_/!@#+=.-".contains(c))
    {
        return Err(invalid(S, format!("invalid connectorProfileName {name:?}")));
    }
    // No resource type in the SAR: `*`.
    sim.authorize(
        S,
        &caller,
        &[Check::unscoped(
            "appflow:CreateConnectorProfile",
            sim.profile_arn(name),
        )],
    )?;
    let mut st = sim.state();
    if st.profiles.contains_key(name) {
        return Err(ApiError::appflow(
            ErrorKind::Conflict,
            format!("Connector profile with name {name} already exists"),
        ));
    }
    let arn = sim.profile_arn(name);
    let now = Utc::now();
    st.profiles.insert(
        name.to_owned(),
        ConnectorProfile {
            name: name.to_owned(),
            arn: arn.clone(),
            connector_type: connector_type.to_owned(),
            connector_label: opt_str(&m, "connectorLabel").map(str::to_owned),
            connection_mode: connection_mode.to_owned(),
            properties: cfg
                .get("connectorProfileProperties")
                .cloned()
                .unwrap_or_else(|| json!({})),
            created_at: now,
            updated_at: now,
            saas: SaasState::default(),
        },
    );
    Ok(Json(json!({ "connectorProfileArn": arn })))
}

pub async fn describe_connector_profiles(
    State(sim): State<Arc<Sim>>,
    Extension(caller): Extension<Caller>,
    body: Bytes,
) -> Res {
    let m = wire::body(S, &body)?;
    let names: Option<Vec<String>> = m
        .get("connectorProfileNames")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        });
    let ctype = opt_str(&m, "connectorType");
    sim.authorize(
        S,
        &caller,
        &[Check::new("appflow:DescribeConnectorProfiles", "*")],
    )?;
    let st = sim.state();
    // AppFlow's ConnectorProfile has no member for expired credentials or a spent SaaS
    // allowance: nothing here says so (see crate::connector).
    let items: Vec<Value> = st
        .profiles
        .values()
        .filter(|p| names.as_ref().is_none_or(|n| n.contains(&p.name)))
        .filter(|p| ctype.is_none_or(|t| t == p.connector_type))
        .map(|p| {
            let mut v = json!({
                "connectorProfileArn": p.arn,
                "connectorProfileName": p.name,
                "connectorType": p.connector_type,
                "connectionMode": p.connection_mode,
                "credentialsArn": format!("arn:aws:secretsmanager:{}:{}:secret:appflow!{}", sim.config.region, sim.config.account_id, p.name),
                "connectorProfileProperties": p.properties,
                "createdAt": epoch(p.created_at),
                "lastUpdatedAt": epoch(p.updated_at),
            });
            if let Some(l) = &p.connector_label {
                v["connectorLabel"] = Value::from(l.clone());
            }
            v
        })
        .collect();
    let (page, next) = wire::page(S, &items, m.get("maxResults"), 20, opt_str(&m, "nextToken"))?;
    let mut out = json!({ "connectorProfileDetails": page });
    if let Some(n) = next {
        out["nextToken"] = Value::from(n);
    }
    Ok(Json(out))
}

/// `POST /update-connector-profile` `{connectorProfileName, connectionMode,
/// connectorProfileConfig, clientToken?}` → `{connectorProfileArn}`. Replaces the connection
/// mode and properties; with `connectorProfileConfig.connectorProfileCredentials` it also
/// renews the credentials (expired → valid). `clientToken` behaves as CreateFlow's: same
/// token and request → the first answer (nothing renewed twice), different request →
/// ConflictException.
pub async fn update_connector_profile(
    State(sim): State<Arc<Sim>>,
    Extension(caller): Extension<Caller>,
    body: Bytes,
) -> Res {
    let mut m = wire::body(S, &body)?;
    let token = opt_token(&m)?;
    m.remove("clientToken");
    let name = req_str(S, &m, "connectorProfileName")?.to_owned();
    let mode = connection_mode(&m)?.to_owned();
    let cfg = profile_config(&m)?;
    let properties = req(S, cfg, "connectorProfileProperties")?.clone();
    let renews = cfg
        .get("connectorProfileCredentials")
        .is_some_and(Value::is_object);
    sim.authorize(
        S,
        &caller,
        &[access::on_profile(
            &sim,
            "appflow:UpdateConnectorProfile",
            &name,
        )],
    )?;
    let mut st = sim.state();
    expire_tokens(&mut st);
    if let Some(t) = &token
        && let Some(prev) = st.profile_tokens.get(t)
    {
        if prev.request == m {
            return Ok(Json(prev.response.clone()));
        }
        return Err(ApiError::appflow(
            ErrorKind::Conflict,
            format!("clientToken {t} was already used with different parameters"),
        ));
    }
    let p = st.profiles.get_mut(&name).ok_or_else(|| {
        ApiError::appflow(
            ErrorKind::NotFound,
            format!("Connector profile with name {name} does not exist"),
        )
    })?;
    p.connection_mode = mode;
    p.properties = properties;
    p.updated_at = Utc::now();
    if renews {
        p.saas.renew();
        tracing::info!(profile = %name, "connector profile credentials renewed");
    }
    let resp = json!({ "connectorProfileArn": p.arn });
    if let Some(t) = token {
        st.profile_tokens.insert(
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

/// CreateFlow / UpdateFlow reach the source to validate the flow: a profile whose
/// credentials expired answers 401 ConnectorAuthenticationException (modelled on both
/// operations; the wording is assumed).
pub fn ensure_authenticates(sim: &Sim, p: &mut ConnectorProfile) -> Result<(), ApiError> {
    let plan = sim.faults();
    match p.saas.expired_error(&p.name, &plan, Utc::now()) {
        None => Ok(()),
        Some(msg) => Err(ApiError::appflow(
            ErrorKind::ConnectorAuthentication,
            format!(
                "Unable to authenticate with {} using connector profile {}: {msg}",
                p.connector_type, p.name
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_mode_is_the_model_enum() {
        let ok = json!({"connectionMode": "Public"});
        assert_eq!(connection_mode(ok.as_object().unwrap()).unwrap(), "Public");
        let bad = json!({"connectionMode": "public"});
        assert_eq!(
            connection_mode(bad.as_object().unwrap()).unwrap_err().kind,
            ErrorKind::Validation
        );
    }
}
