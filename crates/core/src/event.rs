//! Parsing SQS message bodies: EventBridge envelopes from AppFlow and flowpilot's own command
//! events (DESIGN.md §1, wire facts §1). Liberal in what it accepts; anything that is not such
//! an envelope is [`Poison`] with the reason (never deleted by the worker; SQS moves it to the DLQ).
//!
//! CONTRACT: `pub fn parse_message(body: &str) -> Result<Message, Poison>` and
//! `pub fn command_envelope(cmd: &CommandMessage, now) -> serde_json::Value` (the JSON the worker
//! and CLI send for commands; `parse_message` must accept it).

use serde::{Deserialize, Serialize};

use crate::ids::WorkflowId;
use crate::input::Input;

/// EventBridge source of command events.
pub const COMMAND_SOURCE: &str = "flowpilot.command";
/// EventBridge detail-type of command events.
pub const COMMAND_DETAIL_TYPE: &str = "Workflow Command";

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

/// A command as carried in a `flowpilot.command` event's `detail`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandMessage {
    /// `start | retry_due | cancel | redrive | rebuild | reconcile`
    pub command: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workflow_id: Option<WorkflowId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempt: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub due_at: Option<chrono::DateTime<chrono::Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}
