//! The SQS work queue: long-poll receive, batched delete with per-entry failures, visibility
//! changes, and (delayed) command messages.

use std::time::Duration;

use aws_sdk_sqs::Client;
use aws_sdk_sqs::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_sqs::types::{
    ChangeMessageVisibilityBatchRequestEntry, DeleteMessageBatchRequestEntry,
    MessageSystemAttributeName,
};
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::http::Response;
use chrono::Utc;
use flowpilot_core::command::Command;

use super::{ErrorRef, error_chain};

/// SQS's longest `DelaySeconds`; longer waits are re-delayed when the message arrives.
pub const MAX_DELAY: Duration = Duration::from_secs(900);
/// Entries per SQS batch call.
const MAX_BATCH: usize = 10;

#[derive(Debug, thiserror::Error)]
#[error("SQS {operation} on {queue_url} failed ({aws})")]
pub struct QueueError {
    pub operation: &'static str,
    pub queue_url: String,
    pub aws: ErrorRef,
    #[source]
    pub source: BoxError,
}

/// A handled message to delete.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ack {
    /// For logs: a receipt handle identifies a receive, not a message.
    pub message_id: String,
    pub receipt_handle: String,
}

/// A message SQS did not delete, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeleteFailure {
    pub ack: Ack,
    /// SQS's error code for the entry (or for the whole call, if that failed).
    pub code: String,
    pub reason: String,
}

/// A received message with what the worker needs from it.
#[derive(Clone, Debug)]
pub struct Received {
    pub message_id: String,
    pub receipt_handle: String,
    pub body: String,
    /// `ApproximateReceiveCount` (1 on the first receive).
    pub receive_count: u32,
}

#[derive(Clone, Debug)]
pub struct Queue {
    client: Client,
    url: String,
}

impl Queue {
    pub fn new(client: Client, url: impl Into<String>) -> Self {
        Self {
            client,
            url: url.into(),
        }
    }

    fn error<E>(&self, operation: &'static str, err: SdkError<E, Response>) -> QueueError
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        QueueError {
            operation,
            queue_url: self.url.clone(),
            aws: ErrorRef::of(&err),
            source: err.into(),
        }
    }

    /// Long-polls for up to `max` messages, hiding them for `visibility`.
    pub async fn receive(
        &self,
        max: i32,
        wait: Duration,
        visibility: Duration,
    ) -> Result<Vec<Received>, QueueError> {
        let out = self
            .client
            .receive_message()
            .queue_url(&self.url)
            .max_number_of_messages(max)
            .wait_time_seconds(secs_i32(wait))
            .visibility_timeout(secs_i32(visibility))
            .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
            .send()
            .await
            .map_err(|e| self.error("ReceiveMessage", e))?;
        Ok(out
            .messages
            .unwrap_or_default()
            .into_iter()
            .filter_map(|m| {
                let receive_count = m
                    .attributes()
                    .and_then(|a| a.get(&MessageSystemAttributeName::ApproximateReceiveCount))
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(1);
                Some(Received {
                    message_id: m.message_id?,
                    receipt_handle: m.receipt_handle?,
                    body: m.body.unwrap_or_default(),
                    receive_count,
                })
            })
            .collect())
    }

    /// Deletes messages (in batches of 10). Returns those SQS did not delete; the caller
    /// decides whether to retry them (left alone, they are redelivered, and handling is
    /// idempotent).
    pub async fn delete(&self, acks: &[Ack]) -> Vec<DeleteFailure> {
        let mut failed = Vec::new();
        for chunk in acks.chunks(MAX_BATCH) {
            let entries: Vec<DeleteMessageBatchRequestEntry> = chunk
                .iter()
                .enumerate()
                .filter_map(|(i, a)| {
                    DeleteMessageBatchRequestEntry::builder()
                        .id(i.to_string())
                        .receipt_handle(&a.receipt_handle)
                        .build()
                        .ok()
                })
                .collect();
            match self
                .client
                .delete_message_batch()
                .queue_url(&self.url)
                .set_entries(Some(entries))
                .send()
                .await
            {
                Ok(out) => {
                    for f in out.failed() {
                        if let Some(ack) = f.id().parse::<usize>().ok().and_then(|i| chunk.get(i)) {
                            failed.push(DeleteFailure {
                                ack: ack.clone(),
                                code: f.code().to_owned(),
                                reason: f.message().unwrap_or_default().to_owned(),
                            });
                        }
                    }
                }
                Err(e) => {
                    let code = ErrorRef::of(&e)
                        .code
                        .unwrap_or_else(|| "Transport".to_owned());
                    let reason = error_chain(&e);
                    failed.extend(chunk.iter().map(|ack| DeleteFailure {
                        ack: ack.clone(),
                        code: code.clone(),
                        reason: reason.clone(),
                    }));
                }
            }
        }
        failed
    }

    /// Sets the visibility timeout of several messages (in batches of 10); failures are
    /// logged only: a message becoming visible early is redelivered, never lost.
    pub async fn change_visibility(&self, receipts: &[String], visibility: Duration) {
        for chunk in receipts.chunks(MAX_BATCH) {
            let entries: Vec<ChangeMessageVisibilityBatchRequestEntry> = chunk
                .iter()
                .enumerate()
                .filter_map(|(i, r)| {
                    ChangeMessageVisibilityBatchRequestEntry::builder()
                        .id(i.to_string())
                        .receipt_handle(r)
                        .visibility_timeout(secs_i32(visibility))
                        .build()
                        .ok()
                })
                .collect();
            match self
                .client
                .change_message_visibility_batch()
                .queue_url(&self.url)
                .set_entries(Some(entries))
                .send()
                .await
            {
                Ok(out) => {
                    for f in out.failed() {
                        tracing::debug!(code = f.code(), "ChangeMessageVisibility entry failed");
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %error_chain(&e), "ChangeMessageVisibilityBatch failed")
                }
            }
        }
    }

    /// Sends a command event (the same envelope the CLI and EventBridge rules deliver),
    /// delayed by `delay` (capped at SQS's 15 minutes).
    pub async fn send_command(&self, cmd: &Command, delay: Duration) -> Result<String, QueueError> {
        let body = cmd.envelope(Utc::now()).to_string();
        let out = self
            .client
            .send_message()
            .queue_url(&self.url)
            .message_body(body)
            .delay_seconds(secs_i32(delay.min(MAX_DELAY)))
            .send()
            .await
            .map_err(|e| self.error("SendMessage", e))?;
        Ok(out.message_id.unwrap_or_default())
    }
}

/// Whole seconds, rounded up, as SQS wants them.
fn secs_i32(d: Duration) -> i32 {
    let secs = d.as_secs() + u64::from(d.subsec_nanos() > 0);
    i32::try_from(secs).unwrap_or(i32::MAX)
}
