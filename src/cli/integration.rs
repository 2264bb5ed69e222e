//! `flowpilot integration rebuild ID`: delete and re-establish a workflow's continuous
//! integration, resuming from the last successfully ingested point.

use std::process::ExitCode;

use flowpilot_core::command::Command;
use flowpilot_core::model::WorkflowStatus;

use super::workflow::{IdArgs, send_checked};

pub async fn rebuild(args: IdArgs) -> anyhow::Result<ExitCode> {
    send_checked(
        args,
        |workflow_id, reason| Command::Rebuild {
            workflow_id,
            reason,
        },
        |s| matches!(s, WorkflowStatus::Live | WorkflowStatus::Degraded),
        "only a live or degraded integration can be rebuilt (a backfill must finish first; a \
         failed workflow needs `workflow redrive`)",
    )
    .await
}
