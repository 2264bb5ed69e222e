//! What executing an effect comes to: the one contract between the shell's adapters and
//! `decide`.
//!
//! An adapter answers `Result<T, EffectError>`. [`outcome_of`] turns that into a [`Step`]:
//! success and permanent failure are [`Outcome`]s that `decide` records (`Input::Applied`); a
//! transient failure *stops* execution, and the effect (with every one after it) stays in the
//! outbox for the next drain, which runs it again. So `decide` never sees a transient failure:
//! [`Outcome::Failed`] carries a [`PermanentError`], by type. The worker's shell and the state
//! machine's property test both execute through [`Executed::push`], so the property test
//! proves the protocol production speaks.

use serde::{Deserialize, Serialize};

use super::EffectKey;
use crate::ids::FlowRole;
use crate::input::{FlowRuns, RunReport};

/// An AWS call that failed after the SDK's own retries, as an adapter reports it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EffectError {
    /// AWS error code, e.g. `ResourceNotFoundException`, or `Transport` / `Timeout`.
    pub code: String,
    pub message: String,
    /// Retrying cannot help (validation, not found, access denied, auth).
    pub permanent: bool,
}

/// An effect failure that retrying cannot help: the only failure `decide` is told about.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PermanentError {
    /// AWS error code, e.g. `AccessDeniedException`.
    pub code: String,
    pub message: String,
}

/// What happened when the shell executed an effect; fed back with `Input::Applied`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Outcome {
    /// Executed; nothing to record.
    Done { key: EffectKey },
    /// StartFlow answered (execution id is None for scheduled flows).
    Started {
        key: EffectKey,
        role: FlowRole,
        attempt: u32,
        execution_id: Option<String>,
    },
    /// PutIntegration answered with this URI.
    Linked {
        key: EffectKey,
        generation: u32,
        uri: String,
    },
    /// DescribeRun found the run finished (`Some`) or still running / unknown (`None`).
    Described {
        key: EffectKey,
        role: FlowRole,
        attempt: u32,
        run: Option<RunReport>,
    },
    /// DescribeRuns answered.
    Runs { key: EffectKey, runs: FlowRuns },
    /// The shared budget refused a batch's StartFlow a run slot or its CreateFlow a flow slot,
    /// or AppFlow refused either for a quota; nothing was started or created.
    SlotDenied {
        key: EffectKey,
        attempt: u32,
        denial: SlotDenial,
    },
    /// CreateIntegrationWorkflow answered with Customer Profiles' workflow id.
    ManagedCreated {
        key: EffectKey,
        generation: u32,
        workflow_id: String,
    },
    /// GetWorkflow and GetWorkflowSteps answered.
    ManagedSeen {
        key: EffectKey,
        generation: u32,
        view: ManagedView,
    },
    /// ListIntegrations answered: the managed workflow's integration URI (its flow's ARN), if
    /// it is there yet.
    ManagedIntegration {
        key: EffectKey,
        generation: u32,
        uri: Option<String>,
    },
    /// Failed for good (transient failures never get here: see [`outcome_of`]).
    Failed {
        key: EffectKey,
        error: PermanentError,
    },
}

impl Outcome {
    pub fn key(&self) -> &EffectKey {
        match self {
            Self::Done { key }
            | Self::Started { key, .. }
            | Self::Linked { key, .. }
            | Self::Described { key, .. }
            | Self::Runs { key, .. }
            | Self::SlotDenied { key, .. }
            | Self::ManagedCreated { key, .. }
            | Self::ManagedSeen { key, .. }
            | Self::ManagedIntegration { key, .. }
            | Self::Failed { key, .. } => key,
        }
    }
}

/// A managed workflow as GetWorkflow and GetWorkflowSteps describe it (SDK-neutral; statuses
/// are Customer Profiles' `Status` strings: `ACTIVE`, `COMPLETE`, `FAILED`, `SPLIT`, `RETRY`,
/// `CANCELLED`, `NOT_STARTED`, `IN_PROGRESS`; anything else is read as still running).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManagedView {
    /// GetWorkflow `Status`.
    pub status: String,
    /// GetWorkflow `ErrorDescription`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Every step GetWorkflowSteps listed (any order).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub steps: Vec<ManagedStepView>,
}

/// One `AppflowIntegrationWorkflowStep`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManagedStepView {
    /// The step's `FlowName` (`{FlowDefinition name}-s{n}`): which batch it ran.
    pub flow_name: String,
    pub status: String,
    /// `RecordsProcessed`.
    #[serde(default)]
    pub records: u64,
    /// `ExecutionMessage`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// Which limit of the shared run budget refused a slot, and how full it was.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlotDenial {
    /// `profile {name}`, `account` or `flows`.
    pub scope: String,
    pub in_use: u32,
    /// The effective limit (lower than configured while AppFlow's quota refusal holds).
    pub limit: u32,
    /// AppFlow itself refused (`ServiceQuotaExceededException`) and the budget lowered `limit`,
    /// now or earlier (a refusal under a limit still lowered).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub quota: bool,
}

/// What one executed effect means for the outbox.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// Tell `decide` (it ran, or failed for good); the effect leaves the outbox.
    Record(Outcome),
    /// Failed transiently: execution stops here and the effect stays in the outbox.
    Stop(EffectError),
}

/// Maps an adapter's answer for effect `key` to a [`Step`]: `ok` builds the outcome of a
/// success, a permanent error becomes [`Outcome::Failed`], a transient one stops.
pub fn outcome_of<T>(
    key: &EffectKey,
    result: Result<T, EffectError>,
    ok: impl FnOnce(T) -> Outcome,
) -> Step {
    match result {
        Ok(v) => Step::Record(ok(v)),
        Err(EffectError {
            code,
            message,
            permanent: true,
        }) => Step::Record(Outcome::Failed {
            key: key.clone(),
            error: PermanentError { code, message },
        }),
        Err(transient) => Step::Stop(transient),
    }
}

/// The result of executing (a prefix of) an outbox.
#[derive(Debug, Default)]
pub struct Executed {
    /// Outcomes of the effects that were executed, in order (permanent failures included).
    pub outcomes: Vec<Outcome>,
    /// The effect execution stopped at, with its transient error; it and everything after it
    /// stay in the outbox.
    pub stopped: Option<(EffectKey, EffectError)>,
}

impl Executed {
    /// Adds the step of effect `key`; `false` once execution must stop. Effects run in order
    /// and a later one may need an earlier one (StartFlow its CreateFlow), so nothing is
    /// recorded after a stop.
    pub fn push(&mut self, key: &EffectKey, step: Step) -> bool {
        if self.stopped.is_some() {
            return false;
        }
        match step {
            Step::Record(outcome) => {
                self.outcomes.push(outcome);
                true
            }
            Step::Stop(error) => {
                self.stopped = Some((key.clone(), error));
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::effect::LiveStep;

    fn error(permanent: bool) -> EffectError {
        EffectError {
            code: "InternalServerException".into(),
            message: "try later".into(),
            permanent,
        }
    }

    #[test]
    fn a_transient_failure_stops_and_is_never_an_outcome() {
        let put = EffectKey::live(1, LiveStep::Put);
        let done = |()| Outcome::Done { key: put.clone() };
        assert_eq!(
            outcome_of(&put, Err(error(false)), done),
            Step::Stop(error(false))
        );
        assert_eq!(
            outcome_of(&put, Err(error(true)), done),
            Step::Record(Outcome::Failed {
                key: put.clone(),
                error: PermanentError {
                    code: "InternalServerException".into(),
                    message: "try later".into(),
                },
            })
        );
        assert_eq!(
            outcome_of(&put, Ok(()), done),
            Step::Record(Outcome::Done { key: put.clone() })
        );
    }

    #[test]
    fn nothing_is_recorded_after_a_stop() {
        let create = EffectKey::live(2, LiveStep::Create);
        let put = EffectKey::live(2, LiveStep::Put);
        let mut x = Executed::default();
        assert!(!x.push(&create, Step::Stop(error(false))));
        assert!(!x.push(&put, Step::Record(Outcome::Done { key: put.clone() })));
        assert!(x.outcomes.is_empty());
        assert_eq!(x.stopped, Some((create, error(false))));
    }
}
