//! The invocation's contract, with an in-memory store and a scripted shell: which records a
//! batch reports as failures, and how each is given back to the queue.

use std::collections::HashMap;
use std::sync::Mutex;

use aws_lambda_events::event::sqs::SqsMessage;
use chrono::{TimeDelta, Utc};
use flowpilot_core::command::Command;
use flowpilot_core::decide::Policy;
use flowpilot_core::effect::{Effect, EffectError};
use flowpilot_core::health::HealthEvent;
use flowpilot_core::model::Workflow;

use super::*;
use crate::aws::queue::QueueError;
use crate::store::memory::MemoryStore;
use crate::worker::shell::Executed;

/// Re-delays not-due retries (`send_command`), or refuses to.
#[derive(Default)]
struct FakeShell {
    refuse: bool,
    sent: Mutex<Vec<Command>>,
}

impl Shell for FakeShell {
    async fn execute(&self, _wf: &Workflow, _effects: &[Effect]) -> Executed {
        Executed::default()
    }

    async fn send_command(&self, cmd: &Command, _delay: Duration) -> Result<(), QueueError> {
        if self.refuse {
            return Err(QueueError {
                operation: "SendMessage",
                queue_url: "https://sqs.local/work".into(),
                aws: crate::aws::ErrorRef {
                    code: Some("InternalError".into()),
                    request_id: Some("req-1".into()),
                },
                source: "service error: InternalError".into(),
            });
        }
        self.sent.lock().unwrap().push(cmd.clone());
        Ok(())
    }

    async fn publish(&self, events: &[HealthEvent]) -> Vec<Result<(), EffectError>> {
        events.iter().map(|_| Ok(())).collect()
    }
}

/// Records every visibility change: (receipt, seconds).
#[derive(Default)]
struct FakeQueue {
    changed: Mutex<Vec<(String, u64)>>,
}

impl GiveBack for Arc<FakeQueue> {
    async fn change_visibility(&self, receipts: &[String], visibility: Duration) {
        let mut changed = self.changed.lock().unwrap();
        for r in receipts {
            changed.push((r.clone(), visibility.as_secs()));
        }
    }
}

fn function(
    shell: FakeShell,
) -> (
    Function<MemoryStore, FakeShell, Arc<FakeQueue>>,
    Arc<FakeQueue>,
) {
    let metrics = Metrics::new();
    let queue = Arc::new(FakeQueue::default());
    let f = Function {
        handler: Arc::new(Handler::new(
            Arc::new(MemoryStore::new()),
            Arc::new(shell),
            Policy::default(),
            Arc::clone(&metrics),
        )),
        queue: Arc::clone(&queue),
        metrics,
    };
    (f, queue)
}

fn record(id: &str, body: &str) -> SqsMessage {
    let mut m = SqsMessage::default();
    m.message_id = Some(id.to_owned());
    m.receipt_handle = Some(format!("r-{id}"));
    m.body = Some(body.to_owned());
    m.attributes = HashMap::from([("ApproximateReceiveCount".to_owned(), "1".to_owned())]);
    m
}

/// A retry an hour early: the handler re-delays it through `send_command`.
fn not_due_retry(workflow: &str) -> String {
    Command::RetryDue {
        workflow_id: WorkflowId::new(workflow).unwrap(),
        batch: 0,
        attempt: 2,
        due_at: Utc::now() + TimeDelta::hours(1),
    }
    .envelope(Utc::now())
    .to_string()
}

fn event(records: Vec<SqsMessage>) -> SqsEvent {
    let mut e = SqsEvent::default();
    e.records = records;
    e
}

fn failures(r: &SqsBatchResponse) -> Vec<&str> {
    r.batch_item_failures
        .iter()
        .map(|f| f.item_identifier.as_str())
        .collect()
}

const PLENTY: Duration = Duration::from_secs(60);

#[tokio::test]
async fn only_the_poison_record_is_reported_and_given_back_at_once() {
    let (f, queue) = function(FakeShell::default());
    let batch = event(vec![
        record("m-1", &not_due_retry("wf-1")),
        record("m-2", "{not json"),
        record("m-3", &not_due_retry("wf-2")),
        record("m-4", &not_due_retry("wf-1")),
    ]);
    let response = f.handle_batch(batch, Deadlines::before(PLENTY)).await;
    assert_eq!(failures(&response), ["m-2"]);
    assert_eq!(*queue.changed.lock().unwrap(), [("r-m-2".to_owned(), 0)]);
    assert_eq!(f.metrics.total(metrics::MESSAGES_POISON), 1);
    assert_eq!(f.metrics.total(metrics::MESSAGES_HANDLED), 3);
}

#[tokio::test]
async fn a_record_whose_handling_fails_is_reported_and_retried_soon() {
    let (f, queue) = function(FakeShell {
        refuse: true,
        ..FakeShell::default()
    });
    let batch = event(vec![
        record("m-1", &not_due_retry("wf-1")),
        // No such workflow: handled (nothing to do), so deleted.
        record(
            "m-2",
            &Command::Start {
                workflow_id: WorkflowId::new("wf-unknown").unwrap(),
            }
            .envelope(Utc::now())
            .to_string(),
        ),
    ]);
    let response = f.handle_batch(batch, Deadlines::before(PLENTY)).await;
    assert_eq!(failures(&response), ["m-1"]);
    assert_eq!(
        *queue.changed.lock().unwrap(),
        [("r-m-1".to_owned(), FAILED_VISIBILITY.as_secs())]
    );
}

#[tokio::test]
async fn records_not_started_before_the_deadline_are_reported_and_given_back() {
    let (f, queue) = function(FakeShell::default());
    let batch = event(vec![
        record("m-1", &not_due_retry("wf-1")),
        record("m-2", &not_due_retry("wf-2")),
    ]);
    // Less time left than the margins: nothing starts.
    let response = f
        .handle_batch(batch, Deadlines::before(Duration::from_secs(1)))
        .await;
    let mut failed = failures(&response);
    failed.sort_unstable();
    assert_eq!(failed, ["m-1", "m-2"]);
    assert!(
        queue
            .changed
            .lock()
            .unwrap()
            .iter()
            .all(|(_, secs)| *secs == 0)
    );
    assert_eq!(f.metrics.total(metrics::MESSAGES_HANDLED), 0);
}
