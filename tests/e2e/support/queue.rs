//! Reading SQS queues in tests: receive, delete, parse each body as JSON.

use std::time::Duration;

use anyhow::{Context as _, anyhow, bail};
use aws_sdk_sqs::Client;
use aws_sdk_sqs::error::DisplayErrorContext;
use aws_sdk_sqs::types::DeleteMessageBatchRequestEntry;
use serde_json::Value;

/// Long-poll wait of one receive; moto returns early as soon as a message arrives.
const RECEIVE_WAIT_SECONDS: i32 = 1;

/// Receives (and deletes) messages from `queue_url`, collecting their JSON bodies in
/// arrival order, until `until(&collected)` holds; fails when `timeout` passes first,
/// naming what did arrive.
pub async fn drain_queue(
    sqs: &Client,
    queue_url: &str,
    mut until: impl FnMut(&[Value]) -> bool,
    timeout: Duration,
) -> anyhow::Result<Vec<Value>> {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut collected = Vec::new();
    loop {
        if until(&collected) {
            return Ok(collected);
        }
        if tokio::time::Instant::now() >= deadline {
            bail!(
                "drain_queue {queue_url}: condition not met within {timeout:?}; received {} message(s): {}",
                collected.len(),
                Value::Array(collected)
            );
        }
        collected.extend(receive_batch(sqs, queue_url, RECEIVE_WAIT_SECONDS).await?);
    }
}

/// Receives (and deletes) everything currently visible in `queue_url` without waiting
/// for more. In moto, EventBridge delivers to SQS before PutEvents returns, so after a
/// PutEvents this sees every message that event will ever produce.
pub async fn drain_available(sqs: &Client, queue_url: &str) -> anyhow::Result<Vec<Value>> {
    let mut collected = Vec::new();
    loop {
        let batch = receive_batch(sqs, queue_url, 0).await?;
        if batch.is_empty() {
            return Ok(collected);
        }
        collected.extend(batch);
    }
}

/// One long-poll receive of up to 10 messages (waiting at most `wait` seconds), deleted once read.
pub async fn receive_batch(sqs: &Client, queue_url: &str, wait: i32) -> anyhow::Result<Vec<Value>> {
    let out = sqs
        .receive_message()
        .queue_url(queue_url)
        .max_number_of_messages(10)
        .wait_time_seconds(wait)
        .send()
        .await
        .map_err(|e| anyhow!("ReceiveMessage {queue_url}: {}", DisplayErrorContext(e)))?;
    let messages = out.messages.unwrap_or_default();
    if messages.is_empty() {
        return Ok(Vec::new());
    }
    let mut bodies = Vec::with_capacity(messages.len());
    let mut entries = Vec::with_capacity(messages.len());
    for (i, m) in messages.iter().enumerate() {
        let body = m.body.as_deref().unwrap_or_default();
        bodies.push(
            serde_json::from_str(body)
                .with_context(|| format!("message body is not JSON: {body}"))?,
        );
        entries.push(
            DeleteMessageBatchRequestEntry::builder()
                .id(i.to_string())
                .set_receipt_handle(m.receipt_handle.clone())
                .build()?,
        );
    }
    let deleted = sqs
        .delete_message_batch()
        .queue_url(queue_url)
        .set_entries(Some(entries))
        .send()
        .await
        .map_err(|e| anyhow!("DeleteMessageBatch {queue_url}: {}", DisplayErrorContext(e)))?;
    if !deleted.failed.is_empty() {
        bail!(
            "DeleteMessageBatch {queue_url} failed for {:?}",
            deleted.failed
        );
    }
    Ok(bodies)
}
