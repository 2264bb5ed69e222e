//! Who signed a request: the SigV4 credential scope, the resolved caller, and the two ways
//! a request can fail IAM (not authenticated / not authorized).

use std::fmt;
use std::sync::Arc;

use axum::http::HeaderMap;

use super::policy::PolicySet;

/// `Credential=AKID/DATE/REGION/SERVICE/aws4_request` of a SigV4 `Authorization` header.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SigScope {
    pub access_key_id: String,
    pub region: String,
    pub service: String,
}

impl SigScope {
    /// `None` when there is no `Authorization` header at all; `Some(Err)` when it is not SigV4.
    pub fn from_headers(headers: &HeaderMap) -> Option<Result<SigScope, String>> {
        let value = headers.get("authorization")?;
        let Ok(value) = value.to_str() else {
            return Some(Err("the Authorization header is not ASCII".into()));
        };
        Some(Self::parse(value))
    }

    pub fn parse(header: &str) -> Result<SigScope, String> {
        let rest = header
            .strip_prefix("AWS4-HMAC-SHA256")
            .ok_or_else(|| "Authorization must be AWS4-HMAC-SHA256 (SigV4)".to_owned())?;
        let credential = rest
            .split(',')
            .map(str::trim)
            .find_map(|p| p.strip_prefix("Credential="))
            .ok_or_else(|| "Authorization has no Credential=".to_owned())?;
        let mut parts = credential.split('/');
        let (Some(akid), Some(_date), Some(region), Some(service)) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(format!(
                "Credential {credential:?} is not AKID/DATE/REGION/SERVICE/aws4_request"
            ));
        };
        if akid.is_empty() {
            return Err("Credential has an empty access key id".into());
        }
        Ok(SigScope {
            access_key_id: akid.to_owned(),
            region: region.to_owned(),
            service: service.to_owned(),
        })
    }
}

/// The identity a request acts as, resolved from its access key id.
#[derive(Clone)]
pub enum Caller {
    User {
        arn: String,
        user_id: String,
        policies: Arc<PolicySet>,
    },
    /// A local stand-in for an AWS service principal: no identity policies, may only assume
    /// roles whose trust policy names it.
    Service { service: String },
    /// An `sts:AssumeRole` session, evaluated with its role's policies.
    Session {
        arn: String,
        role_arn: String,
        /// `AROA...:SESSION`
        user_id: String,
        policies: Arc<PolicySet>,
    },
    /// Enforcement is off (`--no-iam`): a signed request with a key the simulator does not know.
    Local { access_key_id: String },
}

impl Caller {
    /// The ARN AWS names in `User: ... is not authorized` messages.
    pub fn arn(&self, account: &str) -> String {
        match self {
            Caller::User { arn, .. } | Caller::Session { arn, .. } => arn.clone(),
            Caller::Service { service } => service.clone(),
            Caller::Local { .. } => format!("arn:aws:iam::{account}:user/sim-local"),
        }
    }
}

impl fmt::Debug for Caller {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Caller::User { arn, .. } | Caller::Session { arn, .. } => write!(f, "Caller({arn})"),
            Caller::Service { service } => write!(f, "Caller(service {service})"),
            Caller::Local { access_key_id } => write!(f, "Caller(local {access_key_id})"),
        }
    }
}

/// Why a request was not authenticated. Each protocol renders these in its own error shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthError {
    /// No `Authorization` header.
    Missing,
    /// Unknown access key, wrong or missing session token, or an unparseable header.
    Invalid(String),
    /// The session's credentials have expired.
    Expired,
    /// Enforcement is on but no identity document is loaded.
    NoIdentities,
}

pub const INVALID_TOKEN: &str = "The security token included in the request is invalid.";
pub const EXPIRED_TOKEN: &str = "The security token included in the request is expired";

impl AuthError {
    /// The message AWS sends, plus a hint where the simulator knows more.
    pub fn message(&self) -> String {
        match self {
            AuthError::Missing => "Missing Authentication Token".into(),
            AuthError::Invalid(detail) => format!("{INVALID_TOKEN} (flowpilot-sim: {detail})"),
            AuthError::Expired => EXPIRED_TOKEN.into(),
            AuthError::NoIdentities => format!(
                "{INVALID_TOKEN} (flowpilot-sim: IAM enforcement is on and no identity document is loaded: POST one to /_sim/iam, start with --iam FILE or set iam.identities in the config)"
            ),
        }
    }
}

/// A request IAM refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denial {
    pub caller_arn: String,
    pub action: String,
    pub resource: String,
    pub explicit: bool,
}

impl fmt::Display for Denial {
    /// AWS's wording for a denial by identity-based policies.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Denial {
            caller_arn,
            action,
            resource,
            explicit,
        } = self;
        write!(
            f,
            "User: {caller_arn} is not authorized to perform: {action} on resource: {resource} "
        )?;
        if *explicit {
            write!(f, "with an explicit deny in an identity-based policy")
        } else {
            write!(
                f,
                "because no identity-based policy allows the {action} action"
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sigv4_credential_scope_is_parsed() {
        let h = "AWS4-HMAC-SHA256 Credential=ASIAXYZ/20240101/us-east-1/sqs/aws4_request, SignedHeaders=host;x-amz-date, Signature=abc";
        assert_eq!(
            SigScope::parse(h),
            Ok(SigScope {
                access_key_id: "ASIAXYZ".into(),
                region: "us-east-1".into(),
                service: "sqs".into()
            })
        );
        assert!(SigScope::parse("Basic dXNlcjpwYXNz").is_err());
        assert!(SigScope::parse("AWS4-HMAC-SHA256 SignedHeaders=host").is_err());
        assert!(SigScope::parse("AWS4-HMAC-SHA256 Credential=AK/2024").is_err());
    }

    #[test]
    fn denial_messages_use_aws_wording() {
        let mut d = Denial {
            caller_arn: "arn:aws:sts::123456789012:assumed-role/w/s".into(),
            action: "appflow:CreateFlow".into(),
            resource: "arn:aws:appflow:us-east-1:123456789012:flow/x".into(),
            explicit: false,
        };
        assert_eq!(
            d.to_string(),
            "User: arn:aws:sts::123456789012:assumed-role/w/s is not authorized to perform: appflow:CreateFlow on resource: arn:aws:appflow:us-east-1:123456789012:flow/x because no identity-based policy allows the appflow:CreateFlow action"
        );
        d.explicit = true;
        assert!(
            d.to_string()
                .ends_with("flow/x with an explicit deny in an identity-based policy")
        );
    }
}
