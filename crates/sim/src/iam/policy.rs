//! IAM policy evaluation: a thin wrapper over the `iam-rs` crate.
//!
//! Documents are parsed once (when an identity document is loaded); a request is a principal,
//! an action, a resource ARN (or `*`) and a context of string / string-list values. The answer
//! follows AWS's evaluation logic for one account's identity-based policies (or one trust
//! policy): an explicit deny in any statement wins, otherwise any matching allow allows,
//! otherwise the request is implicitly denied.
//! <https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_evaluation-logic.html>

use std::collections::BTreeMap;

use iam_rs::{
    Arn, Context, ContextValue, Decision as IamDecision, EvaluationOptions, IAMPolicy, IAMRequest,
    PolicyEvaluator, Principal, PrincipalId,
};
use serde_json::Value;

/// The outcome of evaluating a request against a set of policies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Allow,
    /// No statement allowed the request (and none denied it).
    ImplicitDeny,
    /// A Deny statement matched.
    ExplicitDeny,
}

#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("policy {name:?} is not a valid IAM policy document: {reason}")]
    Invalid { name: String, reason: String },
}

/// Who is asking, as a policy `Principal` element would name it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Who {
    /// An IAM user, role, assumed-role session or account root ARN.
    Aws(String),
    /// A service principal such as `ecs-tasks.amazonaws.com`.
    Service(String),
}

/// A request context value. IAM context keys are either single- or multi-valued strings here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CtxValue {
    Str(String),
    List(Vec<String>),
    /// For `Bool` conditions (e.g. `kms:GrantIsForAWSResource`).
    Bool(bool),
}

pub type Ctx = BTreeMap<String, CtxValue>;

/// One authorization question.
#[derive(Debug, Clone)]
pub struct Request<'a> {
    pub principal: &'a Who,
    pub action: &'a str,
    /// A resource ARN, or `*` for actions that do not support resource-level permissions.
    pub resource: &'a str,
    pub context: &'a Ctx,
}

/// Identity-based policies name actions and resources; trust policies (a role's resource
/// policy) name a principal instead of a resource; other resource-based policies (queue, topic
/// and key policies) name both.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Identity,
    Trust,
    Resource,
}

/// A parsed policy document with its name (for summaries and messages).
#[derive(Debug, Clone)]
pub struct Policy {
    pub name: String,
    kind: Kind,
    doc: IAMPolicy,
}

impl Policy {
    pub fn parse(name: &str, document: &Value, kind: Kind) -> Result<Self, PolicyError> {
        let invalid = |reason: String| PolicyError::Invalid {
            name: name.to_owned(),
            reason,
        };
        let doc: IAMPolicy =
            serde_json::from_value(document.clone()).map_err(|e| invalid(e.to_string()))?;
        // iam-rs accepts statements missing these and then never matches them, which would
        // turn a typo in a deployed policy into a silent deny: refuse the document instead.
        for (i, st) in doc.statement.iter().enumerate() {
            if st.action.is_some() == st.not_action.is_some() {
                return Err(invalid(format!(
                    "statement {i} needs exactly one of Action / NotAction"
                )));
            }
            match kind {
                Kind::Identity if st.resource.is_some() == st.not_resource.is_some() => {
                    return Err(invalid(format!(
                        "statement {i} needs exactly one of Resource / NotResource"
                    )));
                }
                Kind::Identity if st.principal.is_some() || st.not_principal.is_some() => {
                    return Err(invalid(format!(
                        "statement {i}: identity-based policies have no Principal"
                    )));
                }
                Kind::Resource if st.resource.is_some() == st.not_resource.is_some() => {
                    return Err(invalid(format!(
                        "statement {i} needs exactly one of Resource / NotResource"
                    )));
                }
                Kind::Trust | Kind::Resource
                    if st.principal.is_some() == st.not_principal.is_some() =>
                {
                    return Err(invalid(format!(
                        "statement {i} needs exactly one of Principal / NotPrincipal"
                    )));
                }
                _ => {}
            }
        }
        // Catch resource patterns iam-rs cannot parse now, not as an evaluation error on every
        // request later (an evaluation error denies the request, which would be confusing).
        for st in &doc.statement {
            for pattern in resource_patterns(st) {
                if pattern != "*" && Arn::parse(pattern).is_err() {
                    return Err(invalid(format!(
                        "resource {pattern:?} is neither \"*\" nor an ARN"
                    )));
                }
            }
        }
        Ok(Self {
            name: name.to_owned(),
            kind,
            doc,
        })
    }
}

fn resource_patterns(st: &iam_rs::IAMStatement) -> Vec<&str> {
    let mut out = Vec::new();
    for r in [&st.resource, &st.not_resource].into_iter().flatten() {
        match r {
            iam_rs::IAMResource::Single(s) => out.push(s.as_str()),
            iam_rs::IAMResource::Multiple(v) => out.extend(v.iter().map(String::as_str)),
        }
    }
    out
}

/// Every policy attached to one identity, evaluated together.
#[derive(Debug, Clone)]
pub struct PolicySet {
    names: Vec<String>,
    evaluator: PolicyEvaluator,
}

impl PolicySet {
    /// All policies must be of one kind (an identity's policies, one role's trust policy, or
    /// one resource's policy).
    pub fn new(policies: Vec<Policy>) -> Self {
        let trust = policies.iter().any(|p| p.kind == Kind::Trust);
        let names = policies.iter().map(|p| p.name.clone()).collect();
        let evaluator =
            PolicyEvaluator::with_policies(policies.into_iter().map(|p| p.doc).collect())
                // A trust policy is attached to the role: its statements have no Resource element
                // and apply to the role itself.
                .with_options(EvaluationOptions {
                    ignore_resource_constraints: trust,
                    ..EvaluationOptions::default()
                });
        Self { names, evaluator }
    }

    pub fn names(&self) -> &[String] {
        &self.names
    }

    pub fn evaluate(&self, req: &Request<'_>) -> Decision {
        let principal = match req.principal {
            Who::Aws(arn) => Principal::Aws(PrincipalId::String(arn.clone())),
            Who::Service(s) => Principal::Service(PrincipalId::String(s.clone())),
        };
        let request = IAMRequest::new_with_context(
            principal,
            req.action,
            resource_arn(req.resource),
            context(req.context),
        );
        match self.evaluator.evaluate(&request) {
            Ok(r) => match r.decision {
                IamDecision::Allow => Decision::Allow,
                IamDecision::Deny => Decision::ExplicitDeny,
                IamDecision::NotApplicable => Decision::ImplicitDeny,
            },
            // Fail closed: a request the evaluator cannot judge is not allowed.
            Err(e) => {
                tracing::warn!(action = req.action, resource = req.resource, error = %e, "IAM evaluation error; denying");
                Decision::ImplicitDeny
            }
        }
    }
}

/// `*` (an action without resource-level permissions) becomes an ARN that only the policy
/// resource `*` matches: its partition and service never occur in a real pattern, and iam-rs
/// never lets a wildcard stand for the service.
fn resource_arn(resource: &str) -> Arn {
    match Arn::parse(resource) {
        Ok(arn) if resource != "*" => arn,
        _ => Arn {
            partition: "sim-unscoped".into(),
            service: "sim-unscoped".into(),
            region: String::new(),
            account_id: String::new(),
            resource: "*".into(),
        },
    }
}

fn context(ctx: &Ctx) -> Context {
    let mut c = Context::new();
    for (k, v) in ctx {
        let v = match v {
            CtxValue::Str(s) => ContextValue::String(s.clone()),
            CtxValue::List(l) => ContextValue::StringList(l.clone()),
            CtxValue::Bool(b) => ContextValue::Boolean(*b),
        };
        c.insert(k.clone(), v);
    }
    c
}

/// Cases from AWS's documentation of policy evaluation and condition operators:
/// - <https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_evaluation-logic.html>
/// - <https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_elements_condition_operators.html>
/// - <https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_condition-single-vs-multi-valued-context-keys.html>
/// - <https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_elements_condition_logic_multiple_context_keys_or_values.html>
/// - <https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_elements_principal.html>
#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const FLOW: &str = "arn:aws:appflow:us-east-1:123456789012:flow/fp-x-b0001";
    const USER: &str = "arn:aws:iam::123456789012:user/alice";

    fn set(docs: &[Value]) -> PolicySet {
        PolicySet::new(
            docs.iter()
                .enumerate()
                .map(|(i, d)| {
                    let kind = if d.to_string().contains("\"Principal\"") {
                        Kind::Trust
                    } else {
                        Kind::Identity
                    };
                    Policy::parse(&format!("p{i}"), d, kind).unwrap()
                })
                .collect(),
        )
    }

    fn doc(statements: Value) -> Value {
        json!({ "Version": "2012-10-17", "Statement": statements })
    }

    fn ctx(pairs: &[(&str, CtxValue)]) -> Ctx {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect()
    }

    fn s(v: &str) -> CtxValue {
        CtxValue::Str(v.into())
    }

    fn list(v: &[&str]) -> CtxValue {
        CtxValue::List(v.iter().map(|s| (*s).to_owned()).collect())
    }

    fn eval(p: &PolicySet, action: &str, resource: &str, c: &Ctx) -> Decision {
        let who = Who::Aws(USER.into());
        p.evaluate(&Request {
            principal: &who,
            action,
            resource,
            context: c,
        })
    }

    #[test]
    fn explicit_deny_wins_over_allow_even_across_policies() {
        let allow = doc(json!([{ "Effect": "Allow", "Action": "appflow:*", "Resource": "*" }]));
        let deny =
            doc(json!([{ "Effect": "Deny", "Action": "appflow:StartFlow", "Resource": FLOW }]));
        let p = set(&[allow.clone(), deny]);
        assert_eq!(
            eval(&p, "appflow:StartFlow", FLOW, &Ctx::new()),
            Decision::ExplicitDeny
        );
        assert_eq!(
            eval(&p, "appflow:DescribeFlow", FLOW, &Ctx::new()),
            Decision::Allow
        );
        // The order of policies does not matter.
        let deny_first = set(&[
            doc(json!({ "Effect": "Deny", "Action": "appflow:*", "Resource": "*" })),
            allow,
        ]);
        assert_eq!(
            eval(&deny_first, "appflow:StartFlow", FLOW, &Ctx::new()),
            Decision::ExplicitDeny
        );
    }

    #[test]
    fn no_matching_statement_is_an_implicit_deny() {
        assert_eq!(
            eval(&set(&[]), "appflow:StartFlow", FLOW, &Ctx::new()),
            Decision::ImplicitDeny
        );
        let other = set(&[doc(
            json!([{ "Effect": "Allow", "Action": "sqs:SendMessage", "Resource": "*" }]),
        )]);
        assert_eq!(
            eval(&other, "appflow:StartFlow", FLOW, &Ctx::new()),
            Decision::ImplicitDeny
        );
        // Action names are case-insensitive.
        assert_eq!(
            eval(&other, "SQS:sendmessage", FLOW, &Ctx::new()),
            Decision::Allow
        );
    }

    #[test]
    fn wildcard_resource_arns_match_per_segment() {
        let p = set(&[doc(
            json!([{ "Effect": "Allow", "Action": "appflow:StartFlow",
            "Resource": "arn:aws:appflow:us-east-1:123456789012:flow/fp-*" }]),
        )]);
        let c = Ctx::new();
        assert_eq!(eval(&p, "appflow:StartFlow", FLOW, &c), Decision::Allow);
        assert_eq!(
            eval(
                &p,
                "appflow:StartFlow",
                "arn:aws:appflow:us-east-1:123456789012:flow/other",
                &c
            ),
            Decision::ImplicitDeny
        );
        assert_eq!(
            eval(
                &p,
                "appflow:StartFlow",
                "arn:aws:appflow:eu-west-1:123456789012:flow/fp-x",
                &c
            ),
            Decision::ImplicitDeny
        );
        let q = set(&[doc(
            json!([{ "Effect": "Allow", "Action": "appflow:StartFlow",
            "Resource": "arn:aws:appflow:*:123456789012:flow/fp-?-b0001" }]),
        )]);
        assert_eq!(
            eval(
                &q,
                "appflow:StartFlow",
                "arn:aws:appflow:eu-west-1:123456789012:flow/fp-y-b0001",
                &c
            ),
            Decision::Allow
        );
        assert_eq!(eval(&q, "appflow:StartFlow", FLOW, &c), Decision::Allow);
        assert_eq!(
            eval(
                &q,
                "appflow:StartFlow",
                "arn:aws:appflow:us-east-1:123456789012:flow/fp-xy-b0001",
                &c
            ),
            Decision::ImplicitDeny
        );
    }

    #[test]
    fn unscoped_requests_match_only_the_star_resource() {
        let scoped = set(&[doc(
            json!([{ "Effect": "Allow", "Action": "appflow:ListFlows",
            "Resource": "arn:aws:appflow:*:*:*" }]),
        )]);
        assert_eq!(
            eval(&scoped, "appflow:ListFlows", "*", &Ctx::new()),
            Decision::ImplicitDeny
        );
        let star = set(&[doc(
            json!([{ "Effect": "Allow", "Action": "appflow:ListFlows", "Resource": "*" }]),
        )]);
        assert_eq!(
            eval(&star, "appflow:ListFlows", "*", &Ctx::new()),
            Decision::Allow
        );
    }

    #[test]
    fn not_action_allows_everything_but_the_listed_actions() {
        let p = set(&[doc(
            json!([{ "Effect": "Allow", "NotAction": ["iam:*", "sts:*"], "Resource": "*" }]),
        )]);
        assert_eq!(
            eval(&p, "appflow:CreateFlow", FLOW, &Ctx::new()),
            Decision::Allow
        );
        assert_eq!(
            eval(
                &p,
                "iam:CreateUser",
                "arn:aws:iam::123456789012:user/x",
                &Ctx::new()
            ),
            Decision::ImplicitDeny
        );
    }

    fn tagged_create() -> PolicySet {
        set(&[doc(
            json!([{ "Effect": "Allow", "Action": "appflow:CreateFlow", "Resource": "*",
            "Condition": { "StringEquals": { "aws:RequestTag/flowpilot:managed": "true" } } }]),
        )])
    }

    #[test]
    fn string_equals_with_an_absent_key_is_false_and_if_exists_is_true() {
        let p = tagged_create();
        let tag = |v: &str| ctx(&[("aws:RequestTag/flowpilot:managed", s(v))]);
        assert_eq!(
            eval(&p, "appflow:CreateFlow", FLOW, &tag("true")),
            Decision::Allow
        );
        assert_eq!(
            eval(&p, "appflow:CreateFlow", FLOW, &tag("false")),
            Decision::ImplicitDeny
        );
        assert_eq!(
            eval(&p, "appflow:CreateFlow", FLOW, &Ctx::new()),
            Decision::ImplicitDeny
        );

        let if_exists = set(&[doc(
            json!([{ "Effect": "Allow", "Action": "appflow:CreateFlow", "Resource": "*",
            "Condition": { "StringEqualsIfExists": { "aws:RequestTag/flowpilot:managed": "true" } } }]),
        )]);
        assert_eq!(
            eval(&if_exists, "appflow:CreateFlow", FLOW, &Ctx::new()),
            Decision::Allow
        );
        assert_eq!(
            eval(&if_exists, "appflow:CreateFlow", FLOW, &tag("false")),
            Decision::ImplicitDeny
        );
    }

    #[test]
    fn condition_key_names_are_case_insensitive() {
        let p = tagged_create();
        let c = ctx(&[("AWS:requesttag/flowpilot:managed", s("true"))]);
        assert_eq!(eval(&p, "appflow:CreateFlow", FLOW, &c), Decision::Allow);
    }

    #[test]
    fn multiple_values_of_one_key_are_ored_and_keys_are_anded() {
        let p = set(&[doc(
            json!([{ "Effect": "Allow", "Action": "kms:CreateGrant", "Resource": "*",
            "Condition": { "StringEquals": {
                "kms:ViaService": ["appflow.us-east-1.amazonaws.com", "profile.us-east-1.amazonaws.com"],
                "aws:PrincipalAccount": "123456789012" } } }]),
        )]);
        let key = "arn:aws:kms:us-east-1:123456789012:key/k";
        let c = |via: &str, acct: &str| {
            ctx(&[
                ("kms:ViaService", s(via)),
                ("aws:PrincipalAccount", s(acct)),
            ])
        };
        assert_eq!(
            eval(
                &p,
                "kms:CreateGrant",
                key,
                &c("appflow.us-east-1.amazonaws.com", "123456789012")
            ),
            Decision::Allow
        );
        assert_eq!(
            eval(
                &p,
                "kms:CreateGrant",
                key,
                &c("profile.us-east-1.amazonaws.com", "123456789012")
            ),
            Decision::Allow
        );
        assert_eq!(
            eval(
                &p,
                "kms:CreateGrant",
                key,
                &c("s3.us-east-1.amazonaws.com", "123456789012")
            ),
            Decision::ImplicitDeny
        );
        assert_eq!(
            eval(
                &p,
                "kms:CreateGrant",
                key,
                &c("appflow.us-east-1.amazonaws.com", "999999999999")
            ),
            Decision::ImplicitDeny
        );
    }

    #[test]
    fn for_any_value_needs_one_matching_request_value_and_is_false_when_absent() {
        let p = set(&[doc(
            json!([{ "Effect": "Allow", "Action": "appflow:TagResource", "Resource": "*",
            "Condition": { "ForAnyValue:StringEquals": { "aws:TagKeys": ["flowpilot:managed", "owner"] } } }]),
        )]);
        let keys = |k: &[&str]| ctx(&[("aws:TagKeys", list(k))]);
        assert_eq!(
            eval(&p, "appflow:TagResource", FLOW, &keys(&["owner"])),
            Decision::Allow
        );
        assert_eq!(
            eval(&p, "appflow:TagResource", FLOW, &keys(&["owner", "cost"])),
            Decision::Allow
        );
        assert_eq!(
            eval(&p, "appflow:TagResource", FLOW, &keys(&["cost"])),
            Decision::ImplicitDeny
        );
        assert_eq!(
            eval(&p, "appflow:TagResource", FLOW, &Ctx::new()),
            Decision::ImplicitDeny
        );
    }

    #[test]
    fn for_all_values_rejects_extra_request_values_and_is_true_when_absent() {
        let p = set(&[doc(
            json!([{ "Effect": "Allow", "Action": "appflow:TagResource", "Resource": "*",
            "Condition": { "ForAllValues:StringEquals": { "aws:TagKeys": ["flowpilot:managed", "owner"] } } }]),
        )]);
        let keys = |k: &[&str]| ctx(&[("aws:TagKeys", list(k))]);
        assert_eq!(
            eval(&p, "appflow:TagResource", FLOW, &keys(&["owner"])),
            Decision::Allow
        );
        assert_eq!(
            eval(
                &p,
                "appflow:TagResource",
                FLOW,
                &keys(&["owner", "flowpilot:managed"])
            ),
            Decision::Allow
        );
        assert_eq!(
            eval(&p, "appflow:TagResource", FLOW, &keys(&["owner", "cost"])),
            Decision::ImplicitDeny
        );
        // AWS: "ForAllValues ... returns true if the context key is not present in the request".
        assert_eq!(
            eval(&p, "appflow:TagResource", FLOW, &Ctx::new()),
            Decision::Allow
        );
    }

    #[test]
    fn bool_condition_on_a_boolean_context_key() {
        let p = set(&[doc(
            json!([{ "Effect": "Allow", "Action": "kms:CreateGrant", "Resource": "*",
            "Condition": { "Bool": { "kms:GrantIsForAWSResource": true } } }]),
        )]);
        let key = "arn:aws:kms:us-east-1:123456789012:key/k";
        let c = |b: bool| ctx(&[("kms:GrantIsForAWSResource", CtxValue::Bool(b))]);
        assert_eq!(eval(&p, "kms:CreateGrant", key, &c(true)), Decision::Allow);
        assert_eq!(
            eval(&p, "kms:CreateGrant", key, &c(false)),
            Decision::ImplicitDeny
        );
        assert_eq!(
            eval(&p, "kms:CreateGrant", key, &Ctx::new()),
            Decision::ImplicitDeny
        );
    }

    #[test]
    fn null_condition_tests_presence() {
        let p = set(&[
            doc(json!([{ "Effect": "Allow", "Action": "appflow:CreateFlow", "Resource": "*" }])),
            doc(
                json!([{ "Effect": "Deny", "Action": "appflow:CreateFlow", "Resource": "*",
                "Condition": { "Null": { "aws:RequestTag/flowpilot:managed": "true" } } }]),
            ),
        ]);
        assert_eq!(
            eval(&p, "appflow:CreateFlow", FLOW, &Ctx::new()),
            Decision::ExplicitDeny
        );
        let tagged = ctx(&[("aws:RequestTag/flowpilot:managed", s("x"))]);
        assert_eq!(
            eval(&p, "appflow:CreateFlow", FLOW, &tagged),
            Decision::Allow
        );
    }

    #[test]
    fn trust_policy_with_a_service_principal_and_source_account() {
        let trust = set(&[doc(json!([{ "Effect": "Allow",
            "Principal": { "Service": "ecs-tasks.amazonaws.com" }, "Action": "sts:AssumeRole",
            "Condition": { "StringEquals": { "aws:SourceAccount": "123456789012" } } }]))]);
        let role = "arn:aws:iam::123456789012:role/flowpilot-worker";
        let assume = |who: Who, acct: Option<&str>| {
            let c = acct
                .map(|a| ctx(&[("aws:SourceAccount", s(a))]))
                .unwrap_or_default();
            trust.evaluate(&Request {
                principal: &who,
                action: "sts:AssumeRole",
                resource: role,
                context: &c,
            })
        };
        let ecs = || Who::Service("ecs-tasks.amazonaws.com".into());
        assert_eq!(assume(ecs(), Some("123456789012")), Decision::Allow);
        assert_eq!(assume(ecs(), Some("999999999999")), Decision::ImplicitDeny);
        assert_eq!(assume(ecs(), None), Decision::ImplicitDeny);
        assert_eq!(
            assume(
                Who::Service("lambda.amazonaws.com".into()),
                Some("123456789012")
            ),
            Decision::ImplicitDeny
        );
        assert_eq!(
            assume(Who::Aws(USER.into()), Some("123456789012")),
            Decision::ImplicitDeny
        );
    }

    #[test]
    fn trust_policy_with_an_aws_principal_arn() {
        let trust = set(&[doc(json!({ "Effect": "Allow",
            "Principal": { "AWS": [USER, "arn:aws:iam::123456789012:role/admin"] }, "Action": "sts:AssumeRole" }))]);
        let role = "arn:aws:iam::123456789012:role/flowpilot-worker";
        let c = Ctx::new();
        let assume = |who: &str| {
            trust.evaluate(&Request {
                principal: &Who::Aws(who.into()),
                action: "sts:AssumeRole",
                resource: role,
                context: &c,
            })
        };
        assert_eq!(assume(USER), Decision::Allow);
        assert_eq!(
            assume("arn:aws:iam::123456789012:role/admin"),
            Decision::Allow
        );
        assert_eq!(
            assume("arn:aws:iam::123456789012:user/bob"),
            Decision::ImplicitDeny
        );
    }

    #[test]
    fn invalid_documents_are_rejected_at_load() {
        let bad = |st: Value, kind: Kind| Policy::parse("x", &doc(st), kind).is_err();
        assert!(
            Policy::parse("x", &json!({ "Statement": [] }), Kind::Identity).is_err(),
            "Version is required"
        );
        assert!(bad(
            json!({ "Effect": "Maybe", "Action": "*", "Resource": "*" }),
            Kind::Identity
        ));
        assert!(bad(
            json!({ "Effect": "Allow", "Action": "*", "Resource": "flow/x" }),
            Kind::Identity
        ));
        assert!(
            bad(
                json!({ "Effect": "Allow", "Resource": "*" }),
                Kind::Identity
            ),
            "no Action"
        );
        assert!(
            bad(json!({ "Effect": "Allow", "Action": "*" }), Kind::Identity),
            "no Resource"
        );
        assert!(bad(
            json!({ "Effect": "Allow", "Action": "*", "Resource": "*", "Principal": "*" }),
            Kind::Identity
        ));
        assert!(
            bad(
                json!({ "Effect": "Allow", "Action": "sts:AssumeRole" }),
                Kind::Trust
            ),
            "no Principal"
        );
        assert!(!bad(
            json!({ "Effect": "Allow", "Action": "sts:AssumeRole", "Principal": { "AWS": USER } }),
            Kind::Trust
        ));
    }
}
