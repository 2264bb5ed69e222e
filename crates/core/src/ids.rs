//! Validated identifiers and the deterministic names derived from them (docs/architecture.md, "Names and idempotency").

use std::fmt;

use serde::{Deserialize, Serialize};

/// Prefix every flowpilot-owned AppFlow flow carries; the EventBridge rule matches on it.
pub const FLOW_PREFIX: &str = "fp-";

/// Tag key/value put on every flow flowpilot creates; IAM conditions key on it.
pub const MANAGED_TAG_KEY: &str = "flowpilot:managed";
pub const MANAGED_TAG_VALUE: &str = "true";

/// A workflow id: 1–40 chars of `[a-z0-9-]`, starting with a letter or digit.
///
/// Kept short and lowercase so `fp-{id}-b0000` always satisfies AppFlow's flow-name pattern
/// `[a-zA-Z0-9][\w!@#.-]+` and stays far below its 256-character limit.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct WorkflowId(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid workflow id `{0}`: use 1-40 characters of a-z, 0-9 and '-', starting with a letter or digit"
)]
pub struct InvalidWorkflowId(pub String);

impl WorkflowId {
    pub fn new(raw: impl Into<String>) -> Result<Self, InvalidWorkflowId> {
        let raw = raw.into();
        let ok = !raw.is_empty()
            && raw.len() <= 40
            && raw
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && raw.as_bytes()[0] != b'-';
        if ok {
            Ok(Self(raw))
        } else {
            Err(InvalidWorkflowId(raw))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for WorkflowId {
    type Error = InvalidWorkflowId;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::new(value)
    }
}

impl From<WorkflowId> for String {
    fn from(value: WorkflowId) -> Self {
        value.0
    }
}

impl fmt::Display for WorkflowId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Which of a workflow's flows a flow name refers to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FlowRole {
    /// The on-demand flow of bulk batch `index`.
    Batch(u32),
    /// The scheduled, incremental flow behind the continuous integration.
    Live,
}

/// `fp-{workflow_id}-b{index:04}` or `fp-{workflow_id}-live`.
pub fn flow_name(workflow: &WorkflowId, role: FlowRole) -> String {
    match role {
        FlowRole::Batch(i) => format!("{FLOW_PREFIX}{workflow}-b{i:04}"),
        FlowRole::Live => format!("{FLOW_PREFIX}{workflow}-live"),
    }
}

/// Inverse of [`flow_name`]; `None` for flows that are not flowpilot's.
pub fn parse_flow_name(name: &str) -> Option<(WorkflowId, FlowRole)> {
    let rest = name.strip_prefix(FLOW_PREFIX)?;
    let (wf, suffix) = rest.rsplit_once('-')?;
    let role = if suffix == "live" {
        FlowRole::Live
    } else {
        let digits = suffix.strip_prefix('b')?;
        if digits.len() < 4 || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        FlowRole::Batch(digits.parse().ok()?)
    };
    Some((WorkflowId::new(wf).ok()?, role))
}

/// Client token for StartFlow/CreateFlow of a batch attempt: `{workflow}:{batch}:{attempt}`.
/// AppFlow remembers tokens for 8 hours, so a repeated start never launches a second run.
pub fn batch_token(workflow: &WorkflowId, batch: u32, attempt: u32) -> String {
    format!("{workflow}:{batch}:{attempt}")
}

/// Client token for the continuous flow of link generation `generation` (bumped by each rebuild,
/// because the same token with a different definition is an error on CreateFlow).
pub fn live_token(workflow: &WorkflowId, generation: u32) -> String {
    format!("{workflow}:live:{generation}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flow_names_round_trip() {
        let wf = WorkflowId::new("acme-7f3a").unwrap();
        for role in [FlowRole::Batch(0), FlowRole::Batch(123), FlowRole::Live] {
            assert_eq!(
                parse_flow_name(&flow_name(&wf, role)),
                Some((wf.clone(), role))
            );
        }
        assert_eq!(flow_name(&wf, FlowRole::Batch(7)), "fp-acme-7f3a-b0007");
    }

    #[test]
    fn foreign_flow_names_are_not_ours() {
        for name in [
            "my-flow",
            "fp-",
            "fp-x-b12",
            "fp-x-bxxxx",
            "fp-X-b0001",
            "fp--b0001",
        ] {
            assert_eq!(parse_flow_name(name), None, "{name}");
        }
    }

    #[test]
    fn workflow_ids_are_validated() {
        assert!(WorkflowId::new("abc-123").is_ok());
        for bad in ["", "-abc", "ABC", "a b", &"a".repeat(41)] {
            assert!(WorkflowId::new(bad).is_err(), "{bad}");
        }
    }
}
