//! Receiving and dispatching: long-poll the queue, sort each batch into per-workflow groups
//! (handled in order, one group per task, bounded by a semaphore), and acknowledge.
//!
//! Message fates: handled → deleted (batched); poison → never deleted, logged once on its
//! first receive, made visible again at once so SQS moves it to the DLQ after its
//! `maxReceiveCount`; ignored → deleted; handling error → visible again soon (retried).

use std::sync::Arc;
use std::time::{Duration, Instant};

use flowpilot_core::event::{Message, parse_message};
use flowpilot_core::ids::WorkflowId;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

use super::handler::{Handled, Handler};
use super::inflight::{InFlight, VISIBILITY};
use super::shell::Shell;
use crate::aws::error_chain;
use crate::aws::queue::{Queue, Received};
use crate::metrics::{self, Metrics};
use crate::store::Store;

/// Long-poll wait of each ReceiveMessage (the SQS maximum).
pub const RECEIVE_WAIT: Duration = Duration::from_secs(20);
/// Messages per ReceiveMessage (the SQS maximum).
const RECEIVE_MAX: i32 = 10;
/// Pause after a failed receive, so a broken queue does not turn into a hot loop.
const RECEIVE_ERROR_PAUSE: Duration = Duration::from_secs(2);
/// Visibility given back to a message whose handling failed: retried soon, not at once.
const FAILED_VISIBILITY: Duration = Duration::from_secs(10);

/// What every poller shares.
pub struct Dispatch<S, X> {
    pub handler: Arc<Handler<S, X>>,
    pub queue: Queue,
    pub metrics: Arc<Metrics>,
    pub inflight: Arc<InFlight>,
    pub permits: Arc<Semaphore>,
    /// Stop receiving (SIGTERM/SIGINT).
    pub shutdown: CancellationToken,
    /// Stop starting new messages (the grace period ran out).
    pub hard_stop: CancellationToken,
}

/// Messages of one workflow (or the global reconcile) from one batch, in arrival order.
struct Group {
    key: Option<WorkflowId>,
    items: Vec<(Received, Message)>,
    received_at: Instant,
}

impl<S: Store, X: Shell> Dispatch<S, X> {
    /// One poller: receive until shutdown, spawning a task per group.
    pub async fn poll(self: Arc<Self>, poller: usize, tasks: tokio_util::task::TaskTracker) {
        tracing::debug!(poller, "poller started");
        loop {
            if self.shutdown.is_cancelled() {
                break;
            }
            // Back-pressure: wait for a free handling slot before taking more messages.
            let probe = tokio::select! {
                _ = self.shutdown.cancelled() => break,
                p = Arc::clone(&self.permits).acquire_owned() => p,
            };
            drop(probe);
            // The receive is not abandoned on shutdown (messages it returns would stay hidden
            // for the visibility timeout); what arrives after shutdown is handed straight back.
            let received = self
                .queue
                .receive(RECEIVE_MAX, RECEIVE_WAIT, VISIBILITY)
                .await;
            let messages = match received {
                Ok(m) => m,
                Err(e) => {
                    tracing::warn!(error = %error_chain(&e), "receive failed");
                    tokio::select! {
                        _ = self.shutdown.cancelled() => break,
                        _ = tokio::time::sleep(RECEIVE_ERROR_PAUSE) => continue,
                    }
                }
            };
            if messages.is_empty() {
                continue;
            }
            self.metrics
                .add(metrics::MESSAGES_RECEIVED, &[], messages.len() as u64);
            if self.shutdown.is_cancelled() {
                let receipts: Vec<String> =
                    messages.iter().map(|m| m.receipt_handle.clone()).collect();
                self.queue
                    .change_visibility(&receipts, Duration::ZERO)
                    .await;
                break;
            }
            for group in self.sort(messages).await {
                let this = Arc::clone(&self);
                tasks.spawn(async move { this.run_group(group).await });
            }
        }
        tracing::debug!(poller, "poller stopped");
    }

    /// Parses a batch: poison and ignored messages are dealt with here; the rest is grouped.
    async fn sort(&self, messages: Vec<Received>) -> Vec<Group> {
        let received_at = Instant::now();
        let mut groups: Vec<Group> = Vec::new();
        let mut ignored = Vec::new();
        let mut poison = Vec::new();
        for m in messages {
            match parse_message(&m.body) {
                Err(p) => {
                    self.metrics.inc(metrics::MESSAGES_POISON);
                    if m.receive_count <= 1 {
                        tracing::warn!(
                            message_id = %m.message_id,
                            reason = %p.reason,
                            "poison message: not deleting it; SQS moves it to the DLQ after its maximum receives"
                        );
                    }
                    poison.push(m.receipt_handle);
                }
                Ok(Message::Ignored { reason }) => {
                    self.metrics.inc(metrics::MESSAGES_IGNORED);
                    tracing::debug!(message_id = %m.message_id, reason, "ignoring message");
                    ignored.push(m.receipt_handle);
                }
                Ok(msg) => {
                    let key = match &msg {
                        Message::Workflow { workflow_id, .. } => Some(workflow_id.clone()),
                        _ => None,
                    };
                    self.inflight.add(&m.message_id, &m.receipt_handle);
                    match groups.iter_mut().find(|g| g.key == key) {
                        Some(g) => g.items.push((m, msg)),
                        None => groups.push(Group {
                            key,
                            items: vec![(m, msg)],
                            received_at,
                        }),
                    }
                }
            }
        }
        if !poison.is_empty() {
            self.queue.change_visibility(&poison, Duration::ZERO).await;
        }
        if !ignored.is_empty() {
            self.queue.delete(&ignored).await;
        }
        groups
    }

    async fn run_group(&self, group: Group) {
        let permit = tokio::select! {
            _ = self.hard_stop.cancelled() => return,
            p = Arc::clone(&self.permits).acquire_owned() => p,
        };
        let Ok(_permit) = permit else { return };
        let mut acked: Vec<(String, String)> = Vec::new();
        for (m, msg) in group.items {
            if self.hard_stop.is_cancelled() {
                // Left in-flight: shutdown releases it.
                break;
            }
            let span = tracing::info_span!("message", message_id = %m.message_id);
            let result = tokio::select! {
                _ = self.hard_stop.cancelled() => break,
                r = self.handle(msg).instrument(span.clone()) => r,
            };
            let _enter = span.enter();
            match result {
                Ok(handled) => {
                    let outcome = match handled {
                        Handled::Done => "done",
                        Handled::Deferred => "deferred",
                        Handled::Redelayed => "redelayed",
                        Handled::UnknownWorkflow => "unknown_workflow",
                    };
                    self.metrics
                        .inc_with(metrics::MESSAGES_HANDLED, &[("outcome", outcome)]);
                    acked.push((m.message_id, m.receipt_handle));
                }
                Err(e) => {
                    self.metrics
                        .inc_with(metrics::MESSAGES_HANDLED, &[("outcome", "failed")]);
                    tracing::warn!(error = %error_chain(&e), "handling failed; the message will be retried");
                    self.inflight.remove(&m.message_id);
                    self.queue
                        .change_visibility(&[m.receipt_handle], FAILED_VISIBILITY)
                        .await;
                }
            }
            self.metrics.observe_handling(group.received_at.elapsed());
        }
        if !acked.is_empty() {
            let receipts: Vec<String> = acked.iter().map(|(_, r)| r.clone()).collect();
            self.queue.delete(&receipts).await;
            for (id, _) in &acked {
                self.inflight.remove(id);
            }
        }
        tracing::trace!(key = ?group.key, "group finished");
    }

    async fn handle(&self, msg: Message) -> Result<Handled, super::handler::HandleError> {
        match msg {
            Message::Workflow { workflow_id, input } => {
                self.handler.handle(&workflow_id, input).await
            }
            Message::ReconcileAll => {
                let pass = self.handler.reconcile_all(&self.shutdown).await?;
                if pass.failures > 0 {
                    tracing::warn!(failures = pass.failures, "some workflows did not reconcile");
                }
                Ok(Handled::Done)
            }
            // Sorted out before dispatch; kept total for the compiler.
            Message::Ignored { .. } => Ok(Handled::Done),
        }
    }
}
