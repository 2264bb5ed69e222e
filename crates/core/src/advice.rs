//! What to do next, in plain words and as a command to paste: the one place both the health
//! events `decide` drafts and `flowpilot workflow diagnose` take their recommendations from, so
//! an alert and the diagnosis never disagree.
//!
//! Five answers cover every problem flowpilot reports (issue 10): redrive (a batch failed: fix
//! the cause, run it again), rebuild (the continuous integration is broken), reconnect the
//! connector profile then redrive (its credentials no longer authenticate), fix the object type
//! mapping (records were not written), wait (the SaaS application's API allowance is spent).

use chrono::{DateTime, Utc};

use crate::classify::Verdict;
use crate::ids::WorkflowId;
use crate::model::{ErrorInfo, NotSent};
use crate::spec::WorkflowSpec;

/// The recommendation for machines (health events' `action`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Action {
    Redrive,
    Rebuild,
    Reconnect,
    FixMapping,
    Wait,
    /// Nothing is wrong.
    None,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Redrive => "redrive",
            Self::Rebuild => "rebuild",
            Self::Reconnect => "reconnect",
            Self::FixMapping => "fix_mapping",
            Self::Wait => "wait",
            Self::None => "none",
        }
    }
}

/// One recommended next step.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Advice {
    pub action: Action,
    /// In plain words, naming what to act on.
    pub recommendation: String,
    /// A command the user can paste.
    pub command: String,
}

/// What a reconnect is followed by: a failed backfill is redriven, a live flow rebuilt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Then {
    Redrive,
    Rebuild,
}

pub fn redrive_command(id: &WorkflowId) -> String {
    format!("flowpilot workflow redrive {id}")
}

pub fn rebuild_command(id: &WorkflowId) -> String {
    format!("flowpilot integration rebuild {id}")
}

pub fn watch_command(id: &WorkflowId) -> String {
    format!("flowpilot workflow status {id} --watch")
}

/// The AWS CLI call that shows the object type mapping records are written through.
pub fn mapping_command(spec: &WorkflowSpec) -> String {
    format!(
        "aws customer-profiles get-profile-object-type --domain-name {} --object-type-name {}",
        sh(&spec.domain),
        sh(&spec.object_type)
    )
}

/// Renewing the connector profile's credentials with the AWS CLI, then `then`:
/// `connector-profile.json` holds the profile's properties and new credentials (AppFlow's
/// `ConnectorProfileConfig`); `connection_mode` is the profile's (`Public` when unknown).
pub fn reconnect_command(
    id: &WorkflowId,
    spec: &WorkflowSpec,
    connection_mode: Option<&str>,
    then: Then,
) -> String {
    let next = match then {
        Then::Redrive => redrive_command(id),
        Then::Rebuild => rebuild_command(id),
    };
    format!(
        "aws appflow update-connector-profile --connector-profile-name {} --connection-mode {} \
         --connector-profile-config file://connector-profile.json && {next}",
        sh(&spec.connector_profile),
        sh(connection_mode.unwrap_or("Public"))
    )
}

/// A batch or the workflow failed with `err`.
pub fn after_failure(id: &WorkflowId, spec: &WorkflowSpec, err: &ErrorInfo) -> Advice {
    match err.verdict() {
        Verdict::Reconnect => reconnect(id, spec, Then::Redrive),
        Verdict::SourceBudget => Advice {
            action: Action::Redrive,
            recommendation: format!(
                "the SaaS API allowance of connector profile `{}` was spent while the workflow \
                 was already stopping; redrive once it has refilled (Salesforce counts calls \
                 over a rolling 24 hours)",
                spec.connector_profile
            ),
            command: redrive_command(id),
        },
        Verdict::Transient => Advice {
            action: Action::Redrive,
            recommendation: "the batch kept failing with an error that may pass by itself; \
                             once AppFlow and the source answer again, redrive: failed batches \
                             run again with a fresh retry budget, succeeded ones never"
                .to_owned(),
            command: redrive_command(id),
        },
        Verdict::Permanent => Advice {
            action: Action::Redrive,
            recommendation: "fix what the error names (the flow definition, a permission, a \
                             missing resource or a quota), then redrive: failed batches run \
                             again, succeeded ones never"
                .to_owned(),
            command: redrive_command(id),
        },
    }
}

/// The connector profile's credentials no longer authenticate.
pub fn reconnect(id: &WorkflowId, spec: &WorkflowSpec, then: Then) -> Advice {
    let (after, command) = match then {
        Then::Redrive => (
            "then redrive: the workflow resumes from the failed batch",
            redrive_command(id),
        ),
        Then::Rebuild => (
            "then, if AppFlow deactivated the flow, rebuild the integration (it resumes where \
             it last succeeded)",
            rebuild_command(id),
        ),
    };
    Advice {
        action: Action::Reconnect,
        recommendation: format!(
            "reconnect connector profile `{}`: its credentials no longer authenticate (expired \
             or revoked session or refresh token). Renew them in the AppFlow console \
             (Connections, `{}`) or with UpdateConnectorProfile and new credentials, {after}",
            spec.connector_profile, spec.connector_profile
        ),
        command,
    }
}

/// A batch run's record failures exceeded `max_record_failures`: the batch failed.
pub fn records_beyond_budget(
    id: &WorkflowId,
    spec: &WorkflowSpec,
    batch: u32,
    ns: &NotSent,
) -> Advice {
    let written = ns.records_processed.saturating_sub(ns.records_failed);
    Advice {
        action: Action::FixMapping,
        recommendation: format!(
            "{} of {} records of batch {batch} could not be written to Customer Profiles (more \
             than --max-record-failures {}). Fix what AppFlow's message names, usually the \
             object type mapping of `{}` in domain `{}`, then redrive: the batch's window runs \
             again, so its {written} records already written are written a second time \
             (duplicate writes)",
            ns.records_failed,
            ns.records_processed,
            spec.max_record_failures,
            spec.object_type,
            spec.domain
        ),
        command: redrive_command(id),
    }
}

/// Record failures flowpilot accepted: a batch within `max_record_failures` (`batch` is
/// `Some`), or a live run, whose window the continuous flow does not pull again.
pub fn records_accepted(spec: &WorkflowSpec, batch: Option<u32>, ns: &NotSent) -> Advice {
    let (what, why_missing) = match batch {
        Some(i) => (
            format!("batch {i}"),
            format!(
                "within --max-record-failures {}, so the batch counts as succeeded and \
                 flowpilot does not send them again",
                spec.max_record_failures
            ),
        ),
        None => (
            "a run of the continuous flow".to_owned(),
            "the continuous flow does not pull that window again".to_owned(),
        ),
    };
    Advice {
        action: Action::FixMapping,
        recommendation: format!(
            "{} of {} records of {what} could not be written to Customer Profiles ({why_missing}). \
             Fix what AppFlow's message names, usually the object type mapping of `{}` in domain \
             `{}`; the records are sent when they next change in the source",
            ns.records_failed, ns.records_processed, spec.object_type, spec.domain
        ),
        command: mapping_command(spec),
    }
}

/// The SaaS application's API allowance is spent: starts pause until `until`.
pub fn paused(id: &WorkflowId, spec: &WorkflowSpec, until: DateTime<Utc>) -> Advice {
    Advice {
        action: Action::Wait,
        recommendation: format!(
            "wait: the SaaS API allowance of connector profile `{}` is spent (Salesforce counts \
             API calls over a rolling 24 hours). flowpilot starts no batch until {} and then \
             resumes by itself; the refused attempt does not count against the retry budget",
            spec.connector_profile,
            crate::plan::rfc3339(until)
        ),
        command: watch_command(id),
    }
}

/// A batch has waited `since` for a run slot of the shared run budget (`scope`).
pub fn slot_wait(id: &WorkflowId, scope: &str, since: DateTime<Utc>) -> Advice {
    Advice {
        action: Action::Wait,
        recommendation: format!(
            "wait: every run slot on {scope} has been in use since {}; the batch starts by itself \
             when one frees (the longest waiting batch first). To go faster, raise \
             FLOWPILOT_PROFILE_RUN_LIMIT / FLOWPILOT_ACCOUNT_RUN_LIMIT if the source and AppFlow's \
             quotas allow, or run fewer workflows on this connector profile at once",
            crate::plan::rfc3339(since)
        ),
        command: watch_command(id),
    }
}

/// The continuous integration degraded with `err`. The command is always the rebuild command
/// (what `Integration Degraded` has always carried, and what automations run).
pub fn degraded(id: &WorkflowId, spec: &WorkflowSpec, err: &ErrorInfo) -> Advice {
    match err.verdict() {
        Verdict::Reconnect => reconnect(id, spec, Then::Rebuild),
        Verdict::SourceBudget => Advice {
            action: Action::Wait,
            recommendation: format!(
                "wait: the SaaS API allowance of connector profile `{}` is spent. The scheduled \
                 flow runs again on its schedule and recovers by itself once the allowance has \
                 refilled (its failed windows are pulled again); rebuild only if AppFlow \
                 deactivated it",
                spec.connector_profile
            ),
            command: rebuild_command(id),
        },
        _ => Advice {
            action: Action::Rebuild,
            recommendation: "rebuild the continuous integration: it is re-created from the end \
                             of its last successful pull, with no gap"
                .to_owned(),
            command: rebuild_command(id),
        },
    }
}

/// `s` as one shell word: bare when it is made of characters no shell treats specially,
/// single-quoted otherwise (connector profile names may hold `!`, `#`, `@`).
pub fn sh(s: &str) -> String {
    let plain = !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_./:=+-,".contains(&b));
    if plain {
        s.to_owned()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::tests::spec_with;

    fn id() -> WorkflowId {
        WorkflowId::new("wf-1").unwrap()
    }

    #[test]
    fn reconnect_names_the_profile_and_redrives() {
        let spec = spec_with(|s| s.connector_profile = Some("sf-prod".into()));
        let err = ErrorInfo::judged(
            "INVALID_SESSION_ID: Session expired or invalid",
            Verdict::Reconnect,
        );
        let a = after_failure(&id(), &spec, &err);
        assert_eq!(a.action, Action::Reconnect);
        assert!(
            a.recommendation.contains("`sf-prod`"),
            "{}",
            a.recommendation
        );
        assert_eq!(a.command, "flowpilot workflow redrive wf-1");
        assert_eq!(
            reconnect_command(&id(), &spec, Some("Private"), Then::Redrive),
            "aws appflow update-connector-profile --connector-profile-name sf-prod \
             --connection-mode Private --connector-profile-config file://connector-profile.json \
             && flowpilot workflow redrive wf-1"
        );
    }

    #[test]
    fn every_verdict_has_advice_with_a_command() {
        let spec = spec_with(|_| {});
        for v in [
            Verdict::Transient,
            Verdict::Permanent,
            Verdict::Reconnect,
            Verdict::SourceBudget,
        ] {
            let a = after_failure(&id(), &spec, &ErrorInfo::judged("x", v));
            assert!(a.command.starts_with("flowpilot "), "{v:?}: {a:?}");
            assert!(!a.recommendation.is_empty());
        }
        // Errors stored before verdicts were kept still get advice.
        let legacy = ErrorInfo {
            message: "x".into(),
            transient: false,
            verdict: None,
        };
        assert_eq!(after_failure(&id(), &spec, &legacy).action, Action::Redrive);
    }

    #[test]
    fn record_failures_say_what_a_redrive_rewrites() {
        let spec = spec_with(|s| {
            s.domain = Some("acme".into());
            s.object_type = Some("Account".into());
            s.max_record_failures = Some(2);
        });
        let ns = NotSent {
            execution_id: Some("e1".into()),
            attempt: 1,
            run: 0,
            flow_name: None,
            records_failed: 5,
            records_processed: 50,
            message: None,
            reported: false,
            at: crate::spec::tests::now(),
        };
        let a = records_beyond_budget(&id(), &spec, 3, &ns);
        assert_eq!(a.action, Action::FixMapping);
        assert!(
            a.recommendation.contains("5 of 50 records of batch 3")
                && a.recommendation.contains("45 records already written")
                && a.recommendation.contains("--max-record-failures 2"),
            "{}",
            a.recommendation
        );
        assert_eq!(a.command, "flowpilot workflow redrive wf-1");
        let a = records_accepted(&spec, None, &ns);
        assert_eq!(
            a.command,
            "aws customer-profiles get-profile-object-type --domain-name acme --object-type-name Account"
        );
    }

    #[test]
    fn a_degraded_integration_always_carries_the_rebuild_command() {
        let spec = spec_with(|_| {});
        for v in [
            Verdict::Transient,
            Verdict::Permanent,
            Verdict::Reconnect,
            Verdict::SourceBudget,
        ] {
            let a = degraded(&id(), &spec, &ErrorInfo::judged("x", v));
            assert_eq!(a.command, "flowpilot integration rebuild wf-1", "{v:?}");
        }
        let wait = degraded(&id(), &spec, &ErrorInfo::judged("x", Verdict::SourceBudget));
        assert_eq!(wait.action, Action::Wait);
    }

    #[test]
    fn shell_words_are_quoted_when_needed() {
        assert_eq!(sh("sf-prod"), "sf-prod");
        assert_eq!(sh("sf/prod@eu!1"), "'sf/prod@eu!1'");
        assert_eq!(sh("it's"), r"'it'\''s'");
        assert_eq!(sh(""), "''");
    }
}
