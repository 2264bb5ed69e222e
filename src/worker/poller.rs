//! Receiving and dispatching: long-poll the queue, sort each batch into per-workflow groups
//! (handled in order, one group per task), and acknowledge.
//!
//! Back-pressure: a poller receives only as many messages as it holds handling permits for,
//! and each message carries its permit into its group's task until it is deleted or handed
//! back, so no more than `concurrency` messages are ever in flight in this process.
//!
//! Message fates: handled → deleted (batched); poison → never deleted, logged once on its
//! first receive, made visible again at once so SQS moves it to the DLQ after its
//! `maxReceiveCount`; ignored → deleted; handling error → visible again soon (retried).

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use flowpilot_core::event::{Message, parse_message};
use flowpilot_core::ids::WorkflowId;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

use super::handler::{Handled, Handler};
use super::inflight::{InFlight, VISIBILITY};
use super::shell::Shell;
use crate::aws::coalesce::Pressure;
use crate::aws::error_chain;
use crate::aws::queue::{Ack, DeleteFailure, Queue, QueueError, Received};
use crate::metrics::{self, Metrics};
use crate::store::Store;

/// Long-poll wait of each ReceiveMessage (the SQS maximum).
pub const RECEIVE_WAIT: Duration = Duration::from_secs(20);
/// Messages per ReceiveMessage (the SQS maximum).
const RECEIVE_MAX: usize = 10;
/// Pause after a failed receive, so a broken queue does not turn into a hot loop.
const RECEIVE_ERROR_PAUSE: Duration = Duration::from_secs(2);
/// Visibility given back to a message whose handling failed: retried soon, not at once.
pub(crate) const FAILED_VISIBILITY: Duration = Duration::from_secs(10);

/// The work queue as the pollers use it: [`Queue`] in production, a fake in unit tests.
pub trait WorkQueue: Send + Sync + 'static {
    fn receive(
        &self,
        max: i32,
        wait: Duration,
        visibility: Duration,
    ) -> impl Future<Output = Result<Vec<Received>, QueueError>> + Send;

    /// Returns the messages that were not deleted.
    fn delete(&self, acks: &[Ack]) -> impl Future<Output = Vec<DeleteFailure>> + Send;

    fn change_visibility(
        &self,
        receipts: &[String],
        visibility: Duration,
    ) -> impl Future<Output = ()> + Send;
}

impl WorkQueue for Queue {
    async fn receive(
        &self,
        max: i32,
        wait: Duration,
        visibility: Duration,
    ) -> Result<Vec<Received>, QueueError> {
        Queue::receive(self, max, wait, visibility).await
    }

    async fn delete(&self, acks: &[Ack]) -> Vec<DeleteFailure> {
        Queue::delete(self, acks).await
    }

    async fn change_visibility(&self, receipts: &[String], visibility: Duration) {
        Queue::change_visibility(self, receipts, visibility).await
    }
}

/// The work queue with deletions coalesced across handlers (one DeleteMessageBatch serves
/// the messages of several workflows handled within the linger).
///
/// A message keeps its handling permit until it is deleted, so a long linger could starve
/// the pollers at load: `pressure` (a poller waiting for a permit) sends the deletions as soon
/// as they hold half the permits. At low load they linger, and one call deletes the messages
/// of many batches; at load they go in large batches anyway.
#[derive(Clone)]
pub struct CoalescedQueue {
    pub queue: Queue,
    deletes: crate::aws::coalesce::Coalescer<Ack, Option<DeleteFailure>>,
}

impl CoalescedQueue {
    pub fn new(queue: Queue, linger: Duration, pressure: Arc<Pressure>, permits: usize) -> Self {
        let q = queue.clone();
        let early = crate::aws::coalesce::EarlySend {
            pressure,
            at_least: (permits / 2).clamp(1, RECEIVE_MAX),
        };
        let deletes = crate::aws::coalesce::Coalescer::spawn_with(
            RECEIVE_MAX,
            linger,
            Some(early),
            move |acks: Vec<Ack>| {
                let q = q.clone();
                async move {
                    let failed = q.delete(&acks).await;
                    acks.iter()
                        .map(|a| {
                            failed
                                .iter()
                                .find(|f| f.ack.receipt_handle == a.receipt_handle)
                                .cloned()
                        })
                        .collect()
                }
            },
        );
        Self { queue, deletes }
    }
}

impl WorkQueue for CoalescedQueue {
    async fn receive(
        &self,
        max: i32,
        wait: Duration,
        visibility: Duration,
    ) -> Result<Vec<Received>, QueueError> {
        self.queue.receive(max, wait, visibility).await
    }

    async fn delete(&self, acks: &[Ack]) -> Vec<DeleteFailure> {
        let answers = self.deletes.submit_all(acks.to_vec()).await;
        acks.iter()
            .zip(answers)
            .filter_map(|(ack, answer)| match answer {
                Some(failure) => failure,
                // The coalescer is gone (shutdown): the message is redelivered; handling is
                // idempotent.
                None => Some(DeleteFailure {
                    ack: ack.clone(),
                    code: "Shutdown".to_owned(),
                    reason: "the worker stopped before deleting it".to_owned(),
                }),
            })
            .collect()
    }

    async fn change_visibility(&self, receipts: &[String], visibility: Duration) {
        self.queue.change_visibility(receipts, visibility).await
    }
}

/// What every poller shares.
pub struct Dispatch<S, X, Q = Queue> {
    pub handler: Arc<Handler<S, X>>,
    pub queue: Q,
    pub metrics: Arc<Metrics>,
    pub inflight: Arc<InFlight>,
    /// One permit per message in flight (received, not yet deleted or handed back): the
    /// worker's `concurrency`.
    pub permits: Arc<Semaphore>,
    /// Set while a poller waits for a permit (the deletions holding them then go at once).
    pub pressure: Arc<Pressure>,
    /// Stop receiving (SIGTERM/SIGINT).
    pub shutdown: CancellationToken,
    /// Stop starting new messages (the grace period ran out).
    pub hard_stop: CancellationToken,
}

/// Messages of one workflow (or the global reconcile) from one batch, in arrival order, each
/// with its handling permit.
struct Group {
    key: Option<WorkflowId>,
    items: Vec<(Received, Message, OwnedSemaphorePermit)>,
    received_at: Instant,
}

impl<S: Store, X: Shell, Q: WorkQueue> Dispatch<S, X, Q> {
    /// One poller: receive until shutdown, spawning a task per group.
    pub async fn poll(self: Arc<Self>, poller: usize, tasks: tokio_util::task::TaskTracker) {
        tracing::debug!(poller, "poller started");
        loop {
            if self.shutdown.is_cancelled() {
                break;
            }
            // Back-pressure: wait for one free handling slot, then take whatever else is free
            // right now, up to a full receive; receive no more messages than that.
            let first = match Arc::clone(&self.permits).try_acquire_owned() {
                Ok(p) => Ok(p),
                Err(_) => {
                    let _waiting = self.pressure.waiting();
                    tokio::select! {
                        _ = self.shutdown.cancelled() => break,
                        p = Arc::clone(&self.permits).acquire_owned() => p,
                    }
                }
            };
            // The semaphore is never closed; if it were, nothing could be handled any more.
            let Ok(first) = first else { break };
            let mut permits = vec![first];
            while permits.len() < RECEIVE_MAX {
                match Arc::clone(&self.permits).try_acquire_owned() {
                    Ok(p) => permits.push(p),
                    Err(_) => break,
                }
            }
            // The receive is not abandoned on shutdown (messages it returns would stay hidden
            // for the visibility timeout); what arrives after shutdown is handed straight back.
            let max = i32::try_from(permits.len()).unwrap_or(i32::MAX);
            let received = self.queue.receive(max, RECEIVE_WAIT, VISIBILITY).await;
            let mut messages = match received {
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
            // Only a queue that ignores MaxNumberOfMessages gets here; without permits these
            // messages cannot be handled, so they go back.
            let surplus = messages.split_off(messages.len().min(permits.len()));
            if !surplus.is_empty() {
                tracing::warn!(
                    asked = permits.len(),
                    surplus = surplus.len(),
                    "the queue returned more messages than asked for; handing the surplus back"
                );
                self.release(&surplus).await;
            }
            if self.shutdown.is_cancelled() {
                self.release(&messages).await;
                break;
            }
            // Each message takes one permit; the unused ones are freed here.
            let messages = messages.into_iter().zip(permits).collect();
            for group in self.sort(messages).await {
                let this = Arc::clone(&self);
                tasks.spawn(async move { this.run_group(group).await });
            }
        }
        tracing::debug!(poller, "poller stopped");
    }

    /// Makes messages visible again at once (for another poller or replica).
    async fn release(&self, messages: &[Received]) {
        let receipts: Vec<String> = messages.iter().map(|m| m.receipt_handle.clone()).collect();
        self.queue
            .change_visibility(&receipts, Duration::ZERO)
            .await;
    }

    /// Parses a batch: poison and ignored messages are dealt with here (their permits are freed
    /// once they are); the rest is grouped, each message with its permit.
    async fn sort(&self, messages: Vec<(Received, OwnedSemaphorePermit)>) -> Vec<Group> {
        let received_at = Instant::now();
        let mut groups: Vec<Group> = Vec::new();
        let mut ignored = Vec::new();
        let mut poison = Vec::new();
        for (m, permit) in messages {
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
                    poison.push((m.receipt_handle, permit));
                }
                Ok(Message::Ignored { reason }) => {
                    self.metrics.inc(metrics::MESSAGES_IGNORED);
                    tracing::debug!(message_id = %m.message_id, reason, "ignoring message");
                    ignored.push((
                        Ack {
                            message_id: m.message_id,
                            receipt_handle: m.receipt_handle,
                        },
                        permit,
                    ));
                }
                Ok(msg) => {
                    let key = match &msg {
                        Message::Workflow { workflow_id, .. } => Some(workflow_id.clone()),
                        _ => None,
                    };
                    self.inflight.add(&m.message_id, &m.receipt_handle);
                    match groups.iter_mut().find(|g| g.key == key) {
                        Some(g) => g.items.push((m, msg, permit)),
                        None => groups.push(Group {
                            key,
                            items: vec![(m, msg, permit)],
                            received_at,
                        }),
                    }
                }
            }
        }
        if !poison.is_empty() {
            let receipts: Vec<String> = poison.iter().map(|(r, _)| r.clone()).collect();
            self.queue
                .change_visibility(&receipts, Duration::ZERO)
                .await;
        }
        if !ignored.is_empty() {
            let acks: Vec<Ack> = ignored.into_iter().map(|(a, _)| a).collect();
            self.delete(&acks).await;
        }
        groups
    }

    /// Deletes handled messages, retrying once those SQS did not delete (most entry failures
    /// are transient); each one left is logged with its id and counted. Nothing else is
    /// needed for them: they are redelivered, and handling is idempotent.
    async fn delete(&self, acks: &[Ack]) {
        let failed = self.queue.delete(acks).await;
        if failed.is_empty() {
            return;
        }
        let retry: Vec<Ack> = failed.into_iter().map(|f| f.ack).collect();
        let still = self.queue.delete(&retry).await;
        for f in &still {
            tracing::warn!(
                message_id = %f.ack.message_id,
                code = %f.code,
                reason = %f.reason,
                "message not deleted, even on a retry; it will be redelivered"
            );
        }
        self.metrics
            .add(metrics::DELETE_FAILURES, &[], still.len() as u64);
    }

    async fn run_group(&self, group: Group) {
        // Permits of the handled messages are freed once they are deleted, below.
        let mut acked: Vec<(Ack, OwnedSemaphorePermit)> = Vec::new();
        for (m, msg, permit) in group.items {
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
                    acked.push((
                        Ack {
                            message_id: m.message_id,
                            receipt_handle: m.receipt_handle,
                        },
                        permit,
                    ));
                }
                Err(e) => {
                    self.metrics
                        .inc_with(metrics::MESSAGES_HANDLED, &[("outcome", "failed")]);
                    tracing::warn!(error = %error_chain(&e), "handling failed; the message will be retried");
                    self.inflight.remove(&m.message_id);
                    self.queue
                        .change_visibility(&[m.receipt_handle], FAILED_VISIBILITY)
                        .await;
                    drop(permit);
                }
            }
            self.metrics.observe_handling(group.received_at.elapsed());
        }
        if !acked.is_empty() {
            let (acks, permits): (Vec<Ack>, Vec<_>) = acked.into_iter().unzip();
            self.delete(&acks).await;
            for a in &acks {
                self.inflight.remove(&a.message_id);
            }
            drop(permits);
        }
        tracing::trace!(key = ?group.key, "group finished");
    }

    async fn handle(&self, msg: Message) -> Result<Handled, super::handler::HandleError> {
        super::message::handle_message(&self.handler, msg, &self.shutdown).await
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use chrono::{TimeDelta, Utc};
    use flowpilot_core::command::Command;
    use flowpilot_core::decide::Policy;
    use flowpilot_core::effect::{Effect, EffectError};
    use flowpilot_core::health::HealthEvent;
    use flowpilot_core::model::Workflow;
    use tokio_util::task::TaskTracker;

    use super::*;
    use crate::store::memory::MemoryStore;
    use crate::worker::shell::Executed;

    /// A queue that honours `max` like SQS and counts the messages in flight: received and
    /// not yet deleted or made visible again.
    #[derive(Default)]
    struct FakeQueue {
        waiting: Mutex<VecDeque<Received>>,
        in_flight: AtomicUsize,
        max_in_flight: AtomicUsize,
        deleted: AtomicUsize,
        /// Scripted answers of successive delete calls: the message ids SQS fails, with a code.
        delete_failures: Mutex<VecDeque<Vec<(&'static str, &'static str)>>>,
        delete_calls: Mutex<Vec<Vec<String>>>,
    }

    impl FakeQueue {
        fn leave(&self, n: usize) {
            self.in_flight.fetch_sub(n, Ordering::SeqCst);
        }
    }

    impl WorkQueue for Arc<FakeQueue> {
        async fn receive(
            &self,
            max: i32,
            _wait: Duration,
            _visibility: Duration,
        ) -> Result<Vec<Received>, QueueError> {
            let batch: Vec<Received> = {
                let mut waiting = self.waiting.lock().unwrap();
                let n = waiting.len().min(usize::try_from(max).unwrap());
                waiting.drain(..n).collect()
            };
            if batch.is_empty() {
                // An empty long poll, shortened.
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            let now = self.in_flight.fetch_add(batch.len(), Ordering::SeqCst) + batch.len();
            self.max_in_flight.fetch_max(now, Ordering::SeqCst);
            Ok(batch)
        }

        async fn delete(&self, acks: &[Ack]) -> Vec<DeleteFailure> {
            self.delete_calls
                .lock()
                .unwrap()
                .push(acks.iter().map(|a| a.message_id.clone()).collect());
            let failing = self
                .delete_failures
                .lock()
                .unwrap()
                .pop_front()
                .unwrap_or_default();
            let failed: Vec<DeleteFailure> = acks
                .iter()
                .filter_map(|a| {
                    let (_, code) = failing.iter().find(|(id, _)| *id == a.message_id)?;
                    Some(DeleteFailure {
                        ack: a.clone(),
                        code: (*code).to_owned(),
                        reason: "scripted".to_owned(),
                    })
                })
                .collect();
            let done = acks.len() - failed.len();
            self.deleted.fetch_add(done, Ordering::SeqCst);
            self.leave(done);
            failed
        }

        async fn change_visibility(&self, receipts: &[String], _visibility: Duration) {
            self.leave(receipts.len());
        }
    }

    /// Handles retry_due commands that are not due yet (the handler re-delays them through
    /// `send_command`, which takes a while here), counting how many run at once.
    #[derive(Default)]
    struct SlowShell {
        running: AtomicUsize,
        max_running: AtomicUsize,
    }

    impl Shell for SlowShell {
        async fn execute(&self, _wf: &Workflow, _effects: &[Effect]) -> Executed {
            Executed::default()
        }

        async fn send_command(&self, _cmd: &Command, _delay: Duration) -> Result<(), QueueError> {
            let now = self.running.fetch_add(1, Ordering::SeqCst) + 1;
            self.max_running.fetch_max(now, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(10)).await;
            self.running.fetch_sub(1, Ordering::SeqCst);
            Ok(())
        }

        async fn publish(&self, events: &[HealthEvent]) -> Vec<Result<(), EffectError>> {
            events.iter().map(|_| Ok(())).collect()
        }
    }

    fn not_due_retry(n: usize) -> Received {
        let id = WorkflowId::new(format!("wf-{n}")).unwrap();
        let cmd = Command::RetryDue {
            workflow_id: id.clone(),
            batch: 0,
            attempt: 2,
            due_at: Utc::now() + TimeDelta::hours(1),
        };
        Received {
            message_id: format!("m-{n}"),
            receipt_handle: format!("r-{n}"),
            body: cmd.envelope(Utc::now()).to_string(),
            receive_count: 1,
        }
    }

    fn dispatch(
        queue: &Arc<FakeQueue>,
        shell: &Arc<SlowShell>,
        concurrency: usize,
    ) -> Arc<Dispatch<MemoryStore, SlowShell, Arc<FakeQueue>>> {
        let metrics = Metrics::new();
        Arc::new(Dispatch {
            handler: Arc::new(Handler::new(
                Arc::new(MemoryStore::new()),
                Arc::clone(shell),
                Policy::default(),
                Arc::clone(&metrics),
            )),
            queue: Arc::clone(queue),
            metrics,
            inflight: InFlight::new(),
            permits: Arc::new(Semaphore::new(concurrency)),
            pressure: Arc::default(),
            shutdown: CancellationToken::new(),
            hard_stop: CancellationToken::new(),
        })
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn messages_in_flight_never_exceed_the_concurrency() {
        const MESSAGES: usize = 60;
        const CONCURRENCY: usize = 3;
        let queue = Arc::new(FakeQueue::default());
        queue
            .waiting
            .lock()
            .unwrap()
            .extend((0..MESSAGES).map(not_due_retry));
        let shell = Arc::new(SlowShell::default());
        let d = dispatch(&queue, &shell, CONCURRENCY);
        let tasks = TaskTracker::new();
        let pollers = TaskTracker::new();
        for p in 0..4 {
            pollers.spawn(Arc::clone(&d).poll(p, tasks.clone()));
        }

        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while queue.deleted.load(Ordering::SeqCst) < MESSAGES {
            assert!(
                tokio::time::Instant::now() < deadline,
                "only {} of {MESSAGES} messages handled",
                queue.deleted.load(Ordering::SeqCst)
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        d.shutdown.cancel();
        pollers.close();
        pollers.wait().await;
        tasks.close();
        tasks.wait().await;

        let max_in_flight = queue.max_in_flight.load(Ordering::SeqCst);
        assert!(
            max_in_flight <= CONCURRENCY,
            "{max_in_flight} messages in flight with a concurrency of {CONCURRENCY}"
        );
        assert!(shell.max_running.load(Ordering::SeqCst) <= CONCURRENCY);
        assert!(
            shell.max_running.load(Ordering::SeqCst) > 1,
            "handling never ran concurrently: the test proves nothing"
        );
        assert_eq!(d.metrics.total(metrics::MESSAGES_HANDLED), MESSAGES as u64);
    }

    #[tokio::test]
    async fn messages_sqs_does_not_delete_are_retried_once_then_logged_and_counted() {
        let queue = Arc::new(FakeQueue::default());
        queue.delete_failures.lock().unwrap().extend([
            vec![("m-1", "InternalError"), ("m-2", "InternalError")],
            vec![("m-2", "ReceiptHandleIsInvalid")],
        ]);
        queue.in_flight.store(3, Ordering::SeqCst);
        let d = dispatch(&queue, &Arc::new(SlowShell::default()), 3);
        let acks: Vec<Ack> = (0..3)
            .map(|n| Ack {
                message_id: format!("m-{n}"),
                receipt_handle: format!("r-{n}"),
            })
            .collect();

        let logs = capture_logs(d.delete(&acks)).await;

        assert_eq!(
            *queue.delete_calls.lock().unwrap(),
            [vec!["m-0", "m-1", "m-2"], vec!["m-1", "m-2"]]
        );
        assert_eq!(d.metrics.total(metrics::DELETE_FAILURES), 1);
        let line = logs
            .lines()
            .find(|l| l.contains("not deleted"))
            .unwrap_or_else(|| panic!("no log line for the undeleted message:\n{logs}"));
        assert!(
            line.contains("message_id=m-2") && line.contains("code=ReceiptHandleIsInvalid"),
            "{line}"
        );
        assert!(
            !logs.contains("message_id=m-1"),
            "m-1 was deleted on the retry:\n{logs}"
        );
    }

    /// Runs `f` on this thread with a subscriber writing into a buffer; returns what it logged.
    async fn capture_logs(f: impl Future<Output = ()>) -> String {
        #[derive(Clone, Default)]
        struct Buffer(Arc<Mutex<Vec<u8>>>);
        impl std::io::Write for Buffer {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(b);
                Ok(b.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let buffer = Buffer::default();
        let writer = buffer.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish();
        {
            let _default = tracing::subscriber::set_default(subscriber);
            f.await;
        }
        String::from_utf8_lossy(&buffer.0.lock().unwrap()).into_owned()
    }
}
