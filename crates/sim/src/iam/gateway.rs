//! The first stop of every request on the simulator's port. The AWS SDKs reach one endpoint
//! (`AWS_ENDPOINT_URL`) for every service, so requests are told apart by protocol:
//! - `/_sim/...`                                  → the admin API (no auth);
//! - an `X-Amz-Target` header (awsJson)           → the front (authorize, forward to moto);
//! - a form-encoded POST (awsQuery) with `Action` → STS if the simulator implements the
//!   action (AssumeRole, GetCallerIdentity), else the front;
//! - anything else                                → AppFlow / Customer Profiles (restJson1).

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::front::{self, FrontRequest};
use super::sts;
use crate::state::Sim;

/// The largest request body the front or STS reads (DynamoDB batches reach 16 MiB).
const BODY_LIMIT: usize = 32 << 20;

pub async fn gateway(State(sim): State<Arc<Sim>>, req: Request, next: Next) -> Response {
    let path = req.uri().path();
    if path == "/_sim" || path.starts_with("/_sim/") {
        return next.run(req).await;
    }
    let target = req
        .headers()
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let is_form = req.method() == Method::POST
        && req
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|ct| ct.starts_with("application/x-www-form-urlencoded"));
    if target.is_none() && !is_form {
        return next.run(req).await;
    }
    let (parts, body) = req.into_parts();
    let body = match axum::body::to_bytes(body, BODY_LIMIT).await {
        Ok(b) => b,
        Err(e) => {
            return (
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("flowpilot-sim: cannot read the request body: {e}"),
            )
                .into_response();
        }
    };
    if let Some(target) = target {
        return front::handle(
            &sim.iam,
            FrontRequest {
                parts,
                body,
                operation: target,
                form: None,
            },
        )
        .await;
    }
    let form: Vec<(String, String)> = serde_urlencoded::from_bytes(&body).unwrap_or_default();
    let action = form
        .iter()
        .find(|(k, _)| k == "Action")
        .map(|(_, v)| v.clone());
    match action {
        Some(a) if sts::ACTIONS.contains(&a.as_str()) && is_sts(&parts) => {
            sts::handle(&sim.iam, &parts.headers, &form)
        }
        Some(a) => {
            front::handle(
                &sim.iam,
                FrontRequest {
                    parts,
                    body,
                    operation: a,
                    form: Some(form),
                },
            )
            .await
        }
        // A form POST without an Action is no AWS request this port knows: let the restJson
        // router answer it (UnknownOperationException).
        None => next.run(Request::from_parts(parts, Body::from(body))).await,
    }
}

/// STS requests are signed for `sts`; an unsigned one is still STS's to refuse. Other
/// services' awsQuery actions that happen to share a name go to the front.
fn is_sts(parts: &axum::http::request::Parts) -> bool {
    match super::SigScope::from_headers(&parts.headers) {
        Some(Ok(scope)) => scope.service == "sts",
        _ => true,
    }
}
