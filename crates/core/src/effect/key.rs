//! Effect keys: which step of which batch attempt, link generation, health event or
//! cancellation an outbox entry is.
//!
//! [`EffectKey`] is how `decide` names and matches effects; its string form (this module's
//! `Display` / `FromStr`, the only place it is written or read) is what the outbox stores in
//! DynamoDB, e.g. `b3/a2/start`, `live/g2/put`, `publish/acme/batch-succeeded/b0`,
//! `cancel/b1/run`. The strings are unchanged from when keys were plain strings, so stored
//! items load as they are.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// One pending effect's identity: unique within a workflow's life and stable across
/// re-execution, so the shell can report which effects it completed.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum EffectKey {
    /// `b{batch}/a{attempt}/{step}`: one attempt of a batch.
    Attempt {
        batch: u32,
        attempt: u32,
        step: AttemptStep,
    },
    /// `b{batch}/delete`: removing the flow of a batch that succeeded.
    BatchFlowDelete { batch: u32 },
    /// `live/g{generation}/{step}`: one link generation of the continuous integration.
    Live { generation: u32, step: LiveStep },
    /// `publish/{event_id}`: a health event (its id already names the occurrence).
    Publish { event_id: String },
    /// `cancel/…`: cleaning up after a cancel.
    Cancel(CancelStep),
    /// `managed/g{generation}/{step}`: one CreateIntegrationWorkflow of the managed engine.
    Managed { generation: u32, step: ManagedStep },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ManagedStep {
    /// `create`: CreateIntegrationWorkflow.
    Create,
    /// `watch/{at_ms}`: GetWorkflow and GetWorkflowSteps asked at `at_ms` (epoch ms), so a
    /// later report or tick can ask again once this answer is in.
    Watch { at_ms: i64 },
    /// `delete`: DeleteWorkflow (cancel).
    Delete,
    /// `find/{at_ms}`: ListIntegrations for the continuous integration the completed workflow
    /// created, asked at `at_ms` (epoch ms).
    Find { at_ms: i64 },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AttemptStep {
    /// `create`: CreateFlow for this attempt.
    Create,
    /// `start`: StartFlow with this attempt's client token.
    Start,
    /// `retry`: the delayed `retry_due` command.
    Retry,
    /// `cancel`: CancelFlowExecutions of a stalled run.
    Cancel,
    /// `describe/{at_ms}`: DescribeFlowExecutionRecords asked at `at_ms` (epoch ms), so a later
    /// reconcile can ask again once this answer is in.
    Describe { at_ms: i64 },
    /// `details`: DescribeFlowExecutionRecords for AppFlow's message about the record failures
    /// of this attempt's successful run (the End report has only the count). Once per attempt.
    Details,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum LiveStep {
    /// `stop`: StopFlow of the previous generation's flow (a rebuild retires it).
    Stop,
    /// `runs/{at_ms}`: DescribeRuns of the previous generation's flow asked at `at_ms` (epoch
    /// ms), so a later End report or reconcile tick can ask again once this answer is in.
    Runs { at_ms: i64 },
    /// `cancel/{run}`: CancelFlowExecutions of the previous generation's `run`-th run still in
    /// progress past the maximum run duration (0-based, in the order AppFlow listed them).
    Cancel { run: u32 },
    /// `delete-integration`: the previous generation's integration.
    DeleteIntegration,
    /// `delete-flow`: the previous generation's flow.
    DeleteFlow,
    /// `create`: CreateFlow of this generation's scheduled flow.
    Create,
    /// `put`: PutIntegration linking it.
    Put,
    /// `start`: StartFlow activating it.
    Start,
    /// `details/{run}`: DescribeFlowExecutionRecords for AppFlow's message about the record
    /// failures of this generation's `run`-th successful run (its number when it was counted).
    Details { run: u64 },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CancelStep {
    /// `cancel/b{batch}/run`
    BatchRun { batch: u32 },
    /// `cancel/b{batch}/delete`
    BatchFlow { batch: u32 },
    /// `cancel/live/delete-integration`
    LiveIntegration,
    /// `cancel/live/delete-flow`
    LiveFlow,
}

impl EffectKey {
    pub fn attempt(batch: u32, attempt: u32, step: AttemptStep) -> Self {
        Self::Attempt {
            batch,
            attempt,
            step,
        }
    }

    pub fn live(generation: u32, step: LiveStep) -> Self {
        Self::Live { generation, step }
    }
}

impl AttemptStep {
    fn as_str(self) -> &'static str {
        match self {
            Self::Create => "create",
            Self::Start => "start",
            Self::Retry => "retry",
            Self::Cancel => "cancel",
            Self::Describe { .. } => "describe",
            Self::Details => "details",
        }
    }
}

impl LiveStep {
    /// The steps without data (those with data are parsed on their own).
    const UNIT: [Self; 6] = [
        Self::Stop,
        Self::DeleteIntegration,
        Self::DeleteFlow,
        Self::Create,
        Self::Put,
        Self::Start,
    ];

    fn as_str(self) -> &'static str {
        match self {
            Self::Stop => "stop",
            Self::Runs { .. } => "runs",
            Self::Cancel { .. } => "cancel",
            Self::DeleteIntegration => "delete-integration",
            Self::DeleteFlow => "delete-flow",
            Self::Create => "create",
            Self::Put => "put",
            Self::Start => "start",
            Self::Details { .. } => "details",
        }
    }
}

impl fmt::Display for EffectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Attempt {
                batch,
                attempt,
                step: step @ AttemptStep::Describe { at_ms },
            } => write!(f, "b{batch}/a{attempt}/{}/{at_ms}", step.as_str()),
            Self::Attempt {
                batch,
                attempt,
                step,
            } => write!(f, "b{batch}/a{attempt}/{}", step.as_str()),
            Self::BatchFlowDelete { batch } => write!(f, "b{batch}/delete"),
            Self::Live {
                generation,
                step: step @ LiveStep::Runs { at_ms },
            } => write!(f, "live/g{generation}/{}/{at_ms}", step.as_str()),
            Self::Live {
                generation,
                step: step @ LiveStep::Cancel { run },
            } => write!(f, "live/g{generation}/{}/{run}", step.as_str()),
            Self::Live {
                generation,
                step: step @ LiveStep::Details { run },
            } => write!(f, "live/g{generation}/{}/{run}", step.as_str()),
            Self::Live { generation, step } => write!(f, "live/g{generation}/{}", step.as_str()),
            Self::Publish { event_id } => write!(f, "publish/{event_id}"),
            Self::Cancel(CancelStep::BatchRun { batch }) => write!(f, "cancel/b{batch}/run"),
            Self::Cancel(CancelStep::BatchFlow { batch }) => write!(f, "cancel/b{batch}/delete"),
            Self::Cancel(CancelStep::LiveIntegration) => {
                f.write_str("cancel/live/delete-integration")
            }
            Self::Cancel(CancelStep::LiveFlow) => f.write_str("cancel/live/delete-flow"),
            Self::Managed {
                generation,
                step: ManagedStep::Create,
            } => write!(f, "managed/g{generation}/create"),
            Self::Managed {
                generation,
                step: ManagedStep::Watch { at_ms },
            } => write!(f, "managed/g{generation}/watch/{at_ms}"),
            Self::Managed {
                generation,
                step: ManagedStep::Delete,
            } => write!(f, "managed/g{generation}/delete"),
            Self::Managed {
                generation,
                step: ManagedStep::Find { at_ms },
            } => write!(f, "managed/g{generation}/find/{at_ms}"),
        }
    }
}

/// A stored key this version cannot read (hand-edited, or written by a newer version).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown effect key `{0}`")]
pub struct InvalidEffectKey(pub String);

impl FromStr for EffectKey {
    type Err = InvalidEffectKey;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse(s).ok_or_else(|| InvalidEffectKey(s.to_owned()))
    }
}

fn parse(s: &str) -> Option<EffectKey> {
    if let Some(event_id) = s.strip_prefix("publish/") {
        return (!event_id.is_empty()).then(|| EffectKey::Publish {
            event_id: event_id.to_owned(),
        });
    }
    let parts: Vec<&str> = s.split('/').collect();
    let key = match parts.as_slice() {
        ["live", g, step] => EffectKey::Live {
            generation: number(g, 'g')?,
            step: LiveStep::UNIT.into_iter().find(|l| l.as_str() == *step)?,
        },
        ["live", g, "runs", at] => EffectKey::Live {
            generation: number(g, 'g')?,
            step: LiveStep::Runs {
                at_ms: at.parse().ok()?,
            },
        },
        ["live", g, "cancel", run] => EffectKey::Live {
            generation: number(g, 'g')?,
            step: LiveStep::Cancel {
                run: run.parse().ok()?,
            },
        },
        ["live", g, "details", run] => EffectKey::Live {
            generation: number(g, 'g')?,
            step: LiveStep::Details {
                run: run.parse().ok()?,
            },
        },
        ["managed", g, "create"] => EffectKey::Managed {
            generation: number(g, 'g')?,
            step: ManagedStep::Create,
        },
        ["managed", g, "delete"] => EffectKey::Managed {
            generation: number(g, 'g')?,
            step: ManagedStep::Delete,
        },
        ["managed", g, "find", at] => EffectKey::Managed {
            generation: number(g, 'g')?,
            step: ManagedStep::Find {
                at_ms: at.parse().ok()?,
            },
        },
        ["managed", g, "watch", at] => EffectKey::Managed {
            generation: number(g, 'g')?,
            step: ManagedStep::Watch {
                at_ms: at.parse().ok()?,
            },
        },
        ["cancel", "live", "delete-integration"] => EffectKey::Cancel(CancelStep::LiveIntegration),
        ["cancel", "live", "delete-flow"] => EffectKey::Cancel(CancelStep::LiveFlow),
        ["cancel", b, "run"] => EffectKey::Cancel(CancelStep::BatchRun {
            batch: number(b, 'b')?,
        }),
        ["cancel", b, "delete"] => EffectKey::Cancel(CancelStep::BatchFlow {
            batch: number(b, 'b')?,
        }),
        [b, "delete"] => EffectKey::BatchFlowDelete {
            batch: number(b, 'b')?,
        },
        [b, a, "describe", at] => EffectKey::Attempt {
            batch: number(b, 'b')?,
            attempt: number(a, 'a')?,
            step: AttemptStep::Describe {
                at_ms: at.parse().ok()?,
            },
        },
        [b, a, step] => EffectKey::Attempt {
            batch: number(b, 'b')?,
            attempt: number(a, 'a')?,
            step: [
                AttemptStep::Create,
                AttemptStep::Start,
                AttemptStep::Retry,
                AttemptStep::Cancel,
                AttemptStep::Details,
            ]
            .into_iter()
            .find(|x| x.as_str() == *step)?,
        },
        _ => return None,
    };
    // One spelling per key (no `b007`, no `+7`): what is stored must round-trip exactly.
    (key.to_string() == s).then_some(key)
}

/// `b12` → 12 (with `prefix` `b`).
fn number(part: &str, prefix: char) -> Option<u32> {
    part.strip_prefix(prefix)?.parse().ok()
}

impl TryFrom<String> for EffectKey {
    type Error = InvalidEffectKey;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        value.parse()
    }
}

impl From<EffectKey> for String {
    fn from(value: EffectKey) -> Self {
        value.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every key form, with the string stored in DynamoDB since keys were plain strings.
    fn pinned() -> Vec<(EffectKey, &'static str)> {
        use AttemptStep as A;
        use LiveStep as L;
        vec![
            (EffectKey::attempt(12, 3, A::Create), "b12/a3/create"),
            (EffectKey::attempt(0, 1, A::Start), "b0/a1/start"),
            (EffectKey::attempt(0, 1, A::Retry), "b0/a1/retry"),
            (EffectKey::attempt(4, 2, A::Cancel), "b4/a2/cancel"),
            (
                EffectKey::attempt(
                    4,
                    2,
                    A::Describe {
                        at_ms: 1_767_225_600_000,
                    },
                ),
                "b4/a2/describe/1767225600000",
            ),
            (EffectKey::BatchFlowDelete { batch: 7 }, "b7/delete"),
            (
                EffectKey::live(2, L::DeleteIntegration),
                "live/g2/delete-integration",
            ),
            (EffectKey::live(2, L::DeleteFlow), "live/g2/delete-flow"),
            (EffectKey::live(3, L::Stop), "live/g3/stop"),
            (
                EffectKey::live(
                    3,
                    L::Runs {
                        at_ms: 1_767_225_600_000,
                    },
                ),
                "live/g3/runs/1767225600000",
            ),
            (EffectKey::live(3, L::Cancel { run: 0 }), "live/g3/cancel/0"),
            (
                EffectKey::live(2, L::Details { run: 17 }),
                "live/g2/details/17",
            ),
            (EffectKey::attempt(5, 1, A::Details), "b5/a1/details"),
            (EffectKey::live(12, L::Create), "live/g12/create"),
            (EffectKey::live(1, L::Put), "live/g1/put"),
            (EffectKey::live(1, L::Start), "live/g1/start"),
            (
                EffectKey::Publish {
                    event_id: "acme/batch-succeeded/b0".into(),
                },
                "publish/acme/batch-succeeded/b0",
            ),
            (
                EffectKey::Cancel(CancelStep::BatchRun { batch: 3 }),
                "cancel/b3/run",
            ),
            (
                EffectKey::Cancel(CancelStep::BatchFlow { batch: 3 }),
                "cancel/b3/delete",
            ),
            (
                EffectKey::Cancel(CancelStep::LiveIntegration),
                "cancel/live/delete-integration",
            ),
            (
                EffectKey::Cancel(CancelStep::LiveFlow),
                "cancel/live/delete-flow",
            ),
            (
                EffectKey::Managed {
                    generation: 1,
                    step: ManagedStep::Create,
                },
                "managed/g1/create",
            ),
            (
                EffectKey::Managed {
                    generation: 2,
                    step: ManagedStep::Watch {
                        at_ms: 1_767_225_600_000,
                    },
                },
                "managed/g2/watch/1767225600000",
            ),
            (
                EffectKey::Managed {
                    generation: 3,
                    step: ManagedStep::Delete,
                },
                "managed/g3/delete",
            ),
            (
                EffectKey::Managed {
                    generation: 1,
                    step: ManagedStep::Find { at_ms: 5 },
                },
                "managed/g1/find/5",
            ),
        ]
    }

    #[test]
    fn every_key_keeps_its_stored_string_form() {
        for (key, text) in pinned() {
            assert_eq!(key.to_string(), text);
            assert_eq!(text.parse::<EffectKey>(), Ok(key.clone()), "{text}");
            let json = serde_json::to_string(&key).unwrap();
            assert_eq!(json, format!("\"{text}\""));
            assert_eq!(serde_json::from_str::<EffectKey>(&json).unwrap(), key);
        }
    }

    #[test]
    fn malformed_keys_are_rejected() {
        for bad in [
            "",
            "b1",
            "b1/a1",
            "b1/a1/launch",
            "bx/a1/start",
            "b1/ax/start",
            "b01/a1/start",
            "b+1/a1/start",
            "b1/a1/describe",
            "b1/a1/describe/soon",
            "b1/a1/start/extra",
            "live/g1/unknown",
            "managed/g1/launch",
            "managed/g01/create",
            "managed/g1/watch",
            "managed/g1/watch/soon",
            "live/g1/runs",
            "live/g1/runs/soon",
            "live/g1/cancel",
            "live/g1/cancel/-1",
            "live/g1/cancel/01",
            "live/g1/details",
            "live/g1/details/x",
            "b1/a1/details/1",
            "live/g1/stop/1",
            "live/1/put",
            "cancel/live/run",
            "cancel/b1/start",
            "publish/",
            "b-1/delete",
        ] {
            assert!(bad.parse::<EffectKey>().is_err(), "{bad:?} accepted");
        }
    }
}
