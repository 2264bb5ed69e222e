//! Evaluating a policy document the way IAM does, with the `iam-rs` evaluator the simulator
//! uses, for the contract tests' static checks of resource and key policies.

use anyhow::{Context as _, anyhow};
use iam_rs::{Arn, Context, ContextValue, Decision, IAMPolicy, IAMRequest, Principal, PrincipalId};
use serde_json::Value;

/// Who asks: an AWS service (`events.amazonaws.com`) or an AWS principal ARN.
pub enum Caller<'a> {
    Service(&'a str),
    Aws(&'a str),
}

/// The decision of `policy` for one request; `context` holds string condition keys.
pub fn decide(
    policy: &Value,
    caller: Caller<'_>,
    action: &str,
    resource: &str,
    context: &[(&str, &str)],
) -> anyhow::Result<Decision> {
    let policy = IAMPolicy::from_json(&policy.to_string())
        .map_err(|e| anyhow!("not a policy document ({e:?}): {policy}"))?;
    let principal = match caller {
        Caller::Service(s) => Principal::Service(PrincipalId::String(s.to_owned())),
        Caller::Aws(a) => Principal::Aws(PrincipalId::String(a.to_owned())),
    };
    let mut ctx = Context::new();
    for (k, v) in context {
        ctx.insert((*k).to_owned(), ContextValue::String((*v).to_owned()));
    }
    let resource = Arn::parse(resource).map_err(|e| anyhow!("bad ARN {resource}: {e:?}"))?;
    let request = IAMRequest::new_with_context(principal, action, resource, ctx);
    iam_rs::evaluate_policies(&[policy], &request)
        .map_err(|e| anyhow!("{e:?}"))
        .context("evaluating a policy")
}
