//! What each AppFlow and Customer Profiles operation authorizes: actions, resource ARNs and
//! condition keys, per the Service Authorization Reference (docs/research/iam-facts.md §1–2;
//! crates/sim/README.md "IAM enforcement" lists the sources and the assumptions).

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use crate::error::{ApiError, Service};
use crate::iam::policy::CtxValue;
use crate::iam::{Caller, Check};
use crate::state::Sim;

/// Operations the KMS grant that AppFlow creates for a customer managed `kmsArn` allows.
/// UNCONFIRMED: no AWS page lists them; these are what a flow needs to encrypt and read
/// its data.
pub const APPFLOW_GRANT_OPERATIONS: [&str; 3] = ["Decrypt", "Encrypt", "GenerateDataKey"];
/// The grant Customer Profiles creates on the domain key (Connect admin guide's workflow role).
pub const PROFILES_GRANT_OPERATIONS: [&str; 1] = ["Decrypt"];

impl Sim {
    /// Evaluate `checks` for `caller`; a denial becomes `service`'s AccessDeniedException.
    pub fn authorize(
        &self,
        service: Service,
        caller: &Caller,
        checks: &[Check],
    ) -> Result<(), ApiError> {
        self.iam
            .authorize(caller, checks)
            .map_err(|d| ApiError::denied(service, &d))
    }

    pub fn domain_arn(&self, domain: &str) -> String {
        format!(
            "arn:aws:profile:{}:{}:domains/{domain}",
            self.config.region, self.config.account_id
        )
    }

    pub fn integration_arn(&self, domain: &str, uri: &str) -> String {
        format!("{}/integrations/{uri}", self.domain_arn(domain))
    }

    pub fn object_type_arn(&self, domain: &str, object_type: &str) -> String {
        format!("{}/object-types/{object_type}", self.domain_arn(domain))
    }

    pub fn kms_via(&self, service: &str) -> String {
        format!("{service}.{}.amazonaws.com", self.config.region)
    }
}

/// `aws:RequestTag/<k>` for every tag and `aws:TagKeys` (absent without tags).
pub fn with_request_tags(mut c: Check, tags: &BTreeMap<String, String>) -> Check {
    if tags.is_empty() {
        return c;
    }
    for (k, v) in tags {
        c = c.with(&format!("aws:RequestTag/{k}"), CtxValue::Str(v.clone()));
    }
    c.with(
        "aws:TagKeys",
        CtxValue::List(tags.keys().cloned().collect()),
    )
}

/// `aws:ResourceTag/<k>` from the resource's own tags.
pub fn with_resource_tags(mut c: Check, tags: Option<&BTreeMap<String, String>>) -> Check {
    for (k, v) in tags.into_iter().flatten() {
        c = c.with(&format!("aws:ResourceTag/{k}"), CtxValue::Str(v.clone()));
    }
    c
}

/// Tags given as a JSON map (Customer Profiles `Tags`); non-string values are ignored here
/// (the handler validates them).
pub fn tag_map(v: Option<&Value>) -> BTreeMap<String, String> {
    v.and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| v.as_str().map(|s| (k.clone(), s.to_owned())))
                .collect()
        })
        .unwrap_or_default()
}

/// The grant a service creates on a customer managed key on the caller's behalf.
pub fn kms_grant(key: &str, via: String, operations: &[&str]) -> Check {
    Check::new("kms:CreateGrant", key)
        .with("kms:ViaService", CtxValue::Str(via))
        .with(
            "kms:GrantOperations",
            CtxValue::List(operations.iter().map(|s| (*s).to_owned()).collect()),
        )
        .with("kms:GrantIsForAWSResource", CtxValue::Bool(true))
}

/// The connector profile a flow definition reads from, if any.
pub fn connector_profile(def: &Map<String, Value>) -> Option<&str> {
    def.get("sourceFlowConfig")
        .and_then(|s| s.get("connectorProfileName"))
        .and_then(Value::as_str)
}

/// Everything AppFlow's CreateFlow authorizes:
/// - `appflow:CreateFlow`, which has no resource type (the SAR: policies must use `*`), with
///   `aws:RequestTag/*` and `aws:TagKeys`; a denial names the flow ARN;
/// - `appflow:TagResource` on the flow when tags are given (a dependent action);
/// - `appflow:UseConnectorProfile` on the source's connector profile;
/// - `kms:CreateGrant` on `kmsArn` via AppFlow when a customer managed key is given.
pub fn create_flow(
    sim: &Sim,
    name: &str,
    def: &Map<String, Value>,
    tags: &BTreeMap<String, String>,
) -> Vec<Check> {
    let arn = sim.flow_arn(name);
    let mut checks = vec![with_request_tags(
        Check::unscoped("appflow:CreateFlow", &arn),
        tags,
    )];
    if !tags.is_empty() {
        checks.push(with_request_tags(
            Check::new("appflow:TagResource", &arn),
            tags,
        ));
    }
    checks.extend(use_profile(sim, def));
    if let Some(key) = def.get("kmsArn").and_then(Value::as_str) {
        checks.push(kms_grant(
            key,
            sim.kms_via("appflow"),
            &APPFLOW_GRANT_OPERATIONS,
        ));
    }
    checks
}

pub fn use_profile(sim: &Sim, def: &Map<String, Value>) -> Option<Check> {
    connector_profile(def).map(|p| Check::new("appflow:UseConnectorProfile", sim.profile_arn(p)))
}

/// `action` on the connector profile ARN (the SAR's `connectorprofile` resource type takes
/// no condition keys), e.g. `appflow:UpdateConnectorProfile`.
pub fn on_profile(sim: &Sim, action: &str, name: &str) -> Check {
    Check::new(action, sim.profile_arn(name))
}

/// `action` on the flow ARN with the flow's own tags as `aws:ResourceTag/*`.
pub fn on_flow(
    sim: &Sim,
    action: &str,
    name: &str,
    tags: Option<&BTreeMap<String, String>>,
) -> Check {
    with_resource_tags(Check::new(action, sim.flow_arn(name)), tags)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn request_tags_and_tag_keys() {
        let tags: BTreeMap<String, String> =
            [("flowpilot:managed".to_owned(), "true".to_owned())].into();
        let c = with_request_tags(Check::new("appflow:CreateFlow", "*"), &tags);
        assert_eq!(
            c.context["aws:RequestTag/flowpilot:managed"],
            CtxValue::Str("true".into())
        );
        assert_eq!(
            c.context["aws:TagKeys"],
            CtxValue::List(vec!["flowpilot:managed".into()])
        );
        let bare = with_request_tags(Check::new("appflow:CreateFlow", "*"), &BTreeMap::new());
        assert!(bare.context.is_empty(), "no tags: no TagKeys key at all");
        let r = with_resource_tags(Check::new("appflow:StartFlow", "arn"), Some(&tags));
        assert_eq!(
            r.context["aws:ResourceTag/flowpilot:managed"],
            CtxValue::Str("true".into())
        );
    }

    #[test]
    fn kms_grant_carries_via_service_and_operations() {
        let c = kms_grant(
            "arn:aws:kms:us-east-1:123456789012:key/k",
            "profile.us-east-1.amazonaws.com".into(),
            &PROFILES_GRANT_OPERATIONS,
        );
        assert_eq!(c.action, "kms:CreateGrant");
        assert_eq!(
            c.context["kms:ViaService"],
            CtxValue::Str("profile.us-east-1.amazonaws.com".into())
        );
        assert_eq!(
            c.context["kms:GrantOperations"],
            CtxValue::List(vec!["Decrypt".into()])
        );
        let def = json!({ "sourceFlowConfig": { "connectorProfileName": "sf" } });
        assert_eq!(connector_profile(def.as_object().unwrap()), Some("sf"));
    }
}
