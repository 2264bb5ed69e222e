//! IAM in the simulator: identities and their keys, STS sessions, policy evaluation for every
//! AppFlow / Customer Profiles call, and the enforcing front for SQS / DynamoDB / EventBridge.
//!
//! - [`policy`]   — policy documents and evaluation (wraps `iam-rs`).
//! - [`identity`] — the identity document (`POST /_sim/iam`) and its compiled form.
//! - `caller`     — SigV4 credential scope → [`Caller`]; authentication errors; denials.
//! - `ops`        — SQS / DynamoDB / EventBridge operations → (action, resource, context).
//! - `sts`        — `AssumeRole` / `GetCallerIdentity` (awsQuery) on the simulator's port.
//! - `front`      — authorize awsJson / awsQuery requests, then forward them to moto.
//! - `gateway`    — sends each request to STS, the front, or the restJson services.

pub mod identity;
pub mod policy;

mod caller;
mod front;
mod gateway;
mod ops;
mod sts;

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use axum::http::HeaderMap;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

pub use caller::{AuthError, Caller, Denial, SigScope};
pub use gateway::gateway;
pub use identity::IdentityDocument;
pub use ops::Check;

use identity::{Identities, IdentityError, StaticKey};
use policy::{CtxValue, Decision, Request, Who};

/// `iam` in the sim config.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct IamConfig {
    /// Evaluate IAM on every request (default). `false` (`flowpilot sim --no-iam`) allows every
    /// signed request as an unrestricted local caller; STS still mints keys for any role.
    pub enforce: bool,
    /// Identities to load at start (`POST /_sim/iam` replaces them at run time).
    pub identities: Option<IdentityDocument>,
    /// Where the front forwards allowed SQS / DynamoDB / EventBridge requests (loopback only).
    /// Default: the EventBridge endpoint the simulator publishes run reports to (moto).
    pub upstream_url: Option<String>,
}

impl Default for IamConfig {
    fn default() -> Self {
        Self {
            enforce: true,
            identities: None,
            upstream_url: None,
        }
    }
}

/// Credentials minted by `AssumeRole`.
#[derive(Debug, Clone)]
pub struct Session {
    pub access_key_id: String,
    pub token: String,
    pub role_arn: String,
    pub arn: String,
    pub user_id: String,
    pub expires: DateTime<Utc>,
}

/// How many recent denials `GET /_sim/iam` lists.
const DENIAL_LOG: usize = 50;

pub struct Iam {
    pub enforce: bool,
    /// Region of ARNs when a request's credential scope names none.
    pub region: String,
    /// The simulator's account: identity documents must describe this account.
    pub account_id: String,
    identities: RwLock<Option<Arc<Identities>>>,
    sessions: Mutex<HashMap<String, Session>>,
    denials: Mutex<VecDeque<Value>>,
    /// The front's upstream (moto), if any.
    pub upstream: Option<String>,
    /// Plain-HTTP client for the upstream.
    pub http: reqwest::Client,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock cannot leave these maps half-updated in a way that
    // matters to a test double: keep serving.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Iam {
    pub fn new(
        config: &IamConfig,
        region: &str,
        account_id: &str,
        upstream: Option<String>,
    ) -> Result<Self, String> {
        let http = reqwest::Client::builder()
            .no_proxy()
            .build()
            .map_err(|e| format!("cannot build the front's HTTP client: {e}"))?;
        let iam = Self {
            enforce: config.enforce,
            region: region.to_owned(),
            account_id: account_id.to_owned(),
            identities: RwLock::new(None),
            sessions: Mutex::new(HashMap::new()),
            denials: Mutex::new(VecDeque::new()),
            upstream,
            http,
        };
        if let Some(doc) = &config.identities {
            iam.load(doc.clone())
                .map_err(|e| format!("iam.identities: {e}"))?;
        }
        Ok(iam)
    }

    /// Replace the identity document. Sessions minted earlier stay valid while their role
    /// exists in the new document (they then evaluate with the new policies, as in AWS).
    pub fn load(&self, doc: IdentityDocument) -> Result<(), IdentityError> {
        if doc.account_id != self.account_id {
            return Err(IdentityError::Account(format!(
                "{} (the simulator's resources live in account {}; set account_id in the sim config to match)",
                doc.account_id, self.account_id
            )));
        }
        let ids = Identities::compile(doc)?;
        *self.identities.write().unwrap_or_else(|p| p.into_inner()) = Some(Arc::new(ids));
        tracing::info!("IAM identity document loaded");
        Ok(())
    }

    pub fn identities(&self) -> Option<Arc<Identities>> {
        self.identities
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// `GET /_sim/iam`: enforcement, the loaded identities without secrets, live sessions and
    /// the most recent denials.
    pub fn summary(&self) -> Value {
        let now = Utc::now();
        let sessions: Vec<Value> = lock(&self.sessions)
            .values()
            .filter(|s| s.expires > now)
            .map(
                |s| json!({ "arn": s.arn, "access_key_id": s.access_key_id, "expires": s.expires }),
            )
            .collect();
        let mut v = match self.identities() {
            Some(ids) => ids.summary(),
            None => json!({ "account_id": self.account_id }),
        };
        v["enforce"] = Value::from(self.enforce);
        v["loaded"] = Value::from(self.identities().is_some());
        v["sessions"] = Value::from(sessions);
        v["recent_denials"] = Value::from(lock(&self.denials).iter().cloned().collect::<Vec<_>>());
        v
    }

    pub fn add_session(&self, s: Session) {
        let mut sessions = lock(&self.sessions);
        // Forget sessions that expired over an hour ago, so the map stays small.
        let cutoff = Utc::now() - chrono::Duration::hours(1);
        sessions.retain(|_, s| s.expires > cutoff);
        sessions.insert(s.access_key_id.clone(), s);
    }

    /// Who signed this request.
    pub fn resolve(&self, headers: &HeaderMap) -> Result<(Caller, SigScope), AuthError> {
        let scope = match SigScope::from_headers(headers) {
            None => return Err(AuthError::Missing),
            Some(Err(e)) => return Err(AuthError::Invalid(e)),
            Some(Ok(s)) => s,
        };
        let key = scope.access_key_id.as_str();
        let ids = self.identities();
        if !self.enforce {
            // Known keys keep their identity (GetCallerIdentity stays meaningful); everything
            // else is an unrestricted local caller, as before IAM existed here.
            let caller = self
                .session_caller(key, ids.as_deref())
                .or_else(|| ids.as_deref().and_then(|ids| static_caller(ids, key)))
                .unwrap_or_else(|| Caller::Local {
                    access_key_id: key.to_owned(),
                });
            return Ok((caller, scope));
        }
        let Some(ids) = ids else {
            return Err(AuthError::NoIdentities);
        };
        if let Some(c) = static_caller(&ids, key) {
            return Ok((c, scope));
        }
        let session = lock(&self.sessions).get(key).cloned();
        let Some(s) = session else {
            return Err(AuthError::Invalid(format!("unknown access key id {key}")));
        };
        let token = headers
            .get("x-amz-security-token")
            .and_then(|v| v.to_str().ok());
        if token != Some(s.token.as_str()) {
            return Err(AuthError::Invalid(format!(
                "X-Amz-Security-Token is missing or does not belong to session key {key}"
            )));
        }
        if s.expires <= Utc::now() {
            return Err(AuthError::Expired);
        }
        let caller = self.session_caller(key, Some(&ids)).ok_or_else(|| {
            AuthError::Invalid(format!("the role of session key {key} no longer exists"))
        })?;
        Ok((caller, scope))
    }

    fn session_caller(&self, key: &str, ids: Option<&Identities>) -> Option<Caller> {
        let s = lock(&self.sessions).get(key).cloned()?;
        let policies = match ids.and_then(|ids| ids.roles.get(&s.role_arn)) {
            Some(role) => Arc::clone(&role.policies),
            // Only reachable with enforcement off (roles are not checked then).
            None if !self.enforce => Arc::new(policy::PolicySet::new(Vec::new())),
            None => return None,
        };
        Some(Caller::Session {
            arn: s.arn,
            role_arn: s.role_arn,
            user_id: s.user_id,
            policies,
        })
    }

    /// A session of `role_arn` as AWS service `service` would hold it after `sts:AssumeRole`:
    /// the role's trust policy must allow the service principal (with `aws:SourceAccount` =
    /// this account). Used by the managed workflow, which acts as its execution role. Call it
    /// again before each piece of work so a reloaded identity document takes effect.
    pub fn assume_as_service(
        &self,
        service: &str,
        role_arn: &str,
        session_name: &str,
    ) -> Result<Caller, String> {
        if !self.enforce {
            return Ok(Caller::Local {
                access_key_id: format!("{service}/{session_name}"),
            });
        }
        let ids = self
            .identities()
            .ok_or_else(|| "no identity document is loaded".to_owned())?;
        let role = ids
            .roles
            .get(role_arn)
            .ok_or_else(|| format!("role {role_arn} does not exist"))?;
        let service_caller = Caller::Service {
            service: service.to_owned(),
        };
        if sts::trust_decision(self, &service_caller, role_arn, session_name, &role.trust)
            != Decision::Allow
        {
            return Err(format!(
                "the trust policy of role {role_arn} does not allow {service} to assume it"
            ));
        }
        Ok(Caller::Session {
            arn: format!(
                "arn:aws:sts::{}:assumed-role/{}/{session_name}",
                self.account_id, role.name
            ),
            role_arn: role_arn.to_owned(),
            user_id: format!("{}:{session_name}", role.role_id),
            policies: Arc::clone(&role.policies),
        })
    }

    /// Evaluate every check against the caller's identity-based policies; the first one not
    /// allowed is the denial.
    pub fn authorize(&self, caller: &Caller, checks: &[Check]) -> Result<(), Denial> {
        if !self.enforce {
            return Ok(());
        }
        for check in checks {
            let decision = self.decide(caller, check);
            if decision != Decision::Allow {
                let denial = Denial {
                    caller_arn: caller.arn(&self.account_id),
                    action: check.action.clone(),
                    resource: check.shown_resource().to_owned(),
                    explicit: decision == Decision::ExplicitDeny,
                };
                tracing::info!(%denial, "IAM denied a request");
                let mut log = lock(&self.denials);
                if log.len() == DENIAL_LOG {
                    log.pop_front();
                }
                log.push_back(json!({
                    "at": Utc::now(), "caller": denial.caller_arn, "action": denial.action,
                    "resource": denial.resource, "explicit": denial.explicit,
                }));
                return Err(denial);
            }
        }
        Ok(())
    }

    fn decide(&self, caller: &Caller, check: &Check) -> Decision {
        let (arn, principal_arn, user_id, policies, kind) = match caller {
            Caller::User {
                arn,
                user_id,
                policies,
            } => (arn, arn, user_id, policies, "User"),
            Caller::Session {
                arn,
                role_arn,
                user_id,
                policies,
            } => (arn, role_arn, user_id, policies, "AssumedRole"),
            // Service principals have no identity-based policies.
            Caller::Service { .. } => return Decision::ImplicitDeny,
            Caller::Local { .. } => return Decision::Allow,
        };
        let mut ctx = policy::Ctx::new();
        let s = |v: &str| CtxValue::Str(v.to_owned());
        ctx.insert("aws:PrincipalArn".into(), s(principal_arn));
        ctx.insert("aws:PrincipalAccount".into(), s(&self.account_id));
        ctx.insert("aws:PrincipalType".into(), s(kind));
        ctx.insert("aws:userid".into(), s(user_id));
        ctx.insert("aws:RequestedRegion".into(), s(&self.region));
        ctx.extend(check.context.clone());
        let who = Who::Aws(arn.clone());
        policies.evaluate(&Request {
            principal: &who,
            action: &check.action,
            resource: &check.resource,
            context: &ctx,
        })
    }
}

fn static_caller(ids: &Identities, key: &str) -> Option<Caller> {
    Some(match ids.keys.get(key)? {
        StaticKey::User(u) => Caller::User {
            arn: u.arn.clone(),
            user_id: identity::stable_id("AIDA", &u.arn),
            policies: Arc::clone(&u.policies),
        },
        StaticKey::Service(s) => Caller::Service { service: s.clone() },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    const ACCOUNT: &str = "123456789012";
    const ROLE: &str = "arn:aws:iam::123456789012:role/worker";

    fn doc() -> IdentityDocument {
        serde_json::from_value(json!({
            "account_id": ACCOUNT,
            "users": [{ "arn": "arn:aws:iam::123456789012:user/ops", "access_key_id": "AKIAOPS",
                "secret_access_key": "x", "policies": [{ "name": "p", "document": { "Version": "2012-10-17",
                "Statement": [{ "Effect": "Allow", "Action": "appflow:DescribeFlow", "Resource": "*",
                    "Condition": { "StringEquals": { "aws:PrincipalArn": "arn:aws:iam::123456789012:user/ops" } } }] } }] }],
            "services": [{ "service": "ecs-tasks.amazonaws.com", "access_key_id": "AKIAECS", "secret_access_key": "x" }],
            "roles": [{ "arn": ROLE, "trust_policy": { "Version": "2012-10-17", "Statement": [] },
                "policies": [{ "name": "w", "document": { "Version": "2012-10-17",
                "Statement": [{ "Effect": "Allow", "Action": "appflow:StartFlow", "Resource": "*",
                    "Condition": { "StringEquals": { "aws:PrincipalArn": ROLE } } }] } }] }]
        }))
        .unwrap()
    }

    fn iam(enforce: bool, with_doc: bool) -> Iam {
        let config = IamConfig {
            enforce,
            identities: with_doc.then(doc),
            upstream_url: None,
        };
        Iam::new(&config, "us-east-1", ACCOUNT, None).unwrap()
    }

    fn headers(key: &str, token: Option<&str>) -> HeaderMap {
        let mut h = HeaderMap::new();
        let auth = format!(
            "AWS4-HMAC-SHA256 Credential={key}/20240101/us-east-1/appflow/aws4_request, SignedHeaders=host, Signature=x"
        );
        h.insert("authorization", HeaderValue::from_str(&auth).unwrap());
        if let Some(t) = token {
            h.insert("x-amz-security-token", HeaderValue::from_str(t).unwrap());
        }
        h
    }

    fn session(iam: &Iam, expires_in: i64) {
        iam.add_session(Session {
            access_key_id: "ASIA0000000000000001".into(),
            token: "tok".into(),
            role_arn: ROLE.into(),
            arn: "arn:aws:sts::123456789012:assumed-role/worker/s".into(),
            user_id: "AROAX:s".into(),
            expires: Utc::now() + chrono::Duration::seconds(expires_in),
        });
    }

    #[test]
    fn static_keys_sessions_tokens_and_expiry() {
        let iam = iam(true, true);
        assert!(matches!(
            iam.resolve(&headers("AKIAOPS", None)),
            Ok((Caller::User { .. }, _))
        ));
        assert!(matches!(
            iam.resolve(&headers("AKIAECS", None)),
            Ok((Caller::Service { .. }, _))
        ));
        assert!(matches!(
            iam.resolve(&headers("AKIANOPE", None)),
            Err(AuthError::Invalid(_))
        ));
        assert_eq!(
            iam.resolve(&HeaderMap::new()).err(),
            Some(AuthError::Missing)
        );
        session(&iam, 600);
        let key = "ASIA0000000000000001";
        assert!(matches!(
            iam.resolve(&headers(key, Some("tok"))),
            Ok((Caller::Session { .. }, _))
        ));
        assert!(matches!(
            iam.resolve(&headers(key, None)),
            Err(AuthError::Invalid(_))
        ));
        assert!(matches!(
            iam.resolve(&headers(key, Some("other"))),
            Err(AuthError::Invalid(_))
        ));
        session(&iam, -1);
        assert_eq!(
            iam.resolve(&headers(key, Some("tok"))).err(),
            Some(AuthError::Expired)
        );
    }

    #[test]
    fn without_a_document_every_key_is_refused_with_a_hint() {
        let iam = iam(true, false);
        let e = iam.resolve(&headers("AKIAOPS", None)).err().unwrap();
        assert_eq!(e, AuthError::NoIdentities);
        assert!(
            e.message().contains("POST one to /_sim/iam"),
            "{}",
            e.message()
        );
    }

    #[test]
    fn principal_arn_is_the_user_or_the_sessions_role() {
        let iam = iam(true, true);
        let (user, _) = iam.resolve(&headers("AKIAOPS", None)).unwrap();
        assert!(
            iam.authorize(&user, &[Check::new("appflow:DescribeFlow", "*")])
                .is_ok()
        );
        let d = iam
            .authorize(&user, &[Check::new("appflow:StartFlow", "*")])
            .unwrap_err();
        assert_eq!(d.caller_arn, "arn:aws:iam::123456789012:user/ops");
        assert!(!d.explicit);
        session(&iam, 600);
        let (s, _) = iam
            .resolve(&headers("ASIA0000000000000001", Some("tok")))
            .unwrap();
        assert!(
            iam.authorize(&s, &[Check::new("appflow:StartFlow", "*")])
                .is_ok()
        );
        let (svc, _) = iam.resolve(&headers("AKIAECS", None)).unwrap();
        assert!(
            iam.authorize(&svc, &[Check::new("appflow:StartFlow", "*")])
                .is_err()
        );
        assert_eq!(
            iam.summary()["recent_denials"].as_array().map(Vec::len),
            Some(2)
        );
    }

    #[test]
    fn enforcement_off_allows_any_signed_request() {
        let iam = iam(false, false);
        let (c, _) = iam.resolve(&headers("anything", None)).unwrap();
        assert!(matches!(c, Caller::Local { .. }));
        assert!(
            iam.authorize(&c, &[Check::new("iam:CreateUser", "*")])
                .is_ok()
        );
        assert_eq!(
            iam.resolve(&HeaderMap::new()).err(),
            Some(AuthError::Missing)
        );
    }

    #[test]
    fn a_document_for_another_account_is_refused() {
        let iam = iam(true, false);
        let mut d = doc();
        d.account_id = "999999999999".into();
        assert!(iam.load(d).is_err());
        assert!(iam.load(doc()).is_ok());
    }
}
