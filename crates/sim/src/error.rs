//! Errors: `SimError` for starting the simulator, `ApiError` for wire-level service errors.

use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

/// Why the simulator could not start.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error(
        "refusing to bind the simulator to non-loopback address {0}: it has no authentication, use 127.0.0.1 or ::1"
    )]
    NonLoopbackBind(std::net::IpAddr),
    #[error("cannot bind {addr}: {source}")]
    Bind {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error(
        "no EventBridge endpoint configured: set AWS_ENDPOINT_URL_EVENTBRIDGE (or AWS_ENDPOINT_URL) to a local EventBridge such as moto, set `events.endpoint_url` in the sim config, or disable events with --no-events"
    )]
    NoEventsEndpoint,
    #[error(
        "refusing EventBridge endpoint {0}: the simulator only publishes to loopback endpoints (e.g. http://127.0.0.1:PORT)"
    )]
    NonLoopbackEventsEndpoint(String),
    #[error("invalid sim config: {0}")]
    Config(String),
}

/// Which service's error conventions apply (the casing of the message member differs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    AppFlow,
    Profiles,
}

/// Error shapes modelled by AppFlow and Customer Profiles.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    Validation,
    BadRequest,
    UnsupportedOperation,
    AccessDenied,
    NotFound,
    Conflict,
    /// An account quota (flows, concurrent runs) would be exceeded.
    ServiceQuotaExceeded,
    /// AppFlow could not authenticate with the connector (the SaaS application).
    ConnectorAuthentication,
    Throttling,
    Internal,
    UnknownOperation,
    /// Unknown access key or session token.
    UnrecognizedClient,
    ExpiredToken,
    MissingAuthenticationToken,
}

impl ErrorKind {
    fn status(self) -> StatusCode {
        match self {
            ErrorKind::Validation | ErrorKind::BadRequest | ErrorKind::UnsupportedOperation => {
                StatusCode::BAD_REQUEST
            }
            ErrorKind::AccessDenied
            | ErrorKind::UnrecognizedClient
            | ErrorKind::ExpiredToken
            | ErrorKind::MissingAuthenticationToken => StatusCode::FORBIDDEN,
            ErrorKind::NotFound | ErrorKind::UnknownOperation => StatusCode::NOT_FOUND,
            ErrorKind::Conflict => StatusCode::CONFLICT,
            ErrorKind::ServiceQuotaExceeded => StatusCode::PAYMENT_REQUIRED,
            ErrorKind::ConnectorAuthentication => StatusCode::UNAUTHORIZED,
            ErrorKind::Throttling => StatusCode::TOO_MANY_REQUESTS,
            ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn code(self) -> &'static str {
        match self {
            ErrorKind::Validation => "ValidationException",
            ErrorKind::BadRequest => "BadRequestException",
            ErrorKind::UnsupportedOperation => "UnsupportedOperationException",
            ErrorKind::AccessDenied => "AccessDeniedException",
            ErrorKind::NotFound => "ResourceNotFoundException",
            ErrorKind::Conflict => "ConflictException",
            ErrorKind::ServiceQuotaExceeded => "ServiceQuotaExceededException",
            ErrorKind::ConnectorAuthentication => "ConnectorAuthenticationException",
            ErrorKind::Throttling => "ThrottlingException",
            ErrorKind::Internal => "InternalServerException",
            ErrorKind::UnknownOperation => "UnknownOperationException",
            ErrorKind::UnrecognizedClient => "UnrecognizedClientException",
            ErrorKind::ExpiredToken => "ExpiredTokenException",
            ErrorKind::MissingAuthenticationToken => "MissingAuthenticationTokenException",
        }
    }
}

/// A modelled service error, rendered as restJson1: status, `X-Amzn-ErrorType`, JSON message.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub service: Service,
    pub kind: ErrorKind,
    pub message: String,
}

impl ApiError {
    pub fn new(service: Service, kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            service,
            kind,
            message: message.into(),
        }
    }

    pub fn appflow(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self::new(Service::AppFlow, kind, message)
    }

    /// Customer Profiles models no ValidationException: bad input is BadRequestException.
    pub fn profiles(kind: ErrorKind, message: impl Into<String>) -> Self {
        let kind = if kind == ErrorKind::Validation {
            ErrorKind::BadRequest
        } else {
            kind
        };
        Self::new(Service::Profiles, kind, message)
    }
}

impl ApiError {
    /// A request IAM refused, in this service's shape (403 AccessDeniedException).
    pub fn denied(service: Service, denial: &crate::iam::Denial) -> Self {
        Self::new(service, ErrorKind::AccessDenied, denial.to_string())
    }

    /// A request that could not be authenticated.
    pub fn unauthenticated(service: Service, e: &crate::iam::AuthError) -> Self {
        use crate::iam::AuthError;
        let kind = match e {
            AuthError::Missing => ErrorKind::MissingAuthenticationToken,
            AuthError::Expired => ErrorKind::ExpiredToken,
            AuthError::Invalid(_) | AuthError::NoIdentities => ErrorKind::UnrecognizedClient,
        };
        Self::new(service, kind, e.message())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let member = match self.service {
            Service::AppFlow => "message",
            Service::Profiles => "Message",
        };
        let body = serde_json::json!({ member: self.message });
        let mut resp = (self.kind.status(), axum::Json(body)).into_response();
        resp.headers_mut().insert(
            "x-amzn-errortype",
            HeaderValue::from_static(self.kind.code()),
        );
        resp
    }
}
