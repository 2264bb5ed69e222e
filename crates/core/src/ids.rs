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

/// `fp-{workflow_id}-b{index:04}`, or generation 1's live flow `fp-{workflow_id}-live` (see
/// [`live_flow_name`] for later generations).
pub fn flow_name(workflow: &WorkflowId, role: FlowRole) -> String {
    match role {
        FlowRole::Batch(i) => format!("{FLOW_PREFIX}{workflow}-b{i:04}"),
        FlowRole::Live => live_flow_name(workflow, 1),
    }
}

/// The live flow of link generation `generation`: `fp-{workflow_id}-live` for generation 1 (the
/// name every flow linked before generations had names of their own carries, so existing flows
/// keep theirs), `fp-{workflow_id}-live-g{generation}` from 2 on. Distinct names are what tell a
/// late End report or deactivation of a retired generation from the current one's; all keep
/// the `fp-` prefix the EventBridge rule and the IAM statements match.
pub fn live_flow_name(workflow: &WorkflowId, generation: u32) -> String {
    if generation <= 1 {
        format!("{FLOW_PREFIX}{workflow}-live")
    } else {
        format!("{FLOW_PREFIX}{workflow}-live-g{generation}")
    }
}

/// Inverse of [`flow_name`] and [`live_flow_name`]; `None` for flows that are not flowpilot's.
pub fn parse_flow_name(name: &str) -> Option<(WorkflowId, FlowRole)> {
    if let Some((wf, _)) = parse_live_flow_name(name) {
        return Some((wf, FlowRole::Live));
    }
    let rest = name.strip_prefix(FLOW_PREFIX)?;
    let (wf, suffix) = rest.rsplit_once('-')?;
    let digits = suffix.strip_prefix('b')?;
    if digits.len() < 4 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((
        WorkflowId::new(wf).ok()?,
        FlowRole::Batch(digits.parse().ok()?),
    ))
}

/// Inverse of [`live_flow_name`]: the workflow and the link generation a live flow name carries
/// (1 for `fp-{id}-live`). Only the spelling [`live_flow_name`] writes is accepted (no `-g1`,
/// no leading zeros), so every generation has exactly one name.
pub fn parse_live_flow_name(name: &str) -> Option<(WorkflowId, u32)> {
    let rest = name.strip_prefix(FLOW_PREFIX)?;
    if let Some(wf) = rest.strip_suffix("-live") {
        return Some((WorkflowId::new(wf).ok()?, 1));
    }
    // `{id}-live-g{N}`: a workflow id never contains `-live-g{N}` at its end by accident, because
    // batch flows end in `-b{digits}` and the first generation in `-live`.
    let (head, digits) = rest.rsplit_once("-g")?;
    let wf = head.strip_suffix("-live")?;
    let generation: u32 = digits.parse().ok()?;
    (generation >= 2 && generation.to_string() == digits)
        .then_some(())
        .and(WorkflowId::new(wf).ok())
        .map(|wf| (wf, generation))
}

/// The FlowDefinition name of the managed engine's `generation`-th CreateIntegrationWorkflow:
/// `fp-{workflow_id}-m{generation}`. Customer Profiles names step `n`'s flow
/// `{name}-s{n}` (see [`parse_managed_step_flow_name`]); the `fp-` prefix lets the EventBridge
/// rule route their run reports to the work queue.
pub fn managed_flow_name(workflow: &WorkflowId, generation: u32) -> String {
    format!("{FLOW_PREFIX}{workflow}-m{generation}")
}

/// A managed workflow's step flow, `fp-{workflow_id}-m{generation}-s{step}`: the workflow,
/// the generation and the step. flowpilot's own flows end in `-b{digits}`, `-live` or
/// `-live-g{N}`, never in `-s{digits}`, so the two kinds of name cannot be confused. The name
/// is only a hint: `decide` checks the generation against the workflow, and an unknown
/// workflow id is ignored by the worker.
pub fn parse_managed_step_flow_name(name: &str) -> Option<(WorkflowId, u32, u32)> {
    let rest = name.strip_prefix(FLOW_PREFIX)?;
    let (head, step) = rest.rsplit_once("-s")?;
    let (wf, generation) = head.rsplit_once("-m")?;
    let step_n: u32 = step.parse().ok()?;
    let gen_n: u32 = generation.parse().ok()?;
    // One spelling per name (no leading zeros, no `+`).
    (step_n.to_string() == step && gen_n.to_string() == generation && gen_n >= 1)
        .then_some(())
        .and(WorkflowId::new(wf).ok())
        .map(|wf| (wf, gen_n, step_n))
}

/// The continuous integration's flow a completed managed workflow created,
/// `fp-{workflow_id}-m{generation}-live`: the workflow and the generation.
pub fn parse_managed_live_flow_name(name: &str) -> Option<(WorkflowId, u32)> {
    let head = name.strip_prefix(FLOW_PREFIX)?.strip_suffix("-live")?;
    let (wf, generation) = head.rsplit_once("-m")?;
    let gen_n: u32 = generation.parse().ok()?;
    (gen_n.to_string() == generation && gen_n >= 1)
        .then_some(())
        .and(WorkflowId::new(wf).ok())
        .map(|wf| (wf, gen_n))
}

/// Ids ending in `-m{digits}` are not given to new workflows: `fp-{id}-live` of such an id
/// would read as the managed engine's live flow of another workflow
/// ([`parse_managed_live_flow_name`]).
pub fn is_reserved(id: &WorkflowId) -> bool {
    id.as_str().rsplit_once("-m").is_some_and(|(head, n)| {
        !head.is_empty() && !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit())
    })
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
    fn managed_step_names_round_trip_and_never_parse_as_flowpilot_flows() {
        let wf = WorkflowId::new("acme-m2-s3").unwrap();
        for (g, n) in [(1, 0), (2, 17), (12, 3)] {
            let name = format!("{}-s{n}", managed_flow_name(&wf, g));
            assert_eq!(
                parse_managed_step_flow_name(&name),
                Some((wf.clone(), g, n))
            );
            assert_eq!(parse_flow_name(&name), None);
        }
        for bad in [
            "fp-x-m1-s01",
            "fp-x-m0-s1",
            "fp-x-m1-s",
            "fp--m1-s1",
            "x-m1-s1",
            "fp-x-b0001",
        ] {
            assert_eq!(parse_managed_step_flow_name(bad), None, "{bad}");
        }
        for role in [FlowRole::Batch(3), FlowRole::Live] {
            assert_eq!(parse_managed_step_flow_name(&flow_name(&wf, role)), None);
        }
    }

    #[test]
    fn managed_live_flow_names_parse_and_their_ids_are_reserved() {
        let wf = WorkflowId::new("acme").unwrap();
        let name = format!("{}-live", managed_flow_name(&wf, 3));
        assert_eq!(parse_managed_live_flow_name(&name), Some((wf.clone(), 3)));
        assert_eq!(parse_managed_live_flow_name("fp-acme-live"), None);
        assert_eq!(parse_managed_live_flow_name("fp-acme-m01-live"), None);
        assert!(is_reserved(&WorkflowId::new("acme-m1").unwrap()));
        assert!(!is_reserved(&WorkflowId::new("acme-m").unwrap()));
        assert!(!is_reserved(&WorkflowId::new("acme-mx1").unwrap()));
        assert!(!is_reserved(&wf));
    }

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
    fn live_flow_names_round_trip_per_generation() {
        // Ids that end like a flow suffix must not confuse the parser.
        for id in ["acme-7f3a", "x-live", "a-live-g2", "b0001", "g-2"] {
            let wf = WorkflowId::new(id).unwrap();
            for generation in [1, 2, 3, 10, 4_000_000, u32::MAX] {
                let name = live_flow_name(&wf, generation);
                assert_eq!(
                    parse_live_flow_name(&name),
                    Some((wf.clone(), generation)),
                    "{name}"
                );
                assert_eq!(
                    parse_flow_name(&name),
                    Some((wf.clone(), FlowRole::Live)),
                    "{name}"
                );
            }
            // Generation 1 keeps the name flows had before generations were named.
            assert_eq!(live_flow_name(&wf, 1), format!("fp-{id}-live"));
            assert_eq!(flow_name(&wf, FlowRole::Live), live_flow_name(&wf, 1));
            let batch = flow_name(&wf, FlowRole::Batch(7));
            assert_eq!(parse_live_flow_name(&batch), None, "{batch}");
        }
        let wf = WorkflowId::new("acme").unwrap();
        assert_eq!(live_flow_name(&wf, 2), "fp-acme-live-g2");
        // Generation 0 (never linked) has no name of its own.
        assert_eq!(live_flow_name(&wf, 0), "fp-acme-live");
    }

    #[test]
    fn live_generation_names_have_one_spelling() {
        for name in [
            "fp-acme-live-g1",
            "fp-acme-live-g0",
            "fp-acme-live-g02",
            "fp-acme-live-g+2",
            "fp-acme-live-g",
            "fp-acme-live-gx",
            "fp-acme-g2",
            "fp-acme-live-g4294967296",
            "fp--live-g2",
            "fp-Acme-live-g2",
        ] {
            assert_eq!(parse_live_flow_name(name), None, "{name}");
            assert_eq!(parse_flow_name(name), None, "{name}");
        }
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
