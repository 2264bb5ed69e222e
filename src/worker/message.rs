//! One parsed message → its handling: the path the ECS poller ([`super::poller`]) and the
//! Lambda function (`crate::lambda`) share, so neither mode can decide differently.

use flowpilot_core::event::Message;
use tokio_util::sync::CancellationToken;

use super::handler::{HandleError, Handled, Handler};
use super::shell::Shell;
use crate::store::Store;

/// Handles one message that parsed (poison never gets here). `stop` ends a reconcile-all pass
/// between workflows (shutdown, or a Lambda invocation nearing its deadline): the next pass
/// does the rest.
pub async fn handle_message<S: Store, X: Shell>(
    handler: &Handler<S, X>,
    msg: Message,
    stop: &CancellationToken,
) -> Result<Handled, HandleError> {
    match msg {
        Message::Workflow { workflow_id, input } => handler.handle(&workflow_id, input).await,
        Message::ReconcileAll => {
            let pass = handler.reconcile_all(stop).await?;
            if pass.failures > 0 {
                tracing::warn!(failures = pass.failures, "some workflows did not reconcile");
            }
            Ok(Handled::Done)
        }
        // Callers sort these out before handling (they are deleted unhandled).
        Message::Ignored { .. } => Ok(Handled::Done),
    }
}
