//! Messages received and not yet deleted or released, so one task can keep their visibility
//! timeouts extended and shutdown can hand the unfinished ones back to the queue.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::aws::queue::Queue;

/// Visibility timeout set on receive and by every extension.
pub const VISIBILITY: Duration = Duration::from_secs(120);
/// How often in-flight messages get their visibility extended (well inside [`VISIBILITY`]).
pub const EXTEND_EVERY: Duration = Duration::from_secs(30);

#[derive(Default)]
pub struct InFlight {
    /// message id → receipt handle.
    messages: Mutex<HashMap<String, String>>,
}

impl InFlight {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    fn map(&self) -> MutexGuard<'_, HashMap<String, String>> {
        // Inserts and removes are single operations: a panic elsewhere cannot corrupt the map.
        self.messages.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn add(&self, message_id: &str, receipt: &str) {
        self.map().insert(message_id.to_owned(), receipt.to_owned());
    }

    pub fn remove(&self, message_id: &str) {
        self.map().remove(message_id);
    }

    /// How many messages are in flight (for the shutdown log line).
    pub fn count(&self) -> usize {
        self.map().len()
    }

    pub fn receipts(&self) -> Vec<String> {
        self.map().values().cloned().collect()
    }

    /// Hands every remaining message back to the queue at once (visibility 0).
    pub async fn release_all(&self, queue: &Queue) -> usize {
        let receipts: Vec<String> = self.map().drain().map(|(_, r)| r).collect();
        if !receipts.is_empty() {
            queue.change_visibility(&receipts, Duration::ZERO).await;
        }
        receipts.len()
    }
}

/// Extends the visibility of every in-flight message every [`EXTEND_EVERY`] until `stop`.
pub async fn extend_visibility(inflight: Arc<InFlight>, queue: Queue, stop: CancellationToken) {
    let mut tick = tokio::time::interval(EXTEND_EVERY);
    // The first tick fires at once; messages were just received with a fresh timeout.
    tick.tick().await;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {
                let receipts = inflight.receipts();
                if !receipts.is_empty() {
                    tracing::debug!(messages = receipts.len(), "extending visibility of in-flight messages");
                    queue.change_visibility(&receipts, VISIBILITY).await;
                }
            }
        }
    }
}
