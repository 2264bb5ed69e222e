//! Test-facing admin API under `/_sim/` (plain JSON, no auth, never throttled).

use std::collections::HashMap;
use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use crate::faults::FaultPlan;
use crate::iam::IdentityDocument;
use crate::runs::run_json;
use crate::source::MsWindow;
use crate::state::{Sim, State as St};

fn bad(msg: impl Into<String>) -> Response {
    (
        StatusCode::BAD_REQUEST,
        Json(json!({ "error": msg.into() })),
    )
        .into_response()
}

pub async fn ledger(
    State(sim): State<Arc<Sim>>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let Some(domain) = q.get("domain") else {
        return bad("query parameter `domain` is required (object_type is optional)");
    };
    let object_type = q.get("object_type").map(String::as_str);
    let window = match (parse_time(&q, "from"), parse_time(&q, "to")) {
        (Ok(from), Ok(to)) => (from, to),
        (Err(e), _) | (_, Err(e)) => return bad(e),
    };
    let state = sim.state();
    let s = match window {
        (None, None) => state.ledger.summary(domain, object_type),
        (from, to) => state.ledger.summary_window(
            domain,
            object_type,
            from.unwrap_or(i64::MIN),
            to.unwrap_or(i64::MAX),
        ),
    };
    Json(json!(s)).into_response()
}

fn parse_time(q: &HashMap<String, String>, key: &str) -> Result<Option<i64>, String> {
    q.get(key)
        .map(|s| {
            DateTime::parse_from_rfc3339(s)
                .map(|t| t.with_timezone(&Utc).timestamp_millis())
                .map_err(|e| format!("`{key}` must be RFC 3339: {e}"))
        })
        .transpose()
}

pub async fn source(
    State(sim): State<Arc<Sim>>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let (Some(profile), Some(object)) = (q.get("connector_profile"), q.get("object")) else {
        return bad(
            "query parameters `connector_profile` and `object` are required (from/to optional, RFC 3339)",
        );
    };
    let (lo, hi) = match (parse_time(&q, "from"), parse_time(&q, "to")) {
        (Ok(lo), Ok(hi)) => (lo, hi),
        (Err(e), _) | (_, Err(e)) => return bad(e),
    };
    let now = Utc::now().timestamp_millis();
    let n = sim.source.count(profile, object, MsWindow { lo, hi }, now);
    Json(json!({ "records": n })).into_response()
}

pub async fn runs(State(sim): State<Arc<Sim>>) -> Json<Value> {
    let st = sim.state();
    let runs: Vec<Value> = st
        .run_order
        .iter()
        .filter_map(|id| st.runs.get(id))
        .map(run_json)
        .collect();
    let overall = st.max_concurrent.values().copied().max().unwrap_or(0);
    Json(json!({
        "runs": runs,
        "max_concurrent_per_flow": st.max_concurrent,
        "max_concurrent_any_flow": overall,
        "max_concurrent_per_profile": st.max_concurrent_per_profile,
        "max_concurrent_account": st.max_concurrent_account,
        "quota_refusals": st.quota_refusals,
    }))
}

pub async fn flows(State(sim): State<Arc<Sim>>) -> Json<Value> {
    let st = sim.state();
    let flows: Vec<Value> = st
        .flows
        .values()
        .map(|f| {
            json!({
                "name": f.name,
                "arn": f.arn,
                "status": f.status.as_str(),
                "trigger": f.spec.trigger.api_name(),
                "running": f.running,
                "runs_started": f.runs_started,
                "consecutive_failures": f.consecutive_failures,
                "cursor": f.cursor,
                "domain": f.spec.dest_domain,
                "object_type": f.spec.dest_object_type,
            })
        })
        .collect();
    Json(json!({ "flows": flows, "max_flows_at_once": st.max_flows_at_once }))
}

/// Every connector profile with its SaaS-side state under the current fault plan:
/// `{profiles: [{name, arn, connector_type, last_updated_at, credentials: {state, expired_at,
/// error, renewals, runs_authenticated}, api_budget: null | {calls_per_day, window_ms, used,
/// remaining, next_refill_at, refused_runs}}]}`.
pub async fn profiles(State(sim): State<Arc<Sim>>) -> Json<Value> {
    let plan = sim.faults();
    let now = Utc::now();
    let mut st = sim.state();
    let profiles: Vec<Value> = st
        .profiles
        .values_mut()
        .map(|p| crate::connector::profile_json(p, &plan, now))
        .collect();
    Json(json!({ "profiles": profiles }))
}

pub async fn events(State(sim): State<Arc<Sim>>) -> Json<Value> {
    Json(json!({ "events": sim.state().emitted_events }))
}

pub async fn get_faults(State(sim): State<Arc<Sim>>) -> Json<Value> {
    Json(json!(sim.faults()))
}

pub async fn put_faults(State(sim): State<Arc<Sim>>, body: Bytes) -> Response {
    let plan: FaultPlan = match serde_json::from_slice(&body) {
        Ok(p) => p,
        Err(e) => return bad(format!("invalid fault plan: {e}")),
    };
    if let Err(e) = plan.validate() {
        return bad(e);
    }
    tracing::info!(?plan, "fault plan replaced");
    sim.set_faults(plan.clone());
    Json(json!(plan)).into_response()
}

pub async fn get_iam(State(sim): State<Arc<Sim>>) -> Json<Value> {
    Json(sim.iam.summary())
}

/// Replace the identity document (users, service stand-ins, roles and their policies).
pub async fn put_iam(State(sim): State<Arc<Sim>>, body: Bytes) -> Response {
    let doc: IdentityDocument = match serde_json::from_slice(&body) {
        Ok(d) => d,
        Err(e) => return bad(format!("invalid identity document: {e}")),
    };
    if let Err(e) = sim.iam.load(doc) {
        return bad(format!("invalid identity document: {e}"));
    }
    Json(sim.iam.summary()).into_response()
}

/// Forget every resource, run and ledger entry (identities and STS sessions describe the
/// deployed stack and stay). Background tasks notice their flow or run is gone and stop.
pub async fn reset(State(sim): State<Arc<Sim>>) -> Json<Value> {
    {
        let mut st = sim.state();
        for r in st.runs.values() {
            r.cancel.cancel();
        }
        for w in st.workflows.values() {
            w.cancel.cancel();
        }
        *st = St::default();
    }
    // After releasing the state lock: set_faults takes it.
    sim.set_faults(sim.config.faults.clone());
    tracing::info!("simulator reset");
    Json(json!({ "reset": true }))
}
