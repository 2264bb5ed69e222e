//! The shell's protocol with the in-memory store and a scripted [`Shell`]: outbox drained in
//! order, transient failures leave a durable outbox plus a delayed reconcile, conflicts reload.

use std::sync::Mutex;

use chrono::TimeDelta;
use flowpilot_core::effect::{Effect, EffectError, EffectKind, Outcome, outcome_of};
use flowpilot_core::health::{HealthEvent, HealthKind, UnreadableItem};
use flowpilot_core::model::WorkflowStatus;
use flowpilot_core::spec::SpecInput;

use super::*;
use crate::aws::queue::QueueError;
use crate::store::Listing;
use crate::store::memory::MemoryStore;
use crate::worker::shell::Executed;

fn workflow(id: &str) -> Workflow {
    let now = Utc::now();
    let spec = SpecInput {
        domain: Some("acme".into()),
        object_type: Some("Account".into()),
        connector: Some("salesforce".into()),
        connector_profile: Some("sf".into()),
        object: Some("Account".into()),
        from: Some("2024-01-01".into()),
        to: Some("2025-01-01".into()),
        kms_arn: Some("arn:aws:kms:us-east-1:123456789012:key/k".into()),
        ..SpecInput::default()
    }
    .validate(now)
    .unwrap();
    Workflow::new(WorkflowId::new(id).unwrap(), spec, now)
}

/// Succeeds at everything except effects of kind `fail_kind`, which fail transiently.
#[derive(Default)]
struct FakeShell {
    fail_kind: Option<&'static str>,
    /// SQS refuses every command with this error code.
    refuse_commands: Option<&'static str>,
    executed: Mutex<Vec<Effect>>,
    sent: Mutex<Vec<(Command, Duration)>>,
    published: Mutex<Vec<HealthEvent>>,
}

fn kind(e: &Effect) -> &'static str {
    match e.kind {
        EffectKind::CreateFlow { .. } => "create_flow",
        EffectKind::StartFlow { .. } => "start_flow",
        EffectKind::Publish { .. } => "publish",
        _ => "other",
    }
}

impl Shell for FakeShell {
    async fn execute(&self, _wf: &Workflow, effects: &[Effect]) -> Executed {
        let mut out = Executed::default();
        for e in effects {
            let result = if Some(kind(e)) == self.fail_kind {
                Err(EffectError {
                    code: "InternalServerException".into(),
                    message: "try later".into(),
                    permanent: false,
                })
            } else {
                self.executed.lock().unwrap().push(e.clone());
                Ok(())
            };
            let step = outcome_of(&e.key, result, |()| match &e.kind {
                EffectKind::StartFlow { role, attempt, .. } => Outcome::Started {
                    key: e.key.clone(),
                    role: *role,
                    attempt: *attempt,
                    execution_id: Some(format!("exec-{}", e.key)),
                },
                _ => Outcome::Done { key: e.key.clone() },
            });
            if !out.push(&e.key, step) {
                break;
            }
        }
        out
    }

    async fn send_command(&self, cmd: &Command, delay: Duration) -> Result<(), QueueError> {
        if let Some(code) = self.refuse_commands {
            return Err(QueueError {
                operation: "SendMessage",
                queue_url: "https://sqs.local/work".into(),
                aws: crate::aws::ErrorRef {
                    code: Some(code.into()),
                    request_id: Some("req-1".into()),
                },
                source: format!("service error: {code}: not authorized").into(),
            });
        }
        self.sent.lock().unwrap().push((cmd.clone(), delay));
        Ok(())
    }

    async fn publish(&self, events: &[HealthEvent]) -> Vec<Result<(), EffectError>> {
        self.published.lock().unwrap().extend_from_slice(events);
        events.iter().map(|_| Ok(())).collect()
    }
}

fn handler(store: Arc<MemoryStore>, shell: Arc<FakeShell>) -> Handler<MemoryStore, FakeShell> {
    handler_on(store, shell, Metrics::new())
}

fn handler_on<S: Store>(
    store: Arc<S>,
    shell: Arc<FakeShell>,
    metrics: Arc<Metrics>,
) -> Handler<S, FakeShell> {
    Handler::new(store, shell, Policy::default(), metrics)
}

#[tokio::test]
async fn start_commits_then_drains_the_outbox_in_order() {
    let store = Arc::new(MemoryStore::new());
    let wf = workflow("wf-a");
    store.create(&wf).await.unwrap();
    let shell = Arc::new(FakeShell::default());
    let h = handler(Arc::clone(&store), Arc::clone(&shell));

    assert_eq!(h.handle(&wf.id, Input::Start).await.unwrap(), Handled::Done);
    // The effects' outcomes are written with the next transition, or once idle.
    h.flush_idle(Duration::ZERO).await;

    let stored = store.load(&wf.id).await.unwrap().unwrap();
    assert_eq!(stored.status, WorkflowStatus::Backfilling);
    assert!(stored.outbox.is_empty(), "outbox: {:?}", stored.outbox);
    let kinds: Vec<&str> = shell.executed.lock().unwrap().iter().map(kind).collect();
    let create = kinds.iter().position(|k| *k == "create_flow").unwrap();
    let start = kinds.iter().position(|k| *k == "start_flow").unwrap();
    assert!(create < start, "{kinds:?}");
    assert!(stored.batches[0].execution_id.is_some());
}

#[tokio::test]
async fn transient_failure_keeps_the_rest_in_the_outbox_and_schedules_one_drain() {
    let store = Arc::new(MemoryStore::new());
    let wf = workflow("wf-b");
    store.create(&wf).await.unwrap();
    let shell = Arc::new(FakeShell {
        fail_kind: Some("start_flow"),
        ..FakeShell::default()
    });
    let h = handler(Arc::clone(&store), Arc::clone(&shell));

    assert_eq!(
        h.handle(&wf.id, Input::Start).await.unwrap(),
        Handled::Deferred
    );

    let stored = store.load(&wf.id).await.unwrap().unwrap();
    assert!(stored.outbox.iter().any(|e| kind(e) == "start_flow"));
    assert!(
        !stored
            .outbox
            .iter()
            .any(|e| e.key.to_string() == "b0/a1/create"),
        "create was applied: {:?}",
        stored.outbox
    );
    let drain = stored.drain.as_ref().expect("the stuck period is recorded");
    assert_eq!(drain.attempts, 1);
    {
        let sent = shell.sent.lock().unwrap();
        assert_eq!(sent.len(), 1);
        assert!(
            matches!(&sent[0].0, Command::Drain { workflow_id, attempt: 1 } if *workflow_id == wf.id),
            "{sent:?}"
        );
        let base = Policy::default().drain_base.as_secs_f64();
        assert!((sent[0].1.as_secs_f64() - base).abs() < 1.0, "{sent:?}");
    }

    // Anything else finding the outbox still stuck (a reconcile pass, a new event) sends
    // nothing more: the one drain is on its way.
    for _ in 0..5 {
        assert_eq!(
            h.handle(&wf.id, Input::Reconcile).await.unwrap(),
            Handled::Deferred
        );
    }
    assert_eq!(shell.sent.lock().unwrap().len(), 1, "drains multiplied");

    // The drain arrives and the effect still fails: the next drain, twice as late.
    h.handle(&wf.id, Input::Drain { attempt: 1 }).await.unwrap();
    let sent = shell.sent.lock().unwrap();
    assert_eq!(sent.len(), 2);
    assert!(
        matches!(&sent[1].0, Command::Drain { attempt: 2, .. }),
        "{sent:?}"
    );
    let twice = 2.0 * Policy::default().drain_base.as_secs_f64();
    assert!((sent[1].1.as_secs_f64() - twice).abs() < 1.0, "{sent:?}");
}

#[tokio::test]
async fn a_command_that_cannot_be_sent_keeps_the_queue_error_as_its_cause() {
    let store = Arc::new(MemoryStore::new());
    let wf = workflow("wf-e");
    store.create(&wf).await.unwrap();
    let shell = Arc::new(FakeShell {
        fail_kind: Some("start_flow"),
        refuse_commands: Some("AccessDenied"),
        ..FakeShell::default()
    });
    let h = handler(Arc::clone(&store), shell);

    let err = h.handle(&wf.id, Input::Start).await.unwrap_err();
    assert!(matches!(err, HandleError::CannotDefer { .. }), "{err:?}");
    let queue = std::error::Error::source(&err)
        .and_then(|s| s.downcast_ref::<QueueError>())
        .expect("the queue error is the source");
    assert_eq!(queue.aws.code.as_deref(), Some("AccessDenied"));
    let logged = crate::aws::error_chain(&err);
    assert!(
        logged.contains("InternalServerException")
            && logged.contains("AccessDenied, request id req-1"),
        "{logged}"
    );
}

/// Loses the first conditional save to a "concurrent writer".
struct RacyStore {
    inner: MemoryStore,
    raced: Mutex<bool>,
}

impl Store for RacyStore {
    async fn create(&self, wf: &Workflow) -> Result<(), StoreError> {
        self.inner.create(wf).await
    }
    async fn load(&self, id: &WorkflowId) -> Result<Option<Workflow>, StoreError> {
        self.inner.load(id).await
    }
    async fn save(&self, wf: &Workflow, expected: u64) -> Result<(), StoreError> {
        let race = std::mem::replace(&mut *self.raced.lock().unwrap(), true);
        if !race {
            return Err(StoreError::Conflict {
                id: wf.id.clone(),
                expected,
            });
        }
        self.inner.save(wf, expected).await
    }
    async fn list_active(&self) -> Result<Listing, StoreError> {
        self.inner.list_active().await
    }
    async fn list_all(&self) -> Result<Listing, StoreError> {
        self.inner.list_all().await
    }
}

#[tokio::test]
async fn a_lost_conditional_write_reloads_and_decides_again() {
    let store = Arc::new(RacyStore {
        inner: MemoryStore::new(),
        raced: Mutex::new(false),
    });
    let wf = workflow("wf-c");
    store.create(&wf).await.unwrap();
    let shell = Arc::new(FakeShell::default());
    let metrics = Metrics::new();
    let h = Handler::new(
        Arc::clone(&store),
        shell,
        Policy::default(),
        Arc::clone(&metrics),
    );

    assert_eq!(h.handle(&wf.id, Input::Start).await.unwrap(), Handled::Done);
    assert_eq!(metrics.total(crate::metrics::CONFLICTS), 1);
    h.flush_idle(Duration::ZERO).await;
    let stored = store.load(&wf.id).await.unwrap().unwrap();
    assert_eq!(stored.status, WorkflowStatus::Backfilling);
    assert!(stored.outbox.is_empty());
}

#[tokio::test]
async fn a_retry_that_is_not_due_is_delayed_again() {
    let store = Arc::new(MemoryStore::new());
    let wf = workflow("wf-d");
    store.create(&wf).await.unwrap();
    let shell = Arc::new(FakeShell::default());
    let h = handler(Arc::clone(&store), Arc::clone(&shell));
    let due_at = Utc::now() + TimeDelta::minutes(40);

    let r = h
        .handle(
            &wf.id,
            Input::RetryDue {
                batch: 0,
                attempt: 2,
                due_at,
            },
        )
        .await
        .unwrap();
    assert_eq!(r, Handled::Redelayed);
    let sent = shell.sent.lock().unwrap().clone();
    assert!(
        matches!(
            sent[0].0,
            Command::RetryDue {
                batch: 0,
                attempt: 2,
                ..
            }
        ),
        "{sent:?}"
    );
    assert!(sent[0].1 > Duration::from_secs(2300), "{:?}", sent[0].1);
    assert_eq!(store.load(&wf.id).await.unwrap().unwrap().version, 0);
}

#[tokio::test]
async fn messages_for_unknown_workflows_are_dropped() {
    let h = handler(Arc::new(MemoryStore::new()), Arc::new(FakeShell::default()));
    let id = WorkflowId::new("nobody").unwrap();
    assert_eq!(
        h.handle(&id, Input::Reconcile).await.unwrap(),
        Handled::UnknownWorkflow
    );
}

/// Holds one item that does not read back besides the workflows of `inner`, as the DynamoDB
/// store reports a hand-edited or incompatible item.
struct StoreWithUnreadable {
    inner: MemoryStore,
    unreadable: UnreadableItem,
}

impl Store for StoreWithUnreadable {
    async fn create(&self, wf: &Workflow) -> Result<(), StoreError> {
        self.inner.create(wf).await
    }
    async fn load(&self, id: &WorkflowId) -> Result<Option<Workflow>, StoreError> {
        self.inner.load(id).await
    }
    async fn save(&self, wf: &Workflow, expected: u64) -> Result<(), StoreError> {
        self.inner.save(wf, expected).await
    }
    async fn list_active(&self) -> Result<Listing, StoreError> {
        let mut listing = self.inner.list_active().await?;
        listing.unreadable.push(self.unreadable.clone());
        Ok(listing)
    }
    async fn list_all(&self) -> Result<Listing, StoreError> {
        self.list_active().await
    }
}

#[tokio::test]
async fn an_unreadable_item_is_reported_and_every_other_workflow_still_reconciles() {
    let store = Arc::new(StoreWithUnreadable {
        inner: MemoryStore::new(),
        unreadable: UnreadableItem {
            key: "wf#broken".into(),
            reason: "unknown variant `exploded`".into(),
            workflow_id: "broken".into(),
            version: Some(7),
            status: "backfilling".into(),
            domain: "acme".into(),
            ..UnreadableItem::default()
        },
    });
    // Two workflows whose StartFlow failed transiently: only a reconcile drains them.
    let stuck = Arc::new(FakeShell {
        fail_kind: Some("start_flow"),
        ..FakeShell::default()
    });
    for id in ["wf-f", "wf-g"] {
        let wf = workflow(id);
        store.create(&wf).await.unwrap();
        let h = handler_on(Arc::clone(&store), Arc::clone(&stuck), Metrics::new());
        assert_eq!(
            h.handle(&wf.id, Input::Start).await.unwrap(),
            Handled::Deferred
        );
    }
    let shell = Arc::new(FakeShell::default());
    let metrics = Metrics::new();
    let h = handler_on(Arc::clone(&store), Arc::clone(&shell), Arc::clone(&metrics));

    let pass = h.reconcile_all(&CancellationToken::new()).await.unwrap();
    h.flush_idle(Duration::ZERO).await;

    assert_eq!(
        pass,
        super::Pass {
            workflows: 2,
            failures: 0,
            unreadable: 1
        }
    );
    for id in ["wf-f", "wf-g"] {
        let wf = store
            .load(&WorkflowId::new(id).unwrap())
            .await
            .unwrap()
            .unwrap();
        assert!(wf.outbox.is_empty(), "{id} not drained: {:?}", wf.outbox);
    }
    assert_eq!(metrics.total(crate::metrics::STORE_UNREADABLE), 1);
    let published = shell.published.lock().unwrap();
    assert_eq!(published.len(), 1, "{published:?}");
    assert_eq!(published[0].kind, HealthKind::WorkflowUnreadable);
    let detail = &published[0].detail;
    assert_eq!(detail.event_id, "broken/workflow-unreadable/v7");
    assert_eq!(detail.workflow_id, "broken");
    assert_eq!(detail.domain, "acme");
    assert_eq!(detail.error.as_deref(), Some("unknown variant `exploded`"));
}

/// [`MemoryStore`] counting reads and writes.
#[derive(Default)]
struct CountingStore {
    inner: MemoryStore,
    loads: Mutex<u32>,
    saves: Mutex<u32>,
}

impl Store for CountingStore {
    async fn create(&self, wf: &Workflow) -> Result<(), StoreError> {
        self.inner.create(wf).await
    }
    async fn load(&self, id: &WorkflowId) -> Result<Option<Workflow>, StoreError> {
        *self.loads.lock().unwrap() += 1;
        self.inner.load(id).await
    }
    async fn save(&self, wf: &Workflow, expected: u64) -> Result<(), StoreError> {
        *self.saves.lock().unwrap() += 1;
        self.inner.save(wf, expected).await
    }
    async fn list_active(&self) -> Result<Listing, StoreError> {
        self.inner.list_active().await
    }
    async fn list_all(&self) -> Result<Listing, StoreError> {
        self.inner.list_all().await
    }
}

fn ended(wf: &WorkflowId, batch: u32, exec: &str) -> Input {
    Input::RunEnded(flowpilot_core::input::RunReport {
        flow_name: flowpilot_core::ids::flow_name(wf, flowpilot_core::ids::FlowRole::Batch(batch)),
        role: flowpilot_core::ids::FlowRole::Batch(batch),
        execution_id: Some(exec.into()),
        succeeded: true,
        error: None,
        records_processed: Some(10),
        record_failures: Some(0),
        record_failure_message: None,
        pull_start: None,
        pull_end: None,
        ended_at: None,
    })
}

#[tokio::test]
async fn one_write_per_transition_and_no_read_for_a_workflow_this_process_wrote() {
    let store = Arc::new(CountingStore::default());
    let wf = workflow("wf-h");
    store.create(&wf).await.unwrap();
    let shell = Arc::new(FakeShell::default());
    let h = handler_on(Arc::clone(&store), Arc::clone(&shell), Metrics::new());

    assert_eq!(h.handle(&wf.id, Input::Start).await.unwrap(), Handled::Done);
    // Start: one read, one write; the effects' outcomes (execution ids) wait for the next one.
    assert_eq!(
        (*store.loads.lock().unwrap(), *store.saves.lock().unwrap()),
        (1, 1)
    );
    let stored = store.inner.load(&wf.id).await.unwrap().unwrap();
    assert!(!stored.outbox.is_empty(), "outcomes were written at once");

    // Batch 0 ends: no read (this process wrote the item), one write with both the deferred
    // outcomes and the transition — which started batch 1 with its flow created ahead.
    let t = h
        .handle(&wf.id, ended(&wf.id, 0, "exec-b0/a1/start"))
        .await
        .unwrap();
    assert_eq!(t, Handled::Done);
    assert_eq!(
        (*store.loads.lock().unwrap(), *store.saves.lock().unwrap()),
        (1, 2)
    );
    let stored = store.inner.load(&wf.id).await.unwrap().unwrap();
    assert_eq!(
        stored.batches[0].status,
        flowpilot_core::model::BatchStatus::Succeeded
    );
    assert_eq!(
        stored.batches[0].execution_id.as_deref(),
        Some("exec-b0/a1/start")
    );

    // A duplicate of that report changes nothing on what this process remembers, so it is
    // checked against the stored item before the message is let go: one read, no write.
    let t = h
        .handle(&wf.id, ended(&wf.id, 0, "exec-b0/a1/start"))
        .await
        .unwrap();
    assert_eq!(t, Handled::Done);
    assert_eq!(
        (*store.loads.lock().unwrap(), *store.saves.lock().unwrap()),
        (2, 2)
    );

    // Idle: the flusher writes what is deferred, and the stored outbox empties.
    h.flush_idle(Duration::ZERO).await;
    let stored = store.inner.load(&wf.id).await.unwrap().unwrap();
    assert!(stored.outbox.is_empty(), "{:?}", stored.outbox);
}

#[tokio::test]
async fn a_remembered_workflow_another_worker_moved_on_is_reloaded_not_overwritten() {
    let store = Arc::new(CountingStore::default());
    let wf = workflow("wf-i");
    store.create(&wf).await.unwrap();
    let shell = Arc::new(FakeShell::default());
    let ours = handler_on(Arc::clone(&store), Arc::clone(&shell), Metrics::new());
    let theirs = handler_on(Arc::clone(&store), Arc::clone(&shell), Metrics::new());
    ours.handle(&wf.id, Input::Start).await.unwrap();
    // Another replica handles batch 0's end: the item moves on without us.
    theirs
        .handle(&wf.id, ended(&wf.id, 0, "exec-b0/a1/start"))
        .await
        .unwrap();
    let moved = store.inner.load(&wf.id).await.unwrap().unwrap();
    // Batch 1's end reaches us, remembering the item from before: our write loses, we reload
    // and decide on the stored item.
    ours.handle(&wf.id, ended(&wf.id, 1, "exec-b1/a1/start"))
        .await
        .unwrap();
    let stored = store.inner.load(&wf.id).await.unwrap().unwrap();
    assert!(stored.version > moved.version);
    assert_eq!(
        stored.batches[0].status,
        flowpilot_core::model::BatchStatus::Succeeded
    );
    assert_eq!(
        stored.batches[1].status,
        flowpilot_core::model::BatchStatus::Succeeded
    );
}

/// Which batches give their run slot back after a transition: those whose run ended, not
/// those the budget refused, and every running one when the workflow is cancelled.
#[test]
fn run_slots_go_back_when_a_run_ends_or_the_workflow_is_cancelled_not_when_refused() {
    use flowpilot_core::decide::{Policy, decide};
    use flowpilot_core::effect::{AttemptStep, EffectKey, SlotDenial};
    let now = Utc::now();
    let p = Policy::default();
    let mut wf = workflow("slots");
    wf.spec.concurrency = 3;
    let wf = decide(&wf, Input::Start, now, &p).workflow;
    let refused = Outcome::SlotDenied {
        key: EffectKey::attempt(2, 1, AttemptStep::Start),
        attempt: 1,
        denial: SlotDenial {
            scope: "profile sf".into(),
            in_use: 5,
            limit: 5,
            quota: false,
        },
    };
    let next = decide(&wf, Input::Applied(vec![refused]), now, &p).workflow;
    assert!(left_running(&wf, &next).is_empty());
    let after = decide(&next, ended(&wf.id, 0, "x0"), now, &p).workflow;
    assert_eq!(left_running(&next, &after), vec![0]);
    let cancelled = decide(&after, Input::Cancel { reason: None }, now, &p).workflow;
    assert_eq!(cancelled.status, WorkflowStatus::Cancelled);
    let mut freed = left_running(&after, &cancelled);
    freed.sort_unstable();
    assert_eq!(freed, vec![1, 3]);
}
