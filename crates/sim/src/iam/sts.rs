//! AWS STS `AssumeRole` and `GetCallerIdentity` over awsQuery (form-encoded POST, XML answers
//! in the `https://sts.amazonaws.com/doc/2011-06-15/` namespace), with the members the AWS SDK
//! for Rust's STS client parses.

use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::{Duration, SecondsFormat, Utc};

use super::caller::{AuthError, Caller};
use super::identity::{role_name, stable_id};
use super::policy::{Ctx, CtxValue, Decision, Request, Who};
use super::{Check, Iam, Session};

const NS: &str = "https://sts.amazonaws.com/doc/2011-06-15/";
/// STS's own limits on DurationSeconds (the role's MaxSessionDuration caps it further).
const MIN_DURATION: i64 = 900;
const DEFAULT_DURATION: i64 = 3600;
/// The longest MaxSessionDuration a role can have; the cap when enforcement is off.
const MAX_DURATION: i64 = 43200;

pub const ACTIONS: [&str; 2] = ["AssumeRole", "GetCallerIdentity"];

/// An STS error: `<ErrorResponse><Error><Type/><Code/><Message/></Error><RequestId/>`.
pub struct StsError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl StsError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }

    fn validation(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "ValidationError", message)
    }

    pub fn auth(e: &AuthError) -> Self {
        match e {
            AuthError::Missing => Self::new(
                StatusCode::FORBIDDEN,
                "MissingAuthenticationToken",
                e.message(),
            ),
            AuthError::Expired => Self::new(StatusCode::BAD_REQUEST, "ExpiredToken", e.message()),
            AuthError::Invalid(_) | AuthError::NoIdentities => {
                Self::new(StatusCode::FORBIDDEN, "InvalidClientTokenId", e.message())
            }
        }
    }
}

impl IntoResponse for StsError {
    fn into_response(self) -> Response {
        query_error(self.status, self.code, &self.message, Some(NS))
    }
}

/// An awsQuery error document (the shape every awsQuery SDK parses).
pub fn query_error(status: StatusCode, code: &str, message: &str, ns: Option<&str>) -> Response {
    let xmlns = ns.map(|n| format!(" xmlns=\"{n}\"")).unwrap_or_default();
    let body = format!(
        "<ErrorResponse{xmlns}><Error><Type>Sender</Type><Code>{}</Code><Message>{}</Message></Error><RequestId>{}</RequestId></ErrorResponse>",
        xml_escape(code),
        xml_escape(message),
        uuid::Uuid::new_v4()
    );
    xml(status, body)
}

fn xml(status: StatusCode, body: String) -> Response {
    let mut r = (status, body).into_response();
    r.headers_mut()
        .insert("content-type", HeaderValue::from_static("text/xml"));
    r
}

pub fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&apos;")
}

fn field<'a>(form: &'a [(String, String)], name: &str) -> Option<&'a str> {
    form.iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// Handle an STS request whose `Action` is one of [`ACTIONS`].
pub fn handle(iam: &Iam, headers: &HeaderMap, form: &[(String, String)]) -> Response {
    let caller = match iam.resolve(headers) {
        Ok((c, _)) => c,
        Err(e) => return StsError::auth(&e).into_response(),
    };
    let result = match field(form, "Action") {
        Some("AssumeRole") => assume_role(iam, &caller, form),
        // GetCallerIdentity needs no permission: even an explicit deny does not stop it.
        _ => Ok(caller_identity(iam, &caller)),
    };
    result.unwrap_or_else(IntoResponse::into_response)
}

fn caller_identity(iam: &Iam, caller: &Caller) -> Response {
    let (user_id, arn) = match caller {
        Caller::User { arn, user_id, .. } | Caller::Session { arn, user_id, .. } => {
            (user_id.clone(), arn.clone())
        }
        Caller::Service { service } => (service.clone(), service.clone()),
        Caller::Local { access_key_id } => (access_key_id.clone(), caller.arn(&iam.account_id)),
    };
    let body = format!(
        "<GetCallerIdentityResponse xmlns=\"{NS}\"><GetCallerIdentityResult><Arn>{}</Arn><UserId>{}</UserId><Account>{}</Account></GetCallerIdentityResult><ResponseMetadata><RequestId>{}</RequestId></ResponseMetadata></GetCallerIdentityResponse>",
        xml_escape(&arn),
        xml_escape(&user_id),
        iam.account_id,
        uuid::Uuid::new_v4()
    );
    xml(StatusCode::OK, body)
}

fn valid_session_name(s: &str) -> bool {
    (2..=64).contains(&s.len())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "_+=,.@-".contains(c))
}

fn assume_role(
    iam: &Iam,
    caller: &Caller,
    form: &[(String, String)],
) -> Result<Response, StsError> {
    let missing = |m: &str| {
        StsError::validation(format!(
            "1 validation error detected: Value null at '{m}' failed to satisfy constraint: Member must not be null"
        ))
    };
    let role_arn = field(form, "RoleArn").ok_or_else(|| missing("roleArn"))?;
    let session_name = field(form, "RoleSessionName").ok_or_else(|| missing("roleSessionName"))?;
    if !valid_session_name(session_name) {
        return Err(StsError::validation(format!(
            "1 validation error detected: Value '{session_name}' at 'roleSessionName' failed to satisfy constraint: Member must have length between 2 and 64 and match [\\w+=,.@-]*"
        )));
    }
    let duration = match field(form, "DurationSeconds") {
        None => DEFAULT_DURATION,
        Some(d) => d
            .parse::<i64>()
            .ok()
            .filter(|d| (MIN_DURATION..=MAX_DURATION).contains(d))
            .ok_or_else(|| {
                StsError::validation(format!(
                    "1 validation error detected: Value '{d}' at 'durationSeconds' failed to satisfy constraint: Member must have value between {MIN_DURATION} and {MAX_DURATION}"
                ))
            })?,
    };
    let role_id = if iam.enforce {
        let denied = |why: &str| {
            tracing::info!(caller = ?caller, role = role_arn, why, "AssumeRole denied");
            StsError::new(
                StatusCode::FORBIDDEN,
                "AccessDenied",
                format!(
                    "User: {} is not authorized to perform: sts:AssumeRole on resource: {role_arn}",
                    caller.arn(&iam.account_id)
                ),
            )
        };
        let ids = iam
            .identities()
            .ok_or_else(|| denied("no identity document"))?;
        // AWS answers AccessDenied (not NotFound) for a role that does not exist.
        let role = ids
            .roles
            .get(role_arn)
            .ok_or_else(|| denied("no such role"))?;
        if i64::try_from(role.max_session_seconds).is_ok_and(|max| duration > max) {
            return Err(StsError::validation(
                "The requested DurationSeconds exceeds the MaxSessionDuration set for this role.",
            ));
        }
        // (a) Identity-based policies (service principals have none and need none).
        if !matches!(caller, Caller::Service { .. }) {
            iam.authorize(caller, &[Check::new("sts:AssumeRole", role_arn)])
                .map_err(|d| StsError::new(StatusCode::FORBIDDEN, "AccessDenied", d.to_string()))?;
        }
        // (b) The role's trust policy must allow this principal.
        if trust_decision(iam, caller, role_arn, session_name, &role.trust) != Decision::Allow {
            return Err(denied("trust policy"));
        }
        role.role_id.clone()
    } else {
        // Without enforcement any role ARN can be assumed (nothing checks it exists).
        stable_id("AROA", role_arn)
    };
    let account = role_arn.split(':').nth(4).unwrap_or(&iam.account_id);
    let session = Session {
        access_key_id: random_key(),
        token: random_token(),
        role_arn: role_arn.to_owned(),
        arn: format!(
            "arn:aws:sts::{account}:assumed-role/{}/{session_name}",
            role_name(role_arn)
        ),
        user_id: format!("{role_id}:{session_name}"),
        expires: Utc::now() + Duration::seconds(duration),
    };
    let secret = random_secret();
    let body = format!(
        "<AssumeRoleResponse xmlns=\"{NS}\"><AssumeRoleResult><AssumedRoleUser><Arn>{}</Arn><AssumedRoleId>{}</AssumedRoleId></AssumedRoleUser><Credentials><AccessKeyId>{}</AccessKeyId><SecretAccessKey>{}</SecretAccessKey><SessionToken>{}</SessionToken><Expiration>{}</Expiration></Credentials></AssumeRoleResult><ResponseMetadata><RequestId>{}</RequestId></ResponseMetadata></AssumeRoleResponse>",
        xml_escape(&session.arn),
        xml_escape(&session.user_id),
        session.access_key_id,
        xml_escape(&secret),
        xml_escape(&session.token),
        session.expires.to_rfc3339_opts(SecondsFormat::Secs, true),
        uuid::Uuid::new_v4()
    );
    tracing::info!(session = %session.arn, key = %session.access_key_id, "AssumeRole");
    iam.add_session(session);
    Ok(xml(StatusCode::OK, body))
}

/// Evaluate the trust policy for every principal the caller can be named as: its own ARN, its
/// role (for a session) and its account root (a trust policy naming the account trusts every
/// principal of it), or the service principal. Any explicit deny wins, then any allow.
pub(super) fn trust_decision(
    iam: &Iam,
    caller: &Caller,
    role_arn: &str,
    session_name: &str,
    trust: &super::policy::PolicySet,
) -> Decision {
    let root = format!("arn:aws:iam::{}:root", iam.account_id);
    let s = |v: &str| CtxValue::Str(v.to_owned());
    let mut ctx = Ctx::new();
    ctx.insert("sts:RoleSessionName".into(), s(session_name));
    let principals = match caller {
        Caller::User { arn, .. } => {
            ctx.insert("aws:PrincipalArn".into(), s(arn));
            ctx.insert("aws:PrincipalAccount".into(), s(&iam.account_id));
            vec![Who::Aws(arn.clone()), Who::Aws(root)]
        }
        Caller::Session {
            arn, role_arn: own, ..
        } => {
            ctx.insert("aws:PrincipalArn".into(), s(own));
            ctx.insert("aws:PrincipalAccount".into(), s(&iam.account_id));
            vec![Who::Aws(arn.clone()), Who::Aws(own.clone()), Who::Aws(root)]
        }
        Caller::Service { service } => {
            ctx.insert("aws:SourceAccount".into(), s(&iam.account_id));
            vec![Who::Service(service.clone())]
        }
        Caller::Local { .. } => return Decision::ImplicitDeny,
    };
    let decisions: Vec<Decision> = principals
        .iter()
        .map(|who| {
            trust.evaluate(&Request {
                principal: who,
                action: "sts:AssumeRole",
                resource: role_arn,
                context: &ctx,
            })
        })
        .collect();
    if decisions.contains(&Decision::ExplicitDeny) {
        Decision::ExplicitDeny
    } else if decisions.contains(&Decision::Allow) {
        Decision::Allow
    } else {
        Decision::ImplicitDeny
    }
}

fn random_from(alphabet: &[u8], n: usize) -> String {
    let mut rng = fastrand::Rng::new();
    (0..n)
        .map(|_| char::from(alphabet[rng.usize(..alphabet.len())]))
        .collect()
}

const UPPER_ALNUM: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
const BASE64: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// `ASIA` + 16 upper-case alphanumerics, like AWS's temporary access key ids.
fn random_key() -> String {
    format!("ASIA{}", random_from(UPPER_ALNUM, 16))
}

fn random_secret() -> String {
    random_from(BASE64, 40)
}

fn random_token() -> String {
    format!("FQoGZXIvYXdzE{}", random_from(BASE64, 160))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minted_credentials_have_aws_shapes() {
        let k = random_key();
        assert_eq!(k.len(), 20);
        assert!(
            k.starts_with("ASIA")
                && k[4..]
                    .bytes()
                    .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
        );
        assert_eq!(random_secret().len(), 40);
        assert_ne!(random_token(), random_token());
    }

    #[test]
    fn session_names_follow_the_sts_pattern() {
        assert!(valid_session_name("flowpilot-worker@host"));
        assert!(!valid_session_name("x"));
        assert!(!valid_session_name("has space"));
        assert!(!valid_session_name(&"a".repeat(65)));
    }

    #[test]
    fn xml_is_escaped() {
        assert_eq!(xml_escape("a<b&\"c\""), "a&lt;b&amp;&quot;c&quot;");
    }
}
