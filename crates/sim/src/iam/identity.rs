//! The identity document (who exists in the local account, with which keys and policies) and
//! its compiled form, looked up by access key id on every request.

use std::collections::HashMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::policy::{Kind, Policy, PolicyError, PolicySet};

/// The document `POST /_sim/iam` (or `iam.identities` in the config) loads. The stack's deploy
/// script writes it from the roles the template created; keep the field names stable.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct IdentityDocument {
    pub account_id: String,
    #[serde(default)]
    pub users: Vec<UserDoc>,
    /// Local stand-ins for AWS service principals (e.g. the ECS agent assuming a task role).
    #[serde(default)]
    pub services: Vec<ServiceDoc>,
    #[serde(default)]
    pub roles: Vec<RoleDoc>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct UserDoc {
    pub arn: String,
    pub access_key_id: String,
    pub secret_access_key: String,
    #[serde(default)]
    pub policies: Vec<PolicyDoc>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceDoc {
    /// The service principal, e.g. `ecs-tasks.amazonaws.com`.
    pub service: String,
    pub access_key_id: String,
    pub secret_access_key: String,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RoleDoc {
    pub arn: String,
    pub trust_policy: Value,
    #[serde(default)]
    pub policies: Vec<PolicyDoc>,
    /// The role's MaxSessionDuration (3600..=43200; AWS's default is 3600).
    #[serde(default = "default_max_session")]
    pub max_session_seconds: u64,
}

fn default_max_session() -> u64 {
    3600
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyDoc {
    pub name: String,
    pub document: Value,
}

#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("account_id must be 12 digits, got {0:?}")]
    Account(String),
    #[error("{what} {arn:?} is not an ARN of account {account} (expected {expected})")]
    Arn {
        what: &'static str,
        arn: String,
        account: String,
        expected: &'static str,
    },
    #[error("access key id {0:?} is used twice (or is empty)")]
    DuplicateKey(String),
    #[error("role {0:?} appears twice")]
    DuplicateRole(String),
    #[error("role {arn}: max_session_seconds must be within 3600..=43200, got {got}")]
    MaxSession { arn: String, got: u64 },
    #[error("service {0:?} is not a service principal (e.g. ecs-tasks.amazonaws.com)")]
    Service(String),
    #[error("{owner}: {source}")]
    Policy {
        owner: String,
        #[source]
        source: PolicyError,
    },
}

pub struct User {
    pub arn: String,
    pub policies: Arc<PolicySet>,
}

pub struct Role {
    pub arn: String,
    pub name: String,
    /// `AROA...`, stable for the role ARN (the first half of an assumed role's user id).
    pub role_id: String,
    pub trust: PolicySet,
    pub policies: Arc<PolicySet>,
    pub max_session_seconds: u64,
}

pub enum StaticKey {
    User(Arc<User>),
    Service(String),
}

/// The compiled identity document.
pub struct Identities {
    pub account_id: String,
    pub keys: HashMap<String, StaticKey>,
    pub roles: HashMap<String, Arc<Role>>,
    /// The document as loaded, for the summary.
    pub doc: IdentityDocument,
}

impl Identities {
    pub fn compile(doc: IdentityDocument) -> Result<Self, IdentityError> {
        let account = doc.account_id.clone();
        if account.len() != 12 || !account.bytes().all(|b| b.is_ascii_digit()) {
            return Err(IdentityError::Account(account));
        }
        let mut keys = HashMap::new();
        let mut add_key = |k: &str, v: StaticKey| {
            if k.is_empty() || keys.insert(k.to_owned(), v).is_some() {
                return Err(IdentityError::DuplicateKey(k.to_owned()));
            }
            Ok(())
        };
        for u in &doc.users {
            check_arn(
                "user",
                &u.arn,
                &format!("arn:aws:iam::{account}:user/"),
                &account,
            )?;
            let user = User {
                arn: u.arn.clone(),
                policies: Arc::new(policy_set(&u.arn, &u.policies)?),
            };
            add_key(&u.access_key_id, StaticKey::User(Arc::new(user)))?;
        }
        for s in &doc.services {
            if !s.service.ends_with(".amazonaws.com") {
                return Err(IdentityError::Service(s.service.clone()));
            }
            add_key(&s.access_key_id, StaticKey::Service(s.service.clone()))?;
        }
        let mut roles = HashMap::new();
        for r in &doc.roles {
            let prefix = format!("arn:aws:iam::{account}:role/");
            check_arn("role", &r.arn, &prefix, &account)?;
            if !(3600..=43200).contains(&r.max_session_seconds) {
                return Err(IdentityError::MaxSession {
                    arn: r.arn.clone(),
                    got: r.max_session_seconds,
                });
            }
            let trust =
                Policy::parse("trust_policy", &r.trust_policy, Kind::Trust).map_err(|source| {
                    IdentityError::Policy {
                        owner: r.arn.clone(),
                        source,
                    }
                })?;
            let role = Role {
                arn: r.arn.clone(),
                name: role_name(&r.arn).to_owned(),
                role_id: stable_id("AROA", &r.arn),
                trust: PolicySet::new(vec![trust]),
                policies: Arc::new(policy_set(&r.arn, &r.policies)?),
                max_session_seconds: r.max_session_seconds,
            };
            if roles.insert(r.arn.clone(), Arc::new(role)).is_some() {
                return Err(IdentityError::DuplicateRole(r.arn.clone()));
            }
        }
        Ok(Self {
            account_id: account,
            keys,
            roles,
            doc,
        })
    }

    /// What `GET /_sim/iam` shows: everything but the secrets.
    pub fn summary(&self) -> Value {
        let policy_names = |p: &[PolicyDoc]| p.iter().map(|p| p.name.clone()).collect::<Vec<_>>();
        json!({
            "account_id": self.account_id,
            "users": self.doc.users.iter().map(|u| json!({
                "arn": u.arn, "access_key_id": u.access_key_id, "policies": policy_names(&u.policies),
            })).collect::<Vec<_>>(),
            "services": self.doc.services.iter().map(|s| json!({
                "service": s.service, "access_key_id": s.access_key_id,
            })).collect::<Vec<_>>(),
            "roles": self.doc.roles.iter().map(|r| json!({
                "arn": r.arn, "policies": policy_names(&r.policies),
                "max_session_seconds": r.max_session_seconds,
            })).collect::<Vec<_>>(),
        })
    }
}

fn policy_set(owner: &str, docs: &[PolicyDoc]) -> Result<PolicySet, IdentityError> {
    let policies = docs
        .iter()
        .map(|p| Policy::parse(&p.name, &p.document, Kind::Identity))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| IdentityError::Policy {
            owner: owner.to_owned(),
            source,
        })?;
    Ok(PolicySet::new(policies))
}

fn check_arn(
    what: &'static str,
    arn: &str,
    prefix: &str,
    account: &str,
) -> Result<(), IdentityError> {
    let name = arn.strip_prefix(prefix).unwrap_or("");
    if name.is_empty() {
        return Err(IdentityError::Arn {
            what,
            arn: arn.to_owned(),
            account: account.to_owned(),
            expected: if what == "user" {
                "arn:aws:iam::ACCOUNT:user/[PATH/]NAME"
            } else {
                "arn:aws:iam::ACCOUNT:role/[PATH/]NAME"
            },
        });
    }
    Ok(())
}

/// The role name is the last path segment (`role/path/NAME`); assumed-role ARNs use it alone.
pub fn role_name(arn: &str) -> &str {
    arn.rsplit('/').next().unwrap_or(arn)
}

/// A unique-id lookalike (`AIDA`/`AROA` + 17 upper-case alphanumerics) derived from `seed`,
/// so a user or role keeps its id across reloads of the same document.
pub fn stable_id(prefix: &str, seed: &str) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    // FNV-1a: deterministic across processes (unlike std's RandomState hasher).
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in seed.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    let mut rng = fastrand::Rng::with_seed(h);
    let tail: String = (0..17)
        .map(|_| char::from(ALPHABET[rng.usize(..ALPHABET.len())]))
        .collect();
    format!("{prefix}{tail}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(v: Value) -> Result<Identities, String> {
        let d: IdentityDocument = serde_json::from_value(v).map_err(|e| e.to_string())?;
        Identities::compile(d).map_err(|e| e.to_string())
    }

    fn admin_policy() -> Value {
        json!([{ "name": "admin", "document": { "Version": "2012-10-17",
            "Statement": [{ "Effect": "Allow", "Action": "*", "Resource": "*" }] } }])
    }

    #[test]
    fn a_valid_document_compiles_and_its_summary_has_no_secrets() {
        let ids = doc(json!({
            "account_id": "123456789012",
            "users": [{ "arn": "arn:aws:iam::123456789012:user/admin", "access_key_id": "AKIAADMIN",
                        "secret_access_key": "s3cr3t", "policies": admin_policy() }],
            "services": [{ "service": "ecs-tasks.amazonaws.com", "access_key_id": "AKIAECS", "secret_access_key": "s3cr3t" }],
            "roles": [{ "arn": "arn:aws:iam::123456789012:role/worker",
                        "trust_policy": { "Version": "2012-10-17", "Statement": [] }, "policies": [] }]
        }))
        .unwrap();
        assert!(matches!(
            ids.keys.get("AKIAADMIN"),
            Some(StaticKey::User(_))
        ));
        assert!(
            matches!(ids.keys.get("AKIAECS"), Some(StaticKey::Service(s)) if s == "ecs-tasks.amazonaws.com")
        );
        let role = &ids.roles["arn:aws:iam::123456789012:role/worker"];
        assert_eq!(
            (role.name.as_str(), role.max_session_seconds),
            ("worker", 3600)
        );
        assert!(role.role_id.starts_with("AROA") && role.role_id.len() == 21);
        let summary = ids.summary().to_string();
        assert!(!summary.contains("s3cr3t"), "{summary}");
        assert!(summary.contains("AKIAADMIN") && summary.contains("admin"));
    }

    #[test]
    fn invalid_documents_are_refused_with_a_reason() {
        let base = |users: Value| json!({ "account_id": "123456789012", "users": users });
        let user = |arn: &str, key: &str| json!({ "arn": arn, "access_key_id": key, "secret_access_key": "x" });
        let e = doc(json!({ "account_id": "12" })).err().unwrap();
        assert!(e.contains("12 digits"), "{e}");
        let e = doc(base(json!([user("arn:aws:iam::999999999999:user/a", "K")])))
            .err()
            .unwrap();
        assert!(e.contains("not an ARN of account"), "{e}");
        let e = doc(base(json!([
            user("arn:aws:iam::123456789012:user/a", "K"),
            user("arn:aws:iam::123456789012:user/b", "K")
        ])))
        .err()
        .unwrap();
        assert!(e.contains("used twice"), "{e}");
        let e = doc(json!({ "account_id": "123456789012", "user": [] }))
            .err()
            .unwrap();
        assert!(e.contains("unknown field"), "{e}");
        let bad_policy = json!([{ "name": "p", "document": { "Version": "2012-10-17", "Statement": [{ "Effect": "Allow" }] } }]);
        let e = doc(json!({ "account_id": "123456789012", "users": [{ "arn": "arn:aws:iam::123456789012:user/a",
            "access_key_id": "K", "secret_access_key": "x", "policies": bad_policy }] })).err().unwrap();
        assert!(e.contains("user/a"), "{e}");
    }

    #[test]
    fn stable_ids_depend_only_on_the_seed() {
        assert_eq!(stable_id("AROA", "r"), stable_id("AROA", "r"));
        assert_ne!(stable_id("AROA", "r"), stable_id("AROA", "s"));
        assert_eq!(
            role_name("arn:aws:iam::123456789012:role/path/worker"),
            "worker"
        );
    }
}
