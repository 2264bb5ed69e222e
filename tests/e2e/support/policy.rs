//! Evaluating one policy document the way IAM does, with the simulator's own evaluator (the
//! same code that enforces IAM in the local world), for the contract tests' static checks of
//! trust, resource and key policies.

use anyhow::anyhow;
use flowpilot_sim::iam::policy::{Ctx, CtxValue, Policy, PolicySet, Request, Who};
pub use flowpilot_sim::iam::policy::{Decision, Kind};
use serde_json::Value;

/// Who asks: an AWS service (`events.amazonaws.com`) or an AWS principal ARN.
pub enum Caller<'a> {
    Service(&'a str),
    Aws(&'a str),
}

/// The decision of `policy` for one request; `context` holds string condition keys.
pub fn decide(
    policy: &Value,
    kind: Kind,
    caller: Caller<'_>,
    action: &str,
    resource: &str,
    context: &[(&str, &str)],
) -> anyhow::Result<Decision> {
    let parsed = Policy::parse("under-test", policy, kind).map_err(|e| anyhow!("{e}"))?;
    let who = match caller {
        Caller::Service(s) => Who::Service(s.to_owned()),
        Caller::Aws(a) => Who::Aws(a.to_owned()),
    };
    let ctx: Ctx = context
        .iter()
        .map(|(k, v)| ((*k).to_owned(), CtxValue::Str((*v).to_owned())))
        .collect();
    Ok(PolicySet::new(vec![parsed]).evaluate(&Request {
        principal: &who,
        action,
        resource,
        context: &ctx,
    }))
}
