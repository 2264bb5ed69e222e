//! Parsing SQS message bodies: EventBridge envelopes from AppFlow and flowpilot's own command
//! events (docs/architecture.md, "The life of one AppFlow event"; wire facts §1). Liberal in what it accepts (numbers as strings or
//! numbers, `"N/A"`, `[UTC]` time suffixes, missing `account`, unknown extra fields); anything
//! that is not such an envelope is [`Poison`] with the reason (never deleted by the worker; SQS
//! moves it to the DLQ). Never panics: every access is checked.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::command::{COMMAND_DETAIL_TYPE, COMMAND_SOURCE, Command};
use crate::ids::{
    FlowRole, WorkflowId, parse_flow_name, parse_managed_live_flow_name,
    parse_managed_step_flow_name,
};
use crate::input::{Input, RunReport};

pub const APPFLOW_SOURCE: &str = "aws.appflow";
pub const END_REPORT: &str = "AppFlow End Flow Run Report";
pub const START_REPORT: &str = "AppFlow Start Flow Run Report";
pub const SCHEDULED_DEACTIVATED: &str = "AppFlow Scheduled Flow Deactivated";
/// The only status AppFlow documents for success; anything else is a failure.
pub const SUCCESS_STATUS: &str = "Execution Successful";

/// A message the worker understood.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Message {
    /// Input for one workflow.
    Workflow {
        workflow_id: WorkflowId,
        input: Input,
    },
    /// Global reconcile tick: feed `Input::Reconcile` to every active workflow.
    ReconcileAll,
    /// A well-formed event we do not act on (start reports, flows without our prefix): delete.
    Ignored { reason: String },
}

/// A body that is not an envelope we understand.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("poison message: {reason}")]
pub struct Poison {
    pub reason: String,
}

impl Poison {
    pub(crate) fn new(reason: impl Into<String>) -> Self {
        Self {
            reason: reason.into(),
        }
    }
}

fn poison(reason: impl Into<String>) -> Poison {
    Poison::new(reason)
}

/// Parses one SQS message body.
pub fn parse_message(body: &str) -> Result<Message, Poison> {
    let value: Value =
        serde_json::from_str(body).map_err(|e| poison(format!("body is not JSON: {e}")))?;
    let Value::Object(env) = value else {
        return Err(poison("body is not a JSON object"));
    };
    let detail_type = str_field(&env, "detail-type")
        .ok_or_else(|| poison("envelope has no string `detail-type`"))?;
    let source =
        str_field(&env, "source").ok_or_else(|| poison("envelope has no string `source`"))?;
    let Some(Value::Object(detail)) = env.get("detail") else {
        return Err(poison("envelope has no object `detail`"));
    };
    match source {
        APPFLOW_SOURCE => parse_appflow(detail_type, detail),
        COMMAND_SOURCE => parse_command(detail_type, detail),
        other => Err(poison(format!("unknown event source `{other}`"))),
    }
}

fn parse_appflow(detail_type: &str, detail: &Map<String, Value>) -> Result<Message, Poison> {
    let known = [END_REPORT, START_REPORT, SCHEDULED_DEACTIVATED];
    if !known.contains(&detail_type) {
        // Well-formed AppFlow events we never subscribe to (e.g. Event Flow Report) are not
        // poison: a broad rule may forward them.
        return Ok(ignored(format!(
            "AppFlow event `{detail_type}` is not acted on"
        )));
    }
    let name = str_field(detail, "flow-name")
        .ok_or_else(|| poison(format!("`{detail_type}` without string detail.flow-name")))?;
    // The managed engine's continuous integration flow is watched as the live flow (reserved
    // ids keep this from shadowing a flowpilot workflow's own, `ids::is_reserved`).
    let parsed = parse_managed_live_flow_name(name)
        .map(|(wf, _)| (wf, FlowRole::Live))
        .or_else(|| parse_flow_name(name));
    let Some((workflow_id, role)) = parsed else {
        // A managed workflow's step flow (Customer Profiles named it after flowpilot's
        // FlowDefinition): its End report only prompts asking Customer Profiles.
        if let Some((workflow_id, generation, step)) = parse_managed_step_flow_name(name)
            && detail_type == END_REPORT
        {
            return Ok(Message::Workflow {
                workflow_id,
                input: Input::ManagedStepEnded { generation, step },
            });
        }
        return Ok(ignored(format!(
            "flow `{name}` is not a flowpilot flow, or not its end report"
        )));
    };
    let input = match detail_type {
        START_REPORT => return Ok(ignored(format!("start report for `{name}`"))),
        SCHEDULED_DEACTIVATED => Input::FlowDeactivated {
            role,
            flow_name: name.to_owned(),
            reason: str_field(detail, "deactivation-reason")
                .unwrap_or("unknown")
                .to_owned(),
        },
        _ => Input::RunEnded(run_report(name, role, detail)?),
    };
    Ok(Message::Workflow { workflow_id, input })
}

fn run_report(name: &str, role: FlowRole, d: &Map<String, Value>) -> Result<RunReport, Poison> {
    let status = str_field(d, "status").ok_or_else(|| {
        poison(format!(
            "end report for `{name}` without string detail.status"
        ))
    })?;
    let succeeded = status == SUCCESS_STATUS;
    let error = if succeeded {
        None
    } else {
        // Keep AppFlow's words; fall back to the status so the operator still sees something.
        Some(text(d.get("error")).unwrap_or_else(|| status.to_owned()))
    };
    let (pull_start, pull_end) = pull_range(d.get("incremental-transfer-time-range"));
    Ok(RunReport {
        flow_name: name.to_owned(),
        role,
        execution_id: text(d.get("execution-id")),
        succeeded,
        error,
        records_processed: count(d.get("num-of-records-processed")),
        record_failures: count(d.get("num-of-record-failures")),
        // AppFlow documents `error` for failed runs only; should a successful run's report
        // carry one, it is the record failures' message.
        record_failure_message: if succeeded {
            text(d.get("error"))
        } else {
            None
        },
        pull_start,
        pull_end,
        ended_at: time(d.get("end-time")),
    })
}

fn parse_command(detail_type: &str, detail: &Map<String, Value>) -> Result<Message, Poison> {
    if detail_type != COMMAND_DETAIL_TYPE {
        return Err(poison(format!(
            "command event with detail-type `{detail_type}`"
        )));
    }
    Ok(Command::from_detail(detail)?.into_message())
}

fn ignored(reason: String) -> Message {
    Message::Ignored { reason }
}

fn str_field<'a>(m: &'a Map<String, Value>, key: &str) -> Option<&'a str> {
    m.get(key).and_then(Value::as_str)
}

/// A string or number as text; `"N/A"`, empty and null are absent.
fn text(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) if s.is_empty() || s.eq_ignore_ascii_case("N/A") => None,
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Counts arrive as strings (`"63000"`) or numbers; anything unparseable is unknown.
fn count(v: Option<&Value>) -> Option<u64> {
    match v? {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// The field's shape is undocumented (wire facts §1.2): accept an object with
/// `start-time`/`end-time` (or camelCase), a two-element array, or `"<start> - <end>"`.
fn pull_range(v: Option<&Value>) -> (Option<DateTime<Utc>>, Option<DateTime<Utc>>) {
    match v {
        Some(Value::Object(m)) => (
            time(m.get("start-time").or_else(|| m.get("startTime"))),
            time(m.get("end-time").or_else(|| m.get("endTime"))),
        ),
        Some(Value::Array(a)) if a.len() == 2 => (time(a.first()), time(a.get(1))),
        Some(Value::String(s)) => match s.split_once(" - ").or_else(|| s.split_once(" to ")) {
            Some((a, b)) => (
                time(Some(&Value::String(a.to_owned()))),
                time(Some(&Value::String(b.to_owned()))),
            ),
            None => (None, None),
        },
        _ => (None, None),
    }
}

/// `2023-08-29T12:55:23.835Z[UTC]` (Java ZonedDateTime), plain RFC 3339, or epoch seconds.
fn time(v: Option<&Value>) -> Option<DateTime<Utc>> {
    match v? {
        Value::String(s) => {
            let s = s.trim();
            let s = match s.find('[') {
                Some(i) if s.ends_with(']') => &s[..i],
                _ => s,
            };
            DateTime::parse_from_rfc3339(s)
                .ok()
                .map(|t| t.with_timezone(&Utc))
        }
        Value::Number(n) => {
            let secs = n.as_f64()?;
            if !secs.is_finite() {
                return None;
            }
            DateTime::from_timestamp_millis((secs * 1000.0) as i64)
        }
        _ => None,
    }
}
