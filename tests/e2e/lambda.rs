//! `flowpilot lambda` end to end (issue 15): the real `lambda_runtime` event loop in a real
//! process, polling a local Runtime API; batches are messages really received from the work
//! queue (moto) with the function's role, as the SQS event source mapping does, and the test
//! settles them as the mapping does with ReportBatchItemFailures (successful records deleted,
//! reported ones left). The stack is deployed in `WorkerMode: lambda`.

use std::time::{Duration, Instant};

use anyhow::{Context as _, ensure};
use aws_sdk_eventbridge::types::PutEventsRequestEntry;
use flowpilot::core::model::{BatchStatus, Workflow, WorkflowStatus};
use flowpilot_sim::{DurationRange, FaultPlan};

use crate::support::chaos::failing_runs;
use crate::support::e2e::{Env, OBJECT_TYPE, SimSetup, WorkflowArgs, count, health_counts};
use crate::support::lambda::{Mapping, RuntimeApi, logged_init_ms, spawn_lambda};
use crate::support::{WORKER_PROFILE, poll_until};

const FROM: &str = "2024-01-01T00:00:00Z";
const TO: &str = "2026-01-01T00:00:00Z";
/// The template's function Timeout.
const FUNCTION_TIMEOUT: Duration = Duration::from_secs(60);
const WORKFLOW_DEADLINE: Duration = Duration::from_secs(180);

async fn lambda_env(name: &str, faults: FaultPlan) -> anyhow::Result<Env> {
    let env = Env::start_in(
        name,
        SimSetup {
            faults,
            ..SimSetup::default()
        },
        "lambda",
    )
    .await?;
    ensure!(env.stack.worker_mode == "lambda");
    Ok(env)
}

/// The function's cold start: the init duration it logged (process start → ready), and the
/// time from spawning it to its first poll of the Runtime API, measured here.
async fn cold_start(
    api: &RuntimeApi,
    f: &crate::support::e2e::Worker,
    spawned: Instant,
) -> anyhow::Result<(u64, Duration)> {
    let first = poll_until(Duration::from_secs(30), || async { Ok(api.first_poll()) })
        .await
        .with_context(|| {
            format!(
                "the function never polled the Runtime API:\n{}",
                f.log_text()
            )
        })?;
    let logged = poll_until(Duration::from_secs(5), || async {
        Ok(logged_init_ms(&f.log_text()))
    })
    .await?;
    Ok((logged, first.duration_since(spawned)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_batch_with_one_poison_record_reports_exactly_that_record() -> anyhow::Result<()> {
    let env = lambda_env("lambda-poison", FaultPlan::default()).await?;
    let api = RuntimeApi::start(FUNCTION_TIMEOUT).await?;
    let (f, spawned) = spawn_lambda(&env, "a", &api)?;
    let (init_ms, to_first_poll) = cold_start(&api, &f, spawned).await?;

    // Real messages: the operator's start command and a poison body.
    let id = env
        .create_workflow(&WorkflowArgs::new("lm-poison", FROM, TO, "P2M"))
        .await?;
    env.send_raw(&[r#"{"detail-type": 42, "source": ["not", "a", "string"]}"#.to_owned()])
        .await?;
    let mapping = Mapping::new(
        aws_sdk_sqs::Client::new(&env.sdk_as(WORKER_PROFILE).await),
        &env.stack.queue_url,
        &api,
    )
    .await?;
    let mut event = aws_lambda_events::event::sqs::SqsEvent::default();
    let until = Instant::now() + Duration::from_secs(30);
    while event.records.len() < 2 {
        ensure!(
            Instant::now() < until,
            "received only {} of the start command and the poison message",
            event.records.len()
        );
        if let Some(more) = mapping.receive(Duration::from_secs(1)).await? {
            event.records.extend(more.records);
        }
    }
    let poison_id = event
        .records
        .iter()
        .find(|r| {
            r.body
                .as_deref()
                .is_some_and(|b| b.contains("\"detail-type\": 42"))
        })
        .and_then(|r| r.message_id.clone())
        .context("the poison record is in the batch")?;

    let started = Instant::now();
    let response = mapping.invoke(&event).await?;
    let first_invocation = started.elapsed();
    let failed: Vec<&str> = response
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.as_str())
        .collect();
    ensure!(
        failed == [poison_id.as_str()],
        "expected exactly the poison record {poison_id} to be reported, got {failed:?} of {} records:\n{}",
        event.records.len(),
        f.log_text()
    );
    mapping.settle(&event, &response).await?;
    // The start command was handled: the workflow left `pending`.
    let wf = env.load(&id).await?;
    ensure!(
        wf.status != WorkflowStatus::Pending,
        "the start record was not handled: {}",
        wf.status.as_str()
    );
    // The poison record was given back at once and is still on the queue (it reaches the DLQ
    // after its maximum receives); the handled ones are gone.
    let (visible, in_flight, _) = env.queue_counts(&env.stack.queue_url).await?;
    ensure!(visible + in_flight >= 1, "the poison record left the queue");
    f.assert_no_panic()?;
    ensure!(
        api.init_errors().is_empty(),
        "init errors: {:?}",
        api.init_errors()
    );
    println!(
        "cold start (debug build): init {init_ms} ms as logged, {} ms from spawn to the first poll; first invocation ({} records) {} ms",
        to_first_poll.as_millis(),
        event.records.len(),
        first_invocation.as_millis()
    );
    env.shutdown().await;
    Ok(())
}

/// Live with nothing left to do, or stopped.
fn is_done(wf: &Workflow) -> bool {
    (wf.status == WorkflowStatus::Live && wf.outbox.is_empty()) || wf.status.is_terminal()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_years_go_live_with_the_lambda_as_the_only_consumer() -> anyhow::Result<()> {
    // Batch 1's first run fails transiently: its retry is a delayed command on the queue.
    let faults = FaultPlan {
        run_duration_ms: DurationRange { min: 150, max: 300 },
        run_failures: vec![failing_runs("-b0001", vec![1], "Rate exceeded")],
        ..FaultPlan::default()
    };
    let env = lambda_env("lambda-live", faults).await?;
    let api = RuntimeApi::start(FUNCTION_TIMEOUT).await?;
    let (f, spawned) = spawn_lambda(&env, "a", &api)?;
    let (init_ms, to_first_poll) = cold_start(&api, &f, spawned).await?;
    let mapping = Mapping::new(
        aws_sdk_sqs::Client::new(&env.sdk_as(WORKER_PROFILE).await),
        &env.stack.queue_url,
        &api,
    )
    .await?;
    let id = env
        .create_workflow(&WorkflowArgs::new("lm-live", FROM, TO, "P2M"))
        .await?;

    let deadline = Instant::now() + WORKFLOW_DEADLINE;
    let (mut invocations, mut records, mut failures) = (0, 0, 0);
    let mut invoke_times = Vec::new();
    let mut reconcile_sent = false;
    let wf = loop {
        ensure!(
            Instant::now() < deadline,
            "not live after {WORKFLOW_DEADLINE:?} ({invocations} invocations):\n{}",
            flowpilot::cli::workflow::status_text(&env.load(&id).await?, chrono::Utc::now())
        );
        let p = mapping.poll(Duration::from_secs(1)).await?;
        if p.records > 0 {
            invocations += 1;
            records += p.records;
            failures += p.failures;
            invoke_times.push(p.invoke_time);
        }
        let wf = env.load(&id).await?;
        if !reconcile_sent
            && wf
                .batches
                .iter()
                .filter(|b| b.status == BatchStatus::Succeeded)
                .count()
                >= 2
        {
            // The reconcile tick as EventBridge Scheduler sends it (the template's schedule
            // target), through the deployed command rule: one more queue message.
            put_reconcile_tick(&env).await?;
            reconcile_sent = true;
        }
        if is_done(&wf) {
            break wf;
        }
    };
    ensure!(
        wf.status == WorkflowStatus::Live,
        "workflow ended {}:\n{}",
        wf.status.as_str(),
        f.log_text()
    );
    ensure!(wf.batches.len() == 12, "{} batches", wf.batches.len());
    let ledger = env
        .ledger_check_all_writes(OBJECT_TYPE, FROM.parse()?, TO.parse()?)
        .await?;
    ledger.ensure_complete("ledger")?;
    ensure!(ledger.missing() == 0);
    let mut events = Vec::new();
    env.health_until(&mut events, Duration::from_secs(30), |all| {
        count(&health_counts(all), "Workflow Completed") >= 1
    })
    .await?;
    let counts = health_counts(&events);
    ensure!(
        count(&counts, "Batch Retry Scheduled") >= 1,
        "the transient failure was not retried through a delayed command: {counts:?}"
    );
    let log = f.log_text();
    ensure!(
        reconcile_sent && log.contains("reconciling active workflows"),
        "the reconcile tick was not handled:\n{log}"
    );
    f.assert_no_panic()?;
    let first_invocation = invoke_times.first().copied().unwrap_or_default();
    invoke_times.sort();
    let median = invoke_times
        .get(invoke_times.len() / 2)
        .copied()
        .unwrap_or_default();
    println!(
        "lambda as the only consumer: live, ledger {ledger:?}; {invocations} invocations, {records} records, {failures} reported failures; \
         cold start (debug build) init {init_ms} ms logged, {} ms spawn → first poll; first invocation {} ms, median {} ms",
        to_first_poll.as_millis(),
        first_invocation.as_millis(),
        median.as_millis()
    );
    env.shutdown().await;
    Ok(())
}

async fn put_reconcile_tick(env: &Env) -> anyhow::Result<()> {
    let events = aws_sdk_eventbridge::Client::new(&env.sdk);
    let out = events
        .put_events()
        .entries(
            PutEventsRequestEntry::builder()
                .event_bus_name("default")
                .source("flowpilot.command")
                .detail_type("Workflow Command")
                .detail(r#"{"command":"reconcile"}"#)
                .build(),
        )
        .send()
        .await?;
    ensure!(
        out.failed_entry_count == 0,
        "PutEvents refused the reconcile tick"
    );
    Ok(())
}
