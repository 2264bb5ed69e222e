//! One invocation: an SQS batch from the event source mapping → each record parsed and handled
//! exactly as the ECS poller does it (`event::parse_message`, then
//! [`crate::worker::message::handle_message`]) → the partial batch response, which names the
//! records to redeliver: poison ones, ones whose handling failed, and ones not finished before
//! the invocation's deadline. Every other record is deleted by the mapping.
//!
//! As in the poller, records are grouped per workflow; groups run concurrently, each in
//! arrival order. Records reported as failures are also given back early, like the poller
//! does: poison and unfinished ones at once (poison reaches the DLQ after its receives),
//! failed ones after [`FAILED_VISIBILITY`] (otherwise they would wait out the queue's whole
//! visibility timeout).

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use flowpilot_core::event::{Message, parse_message};
use flowpilot_core::ids::WorkflowId;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

use crate::aws::error_chain;
use crate::aws::queue::Queue;
use crate::metrics::{self, Metrics};
use crate::store::Store;
use crate::worker::handler::{Handled, Handler};
use crate::worker::message::handle_message;
use crate::worker::poller::FAILED_VISIBILITY;
use crate::worker::shell::Shell;

/// Before the deadline by this much, no record starts and a reconcile pass stops between
/// workflows (the next pass does the rest).
pub const SOFT_MARGIN: Duration = Duration::from_secs(10);
/// Before the deadline by this much, handling still in progress is abandoned (safe at any
/// instruction: docs/architecture.md, "The outbox"), so the answer is sent before Lambda
/// times the invocation out, which would redeliver the whole batch.
pub const HARD_MARGIN: Duration = Duration::from_secs(4);

/// Giving records back to the queue early (SQS ChangeMessageVisibility; a fake in tests).
pub trait GiveBack: Send + Sync + 'static {
    fn change_visibility(
        &self,
        receipts: &[String],
        visibility: Duration,
    ) -> impl Future<Output = ()> + Send;
}

impl GiveBack for Queue {
    async fn change_visibility(&self, receipts: &[String], visibility: Duration) {
        Queue::change_visibility(self, receipts, visibility).await
    }
}

/// What one invocation needs; built once per execution environment (the cold start).
pub struct Function<S, X, Q> {
    pub handler: Arc<Handler<S, X>>,
    pub queue: Q,
    pub metrics: Arc<Metrics>,
}

/// When the invocation must have stopped starting and finishing work.
#[derive(Clone, Copy, Debug)]
pub struct Deadlines {
    pub soft: tokio::time::Instant,
    pub hard: tokio::time::Instant,
}

impl Deadlines {
    /// From the invocation's deadline, `remaining` from now.
    pub fn before(remaining: Duration) -> Self {
        let now = tokio::time::Instant::now();
        Self {
            soft: now + remaining.saturating_sub(SOFT_MARGIN),
            hard: now + remaining.saturating_sub(HARD_MARGIN),
        }
    }
}

/// How a record ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fate {
    Handled,
    Poison,
    Failed,
    Unfinished,
}

struct Record {
    id: String,
    receipt: String,
    msg: Message,
}

impl<S: Store, X: Shell, Q: GiveBack> Function<S, X, Q> {
    /// Handles a batch; never fails as a whole (a failure of the invocation would make the
    /// mapping redeliver every record, handled ones included).
    pub async fn handle_batch(&self, event: SqsEvent, deadlines: Deadlines) -> SqsBatchResponse {
        let started = Instant::now();
        let total = event.records.len();
        self.metrics
            .add(metrics::MESSAGES_RECEIVED, &[], total as u64);
        let mut fates: Vec<(String, String, Fate)> = Vec::with_capacity(total);
        let mut groups: Vec<(Option<WorkflowId>, Vec<Record>)> = Vec::new();
        for r in event.records {
            // The mapping always sends both; a record without an id could not be reported.
            let id = r.message_id.unwrap_or_default();
            let receipt = r.receipt_handle.unwrap_or_default();
            let receives: u32 = r
                .attributes
                .get("ApproximateReceiveCount")
                .and_then(|c| c.parse().ok())
                .unwrap_or(1);
            match parse_message(r.body.as_deref().unwrap_or_default()) {
                Err(p) => {
                    self.metrics.inc(metrics::MESSAGES_POISON);
                    if receives <= 1 {
                        tracing::warn!(
                            message_id = %id,
                            reason = %p.reason,
                            "poison message: reported as a batch item failure; SQS moves it to the DLQ after its maximum receives"
                        );
                    }
                    fates.push((id, receipt, Fate::Poison));
                }
                Ok(Message::Ignored { reason }) => {
                    self.metrics.inc(metrics::MESSAGES_IGNORED);
                    tracing::debug!(message_id = %id, reason, "ignoring message");
                    fates.push((id, receipt, Fate::Handled));
                }
                Ok(msg) => {
                    let key = match &msg {
                        Message::Workflow { workflow_id, .. } => Some(workflow_id.clone()),
                        _ => None,
                    };
                    let record = Record { id, receipt, msg };
                    match groups.iter_mut().find(|(k, _)| *k == key) {
                        Some((_, records)) => records.push(record),
                        None => groups.push((key, vec![record])),
                    }
                }
            }
        }
        fates.extend(self.run_groups(groups, deadlines, started).await);

        let mut response = SqsBatchResponse::default();
        let (mut now, mut soon) = (Vec::new(), Vec::new());
        for (id, receipt, fate) in &fates {
            match fate {
                Fate::Handled => continue,
                Fate::Failed => soon.push(receipt.clone()),
                Fate::Poison | Fate::Unfinished => now.push(receipt.clone()),
            }
            response.add_failure(id.clone());
        }
        if !now.is_empty() {
            self.queue.change_visibility(&now, Duration::ZERO).await;
        }
        if !soon.is_empty() {
            self.queue.change_visibility(&soon, FAILED_VISIBILITY).await;
        }
        // The environment may be frozen or ended as soon as the answer is sent: what the
        // handler deferred is written now (the ECS worker waits FLOWPILOT_FLUSH_AFTER).
        let flushed = tokio::time::timeout_at(
            deadlines.hard + HARD_MARGIN / 2,
            self.handler.flush_idle(Duration::ZERO),
        )
        .await;
        if flushed.is_err() {
            tracing::warn!(
                "deadline reached while writing deferred outcomes; the next drain repeats them"
            );
        }
        tracing::info!(
            records = total,
            failures = response.batch_item_failures.len(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "batch handled"
        );
        response
    }

    /// Runs each group in its own task, its records in order; returns every record's fate.
    async fn run_groups(
        &self,
        groups: Vec<(Option<WorkflowId>, Vec<Record>)>,
        deadlines: Deadlines,
        started: Instant,
    ) -> Vec<(String, String, Fate)> {
        let soft = CancellationToken::new();
        let hard = CancellationToken::new();
        // Already past: cancelled before any group starts, not whenever the timer runs.
        let now = tokio::time::Instant::now();
        if now >= deadlines.soft {
            soft.cancel();
        }
        if now >= deadlines.hard {
            hard.cancel();
        }
        let timer = {
            let (soft, hard) = (soft.clone(), hard.clone());
            tokio::spawn(async move {
                tokio::time::sleep_until(deadlines.soft).await;
                soft.cancel();
                tokio::time::sleep_until(deadlines.hard).await;
                hard.cancel();
            })
        };
        let mut tasks = JoinSet::new();
        let mut members: HashMap<tokio::task::Id, Vec<(String, String)>> = HashMap::new();
        for (_, records) in groups {
            let ids = records
                .iter()
                .map(|r| (r.id.clone(), r.receipt.clone()))
                .collect();
            let handler = Arc::clone(&self.handler);
            let metrics = Arc::clone(&self.metrics);
            let (soft, hard) = (soft.clone(), hard.clone());
            let task = tasks.spawn(async move {
                let mut fates = Vec::new();
                for r in records {
                    let fate = if soft.is_cancelled() {
                        Fate::Unfinished
                    } else {
                        let span = tracing::info_span!("message", message_id = %r.id);
                        tokio::select! {
                            _ = hard.cancelled() => Fate::Unfinished,
                            result = handle_message(&handler, r.msg, &soft).instrument(span) => match result {
                                Ok(handled) => {
                                    metrics.inc_with(metrics::MESSAGES_HANDLED, &[("outcome", outcome(&handled))]);
                                    Fate::Handled
                                }
                                Err(e) => {
                                    metrics.inc_with(metrics::MESSAGES_HANDLED, &[("outcome", "failed")]);
                                    tracing::warn!(error = %error_chain(&e), "handling failed; reported as a batch item failure");
                                    Fate::Failed
                                }
                            },
                        }
                    };
                    metrics.observe_handling(started.elapsed());
                    fates.push((r.id, r.receipt, fate));
                }
                fates
            });
            members.insert(task.id(), ids);
        }
        let mut fates = Vec::new();
        while let Some(joined) = tasks.join_next_with_id().await {
            match joined {
                Ok((_, done)) => fates.extend(done),
                // A task that did not finish: its records are redelivered.
                Err(e) => {
                    tracing::error!(error = %e, "a record group's task failed; its records are redelivered");
                    for (id, receipt) in members.remove(&e.id()).unwrap_or_default() {
                        fates.push((id, receipt, Fate::Unfinished));
                    }
                }
            }
        }
        timer.abort();
        fates
    }
}

fn outcome(handled: &Handled) -> &'static str {
    match handled {
        Handled::Done => "done",
        Handled::Deferred => "deferred",
        Handled::Redelayed => "redelayed",
        Handled::UnknownWorkflow => "unknown_workflow",
    }
}

#[cfg(test)]
mod tests;
