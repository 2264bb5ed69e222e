//! The IAM-enforcing front for moto: awsJson (`X-Amz-Target`) and awsQuery requests for SQS,
//! DynamoDB, EventBridge (and anything else) are authorized against the caller's policies,
//! then forwarded unchanged to the upstream; moto's answer comes back unchanged. Denials use
//! each service's own error shape, so the AWS SDKs surface the code AWS would send.

use axum::body::{Body, Bytes};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

use super::Iam;
use super::caller::AuthError;
use super::ops::{self, Scope, Service};
use super::sts::query_error;

/// Which error shape a denial or an authentication failure takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    /// awsJson1_0, query-compatible: the SDK takes the code from `x-amzn-query-error`.
    Sqs,
    /// awsJson1_0: `__type` `com.amazon.coral.service#...`, message member `Message`.
    DynamoDb,
    /// awsJson1_1: plain `__type`, message member `message`.
    Events,
    /// Any other awsJson service.
    OtherJson,
    /// awsQuery (form POST, XML errors).
    Query,
}

#[derive(Debug, Clone, Copy)]
enum Failure {
    AccessDenied,
    InvalidToken,
    ExpiredToken,
    MissingToken,
}

impl Shape {
    fn of(service: &Service, query: bool) -> Shape {
        match service {
            _ if query => Shape::Query,
            Service::Sqs => Shape::Sqs,
            Service::DynamoDb => Shape::DynamoDb,
            Service::Events => Shape::Events,
            Service::Other(_) => Shape::OtherJson,
        }
    }

    fn render(self, failure: Failure, message: &str) -> Response {
        // (HTTP status, JSON shape name, legacy query code)
        let (status, shape, query_code) = match failure {
            Failure::AccessDenied => (
                self.denied_status(),
                "AccessDeniedException",
                "AccessDenied",
            ),
            Failure::InvalidToken => (
                self.auth_status(),
                "UnrecognizedClientException",
                "InvalidClientTokenId",
            ),
            Failure::ExpiredToken => (self.auth_status(), "ExpiredTokenException", "ExpiredToken"),
            Failure::MissingToken => (
                self.auth_status(),
                "MissingAuthenticationTokenException",
                "MissingAuthenticationToken",
            ),
        };
        let json_body = |type_: String, member: &str| -> Response {
            let mut body = Map::new();
            body.insert("__type".into(), Value::from(type_));
            body.insert(member.into(), Value::from(message));
            let mut r = (status, Value::Object(body).to_string()).into_response();
            let ct = if self == Shape::Events {
                "application/x-amz-json-1.1"
            } else {
                "application/x-amz-json-1.0"
            };
            r.headers_mut()
                .insert("content-type", HeaderValue::from_static(ct));
            r
        };
        let coral = |s: &str| format!("com.amazon.coral.service#{s}");
        match self {
            Shape::Sqs => {
                let mut r = json_body(coral(shape), "message");
                if let Ok(v) = HeaderValue::from_str(&format!("{query_code};Sender")) {
                    r.headers_mut().insert("x-amzn-query-error", v);
                }
                r
            }
            Shape::DynamoDb => json_body(coral(shape), "Message"),
            Shape::Events => json_body(shape.to_owned(), "message"),
            Shape::OtherJson => json_body(coral(shape), "message"),
            Shape::Query => {
                let status = match failure {
                    Failure::ExpiredToken => StatusCode::BAD_REQUEST,
                    _ => StatusCode::FORBIDDEN,
                };
                query_error(status, query_code, message, None)
            }
        }
    }

    /// SQS (legacy query code list) and awsQuery answer 403; DynamoDB, EventBridge and other
    /// awsJson services answer 400 (their common-errors pages).
    fn denied_status(self) -> StatusCode {
        match self {
            Shape::Sqs | Shape::Query => StatusCode::FORBIDDEN,
            _ => StatusCode::BAD_REQUEST,
        }
    }

    fn auth_status(self) -> StatusCode {
        self.denied_status()
    }
}

fn auth_failure(e: &AuthError) -> Failure {
    match e {
        AuthError::Missing => Failure::MissingToken,
        AuthError::Expired => Failure::ExpiredToken,
        AuthError::Invalid(_) | AuthError::NoIdentities => Failure::InvalidToken,
    }
}

/// One request through the front: `X-Amz-Target` (awsJson) or a form `Action` (awsQuery).
pub struct FrontRequest {
    pub parts: Parts,
    pub body: Bytes,
    /// `AmazonSQS.SendMessage`, or the awsQuery `Action`.
    pub operation: String,
    /// awsQuery form fields (then `body` is the form itself).
    pub form: Option<Vec<(String, String)>>,
}

pub async fn handle(iam: &Iam, req: FrontRequest) -> Response {
    let query = req.form.is_some();
    // Until the caller is known, errors take the shape of the service the target names.
    let (caller, scope) = match iam.resolve(&req.parts.headers) {
        Ok(c) => c,
        Err(e) => {
            let service = guess_service(&req, "");
            return Shape::of(&service, query).render(auth_failure(&e), &e.message());
        }
    };
    let (service, op) = match &req.form {
        Some(_) => (Service::from_scope(&scope.service), req.operation.clone()),
        None => {
            let (s, op) = Service::from_target(&req.operation, &scope.service);
            (s, op.to_owned())
        }
    };
    let shape = Shape::of(&service, query);
    let input = match &req.form {
        Some(form) => Value::Object(
            form.iter()
                .map(|(k, v)| (k.clone(), Value::from(v.clone())))
                .collect(),
        ),
        // A body that is not JSON gets no resource from this table: it is checked on `*`
        // (only an admin-like policy allows it) and moto answers the malformed request.
        None => serde_json::from_slice(&req.body).unwrap_or(Value::Null),
    };
    let region = if scope.region.is_empty() {
        iam.region.clone()
    } else {
        scope.region.clone()
    };
    let mut input = input;
    // awsQuery SQS may carry the queue in the path (`/ACCOUNT/NAME`) instead of QueueUrl.
    if query
        && service == Service::Sqs
        && input.get("QueueUrl").is_none()
        && req.parts.uri.path().trim_matches('/').contains('/')
        && let Some(m) = input.as_object_mut()
    {
        m.insert("QueueUrl".into(), Value::from(req.parts.uri.path()));
    }
    let checks = ops::checks(
        &service,
        &op,
        &input,
        Scope {
            region: &region,
            account: &iam.account_id,
        },
    );
    match iam.authorize(&caller, &checks) {
        Ok(()) => forward(iam, &req.parts, req.body).await,
        Err(d) => shape.render(Failure::AccessDenied, &d.to_string()),
    }
}

/// The service an unauthenticated request is for, from its target or its (unverified) scope.
fn guess_service(req: &FrontRequest, fallback: &str) -> Service {
    let scope = super::SigScope::from_headers(&req.parts.headers)
        .and_then(Result::ok)
        .map(|s| s.service)
        .unwrap_or_else(|| fallback.to_owned());
    match &req.form {
        Some(_) => Service::from_scope(&scope),
        None => Service::from_target(&req.operation, &scope).0,
    }
}

/// Hop-by-hop headers (RFC 9110 §7.6.1) and the length, which the client recomputes.
const DROP: [&str; 7] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "upgrade",
    "te",
    "content-length",
];

fn copy_headers(from: &HeaderMap, to: &mut HeaderMap) {
    for (k, v) in from {
        if !DROP.contains(&k.as_str()) {
            to.append(k.clone(), v.clone());
        }
    }
}

/// Send the request to the upstream as it came (method, path, query, headers, body) and
/// return the upstream's status, headers and body.
async fn forward(iam: &Iam, parts: &Parts, body: Bytes) -> Response {
    let Some(base) = &iam.upstream else {
        return upstream_error(
            "flowpilot-sim: no upstream for SQS / DynamoDB / EventBridge requests: set iam.upstream_url (or an EventBridge endpoint) in the sim config".into(),
        );
    };
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let url = format!("{}{path}", base.trim_end_matches('/'));
    let mut headers = HeaderMap::new();
    copy_headers(&parts.headers, &mut headers);
    let sent = iam
        .http
        .request(parts.method.clone(), &url)
        .headers(headers)
        .body(body)
        .send()
        .await;
    let resp = match sent {
        Ok(r) => r,
        Err(e) => return upstream_error(format!("flowpilot-sim: upstream {url} failed: {e}")),
    };
    let status = resp.status();
    let mut out_headers = HeaderMap::new();
    copy_headers(resp.headers(), &mut out_headers);
    match resp.bytes().await {
        Ok(bytes) => {
            let mut r = Response::new(Body::from(bytes));
            *r.status_mut() = status;
            *r.headers_mut() = out_headers;
            r
        }
        Err(e) => upstream_error(format!(
            "flowpilot-sim: reading the upstream's answer from {url} failed: {e}"
        )),
    }
}

/// 502: the SDKs treat it as a transient server error.
fn upstream_error(message: String) -> Response {
    tracing::warn!(%message, "front could not reach the upstream");
    (
        StatusCode::BAD_GATEWAY,
        [("content-type", "application/x-amz-json-1.0")],
        json!({ "__type": "InternalFailure", "message": message }).to_string(),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn parts(resp: Response) -> (u16, HeaderMap, Value) {
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
            .await
            .unwrap();
        (
            status,
            headers,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }

    #[tokio::test]
    async fn denial_shapes_per_service() {
        let (status, h, body) = parts(Shape::Sqs.render(Failure::AccessDenied, "no")).await;
        assert_eq!(status, 403);
        assert_eq!(h["x-amzn-query-error"], "AccessDenied;Sender");
        assert_eq!(
            body,
            json!({ "__type": "com.amazon.coral.service#AccessDeniedException", "message": "no" })
        );

        let (status, _, body) = parts(Shape::DynamoDb.render(Failure::AccessDenied, "no")).await;
        assert_eq!(status, 400);
        assert_eq!(
            body,
            json!({ "__type": "com.amazon.coral.service#AccessDeniedException", "Message": "no" })
        );

        let (status, h, body) = parts(Shape::Events.render(Failure::AccessDenied, "no")).await;
        assert_eq!(status, 400);
        assert_eq!(h["content-type"], "application/x-amz-json-1.1");
        assert_eq!(
            body,
            json!({ "__type": "AccessDeniedException", "message": "no" })
        );

        let (status, h, _) = parts(Shape::Sqs.render(Failure::InvalidToken, "bad")).await;
        assert_eq!(status, 403);
        assert_eq!(h["x-amzn-query-error"], "InvalidClientTokenId;Sender");
        let (status, _, body) = parts(Shape::DynamoDb.render(Failure::ExpiredToken, "old")).await;
        assert_eq!(status, 400);
        assert_eq!(
            body["__type"],
            "com.amazon.coral.service#ExpiredTokenException"
        );
    }

    #[test]
    fn hop_by_hop_headers_are_not_forwarded() {
        let mut from = HeaderMap::new();
        from.insert("connection", HeaderValue::from_static("close"));
        from.insert("content-length", HeaderValue::from_static("3"));
        from.insert(
            "x-amz-target",
            HeaderValue::from_static("AmazonSQS.SendMessage"),
        );
        let mut to = HeaderMap::new();
        copy_headers(&from, &mut to);
        assert_eq!(to.len(), 1);
        assert!(to.contains_key("x-amz-target"));
    }
}
