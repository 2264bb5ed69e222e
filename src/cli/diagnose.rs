//! `flowpilot workflow diagnose ID [--json]`: the "flow details" view (issue 10). For every
//! batch that failed, lost records or waits, and for the continuous flow: what the workflow
//! recorded, what AppFlow says now (DescribeFlow: status and last run; the matching
//! DescribeFlowExecutionRecords entries; DescribeConnectorProfiles for the connection) and one
//! recommended next step in plain words with a command to paste (`flowpilot_core::advice`, the
//! same advice the health events carry).
//!
//! `--json` prints `{"workflow_id", "findings": [{"flow_name", "batch" (null for the live
//! flow), "problem", "message", "records_failed", "recommendation", "command"}]}`: a contract.
//!
//! The CLI runs as the operator: it reads the state table and calls only AppFlow's read-only
//! Describe operations (README, "IAM"). A call AppFlow refuses is shown, not fatal: the
//! recorded facts still make a diagnosis.

use std::collections::HashMap;
use std::process::ExitCode;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use flowpilot_core::advice::{self, Advice, Then};
use flowpilot_core::classify::Verdict;
use flowpilot_core::ids::{FlowRole, flow_name};
use flowpilot_core::model::{Batch, BatchStatus, Workflow, WorkflowStatus};
use serde::Serialize;
use serde_json::json;

use super::UsageError;
use super::workflow::ResourceArgs;
use crate::aws::inspect::{Execution, FlowDetails, Inspector, ProfileDetails};
use crate::aws::{self, Clients};
use crate::config::RawConfig;
use crate::metrics::Metrics;
use crate::store::Store as _;
use crate::store::dynamo::DynamoStore;

#[derive(Debug, clap::Args)]
pub struct DiagnoseArgs {
    pub id: String,
    /// Print {"workflow_id", "findings": [{"flow_name", "batch", "problem", "message",
    /// "records_failed", "recommendation", "command"}]}.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub resources: ResourceArgs,
}

/// One problem (or, for the live flow, its state) and the step that deals with it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub flow_name: String,
    /// The batch's number (as in the flow name); `None` for the continuous flow.
    pub batch: Option<u32>,
    /// `connector_authentication`, `source_api_limit`, `records_not_sent`, `run_failed`,
    /// `retries_exhausted`, `retrying`, `link_failed`, `integration_degraded`, `none`.
    pub problem: &'static str,
    /// AppFlow's message (the execution record's, else the flow's last run's, else what the
    /// workflow recorded).
    pub message: String,
    /// Records not written: the batch's accepted or failed attempt's, the live flow's total.
    pub records_failed: u64,
    pub recommendation: String,
    pub command: String,
    /// What AppFlow said, for the text view.
    #[serde(skip)]
    pub details: Vec<String>,
}

/// What AppFlow answered, by flow name (errors as text: shown, never fatal).
#[derive(Clone, Debug, Default)]
pub struct Facts {
    pub flows: HashMap<String, Result<Option<FlowDetails>, String>>,
    pub executions: HashMap<String, Result<Vec<Execution>, String>>,
    pub profile: Option<Result<Option<ProfileDetails>, String>>,
}

pub async fn run(args: DiagnoseArgs) -> anyhow::Result<ExitCode> {
    let id =
        flowpilot_core::ids::WorkflowId::new(&args.id).map_err(|e| UsageError(e.to_string()))?;
    let raw = RawConfig {
        table: args.resources.table.clone(),
        ..RawConfig::default()
    };
    let table = raw.table().map_err(|e| UsageError(e.to_string()))?;
    let sdk = aws::sdk_config().await;
    let clients = Clients::new(&sdk, &Arc::new(Metrics::default()));
    let store = DynamoStore::new(clients.dynamodb.clone(), table);
    let wf = store
        .load(&id)
        .await?
        .ok_or_else(|| UsageError(format!("no workflow `{id}` in the state table")))?;
    let facts = gather(&Inspector::new(clients.appflow), &wf).await;
    let found = findings(&wf, &facts);
    if args.json {
        let out = json!({ "workflow_id": wf.id.as_str(), "findings": found });
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        print!("{}", text(&wf, &facts, &found));
    }
    Ok(ExitCode::SUCCESS)
}

/// A flow a diagnosis looks at: its name, the execution ids that are the workflow's, and
/// whether flowpilot deleted it (a succeeded batch's).
struct Subject {
    flow: String,
    ids: Vec<String>,
    deleted: bool,
}

fn subjects(wf: &Workflow) -> Vec<Subject> {
    let mut out: Vec<Subject> = wf
        .batches
        .iter()
        .filter(|b| needs_look(b))
        .map(|b| {
            let mut ids = b.past_execution_ids.clone();
            ids.extend(b.execution_id.clone());
            ids.extend(b.not_sent.as_ref().and_then(|n| n.execution_id.clone()));
            ids.sort();
            ids.dedup();
            Subject {
                flow: flow_name(&wf.id, FlowRole::Batch(b.index)),
                ids,
                deleted: b.status == BatchStatus::Succeeded,
            }
        })
        .collect();
    if let Some(live) = &wf.live {
        let mut ids = live.recent_execution_ids.clone();
        ids.extend(
            live.not_sent
                .iter()
                .filter(|n| n.flow_name.as_deref().is_none_or(|f| f == live.flow_name))
                .filter_map(|n| n.execution_id.clone()),
        );
        ids.sort();
        ids.dedup();
        out.push(Subject {
            flow: live.flow_name.clone(),
            ids,
            deleted: false,
        });
    }
    out
}

/// A batch that failed, lost records, or waits (a retry or a pause).
fn needs_look(b: &Batch) -> bool {
    matches!(b.status, BatchStatus::Failed | BatchStatus::RetryWait) || b.not_sent.is_some()
}

async fn gather(inspector: &Inspector, wf: &Workflow) -> Facts {
    let mut facts = Facts::default();
    for Subject { flow, ids, deleted } in subjects(wf) {
        // flowpilot deleted a succeeded batch's flow (what it recorded then is the diagnosis);
        // asking would only meet IAM's tag condition on a flow that has no tags any more.
        let details = if deleted {
            Ok(None)
        } else {
            inspector.flow(&flow).await.map_err(describe_error)
        };
        let runs = match &details {
            // A deleted flow has no records to read.
            Ok(None) => Ok(Vec::new()),
            _ => inspector
                .executions(&flow, &ids)
                .await
                .map_err(describe_error),
        };
        facts.flows.insert(flow.clone(), details);
        facts.executions.insert(flow, runs);
    }
    facts.profile = Some(
        inspector
            .profile(&wf.spec.connector_profile)
            .await
            .map_err(describe_error),
    );
    facts
}

fn describe_error(e: flowpilot_core::effect::EffectError) -> String {
    format!("{}: {}", e.code, e.message)
}

/// Every finding, batches in order, then the continuous flow.
pub fn findings(wf: &Workflow, facts: &Facts) -> Vec<Finding> {
    let mut out: Vec<Finding> = wf
        .batches
        .iter()
        .filter(|b| needs_look(b))
        .map(|b| batch_finding(wf, b, facts))
        .collect();
    out.extend(live_finding(wf, facts));
    out
}

fn connection_mode(facts: &Facts) -> Option<&str> {
    match &facts.profile {
        Some(Ok(Some(p))) => p.connection_mode.as_deref(),
        _ => None,
    }
}

/// The latest of `flow`'s execution records the workflow knows, preferring `current`.
fn latest<'a>(facts: &'a Facts, flow: &str, current: Option<&str>) -> Option<&'a Execution> {
    let runs = facts.executions.get(flow)?.as_ref().ok()?;
    current
        .and_then(|id| runs.iter().find(|r| r.execution_id == id))
        .or_else(|| runs.last())
}

fn batch_finding(wf: &Workflow, b: &Batch, facts: &Facts) -> Finding {
    let flow = flow_name(&wf.id, FlowRole::Batch(b.index));
    let last_exec = b.past_execution_ids.last().map(String::as_str);
    let run = latest(facts, &flow, b.execution_id.as_deref().or(last_exec));
    let last_run_message = match facts.flows.get(&flow) {
        Some(Ok(Some(f))) => f.last_run_message.clone(),
        _ => None,
    };
    let appflow = run.and_then(|r| r.message.clone()).or(last_run_message);
    let recorded = b.last_error.as_ref().map(|e| e.message.clone());
    let (problem, advice, message) = match (b.status, &b.not_sent) {
        (BatchStatus::Failed, Some(ns)) if ns.attempt == b.attempt => (
            "records_not_sent",
            advice::records_beyond_budget(&wf.id, &wf.spec, b.index, ns),
            ns.message.clone().or(appflow),
        ),
        (BatchStatus::Failed, _) => {
            let err = b.last_error.clone().unwrap_or_else(|| {
                flowpilot_core::model::ErrorInfo::judged("failed", Verdict::Permanent)
            });
            let verdict = err.verdict();
            let mut a = advice::after_failure(&wf.id, &wf.spec, &err);
            if verdict == Verdict::Reconnect {
                a.command = advice::reconnect_command(
                    &wf.id,
                    &wf.spec,
                    connection_mode(facts),
                    Then::Redrive,
                );
            }
            let problem = match verdict {
                Verdict::Reconnect => "connector_authentication",
                Verdict::SourceBudget => "source_api_limit",
                Verdict::Transient => "retries_exhausted",
                Verdict::Permanent => "run_failed",
            };
            (problem, a, appflow.or(recorded))
        }
        (BatchStatus::RetryWait, _) if b.paused => (
            "source_api_limit",
            advice::paused(&wf.id, &wf.spec, b.retry_at.unwrap_or(wf.updated_at)),
            appflow.or(recorded),
        ),
        (BatchStatus::RetryWait, _) => ("retrying", retrying(wf, b.retry_at), appflow.or(recorded)),
        (_, Some(ns)) => (
            "records_not_sent",
            advice::records_accepted(&wf.spec, Some(b.index), ns),
            ns.message.clone().or(appflow),
        ),
        // `needs_look` lets no other batch through; say so rather than guess.
        _ => ("none", nothing_to_do(wf), recorded),
    };
    Finding {
        details: flow_lines(facts, &flow),
        flow_name: flow,
        batch: Some(b.index),
        problem,
        message: message.unwrap_or_default(),
        records_failed: b.records_failed(),
        recommendation: advice.recommendation,
        command: advice.command,
    }
}

fn live_finding(wf: &Workflow, facts: &Facts) -> Option<Finding> {
    let live = wf.live.as_ref()?;
    let flow = live.flow_name.clone();
    let run = latest(
        facts,
        &flow,
        live.recent_execution_ids.last().map(String::as_str),
    );
    let last_run_message = match facts.flows.get(&flow) {
        Some(Ok(Some(f))) => f.last_run_message.clone(),
        _ => None,
    };
    let recorded = live.last_error.as_ref().map(|e| e.message.clone());
    let latest_not_sent = live.not_sent.last();
    let (problem, advice, message) = match (&live.last_error, wf.status) {
        (Some(err), WorkflowStatus::Failed) => (
            "link_failed",
            advice::after_failure(&wf.id, &wf.spec, err),
            recorded,
        ),
        (Some(err), WorkflowStatus::Degraded) => {
            let mut a = advice::degraded(&wf.id, &wf.spec, err);
            if err.verdict() == Verdict::Reconnect {
                a.command = advice::reconnect_command(
                    &wf.id,
                    &wf.spec,
                    connection_mode(facts),
                    Then::Rebuild,
                );
            }
            (
                "integration_degraded",
                a,
                run.and_then(|r| r.message.clone()).or(recorded),
            )
        }
        (Some(err), _) => (
            "run_failed",
            Advice {
                action: advice::Action::None,
                recommendation: format!(
                    "the continuous flow's last run failed ({} in a row); it runs again on \
                     schedule, and after {} failures in a row flowpilot reports it degraded",
                    live.consecutive_failures, wf.spec.continuous.degraded_threshold
                ),
                command: advice::watch_command(&wf.id),
            },
            Some(err.message.clone()),
        ),
        (None, _) => match latest_not_sent {
            Some(ns) => (
                "records_not_sent",
                advice::records_accepted(&wf.spec, None, ns),
                ns.message.clone().or(last_run_message),
            ),
            None => ("none", nothing_to_do(wf), last_run_message),
        },
    };
    Some(Finding {
        details: flow_lines(facts, &flow),
        flow_name: flow,
        batch: None,
        problem,
        message: message.unwrap_or_default(),
        records_failed: live.records_failed,
        recommendation: advice.recommendation,
        command: advice.command,
    })
}

fn retrying(wf: &Workflow, at: Option<DateTime<Utc>>) -> Advice {
    Advice {
        action: advice::Action::None,
        recommendation: format!(
            "nothing to do yet: the run failed with an error that may pass by itself and \
             flowpilot retries it{}",
            at.map(|t| format!(" at {}", t.to_rfc3339()))
                .unwrap_or_default()
        ),
        command: advice::watch_command(&wf.id),
    }
}

fn nothing_to_do(wf: &Workflow) -> Advice {
    Advice {
        action: advice::Action::None,
        recommendation: "nothing to do: no problem found".to_owned(),
        command: format!("flowpilot workflow status {}", wf.id),
    }
}

/// DescribeFlow and the execution records of `flow`, for the text view.
fn flow_lines(facts: &Facts, flow: &str) -> Vec<String> {
    let mut lines = Vec::new();
    match facts.flows.get(flow) {
        Some(Ok(Some(f))) => lines.push(format!(
            "AppFlow flow: {}; last run: {} {}{}",
            f.status.as_deref().unwrap_or("status unknown"),
            f.last_run_status.as_deref().unwrap_or("none"),
            f.last_run_at.map(|t| t.to_rfc3339()).unwrap_or_default(),
            f.last_run_message
                .as_deref()
                .map(|m| format!(": {m}"))
                .unwrap_or_default()
        )),
        Some(Ok(None)) => {
            lines.push(
                "AppFlow flow: deleted (flowpilot deletes a batch's flow once it succeeded)"
                    .to_owned(),
            );
        }
        Some(Err(e)) => lines.push(format!("AppFlow flow: cannot describe: {e}")),
        None => {}
    }
    match facts.executions.get(flow) {
        Some(Ok(runs)) => {
            for r in runs {
                lines.push(format!(
                    "run {}: {} started {}{}{}",
                    r.execution_id,
                    r.status.as_deref().unwrap_or("?"),
                    r.started_at.map(|t| t.to_rfc3339()).unwrap_or_default(),
                    r.put_failures
                        .filter(|n| *n > 0)
                        .map(|n| format!(", {n} records not written"))
                        .unwrap_or_default(),
                    r.message
                        .as_deref()
                        .map(|m| format!(": {m}"))
                        .unwrap_or_default()
                ));
            }
        }
        Some(Err(e)) => lines.push(format!("execution records: cannot read: {e}")),
        None => {}
    }
    lines
}

pub fn text(wf: &Workflow, facts: &Facts, found: &[Finding]) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "workflow {}  status: {}  connector profile: {}",
        wf.id,
        wf.status.as_str(),
        wf.spec.connector_profile
    );
    match &facts.profile {
        Some(Ok(Some(p))) => {
            let _ = writeln!(
                out,
                "connection: {} {} ({}), last updated {}. AppFlow does not say whether its \
                 credentials expired: failed runs and ConnectorAuthenticationException do",
                p.name,
                p.connector_type.as_deref().unwrap_or("?"),
                p.connection_mode.as_deref().unwrap_or("?"),
                p.last_updated_at
                    .map(|t| t.to_rfc3339())
                    .unwrap_or_else(|| "never".to_owned())
            );
        }
        Some(Ok(None)) => {
            let _ = writeln!(
                out,
                "connection: AppFlow has no connector profile `{}`: create it, then redrive",
                wf.spec.connector_profile
            );
        }
        Some(Err(e)) => {
            let _ = writeln!(out, "connection: cannot describe: {e}");
        }
        None => {}
    }
    if found.is_empty() {
        let _ = writeln!(out, "\nno problem found");
    }
    for f in found {
        let what = f
            .batch
            .map_or_else(|| "continuous flow".to_owned(), |i| format!("batch {i}"));
        let _ = writeln!(out, "\n{what} ({}): {}", f.flow_name, f.problem);
        if !f.message.is_empty() {
            let _ = writeln!(out, "  message: {}", f.message);
        }
        if f.records_failed > 0 {
            let _ = writeln!(out, "  records not sent: {}", f.records_failed);
        }
        for line in &f.details {
            let _ = writeln!(out, "  {line}");
        }
        let _ = writeln!(out, "  next: {}", f.recommendation);
        let _ = writeln!(out, "  run:  {}", f.command);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use flowpilot_core::decide::{Policy, decide};
    use flowpilot_core::effect::Outcome;
    use flowpilot_core::ids::WorkflowId;
    use flowpilot_core::input::{Input, RunReport};
    use flowpilot_core::spec::SpecInput;

    fn now() -> DateTime<Utc> {
        "2026-01-01T00:00:00Z".parse().unwrap()
    }

    fn workflow(max_record_failures: u32) -> Workflow {
        let spec = SpecInput {
            domain: Some("acme".into()),
            object_type: Some("Account".into()),
            connector: Some("salesforce".into()),
            connector_profile: Some("sf-test".into()),
            object: Some("Account".into()),
            from: Some("2025-01-01".into()),
            to: Some("2025-07-01".into()),
            max_record_failures: Some(max_record_failures),
            ..Default::default()
        }
        .validate(now())
        .unwrap();
        let w = Workflow::new(WorkflowId::new("wf-1").unwrap(), spec, now());
        let w = decide(&w, Input::Start, now(), &Policy::default()).workflow;
        let started = Input::Applied(vec![Outcome::Started {
            key: "b0/a1/start".parse().unwrap(),
            role: FlowRole::Batch(0),
            attempt: 1,
            execution_id: Some("e1".into()),
        }]);
        decide(&w, started, now(), &Policy::default()).workflow
    }

    fn ended(ok: bool, error: Option<&str>, failed: u64, message: Option<&str>) -> Input {
        Input::RunEnded(RunReport {
            flow_name: "fp-wf-1-b0000".into(),
            role: FlowRole::Batch(0),
            execution_id: Some("e1".into()),
            succeeded: ok,
            error: error.map(str::to_owned),
            records_processed: Some(50),
            record_failures: Some(failed),
            record_failure_message: message.map(str::to_owned),
            pull_start: None,
            pull_end: None,
            ended_at: None,
        })
    }

    fn facts_with_profile(mode: &str) -> Facts {
        Facts {
            profile: Some(Ok(Some(ProfileDetails {
                name: "sf-test".into(),
                connection_mode: Some(mode.into()),
                ..ProfileDetails::default()
            }))),
            ..Facts::default()
        }
    }

    #[test]
    fn an_expired_connection_is_diagnosed_as_reconnect_with_a_pasteable_command() {
        let w = workflow(0);
        let w = decide(
            &w,
            ended(
                false,
                Some("INVALID_SESSION_ID: Session expired or invalid"),
                0,
                None,
            ),
            now(),
            &Policy::default(),
        )
        .workflow;
        let mut facts = facts_with_profile("Private");
        facts.executions.insert(
            "fp-wf-1-b0000".into(),
            Ok(vec![Execution {
                execution_id: "e1".into(),
                status: Some("Error".into()),
                message: Some("INVALID_SESSION_ID: Session expired or invalid".into()),
                ..Execution::default()
            }]),
        );
        let f = findings(&w, &facts);
        assert_eq!(f.len(), 1);
        let f = &f[0];
        assert_eq!(
            (f.problem, f.batch, f.flow_name.as_str()),
            ("connector_authentication", Some(0), "fp-wf-1-b0000")
        );
        assert_eq!(f.message, "INVALID_SESSION_ID: Session expired or invalid");
        assert!(
            f.recommendation.contains("`sf-test`"),
            "{}",
            f.recommendation
        );
        assert_eq!(
            f.command,
            "aws appflow update-connector-profile --connector-profile-name sf-test \
             --connection-mode Private --connector-profile-config file://connector-profile.json \
             && flowpilot workflow redrive wf-1"
        );
        let json = serde_json::to_value(f).unwrap();
        let keys: Vec<&str> = json
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(
            keys,
            [
                "batch",
                "command",
                "flow_name",
                "message",
                "problem",
                "recommendation",
                "records_failed"
            ]
        );
    }

    #[test]
    fn records_not_sent_within_and_beyond_the_budget() {
        let within = decide(
            &workflow(10),
            ended(true, None, 5, Some("5 records failed")),
            now(),
            &Policy::default(),
        )
        .workflow;
        let f = findings(&within, &Facts::default());
        assert_eq!(
            (f[0].problem, f[0].records_failed, f[0].message.as_str()),
            ("records_not_sent", 5, "5 records failed")
        );
        assert!(
            f[0].command
                .starts_with("aws customer-profiles get-profile-object-type")
        );

        let beyond = decide(
            &workflow(0),
            ended(true, None, 5, Some("5 records failed")),
            now(),
            &Policy::default(),
        )
        .workflow;
        let f = findings(&beyond, &Facts::default());
        assert_eq!((f[0].problem, f[0].records_failed), ("records_not_sent", 5));
        assert_eq!(f[0].command, "flowpilot workflow redrive wf-1");
        assert!(f[0].recommendation.contains("45 records already written"));
        let text = text(&beyond, &Facts::default(), &f);
        assert!(text.contains("records not sent: 5"), "{text}");
    }

    #[test]
    fn a_pause_says_when_it_ends() {
        let w = decide(
            &workflow(0),
            ended(
                false,
                Some("REQUEST_LIMIT_EXCEEDED: TotalRequests Limit exceeded."),
                0,
                None,
            ),
            now(),
            &Policy::default(),
        )
        .workflow;
        let f = findings(&w, &Facts::default());
        assert_eq!(f[0].problem, "source_api_limit");
        assert!(
            f[0].recommendation.contains("2026-01-01T01:00:00Z"),
            "{}",
            f[0].recommendation
        );
        assert_eq!(f[0].command, "flowpilot workflow status wf-1 --watch");
    }

    #[test]
    fn a_healthy_workflow_has_nothing_to_diagnose() {
        let w = decide(
            &workflow(0),
            ended(true, None, 0, None),
            now(),
            &Policy::default(),
        )
        .workflow;
        assert!(findings(&w, &Facts::default()).is_empty());
    }
}
