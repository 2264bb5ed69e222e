//! Commands: what the CLI, the worker's retry timers and drains, the reconcile schedule and
//! alert automations ask of workflows, and their one wire form.
//!
//! A command travels as a `flowpilot.command` / `Workflow Command` EventBridge event (or the
//! same envelope sent straight to SQS) whose `detail` is
//! `{"command": "rebuild", "workflow_id": "wf-…", "batch": …, "attempt": …, "due_at": …,
//! "reason": …}`, absent members omitted. [`Command::to_detail`] is the only writer of that
//! object and [`Command::from_detail`] the only reader; the README documents it for
//! automations, so it does not change.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::event::{Message, Poison};
use crate::ids::WorkflowId;
use crate::input::Input;

/// EventBridge source of command events.
pub const COMMAND_SOURCE: &str = "flowpilot.command";
/// EventBridge detail-type of command events.
pub const COMMAND_DETAIL_TYPE: &str = "Workflow Command";

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// Begin a created workflow.
    Start { workflow_id: WorkflowId },
    /// Stop everything and delete what flowpilot created; `reason` is recorded as the error.
    Cancel {
        workflow_id: WorkflowId,
        reason: Option<String>,
    },
    /// Resume a failed workflow. `reason` only travels with the message (for whoever reads
    /// the queue or the bus).
    Redrive {
        workflow_id: WorkflowId,
        reason: Option<String>,
    },
    /// Delete and re-establish the continuous integration.
    Rebuild {
        workflow_id: WorkflowId,
        reason: Option<String>,
    },
    /// Reconcile one workflow (also drains its outbox).
    Reconcile {
        workflow_id: WorkflowId,
        reason: Option<String>,
    },
    /// Reconcile every active workflow (the schedule's tick).
    ReconcileAll,
    /// Drain a workflow's stuck outbox again: drain number `attempt` (the worker schedules
    /// at most one per workflow, with exponential backoff; see `decide::drain`).
    Drain {
        workflow_id: WorkflowId,
        attempt: u32,
    },
    /// Start `attempt + 1` of `batch` once `due_at` has passed.
    RetryDue {
        workflow_id: WorkflowId,
        batch: u32,
        attempt: u32,
        due_at: DateTime<Utc>,
    },
}

/// The `detail` object as it travels; absent members are omitted.
#[derive(Serialize, Deserialize)]
struct Detail {
    command: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    workflow_id: Option<WorkflowId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    batch: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    attempt: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    due_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
}

impl Command {
    /// The `command` member of the wire form.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Start { .. } => "start",
            Self::Cancel { .. } => "cancel",
            Self::Redrive { .. } => "redrive",
            Self::Rebuild { .. } => "rebuild",
            Self::Reconcile { .. } | Self::ReconcileAll => "reconcile",
            Self::RetryDue { .. } => "retry_due",
            Self::Drain { .. } => "drain",
        }
    }

    pub fn workflow_id(&self) -> Option<&WorkflowId> {
        match self {
            Self::Start { workflow_id }
            | Self::Cancel { workflow_id, .. }
            | Self::Redrive { workflow_id, .. }
            | Self::Rebuild { workflow_id, .. }
            | Self::Reconcile { workflow_id, .. }
            | Self::RetryDue { workflow_id, .. }
            | Self::Drain { workflow_id, .. } => Some(workflow_id),
            Self::ReconcileAll => None,
        }
    }

    /// The event `detail` carrying this command.
    pub fn to_detail(&self) -> Value {
        let mut d = Detail {
            command: self.name().to_owned(),
            workflow_id: self.workflow_id().cloned(),
            batch: None,
            attempt: None,
            due_at: None,
            reason: None,
        };
        match self {
            Self::Cancel { reason, .. }
            | Self::Redrive { reason, .. }
            | Self::Rebuild { reason, .. }
            | Self::Reconcile { reason, .. } => d.reason = reason.clone(),
            Self::RetryDue {
                batch,
                attempt,
                due_at,
                ..
            } => (d.batch, d.attempt, d.due_at) = (Some(*batch), Some(*attempt), Some(*due_at)),
            Self::Drain { attempt, .. } => d.attempt = Some(*attempt),
            Self::Start { .. } | Self::ReconcileAll => {}
        }
        // A struct of strings, numbers and timestamps always serializes; the fallback keeps
        // this total should that ever change.
        serde_json::to_value(&d).unwrap_or_else(|_| json!({ "command": self.name() }))
    }

    /// Reads an event `detail`: unknown members are ignored, members a command does not use
    /// (a `reason` on `start`) too; a missing or malformed one it needs is poison.
    pub fn from_detail(detail: &Map<String, Value>) -> Result<Self, Poison> {
        let d: Detail = serde_json::from_value(Value::Object(detail.clone()))
            .map_err(|e| Poison::new(format!("malformed command: {e}")))?;
        let name = d.command.as_str();
        let workflow_id = || {
            d.workflow_id
                .clone()
                .ok_or_else(|| Poison::new(format!("command `{name}` needs workflow_id")))
        };
        let reason = d.reason.clone();
        Ok(match name {
            "start" => Self::Start {
                workflow_id: workflow_id()?,
            },
            "cancel" => Self::Cancel {
                workflow_id: workflow_id()?,
                reason,
            },
            "redrive" => Self::Redrive {
                workflow_id: workflow_id()?,
                reason,
            },
            "rebuild" => Self::Rebuild {
                workflow_id: workflow_id()?,
                reason,
            },
            "reconcile" => match d.workflow_id.clone() {
                Some(workflow_id) => Self::Reconcile {
                    workflow_id,
                    reason,
                },
                None => Self::ReconcileAll,
            },
            "retry_due" => match (d.batch, d.attempt, d.due_at) {
                (Some(batch), Some(attempt), Some(due_at)) => Self::RetryDue {
                    workflow_id: workflow_id()?,
                    batch,
                    attempt,
                    due_at,
                },
                _ => {
                    return Err(Poison::new(
                        "command `retry_due` needs batch, attempt and due_at",
                    ));
                }
            },
            "drain" => Self::Drain {
                workflow_id: workflow_id()?,
                attempt: d
                    .attempt
                    .ok_or_else(|| Poison::new("command `drain` needs attempt"))?,
            },
            other => return Err(Poison::new(format!("unknown command `{other}`"))),
        })
    }

    /// What the worker does with it.
    pub fn into_message(self) -> Message {
        let (workflow_id, input) = match self {
            Self::ReconcileAll => return Message::ReconcileAll,
            Self::Start { workflow_id } => (workflow_id, Input::Start),
            Self::Cancel {
                workflow_id,
                reason,
            } => (workflow_id, Input::Cancel { reason }),
            Self::Redrive { workflow_id, .. } => (workflow_id, Input::Redrive),
            Self::Rebuild {
                workflow_id,
                reason,
            } => (workflow_id, Input::Rebuild { reason }),
            Self::Reconcile { workflow_id, .. } => (workflow_id, Input::Reconcile),
            Self::Drain {
                workflow_id,
                attempt,
            } => (workflow_id, Input::Drain { attempt }),
            Self::RetryDue {
                workflow_id,
                batch,
                attempt,
                due_at,
            } => (
                workflow_id,
                Input::RetryDue {
                    batch,
                    attempt,
                    due_at,
                },
            ),
        };
        Message::Workflow { workflow_id, input }
    }

    /// The EventBridge envelope for this command, as the CLI, the worker's timers and alert
    /// automations send it (also accepted verbatim as an SQS body by
    /// [`parse_message`](crate::event::parse_message)).
    pub fn envelope(&self, now: DateTime<Utc>) -> Value {
        json!({
            "version": "0",
            "id": self.envelope_id(now),
            "detail-type": COMMAND_DETAIL_TYPE,
            "source": COMMAND_SOURCE,
            "time": crate::plan::rfc3339(now),
            "resources": [],
            "detail": self.to_detail(),
        })
    }

    /// Deterministic (core has no randomness): the command and its arguments plus the time.
    fn envelope_id(&self, now: DateTime<Utc>) -> String {
        let wf = self.workflow_id().map_or("all", WorkflowId::as_str);
        let mut id = format!("{}-{wf}-{}", self.name(), now.timestamp_millis());
        match self {
            Self::RetryDue { batch, attempt, .. } => id.push_str(&format!("-b{batch}-a{attempt}")),
            Self::Drain { attempt, .. } => id.push_str(&format!("-d{attempt}")),
            _ => {}
        }
        id
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wf() -> WorkflowId {
        WorkflowId::new("wf-0123456789").unwrap()
    }

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn all() -> Vec<Command> {
        let reason = Some("alert automation".to_owned());
        vec![
            Command::Start { workflow_id: wf() },
            Command::Cancel {
                workflow_id: wf(),
                reason: reason.clone(),
            },
            Command::Redrive {
                workflow_id: wf(),
                reason: None,
            },
            Command::Rebuild {
                workflow_id: wf(),
                reason: reason.clone(),
            },
            Command::Reconcile {
                workflow_id: wf(),
                reason,
            },
            Command::ReconcileAll,
            Command::RetryDue {
                workflow_id: wf(),
                batch: 3,
                attempt: 2,
                due_at: t("2026-01-01T00:05:00Z"),
            },
        ]
    }

    /// The envelopes as the string-typed `CommandMessage` this replaced wrote them: queued
    /// messages and automations built on them must keep parsing, and nothing downstream
    /// should see a difference.
    #[test]
    fn the_wire_form_is_pinned_byte_for_byte() {
        let now = t("2026-01-01T00:00:00Z");
        let got: Vec<String> = all().iter().map(|c| c.envelope(now).to_string()).collect();
        let tail = r#""detail-type":"Workflow Command","#;
        let want = [
            r#"{"detail":{"command":"start","workflow_id":"wf-0123456789"},"#.to_owned() + tail + r#""id":"start-wf-0123456789-1767225600000","resources":[],"source":"flowpilot.command","time":"2026-01-01T00:00:00Z","version":"0"}"#,
            r#"{"detail":{"command":"cancel","reason":"alert automation","workflow_id":"wf-0123456789"},"#.to_owned() + tail + r#""id":"cancel-wf-0123456789-1767225600000","resources":[],"source":"flowpilot.command","time":"2026-01-01T00:00:00Z","version":"0"}"#,
            r#"{"detail":{"command":"redrive","workflow_id":"wf-0123456789"},"#.to_owned() + tail + r#""id":"redrive-wf-0123456789-1767225600000","resources":[],"source":"flowpilot.command","time":"2026-01-01T00:00:00Z","version":"0"}"#,
            r#"{"detail":{"command":"rebuild","reason":"alert automation","workflow_id":"wf-0123456789"},"#.to_owned() + tail + r#""id":"rebuild-wf-0123456789-1767225600000","resources":[],"source":"flowpilot.command","time":"2026-01-01T00:00:00Z","version":"0"}"#,
            r#"{"detail":{"command":"reconcile","reason":"alert automation","workflow_id":"wf-0123456789"},"#.to_owned() + tail + r#""id":"reconcile-wf-0123456789-1767225600000","resources":[],"source":"flowpilot.command","time":"2026-01-01T00:00:00Z","version":"0"}"#,
            r#"{"detail":{"command":"reconcile"},"#.to_owned() + tail + r#""id":"reconcile-all-1767225600000","resources":[],"source":"flowpilot.command","time":"2026-01-01T00:00:00Z","version":"0"}"#,
            r#"{"detail":{"attempt":2,"batch":3,"command":"retry_due","due_at":"2026-01-01T00:05:00Z","workflow_id":"wf-0123456789"},"#.to_owned() + tail + r#""id":"retry_due-wf-0123456789-1767225600000-b3-a2","resources":[],"source":"flowpilot.command","time":"2026-01-01T00:00:00Z","version":"0"}"#,
        ];
        assert_eq!(got, want);
    }

    #[test]
    fn every_command_reads_back_as_itself() {
        for cmd in all() {
            let Value::Object(detail) = cmd.to_detail() else {
                panic!("{cmd:?}: detail is not an object");
            };
            assert_eq!(Command::from_detail(&detail), Ok(cmd));
        }
    }

    #[test]
    fn the_documented_automation_and_extra_members_parse() {
        let readme = json!({"command": "rebuild", "workflow_id": "wf-0123456789"});
        let Value::Object(d) = readme else { panic!() };
        assert_eq!(
            Command::from_detail(&d),
            Ok(Command::Rebuild {
                workflow_id: wf(),
                reason: None
            })
        );
        let extra =
            json!({"command": "start", "workflow_id": "wf-0123456789", "reason": "x", "by": "ops"});
        let Value::Object(d) = extra else { panic!() };
        assert_eq!(
            Command::from_detail(&d),
            Ok(Command::Start { workflow_id: wf() })
        );
    }
}
